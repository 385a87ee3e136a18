"""Bad input: each gets a clear, typed error, and nothing already recorded is lost.

tests/test_handler.py and tests/test_core_*.py cover the SDK on a fake client (envelopes
without a durable shape, unknown types/statuses in a state page, swallowed suspension in the
handler body, names and durations of steps/waits/children, non-JSON handler results). This file
covers the gaps: the same inputs through the local engine and through the HTTP façade, the
operations those tests do not name (callbacks, invoke, wait_for_condition, map/parallel,
wait_for_callback), refused checkpoint batches (which must change nothing), malformed state
written to the database, payloads over the limits, and suspension swallowed in child contexts,
map branches and around callbacks.
"""
from __future__ import annotations

import http.client
import json
import random
from urllib.parse import quote

import boto3
import pytest

import durable_sync as ds
from durable_sync import wire
from durable_sync.errors import ExecutionEnvelopeError, ValidationError
from durable_sync.local import LocalEngine, ServiceError
from durable_sync.local.engine import MAX_INVOCATION_ATTEMPTS
from durable_sync.local.http import make_server
from helpers import rewrite_operation

ARN = "arn:aws:lambda:us-east-1:000000000000:function:f:$LATEST/durable-execution/n/exec1"


def user_ops(engine, arn):
    return [op for op in engine.operations(arn) if op["Type"] != "EXECUTION"]


class FakeClient:
    def __init__(self):
        self.updates = []

    def checkpoint(self, arn, token, updates, client_token):
        self.updates.extend(updates)
        return {"CheckpointToken": token + "'", "NewExecutionState": {"Operations": []}}

    def get_state(self, arn, token, marker):
        return {"Operations": []}


# -- malformed envelopes (gaps of test_handler.py) ---------------------------------------------------------
def _envelope(ops=None, input_payload="{}", **extra):
    exec_op = {"Id": "exec1", "Type": "EXECUTION", "Status": "STARTED",
               "ExecutionDetails": {"InputPayload": input_payload}}
    event = {"DurableExecutionArn": ARN, "CheckpointToken": "t0",
             "InitialExecutionState": {"Operations": [exec_op] + list(ops or [])}}
    event.update(extra)
    return event


@pytest.mark.parametrize("payload", ["{not json", "\ud800", "[1,", "NaN-ish"])
def test_an_input_payload_that_is_not_json_fails_with_serdes_error(payload):
    ran = []

    @ds.durable_handler(client=FakeClient())
    def handler(event, ctx):
        ran.append(event)

    out = handler(_envelope(input_payload=payload))
    assert out["Status"] == "FAILED"
    assert out["Error"]["ErrorType"] == "SerDesError"
    assert "execution input" in out["Error"]["ErrorMessage"]
    assert ran == []


@pytest.mark.parametrize("state", [
    {"Operations": {"Id": "x"}},
    {"Operations": [["Id", "x"]]},
    {"Operations": [{"Id": 7, "Type": "STEP", "Status": "SUCCEEDED"}]},
    {"Operations": [{"Id": "x", "Type": None, "Status": "SUCCEEDED"}]},
    {"Operations": [{"Id": "x", "Type": "STEP", "Status": "succeeded"}]},
], ids=["dict-not-list", "list-of-lists", "int-id", "null-type", "lowercase-status"])
def test_malformed_operation_lists_are_refused_before_user_code_runs(state):
    ran = []

    @ds.durable_handler(client=FakeClient())
    def handler(event, ctx):
        ran.append(1)

    with pytest.raises(ExecutionEnvelopeError):
        handler({"DurableExecutionArn": ARN, "CheckpointToken": "t", "InitialExecutionState": state})
    assert ran == []


# -- unknown types / statuses written to the database --------------------------------------------------------
@ds.durable_handler
def two_steps_and_a_wait(event, ctx):
    first = ctx.step("first", lambda s: 1)
    ctx.wait(60, name="pause")
    return first + ctx.step("second", lambda s: 2)


