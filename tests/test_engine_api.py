"""The engine's public read API and options: snapshot(), functions, list_executions(), clock=,
max_concurrent_invocations, resume_unfinished, and start_server() of the HTTP façade."""
from __future__ import annotations

import datetime as dt
import threading

import boto3
import pytest

import durable_sync as ds
from durable_sync.errors import ValidationError
from durable_sync.local import LocalEngine
from durable_sync.local.clock import RealClock, VirtualClock
from durable_sync.local.engine import DEFAULT_MAX_CONCURRENT_INVOCATIONS
from durable_sync.local.http import start_server


@ds.durable_handler
def waits_then_asks(event, ctx: ds.DurableContext):
    ctx.step(lambda _: "prepared", name="prepare")
    ctx.wait(30, name="cool-down")
    callback = ctx.create_callback("approval")
    return {"approved": callback.result()}


@ds.durable_handler
def quick(event, ctx: ds.DurableContext):
    return ctx.step(lambda _: event, name="echo")


@ds.durable_handler
def one_wait(event, ctx: ds.DurableContext):
    ctx.wait(60, name="nap")
    return "woke"


# -- snapshot ------------------------------------------------------------------------------------
def test_snapshot_shows_timers_callbacks_operations_and_history():
    with LocalEngine(db=":memory:", skip_time=True) as engine:
        arn = engine.start(waits_then_asks, {})
        first = engine.snapshot(arn)
        assert first.status == "RUNNING" and first.function_name == "waits_then_asks"
        assert [(t.kind, t.operation_name) for t in first.pending_timers] == [("wait", "cool-down"),
                                                                              ("execution_timeout", None)]
        assert first.pending_timers[0].due_ms == first.start_ms + 30_000
        assert first.open_callbacks == () and not first.waits_on_outside  # the wait will move it
        assert [op.get("Name") for op in first.operations if op["Type"] == "STEP"] == ["prepare"]
        assert first.history[0]["EventType"] == "ExecutionStarted"
        assert isinstance(first.history[0]["EventTimestamp"], dt.datetime)
        assert first.invocations == 1 and not first.invocation_in_flight and not first.invocation_queued

        engine.advance(30)
        second = engine.snapshot(arn)
        [callback] = second.open_callbacks
        assert callback.operation_name == "approval"
        assert [t.kind for t in second.pending_timers] == ["execution_timeout"]  # the fired wait is gone
        assert second.waits_on_outside  # only an answer moves it now
        assert first.pending_timers[0].kind == "wait"  # a snapshot does not change afterwards

        engine.send_callback_success(callback.callback_id, '"yes"')
        done = engine.snapshot(arn)
        assert done.status == "SUCCEEDED" and done.execution.result == {"approved": "yes"}
        assert done.pending_timers == () and done.open_callbacks == () and done.end_ms is not None
        assert done.waits_on_outside


def test_snapshot_of_an_unknown_execution_is_not_found():
    with LocalEngine(db=":memory:", skip_time=True) as engine:
        with pytest.raises(ds.local.ServiceError) as info:
            engine.snapshot("arn:nope")
        assert info.value.code == "ResourceNotFoundException"


# -- next_due_ms ----------------------------------------------------------------------------------
def test_next_due_ms_is_when_the_engine_next_acts_by_itself():
    with LocalEngine(db=":memory:", skip_time=True) as engine:
        assert engine.next_due_ms() is None  # nothing runs
        arn = engine.start(waits_then_asks, {}, execution_timeout=3600)
        start = engine.snapshot(arn).start_ms
        assert engine.next_due_ms() == start + 30_000  # the wait
        engine.advance(30)
        assert engine.next_due_ms() is None  # only the callback answer moves it now
        assert engine.next_due_ms(execution_timeouts=True) == start + 3_600_000
        engine.stop(arn)
        assert engine.next_due_ms(execution_timeouts=True) is None  # an ended execution has nothing due


# -- functions -----------------------------------------------------------------------------------
def test_functions_is_a_read_only_view_of_the_registry():
    with LocalEngine(db=":memory:", skip_time=True, functions={"echo": quick}) as engine:
        functions = engine.functions
        assert dict(functions) == {"echo": quick}
        with pytest.raises(TypeError):
            functions["other"] = quick  # type: ignore[index]
        engine.register_function("later", one_wait)
        assert set(engine.functions) == {"echo", "later"}


# -- list_executions ------------------------------------------------------------------------------
def test_list_executions_filters_orders_and_pages():
    with LocalEngine(db=":memory:", skip_time=True) as engine:
        arns = []
        for i in range(5):
            arns.append(engine.start(quick if i % 2 else one_wait, {"i": i}, name=f"e{i}"))
            engine.advance(1)  # distinct start times
        assert [e["DurableExecutionArn"] for e in engine.list_executions()] == arns
        assert [e["DurableExecutionName"] for e in engine.list_executions(reverse=True)] == ["e4", "e3", "e2", "e1",
                                                                                          "e0"]
        assert [e["DurableExecutionName"] for e in engine.list_executions(function_name="quick")] == ["e1", "e3"]
        assert [e["DurableExecutionName"] for e in engine.list_executions(status="RUNNING")] == ["e0", "e2", "e4"]
        assert len(engine.list_executions(status=["RUNNING", "SUCCEEDED"])) == 5
        started = [e["StartTimestamp"] for e in engine.list_executions()]
        window = engine.list_executions(started_after=started[0], started_before=started[3])
        assert [e["DurableExecutionName"] for e in window] == ["e1", "e2"]
        pages = [engine.list_executions(offset=o, limit=2) for o in (0, 2, 4)]
        assert [[e["DurableExecutionName"] for e in p] for p in pages] == [["e0", "e1"], ["e2", "e3"], ["e4"]]


