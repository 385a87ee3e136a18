"""One commit path (durable_sync.local.commit): every change the engine accepts is stored first, then
applied in memory, then announced; a store failure reaches the caller and changes nothing.

Each test runs with a listener that checks, for every event it is told about, that the event is in the
database already (read back through a second connection): nothing is reported that was not persisted.
For each kind of change, the store is made read-only (a real SQLite error, ``chaos.FaultyStore``) and
the change must be refused with the engine's 5xx, leave memory, listeners and the database as they
were, and succeed when made again once the fault clears.
"""
from __future__ import annotations

import logging
import sqlite3
import threading

import pytest

import durable_sync as ds
from durable_sync.local import LocalEngine, ServiceError
from durable_sync.local.store import Reader

from .chaos import STATS, FaultyStore


@ds.durable_handler
def approval(event, ctx: ds.DurableContext):
    ctx.step(lambda _: "prepared", name="prepare")
    answer = ctx.create_callback("approve", config=ds.CallbackConfig(heartbeat_timeout=ds.Duration.from_minutes(5))
                                 ).result()
    ctx.wait(30, name="cool-down")
    return {"answer": answer}


class PersistedFirst:
    """A listener asserting that every event it is told about is in the database already."""

    def __init__(self, path: str):
        self.path = path
        self.seen: list[tuple[str, int, str]] = []
        self.problems: list[str] = []

    def __call__(self, arn: str, event: dict) -> None:
        with Reader(self.path) as reader:
            stored = reader.execution(arn)
        ids = {e["EventId"] for e in stored.events} if stored is not None else set()
        if event["EventId"] not in ids:
            self.problems.append(f"{event['EventType']} #{event['EventId']} announced before it was stored")
        self.seen.append((arn, event["EventId"], event["EventType"]))


@pytest.fixture
def rig(tmp_path):
    path = str(tmp_path / "commit.db")
    store = FaultyStore(path)
    listener = PersistedFirst(path)
    engine = LocalEngine(db=store, skip_time=True, listeners=[listener], functions={"approval": approval})
    yield engine, store, listener, path
    store.set_fault(None)
    engine.close()
    assert not listener.problems, listener.problems


def _state(engine, arn):
    return engine.get_execution(arn), engine.operations(arn), engine.history(arn)


def _on_disk(path, arn):
    with Reader(path) as reader:
        ex = reader.execution(arn)
    return ex.status, {op_id: op["Status"] for op_id, op in ex.ops.items()}, len(ex.events)


def _refused(store, listener, engine, arn, path, change):
    """``change()`` under a read-only store: refused with the 5xx, nothing changed or announced anywhere."""
    before, disk_before, heard = _state(engine, arn), _on_disk(path, arn), len(listener.seen)
    store.set_fault("readonly")
    try:
        with pytest.raises(ServiceError) as info:
            change()
    finally:
        store.set_fault(None)
    assert info.value.code == "ServiceException" and info.value.status == 500
    assert isinstance(info.value.__cause__, sqlite3.OperationalError) and "nothing was applied" in info.value.message
    assert _state(engine, arn) == before and _on_disk(path, arn) == disk_before and len(listener.seen) == heard
    STATS.record("commit path: a refused change changes nothing", runs=1, completed=1, faults={"readonly-write": 1})


def test_start_checkpoint_callback_heartbeat_timer_and_completion_are_stored_first(rig):
    engine, store, listener, path = rig
    store.set_fault("readonly")
    with pytest.raises(ServiceError):
        engine.start(approval, {}, name="never")
    store.set_fault(None)
    assert engine.list_executions() == [] and listener.seen == []

    arn = engine.start(approval, {}, name="a")
    [callback] = engine.snapshot(arn).open_callbacks
    # a callback heartbeat and answer from outside
    _refused(store, listener, engine, arn, path, lambda: engine.send_callback_heartbeat(callback.callback_id))
    engine.send_callback_heartbeat(callback.callback_id)
    _refused(store, listener, engine, arn, path, lambda: engine.send_callback_success(callback.callback_id, '"ok"'))
    engine.send_callback_success(callback.callback_id, '"ok"')
    assert engine.get_execution(arn).status == "RUNNING"  # waiting for its cool-down now

    # a timer coming due: refused, armed again, and fired once the store takes it
    def fire_wait():
        engine.advance(30)
        raise_if_wait_open()

    def raise_if_wait_open():
        if [op["Status"] for op in engine.operations(arn) if op["Type"] == "WAIT"] == ["STARTED"]:
            raise ServiceError("ServiceException", "the wait did not fire: nothing was applied", 500) \
                from sqlite3.OperationalError("attempt to write a readonly database")

    _refused(store, listener, engine, arn, path, fire_wait)
    result = engine.wait(arn)
    assert (result.status, result.result) == ("SUCCEEDED", {"answer": "ok"})
    assert _on_disk(path, arn)[0] == "SUCCEEDED"
    types = [e["EventType"] for e in engine.history(arn)]
    assert types.count("CallbackSucceeded") == 1 and types.count("WaitSucceeded") == 1
    assert [t for _, _, t in listener.seen].count("ExecutionSucceeded") == 1


