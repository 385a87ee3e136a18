"""Core tests of ``ctx.wait`` and child contexts (``with ctx.child()`` and ``run_in_child_context``).

All on ``LocalEngine(db=":memory:", skip_time=True)``: durable waits take virtual time only.
"""
from __future__ import annotations

import datetime as dt
import json
import time

import pytest

import durable_sync as ds
from helpers import events
from durable_sync import wire
from durable_sync.local import LocalEngine

KIB = 1024


def user_ops(engine, arn):
    return [op for op in engine.operations(arn) if op["Type"] != "EXECUTION"]


def op_named(engine, arn, name):
    [op] = [op for op in engine.operations(arn) if op.get("Name") == name]
    return op


# ============================================================================= wait


def test_wait_accepts_duration_timedelta_and_int_seconds(engine):
    @ds.durable_handler
    def handler(event, ctx):
        ctx.wait(ds.Duration.from_seconds(5), name="duration")
        ctx.wait(dt.timedelta(minutes=1, seconds=30), name="timedelta")
        ctx.wait(3, name="int")
        ctx.wait(ds.Duration.from_minutes(2))
        ctx.wait(1.2)  # rounds up to whole seconds
        return "done"

    res = engine.run(handler)
    assert res.status == "SUCCEEDED" and res.result == "done"
    started = events(engine, res.arn, "WaitStarted")
    assert [e.get("Name") for e in started] == ["duration", "timedelta", "int", None, None]
    assert [e["WaitStartedDetails"]["Duration"] for e in started] == [5, 90, 3, 120, 2]
    for e in started:
        d = e["WaitStartedDetails"]
        assert (d["ScheduledEndTimestamp"] - e["EventTimestamp"]).total_seconds() == d["Duration"]
    succeeded = events(engine, res.arn, "WaitSucceeded")
    assert len(succeeded) == 5
    assert [op["Status"] for op in user_ops(engine, res.arn)] == ["SUCCEEDED"] * 5
    # one invocation per wait, plus the first
    assert len(events(engine, res.arn, "InvocationCompleted")) == 6


def test_wait_suspends_and_the_engine_resumes_exactly_when_due(engine):
    @ds.durable_handler
    def handler(event, ctx):
        ctx.wait(ds.Duration.from_hours(1), name="hour")
        return "after an hour"

    wall = time.monotonic()
    arn = engine.start(handler)
    assert engine.get_execution(arn).status == "RUNNING"
    [op] = user_ops(engine, arn)
    assert op["Type"] == "WAIT" and op["Status"] == "STARTED"
    engine.advance(3599)
    assert engine.get_execution(arn).status == "RUNNING"
    engine.advance(1)
    res = engine.get_execution(arn)
    assert res.status == "SUCCEEDED" and res.result == "after an hour"
    assert time.monotonic() - wall < 5  # virtual time: no real waiting
    started = events(engine, arn, "WaitStarted")[0]
    done = events(engine, arn, "WaitSucceeded")[0]
    assert (done["EventTimestamp"] - started["EventTimestamp"]).total_seconds() == 3600


def test_one_hour_wait_with_run_finishes_instantly(engine):
    @ds.durable_handler
    def handler(event, ctx):
        ctx.wait(dt.timedelta(hours=1))
        return 1

    wall = time.monotonic()
    res = engine.run(handler)
    assert res.status == "SUCCEEDED" and res.result == 1
    assert time.monotonic() - wall < 5


BAD_DURATIONS = [0, -1, 366 * 86400 + 1, dt.timedelta(0), dt.timedelta(seconds=-5), dt.timedelta(days=367),
                 ds.Duration.from_days(367), "5", None, True, float("nan"), float("inf"), [1]]


@pytest.mark.parametrize("bad", BAD_DURATIONS, ids=[repr(b) for b in BAD_DURATIONS])
def test_invalid_wait_duration_raises_before_any_checkpoint(engine, bad):
    @ds.durable_handler
    def handler(event, ctx):
        try:
            ctx.wait(bad)
        except ds.ValidationError as exc:
            return ["ValidationError", str(exc)]
        return "accepted"

    res = engine.run(handler)
    assert res.status == "SUCCEEDED", res.error
    assert res.result[0] == "ValidationError"
    assert user_ops(engine, res.arn) == []
    assert events(engine, res.arn, "WaitStarted") == []


