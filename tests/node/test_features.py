"""JavaScript SDK features on the engine under its Lambda API (boto3): map, waitForCallback answered
through the API, a StepError after retries, chained invoke between Python and JavaScript both ways."""
from __future__ import annotations

import json
import os

from durable_sync.local.handlers import load

from .support import HANDLERS, event_types, history, invoke, js, served


def test_map_runs_each_item_as_a_branch(js_sdk):
    with served({"squares": js("features.mjs", "mapItems")}) as (engine, client):
        arn, result, error = invoke(client, "squares", {"items": [1, 2, 3, 4]})
        events = history(client, arn)
    assert (error, result) == (None, {"squares": [1, 4, 9, 16], "succeeded": 4})
    contexts = [(e["SubType"], e.get("Name")) for e in events if e["EventType"] == "ContextStarted"]
    assert contexts[0] == ("Map", "square")
    assert [sub for sub, _ in contexts[1:]] == ["MapIteration"] * 4
    assert sorted(e["Name"] for e in events if e["EventType"] == "StepSucceeded") == [
        "square-1", "square-2", "square-3", "square-4"]


def test_wait_for_callback_answered_through_the_api(js_sdk):
    with served({"approve": js("features.mjs", "approval")}) as (engine, client):
        arn = engine.start(engine.functions["approve"], {"order": "o-17"}, function_name="approve")
        snapshot = engine.snapshot(arn)
        assert snapshot.status == "RUNNING"
        [callback] = snapshot.open_callbacks
        client.send_durable_execution_callback_success(CallbackId=callback.callback_id,
                                                        Result=json.dumps({"approved": True}))
        done = client.get_durable_execution(DurableExecutionArn=arn)
        events = history(client, arn)
    assert done["Status"] == "SUCCEEDED"
    assert json.loads(done["Result"]) == "o-17: approved"
    started = next(e for e in events if e["EventType"] == "CallbackStarted")
    assert started["CallbackStartedDetails"]["CallbackId"] == callback.callback_id
    assert started["CallbackStartedDetails"]["Timeout"] == 3600
    assert [e["SubType"] for e in events if e["EventType"] == "ContextStarted"] == ["WaitForCallback"]
    assert "CallbackSucceeded" in event_types(events)


def test_a_step_fails_with_step_error_after_its_retries(js_sdk):
    with served({"flaky": js("features.mjs", "retriesThenFails")}) as (engine, client):
        arn, result, error = invoke(client, "flaky", {"id": "x1"})
        events = history(client, arn)
    assert error is None
    assert result == {"caught": True, "name": "StepError", "message": "attempt failed for x1"}
    failed = [e["StepFailedDetails"] for e in events if e["EventType"] == "StepFailed"]
    assert [f["RetryDetails"]["CurrentAttempt"] for f in failed] == [1, 2, 3]
    assert [f["RetryDetails"].get("NextAttemptDelaySeconds") for f in failed] == [10, 10, None]
    assert failed[-1]["Error"]["Payload"]["ErrorMessage"] == "attempt failed for x1"
    assert event_types(events).count("InvocationCompleted") == 3


def _python(name: str):
    return load(f"{os.path.join(HANDLERS, 'py_functions.py')}:{name}")


def test_javascript_invokes_python(js_sdk):
    functions = {"js-caller": js("features.mjs", "callsPython"), "py-double": _python("double")}
    with served(functions) as (engine, client):
        arn, result, error = invoke(client, "js-caller", {"n": 21})
        events = history(client, arn)
        [callee] = engine.list_executions(function_name="py-double")
        callee_events = history(client, callee["DurableExecutionArn"])
    assert (error, result) == (None, {"fromPython": {"n": 42}, "plusOne": 43})
    assert event_types(events) == [
        "ExecutionStarted", "ChainedInvokeStarted", "InvocationCompleted", "ChainedInvokeSucceeded",
        "StepStarted", "StepSucceeded", "InvocationCompleted", "ExecutionSucceeded"]
    started = next(e for e in events if e["EventType"] == "ChainedInvokeStarted")
    assert started["ChainedInvokeStartedDetails"]["FunctionName"] == "py-double"
    assert started["ChainedInvokeStartedDetails"]["DurableExecutionArn"] == callee["DurableExecutionArn"]
    succeeded = next(e for e in events if e["EventType"] == "ChainedInvokeSucceeded")
    assert json.loads(succeeded["ChainedInvokeSucceededDetails"]["Result"]["Payload"]) == {"n": 42}
    assert event_types(callee_events) == [
        "ExecutionStarted", "StepStarted", "StepSucceeded", "InvocationCompleted", "ExecutionSucceeded"]
    assert json.loads(callee_events[0]["ExecutionStartedDetails"]["Input"]["Payload"]) == {"n": 21}


def test_python_invokes_javascript(js_sdk):
    functions = {"py-caller": _python("calls_node"), "js-greet": js("features.mjs", "greet")}
    with served(functions) as (engine, client):
        arn, result, error = invoke(client, "py-caller", {"name": "ada"})
        events = history(client, arn)
        [callee] = engine.list_executions(function_name="js-greet")
        callee_events = history(client, callee["DurableExecutionArn"])
    assert error is None
    assert result == {"fromNode": {"greeting": "hello ada from node"}, "length": 19}
    assert [e["EventType"] for e in events if e["EventType"].startswith("ChainedInvoke")] == [
        "ChainedInvokeStarted", "ChainedInvokeSucceeded"]
    started = next(e for e in events if e["EventType"] == "ChainedInvokeStarted")
    assert (started["Name"], started["ChainedInvokeStartedDetails"]["FunctionName"]) == ("ask-node", "js-greet")
    assert started["ChainedInvokeStartedDetails"]["DurableExecutionArn"] == callee["DurableExecutionArn"]
    assert json.loads(callee_events[0]["ExecutionStartedDetails"]["Input"]["Payload"]) == {"name": "ada"}
    assert event_types(callee_events) == [
        "ExecutionStarted", "StepStarted", "StepSucceeded", "WaitStarted", "InvocationCompleted",
        "WaitSucceeded", "InvocationCompleted", "ExecutionSucceeded"]


def test_the_guides_pytest_example(js_sdk):
    """docs/javascript.md's pytest example, on the order workflow of the cloud-runner test."""
    from durable_sync.local import LocalEngine

    with LocalEngine(db=":memory:", skip_time=True, real_time_callbacks=True,
                     functions={"orders": f"{HANDLERS}/order.mjs:handler"}) as engine:
        arn = engine.start(engine.functions["orders"], {"orderId": "o-1", "items": []}, function_name="orders")
        assert engine.wait(arn).status == "RUNNING"
        [callback] = engine.snapshot(arn).open_callbacks
        engine.send_callback_success(callback.callback_id, json.dumps({"approved": True}))
        result = engine.get_execution(arn)
        assert (result.status, result.result) == ("SUCCEEDED", {"orderId": "o-1", "status": "SHIPPED"})
        assert [e["EventType"] for e in engine.history(arn)][-1] == "ExecutionSucceeded"
