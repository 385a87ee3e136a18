"""The rules every durable operation shares (durable_sync/operations/scope.py), at their edges.

Which context may be used from which thread, which exception a failure raises on the first run
and on replay, what is checkpointed when the SDK gives up on an operation, replay status and
logs after concurrent work, the documented call forms, config checks, always-replay mode.
"""
from __future__ import annotations

import threading

import pytest

import durable_sync as ds
from durable_sync import pool as pool_module
from durable_sync.testing import DurableTestRunner

from helpers import Calls

NO_RETRY = ds.StepConfig(retry_strategy=ds.RetryPresets.none())


def ops_by_name(engine, arn):
    return {op.get("Name"): op for op in engine.operations(arn) if op["Type"] != "EXECUTION"}


def refusal(fn):
    """Run ``fn``; the NestedOperationError message it raised, or 'accepted'."""
    try:
        fn()
    except ds.NestedOperationError as exc:
        return str(exc)
    return "accepted"


# ============================================================================= 1. ancestor contexts


@pytest.mark.parametrize("max_concurrency", [1, None])
def test_a_map_item_that_uses_the_handlers_context_is_refused_naming_its_own(engine, max_concurrency):
    @ds.durable_handler
    def handler(event, ctx):
        def item(c, x, index, items):
            return refusal(lambda: ctx.step(f"wrong-{x}", lambda s: x))
        result = ctx.map([1, 2, 3], item, name="m", config=ds.MapConfig(max_concurrency=max_concurrency))
        return result.get_results()

    res = engine.run(handler)
    assert res.status == "SUCCEEDED", res.error
    for message in res.result:
        assert message != "accepted"
        assert "map item" in message and "the context it receives" in message
    assert not [name for name in ops_by_name(engine, res.arn) if name and name.startswith("wrong")]


def test_a_parallel_branch_that_uses_an_enclosing_child_context_is_refused(engine):
    @ds.durable_handler
    def handler(event, ctx):
        with ctx.child("outer") as outer:
            result = outer.parallel([lambda b: refusal(lambda: outer.step("wrong", lambda s: 1)),
                                     lambda b: b.step("right", lambda s: "ok")])
        return result.get_results()

    res = engine.run(handler)
    assert res.status == "SUCCEEDED", res.error
    assert "parallel branch 0" in res.result[0] and res.result[1] == "ok"
    assert "wrong" not in ops_by_name(engine, res.arn)


# ============================================================================= 2. threads


def test_a_thread_the_handler_started_is_refused(engine):
    @ds.durable_handler
    def handler(event, ctx):
        seen = {}
        thread = threading.Thread(target=lambda: seen.update(message=refusal(lambda: ctx.step("t", lambda s: 1))))
        thread.start()
        thread.join()
        return seen["message"]

    res = engine.run(handler)
    assert res.status == "SUCCEEDED", res.error
    assert "thread" in res.result and "ctx.map" in res.result and "ctx.concurrently()" in res.result
    assert "t" not in ops_by_name(engine, res.arn)


def test_a_thread_a_step_body_started_is_refused(engine):
    @ds.durable_handler
    def handler(event, ctx):
        def body(step):
            seen = {}
            thread = threading.Thread(target=lambda: seen.update(m=refusal(lambda: ctx.wait(1, name="w"))))
            thread.start()
            thread.join()
            return seen["m"]
        return ctx.step("outer", body)

    res = engine.run(handler)
    assert res.status == "SUCCEEDED", res.error
    assert res.result != "accepted" and "thread" in res.result
    assert "w" not in ops_by_name(engine, res.arn)


class _NoThreads:
    """Stands in for the ``threading`` module inside durable_sync.pool: starting a thread fails, so
    every unit runs on the thread of the caller (the pool's documented fallback)."""

    class Thread(threading.Thread):
        def start(self):
            raise RuntimeError("can't start new thread")

    def __getattr__(self, name):
        return getattr(threading, name)


