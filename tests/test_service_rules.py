"""The engine accepts what the service accepts and refuses what it refuses (CheckpointDurableExecution).

Each refusal is an InvalidParameterValueException (a 4xx) naming the problem, and leaves nothing
behind: operations, history, token, and the callback ids a refused batch would have issued. The
accepted side: the official SDK's EXECUTION update (its Id is ``execution-result-<ms>``), which ends
the execution at its checkpoint, and checkpoint responses that carry the operations the batch created
or changed (paged, GetDurableExecutionState serving the rest).
"""
from __future__ import annotations

import json

import pytest

from durable_sync.local import LocalEngine, ServiceError
from durable_sync.local.service import MAX_CALLBACK_TIMEOUT_SECONDS, MAX_ERROR_BYTES, PAGE_MAX_ITEMS


@pytest.fixture
def live():
    """An execution whose (raw) handler checkpointed one open wait and returned PENDING: the test then
    checkpoints with the current token as a client of the service would."""
    engine = LocalEngine(db=":memory:", skip_time=True)
    tokens = {}

    def raw(event, lambda_context):
        arn = event["DurableExecutionArn"]
        response = engine.checkpoint(arn, event["CheckpointToken"], [
            {"Id": "w", "Type": "WAIT", "SubType": "Wait", "Action": "START", "WaitOptions": {"WaitSeconds": 3600}}])
        tokens[arn] = response["CheckpointToken"]
        return {"Status": "PENDING"}

    arn = engine.start(raw, {})
    yield engine, arn, tokens
    engine.close()


def _snapshot(engine, arn):
    return engine.operations(arn), engine.history(arn), dict(engine._callbacks)


STEP = {"Type": "STEP", "SubType": "Step"}
ERROR = {"ErrorType": "E", "ErrorMessage": "m"}

REFUSED = [
    ("succeed-with-error", [{"Id": "s", **STEP, "Action": "START"},
                            {"Id": "s", **STEP, "Action": "SUCCEED", "Payload": "1", "Error": ERROR}],
     "SUCCEED update cannot carry an Error"),
    ("fail-with-payload", [{"Id": "s", **STEP, "Action": "START"},
                           {"Id": "s", **STEP, "Action": "FAIL", "Payload": "1", "Error": ERROR}],
     "FAIL update cannot carry a Payload"),
    ("context-succeed-with-error", [{"Id": "c", "Type": "CONTEXT", "SubType": "RunInChildContext", "Action": "START"},
                                    {"Id": "c", "Type": "CONTEXT", "SubType": "RunInChildContext",
                                     "Action": "SUCCEED", "Error": ERROR}], "cannot carry an Error"),
    ("retry-with-both", [{"Id": "s", **STEP, "Action": "START"},
                         {"Id": "s", **STEP, "Action": "RETRY", "Payload": "1", "Error": ERROR,
                          "StepOptions": {"NextAttemptDelaySeconds": 1}}], "not both"),
    ("retry-without-delay", [{"Id": "s", **STEP, "Action": "START"}, {"Id": "s", **STEP, "Action": "RETRY"}],
     "NextAttemptDelaySeconds"),
    ("error-over-the-limit", [{"Id": "s", **STEP, "Action": "START"},
                              {"Id": "s", **STEP, "Action": "FAIL",
                               "Error": {"ErrorType": "E", "ErrorMessage": "x" * MAX_ERROR_BYTES}}],
     f"at most {MAX_ERROR_BYTES} bytes"),
    ("error-not-an-object", [{"Id": "s", **STEP, "Action": "START"}, {"Id": "s", **STEP, "Action": "FAIL",
                                                                    "Error": "boom"}], "ErrorObject"),
    ("execution-not-last", [{"Id": "execution-result-1", "Type": "EXECUTION", "Action": "SUCCEED", "Payload": "1"},
                            {"Id": "s", **STEP, "Action": "START"}], "must be the last"),
    ("two-execution-updates", [{"Id": "execution-result-1", "Type": "EXECUTION", "Action": "SUCCEED", "Payload": "1"},
                               {"Id": "execution-result-2", "Type": "EXECUTION", "Action": "SUCCEED",
                                "Payload": "2"}], "at most one EXECUTION"),
    ("execution-succeed-with-error", [{"Id": "execution-result-1", "Type": "EXECUTION", "Action": "SUCCEED",
                                       "Error": ERROR}], "cannot carry an Error"),
    ("execution-fail-with-payload", [{"Id": "execution-result-1", "Type": "EXECUTION", "Action": "FAIL",
                                      "Payload": "1", "Error": ERROR}], "cannot carry a Payload"),
    ("callback-cancel", [{"Id": "cb", "Type": "CALLBACK", "SubType": "Callback", "Action": "START"},
                         {"Id": "cb", "Type": "CALLBACK", "SubType": "Callback", "Action": "CANCEL"}],
     "not valid for type CALLBACK"),
    ("invoke-cancel", [{"Id": "i", "Type": "CHAINED_INVOKE", "SubType": "ChainedInvoke", "Action": "START",
                        "ChainedInvokeOptions": {"FunctionName": "f"}},
                       {"Id": "i", "Type": "CHAINED_INVOKE", "SubType": "ChainedInvoke", "Action": "CANCEL"}],
     "not valid for type CHAINED_INVOKE"),
    ("callback-timeout-over-the-model-bound", [
        {"Id": "cb", "Type": "CALLBACK", "SubType": "Callback", "Action": "START",
         "CallbackOptions": {"TimeoutSeconds": MAX_CALLBACK_TIMEOUT_SECONDS + 1}}], "TimeoutSeconds"),
]


