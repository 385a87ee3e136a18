"""Tests of ``with ctx.concurrently() as group:`` (durable_sync.concurrently).

All on ``LocalEngine(db=":memory:", skip_time=True)`` or DurableTestRunner: durable waits
and retries take virtual time only. The only real sleeps are a few milliseconds inside
unit bodies (simulated work), to make units overlap or finish in a random order.
"""
from __future__ import annotations

import json
import random
import threading
import time

import pytest

import durable_sync as ds
from helpers import Calls, Overlap, os_threads, refuse_checkpoints_naming, threads_gone
from durable_sync import wire
from durable_sync.local import LocalEngine
from durable_sync.testing import DurableTestRunner

RETRY_ONCE = ds.StepConfig(retry_strategy=lambda err, attempt: (
    ds.RetryDecision.retry(3) if attempt < 2 else ds.RetryDecision.no_retry()))
NO_RETRY = ds.StepConfig(retry_strategy=ds.RetryPresets.none())


def ops_of(engine, arn, op_type=None):
    return [op for op in engine.operations(arn)
            if op["Type"] != "EXECUTION" and (op_type is None or op["Type"] == op_type)]


def by_name(engine, arn):
    return {op.get("Name"): op for op in ops_of(engine, arn)}


def event_types(engine, arn):
    return [e["EventType"] for e in engine.history(arn)]


class Boom(Exception):
    pass


def boom(message):
    def body(step):
        raise Boom(message)
    return body


# ============================================================================= wire shape and results


def test_wire_shape_ids_results_and_replay_children(engine):
    @ds.durable_handler
    def handler(event, ctx):
        ctx.step("before", lambda s: 0)
        with ctx.concurrently("enrich") as group:
            profile = group.step("profile", lambda s: {"name": "ada"})
            orders = group.step(lambda s: [1, 2], name="orders")
            risk = group.run_in_child_context(lambda c: c.step("score", lambda s: 7) * 2, name="risk")
            with group.child("audit") as c:
                c.step("log", lambda s: "logged")
                c.result = "audited"
            assert isinstance(profile, ds.DurableFuture)
        return {"profile": profile.result(), "orders": orders.result(), "risk": risk.result(),
                "ids": [f.operation_id for f in group.futures], "group": group.context_id}

    res = engine.run(handler)
    assert res.status == "SUCCEEDED", res.error
    assert res.result["profile"] == {"name": "ada"} and res.result["orders"] == [1, 2] and res.result["risk"] == 14
    ops = by_name(engine, res.arn)
    group = ops["enrich"]
    # The group is a plain child context (what `with ctx.child()` writes), second operation of the handler.
    assert group["Id"] == wire.operation_id(None, 2) == res.result["group"]
    assert (group["Type"], group["SubType"], group["Status"]) == ("CONTEXT", "RunInChildContext", "SUCCEEDED")
    assert group["ContextDetails"]["ReplayChildren"] is True
    assert json.loads(group["ContextDetails"]["Result"]) == {"type": "Concurrently", "unitCount": 4}
    # Units are numbered 1..4 inside the group's context, in submission order.
    expected = [wire.operation_id(group["Id"], n) for n in range(1, 5)]
    assert res.result["ids"] == expected
    for name, n, shape in [("profile", 1, ("STEP", "Step")), ("orders", 2, ("STEP", "Step")),
                           ("risk", 3, ("CONTEXT", "RunInChildContext")),
                           ("audit", 4, ("CONTEXT", "RunInChildContext"))]:
        op = ops[name]
        assert op["Id"] == expected[n - 1] and op["ParentId"] == group["Id"], name
        assert (op["Type"], op["SubType"], op["Status"]) == (*shape, "SUCCEEDED"), name
    assert ops["score"]["ParentId"] == ops["risk"]["Id"] and ops["log"]["ParentId"] == ops["audit"]["Id"]
    assert ops["audit"]["ContextDetails"]["ReplayChildren"] is True  # a `with` block, like ctx.child
    assert ops["risk"]["ContextDetails"]["Result"] == "14"


