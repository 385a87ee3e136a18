"""Tests of ``@durable_handler``: the invocation envelope, outputs, paging, large results, checkpoint errors.

Most tests call the Lambda handler directly with a fake checkpoint client, so the
exact wire traffic can be asserted; a few confirm the behaviour on the engine.
"""
from __future__ import annotations

import json

import pytest

import durable_sync as ds
from durable_sync import wire
from durable_sync.errors import ExecutionEnvelopeError
from durable_sync.local import LocalEngine

ARN = "arn:aws:lambda:us-east-1:123456789012:function:f:$LATEST/durable-execution/n/exec-1"
MAX_RESULT = 6 * 1024 * 1024 - 50


class FakeClient:
    """A CheckpointClient that records calls; optionally pages state or fails."""

    def __init__(self, pages=None, fail_with=None, fail_on_call=1):
        self.batches: list[list[dict]] = []
        self.tokens: list[str] = []
        self.pages = dict(pages or {})
        self.state_calls: list[tuple[str, str, str]] = []
        self.fail_with = fail_with
        self.fail_on_call = fail_on_call

    def checkpoint(self, arn, token, updates, client_token):
        assert arn == ARN and client_token
        self.tokens.append(token)
        if self.fail_with is not None and len(self.tokens) >= self.fail_on_call:
            raise self.fail_with
        self.batches.append([dict(u) for u in updates])
        return {"CheckpointToken": f"tok-{len(self.batches)}", "NewExecutionState": {"Operations": []}}

    def get_state(self, arn, token, marker):
        self.state_calls.append((arn, token, marker))
        return self.pages[marker]

    @property
    def updates(self) -> list[dict]:
        return [u for batch in self.batches for u in batch]


def exec_op(payload="{}", details=True):
    op = {"Id": "exec-1", "Type": "EXECUTION", "Status": "STARTED"}
    if details:
        op["ExecutionDetails"] = {} if payload is None else {"InputPayload": payload}
    return op


def envelope(*ops, payload="{}", marker=None, execution=None):
    state = {"Operations": [execution or exec_op(payload), *ops]}
    if marker:
        state["NextMarker"] = marker
    return {"DurableExecutionArn": ARN, "CheckpointToken": "tok-0", "InitialExecutionState": state}


def step_op(n, name, result, parent=None):
    op = {"Id": wire.operation_id(parent, n), "Type": "STEP", "SubType": "Step", "Name": name,
          "Status": "SUCCEEDED", "StepDetails": {"Attempt": 1, "Result": json.dumps(result)}}
    if parent:
        op["ParentId"] = parent
    return op


# ============================================================================= outputs


@pytest.mark.parametrize("value", [{"total": 3, "items": ["a", None, 1.5]}, None, "x", 42, [1, 2], True])
def test_succeeded_output_is_exact(value):
    client = FakeClient()

    @ds.durable_handler(client=client)
    def handler(event, ctx):
        return value

    assert handler(envelope()) == {"Status": "SUCCEEDED", "Result": json.dumps(value)}
    assert client.batches == []  # nothing to checkpoint for a plain result


def test_failed_output_shape():
    @ds.durable_handler(client=FakeClient())
    def handler(event, ctx):
        raise ValueError("bad order")

    out = handler(envelope())
    assert set(out) == {"Status", "Error"} and out["Status"] == "FAILED"
    assert set(out["Error"]) <= {"ErrorType", "ErrorMessage", "StackTrace"}
    assert out["Error"]["ErrorType"] == "ValueError"
    assert out["Error"]["ErrorMessage"] == "bad order"
    assert isinstance(out["Error"]["StackTrace"], list) and all(isinstance(x, str) for x in out["Error"]["StackTrace"])


def test_failed_step_output_carries_original_error_type():
    client = FakeClient()

    @ds.durable_handler(client=client)
    def handler(event, ctx):
        return ctx.step("s", lambda s: {}["missing"], config=ds.StepConfig(retry_strategy=ds.RetryPresets.none()))

    out = handler(envelope())
    assert out["Status"] == "FAILED"
    assert out["Error"]["ErrorType"] == "KeyError"
    assert [u["Action"] for u in client.updates] == ["START", "FAIL"]