@pytest.mark.parametrize("updates,hint", [pytest.param(u, h, id=i) for i, u, h in REFUSED])
def test_the_engine_refuses_what_the_service_refuses_and_keeps_nothing_of_the_batch(live, updates, hint):
    engine, arn, tokens = live
    # A callback first in every batch: a refused batch must not leave its callback id behind.
    batch = [{"Id": "early", "Type": "CALLBACK", "SubType": "Callback", "Action": "START"}] + updates
    before = _snapshot(engine, arn)
    with pytest.raises(ServiceError) as info:
        engine.checkpoint(arn, tokens[arn], batch, "ct")
    assert (info.value.code, info.value.status) == ("InvalidParameterValueException", 400)
    assert hint in info.value.message, info.value.message
    assert _snapshot(engine, arn) == before  # operations, history and callback ids: nothing of the batch
    response = engine.checkpoint(arn, tokens[arn], [{"Id": "ok", **STEP, "Action": "START"}])  # token still good
    assert [op["Id"] for op in response["NewExecutionState"]["Operations"]] == ["ok"]


def test_the_official_sdks_execution_update_ends_the_execution_at_its_checkpoint(live):
    """Its Id is not the execution's: the service applies it to the execution, answers without a new token
    (nothing more can be checkpointed) and the invocation's empty Result is then ignored."""
    engine, arn, tokens = live
    payload = json.dumps({"big": "x" * 100})
    response = engine.checkpoint(arn, tokens[arn], [
        {"Id": "s", **STEP, "Action": "START"}, {"Id": "s", **STEP, "Action": "SUCCEED", "Payload": "1"},
        {"Id": "execution-result-1700000000000", "Type": "EXECUTION", "Action": "SUCCEED", "Payload": payload}])
    assert "CheckpointToken" not in response
    assert [op["Id"] for op in response["NewExecutionState"]["Operations"]] == ["s"]
    result = engine.get_execution(arn)
    assert (result.status, result.raw_result) == ("SUCCEEDED", payload)
    assert engine.history(arn)[-1]["EventType"] == "ExecutionSucceeded"
    assert not any(op["Id"].startswith("execution-result") for op in engine.operations(arn))
    with pytest.raises(ServiceError, match="SUCCEEDED"):
        engine.checkpoint(arn, tokens[arn], [{"Id": "late", **STEP, "Action": "START"}])


def test_an_execution_fail_update_ends_the_execution_failed(live):
    engine, arn, tokens = live
    engine.checkpoint(arn, tokens[arn], [{"Id": "execution-result-5", "Type": "EXECUTION", "Action": "FAIL",
                                          "Error": {"ErrorType": "Big", "ErrorMessage": "m"}}])
    result = engine.get_execution(arn)
    assert (result.status, result.error) == ("FAILED", {"ErrorType": "Big", "ErrorMessage": "m"})