def test_results_go_through_serdes_round_trip_and_decorated_steps_are_named(engine):
    import datetime

    @ds.durable_step
    def stamp(step, day):
        return datetime.date(2024, 1, day)

    @ds.durable_handler
    def handler(event, ctx):
        with ctx.concurrently() as group:
            first = group.step(stamp(1))
            pair = group.step("pair", lambda s: (1, 2))
        assert first.result() == datetime.date(2024, 1, 1) and pair.result() == (1, 2)  # not a list
        return [first.name, pair.name]

    res = engine.run(handler)
    assert res.status == "SUCCEEDED", res.error
    assert res.result == ["stamp", "pair"]
    assert {op.get("Name") for op in ops_of(engine, res.arn, "STEP")} == {"stamp", "pair"}


def test_ids_and_operations_do_not_depend_on_thread_timing():
    def handler_for(seed):
        rng = random.Random(seed)
        delays = [rng.uniform(0, 0.01) for _ in range(40)]
        it = iter(delays)

        def work(value):
            delay = next(it)

            def body(step):
                time.sleep(delay)  # simulated work: units finish in a different order each run
                return value
            return body

        def child_body(k):
            delay = next(it)

            def body(c):
                time.sleep(delay)
                return [c.step(f"inner-{k}-{j}", work(j)) for j in range(2)]
            return body

        @ds.durable_handler
        def handler(event, ctx):
            with ctx.concurrently("fan", max_concurrency=6) as group:
                futures = []
                for k in range(12):
                    if k % 4 == 3:
                        futures.append(group.run_in_child_context(child_body(k), name=f"child-{k}"))
                    else:
                        futures.append(group.step(f"step-{k}", work(k)))
            return [f.result() for f in futures]
        return handler

    shapes, results, completion_orders = [], [], []
    for seed in range(4):
        engine = LocalEngine(db=":memory:", skip_time=True)
        try:
            res = engine.run(handler_for(seed))
            assert res.status == "SUCCEEDED", res.error
            ops = sorted(ops_of(engine, res.arn), key=lambda op: op["Id"])
            shapes.append([(op["Id"], op.get("Name"), op["Type"], op.get("SubType"), op.get("ParentId"), op["Status"])
                           for op in ops])
            results.append(res.result)
            completion_orders.append([e.get("Name") for e in engine.history(res.arn)
                                      if e["EventType"] == "StepSucceeded"])
        finally:
            engine.close()
    assert all(shape == shapes[0] for shape in shapes) and len(shapes[0]) == 1 + 12 + 3 * 2
    assert all(result == results[0] for result in results)
    # The runs really did finish their units in different orders; the ids did not care.
    assert len({tuple(order) for order in completion_orders}) > 1
    group_id = wire.operation_id(None, 1)
    named = {name: op_id for op_id, name, *_ in shapes[0]}
    for k in range(12):
        assert named[f"step-{k}" if k % 4 != 3 else f"child-{k}"] == wire.operation_id(group_id, k + 1)


# ============================================================================= concurrency and the bound


def test_units_run_concurrently_and_the_with_child_body_runs_inline_on_the_callers_thread(engine):
    seen = {}

    @ds.durable_handler
    def handler(event, ctx):
        released, step_started = threading.Event(), threading.Event()
        seen["caller"] = threading.get_ident()

        def waits_for_the_inline_child(step):
            seen["step-thread"] = threading.get_ident()
            step_started.set()
            return released.wait(5)  # only the inline body below sets it: the two overlap

        with ctx.concurrently("g") as group:
            blocked = group.step("blocked", waits_for_the_inline_child)
            block = group.child("inline")
            with block as c:
                seen["inline-thread"] = threading.get_ident()
                seen["step-started-first"] = step_started.wait(5)
                c.step("inside", lambda s: released.set())
                c.result = "inline done"
            assert block.future.result() == "inline done" and block.future.index == 2
        return blocked.result()

    res = engine.run(handler)
    assert res.status == "SUCCEEDED", res.error
    assert res.result is True  # the pool step saw the event set by the inline child's step
    assert seen["step-started-first"] is True
    assert seen["inline-thread"] == seen["caller"] != seen["step-thread"]