def test_pending_output_is_exact():
    client = FakeClient()

    @ds.durable_handler(client=client)
    def handler(event, ctx):
        ctx.wait(30, name="later")
        return "never"

    assert handler(envelope()) == {"Status": "PENDING"}
    [update] = client.updates
    assert update == {"Id": wire.operation_id(None, 1), "Type": "WAIT", "SubType": "Wait", "Action": "START",
                      "Name": "later", "WaitOptions": {"WaitSeconds": 30}}


def test_non_json_handler_result_fails_clearly():
    @ds.durable_handler(client=FakeClient())
    def handler(event, ctx):
        return {1, 2}

    out = handler(envelope())
    assert out["Status"] == "FAILED"
    assert out["Error"]["ErrorType"] == "SerDesError"
    assert "JSON" in out["Error"]["ErrorMessage"]


# ============================================================================= input


@pytest.mark.parametrize("execution, expected", [
    (exec_op(payload=None), {}),
    (exec_op(payload=""), {}),
    (exec_op(details=False), {}),
    (exec_op(payload="null"), None),
    (exec_op(payload='{"id": 7}'), {"id": 7}),
    (exec_op(payload='[1, "a"]'), [1, "a"]),
    (exec_op(payload='"text"'), "text"),
], ids=["absent", "empty", "no-details", "null", "object", "list", "string"])
def test_user_event_from_input_payload(execution, expected):
    seen = []

    @ds.durable_handler(client=FakeClient())
    def handler(event, ctx):
        seen.append(event)
        return "ok"

    assert handler(envelope(execution=execution))["Status"] == "SUCCEEDED"
    assert seen == [expected]


def test_input_is_decoded_as_plain_json_only():
    payload = json.dumps({"py/object": "os.system", "x": 1})

    @ds.durable_handler(client=FakeClient())
    def handler(event, ctx):
        return event

    out = handler(envelope(payload=payload))
    assert out["Status"] == "SUCCEEDED"
    assert json.loads(out["Result"]) == {"py/object": "os.system", "x": 1}  # a plain dict, not decoded


def test_engine_input_none_and_missing():
    engine = LocalEngine(db=":memory:", skip_time=True)
    try:
        @ds.durable_handler
        def handler(event, ctx):
            return {"event": event}

        assert engine.run(handler, input=None).result == {"event": None}
        assert engine.run(handler, input={"a": 1}).result == {"event": {"a": 1}}
    finally:
        engine.close()


# ============================================================================= paging


def test_state_is_paged_with_get_durable_execution_state():
    s1, s2 = step_op(1, "first", {"v": 1}), step_op(2, "second", "two")
    wait = {"Id": wire.operation_id(None, 3), "Type": "WAIT", "SubType": "Wait", "Status": "SUCCEEDED"}
    client = FakeClient(pages={
        "m-1": {"Operations": [s1], "NextMarker": "m-2"},
        "m-2": {"Operations": [s2, wait]},
    })
    ran = []

    @ds.durable_handler(client=client)
    def handler(event, ctx):
        a = ctx.step("first", lambda s: ran.append("first"))
        b = ctx.step("second", lambda s: ran.append("second"))
        ctx.wait(5)
        c = ctx.step("third", lambda s: "three")
        return [a, b, c]

    out = handler(envelope(marker="m-1"))
    assert out == {"Status": "SUCCEEDED", "Result": json.dumps([{"v": 1}, "two", "three"])}
    assert ran == []  # the paged steps replayed
    assert client.state_calls == [(ARN, "tok-0", "m-1"), (ARN, "tok-0", "m-2")]
    assert [(u["Name"], u["Action"]) for u in client.updates] == [("third", "START"), ("third", "SUCCEED")]
    assert client.updates[0]["Id"] == wire.operation_id(None, 4)


def test_repeated_marker_is_refused():
    client = FakeClient(pages={"m": {"Operations": [], "NextMarker": "m"}})

    @ds.durable_handler(client=client)
    def handler(event, ctx):
        return 1

    with pytest.raises(ExecutionEnvelopeError, match="marker"):
        handler(envelope(marker="m"))


def test_engine_pages_large_states():
    """More than 1000 operations: the engine pages them and the SDK fetches every page."""
    engine = LocalEngine(db=":memory:", skip_time=True)
    runs = []
    try:
        @ds.durable_handler
        def handler(event, ctx):
            for i in range(1100):
                ctx.step(f"s{i}", lambda s, i=i: runs.append(i) or i)
            ctx.wait(1)
            return ctx.step("last", lambda s: "end")

        res = engine.run(handler)
        assert res.status == "SUCCEEDED", res.error
        assert res.result == "end"
        assert len(runs) == 1100
    finally:
        engine.close()