@pytest.mark.parametrize("threads", ["pool", "caller"])
def test_a_unit_that_submits_to_its_group_is_refused_on_any_thread(engine, monkeypatch, threads):
    if threads == "caller":
        monkeypatch.setattr(pool_module, "threading", _NoThreads())
    runners = set()

    @ds.durable_handler
    def handler(event, ctx):
        def unit(c):
            runners.add(threading.get_ident())
            return refusal(lambda: group.step("from-unit", lambda s: 1))
        with ctx.concurrently("g") as group:
            future = group.run_in_child_context(unit, name="u")
            message = future.result()  # waiting: a pool thread runs the unit, or (no threads) this one
        return message

    res = engine.run(handler)
    assert res.status == "SUCCEEDED", res.error
    assert res.result != "accepted" and "unit" in res.result
    assert "from-unit" not in ops_by_name(engine, res.arn)
    assert (threading.get_ident() in runners) == (threads == "caller")


# ============================================================================= 5. same class on replay


class Unserializable:
    def __init__(self):
        self.lock = threading.Lock()


def _classes_on_each_invocation(engine, body):
    """Run ``body(ctx)`` (which fails), then wait 1 s and run it again on replay: the exception
    class each invocation saw."""
    seen = []

    @ds.durable_handler
    def handler(event, ctx):
        try:
            body(ctx)
        except Exception as exc:  # noqa: BLE001 - the class is what the test looks at
            seen.append(type(exc).__name__)
        ctx.wait(1, name="then-replay")
        return seen

    res = engine.run(handler)
    assert res.status == "SUCCEEDED", res.error
    return res.result


@pytest.mark.parametrize("operation", ["step", "child", "map", "group-step"])
def test_an_unserializable_result_raises_serdes_error_on_the_first_run_and_on_replay(engine, operation):
    def body(ctx):
        if operation == "step":
            ctx.step("bad", lambda s: Unserializable())
        elif operation == "child":
            ctx.run_in_child_context(lambda c: Unserializable(), name="bad")
        elif operation == "map":
            ctx.map([1], lambda c, x, i, xs: x, name="bad",
                    config=ds.MapConfig(serdes=_ExplodingSerDes()))
        else:
            with ctx.concurrently("g") as group:
                future = group.step("bad", lambda s: Unserializable())
            future.result()

    assert _classes_on_each_invocation(engine, body) == ["SerDesError", "SerDesError"]


def test_a_nested_operation_raises_nested_operation_error_on_the_first_run_and_on_replay(engine):
    def body(ctx):
        ctx.step("outer", lambda s: ctx.step("inner", lambda s2: 1))

    assert _classes_on_each_invocation(engine, body) == ["NestedOperationError", "NestedOperationError"]


class _ExplodingSerDes:
    def serialize(self, value, ctx):
        raise ds.SerDesError("cannot encode this")

    def deserialize(self, text, ctx):  # pragma: no cover - never reached
        raise AssertionError("never called")


# ============================================================================= 6. nothing left STARTED


class _BrokenStr(Exception):
    def __str__(self):
        raise RuntimeError("__str__ is broken")


def _fails_once_then_replays(engine, handler):
    """Run ``handler`` (which gives up on its operation 'x' and then waits), return (result, op 'x')."""
    res = engine.run(handler)
    assert res.status == "SUCCEEDED", res.error
    return res.result, ops_by_name(engine, res.arn)["x"]


@pytest.mark.parametrize("case", ["too-large", "strategy-raises", "broken-str", "child-unserializable",
                                  "item-serdes"])