def test_callback_timeouts_take_the_models_range(live):
    """0 means no timeout; the upper bound is the model's 99999999 s, not the 366-day bound of waits."""
    engine, arn, tokens = live
    response = engine.checkpoint(arn, tokens[arn], [
        {"Id": "cb", "Type": "CALLBACK", "SubType": "Callback", "Action": "START",
         "CallbackOptions": {"TimeoutSeconds": 0, "HeartbeatTimeoutSeconds": MAX_CALLBACK_TIMEOUT_SECONDS}}])
    [op] = response["NewExecutionState"]["Operations"]
    assert op["Status"] == "STARTED" and op["CallbackDetails"]["CallbackId"]
    started = [e for e in engine.history(arn) if e["EventType"] == "CallbackStarted"][-1]
    assert started["CallbackStartedDetails"].get("Timeout") is None  # 0: none
    assert started["CallbackStartedDetails"]["HeartbeatTimeout"] == MAX_CALLBACK_TIMEOUT_SECONDS


def test_responses_and_envelopes_carry_what_changed():
    """A checkpoint response carries the operations its batch created or changed (a START the SDK awaits
    comes back: the official SDK reads it right after) after those the service changed while the
    invocation ran, each once, as they are after the batch; the next invocation's envelope lists in
    UpdatedOperationIds what changed while the execution was suspended."""
    seen = []

    def raw(event, lambda_context):
        arn, token = event["DurableExecutionArn"], event["CheckpointToken"]
        seen.append(event["UpdatedOperationIds"])
        if len(seen) == 1:
            response = engine.checkpoint(arn, token, [
                {"Id": "w", "Type": "WAIT", "SubType": "Wait", "Action": "START", "WaitOptions": {"WaitSeconds": 10}},
                {"Id": "cb", "Type": "CALLBACK", "SubType": "Callback", "Action": "START"}])
            seen.append([(op["Id"], op["Status"]) for op in response["NewExecutionState"]["Operations"]])
            callback_ids.append(response["NewExecutionState"]["Operations"][1]["CallbackDetails"]["CallbackId"])
            return {"Status": "PENDING"}
        engine.send_callback_success(callback_ids[0], '"yes"')  # the outside answers while this one runs
        response = engine.checkpoint(arn, token, [
            {"Id": "s", **STEP, "Action": "START"}, {"Id": "s", **STEP, "Action": "SUCCEED", "Payload": "1"},
            {"Id": "m", **STEP, "Action": "START"}])
        seen.append([(op["Id"], op["Status"]) for op in response["NewExecutionState"]["Operations"]])
        return {"Status": "SUCCEEDED", "Result": "1"}

    callback_ids = []
    engine = LocalEngine(db=":memory:", skip_time=True)
    try:
        arn = engine.start(raw, {})
        engine.advance(10)
        assert engine.get_execution(arn).status == "SUCCEEDED"
        assert seen == [[], [("w", "STARTED"), ("cb", "STARTED")],
                        ["w"], [("cb", "SUCCEEDED"), ("s", "SUCCEEDED"), ("m", "STARTED")]]
    finally:
        engine.close()


def test_a_large_checkpoint_response_is_paged_and_get_state_serves_the_rest():
    """More changes than a page (callbacks answered while the invocation runs): the response carries the
    first page and a NextMarker; GetDurableExecutionState pages serve the rest."""
    n = PAGE_MAX_ITEMS + 30
    seen = set()

    def raw(event, lambda_context):
        arn, token = event["DurableExecutionArn"], event["CheckpointToken"]
        ids = []
        for first in range(0, n, 250):  # the service takes at most 250 updates per call
            response = engine.checkpoint(arn, token, [
                {"Id": f"cb{i}", "Type": "CALLBACK", "SubType": "Callback", "Action": "START"}
                for i in range(first, min(n, first + 250))])
            token = response["CheckpointToken"]
            ids += [op["CallbackDetails"]["CallbackId"] for op in response["NewExecutionState"]["Operations"]]
        for callback_id in ids:  # answered by the outside while this invocation runs
            engine.send_callback_success(callback_id, '"ok"')
        response = engine.checkpoint(arn, token, [])
        state = response["NewExecutionState"]
        assert len(state["Operations"]) == PAGE_MAX_ITEMS and state["NextMarker"]
        seen.update(op["Id"] for op in state["Operations"] if op["Status"] == "SUCCEEDED")
        marker, token = state["NextMarker"], response["CheckpointToken"]
        while marker:
            page = engine.get_state(arn, token, marker)
            seen.update(op["Id"] for op in page["Operations"] if op["Status"] == "SUCCEEDED")
            marker = page.get("NextMarker")
        return {"Status": "SUCCEEDED", "Result": "1"}

    engine = LocalEngine(db=":memory:", skip_time=True)
    try:
        result = engine.run(raw, {})
        assert result.status == "SUCCEEDED", result.error
        assert seen == {f"cb{i}" for i in range(n)}
    finally:
        engine.close()