@pytest.mark.parametrize("field, value", [("Type", "TELEPORT"), ("Status", "LEVITATING")])
def test_an_unknown_type_or_status_in_the_database_fails_clearly_and_keeps_the_history(tmp_path, field, value):
    db = str(tmp_path / "d.db")
    engine = LocalEngine(db=db, skip_time=True, functions={"two_steps_and_a_wait": two_steps_and_a_wait})
    arn = engine.start(two_steps_and_a_wait, {}, name="x")
    before = engine.history(arn)
    engine.close()
    rewrite_operation(db, "first", lambda op: op.update({field: value}))  # a newer service version, or by hand
    engine = LocalEngine(db=db, skip_time=True, functions={"two_steps_and_a_wait": two_steps_and_a_wait})
    try:
        result = engine.wait(arn)
        assert result.status == "FAILED"
        assert result.error["ErrorType"] == "ExecutionEnvelopeError"
        assert value in result.error["ErrorMessage"] and "upgrade" in result.error["ErrorMessage"]
        history = engine.history(arn)
        assert history[:len(before)] == before  # nothing recorded was lost
        failures = [e for e in history if e["EventType"] == "InvocationCompleted"
                    and e["InvocationCompletedDetails"].get("Error")]
        assert len(failures) == MAX_INVOCATION_ATTEMPTS
    finally:
        engine.close()


# -- refused checkpoint batches change nothing --------------------------------------------------------------
BAD_UPDATES = [
    ({"Id": "x", "Type": "TELEPORT", "Action": "START"}, "Type"),
    ({"Id": "x", "Type": "STEP", "SubType": "Step", "Action": "EXPLODE"}, "Action"),
    ({"Id": "bad id!", "Type": "STEP", "SubType": "Step", "Action": "START"}, "id"),
    ({"Id": "x" * 65, "Type": "STEP", "SubType": "Step", "Action": "START"}, "id"),
    ({"Id": "x", "Type": "STEP", "SubType": "Step", "Action": "START", "Name": "n" * 257}, "name"),
    ({"Id": "x", "Type": "STEP", "SubType": "Step", "Action": "START", "Name": "café"}, "name"),
    ({"Id": "x", "Type": "STEP", "SubType": "Step", "Action": "SUCCEED"}, "transition"),
    ({"Id": "x", "Type": "WAIT", "SubType": "Wait", "Action": "START", "WaitOptions": {"WaitSeconds": 0}}, "WaitSeconds"),
    ({"Id": "x", "Type": "WAIT", "SubType": "Wait", "Action": "START",
      "WaitOptions": {"WaitSeconds": wire.MAX_DELAY_SECONDS + 1}}, "WaitSeconds"),
    ({"Id": "x", "Type": "WAIT", "SubType": "Wait", "Action": "START", "WaitOptions": {"WaitSeconds": "5"}},
     "WaitSeconds"),
    ({"Id": "x", "Type": "CALLBACK", "SubType": "Callback", "Action": "START",
      "CallbackOptions": {"TimeoutSeconds": -1}}, "TimeoutSeconds"),
    ({"Id": "x", "Type": "STEP", "SubType": "Step", "Action": "START", "ParentId": "nope"}, "parent"),
    ({"Id": "x", "Type": "STEP", "SubType": "Step", "Action": "START",
      "Payload": "p" * (wire.MAX_PAYLOAD_BYTES + 1)}, "payload"),
    ({"Id": "x", "Type": "CHAINED_INVOKE", "SubType": "ChainedInvoke", "Action": "START"}, "FunctionName"),
    ("not an update", "object"),
]