def test_a_checkpoint_the_store_refuses_is_refused_to_the_sdk_and_retried(rig):
    engine, store, listener, path = rig
    arn = engine.start(approval, {}, name="b")
    snapshot = engine.snapshot(arn)
    [callback] = snapshot.open_callbacks
    token = engine._executions[arn].token  # the token of the invocation that is parked on the callback
    update = {"Id": "x" * 64, "Type": "STEP", "SubType": "Step", "Action": "START", "Name": "extra"}
    _refused(store, listener, engine, arn, path, lambda: engine.checkpoint(arn, token, [update]))
    engine.checkpoint(arn, token, [update])  # made again once the fault cleared: accepted
    assert any(op["Id"] == "x" * 64 for op in engine.operations(arn))
    assert callback.callback_id


def test_stop_pause_resume_and_delete_are_stored_first(rig):
    engine, store, listener, path = rig
    arn = engine.start(approval, {}, name="c")
    _refused(store, listener, engine, arn, path, lambda: engine.pause(arn, "audit"))
    assert engine.pause(arn, "audit").pause_status == "PAUSED"
    _refused(store, listener, engine, arn, path, lambda: engine.resume_execution(arn))
    assert engine.resume_execution(arn).pause_status is None
    _refused(store, listener, engine, arn, path, lambda: engine.stop(arn))
    assert engine.stop(arn).status == "STOPPED"
    store.set_fault("readonly")
    with pytest.raises(ServiceError):
        engine.delete(arn)
    store.set_fault(None)
    assert engine.get_execution(arn).status == "STOPPED" and _on_disk(path, arn)[0] == "STOPPED"
    engine.delete(arn)
    with Reader(path) as reader:
        assert reader.execution(arn) is None


def test_an_invocation_end_the_store_refuses_is_not_applied_and_the_execution_is_invoked_again(rig):
    """The invocation ends while the store is read-only: no InvocationCompleted, no completion; the
    execution is invoked again (a replay) and completes once the store takes writes again."""
    engine, store, listener, path = rig
    calls = []

    @ds.durable_handler
    def quick(event, ctx):
        calls.append(1)
        if len(calls) == 1:
            store.set_fault("readonly", fail_writes=1)  # the end of this invocation is the write that fails
        return "done"

    arn = engine.start(quick, None, name="d")
    parked = engine.snapshot(arn)  # nothing of the first invocation was applied; another one is due
    assert parked.history[-1]["EventType"] == "ExecutionStarted" and not parked.waits_on_outside
    assert [t.kind for t in parked.pending_timers][0] == "reinvoke"
    result = engine.wait(arn)
    assert (result.status, result.result) == ("SUCCEEDED", "done")
    assert len(calls) == 2 and store.failed == 1
    types = [e["EventType"] for e in engine.history(arn)]
    assert types == ["ExecutionStarted", "InvocationCompleted", "ExecutionSucceeded"]


# -- the invoke pool --------------------------------------------------------------------------------------
@ds.durable_handler
def one_step(event, ctx):
    return ctx.step(lambda _: event, name="echo")


def test_an_engine_failure_on_the_invoke_pool_is_logged_and_ends_the_execution(caplog):
    with LocalEngine(db=":memory:") as engine:
        def broken_factory():
            raise RuntimeError("the client factory is broken")

        engine.client_factory = broken_factory
        with caplog.at_level(logging.ERROR, logger="durable_sync.engine"):
            result = engine.wait(engine.start(one_step, 1), timeout=30)
    assert result.status == "FAILED" and result.error["ErrorType"] == "Engine.InternalError"
    assert "the client factory is broken" in result.error["ErrorMessage"]
    [record] = [r for r in caplog.records if "failed while invoking" in r.getMessage()]
    assert record.exc_info is not None  # with its traceback


def test_an_execution_invoked_again_and_again_does_not_hold_its_slot():
    """max_concurrent_invocations=1: an execution whose invocations fail (each asks for another at once)
    goes to the back of the queue after each one, so a queued execution runs in between."""
    order: list[str] = []
    first_running, release = threading.Event(), threading.Event()

    def flaky(event, lambda_context):  # a Lambda handler whose invocations fail: each is retried at once
        order.append("flaky")
        if len(order) == 1:
            first_running.set()
            release.wait(30)
        raise RuntimeError("fails every time")

    @ds.durable_handler
    def other(event, ctx):
        order.append("other")
        return "ok"

    with LocalEngine(db=":memory:", max_concurrent_invocations=1) as engine:
        flaky_arn = engine.start(flaky, None)
        assert first_running.wait(30)
        other_arn = engine.start(other, None)  # queued behind the running invocation
        release.set()
        assert engine.wait(other_arn, timeout=30).status == "SUCCEEDED"
        assert engine.wait(flaky_arn, timeout=30).status == "FAILED"
    assert order == ["flaky", "other", "flaky", "flaky"]