def test_get_state_refuses_a_marker_it_did_not_give(live):
    engine, arn, tokens = live
    with pytest.raises(ServiceError, match="Marker"):
        engine.get_state(arn, tokens[arn], "not-a-marker")


# -- text that is not valid Unicode, over HTTP ---------------------------------------------------------------------
def test_lone_surrogates_over_http_are_refused_and_the_store_never_sees_them(tmp_path):
    """JSON may carry "\\ud800"; UTF-8 (and SQLite) cannot. Every place such text could arrive from outside
    is refused with InvalidParameterValueException naming it, nothing is stored, and the execution goes on."""
    import urllib.error
    import urllib.request
    from urllib.parse import quote

    import durable_sync as ds
    from durable_sync.local.http import start_server

    @ds.durable_handler
    def waiting(event, ctx):
        return ctx.create_callback(name="answer").result()

    engine = LocalEngine(db=str(tmp_path / "d.db"), skip_time=True)
    running = start_server(engine)
    try:
        arn = engine.start(waiting, {})
        [callback_id] = [e["CallbackStartedDetails"]["CallbackId"] for e in engine.history(arn)
                         if e["EventType"] == "CallbackStarted"]
        execution = f"/2025-12-01/durable-executions/{quote(arn, safe='')}"
        token = engine._executions[arn].token
        requests = {
            "checkpoint": (f"{execution}/checkpoint", {"CheckpointToken": token, "Updates": [
                {"Id": "s", "Type": "STEP", "SubType": "Step", "Action": "START", "Payload": "x\ud800"}]}),
            "callback failure": (f"/2025-12-01/durable-execution-callbacks/{callback_id}/fail",
                                 {"ErrorType": "\udc00", "ErrorMessage": "m"}),
            "stop": (f"{execution}/stop", {"ErrorMessage": "stopped \ud800"}),
            "pause": (f"{execution}/pause", {"Reason": "why \udbff"}),
        }
        before = (engine.operations(arn), engine.history(arn))
        for what, (path, body) in requests.items():
            data = json.dumps(body).encode()  # ensure_ascii: the surrogate travels as a \\u escape
            request = urllib.request.Request(running.url + path, data=data, method="POST",
                                             headers={"Content-Type": "application/json"})
            with pytest.raises(urllib.error.HTTPError) as info:
                urllib.request.urlopen(request, timeout=30)
            assert info.value.code == 400, what
            assert info.value.headers["X-Amzn-ErrorType"] == "InvalidParameterValueException", what
            assert "lone surrogate" in json.loads(info.value.read())["message"], what
        assert (engine.operations(arn), engine.history(arn)) == before
        engine.send_callback_success(callback_id, '"fine"')
        assert engine.get_execution(arn).result == "fine"
    finally:
        running.stop()
        engine.close()


def test_updated_operation_ids_survive_a_restart(tmp_path):
    """A callback answered while the execution was paused, then the engine closed: the engine that opens
    the database next still lists it in the envelope of the next invocation."""
    db = str(tmp_path / "d.db")
    seen = []

    def raw(event, lambda_context):
        seen.append(event["UpdatedOperationIds"])
        if len(seen) == 1:
            engine.checkpoint(event["DurableExecutionArn"], event["CheckpointToken"], [
                {"Id": "cb", "Type": "CALLBACK", "SubType": "Callback", "Action": "START"}])
            return {"Status": "PENDING"}
        return {"Status": "SUCCEEDED", "Result": "1"}

    engine = LocalEngine(db=db, skip_time=True, functions={"raw": raw})
    arn = engine.start(raw, {}, function_name="raw")
    engine.pause(arn)
    [callback_id] = [e["CallbackStartedDetails"]["CallbackId"] for e in engine.history(arn)
                     if e["EventType"] == "CallbackStarted"]
    engine.send_callback_success(callback_id, '"late"')  # completes; no invocation while paused
    engine.close()
    engine = LocalEngine(db=db, skip_time=True, functions={"raw": raw})
    try:
        engine.resume_execution(arn)
        assert engine.get_execution(arn).status == "SUCCEEDED"
        assert seen == [[], ["cb"]]
    finally:
        engine.close()