def test_refused_checkpoint_batches_change_nothing():
    """Inside a live invocation, as a client outside this process would call it (the HTTP façade and
    process isolation do): every malformed batch is refused with InvalidParameterValueException (a
    4xx: the SDK's client does not retry it) and the execution's operations, history and token are
    unchanged; a valid batch with the same token still goes through."""
    outcomes = []

    def raw(event, lambda_context):
        arn, token = event["DurableExecutionArn"], event["CheckpointToken"]
        rng = random.Random(7)
        for n, (update, hint) in enumerate(BAD_UPDATES + [(None, "at most 250")]):
            before = (engine.operations(arn), engine.history(arn))
            if update is None:
                batch = [{"Id": f"s{i}", "Type": "STEP", "SubType": "Step", "Action": "START"} for i in range(251)]
                rng.shuffle(batch)
            else:
                batch = [{"Id": "ok1", "Type": "STEP", "SubType": "Step", "Action": "START"}, update]
            with pytest.raises(ServiceError) as info:
                engine.checkpoint(arn, token, batch, f"ct-{n}")
            assert info.value.code == "InvalidParameterValueException" and info.value.status == 400, info.value
            assert hint.lower() in info.value.message.lower(), (hint, info.value.message)
            assert (engine.operations(arn), engine.history(arn)) == before  # a refused batch applied nothing
            outcomes.append(hint)
        response = engine.checkpoint(arn, token, [{"Id": "w", "Type": "WAIT", "SubType": "Wait", "Action": "START",
                                                   "WaitOptions": {"WaitSeconds": 5}}], "ct-ok")
        assert response["CheckpointToken"] != token
        return {"Status": "PENDING"}

    engine = LocalEngine(db=":memory:", skip_time=True)
    try:
        arn = engine.start(raw, {})
        failures = [e for e in engine.history(arn) if e["EventType"] == "InvocationCompleted"
                    and e["InvocationCompletedDetails"].get("Error")]
        assert failures == [], failures[0]["InvocationCompletedDetails"]["Error"]
        assert len(outcomes) == len(BAD_UPDATES) + 1
        assert [op["Id"] for op in user_ops(engine, arn)] == ["w"]
    finally:
        engine.close()


# -- payloads over the limits ------------------------------------------------------------------------------------
def test_a_step_result_over_the_payload_limit_fails_clearly_and_keeps_earlier_steps(engine):
    @ds.durable_handler
    def handler(event, ctx):
        ctx.step("small", lambda s: "ok")
        return ctx.step("huge", lambda s: "x" * (wire.MAX_PAYLOAD_BYTES + 10))

    result = engine.run(handler)
    assert result.status == "FAILED"
    assert result.error["ErrorType"] == "SerDesError"  # the result cannot be checkpointed: the step FAILED
    assert "huge" in result.error["ErrorMessage"] and str(wire.MAX_PAYLOAD_BYTES) in result.error["ErrorMessage"]
    by_name = {op.get("Name"): op for op in user_ops(engine, result.arn)}
    assert by_name["small"]["Status"] == "SUCCEEDED"
    assert by_name["huge"]["Status"] == "FAILED"  # not left STARTED: the body never runs again


@pytest.mark.parametrize("size", [wire.MAX_CALLBACK_RESULT_BYTES + 1, wire.MAX_CALLBACK_RESULT_BYTES * 4])
def test_an_oversized_callback_answer_is_refused_and_the_callback_stays_open(engine, size):
    @ds.durable_handler
    def handler(event, ctx):
        return ctx.create_callback(name="cb").result()

    arn = engine.start(handler, {})
    [cb] = user_ops(engine, arn)
    callback_id = cb["CallbackDetails"]["CallbackId"]
    with pytest.raises(ServiceError, match="exceeds"):
        engine.send_callback_success(callback_id, json.dumps("y" * size))
    assert engine.get_execution(arn).status == "RUNNING"
    engine.send_callback_success(callback_id, '"fits"')
    assert engine.wait(arn).result == "fits"


# -- names over 256 characters or not ASCII, on the operations test_core_wait_child.py does not name ----------
BAD_NAMES = ["x" * 257, "café", "line\nbreak", "emoji 🚀"]