def test_invalid_wait_still_allows_next_operation_with_first_id(engine):
    @ds.durable_handler
    def handler(event, ctx):
        with pytest.raises(ds.ValidationError):
            ctx.wait(0)
        ctx.wait(1, name="real")
        return "ok"

    res = engine.run(handler)
    assert res.status == "SUCCEEDED"
    [op] = user_ops(engine, res.arn)
    assert op["Id"] == wire.operation_id(None, 1)  # the refused wait used no id


def test_wait_boundaries_are_accepted(engine):
    @ds.durable_handler
    def handler(event, ctx):
        ctx.wait(1)
        ctx.wait(ds.Duration.from_days(30))
        return "ok"

    res = engine.run(handler)
    assert res.status == "SUCCEEDED"
    assert [e["WaitStartedDetails"]["Duration"] for e in events(engine, res.arn, "WaitStarted")] == [1, 30 * 86400]


BAD_NAMES = ["x" * 257, "café", "tab\tname", "", "emoji 🚀"]


@pytest.mark.parametrize("bad_name", BAD_NAMES, ids=["too-long", "non-ascii", "control", "empty", "emoji"])
@pytest.mark.parametrize("op", ["wait", "step", "child", "run_in_child_context"])
def test_invalid_operation_names_raise_validation_error(engine, bad_name, op):
    @ds.durable_handler
    def handler(event, ctx):
        try:
            if op == "wait":
                ctx.wait(1, name=bad_name)
            elif op == "step":
                ctx.step(bad_name, lambda s: 1)
            elif op == "child":
                with ctx.child(bad_name):
                    pass
            else:
                ctx.run_in_child_context(lambda c: 1, name=bad_name)
        except ds.ValidationError as exc:
            return str(exc)
        return "accepted"

    res = engine.run(handler)
    assert res.status == "SUCCEEDED", res.error
    assert res.result != "accepted"
    assert "name" in res.result
    assert user_ops(engine, res.arn) == []


def test_longest_valid_name_is_accepted(engine):
    name = "n" * 256

    @ds.durable_handler
    def handler(event, ctx):
        ctx.wait(1, name=name)
        return ctx.step(name, lambda s: "ok")

    res = engine.run(handler)
    assert res.status == "SUCCEEDED" and res.result == "ok"
    assert [op["Name"] for op in user_ops(engine, res.arn)] == [name, name]


# ============================================================================= with ctx.child()


def test_child_block_checkpoints_result_and_replays_children(engine):
    calls = {"body": 0, "charge": 0}

    def charge(step_ctx):
        calls["charge"] += 1
        return 42

    @ds.durable_handler
    def handler(event, ctx):
        with ctx.child("process") as c:
            calls["body"] += 1
            assert isinstance(c, ds.DurableContext)
            value = c.step("charge", charge)
            c.wait(3, name="inner-wait")
            c.result = {"charged": value}
        stored = c.result
        ctx.wait(5, name="outer-wait")
        return {"block": stored}

    res = engine.run(handler)
    assert res.status == "SUCCEEDED", res.error
    assert res.result == {"block": {"charged": 42}}
    # invocations: 1 (suspends in the inner wait), 2 (block completes, outer wait), 3 (final)
    assert calls == {"body": 3, "charge": 1}
    ctx_op = op_named(engine, res.arn, "process")
    assert ctx_op["Type"] == "CONTEXT" and ctx_op["SubType"] == "RunInChildContext"
    assert ctx_op["Id"] == wire.operation_id(None, 1)
    assert ctx_op["ContextDetails"]["ReplayChildren"] is True
    assert json.loads(ctx_op["ContextDetails"]["Result"]) == {"charged": 42}
    [succeeded] = events(engine, res.arn, "ContextSucceeded")
    assert json.loads(succeeded["ContextSucceededDetails"]["Result"]["Payload"]) == {"charged": 42}
    assert len(events(engine, res.arn, "ContextStarted")) == 1
    # children belong to the block
    charge_op, inner_wait = op_named(engine, res.arn, "charge"), op_named(engine, res.arn, "inner-wait")
    assert charge_op["ParentId"] == inner_wait["ParentId"] == ctx_op["Id"]
    assert charge_op["Id"] == wire.operation_id(ctx_op["Id"], 1)
    assert inner_wait["Id"] == wire.operation_id(ctx_op["Id"], 2)
    assert op_named(engine, res.arn, "outer-wait")["Id"] == wire.operation_id(None, 2)
    assert len(events(engine, res.arn, "StepStarted")) == 1


