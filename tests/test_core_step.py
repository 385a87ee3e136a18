"""Core tests of ``ctx.step``: call shapes, naming, StepContext, replay, semantics, retries, nesting, serdes.

Everything runs on ``LocalEngine(db=":memory:", skip_time=True)`` (virtual time: no
real sleeping for retries), or on the Lambda handler directly with a fake
checkpoint client where the exact updates matter.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import threading
import time

import pytest
import tenacity

import durable_sync as ds
from helpers import events
from durable_sync import wire
from durable_sync.local import LocalEngine

ARN = "arn:aws:lambda:us-east-1:123456789012:function:f:$LATEST/durable-execution/n/exec-1"
NO_RETRY = ds.StepConfig(retry_strategy=ds.RetryPresets.none())


@pytest.fixture(autouse=True)
def _never_sleep(monkeypatch):
    """Durable retries must never sleep in-process."""
    def no_sleep(seconds):
        raise AssertionError(f"slept {seconds}s in-process")

    monkeypatch.setattr(time, "sleep", no_sleep)
    monkeypatch.setattr(tenacity.nap, "sleep", no_sleep)


def step_ops(engine, arn):
    return [op for op in engine.operations(arn) if op["Type"] == "STEP"]


def retry_delays(engine, arn, name=None):
    """NextAttemptDelaySeconds of each StepFailed event that scheduled a retry."""
    out = []
    for e in events(engine, arn, "StepFailed", name=name):
        retry = e["StepFailedDetails"].get("RetryDetails") or {}
        if "NextAttemptDelaySeconds" in retry:
            out.append(retry["NextAttemptDelaySeconds"])
    return out


# ----------------------------------------------------------------------------- a fake client


class FakeClient:
    """Records every checkpoint call; answers with a fresh token."""

    def __init__(self):
        self.batches: list[list[dict]] = []

    def checkpoint(self, arn, token, updates, client_token):
        self.batches.append([dict(u) for u in updates])
        return {"CheckpointToken": f"tok-{len(self.batches)}", "NewExecutionState": {"Operations": []}}

    def get_state(self, arn, token, marker):  # pragma: no cover - not paged here
        raise AssertionError("no paging expected")

    @property
    def updates(self) -> list[dict]:
        return [u for batch in self.batches for u in batch]


def envelope(*ops, payload="{}"):
    exec_op = {"Id": "exec-1", "Type": "EXECUTION", "Status": "STARTED",
               "ExecutionDetails": {"InputPayload": payload}}
    return {"DurableExecutionArn": ARN, "CheckpointToken": "tok-0",
            "InitialExecutionState": {"Operations": [exec_op, *ops]}}


# ============================================================================= call shapes & naming


@ds.durable_step
def add(step_ctx, a, b):
    return a + b


def plain_function(step_ctx):
    return "plain"


def test_both_call_shapes_and_naming(engine):
    seen_names = []

    def named_fn(step_ctx):
        seen_names.append(step_ctx.name)
        return "kw"

    @ds.durable_handler
    def handler(event, ctx):
        a = ctx.step("name-first", lambda s: (seen_names.append(s.name), "positional")[1])
        b = ctx.step(named_fn, name="by-keyword", config=NO_RETRY)
        c = ctx.step(add(2, 3))
        d = ctx.step(plain_function)
        e = ctx.step(lambda s: (seen_names.append(s.name), "anon")[1])
        return [a, b, c, d, e]

    res = engine.run(handler)
    assert res.status == "SUCCEEDED", res.error
    assert res.result == ["positional", "kw", 5, "plain", "anon"]
    ops = step_ops(engine, res.arn)
    assert [op.get("Name") for op in ops] == ["name-first", "by-keyword", "add", "plain_function", None]
    assert "Name" not in ops[4]  # a lambda gets no Name at all
    assert [e.get("Name") for e in events(engine, res.arn, "StepSucceeded")] == \
        ["name-first", "by-keyword", "add", "plain_function", None]
    assert seen_names == ["name-first", "by-keyword", None]
    # ids: 1-based counter at the root
    assert [op["Id"] for op in ops] == [wire.operation_id(None, n) for n in range(1, 6)]


def test_name_first_shape_applies_config(engine):
    calls = []

    @ds.durable_handler
    def handler(event, ctx):
        try:
            ctx.step("once", lambda s: calls.append(s.attempt) or 1 / 0, config=NO_RETRY)
        except ds.StepError as exc:
            return exc.error_type
        return "no error"

    res = engine.run(handler)
    assert res.result == "ZeroDivisionError"
    assert calls == [1]
    assert retry_delays(engine, res.arn) == []


def test_step_rejects_two_names_and_non_callables(engine):
    @ds.durable_handler
    def handler(event, ctx):
        out = []
        for call in (lambda: ctx.step("a", plain_function, name="b"), lambda: ctx.step("a", 42),
                     lambda: ctx.step(42)):
            try:
                call()
            except ds.ValidationError:
                out.append("ValidationError")
        return out

    res = engine.run(handler)
    assert res.result == ["ValidationError"] * 3
    assert step_ops(engine, res.arn) == []


# ============================================================================= StepContext


def test_step_context_fields_and_attempts_across_retries(engine, caplog):
    seen = []

    def flaky(step_ctx):
        seen.append((step_ctx.attempt, step_ctx.operation_id, step_ctx.name))
        step_ctx.logger.info("attempt %d", step_ctx.attempt)
        if step_ctx.attempt < 3:
            raise ConnectionError(f"flaky {step_ctx.attempt}")
        return "done"

    policy = ds.RetryPolicy(max_attempts=5, initial_delay=1, jitter="none")

    @ds.durable_handler
    def handler(event, ctx):
        ctx.step("warm-up", lambda s: None)
        return ctx.step("flaky", flaky, config=ds.StepConfig(retry_strategy=policy))

    with caplog.at_level(logging.INFO, logger="durable_sync.user"):
        res = engine.run(handler)
    assert res.status == "SUCCEEDED" and res.result == "done"
    op_id = wire.operation_id(None, 2)
    assert seen == [(1, op_id, "flaky"), (2, op_id, "flaky"), (3, op_id, "flaky")]
    records = [r for r in caplog.records if r.name == "durable_sync.user"]
    assert [r.getMessage() for r in records] == ["attempt 1", "attempt 2", "attempt 3"]
    for n, record in enumerate(records, 1):
        assert record.execution_arn == res.arn
        assert record.operation_id == op_id
        assert record.operation_name == "flaky"
        assert record.attempt == n
    # the engine agrees on the attempts
    started = events(engine, res.arn, "StepStarted", name="flaky")
    assert len(started) == 3
    succeeded = events(engine, res.arn, "StepSucceeded", name="flaky")
    assert succeeded[0]["StepSucceededDetails"]["RetryDetails"]["CurrentAttempt"] == 3


# ============================================================================= replay


def test_replay_returns_stored_result_without_rerunning(engine):
    calls = {"n": 0, "handler": 0}

    def counted(step_ctx):
        calls["n"] += 1
        return {"run": calls["n"], "at": dt.date(2024, 1, 2)}

    @ds.durable_handler
    def handler(event, ctx):
        calls["handler"] += 1
        value = ctx.step("counted", counted)
        ctx.wait(10)
        assert value["at"] == dt.date(2024, 1, 2)
        return value["run"]

    arn = engine.start(handler)
    assert engine.get_execution(arn).status == "RUNNING"
    assert calls == {"n": 1, "handler": 1}
    engine.advance(10)
    res = engine.get_execution(arn)
    assert res.status == "SUCCEEDED"
    assert res.result == 1  # a re-run would have returned 2
    assert calls == {"n": 1, "handler": 2}
    assert len(events(engine, arn, "StepStarted")) == 1
    assert len(events(engine, arn, "StepSucceeded")) == 1
    assert len(events(engine, arn, "InvocationCompleted")) == 2


def test_failed_step_reraises_step_error_on_replay_without_rerunning(engine):
    calls = []
    caught = []

    class PaymentDeclined(Exception):
        pass

    def charge(step_ctx):
        calls.append(step_ctx.attempt)
        raise PaymentDeclined("card 4242 declined")

    @ds.durable_handler
    def handler(event, ctx):
        try:
            ctx.step("charge", charge, config=NO_RETRY)
        except ds.StepError as exc:
            caught.append((type(exc), exc.error_type, exc.error_message))
        ctx.wait(5)
        return "handled"

    res = engine.run(handler)
    assert res.status == "SUCCEEDED" and res.result == "handled"
    assert calls == [1]
    assert caught == [(ds.StepError, "PaymentDeclined", "card 4242 declined")] * 2
    failed = events(engine, res.arn, "StepFailed")
    assert len(failed) == 1
    assert failed[0]["StepFailedDetails"]["Error"]["Payload"]["ErrorType"] == "PaymentDeclined"


# ============================================================================= step semantics


class Crash(BaseException):
    """Stands for the Lambda process dying in the middle of a step body."""


def crashing_lambda(durable):
    """A Lambda handler around ``durable`` where a Crash looks like a runtime failure of the invocation."""
    def lam(event, lambda_context):
        try:
            return durable(event, lambda_context)
        except Crash:
            raise RuntimeError("Runtime.ExitError: the process died") from None
    lam.__name__ = durable.__name__
    return lam


def test_at_least_once_rerun_after_interrupted_invocation_engine(engine):
    calls = []

    def body(step_ctx):
        calls.append(step_ctx.attempt)
        if len(calls) == 1:
            raise Crash()
        return "charged"

    @ds.durable_handler
    def handler(event, ctx):
        return ctx.step("charge", body)

    res = engine.run(crashing_lambda(handler))
    assert res.status == "SUCCEEDED" and res.result == "charged"
    assert calls == [1, 1]  # the same attempt ran again
    assert len(events(engine, res.arn, "StepStarted")) == 1  # no new START for the re-run
    assert len(events(engine, res.arn, "StepSucceeded")) == 1
    invocations = events(engine, res.arn, "InvocationCompleted")
    assert len(invocations) == 2
    assert "Error" in invocations[0]["InvocationCompletedDetails"]
    assert "Error" not in invocations[1]["InvocationCompletedDetails"]


def test_at_least_once_started_step_reruns_without_start_fake_client():
    calls = []
    op_id = wire.operation_id(None, 1)
    started = {"Id": op_id, "Type": "STEP", "SubType": "Step", "Name": "charge", "Status": "STARTED",
               "StepDetails": {"Attempt": 1}}
    client = FakeClient()

    @ds.durable_handler(client=client)
    def handler(event, ctx):
        return ctx.step("charge", lambda s: calls.append(s.attempt) or "ok")

    out = handler(envelope(started))
    assert out == {"Status": "SUCCEEDED", "Result": '"ok"'}
    assert calls == [1]
    assert [(u["Id"], u["Action"]) for u in client.updates] == [(op_id, "SUCCEED")]


class HeldStartClient(FakeClient):
    """Holds the first checkpoint call until the step body releases it (bounded)."""

    def __init__(self):
        super().__init__()
        self.gate = threading.Event()

    def checkpoint(self, arn, token, updates, client_token):
        if not self.batches and not self.gate.wait(10):
            raise AssertionError("the first checkpoint was held: the step body never ran while START was in flight")
        return super().checkpoint(arn, token, updates, client_token)


def test_at_least_once_start_is_not_awaited():
    client = HeldStartClient()
    persisted_when_body_ran = []

    def body(step_ctx):
        persisted_when_body_ran.append(list(client.updates))
        client.gate.set()  # only now may the START be persisted
        return "ran"

    @ds.durable_handler(client=client)
    def handler(event, ctx):
        return ctx.step("fire-and-forget-start", body)

    out = handler(envelope())
    assert out == {"Status": "SUCCEEDED", "Result": '"ran"'}
    assert persisted_when_body_ran == [[]]  # the body ran while the START was still in flight
    assert [u["Action"] for u in client.updates] == ["START", "SUCCEED"]  # order kept


def _at_most_once(strategy):
    return ds.StepConfig(retry_strategy=strategy, step_semantics=ds.StepSemantics.AT_MOST_ONCE_PER_RETRY)


def test_at_most_once_awaits_start_before_running():
    client = FakeClient()
    seen_before_body = []

    @ds.durable_handler(client=client)
    def handler(event, ctx):
        return ctx.step("pay", lambda s: seen_before_body.append(list(client.updates)) or 1,
                        config=_at_most_once(None))

    out = handler(envelope())
    assert out["Status"] == "SUCCEEDED"
    # the START was persisted before the body ran
    assert [u["Action"] for u in seen_before_body[0]] == ["START"]
    assert [u["Action"] for u in client.updates] == ["START", "SUCCEED"]


def test_at_most_once_started_step_without_retry_fails_fake_client():
    op_id = wire.operation_id(None, 1)
    started = {"Id": op_id, "Type": "STEP", "SubType": "Step", "Name": "pay", "Status": "STARTED",
               "StepDetails": {"Attempt": 1}}
    client = FakeClient()
    calls = []

    @ds.durable_handler(client=client)
    def handler(event, ctx):
        return ctx.step("pay", lambda s: calls.append(1), config=_at_most_once(ds.RetryPresets.none()))

    out = handler(envelope(started))
    assert calls == []  # never re-run blindly
    assert out["Status"] == "FAILED"
    assert out["Error"]["ErrorType"] == "StepInterruptedError"
    assert [(u["Id"], u["Action"]) for u in client.updates] == [(op_id, "FAIL")]
    assert client.updates[0]["Error"]["ErrorType"] == "StepInterruptedError"


def test_at_most_once_started_step_with_retry_records_retry_fake_client():
    op_id = wire.operation_id(None, 1)
    started = {"Id": op_id, "Type": "STEP", "SubType": "Step", "Name": "pay", "Status": "STARTED",
               "StepDetails": {"Attempt": 1}}
    client = FakeClient()
    calls = []
    policy = ds.RetryPolicy(max_attempts=3, initial_delay=4, jitter="none")

    @ds.durable_handler(client=client)
    def handler(event, ctx):
        return ctx.step("pay", lambda s: calls.append(1), config=_at_most_once(policy))

    out = handler(envelope(started))
    assert out == {"Status": "PENDING"}
    assert calls == []
    [update] = client.updates
    assert update["Action"] == "RETRY" and update["Id"] == op_id
    assert update["StepOptions"] == {"NextAttemptDelaySeconds": 4}
    assert update["Error"]["ErrorType"] == "StepInterruptedError"


def test_at_most_once_interrupted_step_engine_no_retry(engine):
    calls = []

    def body(step_ctx):
        calls.append(step_ctx.attempt)
        raise Crash()

    @ds.durable_handler
    def handler(event, ctx):
        try:
            ctx.step("pay", body, config=_at_most_once(ds.RetryPresets.none()))
        except ds.StepError as exc:
            return {"type": exc.error_type, "class": type(exc).__name__}
        return "no error"

    res = engine.run(crashing_lambda(handler))
    assert res.status == "SUCCEEDED", res.error
    assert res.result == {"type": "StepInterruptedError", "class": "StepError"}
    assert calls == [1]
    assert len(events(engine, res.arn, "StepStarted")) == 1
    [failed] = events(engine, res.arn, "StepFailed")
    assert failed["StepFailedDetails"]["Error"]["Payload"]["ErrorType"] == "StepInterruptedError"
    assert [op["Status"] for op in step_ops(engine, res.arn)] == ["FAILED"]


def test_at_most_once_interrupted_step_engine_with_retry(engine):
    calls = []

    def body(step_ctx):
        calls.append(step_ctx.attempt)
        if len(calls) == 1:
            raise Crash()
        return f"paid on attempt {step_ctx.attempt}"

    policy = ds.RetryPolicy(max_attempts=3, initial_delay=7, jitter="none")

    @ds.durable_handler
    def handler(event, ctx):
        return ctx.step("pay", body, config=_at_most_once(policy))

    res = engine.run(crashing_lambda(handler))
    assert res.status == "SUCCEEDED", res.error
    assert res.result == "paid on attempt 2"
    assert calls == [1, 2]
    assert len(events(engine, res.arn, "StepStarted")) == 2  # a fresh START for the retry
    [failed] = events(engine, res.arn, "StepFailed")
    details = failed["StepFailedDetails"]
    assert details["Error"]["Payload"]["ErrorType"] == "StepInterruptedError"
    assert details["RetryDetails"] == {"CurrentAttempt": 1, "NextAttemptDelaySeconds": 7}


# ============================================================================= retry strategies


class Boom(Exception):
    pass


def run_failing(engine, strategy, fail_times=99, error=lambda n: Boom(f"boom {n}")):
    """Run a step that fails ``fail_times`` times; returns (result, attempts, arn)."""
    attempts = []

    def body(step_ctx):
        attempts.append(step_ctx.attempt)
        if len(attempts) <= fail_times:
            raise error(step_ctx.attempt)
        return "ok"

    config = None if strategy == "omit" else ds.StepConfig(retry_strategy=strategy)

    @ds.durable_handler
    def handler(event, ctx):
        try:
            return ctx.step("work", body, config=config)
        except ds.StepError as exc:
            return {"error": [type(exc).__name__, exc.error_type, exc.error_message]}

    res = engine.run(handler)
    assert res.status == "SUCCEEDED", res.error
    return res.result, attempts, res.arn


def _started_times(engine, arn):
    return [e["EventTimestamp"] for e in events(engine, arn, "StepStarted")]


def test_retry_policy_exact_delays_without_jitter(engine):
    policy = ds.RetryPolicy(max_attempts=4, initial_delay=2, backoff_rate=3, max_delay=10, jitter="none")
    result, attempts, arn = run_failing(engine, policy)
    assert attempts == [1, 2, 3, 4]
    assert result == {"error": ["StepError", "Boom", "boom 4"]}
    assert retry_delays(engine, arn) == [2, 6, 10]
    failed = events(engine, arn, "StepFailed")
    assert [e["StepFailedDetails"]["RetryDetails"]["CurrentAttempt"] for e in failed] == [1, 2, 3, 4]
    assert "NextAttemptDelaySeconds" not in failed[-1]["StepFailedDetails"]["RetryDetails"]
    # virtual time moved by exactly the delays
    t = _started_times(engine, arn)
    assert [(b - a).total_seconds() for a, b in zip(t, t[1:])] == [2, 6, 10]


def test_retry_policy_recovers(engine):
    policy = ds.RetryPolicy(max_attempts=5, initial_delay=3, jitter="none")
    result, attempts, arn = run_failing(engine, policy, fail_times=2)
    assert result == "ok"
    assert attempts == [1, 2, 3]
    assert retry_delays(engine, arn) == [3, 6]
    assert [op["Status"] for op in step_ops(engine, arn)] == ["SUCCEEDED"]


def test_retry_presets_none(engine):
    result, attempts, arn = run_failing(engine, ds.RetryPresets.none())
    assert attempts == [1]
    assert result == {"error": ["StepError", "Boom", "boom 1"]}
    assert retry_delays(engine, arn) == []


@pytest.mark.parametrize("strategy", [ds.RetryPresets.default(), "omit"], ids=["default", "no-config"])
def test_retry_presets_default_and_no_config(engine, strategy):
    result, attempts, arn = run_failing(engine, strategy)
    assert attempts == [1, 2, 3, 4, 5, 6]
    assert result == {"error": ["StepError", "Boom", "boom 6"]}
    delays = retry_delays(engine, arn)
    assert len(delays) == 5
    for n, delay in enumerate(delays, 1):
        assert 1 <= delay <= min(5 * 2 ** (n - 1), 60)  # full jitter under the exponential cap


def test_retryable_error_types_filter(engine):
    policy = ds.RetryPolicy(max_attempts=4, initial_delay=1, jitter="none", retryable_error_types=[TimeoutError])
    result, attempts, arn = run_failing(engine, policy, error=lambda n: ValueError(f"bad value {n}"))
    assert attempts == [1]
    assert result == {"error": ["StepError", "ValueError", "bad value 1"]}
    assert retry_delays(engine, arn) == []

    result, attempts, arn = run_failing(engine, policy, error=lambda n: TimeoutError(f"slow {n}"))
    assert attempts == [1, 2, 3, 4]
    assert result == {"error": ["StepError", "TimeoutError", "slow 4"]}
    assert retry_delays(engine, arn) == [1, 2, 4]


def test_retryable_errors_message_filter(engine):
    policy = ds.RetryPolicy(max_attempts=3, initial_delay=1, jitter="none", retryable_errors=["throttl"])
    result, attempts, _ = run_failing(engine, policy, error=lambda n: Boom("access denied"))
    assert attempts == [1]
    result, attempts, _ = run_failing(engine, policy, error=lambda n: Boom("throttled, slow down"))
    assert attempts == [1, 2, 3]
    assert result == {"error": ["StepError", "Boom", "throttled, slow down"]}


def test_tenacity_retrying(engine):
    retrying = tenacity.Retrying(stop=tenacity.stop_after_attempt(3), wait=tenacity.wait_fixed(7))
    result, attempts, arn = run_failing(engine, retrying)
    assert attempts == [1, 2, 3]
    assert result == {"error": ["StepError", "Boom", "boom 3"]}
    assert retry_delays(engine, arn) == [7, 7]
    t = _started_times(engine, arn)
    assert [(b - a).total_seconds() for a, b in zip(t, t[1:])] == [7, 7]


def test_tenacity_retrying_with_retry_predicate(engine):
    retrying = tenacity.Retrying(stop=tenacity.stop_after_attempt(5), wait=tenacity.wait_fixed(2),
                                 retry=tenacity.retry_if_exception_type(TimeoutError))
    result, attempts, _ = run_failing(engine, retrying)
    assert attempts == [1]
    assert result == {"error": ["StepError", "Boom", "boom 1"]}
    result, attempts, arn = run_failing(engine, retrying, fail_times=2, error=lambda n: TimeoutError("t"))
    assert result == "ok" and attempts == [1, 2, 3]
    assert retry_delays(engine, arn) == [2, 2]


def test_bare_tenacity_wait(engine):
    result, attempts, arn = run_failing(engine, tenacity.wait_exponential(multiplier=1, max=100))
    assert attempts == [1, 2, 3, 4, 5, 6]  # a bare wait keeps the default 6 attempts
    assert retry_delays(engine, arn) == [1, 2, 4, 8, 16]
    assert result == {"error": ["StepError", "Boom", "boom 6"]}


def test_bare_tenacity_stop(engine):
    result, attempts, arn = run_failing(engine, tenacity.stop_after_attempt(2))
    assert attempts == [1, 2]
    [delay] = retry_delays(engine, arn)
    assert 1 <= delay <= 5  # the default preset's first back-off
    assert result == {"error": ["StepError", "Boom", "boom 2"]}


def test_bare_tenacity_retry_predicate(engine):
    predicate = tenacity.retry_if_exception_type(TimeoutError)
    result, attempts, _ = run_failing(engine, predicate)
    assert attempts == [1]
    result, attempts, arn = run_failing(engine, predicate, fail_times=1, error=lambda n: TimeoutError("t"))
    assert attempts == [1, 2] and result == "ok"


def test_plain_callable_strategy(engine):
    calls = []

    def strategy(error, attempt):
        calls.append((type(error).__name__, str(error), attempt))
        if attempt < 3:
            return ds.RetryDecision.retry(dt.timedelta(seconds=attempt * 10 - 0.5))  # rounds up
        return ds.RetryDecision.no_retry()

    result, attempts, arn = run_failing(engine, strategy)
    assert attempts == [1, 2, 3]
    assert calls == [("Boom", "boom 1", 1), ("Boom", "boom 2", 2), ("Boom", "boom 3", 3)]
    assert retry_delays(engine, arn) == [10, 20]
    assert result == {"error": ["StepError", "Boom", "boom 3"]}


def test_callable_strategy_with_wrong_return_type_fails_loudly(engine):
    @ds.durable_handler
    def handler(event, ctx):
        return ctx.step("work", lambda s: 1 / 0, config=ds.StepConfig(retry_strategy=lambda e, a: 5))

    res = engine.run(handler)
    assert res.status == "FAILED"
    assert res.error["ErrorType"] == "ValidationError"
    assert "RetryDecision" in res.error["ErrorMessage"]


# ============================================================================= nesting


@pytest.mark.parametrize("inner", ["step", "wait", "child", "run_in_child_context"])
def test_durable_operation_inside_step_body_raises_nested_operation_error(engine, inner):
    calls = []

    def body(step_ctx):
        calls.append(step_ctx.attempt)
        if inner == "step":
            ctx_ref[0].step("inner", lambda s: 1)
        elif inner == "wait":
            ctx_ref[0].wait(1)
        elif inner == "child":
            with ctx_ref[0].child("inner"):
                pass
        else:
            ctx_ref[0].run_in_child_context(lambda c: 1, name="inner")
        return "unreachable"

    ctx_ref = [None]

    @ds.durable_handler
    def handler(event, ctx):
        ctx_ref[0] = ctx
        try:
            ctx.step("outer", body)  # default retry strategy: a programming error must not be retried
        except ds.NestedOperationError as exc:
            return {"class": type(exc).__name__, "message": str(exc)}
        return "no error"

    res = engine.run(handler)
    assert res.status == "SUCCEEDED", res.error
    assert res.result["class"] == "NestedOperationError"
    assert "ctx.child()" in res.result["message"]
    assert "outer" in res.result["message"]
    assert calls == [1]  # not retried
    ops = [op for op in engine.operations(res.arn) if op["Type"] != "EXECUTION"]
    assert [op.get("Name") for op in ops] == ["outer"]  # nothing inner recorded
    assert ops[0]["Status"] == "FAILED"
    assert ops[0]["StepDetails"]["Error"]["ErrorType"] == "NestedOperationError"
    assert retry_delays(engine, res.arn) == []


def test_nested_operation_in_child_step_body(engine):
    @ds.durable_handler
    def handler(event, ctx):
        with ctx.child("group") as c:
            c.step("outer", lambda s: c.step("inner", lambda s2: 1))
        return "unreachable"

    res = engine.run(handler)
    assert res.status == "FAILED"
    assert res.error["ErrorType"] == "NestedOperationError"
    assert "ctx.child()" in res.error["ErrorMessage"]


# ============================================================================= serdes failures


class Holder:
    def __init__(self):
        self.lock = threading.Lock()


class ExplodingSerDes:
    def serialize(self, value, ctx):
        raise RuntimeError("cannot encode this")

    def deserialize(self, text, ctx):  # pragma: no cover
        raise AssertionError("never called")


@pytest.mark.parametrize("case", ["lock", "object-with-lock", "custom-serdes"])
def test_unserializable_step_result_fails_with_serdes_error(engine, case):
    def body(step_ctx):
        if case == "lock":
            return threading.Lock()
        if case == "object-with-lock":
            return Holder()
        return {"fine": "for json"}

    config = ds.StepConfig(serdes=ExplodingSerDes()) if case == "custom-serdes" else None

    @ds.durable_handler
    def handler(event, ctx):
        return ctx.step("produce", body, config=config)

    started = time.monotonic()
    res = engine.run(handler)
    assert time.monotonic() - started < 10
    assert res.status == "FAILED"
    assert res.error["ErrorType"] == "SerDesError"
    assert "serialize" in res.error["ErrorMessage"]
    [op] = step_ops(engine, res.arn)
    assert op["Status"] == "FAILED"
    assert op["StepDetails"]["Error"]["ErrorType"] == "SerDesError"
    assert len(events(engine, res.arn, "InvocationCompleted")) == 1  # failed once, no hang, no re-invocation
