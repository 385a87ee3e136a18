"""Callbacks: ``ctx.create_callback``, ``Callback.result()``, ``ctx.wait_for_callback`` and the engine's
``send_callback_*`` rules, on ``LocalEngine(db=":memory:", skip_time=True)`` (virtual time only).
"""
from __future__ import annotations

import json
import re
import sys
import types

import jsonpickle
import pytest

import durable_sync as ds
from durable_sync.local import LocalEngine, ServiceError


def events(engine, arn, *types_, name=None):
    out = [e for e in engine.history(arn) if not types_ or e["EventType"] in types_]
    if name is not None:
        out = [e for e in out if e.get("Name") == name]
    return out


def callback_id(engine, arn, name):
    """The CallbackId of the CALLBACK operation ``name``, as a test (the outside system) finds it."""
    [op] = [op for op in engine.operations(arn) if op["Type"] == "CALLBACK" and op.get("Name") == name]
    return op["CallbackDetails"]["CallbackId"]


def invocations(engine, arn):
    return len(events(engine, arn, "InvocationCompleted"))


def status(engine, arn):
    return engine.get_execution(arn).status


# --------------------------------------------------------------------------- create_callback


@ds.durable_handler
def approval(event, ctx):
    callback = ctx.create_callback("approval")
    return {"answer": callback.result(), "callback_id": callback.callback_id}


def test_success_resumes_with_the_decoded_answer(engine):
    arn = engine.start(approval, {})
    assert status(engine, arn) == "RUNNING"
    cid = callback_id(engine, arn, "approval")
    [started] = events(engine, arn, "CallbackStarted")
    assert started["CallbackStartedDetails"]["CallbackId"] == cid
    assert invocations(engine, arn) == 1

    engine.send_callback_success(cid, '{"approved": true}')

    result = engine.get_execution(arn)
    assert result.status == "SUCCEEDED"
    assert result.result == {"answer": {"approved": True}, "callback_id": cid}
    [done] = events(engine, arn, "CallbackSucceeded")
    assert done["CallbackSucceededDetails"]["Result"]["Payload"] == '{"approved": true}'
    assert invocations(engine, arn) == 2  # one re-invocation for the answer


def test_success_accepts_bytes_and_no_payload(engine):
    arn = engine.start(approval, {})
    engine.send_callback_success(callback_id(engine, arn, "approval"), b'"yes"')
    assert engine.get_execution(arn).result["answer"] == "yes"
    arn = engine.start(approval, {})
    engine.send_callback_success(callback_id(engine, arn, "approval"), None)
    assert engine.get_execution(arn).status == "SUCCEEDED"
    assert engine.get_execution(arn).result["answer"] is None


@ds.durable_handler
def catching(event, ctx):
    callback = ctx.create_callback("job", config=ds.CallbackConfig(
        timeout=event.get("timeout"), heartbeat_timeout=event.get("heartbeat")))
    try:
        return {"ok": callback.result()}
    except ds.CallbackError as exc:
        return {"class": type(exc).__name__, "type": exc.error_type, "message": exc.error_message,
                "data": exc.error_data}


def test_failure_raises_callback_error_with_the_outside_error(engine):
    arn = engine.start(catching, {})
    engine.send_callback_failure(callback_id(engine, arn, "job"), {
        "ErrorType": "RejectedError", "ErrorMessage": "not approved", "ErrorData": '{"by": "bob"}'})
    assert engine.get_execution(arn).result == {
        "class": "CallbackError", "type": "RejectedError", "message": "not approved", "data": '{"by": "bob"}'}
    [failed] = events(engine, arn, "CallbackFailed")
    assert failed["CallbackFailedDetails"]["Error"]["Payload"]["ErrorType"] == "RejectedError"


def test_uncaught_failure_fails_the_execution(engine):
    arn = engine.start(approval, {})
    engine.send_callback_failure(callback_id(engine, arn, "approval"),
                                 {"ErrorType": "RejectedError", "ErrorMessage": "not approved"})
    result = engine.get_execution(arn)
    assert result.status == "FAILED"
    assert result.error["ErrorType"] == "RejectedError"
    assert result.error["ErrorMessage"] == "not approved"


