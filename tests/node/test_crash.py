"""A Node process that dies is a crashed Lambda: Runtime.ExitError, then the engine invokes again."""
from __future__ import annotations

import pytest

from .support import event_types, history, invoke, js, served


@pytest.mark.parametrize("how", ["exit", "uncaught", "rejection", "kill"])
def test_a_crash_is_runtime_exit_error_and_the_next_invocation_replays(js_sdk, tmp_path, how):
    with served({"crashy": js("crashes.mjs")}) as (engine, client):
        arn, result, error = invoke(client, "crashy", {"marker": str(tmp_path / "crashed"), "how": how})
        events = history(client, arn)
    assert error is None, result
    assert result == {"before": "safe", "crashed": "survived"}
    invocations = [e["InvocationCompletedDetails"] for e in events if e["EventType"] == "InvocationCompleted"]
    assert len(invocations) == 2
    assert invocations[0]["Error"]["Payload"]["ErrorType"] == "Runtime.ExitError"
    assert "Error" not in invocations[1]
    succeeded = [e["Name"] for e in events if e["EventType"] == "StepSucceeded"]
    assert succeeded == ["before", "crash"]  # the step before the crash is replayed, not run again
    assert event_types(events)[-1] == "ExecutionSucceeded"


def test_a_handler_that_is_not_durable_fails_with_a_clear_error(js_sdk):
    with served({"plain": js("not_durable.mjs")}) as (engine, client):
        arn, result, error = invoke(client, "plain", {"name": "ann"})
        events = history(client, arn)
    assert error == "Unhandled"
    assert result["errorType"] == "Runtime.InvalidOutput"
    assert "in JavaScript, withDurableExecution" in result["errorMessage"]
    assert "'greeting': 'hello undefined'" in result["errorMessage"]  # it got the envelope
    assert event_types(events)[-1] == "ExecutionFailed"


def test_process_isolation_runs_node_handlers_as_they_are(js_sdk, tmp_path):
    # A Node handler runs in a process of its own already: isolation="process" does not wrap it in a Python
    # child, and its crash is the same Runtime.ExitError.
    from durable_sync.local import LocalEngine

    with LocalEngine(db=":memory:", skip_time=True, isolation="process",
                     functions={"crashy": js("crashes.mjs")}) as engine:
        result = engine.run(engine.functions["crashy"], {"marker": str(tmp_path / "crashed"), "how": "exit"})
        events = engine.history(result.arn)
    assert (result.status, result.result) == ("SUCCEEDED", {"before": "safe", "crashed": "survived"})
    errors = [e["InvocationCompletedDetails"].get("Error") for e in events if e["EventType"] == "InvocationCompleted"]
    assert errors[0]["Payload"]["ErrorType"] == "Runtime.ExitError" and errors[1] is None