def test_the_sdk_records_failed_when_it_gives_up_so_the_body_never_runs_again(engine, case):
    calls = Calls()

    def raising_strategy(error, attempt):
        raise ValueError("the strategy is broken")

    @ds.durable_handler
    def handler(event, ctx):
        def body(*_):
            calls.hit("body")
            if case == "too-large":
                return "x" * (7 * 1024 * 1024)
            if case in ("strategy-raises", "broken-str"):
                raise _BrokenStr() if case == "broken-str" else ConnectionError("flaky")
            return Unserializable()
        try:
            if case == "too-large":
                ctx.step("x", body)
            elif case == "strategy-raises":
                ctx.step("x", body, config=ds.StepConfig(retry_strategy=raising_strategy))
            elif case == "broken-str":
                ctx.step("x", body, config=NO_RETRY)
            elif case == "child-unserializable":
                ctx.run_in_child_context(body, name="x")
            else:
                result = ctx.map([1], lambda c, *a: body(), name="m",
                                 config=ds.MapConfig(item_serdes=_ExplodingSerDes(), item_namer=lambda item, i: "x"))
                outcome = result.failed()[0].error.error_type
        except ds.DurableError as exc:
            outcome = type(exc).__name__
        ctx.wait(1, name="next-invocation")  # the operation is replayed once more, from its record
        return outcome

    outcome, op = _fails_once_then_replays(engine, handler)
    assert op["Status"] == "FAILED", op
    assert calls["body"] == 1  # never again: not on replay, not by a retry
    error = (op.get("StepDetails") or op.get("ContextDetails"))["Error"]
    assert error["ErrorType"] and error["ErrorMessage"]
    expected = {"too-large": "SerDesError", "strategy-raises": "StepError", "broken-str": "StepError",
                "child-unserializable": "SerDesError", "item-serdes": "SerDesError"}[case]
    assert outcome == expected


# ============================================================================= 7. replay status and logs


@pytest.mark.parametrize("kind", ["map", "parallel", "concurrently"])
def test_code_after_concurrent_work_whose_branches_completed_earlier_logs_and_is_not_replaying(
        engine, captured, kind):
    """Branch 0 completes in the first invocation, branch 1 waits; in the second, branch 0 is answered
    from its checkpoint (its inner step is never reached again) and branch 1 ends with its wait."""
    def first(c):
        return c.step("inner-0", lambda s: 0)

    def second(c):
        c.wait(1, name="w")
        return 1

    @ds.durable_handler
    def handler(event, ctx):
        if kind == "map":
            ctx.map([0, 1], lambda c, x, i, xs: first(c) if x == 0 else second(c), name="work")
        elif kind == "parallel":
            ctx.parallel([first, second], name="work")
        else:
            with ctx.concurrently("work") as group:
                group.run_in_child_context(first, name="first")
                group.run_in_child_context(second, name="second")
        ctx.logger.info("after the work, replaying=%s", ctx.is_replaying())
        return ctx.is_replaying()

    res = engine.run(handler)
    assert res.status == "SUCCEEDED", res.error
    assert res.result is False
    assert captured.messages() == ["after the work, replaying=False"]


def test_a_replaying_branch_does_not_log_twice_while_another_branch_runs_new_code(engine, captured):
    invocation = {"n": 0}
    item_0_ran_new_code = threading.Event()

    @ds.durable_handler
    def handler(event, ctx):
        invocation["n"] += 1
        item_0_ran_new_code.clear()

        def item(c, x, index, items):
            if x == 0:
                c.step("s0", lambda s: 0)
                c.wait(1)
                c.step("late-0", lambda s: 0)  # new code in the second invocation
                item_0_ran_new_code.set()
                return 0
            if invocation["n"] == 2:
                item_0_ran_new_code.wait(10)  # replay item 1 only once item 0 ran new code
            c.logger.info("item 1 logs this once")
            c.step("s1", lambda s: 1)
            c.wait(2)
            return 1

        return ctx.map([0, 1], item, name="m").get_results()

    res = engine.run(handler)
    assert res.status == "SUCCEEDED", res.error
    assert res.result == [0, 1] and invocation["n"] == 3
    assert captured.messages() == ["item 1 logs this once"]


# ============================================================================= 8. call forms