def test_max_concurrency_bounds_units_in_flight_including_the_inline_child(engine):
    overlap = Overlap()

    def slow(value):
        def body(step):
            with overlap:
                time.sleep(0.01)
            return value
        return body

    @ds.durable_handler
    def handler(event, ctx):
        with ctx.concurrently("bounded", max_concurrency=3) as group:
            futures = [group.step(f"s{k}", slow(k)) for k in range(5)]
            with group.child("inline") as c:  # a unit too: it waits for a slot, then counts in the bound
                with overlap:
                    time.sleep(0.03)
                c.step("x", lambda s: 1)
            futures += [group.step(f"t{k}", slow(k)) for k in range(5)]
        return sum(f.result() for f in futures)

    res = engine.run(handler)
    assert res.status == "SUCCEEDED", res.error
    assert res.result == 20
    assert overlap.max == 3  # bounded, and the pool really ran units concurrently


def test_submission_beyond_the_bound_returns_a_future_at_once_and_queues(engine):
    @ds.durable_handler
    def handler(event, ctx):
        gate = threading.Event()
        with ctx.concurrently("q", max_concurrency=1) as group:
            first = group.step("first", lambda s: gate.wait(5))
            started = time.perf_counter()
            second = group.step("second", lambda s: "second")  # no slot: queued, returns at once
            submitted_in = time.perf_counter() - started
            queued = (repr(second), second.done())
            gate.set()
            value = second.result()  # blocks until it ran
        return {"queued": list(queued), "fast": submitted_in < 1.0, "value": value, "first": first.result()}

    res = engine.run(handler)
    assert res.status == "SUCCEEDED", res.error
    assert res.result == {"queued": ["<DurableFuture #2 step 'second' QUEUED>", False], "fast": True,
                          "value": "second", "first": True}


def test_waiting_on_a_queued_sibling_inside_a_unit_runs_it_there_without_deadlock(engine):
    threads = {}

    @ds.durable_handler
    def handler(event, ctx):
        with ctx.concurrently("dag", max_concurrency=1) as group:
            later, submitted = [], threading.Event()

            def consumer(c):  # holds the only slot and waits for a unit queued behind it
                threads["consumer"] = threading.get_ident()
                c.step("use", lambda s: None)
                submitted.wait(5)
                return later[0].result(timeout=5) + 1

            def producer(step):
                threads["producer"] = threading.get_ident()
                return 41

            total = group.run_in_child_context(consumer, name="consumer")
            later.append(group.step("producer", producer))
            submitted.set()
        return total.result()

    res = engine.run(handler)
    assert res.status == "SUCCEEDED", res.error
    assert res.result == 42
    assert threads["producer"] == threads["consumer"]  # run by the waiting unit's thread, in its slot


def test_a_step_body_waiting_on_a_queued_sibling_runs_it_and_stays_a_step(engine):
    @ds.durable_handler
    def handler(event, ctx):
        seen = {}
        with ctx.concurrently("g", max_concurrency=1) as group:
            later, submitted = [], threading.Event()

            def waiting_step(step):  # holds the only slot; the sibling runs here, as a child unit
                submitted.wait(5)
                value = later[0].result(timeout=5)
                try:
                    ctx.step("nested", lambda s: 1)  # still inside this step's body: refused as nested
                except ds.NestedOperationError as exc:
                    seen["nested"] = "inside the body of step 'waiting'" in str(exc)
                return value + 1

            total = group.step("waiting", waiting_step)
            later.append(group.run_in_child_context(lambda c: c.step("inner", lambda s: 41), name="sibling"))
            submitted.set()
        return [total.result(), seen.get("nested")]

    res = engine.run(handler)
    assert res.status == "SUCCEEDED", res.error
    assert res.result == [42, True]
    assert by_name(engine, res.arn)["inner"]["Status"] == "SUCCEEDED"


# ============================================================================= failures


