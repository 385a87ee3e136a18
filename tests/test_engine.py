"""The engine with many executions: independence, one invocation in flight each, bounded invocation
retries, execution timeout, stop, and listing/filtering executions."""
from __future__ import annotations

import threading
import time

import pytest

import durable_sync as ds
from durable_sync.local import LocalEngine, ServiceError
from durable_sync.local.engine import MAX_INVOCATION_ATTEMPTS


def _types(engine, arn):
    return [e["EventType"] for e in engine.history(arn)]


# -- many executions ----------------------------------------------------------------------------------
_in_flight: dict[str, int] = {}
_max_in_flight: dict[str, int] = {}
_guard = threading.Lock()


def _enter(arn: str) -> None:
    with _guard:
        _in_flight[arn] = _in_flight.get(arn, 0) + 1
        _max_in_flight[arn] = max(_max_in_flight.get(arn, 0), _in_flight[arn])


def _leave(arn: str) -> None:
    with _guard:
        _in_flight[arn] -= 1


@ds.durable_handler
def busy(event, ctx):
    _enter(ctx.execution_arn)
    try:
        total = 0
        for i in range(event["steps"]):
            total += ctx.step(f"s{i}", lambda s, i=i: (time.sleep(0.001), i)[1])  # simulated work
        if event.get("fail"):
            raise ValueError(f"execution {event['k']} fails on purpose")
        return {"k": event["k"], "total": total}
    finally:
        _leave(ctx.execution_arn)


def test_many_executions_run_concurrently_and_independently():
    engine = LocalEngine(db=":memory:")  # real time: the invocation pool runs them side by side
    try:
        arns = [engine.start(busy, {"k": k, "steps": 20, "fail": k % 5 == 0}) for k in range(25)]
        # completions of other executions ask for re-invocations meanwhile; one in flight each
        results = {arn: engine.wait(arn, timeout=60) for arn in arns}
    finally:
        engine.close()
    for k, arn in enumerate(arns):
        result = results[arn]
        if k % 5 == 0:
            assert result.status == "FAILED" and result.error["ErrorType"] == "ValueError"
        else:
            assert (result.status, result.result) == ("SUCCEEDED", {"k": k, "total": 190})
        assert _max_in_flight[arn] == 1


@ds.durable_handler
def waits_then_steps(event, ctx):
    ctx.wait(event["wait"], name="w")
    return ctx.step("after", lambda s: event["wait"])