def _named_operation(op: str, name: str):
    @ds.durable_handler
    def handler(event, ctx):
        try:
            if op == "create_callback":
                ctx.create_callback(name=name)
            elif op == "wait_for_callback":
                ctx.wait_for_callback(lambda cid, s: None, name=name)
            elif op == "invoke":
                ctx.invoke("target", {}, name=name)
            elif op == "wait_for_condition":
                ctx.wait_for_condition(lambda s, c: s, ds.WaitForConditionConfig(
                    wait_strategy=lambda s, a: ds.WaitForConditionDecision.stop_polling(), initial_state=0), name=name)
            elif op == "map":
                ctx.map([1], lambda c, item, i, items: item, name=name)
            elif op == "map-item":
                ctx.map([1], lambda c, item, i, items: item, name="m", config=ds.MapConfig(
                    item_namer=lambda item, i: name))
            elif op == "parallel-branch":
                ctx.parallel([ds.ParallelBranch(lambda c: 1, name=name)], name="p")
            elif op == "parallel":
                ctx.parallel([lambda c: 1], name=name)
        except ds.ValidationError as exc:
            return {"error": str(exc)}
        return {"accepted": True}

    return handler


@pytest.mark.parametrize("name", BAD_NAMES, ids=["too-long", "non-ascii", "control", "emoji"])
@pytest.mark.parametrize("op", ["create_callback", "wait_for_callback", "invoke", "wait_for_condition", "map",
                                "map-item", "parallel", "parallel-branch"])
def test_bad_names_on_every_operation_raise_validation_error_before_any_checkpoint(engine, op, name):
    result = engine.run(_named_operation(op, name))
    assert result.status == "SUCCEEDED", result.error
    assert "error" in result.result, result.result
    assert "name" in result.result["error"]
    recorded = [o for o in user_ops(engine, result.arn) if o.get("Name") == name]
    assert recorded == []  # nothing with the bad name reached the service


@pytest.mark.parametrize("name", BAD_NAMES + [""])
def test_bad_execution_names_are_refused_by_the_engine(engine, name):
    with pytest.raises((ValidationError, ServiceError)):
        engine.start(two_steps_and_a_wait, {}, name=name)
    assert engine.list_executions() == []


# -- durations out of range -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("bad", [0, -0.5, -1, 367 * 24 * 3600, float("nan"), float("inf"), "5", None, True])
def test_out_of_range_waits_and_callback_timeouts_fail_before_any_checkpoint(engine, bad):
    @ds.durable_handler
    def handler(event, ctx):
        errors = {}
        try:
            ctx.create_callback(name="cb", config=ds.CallbackConfig(timeout=bad, heartbeat_timeout=bad))
        except ds.ValidationError as exc:
            errors["callback"] = str(exc)
        try:
            ctx.wait(bad, name="w")
        except ds.ValidationError as exc:
            errors["wait"] = str(exc)
        return errors

    result = engine.run(handler)
    assert result.status == "SUCCEEDED", result.error
    assert "wait duration" in result.result.get("wait", ""), result.result
    names = {o.get("Name") for o in user_ops(engine, result.arn)}
    assert "w" not in names  # a bad wait never reaches the service
    if bad not in (0, None):  # 0 and None mean "no timeout"
        assert "timeout" in result.result.get("callback", ""), result.result
        assert "cb" not in names


@pytest.mark.parametrize("delay", [0, -5, 367 * 24 * 3600])
def test_a_wait_strategy_with_an_out_of_range_delay_fails_the_condition_clearly(engine, delay):
    @ds.durable_handler
    def handler(event, ctx):
        return ctx.wait_for_condition(lambda s, c: s + 1, ds.WaitForConditionConfig(
            wait_strategy=lambda s, a: ds.WaitForConditionDecision(True, delay), initial_state=0), name="poll")

    result = engine.run(handler)
    assert result.status == "FAILED"
    assert result.error["ErrorType"] in ("ValidationError", "WaitForConditionError"), result.error
    assert "366 days" in result.error["ErrorMessage"] or "delay" in result.error["ErrorMessage"]