def test_timeout_raises_callback_timeout_error_on_the_virtual_clock(engine):
    arn = engine.start(catching, {"timeout": 30})
    [started] = events(engine, arn, "CallbackStarted")
    assert started["CallbackStartedDetails"]["Timeout"] == 30
    engine.advance(29)
    assert status(engine, arn) == "RUNNING"
    engine.advance(1)
    assert engine.get_execution(arn).result["class"] == "CallbackTimeoutError"
    assert engine.get_execution(arn).result["type"] == "Callback.Timeout"
    [timed_out] = events(engine, arn, "CallbackTimedOut")
    assert timed_out["CallbackTimedOutDetails"]["Error"]["Payload"]["ErrorType"] == "Callback.Timeout"
    assert invocations(engine, arn) == 2
    with pytest.raises(ServiceError) as info:  # closed: no late answer
        engine.send_callback_success(callback_id(engine, arn, "job"), '"late"')
    assert info.value.code == "CallbackTimeoutException"


def test_heartbeats_keep_a_callback_alive(engine):
    arn = engine.start(catching, {"heartbeat": 10})
    cid = callback_id(engine, arn, "job")
    [started] = events(engine, arn, "CallbackStarted")
    assert started["CallbackStartedDetails"]["HeartbeatTimeout"] == 10
    for _ in range(3):  # 24 s in all, never 10 s without a heartbeat
        engine.advance(8)
        engine.send_callback_heartbeat(cid)
        assert status(engine, arn) == "RUNNING"
    engine.advance(8)
    engine.send_callback_success(cid, '"done"')
    assert engine.get_execution(arn).result == {"ok": "done"}
    assert not events(engine, arn, "CallbackTimedOut")
    assert invocations(engine, arn) == 2  # heartbeats cause no invocation


def test_missing_heartbeat_times_out(engine):
    arn = engine.start(catching, {"heartbeat": 10, "timeout": 3600})
    cid = callback_id(engine, arn, "job")
    engine.advance(5)
    engine.send_callback_heartbeat(cid)
    engine.advance(9)
    assert status(engine, arn) == "RUNNING"
    engine.advance(1)  # 10 s after the heartbeat
    assert engine.get_execution(arn).result["class"] == "CallbackTimeoutError"
    assert engine.get_execution(arn).result["type"] == "Callback.Heartbeat"
    with pytest.raises(ServiceError):
        engine.send_callback_heartbeat(cid)


@ds.durable_handler
def two_callbacks(event, ctx):
    a = ctx.create_callback("a")
    b = ctx.create_callback("b")
    return [a.result(), b.result()]


def test_two_callbacks_answered_in_reverse_order(engine):
    arn = engine.start(two_callbacks, None)
    cid_a, cid_b = callback_id(engine, arn, "a"), callback_id(engine, arn, "b")
    assert cid_a != cid_b
    engine.send_callback_success(cid_b, '"B"')
    assert status(engine, arn) == "RUNNING"  # replayed, still waiting for a
    assert invocations(engine, arn) == 2
    engine.send_callback_success(cid_a, '"A"')
    assert engine.get_execution(arn).result == ["A", "B"]
    assert invocations(engine, arn) == 3
    assert [e["EventType"] for e in engine.history(arn)] == [
        "ExecutionStarted", "CallbackStarted", "CallbackStarted", "InvocationCompleted",
        "CallbackSucceeded", "InvocationCompleted", "CallbackSucceeded", "InvocationCompleted",
        "ExecutionSucceeded"]


@ds.durable_handler
def callback_then_wait(event, ctx):
    callback = ctx.create_callback("cb")
    ctx.wait(60, name="pause")
    return callback.result()


def test_callback_answered_while_suspended_on_a_wait(engine):
    arn = engine.start(callback_then_wait, None)
    engine.send_callback_success(callback_id(engine, arn, "cb"), '{"v": 1}')
    assert status(engine, arn) == "RUNNING"  # re-invoked once, the wait still holds it
    engine.advance(59)
    assert status(engine, arn) == "RUNNING"
    engine.advance(1)
    assert engine.get_execution(arn).result == {"v": 1}
    assert [e["EventType"] for e in engine.history(arn)] == [
        "ExecutionStarted", "CallbackStarted", "WaitStarted", "InvocationCompleted",
        "CallbackSucceeded", "InvocationCompleted", "WaitSucceeded", "InvocationCompleted",
        "ExecutionSucceeded"]


