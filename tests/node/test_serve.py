"""JavaScript handlers under the engine's Lambda API, driven by boto3 as on AWS."""
from __future__ import annotations

from .support import event_types, history, invoke, js, served


def test_step_wait_step_succeeds_with_the_services_history(js_sdk):
    with served({"greet": js("step_wait.mjs")}) as (engine, client):
        arn, result, error = invoke(client, "greet", {"name": "bob"})
        events = history(client, arn)
    assert error is None
    assert result == {"first": "hello bob", "second": "HELLO BOB"}
    assert event_types(events) == [
        "ExecutionStarted", "StepStarted", "StepSucceeded", "WaitStarted", "InvocationCompleted",
        "WaitSucceeded", "StepStarted", "StepSucceeded", "InvocationCompleted", "ExecutionSucceeded"]
    steps = [e for e in events if e["EventType"] == "StepSucceeded"]
    assert [(e["Name"], e["StepSucceededDetails"]["Result"]["Payload"]) for e in steps] == [
        ("first", '"hello bob"'), ("second", '"HELLO BOB"')]
    wait = next(e for e in events if e["EventType"] == "WaitStarted")
    assert wait["WaitStartedDetails"]["Duration"] == 2