# -- results that are not serializable, on the operations test_core_step.py does not cover -------------------------
class Opaque:
    pass


@pytest.mark.parametrize("where", ["run_in_child_context", "child-block", "map", "parallel", "condition"])
def test_non_serializable_results_fail_with_serdes_error(engine, where):
    @ds.durable_handler
    def handler(event, ctx):
        if where == "run_in_child_context":
            return ctx.run_in_child_context(lambda c: Opaque(), name="kid")
        if where == "child-block":
            with ctx.child("kid") as c:
                c.result = lambda: 1
            return None
        if where == "map":
            ctx.map([1], lambda c, item, i, items: Opaque(), name="m").throw_if_error()
        if where == "parallel":
            ctx.parallel([lambda c: {1, Opaque()}], name="p").throw_if_error()
        return ctx.wait_for_condition(lambda s, c: Opaque(), ds.WaitForConditionConfig(
            wait_strategy=lambda s, a: ds.WaitForConditionDecision.stop_polling(), initial_state=0), name="poll")

    result = engine.run(handler)
    assert result.status == "FAILED", result
    text = json.dumps(result.error)
    assert "SerDesError" in text or "serialize" in text, result.error
    assert "Opaque" in text or "function" in text, result.error


# -- a swallowed suspension, beyond the handler body ------------------------------------------------------------
def _swallowing(where: str):
    @ds.durable_handler
    def handler(event, ctx):
        def swallow(fn):
            try:
                fn()
            except BaseException:  # noqa: BLE001 - the mistake under test
                return "swallowed"
            return "not suspended"

        if where == "child-block":
            with ctx.child("kid") as c:
                swallow(lambda: c.wait(10, name="w"))
        elif where == "run_in_child_context":
            ctx.run_in_child_context(lambda c: swallow(lambda: c.wait(10, name="w")), name="kid")
        elif where == "map-branch":
            ctx.map([1, 2], lambda c, item, i, items: swallow(lambda: c.wait(10, name=f"w{i}")), name="m")
        elif where == "callback-result":
            callback = ctx.create_callback(name="cb")
            swallow(callback.result)
        elif where == "step-retry":
            def flaky(s):
                raise RuntimeError("try again")
            swallow(lambda: ctx.step("flaky", flaky, config=ds.StepConfig(
                retry_strategy=ds.RetryPolicy(max_attempts=3, initial_delay=1, jitter="none"))))
        elif where == "then-more-work":
            swallow(lambda: ctx.wait(10, name="w"))
            ctx.step("after", lambda s: 1)
        return "finished"

    return handler


@pytest.mark.parametrize("where", ["child-block", "run_in_child_context", "map-branch", "callback-result",
                                   "step-retry", "then-more-work"])
def test_a_swallowed_suspension_anywhere_fails_the_execution_loudly(engine, where):
    result = engine.run(_swallowing(where))
    assert result.status == "FAILED", (where, result)
    message = result.error["ErrorMessage"]
    assert "SuspendExecution" in message and "BaseException" in message, message
    assert result.result is None


# -- the HTTP façade ---------------------------------------------------------------------------------------------------
@ds.durable_handler
def waiter(event, ctx):
    first = ctx.step("first", lambda s: event.get("n", 0))
    answer = ctx.create_callback(name="cb").result()
    return {"first": first, "answer": answer}


@pytest.fixture
def served():
    eng = LocalEngine(db=":memory:", skip_time=True)
    server = make_server(eng, "127.0.0.1", 0, functions={"waiter": waiter}, invoke_timeout=20).start()
    lam = boto3.client("lambda", endpoint_url=server.url, region_name="us-east-1", aws_access_key_id="x",
                       aws_secret_access_key="x")
    yield eng, server, lam
    server.close()
    eng.close()