def test_callback_ids_are_opaque_unguessable_and_unknown_ids_are_refused(engine):
    arns = [engine.start(approval, {}) for _ in range(5)]
    ids = {callback_id(engine, arn, "approval") for arn in arns}
    assert len(ids) == 5
    for cid in ids:
        assert re.fullmatch(r"[A-Za-z0-9+/]+={0,2}", cid) and len(cid) >= 32  # the service's pattern
        assert not any(part in cid for arn in arns for part in arn.split("/")[-2:])
    with pytest.raises(ServiceError) as info:
        engine.send_callback_success("0" * 64, '"x"')
    assert "unknown callback" in str(info.value)
    with pytest.raises(ServiceError):
        engine.send_callback_failure("nope", {"ErrorType": "X"})
    with pytest.raises(ServiceError):
        engine.send_callback_heartbeat("nope")


def test_result_size_limit_and_bad_payload_types(engine):
    arn = engine.start(approval, {})
    cid = callback_id(engine, arn, "approval")
    with pytest.raises(ServiceError, match="exceeds"):
        engine.send_callback_success(cid, json.dumps("x" * (256 * 1024)))
    with pytest.raises(ServiceError):
        engine.send_callback_success(cid, {"not": "raw"})
    with pytest.raises(ServiceError):
        engine.send_callback_failure(cid, "not an error object")
    assert status(engine, arn) == "RUNNING"
    engine.send_callback_success(cid, json.dumps("x" * 1000))
    assert engine.get_execution(arn).result["answer"] == "x" * 1000
    with pytest.raises(ServiceError) as info:  # answered: a second answer is refused
        engine.send_callback_failure(cid, {"ErrorType": "X"})
    assert info.value.code == "CallbackTimeoutException"


# --------------------------------------------------------------------------- payload safety

_PWNED: list = []


def _pwn(arg):
    _PWNED.append(arg)
    return "pwned"


@pytest.fixture
def pwn_module(monkeypatch):
    """A module-level function a jsonpickle ``py/reduce`` payload names (importable, so reachable)."""
    module = types.ModuleType("durable_sync_test_pwn")
    module.pwn = _pwn
    monkeypatch.setitem(sys.modules, "durable_sync_test_pwn", module)
    _PWNED.clear()
    yield
    _PWNED.clear()


MALICIOUS = json.dumps({"py/reduce": [{"py/function": "durable_sync_test_pwn.pwn"}, {"py/tuple": ["rm -rf /"]}]})


@ds.durable_handler
def echo_callback(event, ctx):
    value = ctx.create_callback("cb").result()
    ctx.wait(1)  # replay the callback once more
    return {"type": type(value).__name__, "value": value}


def test_malicious_jsonpickle_payload_arrives_as_plain_data(engine, pwn_module):
    jsonpickle.decode(MALICIOUS, keys=True)  # the control: jsonpickle itself would run the function
    assert _PWNED == ["rm -rf /"]
    _PWNED.clear()

    arn = engine.start(echo_callback, None)
    engine.send_callback_success(callback_id(engine, arn, "cb"), MALICIOUS)
    result = engine.wait(arn)
    assert result.status == "SUCCEEDED"
    assert result.result == {"type": "dict", "value": json.loads(MALICIOUS)}
    assert _PWNED == []  # nothing ran, on the first decode or on replay


@ds.durable_handler
def wait_for_callback_echo(event, ctx):
    value = ctx.wait_for_callback(lambda cid, step_ctx: SUBMITTED.append(cid), name="ext")
    ctx.wait(1)
    return {"type": type(value).__name__, "value": value}


SUBMITTED: list = []


def test_malicious_payload_through_wait_for_callback(engine, pwn_module):
    SUBMITTED.clear()
    arn = engine.start(wait_for_callback_echo, None)
    [cid] = SUBMITTED
    engine.send_callback_success(cid, MALICIOUS)
    result = engine.wait(arn)
    assert result.result == {"type": "dict", "value": json.loads(MALICIOUS)}
    assert _PWNED == []