def test_a_failing_unit_lets_the_others_finish_and_the_first_failure_by_submission_order_is_raised(engine):
    calls = Calls()

    def ok(value, delay=0.0):
        def body(step):
            time.sleep(delay)
            calls.hit(value)
            return value
        return body

    def late_failure(step):
        time.sleep(0.03)  # fails last in time, but was submitted first among the failures
        raise Boom("first submitted")

    @ds.durable_handler
    def handler(event, ctx):
        try:
            with ctx.concurrently("g") as group:
                a = group.step("a", ok("a"))
                first = group.step("first-failure", late_failure, config=NO_RETRY)
                b = group.step("b", ok("b", 0.02))
                second = group.run_in_child_context(
                    lambda c: c.step("inner", boom("second submitted"), config=NO_RETRY), name="second-failure")
                c = group.step("c", ok("c"))
        except ds.StepError as exc:
            return {"type": type(exc).__name__, "error_type": exc.error_type, "message": exc.error_message,
                    "notes": getattr(exc, "__notes__", []),
                    "others": [a.result(), b.result(), c.result()],
                    "done": [f.done() for f in (a, first, b, second, c)],
                    "second": type(second.exception()).__name__, "first_is": first.exception() is exc}
        return "no error"

    res = engine.run(handler)
    assert res.status == "SUCCEEDED", res.error
    out = res.result
    assert (out["type"], out["error_type"], out["message"]) == ("StepError", "Boom", "first submitted")
    assert len(out["notes"]) == 1 and "unit #4" in out["notes"][0] and "second-failure" in out["notes"][0]
    assert "second submitted" in out["notes"][0]
    assert out["others"] == ["a", "b", "c"] and out["done"] == [True] * 5
    assert out["second"] == "ChildContextError" and out["first_is"] is True
    assert calls["a"] == calls["b"] == calls["c"] == 1
    ops = by_name(engine, res.arn)
    assert ops["g"]["Status"] == "FAILED" and ops["g"]["ContextDetails"]["Error"]["ErrorMessage"] == "first submitted"
    assert ops["g"]["ContextDetails"]["ReplayChildren"] is True
    assert [ops[n]["Status"] for n in ("a", "b", "c")] == ["SUCCEEDED"] * 3
    assert ops["first-failure"]["Status"] == "FAILED" and ops["second-failure"]["Status"] == "FAILED"


def test_an_uncaught_unit_failure_fails_the_execution_and_replays_the_same_way(engine):
    calls = Calls()

    @ds.durable_handler
    def handler(event, ctx):
        with ctx.concurrently("g") as group:
            group.step("ok", lambda s: calls.hit("ok"))
            group.step("bad", boom("no luck"), config=NO_RETRY)
            group.run_in_child_context(lambda c: c.wait(3), name="waits")
        return "unreachable"

    res = engine.run(handler)
    # The wait suspends the first invocation; the failure is raised once every unit settled.
    assert res.status == "FAILED"
    assert res.error["ErrorType"] == "Boom" and res.error["ErrorMessage"] == "no luck"
    assert event_types(engine, res.arn).count("InvocationCompleted") == 2
    assert calls["ok"] == 1  # not re-run on the replay that raised the failure
    assert by_name(engine, res.arn)["g"]["Status"] == "FAILED"


def test_an_exception_in_the_inline_child_propagates_and_counts_as_that_units_failure(engine):
    @ds.durable_handler
    def handler(event, ctx):
        reached = []
        try:
            with ctx.concurrently("g") as group:
                slow = group.step("slow", lambda s: time.sleep(0.01) or "slow")
                with group.child("inline") as c:
                    c.step("fine", lambda s: 1)
                    raise Boom("inline body")
                reached.append("after the inline block")  # pragma: no cover - must not run
        except Boom as exc:  # unchanged, as with ctx.child()
            return {"message": str(exc), "reached": reached, "slow": slow.result(),
                    "notes": getattr(exc, "__notes__", [])}

    res = engine.run(handler)
    assert res.status == "SUCCEEDED", res.error
    assert res.result == {"message": "inline body", "reached": [], "slow": "slow", "notes": []}
    ops = by_name(engine, res.arn)
    assert ops["inline"]["Status"] == "FAILED" and ops["g"]["Status"] == "FAILED"
    assert ops["g"]["ContextDetails"]["Error"]["ErrorType"] == "Boom"


def test_the_blocks_own_exception_is_raised_with_unit_failures_as_notes(engine):
    @ds.durable_handler
    def handler(event, ctx):
        try:
            with ctx.concurrently("g") as group:
                group.step("bad", boom("unit"), config=NO_RETRY)
                raise KeyError("own code")
        except KeyError as exc:
            return getattr(exc, "__notes__", [])

    res = engine.run(handler)
    assert res.status == "SUCCEEDED", res.error
    [note] = res.result
    assert "unit #1 (step 'bad')" in note and "StepError (Boom): unit" in note