def test_the_name_first_form_takes_config_as_third_positional_argument(engine):
    @ds.durable_handler
    def handler(event, ctx):
        try:
            ctx.step("direct", lambda s: 1 / 0, NO_RETRY)
        except ds.StepError as exc:
            direct = exc.error_type
        with ctx.concurrently("g") as group:
            group.step("grouped", lambda s: 1 / 0, NO_RETRY)
        return [direct]

    res = engine.run(handler)
    # the group's failure is raised when the block ends: one attempt each (no retry), no bad-argument error
    assert res.status == "FAILED" and res.error["ErrorType"] == "ZeroDivisionError", res.error
    ops = ops_by_name(engine, res.arn)
    assert ops["direct"]["Status"] == "FAILED" and ops["grouped"]["Status"] == "FAILED"
    assert ops["direct"]["StepDetails"]["Attempt"] == 1 and ops["grouped"]["StepDetails"]["Attempt"] == 1


# ============================================================================= 9. configs up front


@pytest.mark.parametrize("operation", ["step", "child", "map", "parallel", "callback", "condition", "invoke",
                                       "wait_for_callback", "group-step"])
@pytest.mark.parametrize("config", [{"retry_strategy": None}, "wrong-type"])
def test_a_config_of_the_wrong_type_is_refused_before_anything_is_checkpointed(engine, operation, config):
    bad = ds.MapConfig() if config == "wrong-type" else config
    if operation == "map":
        bad = ds.StepConfig() if config == "wrong-type" else config

    @ds.durable_handler
    def handler(event, ctx):
        calls = {
            "step": lambda: ctx.step("x", lambda s: 1, bad),
            "child": lambda: ctx.run_in_child_context(lambda c: 1, name="x", config=bad),
            "map": lambda: ctx.map([1], lambda c, *a: 1, name="x", config=bad),
            "parallel": lambda: ctx.parallel([lambda c: 1], name="x", config=bad),
            "callback": lambda: ctx.create_callback("x", config=bad),
            "condition": lambda: ctx.wait_for_condition(lambda s, c: s, config=bad, name="x"),
            "invoke": lambda: ctx.invoke("target", {}, name="x", config=bad),
            "wait_for_callback": lambda: ctx.wait_for_callback(lambda cid, c: None, name="x", config=bad),
        }
        try:
            if operation == "group-step":
                with ctx.concurrently("g") as group:
                    group.step("x", lambda s: 1, config=bad)
            else:
                calls[operation]()
        except ds.ValidationError as exc:
            return str(exc)
        return "accepted"

    res = engine.run(handler)
    assert res.status == "SUCCEEDED", res.error
    assert res.result != "accepted" and "config" in res.result
    assert "x" not in ops_by_name(engine, res.arn)


@pytest.mark.parametrize("make", [lambda: ds.StepConfig(step_semantics="AT_MOST_ONCE_PER_RETRY"),
                                  lambda: ds.StepConfig(retry_strategy="three times"),
                                  lambda: ds.StepConfig(retry_strategy=42)])
def test_bad_step_config_fields_are_refused_when_the_step_is_called(engine, make):
    @ds.durable_handler
    def handler(event, ctx):
        try:
            ctx.step("x", lambda s: 1, make())
        except ds.ValidationError as exc:
            return str(exc)
        return "accepted"

    res = engine.run(handler)
    assert res.status == "SUCCEEDED", res.error
    assert res.result != "accepted" and "StepConfig" in res.result
    assert ops_by_name(engine, res.arn) == {}


# ============================================================================= 10. always-replay mode


def test_always_replay_ends_for_a_child_unit_followed_by_a_step_unit_with_one_slot():
    @ds.durable_handler
    def handler(event, ctx):
        with ctx.concurrently("g", max_concurrency=1) as group:
            child = group.run_in_child_context(lambda c: c.step("inner", lambda s: 1) + 1, name="child")
            step = group.step("after", lambda s: 10)
        return child.result() + step.result()

    with DurableTestRunner(handler, always_replay=True) as runner:
        result = runner.run()
    assert result.status == "SUCCEEDED", result.error
    assert result.result == 12