# --------------------------------------------------------------------------- custom serdes


class CsvSerDes:
    def serialize(self, value, ctx):
        return ",".join(value)

    def deserialize(self, text, ctx):
        return text.split(",")


@ds.durable_handler
def csv_callback(event, ctx):
    return ctx.create_callback("csv", config=ds.CallbackConfig(serdes=CsvSerDes())).result()


def test_custom_serdes_decodes_the_raw_payload(engine):
    arn = engine.start(csv_callback, None)
    engine.send_callback_success(callback_id(engine, arn, "csv"), "a,b,c")  # not JSON at all
    assert engine.get_execution(arn).result == ["a", "b", "c"]


def test_default_decoding_is_json_only(engine):
    arn = engine.start(approval, {})
    engine.send_callback_success(callback_id(engine, arn, "approval"), "a,b,c")
    result = engine.get_execution(arn)
    assert result.status == "FAILED"
    assert result.error["ErrorType"] == "SerDesError"
    assert "not valid JSON" in result.error["ErrorMessage"]


# --------------------------------------------------------------------------- validation, nesting


def test_invalid_timeouts_fail_before_any_checkpoint(engine):
    @ds.durable_handler
    def bad(event, ctx):
        ctx.create_callback("x", config=ds.CallbackConfig(timeout=-5))

    result = engine.run(bad)
    assert result.status == "FAILED"
    assert result.error["ErrorType"] == "ValidationError"
    assert not events(engine, result.arn, "CallbackStarted")


def test_result_inside_a_step_is_refused(engine):
    @ds.durable_handler
    def nested(event, ctx):
        callback = ctx.create_callback("x")
        try:
            ctx.step("inner", lambda s: callback.result(), config=ds.StepConfig(retry_strategy=ds.RetryPresets.none()))
        except (ds.NestedOperationError, ds.StepError) as exc:
            return getattr(exc, "error_type", type(exc).__name__)

    arn = engine.start(nested)
    assert engine.get_execution(arn).result == "NestedOperationError"


@ds.durable_handler
def answered_then_log(event, ctx):
    callback = ctx.create_callback("cb")
    ctx.step("after", lambda s: "x")
    ctx.wait(5)
    return callback.result()


def test_replay_walks_through_an_open_callback(engine):
    arn = engine.start(answered_then_log, None)
    assert len(events(engine, arn, "StepStarted")) == 1
    engine.advance(5)  # the wait ends, the callback is still open: replay, then suspend in result()
    assert status(engine, arn) == "RUNNING"
    assert len(events(engine, arn, "StepStarted")) == 1  # the step was not run again
    engine.send_callback_success(callback_id(engine, arn, "cb"), "7")
    assert engine.get_execution(arn).result == 7


# --------------------------------------------------------------------------- wait_for_callback


@ds.durable_handler
def wfc(event, ctx):
    def notify(callback_id, step_ctx):
        SUBMITTED.append((callback_id, step_ctx.attempt))

    return ctx.wait_for_callback(notify, config=ds.WaitForCallbackConfig(timeout=ds.Duration.from_minutes(5)))


def test_wait_for_callback_runs_the_submitter_in_a_child_context(engine):
    SUBMITTED.clear()
    arn = engine.start(wfc, None)
    [(cid, attempt)] = SUBMITTED
    assert attempt == 1
    assert cid == callback_id(engine, arn, "notify create callback id")
    ops = {op.get("Name"): op for op in engine.operations(arn) if op["Type"] != "EXECUTION"}
    context = ops["notify"]
    assert (context["Type"], context["SubType"]) == ("CONTEXT", "WaitForCallback")
    assert ops["notify create callback id"]["ParentId"] == context["Id"]
    assert (ops["notify submitter"]["Type"], ops["notify submitter"]["SubType"]) == ("STEP", "Step")
    assert ops["notify submitter"]["ParentId"] == context["Id"]
    [started] = events(engine, arn, "CallbackStarted")
    assert started["CallbackStartedDetails"]["Timeout"] == 300

    engine.send_callback_success(cid, '{"ok": 1}')
    assert engine.get_execution(arn).result == {"ok": 1}
    assert len(SUBMITTED) == 1  # the submitter did not run again on replay
    [ctx_done] = events(engine, arn, "ContextSucceeded")
    assert ctx_done["Name"] == "notify"