def test_a_checkpoint_failure_in_a_unit_fails_the_invocation(engine):
    refuse_checkpoints_naming(engine, "refused")

    @ds.durable_handler
    def handler(event, ctx):
        try:
            with ctx.concurrently("g") as group:
                group.step("fine", lambda s: 1)
                group.step("refused", lambda s: 2)
        except Exception:  # noqa: BLE001 - a user trying to swallow it: the invocation fails anyway
            pass
        return "must not succeed"

    res = engine.run(handler)
    assert res.status == "FAILED" and res.error["ErrorType"] == "CheckpointError"
    ops = by_name(engine, res.arn)  # the refused batch may hold the group's START too (group commit)
    assert "refused" not in ops and ops.get("g", {}).get("Status", "STARTED") == "STARTED"


# ============================================================================= suspension and replay


def test_suspension_in_units_then_replay_does_not_rerun_completed_units(engine):
    calls = Calls()

    def flaky(step):
        calls.hit(("flaky", step.attempt))
        if step.attempt == 1:
            raise Boom("transient")
        return "flaky ok"

    def waiter(c):
        calls.hit("waiter-body")
        c.wait(10, name="long-wait")
        return c.step("after-wait", lambda s: calls.hit("after-wait") or "waited")

    @ds.durable_handler
    def handler(event, ctx):
        calls.hit("handler")
        with ctx.concurrently("g", max_concurrency=4) as group:
            fast = group.step("fast", lambda s: calls.hit("fast") or "fast")
            retried = group.step("flaky", flaky, config=RETRY_ONCE)
            waited = group.run_in_child_context(waiter, name="waiter")
        return [fast.result(), retried.result(), waited.result()]

    arn = engine.start(handler)
    assert engine.get_execution(arn).status == "RUNNING"
    ops = by_name(engine, arn)
    assert ops["fast"]["Status"] == "SUCCEEDED" and ops["flaky"]["Status"] == "PENDING"
    assert ops["long-wait"]["Status"] == "STARTED" and ops["g"]["Status"] == "STARTED"
    res = engine.wait(arn)
    assert res.status == "SUCCEEDED", res.error
    assert res.result == ["fast", "flaky ok", "waited"]
    assert calls["fast"] == 1  # completed units are answered from their checkpoints
    assert calls[("flaky", 1)] == 1 and calls[("flaky", 2)] == 1
    assert calls["after-wait"] == 1
    invocations = event_types(engine, arn).count("InvocationCompleted")
    assert invocations == calls["handler"] >= 2 and calls["waiter-body"] == invocations


def test_result_of_a_suspended_unit_inside_the_block_suspends_the_invocation(engine):
    calls = Calls()

    @ds.durable_handler
    def handler(event, ctx):
        with ctx.concurrently("g") as group:
            waited = group.run_in_child_context(lambda c: c.wait(5) or "waited", name="w")
            other = group.step("other", lambda s: calls.hit("other") or "other")
            value = waited.result()  # SuspendExecution the first time: the invocation ends after "other"
            calls.hit(("after-result", value))
        return [value, other.result()]

    res = engine.run(handler)
    assert res.status == "SUCCEEDED", res.error
    assert res.result == ["waited", "other"]
    assert calls["other"] == 1 and calls[("after-result", "waited")] == 1
    assert event_types(engine, res.arn).count("InvocationCompleted") == 2


def test_a_suspended_unit_keeps_its_slot_and_queued_units_start_on_replay(engine):
    started = Calls()

    @ds.durable_handler
    def handler(event, ctx):
        with ctx.concurrently("g", max_concurrency=1) as group:
            first = group.run_in_child_context(lambda c: started.hit("first") or c.wait(10) or "first", name="first")
            second = group.step("second", lambda s: started.hit("second") or "second")
        return [first.result(), second.result()]

    arn = engine.start(handler)
    assert started["first"] == 1 and started["second"] == 0  # waits for the slot the waiting unit holds
    assert "second" not in by_name(engine, arn)
    res = engine.wait(arn)
    assert res.status == "SUCCEEDED" and res.result == ["first", "second"] and started["second"] == 1


def test_inline_child_with_every_slot_held_by_a_suspended_unit_suspends(engine):
    calls = Calls()

    @ds.durable_handler
    def handler(event, ctx):
        with ctx.concurrently("g", max_concurrency=1) as group:
            group.run_in_child_context(lambda c: c.wait(10), name="waits")
            with group.child("inline") as c:
                calls.hit("inline-body")
                c.step("s", lambda s: 1)
        return "done"

    arn = engine.start(handler)
    assert calls["inline-body"] == 0 and engine.get_execution(arn).status == "RUNNING"
    res = engine.wait(arn)
    assert res.status == "SUCCEEDED" and res.result == "done" and calls["inline-body"] == 1