def test_child_block_without_result_stores_null(engine):
    @ds.durable_handler
    def handler(event, ctx):
        with ctx.child("empty") as c:
            c.step("s", lambda s: 1)
        return "ok"

    res = engine.run(handler)
    op = op_named(engine, res.arn, "empty")
    assert op["Status"] == "SUCCEEDED"
    assert op["ContextDetails"]["ReplayChildren"] is True
    assert json.loads(op["ContextDetails"]["Result"]) is None


class OrderRejected(Exception):
    def __init__(self, message, code):
        super().__init__(message)
        self.code = code


def test_child_block_exception_propagates_unchanged_first_run_and_replay(engine):
    caught = []
    steps = []

    @ds.durable_handler
    def handler(event, ctx):
        try:
            with ctx.child("validate") as c:
                c.step("check", lambda s: steps.append(1) or "checked")
                raise OrderRejected("too expensive", code=17)
        except OrderRejected as exc:  # the very same class, not a wrapper
            caught.append((type(exc), str(exc), exc.code))
        ctx.wait(2)
        return "handled"

    res = engine.run(handler)
    assert res.status == "SUCCEEDED", res.error
    assert caught == [(OrderRejected, "too expensive", 17)] * 2  # first run and replay
    assert steps == [1]
    [failed] = events(engine, res.arn, "ContextFailed")
    assert failed["ContextFailedDetails"]["Error"]["Payload"]["ErrorType"] == "OrderRejected"
    op = op_named(engine, res.arn, "validate")
    assert op["Status"] == "FAILED"


def test_child_block_exception_fails_execution_with_original_type(engine):
    @ds.durable_handler
    def handler(event, ctx):
        with ctx.child("boom"):
            raise KeyError("missing")

    res = engine.run(handler)
    assert res.status == "FAILED"
    assert res.error["ErrorType"] == "KeyError"


def test_child_block_large_result_is_replayed(engine):
    calls = {"body": 0, "part": 0}
    big = "y" * (300 * KIB)

    def part(step_ctx):
        calls["part"] += 1
        return "y" * (100 * KIB)

    @ds.durable_handler
    def handler(event, ctx):
        with ctx.child("big") as c:
            calls["body"] += 1
            c.result = "".join(c.step(f"part-{i}", part) for i in range(3))
        value = c.result
        ctx.wait(1)
        return {"len": len(value), "same": value == big}

    res = engine.run(handler)
    assert res.status == "SUCCEEDED", res.error
    assert res.result == {"len": 300 * KIB, "same": True}
    assert calls == {"body": 2, "part": 3}
    op = op_named(engine, res.arn, "big")
    assert op["ContextDetails"]["ReplayChildren"] is True
    assert op["ContextDetails"].get("Result", "") == ""


# ============================================================================= run_in_child_context


def test_run_in_child_context_returns_stored_result_without_rerunning(engine):
    calls = {"fn": 0, "step": 0}

    def process(child):
        calls["fn"] += 1
        v = child.step("inner", lambda s: calls.__setitem__("step", calls["step"] + 1) or 21)
        return {"doubled": v * 2, "when": dt.datetime(2024, 5, 1, tzinfo=dt.timezone.utc)}

    @ds.durable_handler
    def handler(event, ctx):
        out = ctx.run_in_child_context(process)
        ctx.wait(4)
        assert out["when"].year == 2024
        return out["doubled"]

    res = engine.run(handler)
    assert res.status == "SUCCEEDED", res.error
    assert res.result == 42
    assert calls == {"fn": 1, "step": 1}
    op = op_named(engine, res.arn, "process")  # named after the function
    assert op["SubType"] == "RunInChildContext"
    assert not op["ContextDetails"].get("ReplayChildren")
    inner = op_named(engine, res.arn, "inner")
    assert inner["ParentId"] == op["Id"]
    assert len(events(engine, res.arn, "ContextSucceeded")) == 1