def _raw(server, method, path, body=b"", headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=20)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.getheader("X-Amzn-ErrorType"), json.loads(response.read() or b"{}")
    finally:
        conn.close()


def test_bad_answers_through_http_are_refused_and_the_execution_still_completes(served):
    engine, server, lam = served
    arn = lam.invoke(FunctionName="waiter", InvocationType="Event", Payload=b'{"n": 3}',
                     DurableExecutionName="w1")["DurableExecutionArn"]
    [cb] = [op for op in user_ops(engine, arn) if op["Type"] == "CALLBACK"]
    callback_id = cb["CallbackDetails"]["CallbackId"]
    history = engine.history(arn)
    path = f"/2025-12-01/durable-execution-callbacks/{quote(callback_id, safe='')}"
    too_big = json.dumps("z" * (wire.MAX_CALLBACK_RESULT_BYTES + 1)).encode()
    cases = [
        ("POST", path + "/succeed", too_big, 400, "InvalidParameterValueException"),
        ("POST", path + "/fail", b'{"ErrorType": 5}', 400, "InvalidParameterValueException"),
        ("POST", path + "/fail", b'{"ErrorMessage": ["a"]}', 400, "InvalidParameterValueException"),
        ("POST", path + "/fail", b'[1, 2]', 400, None),
        ("POST", path + "/fail", b'{"StackTrace": "not a list"}', 400, "InvalidParameterValueException"),
        ("POST", "/2025-12-01/durable-execution-callbacks/" + "A" * 40 + "/succeed", b'"x"', 400, None),
        ("POST", f"/2025-12-01/durable-executions/{quote(arn, safe='')}/checkpoint",
         json.dumps({"CheckpointToken": "stale", "Updates": []}).encode(), 400, "InvalidParameterValueException"),
        ("POST", f"/2025-12-01/durable-executions/{quote(arn, safe='')}/checkpoint",
         json.dumps({"CheckpointToken": "t", "Updates": [{"Id": "x", "Type": "TELEPORT", "Action": "START"}]}).encode(),
         400, "InvalidParameterValueException"),
        ("POST", f"/2025-12-01/durable-executions/{quote(arn, safe='')}/stop", b'{"ErrorType": ["x"]}', 400,
         "InvalidParameterValueException"),
        ("POST", "/2015-03-31/functions/waiter/invocations", b"{not json", 400, "InvalidRequestContentException"),
        ("POST", "/2015-03-31/functions/waiter/invocations", b"x" * (6 * 1024 * 1024 + 1), 413, None),
    ]
    for method, p, body, status, error_type in cases:
        got_status, got_type, payload = _raw(server, method, p, body)
        assert got_status == status or (status == 400 and 400 <= got_status < 500), (p, body[:60], got_status, payload)
        assert got_type, (p, got_status, payload)  # boto3 raises the modeled exception
        if error_type:
            assert got_type == error_type, (p, got_type, payload)
        assert payload.get("message"), payload
    for name in ["x" * 300, "café", "a/b"]:
        status, error_type, payload = _raw(server, "POST", "/2015-03-31/functions/waiter/invocations", b"{}",
                                           {"X-Amz-Durable-Execution-Name": name.encode("utf-8").decode("latin-1"),
                                            "X-Amz-Invocation-Type": "Event"})
        assert 400 <= status < 500 and error_type, (name, status, payload)
    assert engine.history(arn) == history  # nothing changed by any of it
    assert [e["DurableExecutionName"] for e in engine.list_executions()] == ["w1"]
    lam.send_durable_execution_callback_success(CallbackId=callback_id, Result=b'"yes"')
    result = engine.wait(arn)
    assert (result.status, result.result) == ("SUCCEEDED", {"first": 3, "answer": "yes"})
