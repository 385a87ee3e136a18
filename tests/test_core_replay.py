"""Core replay tests: non-determinism detection, replay flags and logging, and a 1,000-step workflow.

Handlers whose behaviour depends on a module-level flag are started, the flag is
flipped while the execution waits, and the engine's clock is advanced so the
next invocation replays against the changed code.
"""
from __future__ import annotations

import logging

import pytest

import durable_sync as ds
from helpers import events
from durable_sync import wire
from durable_sync.local import LocalEngine

CODE = {"version": 1}  # flipped between invocations to simulate a deploy of changed code


@pytest.fixture(autouse=True)
def _reset_code():
    CODE["version"] = 1
    yield
    CODE["version"] = 1


def start_flip_advance(engine, handler, seconds=10):
    """Run the first invocation with version 1, deploy version 2, let the wait elapse."""
    arn = engine.start(handler)
    assert engine.get_execution(arn).status == "RUNNING"
    CODE["version"] = 2
    engine.advance(seconds)
    return engine.get_execution(arn)


# ============================================================================= NonDeterminismError


def test_renamed_step_raises_non_determinism_error(engine):
    calls = []

    @ds.durable_handler
    def handler(event, ctx):
        name = "charge-card" if CODE["version"] == 1 else "charge-wallet"
        ctx.step(name, lambda s: calls.append(name) or "charged")
        ctx.wait(10)
        return "done"

    res = start_flip_advance(engine, handler)
    assert res.status == "FAILED"
    assert res.error["ErrorType"] == "NonDeterminismError"
    message = res.error["ErrorMessage"]
    assert "'charge-card'" in message and "'charge-wallet'" in message
    assert message.index("charge-wallet") < message.index("charge-card")  # asks for ... but recorded ...
    assert calls == ["charge-card"]  # the renamed step never ran
    assert len(events(engine, res.arn, "StepStarted")) == 1


def test_reordered_operations_raise_non_determinism_error(engine):
    @ds.durable_handler
    def handler(event, ctx):
        order = ["reserve", "charge"] if CODE["version"] == 1 else ["charge", "reserve"]
        for name in order:
            ctx.step(name, lambda s: name)
        ctx.wait(10)
        return "done"

    res = start_flip_advance(engine, handler)
    assert res.status == "FAILED"
    assert res.error["ErrorType"] == "NonDeterminismError"
    message = res.error["ErrorMessage"]
    assert "'reserve'" in message and "'charge'" in message
    assert wire.operation_id(None, 1) in message
    assert "recorded" in message


def test_step_changed_into_wait_raises_non_determinism_error(engine):
    @ds.durable_handler
    def handler(event, ctx):
        if CODE["version"] == 1:
            ctx.step("pause", lambda s: 1)
        else:
            ctx.wait(5, name="pause")
        ctx.wait(10)
        return "done"

    res = start_flip_advance(engine, handler)
    assert res.status == "FAILED"
    assert res.error["ErrorType"] == "NonDeterminismError"
    message = res.error["ErrorMessage"]
    assert "WAIT/Wait" in message and "STEP/Step" in message
    assert events(engine, res.arn, "WaitStarted", name="pause") == []


def test_step_changed_into_child_context_raises_non_determinism_error(engine):
    @ds.durable_handler
    def handler(event, ctx):
        if CODE["version"] == 1:
            ctx.step("unit", lambda s: 1)
        else:
            with ctx.child("unit") as c:
                c.step("inner", lambda s: 1)
        ctx.wait(10)
        return "done"

    res = start_flip_advance(engine, handler)
    assert res.status == "FAILED"
    assert res.error["ErrorType"] == "NonDeterminismError"
    assert "CONTEXT/RunInChildContext" in res.error["ErrorMessage"]
    assert "STEP/Step" in res.error["ErrorMessage"]
    assert events(engine, res.arn, "ContextStarted") == []


def test_non_determinism_inside_child_block_names_the_context(engine):
    @ds.durable_handler
    def handler(event, ctx):
        with ctx.child("group") as c:
            c.step("v1" if CODE["version"] == 1 else "v2", lambda s: 1)
            c.wait(10)
        return "done"

    res = start_flip_advance(engine, handler)
    assert res.status == "FAILED"
    assert res.error["ErrorType"] == "NonDeterminismError"
    message = res.error["ErrorMessage"]
    assert "'group'" in message and "'v1'" in message and "'v2'" in message
    # the changed code must not be recorded as the context's own failure
    [group] = [op for op in engine.operations(res.arn) if op.get("Name") == "group"]
    assert group["Status"] == "STARTED"
    assert events(engine, res.arn, "ContextFailed") == []