ATTEMPTS: list = []


@ds.durable_handler
def failing_submitter(event, ctx):
    def submit(callback_id, step_ctx):
        ATTEMPTS.append(step_ctx.attempt)
        raise ConnectionError("queue unreachable")

    policy = ds.RetryPolicy(max_attempts=3, initial_delay=2, backoff_rate=1.0, jitter="none")
    try:
        ctx.wait_for_callback(submit, name="ticket", config=ds.WaitForCallbackConfig(retry_strategy=policy))
    except ds.CallbackSubmitterError as exc:
        outcome = {"class": type(exc).__name__, "type": exc.error_type, "message": exc.error_message}
    ctx.wait(10)  # replays the failed wait_for_callback once more: same exception class
    return outcome


def test_wait_for_callback_with_a_failing_submitter(engine):
    ATTEMPTS.clear()
    result = engine.run(failing_submitter)
    assert result.status == "SUCCEEDED"
    assert ATTEMPTS == [1, 2, 3]
    assert result.result["class"] == "CallbackSubmitterError"
    assert result.result["type"] == "CallbackSubmitterError"
    assert "ConnectionError: queue unreachable" in result.result["message"]
    retries = [e for e in events(engine, result.arn, "StepFailed", name="ticket submitter")]
    assert [e["StepFailedDetails"].get("RetryDetails", {}).get("NextAttemptDelaySeconds") for e in retries] == [2, 2, None]
    [ctx_failed] = events(engine, result.arn, "ContextFailed", name="ticket")
    assert ctx_failed["SubType"] == "WaitForCallback"
    assert ctx_failed["ContextFailedDetails"]["Error"]["Payload"]["ErrorType"] == "CallbackSubmitterError"


@ds.durable_handler
def wfc_timeout(event, ctx):
    try:
        return ctx.wait_for_callback(lambda cid, s: None, name="slow",
                                     config=ds.WaitForCallbackConfig(timeout=30))
    except ds.CallbackTimeoutError as exc:
        ctx.wait(1)
        return ["timeout", exc.error_type]


def test_wait_for_callback_timeout_and_failure_keep_their_classes(engine):
    result = engine.run(wfc_timeout)
    assert result.result == ["timeout", "Callback.Timeout"]

    @ds.durable_handler
    def rejected(event, ctx):
        try:
            return ctx.wait_for_callback(lambda cid, s: SUBMITTED.append(cid), name="ask")
        except ds.CallbackSubmitterError:
            return "wrong class"
        except ds.CallbackError as exc:
            return [type(exc).__name__, exc.error_type, exc.error_message]

    SUBMITTED.clear()
    arn = engine.start(rejected)
    engine.send_callback_failure(SUBMITTED[-1], {"ErrorType": "Denied", "ErrorMessage": "no"})
    assert engine.get_execution(arn).result == ["CallbackError", "Denied", "no"]


def test_submitter_answering_its_own_callback_in_the_same_invocation(engine):
    @ds.durable_handler
    def immediate(event, ctx):
        return ctx.wait_for_callback(lambda cid, s: engine.send_callback_success(cid, '"instant"'), name="now")

    result = engine.run(immediate)
    assert result.status == "SUCCEEDED"
    assert result.result == "instant"


REPLAY_FLAGS: list = []


@ds.durable_handler
def replay_probe(event, ctx):
    callback = ctx.create_callback("cb")
    REPLAY_FLAGS.append(ctx.is_replaying())  # code after an open callback already ran before
    ctx.wait(5)
    return callback.result()


def test_an_open_callback_does_not_end_the_replay(engine):
    REPLAY_FLAGS.clear()
    arn = engine.start(replay_probe)
    engine.advance(5)
    engine.send_callback_success(callback_id(engine, arn, "cb"), "1")
    assert engine.get_execution(arn).result == 1
    assert REPLAY_FLAGS == [False, True, True]