# -- options ------------------------------------------------------------------------------------
@pytest.mark.parametrize("value", [0, -1, 1.5, True, "8", 10 ** 6])
def test_max_concurrent_invocations_is_validated(value):
    with pytest.raises(ValidationError, match="max_concurrent_invocations"):
        LocalEngine(db=":memory:", skip_time=True, max_concurrent_invocations=value)


def test_max_concurrent_invocations_bounds_the_invocations_running_at_once():
    gate = threading.Event()
    running, peak, lock = [0], [0], threading.Condition()

    @ds.durable_handler
    def blocked(event, ctx):
        def body(_):
            with lock:
                running[0] += 1
                peak[0] = max(peak[0], running[0])
                lock.notify_all()
            gate.wait(30)
            with lock:
                running[0] -= 1
            return event
        return ctx.step(body)

    assert DEFAULT_MAX_CONCURRENT_INVOCATIONS >= 16
    with LocalEngine(db=":memory:", max_concurrent_invocations=2) as engine:
        arns = [engine.start(blocked, i) for i in range(5)]
        with lock:
            assert lock.wait_for(lambda: running[0] == 2, timeout=30)  # the pool is full: the others queue
        gate.set()
        assert [engine.wait(arn, timeout=30).result for arn in arns] == list(range(5))
    assert peak[0] == 2


class _FrozenClock:
    """A clock with no way to move or wait: neither time mode can use it."""

    def now_ms(self) -> int:
        return 0


@pytest.mark.parametrize("skip_time, clock, message", [
    (False, VirtualClock(), "needs a real clock"),
    (True, RealClock(), "is not one"),
    (True, _FrozenClock(), "is not one"),
    (False, _FrozenClock(), "needs a real clock"),
    (True, object(), "no now_ms"),
])
def test_a_clock_that_cannot_serve_the_time_mode_is_refused_at_construction(skip_time, clock, message):
    with pytest.raises(ValidationError, match=message):
        LocalEngine(db=":memory:", skip_time=skip_time, clock=clock)


def test_a_matching_clock_is_used():
    clock = VirtualClock(start_ms=1_000_000)
    with LocalEngine(db=":memory:", skip_time=True, clock=clock) as engine:
        arn = engine.start(one_wait, None)
        assert engine.snapshot(arn).start_ms == 1_000_000
        engine.advance(60)
        assert engine.get_execution(arn).result == "woke" and clock.now_ms() == 1_060_000


def test_resume_unfinished_false_leaves_loaded_executions_alone_until_attached(tmp_path):
    db = str(tmp_path / "d.db")
    with LocalEngine(db=db, skip_time=True) as engine:
        mine = engine.start(one_wait, None, name="mine")
        other = engine.start(one_wait, None, name="other")
    with LocalEngine(db=db, skip_time=True, resume_unfinished=False, functions={"one_wait": one_wait}) as engine:
        engine.advance(120)
        assert {e["DurableExecutionName"]: e["Status"] for e in engine.list_executions()} == {
            "mine": "RUNNING", "other": "RUNNING"}
        assert engine.snapshot(mine).pending_timers == ()  # nothing armed for it
        assert engine.start(one_wait, None, name="mine") == mine  # attaching runs it onward
        assert engine.wait(mine).result == "woke"
        assert engine.get_execution(other).status == "RUNNING"
        assert engine.snapshot(other).invocations == 1
    with LocalEngine(db=db, skip_time=True, functions={"one_wait": one_wait}) as engine:  # the default resumes
        assert engine.wait(other).result == "woke"


# -- the HTTP façade as a library ----------------------------------------------------------------------
def test_start_server_serves_the_lambda_api_until_stopped():
    with LocalEngine(db=":memory:", skip_time=True, functions={"echo": quick}) as engine:
        url, stop, _ = start_server(engine)
        try:
            assert url.startswith("http://127.0.0.1:")
            lam = boto3.client("lambda", endpoint_url=url, region_name="us-east-1", aws_access_key_id="x",
                               aws_secret_access_key="x")
            answer = lam.invoke(FunctionName="echo", Payload=b'{"a": 1}', DurableExecutionName="one")
            assert answer["Payload"].read() == b'{"a": 1}'
            listed = lam.list_durable_executions_by_function(FunctionName="echo")["DurableExecutions"]
            assert [e["DurableExecutionName"] for e in listed] == ["one"]
        finally:
            stop()
            stop()  # idempotent