# ============================================================================= large results


def test_large_result_goes_as_execution_succeed_checkpoint():
    client = FakeClient()
    value = "r" * (MAX_RESULT - 1)  # + 2 quotes: one byte over the limit

    @ds.durable_handler(client=client)
    def handler(event, ctx):
        return value

    out = handler(envelope())
    assert out == {"Status": "SUCCEEDED", "Result": ""}
    [update] = client.updates
    assert update == {"Id": "exec-1", "Type": "EXECUTION", "Action": "SUCCEED", "Payload": json.dumps(value)}


def test_result_at_the_limit_stays_inline():
    client = FakeClient()
    value = "r" * (MAX_RESULT - 2)

    @ds.durable_handler(client=client)
    def handler(event, ctx):
        return value

    out = handler(envelope())
    assert out["Status"] == "SUCCEEDED" and out["Result"] == json.dumps(value)
    assert client.updates == []


def test_result_over_the_payload_limit_fails_the_execution_clearly():
    @ds.durable_handler(client=FakeClient())
    def handler(event, ctx):
        return "r" * (7 * 1024 * 1024)

    out = handler(envelope())
    assert out["Status"] == "FAILED"
    assert out["Error"]["ErrorType"] == "ValidationError"
    assert "exceeds" in out["Error"]["ErrorMessage"]


def test_large_result_on_the_engine():
    engine = LocalEngine(db=":memory:", skip_time=True)
    try:
        value = {"blob": "b" * MAX_RESULT}

        @ds.durable_handler
        def handler(event, ctx):
            return value

        res = engine.run(handler)
        assert res.status == "SUCCEEDED"
        assert res.result == value
    finally:
        engine.close()


# ============================================================================= bad envelopes and states


@pytest.mark.parametrize("event", [
    {"order_id": 1}, None, [], "text",
    {"DurableExecutionArn": "", "CheckpointToken": "t"},
    {"DurableExecutionArn": ARN},
    {"DurableExecutionArn": ARN, "CheckpointToken": "t", "InitialExecutionState": "oops"},
    {"DurableExecutionArn": ARN, "CheckpointToken": "t", "InitialExecutionState": {"Operations": [{"Type": "STEP"}]}},
], ids=["plain-event", "none", "list", "str", "empty-arn", "no-token", "bad-state", "op-without-id"])
def test_event_without_envelope_raises_clear_error(event):
    ran = []

    @ds.durable_handler(client=FakeClient())
    def handler(e, ctx):
        ran.append(1)

    with pytest.raises(ExecutionEnvelopeError) as info:
        handler(event)
    assert isinstance(info.value, ds.ValidationError)
    assert ran == []
    if event in ({"order_id": 1}, None, [], "text"):
        assert "durable execution envelope" in str(info.value)


@pytest.mark.parametrize("field, value", [("Type", "TELEPORT"), ("Status", "LEVITATING")])
def test_unknown_type_or_status_in_state_raises_clear_error(field, value):
    op = step_op(1, "s", 1)
    op[field] = value

    @ds.durable_handler(client=FakeClient())
    def handler(event, ctx):
        return ctx.step("s", lambda s: 1)

    with pytest.raises(ExecutionEnvelopeError) as info:
        handler(envelope(op))
    assert value in str(info.value) and "upgrade" in str(info.value)


def test_unknown_status_in_a_paged_state_raises_clear_error():
    op = step_op(1, "s", 1)
    op["Status"] = "LEVITATING"
    client = FakeClient(pages={"m": {"Operations": [op]}})

    @ds.durable_handler(client=client)
    def handler(event, ctx):
        return ctx.step("s", lambda s: 1)

    with pytest.raises(ExecutionEnvelopeError, match="LEVITATING"):
        handler(envelope(marker="m"))


# ============================================================================= swallowed suspension


def test_handler_swallowing_suspend_execution_fails_loudly():
    @ds.durable_handler(client=FakeClient())
    def handler(event, ctx):
        try:
            ctx.wait(10)
        except BaseException:  # noqa: BLE001 - the mistake under test
            return "x"
        return "y"

    out = handler(envelope())
    assert out["Status"] == "FAILED"
    message = out["Error"]["ErrorMessage"]
    assert "SuspendExecution" in message and "BaseException" in message


