"""durable_sync.events: one table of history events and the operation changes they record, checked
against botocore's model and against the histories the engine writes."""
from __future__ import annotations

import botocore.session
import pytest

import durable_sync as ds
from durable_sync import events, wire
from durable_sync.local import LocalEngine

RETRY_ONCE = ds.StepConfig(retry_strategy=lambda err, attempt: (
    ds.RetryDecision.retry(5) if attempt < 2 else ds.RetryDecision.no_retry()))


def test_the_table_covers_every_event_type_of_the_model():
    model = botocore.session.get_session().get_service_model("lambda")
    assert set(events.EVENTS) == set(model.shape_for("EventType").enum)
    statuses = set(model.shape_for("OperationStatus").enum)
    assert {rule.status for rule in events.EVENTS.values()} - {None} <= statuses


@pytest.mark.parametrize("event_type", [t for t, r in events.EVENTS.items() if r.status is not None])
def test_event_for_is_the_inverse_of_the_table(event_type):
    rule = events.EVENTS[event_type]
    assert events.event_for(rule.operation_type, rule.status) == event_type
    assert events.status_after({"EventType": event_type}) == rule.status


def test_statuses_without_an_event_of_their_own():
    assert events.event_for(wire.CALLBACK, wire.CANCELLED) == "CallbackFailed"
    assert events.event_for(wire.CHAINED_INVOKE, wire.CANCELLED) == "ChainedInvokeStopped"
    retried = {"EventType": "StepFailed", "StepFailedDetails": {"RetryDetails": {"CurrentAttempt": 1,
                                                                                   "NextAttemptDelaySeconds": 5}}}
    assert events.status_after(retried) == wire.PENDING
    assert events.retry_event(has_error=True) == "StepFailed"
    with pytest.raises(ValueError, match="no history event"):
        events.event_for(wire.STEP, wire.READY)


@ds.durable_handler
def target(event, ctx):
    return ctx.step(lambda _: event * 2, name="double")


ATTEMPTS: list = []


@ds.durable_handler
def everything(event, ctx):
    def flaky(_):
        ATTEMPTS.append(1)
        if len(ATTEMPTS) < 2:
            raise RuntimeError("first attempt fails")
        return "ok"

    ctx.step(flaky, name="flaky", config=RETRY_ONCE)
    ctx.wait(10, name="nap")
    ctx.run_in_child_context(lambda child: child.step(lambda _: 1, name="inner"), name="kid")
    answer = ctx.create_callback("approve")
    late = ctx.create_callback("late", config=ds.CallbackConfig(timeout=ds.Duration.from_seconds(5)))
    try:
        late.result()
    except ds.CallbackError:
        pass
    doubled = ctx.invoke("target", 21, name="call")
    return {"answer": answer.result(), "doubled": doubled}


def test_the_engine_records_every_change_with_the_event_the_table_names():
    """Replaying the engine's history through the table gives each operation the status the engine holds."""
    with LocalEngine(db=":memory:", skip_time=True, functions={"target": target}) as engine:
        arn = engine.start(everything, None)
        engine.wait(arn)
        [approve] = [c for c in engine.snapshot(arn).open_callbacks if c.operation_name == "approve"]
        engine.send_callback_success(approve.callback_id, '"yes"')
        result = engine.wait(arn)
        assert result.result == {"answer": "yes", "doubled": 42}
        history, operations = engine.history(arn), engine.operations(arn)
    replayed = {}
    for event in history:
        rule = events.EVENTS[event["EventType"]]
        status = events.status_after(event)
        assert rule.operation_type == next(op["Type"] for op in operations if op["Id"] == event["Id"])
        if status is not None:
            replayed[event["Id"]] = status
    assert replayed == {op["Id"]: op["Status"] for op in operations}
    seen = {e["EventType"] for e in history}
    assert {"StepFailed", "WaitSucceeded", "ContextSucceeded", "CallbackTimedOut", "CallbackSucceeded",
            "ChainedInvokeSucceeded", "ExecutionSucceeded"} <= seen