def test_always_replay_and_the_replay_checker_accept_concurrent_histories():
    @ds.durable_handler
    def handler(event, ctx):
        with ctx.concurrently("g", max_concurrency=2) as group:
            futures = [group.step(f"s{k}", lambda s, k=k: k * k) for k in range(4)]
            futures.append(group.run_in_child_context(lambda c: c.step("in", lambda s: 10) + 1, name="c"))
            with group.child("inline") as c:
                c.wait(2)
                c.result = c.step("x", lambda s: 5)
            with group.child("inline") as c:  # a second child of the same name: its own id
                c.result = 0
        return [f.result() for f in futures]

    with DurableTestRunner(handler, always_replay=True) as runner:
        result = runner.run()
        assert result.status == "SUCCEEDED", result.error
        assert result.result == [0, 1, 4, 9, 11]
        report = runner.replay()  # raises NonDeterminismError with a diff on any difference
        assert report.status == "SUCCEEDED" and report.result == [0, 1, 4, 9, 11]
        assert report.new_operations == ()
        assert result.get_step("in").result == 10


def test_changed_unit_names_on_replay_raise_non_determinism(engine):
    version = {"name": "v1"}

    @ds.durable_handler
    def handler(event, ctx):
        with ctx.concurrently("g") as group:
            group.step(version["name"], lambda s: 1)
            group.run_in_child_context(lambda c: c.wait(5), name="w")
        return "done"

    arn = engine.start(handler)
    version["name"] = "v2"
    res = engine.wait(arn)
    assert res.status == "FAILED" and res.error["ErrorType"] == "NonDeterminismError"
    assert "'v2'" in res.error["ErrorMessage"] and "'v1'" in res.error["ErrorMessage"]


# ============================================================================= nesting


def test_nesting_a_group_inside_a_child_inside_a_group(engine):
    @ds.durable_handler
    def handler(event, ctx):
        def region(name):
            def body(c):
                with c.concurrently(f"{name}-inner", max_concurrency=2) as inner:
                    parts = [inner.step(f"{name}-{k}", lambda s, k=k: k) for k in range(3)]
                    with inner.child(f"{name}-deep") as deep:
                        with deep.concurrently(f"{name}-deepest") as g3:
                            leaf = g3.step(f"{name}-leaf", lambda s: 100)
                        deep.wait(1)
                        deep.result = leaf.result()
                return sum(p.result() for p in parts) + deep.result
            return body

        with ctx.concurrently("outer") as outer:
            east = outer.run_in_child_context(region("east"), name="east")
            with outer.child("west") as west_ctx:
                west_ctx.result = region("west")(west_ctx)
        return [east.result(), west_ctx.result]

    res = engine.run(handler)
    assert res.status == "SUCCEEDED", res.error
    assert res.result == [103, 103]
    ops = by_name(engine, res.arn)
    chain = []
    op = ops["east-leaf"]
    while op is not None:
        chain.append(op.get("Name"))
        op = next((o for o in ops.values() if o["Id"] == op.get("ParentId")), None)
    assert chain == ["east-leaf", "east-deepest", "east-deep", "east-inner", "east", "outer"]
    assert ops["east-inner"]["Id"] == wire.operation_id(ops["east"]["Id"], 1)
    assert ops["west-leaf"]["Id"] == wire.operation_id(ops["west-deepest"]["Id"], 1)


# ============================================================================= misuse


def test_parent_context_inside_the_block_raises_a_clear_error(engine):
    captured = {}

    @ds.durable_handler
    def handler(event, ctx):
        with ctx.concurrently("g") as group:
            fine = group.step("fine", lambda s: 1)
            for label, misuse in [("step", lambda: ctx.step("oops", lambda s: 1)), ("wait", lambda: ctx.wait(1)),
                                  ("child", lambda: ctx.child("oops").__enter__()),
                                  ("group", lambda: ctx.concurrently("again").__enter__())]:
                try:
                    misuse()
                except ds.NestedOperationError as exc:
                    captured[label] = str(exc)
        after = ctx.step("after", lambda s: "parent usable again")  # the block closed: the parent works again
        return [fine.result(), after]

    res = engine.run(handler)
    assert res.status == "SUCCEEDED", res.error
    assert res.result == [1, "parent usable again"]
    assert set(captured) == {"step", "wait", "child", "group"}
    for message in captured.values():
        assert "use group.step(...)" in message and "inside `with ctx.concurrently()`" in message
    assert [op.get("Name") for op in ops_of(engine, res.arn)] .count("oops") == 0
    assert "again" not in by_name(engine, res.arn)
    # ids were not consumed by the refused calls: "after" is the handler's second operation
    assert by_name(engine, res.arn)["after"]["Id"] == wire.operation_id(None, 2)