@ds.durable_with_child_context
def ship(child, address):
    return child.step("label", lambda s: f"label for {address}")


def test_durable_with_child_context_naming(engine):
    @ds.durable_handler
    def handler(event, ctx):
        a = ctx.run_in_child_context(ship("Main St"))
        b = ctx.run_in_child_context(ship("Elm St"), name="second")
        c = ctx.run_in_child_context(lambda child: child.step("x", lambda s: 3))
        return [a, b, c]

    res = engine.run(handler)
    assert res.result == ["label for Main St", "label for Elm St", 3]
    contexts = [op for op in engine.operations(res.arn) if op["Type"] == "CONTEXT"]
    assert [op.get("Name") for op in contexts] == ["ship", "second", None]


def test_nested_child_contexts_three_deep(engine):
    @ds.durable_handler
    def handler(event, ctx):
        ctx.step("root-step", lambda s: 0)
        with ctx.child("a") as a:
            a.step("a-step", lambda s: 1)
            with a.child("b") as b:
                b.wait(1, name="b-wait")
                with b.child("c") as c:
                    c.step("leaf", lambda s: 3)
                    c.result = "c-done"
                b.result = "b-done"
            a.result = "a-done"
        return "ok"

    res = engine.run(handler)
    assert res.status == "SUCCEEDED", res.error
    ops = {op.get("Name"): op for op in engine.operations(res.arn)}
    a_id = wire.operation_id(None, 2)
    b_id = wire.operation_id(a_id, 2)
    c_id = wire.operation_id(b_id, 2)
    expected = {
        "root-step": (wire.operation_id(None, 1), None),
        "a": (a_id, None),
        "a-step": (wire.operation_id(a_id, 1), a_id),
        "b": (b_id, a_id),
        "b-wait": (wire.operation_id(b_id, 1), b_id),
        "c": (c_id, b_id),
        "leaf": (wire.operation_id(c_id, 1), c_id),
    }
    for name, (op_id, parent) in expected.items():
        assert ops[name]["Id"] == op_id, name
        assert ops[name].get("ParentId") == parent, name
    assert all(len(op_id) == 64 for op_id, _ in expected.values())
    for name, result in (("a", "a-done"), ("b", "b-done"), ("c", "c-done")):
        assert ops[name]["Status"] == "SUCCEEDED"
        assert json.loads(ops[name]["ContextDetails"]["Result"]) == result
    # the leaf's events carry the chain too
    [leaf_done] = events(engine, res.arn, "StepSucceeded", name="leaf")
    assert leaf_done["ParentId"] == c_id


def test_nested_run_in_child_context_ids(engine):
    def level3(c):
        return c.step("leaf", lambda s: "deep")

    def level2(c):
        return c.run_in_child_context(level3)

    def level1(c):
        return c.run_in_child_context(level2)

    @ds.durable_handler
    def handler(event, ctx):
        return ctx.run_in_child_context(level1)

    res = engine.run(handler)
    assert res.result == "deep"
    ops = {op.get("Name"): op for op in engine.operations(res.arn)}
    l1 = wire.operation_id(None, 1)
    l2 = wire.operation_id(l1, 1)
    l3 = wire.operation_id(l2, 1)
    assert [ops["level1"]["Id"], ops["level2"]["Id"], ops["level3"]["Id"]] == [l1, l2, l3]
    assert ops["level2"]["ParentId"] == l1 and ops["level3"]["ParentId"] == l2
    assert ops["leaf"]["Id"] == wire.operation_id(l3, 1) and ops["leaf"]["ParentId"] == l3


def test_run_in_child_context_large_result_replays_children(engine):
    calls = {"fn": 0, "part": 0}

    def part(step_ctx):
        calls["part"] += 1
        return "z" * (100 * KIB)

    def build(child):
        calls["fn"] += 1
        return "".join(child.step(f"part-{i}", part) for i in range(3))

    @ds.durable_handler
    def handler(event, ctx):
        value = ctx.run_in_child_context(build, name="build")
        ctx.wait(1)
        return {"len": len(value), "same": value == "z" * (300 * KIB)}

    res = engine.run(handler)
    assert res.status == "SUCCEEDED", res.error
    assert res.result == {"len": 300 * KIB, "same": True}
    assert calls == {"fn": 2, "part": 3}  # body re-ran on replay, its steps replayed
    op = op_named(engine, res.arn, "build")
    assert op["ContextDetails"]["ReplayChildren"] is True
    assert op["ContextDetails"].get("Result", "") == ""
    assert len(events(engine, res.arn, "StepStarted")) == 3