def test_one_invocation_in_flight_per_execution_even_when_completions_pile_up():
    seen = []
    lock = threading.Lock()
    active = set()

    @ds.durable_handler
    def fan(event, ctx):
        with lock:
            assert ctx.execution_arn not in active, "two invocations of one execution at once"
            active.add(ctx.execution_arn)
        try:
            cbs = [ctx.create_callback(f"cb{i}") for i in range(5)]
            time.sleep(0.01)  # let answers arrive while this invocation still runs
            seen.append(len(cbs))
            return [cb.result() for cb in cbs]
        finally:
            with lock:
                active.discard(ctx.execution_arn)

    engine = LocalEngine(db=":memory:")
    try:
        arn = engine.start(fan, None)
        ids = []
        for _ in range(500):
            ids = [op["CallbackDetails"]["CallbackId"] for op in engine.operations(arn) if op["Type"] == "CALLBACK"]
            if len(ids) == 5:
                break
            time.sleep(0.01)
        threads = [threading.Thread(target=engine.send_callback_success, args=(cid, str(i)))
                   for i, cid in enumerate(ids)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        result = engine.wait(arn, timeout=30)
        assert (result.status, result.result) == ("SUCCEEDED", [0, 1, 2, 3, 4])
    finally:
        engine.close()


def test_executions_in_virtual_time_do_not_disturb_each_other():
    with LocalEngine(db=":memory:", skip_time=True) as engine:
        short = engine.start(waits_then_steps, {"wait": 5})
        long = engine.start(waits_then_steps, {"wait": 500})
        engine.advance(10)
        assert engine.get_execution(short).result == 5
        assert engine.get_execution(long).status == "RUNNING"
        assert engine.wait(long).result == 500


# -- invocation errors: bounded retries ---------------------------------------------------------------------
_raise_times: dict[str, int] = {}


def _raising(event, lambda_context):
    arn = event["DurableExecutionArn"]
    _raise_times[arn] = _raise_times.get(arn, 0) + 1
    raise ConnectionError("the runtime lost its connection")


def _invalid_output(event, lambda_context):
    return "this is not a durable output"


@ds.durable_handler
def _one_step(event, ctx):
    return ctx.step("only", lambda s: "v")


def flaky_invocation(event, lambda_context):
    """The runtime breaks after the first invocation checkpointed its step (not a handler error)."""
    output = _one_step(event, lambda_context)
    if not _flaky_done:
        _flaky_done.append(True)
        raise SystemError("first invocation breaks after the step")
    return output


_flaky_done: list = []


def test_a_handler_that_raises_is_retried_a_bounded_number_of_times_then_fails():
    with LocalEngine(db=":memory:", skip_time=True) as engine:
        result = engine.run(_raising, None)
        assert result.status == "FAILED"
        assert result.error["ErrorType"] == "ConnectionError"
        assert f"failed {MAX_INVOCATION_ATTEMPTS} times" in result.error["ErrorMessage"]
        assert "lost its connection" in result.error["ErrorMessage"]
        assert _raise_times[result.arn] == MAX_INVOCATION_ATTEMPTS
        types = _types(engine, result.arn)
        assert types == ["ExecutionStarted"] + ["InvocationCompleted"] * MAX_INVOCATION_ATTEMPTS + ["ExecutionFailed"]
        errors = [e["InvocationCompletedDetails"]["Error"]["Payload"]["ErrorType"]
                  for e in engine.history(result.arn) if e["EventType"] == "InvocationCompleted"]
        assert errors == ["ConnectionError"] * MAX_INVOCATION_ATTEMPTS


def test_an_invalid_output_is_an_invocation_error():
    with LocalEngine(db=":memory:", skip_time=True) as engine:
        result = engine.run(_invalid_output, None)
        assert result.status == "FAILED" and result.error["ErrorType"] == "Runtime.InvalidOutput"
        assert "not a durable output" in result.error["ErrorMessage"]
        assert _types(engine, result.arn).count("InvocationCompleted") == MAX_INVOCATION_ATTEMPTS


def test_a_transient_invocation_error_is_retried_and_the_execution_goes_on():
    _flaky_done.clear()
    with LocalEngine(db=":memory:", skip_time=True) as engine:
        result = engine.run(flaky_invocation, None)
        assert (result.status, result.result) == ("SUCCEEDED", "v")
        completed = [e["InvocationCompletedDetails"] for e in engine.history(result.arn)
                     if e["EventType"] == "InvocationCompleted"]
        assert completed[0]["Error"]["Payload"]["ErrorType"] == "SystemError" and "Error" not in completed[1]


# -- execution timeout and stop --------------------------------------------------------------------------------
def test_the_execution_timeout_ends_an_execution_timed_out():
    with LocalEngine(db=":memory:", skip_time=True) as engine:
        arn = engine.start(waits_then_steps, {"wait": 600}, execution_timeout=60)
        result = engine.wait(arn)
        assert result.status == "TIMED_OUT"
        assert result.error["ErrorType"] == "Execution.Timeout"
        history = engine.history(arn)
        assert history[-1]["EventType"] == "ExecutionTimedOut"
        started = history[0]["EventTimestamp"]
        assert (history[-1]["EventTimestamp"] - started).total_seconds() == 60
        assert "WaitSucceeded" not in [e["EventType"] for e in history]
        with pytest.raises(ServiceError, match="already TIMED_OUT"):
            engine.stop(arn)


def test_the_execution_timeout_survives_a_restart(tmp_path):
    db = str(tmp_path / "d.db")
    with LocalEngine(db=db, skip_time=True) as engine:
        arn = engine.start(waits_then_steps, {"wait": 600}, execution_timeout=60)
    with LocalEngine(db=db, skip_time=True) as engine:
        assert engine.wait(arn).status == "TIMED_OUT"


def test_execution_timeout_bounds():
    with LocalEngine(db=":memory:", skip_time=True) as engine:
        with pytest.raises(ServiceError):
            engine.start(waits_then_steps, {"wait": 1}, execution_timeout=0)


def test_stop_ends_a_running_execution():
    with LocalEngine(db=":memory:", skip_time=True) as engine:
        arn = engine.start(waits_then_steps, {"wait": 600})
        stopped = engine.stop(arn)
        assert stopped.status == "STOPPED"
        assert engine.history(arn)[-1]["EventType"] == "ExecutionStopped"
        engine.advance(700)  # its wait never fires, nothing is invoked
        assert _types(engine, arn)[-1] == "ExecutionStopped"
        assert engine.get_execution(arn).status == "STOPPED"
        with pytest.raises(ServiceError, match="already STOPPED"):
            engine.stop(arn)
        with pytest.raises(ServiceError):
            engine.stop("arn:aws:lambda:us-east-1:000000000000:function:x:$LATEST/durable-execution/n/none")


def test_stop_with_an_error_and_after_a_restart(tmp_path):
    db = str(tmp_path / "d.db")
    with LocalEngine(db=db, skip_time=True) as engine:
        arn = engine.start(waits_then_steps, {"wait": 600})
    with LocalEngine(db=db, skip_time=True) as engine:
        engine.stop(arn, error={"ErrorType": "Operator", "ErrorMessage": "enough"})
    with LocalEngine(db=db, skip_time=True) as engine:
        result = engine.get_execution(arn)
        assert (result.status, result.error) == ("STOPPED", {"ErrorType": "Operator", "ErrorMessage": "enough"})


# -- listing ----------------------------------------------------------------------------------------------------
@ds.durable_handler
def other_function(event, ctx):
    return event


def test_list_executions_filters_by_function_name_and_status(tmp_path):
    db = str(tmp_path / "d.db")
    with LocalEngine(db=db, skip_time=True) as engine:
        done = engine.start(waits_then_steps, {"wait": 1}, name="quick")
        engine.advance(2)
        waiting = engine.start(waits_then_steps, {"wait": 1000}, name="slow")
        other = engine.start(other_function, {"x": 1}, name="quick")
        stopped = engine.start(waits_then_steps, {"wait": 1000}, name="halt")
        engine.stop(stopped)

    with LocalEngine(db=db, skip_time=True) as engine:
        def arns(**filters):
            return {e["DurableExecutionArn"] for e in engine.list_executions(**filters)}

        assert arns() == {done, waiting, other, stopped}
        assert arns(function_name="waits_then_steps") == {done, waiting, stopped}
        assert arns(function_name="other_function") == {other}
        assert arns(name="quick") == {done, other}
        assert arns(status="RUNNING") == {waiting}
        assert arns(status="SUCCEEDED") == {done, other}
        assert arns(status="STOPPED") == {stopped}
        assert arns(function_name="waits_then_steps", name="quick", status="SUCCEEDED") == {done}
        assert arns(function_name="nope") == set()
        [entry] = engine.list_executions(name="slow")
        assert entry["FunctionName"] == "waits_then_steps" and entry["DurableExecutionName"] == "slow"
        assert "EndTimestamp" not in entry and entry["StartTimestamp"].tzinfo is not None


def test_a_name_is_unique_per_function():
    with LocalEngine(db=":memory:", skip_time=True) as engine:
        first = engine.start(waits_then_steps, {"wait": 5}, name="same")
        assert engine.start(waits_then_steps, {"wait": 5}, name="same") == first  # idempotent start
        with pytest.raises(ServiceError, match="already exists"):
            engine.start(waits_then_steps, {"wait": 6}, name="same")
        assert engine.start(other_function, {"wait": 5}, name="same") != first  # another function


def test_a_failing_timer_does_not_stop_the_real_time_scheduler(monkeypatch):
    import durable_sync.local.scheduler as scheduler_module

    monkeypatch.setattr(scheduler_module, "TIMER_RETRY_MS", 10)

    @ds.durable_handler
    def caller(event, ctx):
        return ctx.invoke("double", 21)

    engine = LocalEngine(db=":memory:", functions={"double": lambda event, context: event * 2})
    real_fire, failures = engine._fire, []

    def flaky_fire(timer):
        if timer.kind == "invoke" and not failures:
            failures.append(timer)
            raise OSError("disk hiccup")
        return real_fire(timer)

    engine._fire = flaky_fire
    try:
        result = engine.wait(engine.start(caller, execution_timeout=60), timeout=10)  # bounded: no hang if broken
    finally:
        engine.close()
    assert failures, "the invoke timer never fired"
    assert (result.status, result.result) == ("SUCCEEDED", 42)


def test_an_execution_the_store_refuses_is_not_started_in_memory():
    from durable_sync.local.store import MemoryStore

    class FullDisk(MemoryStore):
        def create_execution(self, ex):
            raise OSError("No space left on device")

    @ds.durable_handler
    def handler(event, ctx):
        return "never"

    engine = LocalEngine(db=FullDisk(), skip_time=True)
    try:
        with pytest.raises(ServiceError) as info:
            engine.start(handler, input=1, name="n")
        assert info.value.status == 500 and "No space left" in info.value.message
        assert engine.list_executions() == []
    finally:
        engine.close()


def test_a_lasting_timer_failure_reaches_the_virtual_time_caller_after_bounded_retries():
    import durable_sync.local.scheduler as scheduler_module

    @ds.durable_handler
    def waits(event, ctx):
        ctx.wait(5)
        return "done"

    engine = LocalEngine(db=":memory:", skip_time=True)
    arn = engine.start(waits)
    real_fire, fired = engine._fire, []

    def broken_fire(timer):
        fired.append(timer.kind)
        raise OSError("the disk stays full")

    engine._fire = broken_fire
    try:
        with pytest.raises(OSError, match="stays full"):
            engine.wait(arn)  # no endless retry loop in virtual time
        assert fired == ["wait"] * scheduler_module.MAX_TIMER_FAILURES
        engine._fire = real_fire  # the fault clears: the timer armed again fires
        assert (engine.wait(arn).status, engine.wait(arn).result) == ("SUCCEEDED", "done")
    finally:
        engine.close()