def test_a_unit_that_uses_the_parent_context_fails_with_that_error(engine):
    @ds.durable_handler
    def handler(event, ctx):
        try:
            with ctx.concurrently("g") as group:
                group.run_in_child_context(lambda c: ctx.step("from-unit", lambda s: 1), name="bad-unit")
        except ds.NestedOperationError as exc:  # a programming error: raised as itself, not wrapped
            return [type(exc).__name__, str(exc)]

    res = engine.run(handler)
    assert res.status == "SUCCEEDED", res.error
    assert res.result[0] == "NestedOperationError" and "use group.step(...)" in res.result[1]
    assert "from-unit" not in by_name(engine, res.arn)


def test_group_operations_after_the_block_raise_and_futures_stay_readable(engine):
    @ds.durable_handler
    def handler(event, ctx):
        with ctx.concurrently("g") as group:
            group.step("done", lambda s: "value")
            failed = group.step("failed", lambda s: 1 / 0, config=NO_RETRY)
            try:
                failed.result()  # looking at a failure inside the block does not swallow it
            except ds.StepError:
                pass
        return "unreachable: the block raises the failure"

    res = engine.run(handler)
    assert res.status == "FAILED" and res.error["ErrorType"] == "ZeroDivisionError"

    @ds.durable_handler
    def readable(event, ctx):
        with ctx.concurrently("g") as group:
            done = group.step("done", lambda s: "value")
            block = group.child("kept")
        errors = []
        for late in (lambda: group.step("late", lambda s: 1), lambda: group.child("late"),
                     lambda: group.run_in_child_context(lambda c: 1, name="late"), lambda: block.__enter__()):
            try:
                late()
            except ds.NestedOperationError as exc:
                errors.append(str(exc))
        return {"value": done.result(), "again": done.result(timeout=0), "done": done.done(),
                "exception": done.exception(), "errors": errors}

    res = engine.run(readable)
    assert res.status == "SUCCEEDED", res.error
    out = res.result
    assert out["value"] == out["again"] == "value" and out["done"] is True and out["exception"] is None
    assert len(out["errors"]) == 4 and all("block closed" in e for e in out["errors"])
    assert "late" not in by_name(engine, res.arn) and "kept" not in by_name(engine, res.arn)


def test_group_operations_from_a_unit_or_inside_the_inline_child_raise(engine):
    captured = {}

    @ds.durable_handler
    def handler(event, ctx):
        with ctx.concurrently("g") as group:
            unit = group.run_in_child_context(lambda c: group.step("from-unit", lambda s: 1), name="u")
            captured["unit"] = [type(unit.exception()).__name__, str(unit.exception())]
            with group.child("inline") as c:
                try:
                    group.step("inside-inline", lambda s: 1)
                except ds.NestedOperationError as exc:
                    captured["inline"] = str(exc)
                c.step("right-way", lambda s: 1)
        return "unreachable: the unit failed"

    res = engine.run(handler)
    assert res.status == "FAILED" and res.error["ErrorType"] == "NestedOperationError"
    assert captured["unit"][0] == "NestedOperationError" and "another thread" in captured["unit"][1]
    assert "inside `with group.child('inline') as c:`" in captured["inline"] and "c.step(...)" in captured["inline"]
    names = by_name(engine, res.arn)
    assert "from-unit" not in names and "inside-inline" not in names and names["right-way"]["Status"] == "SUCCEEDED"


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2"])
def test_invalid_max_concurrency_raises_before_any_checkpoint(engine, bad):
    @ds.durable_handler
    def handler(event, ctx):
        try:
            ctx.concurrently("g", max_concurrency=bad)
        except ds.ValidationError as exc:
            return str(exc)
        return "accepted"

    res = engine.run(handler)
    assert res.status == "SUCCEEDED", res.error
    assert "max_concurrency" in res.result
    assert ops_of(engine, res.arn) == []