@pytest.mark.parametrize("extra, replays", [(0, False), (1, True)])
def test_run_in_child_context_256_kib_boundary(engine, extra, replays):
    # the JSON text of a string is the string plus two quotes
    size = 256 * KIB - 2 + extra

    @ds.durable_handler
    def handler(event, ctx):
        value = ctx.run_in_child_context(lambda c: c.step("s", lambda s: "q" * size), name="edge")
        return len(value)

    res = engine.run(handler)
    assert res.result == size
    op = op_named(engine, res.arn, "edge")
    assert bool(op["ContextDetails"].get("ReplayChildren")) is replays


class Utf8SerDes:
    """Writes raw UTF-8 (no \\u escapes): byte length and character length differ."""

    def serialize(self, value, ctx):
        return json.dumps(value, ensure_ascii=False)

    def deserialize(self, text, ctx):
        return json.loads(text)


def test_child_result_limit_counts_bytes_not_characters(engine):
    chars = 200 * KIB  # 400 KiB once encoded as UTF-8

    @ds.durable_handler
    def handler(event, ctx):
        value = ctx.run_in_child_context(lambda c: "é" * chars, name="utf8",
                                         config=ds.ChildConfig(serdes=Utf8SerDes()))
        return len(value)

    res = engine.run(handler)
    assert res.result == chars
    op = op_named(engine, res.arn, "utf8")
    assert op["ContextDetails"]["ReplayChildren"] is True


def test_failed_run_in_child_context_raises_child_context_error(engine):
    calls = []
    caught = []

    class InventoryGone(Exception):
        pass

    def reserve(child):
        calls.append(1)
        child.step("look", lambda s: "looked")
        raise InventoryGone("sku apple is gone")

    @ds.durable_handler
    def handler(event, ctx):
        try:
            ctx.run_in_child_context(reserve)
        except ds.ChildContextError as exc:
            caught.append((type(exc).__name__, exc.error_type, exc.error_message))
        ctx.wait(2)
        return "handled"

    res = engine.run(handler)
    assert res.status == "SUCCEEDED", res.error
    assert caught == [("ChildContextError", "InventoryGone", "sku apple is gone")] * 2
    assert calls == [1]  # not re-run on replay
    [failed] = events(engine, res.arn, "ContextFailed")
    assert failed["ContextFailedDetails"]["Error"]["Payload"]["ErrorType"] == "InventoryGone"
    assert op_named(engine, res.arn, "reserve")["Status"] == "FAILED"


def test_failed_run_in_child_context_fails_execution(engine):
    @ds.durable_handler
    def handler(event, ctx):
        return ctx.run_in_child_context(lambda c: c.step("s", lambda s: 1 / 0,
                                                         config=ds.StepConfig(retry_strategy=ds.RetryPresets.none())),
                                        name="div")

    res = engine.run(handler)
    assert res.status == "FAILED"
    assert res.error["ErrorType"] == "ZeroDivisionError"
    assert op_named(engine, res.arn, "div")["Status"] == "FAILED"


@pytest.mark.parametrize("duration, seconds", [(0.2, 1), (0.5, 1), (0.999, 1), (1.2, 2), (1.5, 2),
                                               (dt.timedelta(milliseconds=500), 1), (ds.Duration(1.2), 2)])
def test_a_fractional_wait_rounds_up_to_whole_seconds(engine, duration, seconds):
    @ds.durable_handler
    def handler(event, ctx):
        ctx.wait(duration, name="w")
        return "done"

    res = engine.run(handler)
    assert res.status == "SUCCEEDED" and res.result == "done"
    [started] = events(engine, res.arn, "WaitStarted")
    assert started["WaitStartedDetails"]["Duration"] == seconds