def test_handler_re_raising_base_exception_stays_pending():
    @ds.durable_handler(client=FakeClient())
    def handler(event, ctx):
        try:
            ctx.wait(10)
        except BaseException:
            raise
        return "y"

    assert handler(envelope()) == {"Status": "PENDING"}


def test_except_exception_does_not_swallow_suspension():
    @ds.durable_handler(client=FakeClient())
    def handler(event, ctx):
        try:
            ctx.wait(10)
        except Exception:  # noqa: BLE001
            return "swallowed"
        return "y"

    assert handler(envelope()) == {"Status": "PENDING"}


# ============================================================================= checkpoint failures


def _step_handler(client, swallow=False):
    @ds.durable_handler(client=client)
    def handler(event, ctx):
        try:
            return ctx.step("s", lambda s: 1)
        except Exception:  # noqa: BLE001 - user code must not be able to hide a checkpoint failure
            if swallow:
                return "swallowed"
            raise
    return handler


@pytest.mark.parametrize("swallow", [False, True])
def test_retryable_checkpoint_error_is_raised_out_of_the_lambda_handler(swallow):
    client = FakeClient(fail_with=ds.CheckpointError("Invalid checkpoint token", retryable=True))
    with pytest.raises(ds.CheckpointError) as info:
        _step_handler(client, swallow)(envelope())
    assert info.value.retryable is True


@pytest.mark.parametrize("swallow", [False, True])
def test_non_retryable_checkpoint_error_fails_the_execution(swallow):
    client = FakeClient(fail_with=ds.CheckpointError("payload refused", retryable=False))
    out = _step_handler(client, swallow)(envelope())
    assert out["Status"] == "FAILED"
    assert out["Error"]["ErrorType"] == "CheckpointError"
    assert "payload refused" in out["Error"]["ErrorMessage"]


def test_unexpected_client_error_fails_the_execution():
    client = FakeClient(fail_with=RuntimeError("socket closed"))
    out = _step_handler(client)(envelope())
    assert out["Status"] == "FAILED"
    assert out["Error"]["ErrorType"] == "CheckpointError"
    assert "socket closed" in out["Error"]["ErrorMessage"]


def test_checkpoint_failure_while_suspending_is_not_pending():
    client = FakeClient(fail_with=ds.CheckpointError("throttled", retryable=True))

    @ds.durable_handler(client=client)
    def handler(event, ctx):
        ctx.wait(10)

    with pytest.raises(ds.CheckpointError):
        handler(envelope())


def test_checkpoint_token_rotates():
    client = FakeClient()

    @ds.durable_handler(client=client)
    def handler(event, ctx):
        for name in ("a", "b", "c"):
            ctx.step(name, lambda s: 1, config=ds.StepConfig(
                step_semantics=ds.StepSemantics.AT_MOST_ONCE_PER_RETRY))
        return "ok"

    assert handler(envelope())["Status"] == "SUCCEEDED"
    assert client.tokens == [f"tok-{i}" for i in range(len(client.tokens))]
    assert len(client.tokens) == 4  # each at-most-once START (carrying the SUCCEED before it), then the last SUCCEED


# ============================================================================= decorator options


class TaggedSerDes:
    def serialize(self, value, ctx):
        return "T:" + json.dumps(value)

    def deserialize(self, text, ctx):
        assert text.startswith("T:")
        return json.loads(text[2:])


def test_decorator_serdes_applies_to_steps():
    client = FakeClient()

    @ds.durable_handler(client=client, serdes=TaggedSerDes())
    def handler(event, ctx):
        return ctx.step("s", lambda s: {"a": 1})

    assert handler(envelope()) == {"Status": "SUCCEEDED", "Result": '{"a": 1}'}
    succeed = [u for u in client.updates if u["Action"] == "SUCCEED"]
    assert succeed[0]["Payload"] == 'T:{"a": 1}'


def test_bare_decorator_marks_the_function():
    def fn(event, ctx):
        return 1

    wrapped = ds.durable_handler(fn)
    assert wrapped.__durable_function__ is fn
    assert wrapped.__name__ == "fn"