def test_non_determinism_inside_run_in_child_context_is_not_a_business_failure(engine):
    @ds.durable_handler
    def handler(event, ctx):
        def body(c):
            c.step("v1" if CODE["version"] == 1 else "v2", lambda s: 1)
            c.wait(10)
            return "body"

        try:
            return ctx.run_in_child_context(body, name="group")
        except ds.ChildContextError:
            return "fallback"  # user code handling business failures must not swallow non-determinism

    res = start_flip_advance(engine, handler)
    assert res.status == "FAILED"
    assert res.error["ErrorType"] == "NonDeterminismError"
    assert events(engine, res.arn, "ContextFailed") == []


def test_unchanged_code_replays_fine(engine):
    @ds.durable_handler
    def handler(event, ctx):
        ctx.step("a", lambda s: 1)
        ctx.wait(10)
        return ctx.step("b", lambda s: 2)

    res = start_flip_advance(engine, handler)  # version flips but the code ignores it
    assert res.status == "SUCCEEDED" and res.result == 2


# ============================================================================= replay flags and logging


def test_is_replaying_and_logger_silence(engine, caplog):
    flags = []

    @ds.durable_handler
    def handler(event, ctx):
        flags.append(("start", ctx.is_replaying()))
        ctx.logger.info("quiet on replay")
        ctx.logger.with_replay().info("always")
        ctx.step("a", lambda s: 1)
        flags.append(("after-a", ctx.is_replaying()))
        ctx.wait(5)
        ctx.step("b", lambda s: 2)
        flags.append(("after-b", ctx.is_replaying()))
        return event

    with caplog.at_level(logging.INFO, logger="durable_sync.user"):
        res = engine.run(handler, input={"k": [1, 2]})
    assert res.status == "SUCCEEDED" and res.result == {"k": [1, 2]}
    assert flags == [("start", False), ("after-a", False),
                     ("start", True), ("after-a", True), ("after-b", False)]
    messages = [r.getMessage() for r in caplog.records if r.name == "durable_sync.user"]
    assert messages.count("quiet on replay") == 1
    assert messages.count("always") == 2
    record = next(r for r in caplog.records if r.getMessage() == "quiet on replay")
    assert record.execution_arn == res.arn


# ============================================================================= a long workflow


def test_thousand_step_workflow_with_a_wait_in_the_middle(engine):
    n = 1000
    runs = [0] * n
    invocations = []

    def make(i):
        def body(step_ctx):
            runs[i] += 1
            return i * i
        return body

    @ds.durable_handler
    def handler(event, ctx):
        invocations.append(1)
        total = 0
        for i in range(n):
            if i == n // 2:
                ctx.wait(ds.Duration.from_minutes(30), name="half-time")
            total += ctx.step(f"step-{i}", make(i))
        return total

    res = engine.run(handler)
    assert res.status == "SUCCEEDED", res.error
    assert res.result == sum(i * i for i in range(n))
    assert runs == [1] * n  # every step ran exactly once
    assert len(invocations) == 2
    started = events(engine, res.arn, "StepStarted")
    succeeded = events(engine, res.arn, "StepSucceeded")
    assert len(started) == len(succeeded) == n
    assert sorted(e["Name"] for e in started) == sorted(f"step-{i}" for i in range(n))
    assert len({e["Name"] for e in succeeded}) == n
    ops = [op for op in engine.operations(res.arn) if op["Type"] == "STEP"]
    assert len(ops) == n and all(op["Status"] == "SUCCEEDED" for op in ops)
    # ids follow the root counter (the wait is operation 501)
    assert ops[0]["Id"] == wire.operation_id(None, 1)
    wait_ops = [op for op in engine.operations(res.arn) if op["Type"] == "WAIT"]
    assert [op["Id"] for op in wait_ops] == [wire.operation_id(None, n // 2 + 1)]
    # the second half ran after the wait, the first half before it
    wait_done = events(engine, res.arn, "WaitSucceeded")[0]["EventTimestamp"]
    first = events(engine, res.arn, "StepSucceeded", name="step-0")[0]["EventTimestamp"]
    last = events(engine, res.arn, "StepSucceeded", name=f"step-{n - 1}")[0]["EventTimestamp"]
    assert first < wait_done <= last
