"""Virtual time cannot lose an answer.

- A completion that arrives from another thread while an invocation runs always leads to a
  re-invocation, whichever thread drains the engine (deterministic: the handler and the test hand
  over with events, never with sleeps).
- ``real_time_callbacks`` (what ``durable-sync serve --skip-time`` uses): waits stay virtual, but a
  callback's timeout keeps real time, so nothing times it out before an outside client could answer.
"""
from __future__ import annotations

import threading

import durable_sync as ds
from durable_sync.local import LocalEngine

TIMEOUT = 30  # seconds a test waits for a hand-over before failing (never reached when all is well)


def test_a_callback_answered_while_the_invocation_runs_is_not_lost():
    """The answer's own drain finds the invocation in flight and leaves it; the thread that ran the
    invocation invokes again once it ends, and the execution completes with the answer."""
    created, answered = threading.Event(), threading.Event()
    callback_ids, invocations = [], []

    @ds.durable_handler
    def handler(event, ctx):
        invocations.append(1)
        callback = ctx.create_callback(name="approval")
        if len(invocations) == 1:
            callback_ids.append(callback.callback_id)
            created.set()
            assert answered.wait(TIMEOUT)  # the outside answers now, while this invocation still runs
        return callback.result()  # first invocation: not answered in its state yet -> suspends (PENDING)

    engine = LocalEngine(db=":memory:", skip_time=True)
    try:
        outcome = {}
        runner = threading.Thread(target=lambda: outcome.setdefault("result", engine.run(handler, {})))
        runner.start()
        assert created.wait(TIMEOUT)
        engine.send_callback_success(callback_ids[0], '"approved"')  # returns at once: the invocation is busy
        answered.set()
        runner.join(TIMEOUT)
        assert not runner.is_alive()
        result = outcome["result"]
        assert (result.status, result.result) == ("SUCCEEDED", "approved")
        assert len(invocations) == 2
    finally:
        engine.close()


def test_a_completion_from_another_thread_during_a_callers_advance_is_not_lost():
    """Same race with ``advance`` driving: a wait fires, its re-invocation runs, and meanwhile another
    thread answers a callback of the same execution."""
    running, answered = threading.Event(), threading.Event()
    callback_ids, invocations = [], []

    @ds.durable_handler
    def handler(event, ctx):
        invocations.append(1)
        callback = ctx.create_callback(name="approval")
        callback_ids.append(callback.callback_id)
        ctx.wait(10)
        if len(invocations) == 2:
            running.set()
            assert answered.wait(TIMEOUT)
        return callback.result()

    engine = LocalEngine(db=":memory:", skip_time=True)
    try:
        arn = engine.start(handler, {})
        advancing = threading.Thread(target=engine.advance, args=(10,))
        advancing.start()
        assert running.wait(TIMEOUT)
        engine.send_callback_success(callback_ids[0], '"late yes"')
        answered.set()
        advancing.join(TIMEOUT)
        assert not advancing.is_alive()
        result = engine.get_execution(arn)
        assert (result.status, result.result) == ("SUCCEEDED", "late yes")
        assert len(invocations) == 3
    finally:
        engine.close()


def test_with_real_time_callbacks_waits_are_skipped_but_a_callback_timeout_keeps_real_time():
    ended = threading.Event()

    @ds.durable_handler
    def handler(event, ctx):
        ctx.wait(3600, name="an hour")
        callback = ctx.create_callback(name="approval", config=ds.CallbackConfig(timeout=1))
        try:
            return callback.result()
        except ds.CallbackTimeoutError:
            return "timed out"

    engine = LocalEngine(db=":memory:", skip_time=True, real_time_callbacks=True)
    engine.add_listener(lambda arn, event: ended.set() if event["EventType"] == "ExecutionSucceeded" else None)
    try:
        arn = engine.start(handler, {})
        assert engine.wait(arn).status == "RUNNING"  # the hour went by at once; now only the callback is left
        engine.advance(10 * 24 * 3600)  # virtual time never fires a callback's timeout
        types = [e["EventType"] for e in engine.history(arn)]
        assert "WaitSucceeded" in types and "CallbackStarted" in types and "CallbackTimedOut" not in types
        assert ended.wait(TIMEOUT)  # one real second later
        assert engine.get_execution(arn).result == "timed out"
    finally:
        engine.close()