def test_concurrently_inside_a_step_body_is_refused(engine):
    @ds.durable_handler
    def handler(event, ctx):
        def body(step):
            with ctx.concurrently("nested"):
                pass
        return ctx.step("outer", body)

    res = engine.run(handler)
    assert res.status == "FAILED" and res.error["ErrorType"] == "NestedOperationError"
    assert "ctx.concurrently('nested')" in res.error["ErrorMessage"]
    assert "nested" not in by_name(engine, res.arn)


# ============================================================================= threads


def test_thread_count_is_back_to_baseline_after_every_invocation(engine):
    baseline = threading.active_count()
    before = os_threads()  # (threads of earlier tests may still end meanwhile: compare the new ones)
    peak = Overlap()
    during = []

    def body(step):
        with peak:
            during.append(threading.active_count())
            time.sleep(0.002)
        return 1

    @ds.durable_handler
    def handler(event, ctx):
        with ctx.concurrently("many") as group:  # no bound: at most DEFAULT_MAX_THREADS pool threads
            futures = [group.step(f"s{k}", body) for k in range(120)]
            waits = [group.run_in_child_context(lambda c, k=k: c.wait(5 + k), name=f"w{k}") for k in range(5)]
        with ctx.concurrently("few", max_concurrency=2) as group:
            futures += [group.step(f"t{k}", body) for k in range(10)]
        return sum(f.result() for f in futures) + len(waits)

    arn = engine.start(handler)
    assert engine.get_execution(arn).status == "RUNNING"
    assert threads_gone(before)  # after a suspended invocation too
    res = engine.wait(arn)
    assert res.status == "SUCCEEDED" and res.result == 135
    assert threads_gone(before)
    from durable_sync.pool import DEFAULT_MAX_THREADS
    # pool threads + the handler thread + the checkpoint flusher, never one thread per unit
    assert max(during) <= baseline + DEFAULT_MAX_THREADS + 2
    assert peak.max > 1


def test_units_still_run_when_no_thread_can_be_started(engine, monkeypatch):
    real_start = threading.Thread.start

    def refusing_start(self):
        if self.name.startswith("durable-concurrently"):
            raise RuntimeError("can't start new thread")
        return real_start(self)

    monkeypatch.setattr(threading.Thread, "start", refusing_start)
    caller = {}

    @ds.durable_handler
    def handler(event, ctx):
        caller["thread"] = threading.get_ident()
        with ctx.concurrently("g", max_concurrency=2) as group:
            futures = [group.step(f"s{k}", lambda s, k=k: threading.get_ident()) for k in range(4)]
            with group.child("inline") as c:
                c.result = c.step("x", lambda s: 1)
        return [f.result() == caller["thread"] for f in futures]

    res = engine.run(handler)
    assert res.status == "SUCCEEDED", res.error
    assert res.result == [True] * 4  # degraded to the caller's thread, not stuck


# ============================================================================= the example


def test_concurrent_enrichment_example(engine):
    import importlib.util
    import pathlib

    path = pathlib.Path(__file__).resolve().parent.parent / "examples" / "concurrent_enrichment.py"
    spec = importlib.util.spec_from_file_location("concurrent_enrichment_example", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    res = engine.run(module.handler, {"user_id": 42})
    assert res.status == "SUCCEEDED", res.error
    assert res.result["profile"]["name"] == "Customer 42"
    assert [o["order"] for o in res.result["orders"]] == ["42-1", "42-2", "42-3"]
    assert res.result["risk"] == {"score": 54, "flagged": False}
    assert res.result["summary"] == "Customer 42: 3 orders, 66 total, risk 54"
    ops = by_name(engine, res.arn)
    assert ops["fetch_orders"]["StepDetails"]["Attempt"] == 2  # retried durably
    assert ops["enrich"]["SubType"] == "RunInChildContext" and ops["risk"]["ParentId"] == ops["enrich"]["Id"]
    assert event_types(engine, res.arn).count("InvocationCompleted") == 3
    stepped = [e.get("Name") for e in engine.history(res.arn) if e["EventType"] == "StepStarted"]
    assert stepped.count("fetch_profile") == 1 and stepped.count("send-summary") == 1
