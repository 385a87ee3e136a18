"""Tests of ``ctx.map`` / ``ctx.parallel`` (durable_sync.batch).

All on ``LocalEngine(db=":memory:", skip_time=True)``: durable waits and retries take
virtual time only. The only real sleeps are a few milliseconds inside branch bodies, to
make branches overlap where a test counts concurrent bodies or threads.
"""
from __future__ import annotations

import json
import threading
import time

import pytest

import durable_sync as ds
from helpers import Calls, Overlap, refuse_checkpoints_naming
from durable_sync import pool as pool_mod
from durable_sync import wire

KIB = 1024


def events(engine, arn, *types):
    return [e for e in engine.history(arn) if not types or e["EventType"] in types]


def ops_of(engine, arn, subtype=None):
    return [op for op in engine.operations(arn)
            if op["Type"] != "EXECUTION" and (subtype is None or op.get("SubType") == subtype)]


class Boom(Exception):
    pass


def fails(message="boom"):
    def branch(ctx):
        raise Boom(message)
    return branch


def returns(value):
    return lambda ctx: value


def projection(result):
    return {"reason": result.completion_reason.value, "status": result.status.value,
            "succeeded": result.success_count, "failed": result.failure_count, "total": result.total_count,
            "indexes": [item.index for item in result.all], "results": result.get_results()}


# ============================================================================= basics and wire shape


def test_parallel_wire_shape_ids_and_index_ordered_results(engine):
    release = threading.Event()

    def first(ctx):
        release.wait(5)  # finishes after the others
        return ctx.step(lambda s: "r0", name="s0")

    def last(ctx):
        release.set()
        return ctx.step(lambda s: "r2", name="s2")

    @ds.durable_handler
    def handler(event, ctx):
        result = ctx.parallel([first, ds.ParallelBranch(returns("r1"), name="middle"), last], name="fan",
                              config=ds.ParallelConfig(max_concurrency=3))
        return result.get_results()

    res = engine.run(handler)
    assert res.status == "SUCCEEDED", res.error
    assert res.result == ["r0", "r1", "r2"]
    [parent] = ops_of(engine, res.arn, "Parallel")
    assert parent["Id"] == wire.operation_id(None, 1) and parent["Name"] == "fan" and "ParentId" not in parent
    branches = sorted(ops_of(engine, res.arn, "ParallelBranch"), key=lambda op: op["StartTimestamp"])
    assert {op["Id"] for op in branches} == {wire.branch_id(parent["Id"], i) for i in range(3)}
    by_id = {op["Id"]: op for op in branches}
    # The official SDK's default name (a plain function's __name__ is not used), else ParallelBranch's name
    assert by_id[wire.branch_id(parent["Id"], 0)]["Name"] == "parallel-branch-0"
    assert by_id[wire.branch_id(parent["Id"], 1)]["Name"] == "middle"
    assert by_id[wire.branch_id(parent["Id"], 2)]["Name"] == "parallel-branch-2"
    assert all(op["ParentId"] == parent["Id"] and op["Type"] == "CONTEXT" for op in branches)
    steps = {op["Name"]: op for op in ops_of(engine, res.arn, "Step")}
    assert steps["s0"]["ParentId"] == wire.branch_id(parent["Id"], 0)
    assert steps["s0"]["Id"] == wire.operation_id(wire.branch_id(parent["Id"], 0), 1)
    # The parent SUCCEEDs with the BatchResult as its payload
    payload = json.loads(parent["ContextDetails"]["Result"])
    assert payload["completionReason"] == "ALL_COMPLETED"
    assert [(i["index"], i["status"], i["result"]) for i in payload["all"]] == [
        (0, "SUCCEEDED", "r0"), (1, "SUCCEEDED", "r1"), (2, "SUCCEEDED", "r2")]
    # The parent's ContextSucceeded is the last context event
    ctx_events = [e for e in events(engine, res.arn) if e["EventType"].startswith("Context")]
    assert ctx_events[-1]["EventType"] == "ContextSucceeded" and ctx_events[-1]["SubType"] == "Parallel"


def test_map_passes_item_index_items_names_iterations_and_uses_item_serdes(engine):
    class Tagged:
        def serialize(self, value, ctx):
            return json.dumps({"tagged": value})

        def deserialize(self, text, ctx):
            return json.loads(text)["tagged"]

    seen = []

    def fn(ctx, item, index, items):
        seen.append((item, index, tuple(items)))
        return ctx.step(lambda s: item.upper())

    config = ds.MapConfig(max_concurrency=1, item_namer=lambda item, index: f"item-{index}-{item}",
                          item_serdes=Tagged())

    @ds.durable_handler
    def handler(event, ctx):
        result = ctx.map(["a", "b", "c"], fn, config=config)
        return result.get_results()

    res = engine.run(handler)
    assert res.status == "SUCCEEDED", res.error
    assert res.result == ["A", "B", "C"]
    assert sorted(seen) == [("a", 0, ("a", "b", "c")), ("b", 1, ("a", "b", "c")), ("c", 2, ("a", "b", "c"))]
    [parent] = ops_of(engine, res.arn, "Map")
    assert "Name" not in parent  # as in the official SDK: a plain function's __name__ does not name a map
    iterations = ops_of(engine, res.arn, "MapIteration")
    assert sorted(op["Name"] for op in iterations) == ["item-0-a", "item-1-b", "item-2-c"]
    assert all(json.loads(op["ContextDetails"]["Result"]).keys() == {"tagged"} for op in iterations)
    # With item_serdes the parent payload carries each item's item_serdes text, never the raw value.
    payload = json.loads(parent["ContextDetails"]["Result"])
    assert [json.loads(i["payload"]) for i in payload["all"]] == [{"tagged": "A"}, {"tagged": "B"}, {"tagged": "C"}]
    assert all("result" not in i for i in payload["all"])


def test_name_first_forms(engine):
    @ds.durable_handler
    def handler(event, ctx):
        p = ctx.parallel("named-parallel", [returns(1), returns(2)])
        m = ctx.map("named-map", [3, 4], lambda c, item, i, items: item)
        return p.get_results() + m.get_results()

    res = engine.run(handler)
    assert res.result == [1, 2, 3, 4]
    assert [op["Name"] for op in ops_of(engine, res.arn) if op["SubType"] in ("Parallel", "Map")] == [
        "named-parallel", "named-map"]


def test_empty_map_and_parallel_complete_at_once(engine):
    @ds.durable_handler
    def handler(event, ctx):
        m = ctx.map([], lambda c, item, i, items: item, name="none")
        p = ctx.parallel([], name="nothing")
        return [projection(m), projection(p)]

    res = engine.run(handler)
    assert res.status == "SUCCEEDED", res.error
    for proj in res.result:
        assert proj == {"reason": "ALL_COMPLETED", "status": "SUCCEEDED", "succeeded": 0, "failed": 0, "total": 0,
                        "indexes": [], "results": []}
    assert [e["EventType"] for e in events(engine, res.arn, "ContextStarted", "ContextSucceeded")] == [
        "ContextStarted", "ContextSucceeded", "ContextStarted", "ContextSucceeded"]


def test_get_results_keeps_none_and_skips_failures(engine):
    @ds.durable_handler
    def handler(event, ctx):
        result = ctx.parallel([returns(None), fails(), returns(0)], name="p")
        return {"results": result.get_results(), "succeeded": [i.index for i in result.succeeded()],
                "failed": [i.index for i in result.failed()]}

    res = engine.run(handler)
    assert res.result == {"results": [None, 0], "succeeded": [0, 2], "failed": [1]}


# ============================================================================= completion policies


@pytest.mark.parametrize("kind", ["map", "parallel"])
def test_all_successful_stops_at_first_failure_and_starts_nothing_more(engine, kind):
    calls = Calls()

    def body(ctx, index):
        calls.hit(index)
        if index == 1:
            raise Boom("second fails")
        return index

    @ds.durable_handler
    def handler(event, ctx):
        completion = ds.CompletionConfig.all_successful()
        if kind == "map":
            result = ctx.map([0, 1, 2, 3], lambda c, item, i, items: body(c, i), name="m",
                             config=ds.MapConfig(max_concurrency=1, completion_config=completion))
        else:
            result = ctx.parallel([lambda c, i=i: body(c, i) for i in range(4)], name="p",
                                  config=ds.ParallelConfig(max_concurrency=1, completion_config=completion))
        return projection(result)

    res = engine.run(handler)
    assert res.status == "SUCCEEDED", res.error  # branch failures do not fail the batch
    assert res.result == {"reason": "FAILURE_TOLERANCE_EXCEEDED", "status": "FAILED", "succeeded": 1, "failed": 1,
                          "total": 2, "indexes": [0, 1], "results": [0]}
    assert dict(calls.counts) == {0: 1, 1: 1}  # branches 2 and 3 never started
    subtype = "MapIteration" if kind == "map" else "ParallelBranch"
    assert len(ops_of(engine, res.arn, subtype)) == 2
    [parent] = ops_of(engine, res.arn, "Map" if kind == "map" else "Parallel")
    assert parent["Status"] == "SUCCEEDED"


@pytest.mark.parametrize("kind", ["map", "parallel"])
def test_all_completed_runs_every_branch_despite_failures(engine, kind):
    @ds.durable_handler
    def handler(event, ctx):
        if kind == "map":
            result = ctx.map([0, 1, 2, 3], lambda c, item, i, items: 1 / (item % 2), name="m",
                             config=ds.MapConfig(completion_config=ds.CompletionConfig.all_completed()))
        else:
            result = ctx.parallel([fails(), returns("b"), fails(), returns("d")], name="p",
                                  config=ds.ParallelConfig(completion_config=ds.CompletionConfig.all_completed()))
        return projection(result)

    res = engine.run(handler)
    assert res.status == "SUCCEEDED", res.error
    assert res.result["reason"] == "ALL_COMPLETED" and res.result["status"] == "FAILED"
    assert (res.result["succeeded"], res.result["failed"], res.result["total"]) == (2, 2, 4)
    assert res.result["indexes"] == [0, 1, 2, 3]


def test_default_config_is_all_completed(engine):
    @ds.durable_handler
    def handler(event, ctx):
        return projection(ctx.parallel([fails(), returns("b")], name="p"))

    res = engine.run(handler)
    assert res.result["reason"] == "ALL_COMPLETED" and res.result["total"] == 2


@pytest.mark.parametrize("kind", ["map", "parallel"])
def test_first_successful_stops_after_one_success(engine, kind):
    calls = Calls()

    def body(index):
        calls.hit(index)
        if index == 0:
            raise Boom("first fails")
        return f"v{index}"

    @ds.durable_handler
    def handler(event, ctx):
        completion = ds.CompletionConfig.first_successful()
        if kind == "map":
            result = ctx.map(list(range(5)), lambda c, item, i, items: body(i), name="m",
                             config=ds.MapConfig(max_concurrency=1, completion_config=completion))
        else:
            result = ctx.parallel([lambda c, i=i: body(i) for i in range(5)], name="p",
                                  config=ds.ParallelConfig(max_concurrency=1, completion_config=completion))
        return projection(result)

    res = engine.run(handler)
    assert res.result == {"reason": "MIN_SUCCESSFUL_REACHED", "status": "FAILED", "succeeded": 1, "failed": 1,
                          "total": 2, "indexes": [0, 1], "results": ["v1"]}
    assert dict(calls.counts) == {0: 1, 1: 1}


def test_min_successful_with_tolerance_and_percentage_rules(engine):
    @ds.durable_handler
    def handler(event, ctx):
        seq = dict(max_concurrency=1)
        out = {}
        # 1 failure of 4 = 25 %: not above a 25 % tolerance, everything runs
        out["pct_boundary"] = projection(ctx.parallel(
            [fails(), returns(1), returns(2), returns(3)], name="a",
            config=ds.ParallelConfig(**seq, completion_config=ds.CompletionConfig(tolerated_failure_percentage=25))))
        # 2 of 4 = 50 % > 25 %: stops after the second failure
        out["pct_exceeded"] = projection(ctx.parallel(
            [fails(), fails(), returns(2), returns(3)], name="b",
            config=ds.ParallelConfig(**seq, completion_config=ds.CompletionConfig(tolerated_failure_percentage=25))))
        # min_successful=2 reached after two successes; the failure before it is tolerated
        out["min"] = projection(ctx.map(
            [0, 1, 2, 3, 4], lambda c, item, i, items: 1 / item, name="c",
            config=ds.MapConfig(**seq, completion_config=ds.CompletionConfig(min_successful=2))))
        # min_successful=3 never reached: all run, ALL_COMPLETED
        out["min_not_reached"] = projection(ctx.parallel(
            [returns(0), fails(), returns(2)], name="d",
            config=ds.ParallelConfig(**seq, completion_config=ds.CompletionConfig(min_successful=3))))
        return out

    res = engine.run(handler)
    assert res.status == "SUCCEEDED", res.error
    r = res.result
    assert (r["pct_boundary"]["reason"], r["pct_boundary"]["total"]) == ("ALL_COMPLETED", 4)
    assert (r["pct_exceeded"]["reason"], r["pct_exceeded"]["total"]) == ("FAILURE_TOLERANCE_EXCEEDED", 2)
    assert (r["min"]["reason"], r["min"]["indexes"], r["min"]["results"]) == (
        "MIN_SUCCESSFUL_REACHED", [0, 1, 2], [1.0, 0.5])
    assert (r["min_not_reached"]["reason"], r["min_not_reached"]["status"], r["min_not_reached"]["total"]) == (
        "ALL_COMPLETED", "FAILED", 3)


def test_outcome_decided_while_a_branch_waits_reports_it_started(engine):
    @ds.durable_handler
    def handler(event, ctx):
        def slow(c):
            c.wait(60)
            return "slow"

        result = ctx.parallel([slow, returns("fast")], name="race",
                              config=ds.ParallelConfig(completion_config=ds.CompletionConfig.first_successful()))
        return {"statuses": [item.status.value for item in result.all], "results": result.get_results(),
                "reason": result.completion_reason.value}

    res = engine.run(handler)
    # The suspended branch does not suspend the invocation once the outcome is decided, and its caught
    # suspension is not mistaken for a SuspendExecution swallowed by user code.
    assert res.status == "SUCCEEDED", res.error
    assert res.result == {"statuses": ["STARTED", "SUCCEEDED"], "results": ["fast"],
                          "reason": "MIN_SUCCESSFUL_REACHED"}
    assert len(events(engine, res.arn, "InvocationCompleted")) == 1


# ============================================================================= errors


def test_branch_exceptions_become_failed_items_and_throw_if_error_raises(engine):
    @ds.durable_handler
    def handler(event, ctx):
        def bad_step(c):
            return c.step(lambda s: 1 / 0, name="divide",
                          config=ds.StepConfig(retry_strategy=ds.RetryPresets.none()))

        result = ctx.parallel([returns("ok"), fails("custom failure"), bad_step], name="p")
        errors = result.get_errors()
        summary = {"has_failure": result.has_failure, "types": [e.error_type for e in errors],
                   "messages": [e.error_message for e in errors],
                   "classes": [type(e).__name__ for e in errors]}
        try:
            result.throw_if_error()
        except ds.ChildContextError as exc:
            summary["thrown"] = [exc.error_type, exc.error_message]
        return summary

    res = engine.run(handler)
    assert res.status == "SUCCEEDED", res.error
    assert res.result["has_failure"] is True
    assert res.result["types"] == ["Boom", "ZeroDivisionError"]
    assert res.result["messages"][0] == "custom failure"
    assert res.result["classes"] == ["ChildContextError", "ChildContextError"]
    assert res.result["thrown"] == ["Boom", "custom failure"]
    failed = [op for op in ops_of(engine, res.arn, "ParallelBranch") if op["Status"] == "FAILED"]
    assert len(failed) == 2
    assert {op["ContextDetails"]["Error"]["ErrorType"] for op in failed} == {"Boom", "ZeroDivisionError"}


def test_uncaught_throw_if_error_fails_the_execution(engine):
    @ds.durable_handler
    def handler(event, ctx):
        ctx.map([1, 2], lambda c, item, i, items: (_ for _ in ()).throw(Boom(f"item {item}")), name="m").throw_if_error()
        return "unreachable"

    res = engine.run(handler)
    assert res.status == "FAILED"
    assert res.error["ErrorType"] == "Boom" and res.error["ErrorMessage"] == "item 1"
    [parent] = ops_of(engine, res.arn, "Map")
    assert parent["Status"] == "SUCCEEDED"  # the batch itself succeeded; only throw_if_error raised


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2"])
def test_invalid_max_concurrency_raises_before_any_checkpoint(engine, bad):
    @ds.durable_handler
    def handler(event, ctx):
        try:
            ctx.parallel([returns(1)], name="p", config=ds.ParallelConfig(max_concurrency=bad))
        except ds.ValidationError as exc:
            first = ["ValidationError", str(exc)]
        else:
            first = ["accepted"]
        try:
            ctx.map([1], lambda c, item, i, items: item, name="m", config=ds.MapConfig(max_concurrency=bad))
        except ds.ValidationError:
            return first + ["ValidationError"]
        return first + ["accepted"]

    res = engine.run(handler)
    assert res.status == "SUCCEEDED", res.error
    assert res.result[0] == "ValidationError" and res.result[2] == "ValidationError"
    assert "max_concurrency" in res.result[1]
    assert ops_of(engine, res.arn) == []


def test_uncaught_validation_error_fails_the_execution_with_nothing_checkpointed(engine):
    @ds.durable_handler
    def handler(event, ctx):
        return ctx.parallel([returns(1), returns(2)], name="bad", config=ds.ParallelConfig(max_concurrency=0))

    res = engine.run(handler)
    assert res.status == "FAILED" and res.error["ErrorType"] == "ValidationError"
    assert [e["EventType"] for e in events(engine, res.arn)] == [
        "ExecutionStarted", "InvocationCompleted", "ExecutionFailed"]


@pytest.mark.parametrize("completion", [dict(min_successful=0), dict(tolerated_failure_count=-1),
                                        dict(tolerated_failure_percentage=101)])
def test_invalid_completion_config_is_refused(engine, completion):
    @ds.durable_handler
    def handler(event, ctx):
        with pytest.raises(ds.ValidationError):
            ctx.parallel([returns(1)], config=ds.ParallelConfig(completion_config=ds.CompletionConfig(**completion)))
        with pytest.raises(ds.ValidationError):
            ctx.parallel([1, 2])  # not callables
        with pytest.raises(ds.ValidationError):
            ctx.map("abc", lambda c, item, i, items: item)  # a string is not a list of items
        return "ok"

    res = engine.run(handler)
    assert res.status == "SUCCEEDED", res.error
    assert ops_of(engine, res.arn) == []


def test_checkpoint_failure_in_a_branch_fails_the_invocation_not_the_branch(engine):
    refuse_checkpoints_naming(engine, "refused")

    @ds.durable_handler
    def handler(event, ctx):
        result = ctx.parallel([lambda c: c.step(lambda s: 1, name="fine"),
                               lambda c: c.step(lambda s: 2, name="refused")], name="p")
        return {"failed": result.failure_count}  # must not be reached

    res = engine.run(handler)
    assert res.status == "FAILED"
    assert res.error["ErrorType"] == "CheckpointError"
    # The parent never completes; it may not be recorded at all when its START shared the refused batch.
    assert [p["Status"] for p in ops_of(engine, res.arn, "Parallel")] in ([], ["STARTED"])
    assert all(op["Status"] != "FAILED" for op in ops_of(engine, res.arn, "ParallelBranch"))


# ============================================================================= concurrency, suspension, replay


def test_concurrent_branches_wait_at_the_same_time_and_resume(engine):
    calls = Calls()

    @ds.durable_handler
    def handler(event, ctx):
        def waiter(seconds):
            def branch(c):
                calls.hit(("body", seconds))
                c.wait(seconds, name=f"wait-{seconds}")
                return c.step(lambda s: (calls.hit(("step", seconds)), seconds)[1], name=f"after-{seconds}")
            return branch

        return ctx.parallel([waiter(5), waiter(3)], name="waits",
                            config=ds.ParallelConfig(max_concurrency=2)).get_results()

    arn = engine.start(handler)
    # First invocation: both waits started before it suspended
    history = events(engine, arn)
    first_end = next(i for i, e in enumerate(history) if e["EventType"] == "InvocationCompleted")
    assert sorted(e["Name"] for e in history[:first_end] if e["EventType"] == "WaitStarted") == ["wait-3", "wait-5"]
    assert engine.get_execution(arn).status == "RUNNING"
    # The earliest branch is resumed first (at 3 s), the other at 5 s
    engine.advance(3)
    assert calls[("step", 3)] == 1 and calls[("step", 5)] == 0
    assert engine.get_execution(arn).status == "RUNNING"
    engine.advance(2)
    res = engine.get_execution(arn)
    assert res.status == "SUCCEEDED", res.error
    assert res.result == [5, 3]
    assert calls[("step", 3)] == 1 and calls[("step", 5)] == 1
    assert len(events(engine, arn, "InvocationCompleted")) == 3


def test_replay_after_a_suspension_does_not_rerun_completed_branches(engine):
    calls = Calls()

    def fn(ctx, item, index, items):
        calls.hit(("body", index))
        value = ctx.step(lambda s: (calls.hit(("step", index)), item * 10)[1], name=f"step-{index}")
        if index == 2:
            ctx.wait(30, name="slow-item")
        return value

    @ds.durable_handler
    def handler(event, ctx):
        calls.hit("handler")
        result = ctx.map([1, 2, 3, 4, 5], fn, name="items", config=ds.MapConfig(max_concurrency=2))
        return result.get_results()

    arn = engine.start(handler)
    assert engine.get_execution(arn).status == "RUNNING"
    assert calls["handler"] == 1
    res = engine.wait(arn)
    assert res.status == "SUCCEEDED", res.error
    assert res.result == [10, 20, 30, 40, 50]
    assert calls["handler"] == 2
    for index in (0, 1, 3, 4):
        assert calls[("body", index)] == 1, index  # completed branches: stored result, body not run again
        assert calls[("step", index)] == 1
    assert calls[("body", 2)] == 2 and calls[("step", 2)] == 1  # resumed branch replays its step
    assert len(events(engine, arn, "InvocationCompleted")) == 2


def test_replay_answers_completed_branches_without_threads(engine, monkeypatch):
    started_threads = []
    real_start = threading.Thread.start

    def counting_start(self):
        started_threads.append(self.name)
        return real_start(self)

    monkeypatch.setattr(threading.Thread, "start", counting_start)

    @ds.durable_handler
    def handler(event, ctx):
        def fn(c, item, index, items):
            if index == 0:
                c.wait(10)
            return item

        return ctx.map(list(range(40)), fn, name="m").success_count

    arn = engine.start(handler)
    assert len(started_threads) >= 1  # the first invocation ran branches on the pool
    started_threads.clear()
    res = engine.wait(arn)
    assert res.result == 40
    # On replay only branch 0 runs (on the calling thread); the 39 others come from their checkpoints
    assert started_threads == []


def test_a_suspended_branch_keeps_its_slot(engine):
    started = Calls()

    @ds.durable_handler
    def handler(event, ctx):
        def first(c):
            started.hit(0)
            c.wait(10)
            return "first"

        def second(c):
            started.hit(1)
            return "second"

        return ctx.parallel([first, second], name="p", config=ds.ParallelConfig(max_concurrency=1)).get_results()

    arn = engine.start(handler)
    assert started[0] == 1 and started[1] == 0  # branch 1 waits for the slot branch 0 holds
    assert len(ops_of(engine, arn, "ParallelBranch")) == 1
    res = engine.wait(arn)
    assert res.result == ["first", "second"] and started[1] == 1


def test_completed_batch_replays_its_stored_result_without_running_branches(engine):
    calls = Calls()

    @ds.durable_handler
    def handler(event, ctx):
        result = ctx.map(list(range(4)), lambda c, item, i, items: (calls.hit(i), item)[1], name="m",
                         config=ds.MapConfig(completion_config=ds.CompletionConfig(min_successful=2),
                                             max_concurrency=1))
        ctx.wait(5)
        return projection(result)

    res = engine.run(handler)
    assert res.status == "SUCCEEDED", res.error
    assert res.result["reason"] == "MIN_SUCCESSFUL_REACHED" and res.result["indexes"] == [0, 1]
    assert dict(calls.counts) == {0: 1, 1: 1}
    assert len(events(engine, res.arn, "InvocationCompleted")) == 2


def test_flat_nesting_records_no_branch_contexts_and_replays(engine):
    calls = Calls()

    def branch(tag, wait):
        def run(ctx):
            calls.hit(("body", tag))
            value = ctx.step(lambda s: (calls.hit(("step", tag)), tag)[1], name=f"step-{tag}")
            if wait:
                ctx.wait(5, name=f"wait-{tag}")
            return value
        return run

    @ds.durable_handler
    def handler(event, ctx):
        config = ds.ParallelConfig(max_concurrency=2, nesting_type=ds.NestingType.FLAT)
        return ctx.parallel([branch("a", False), branch("b", True)], name="flat", config=config).get_results()

    res = engine.run(handler)
    assert res.status == "SUCCEEDED", res.error
    assert res.result == ["a", "b"]
    assert ops_of(engine, res.arn, "ParallelBranch") == []
    [parent] = ops_of(engine, res.arn, "Parallel")
    steps = {op["Name"]: op for op in ops_of(engine, res.arn, "Step")}
    assert {op["ParentId"] for op in steps.values()} == {parent["Id"]}
    assert steps["step-a"]["Id"] == wire.operation_id(wire.branch_id(parent["Id"], 0), 1)
    assert steps["step-b"]["Id"] == wire.operation_id(wire.branch_id(parent["Id"], 1), 1)
    # Virtual contexts keep no result: bodies replay, their steps do not run again
    assert calls[("step", "a")] == 1 and calls[("step", "b")] == 1
    assert calls[("body", "b")] == 2


def test_nested_parallel_inside_map(engine):
    @ds.durable_handler
    def handler(event, ctx):
        def fn(c, item, index, items):
            inner = c.parallel([lambda b: b.step(lambda s: item), lambda b: b.step(lambda s: -item)], name="inner")
            return sum(inner.get_results()) + item

        return ctx.map([1, 2, 3], fn, name="outer", config=ds.MapConfig(max_concurrency=2)).get_results()

    res = engine.run(handler)
    assert res.status == "SUCCEEDED", res.error
    assert res.result == [1, 2, 3]
    inner = ops_of(engine, res.arn, "Parallel")
    iterations = {op["Id"] for op in ops_of(engine, res.arn, "MapIteration")}
    assert len(inner) == 3 and {op["ParentId"] for op in inner} == iterations


def test_large_batch_result_is_checkpointed_with_replay_children_and_rebuilt(engine):
    calls = Calls()
    blob = "x" * (100 * KIB)

    @ds.durable_handler
    def handler(event, ctx):
        result = ctx.map([0, 1, 2], lambda c, item, i, items: (calls.hit(i), blob + str(i))[1], name="big")
        ctx.wait(1)  # forces a replay of the completed map
        return [len(v) for v in result.get_results()] + [result.completion_reason.value]

    res = engine.run(handler)
    assert res.status == "SUCCEEDED", res.error
    assert res.result == [100 * KIB + 1] * 3 + ["ALL_COMPLETED"]
    [parent] = ops_of(engine, res.arn, "Map")
    details = parent["ContextDetails"]
    assert details.get("ReplayChildren") is True
    summary = json.loads(details["Result"])
    assert summary["totalCount"] == 3 and summary["completionReason"] == "ALL_COMPLETED"
    assert len(details["Result"]) < 1000
    assert dict(calls.counts) == {0: 1, 1: 1, 2: 1}  # rebuilt from the iterations' checkpoints


def test_changed_item_names_on_replay_raise_non_determinism(engine):
    names = {"prefix": "a"}

    @ds.durable_handler
    def handler(event, ctx):
        config = ds.MapConfig(item_namer=lambda item, index: f"{names['prefix']}-{index}")

        def fn(c, item, index, items):
            if index == 1:
                c.wait(5)
            return item

        result = ctx.map([1, 2], fn, name="m", config=config)
        return result.get_results()

    arn = engine.start(handler)
    names["prefix"] = "b"
    res = engine.wait(arn)
    assert res.status == "FAILED"
    assert res.error["ErrorType"] == "NonDeterminismError"


def test_non_determinism_in_a_branch_fails_the_execution_while_a_sibling_waits(engine):
    changed = {"now": False}

    @ds.durable_handler
    def handler(event, ctx):
        def patient(c):
            c.wait(100, name="long")
            return "patient"

        def changing(c):
            if changed["now"]:
                c.step(lambda s: "new code", name="inserted")  # where the record has the wait
            else:
                c.wait(5, name="short")
            return "changing"

        return ctx.parallel([patient, changing], name="p").get_results()

    arn = engine.start(handler)
    changed["now"] = True
    engine.advance(5)
    res = engine.get_execution(arn)
    assert res.status == "FAILED"
    assert res.error["ErrorType"] == "NonDeterminismError"  # not mistaken for a swallowed suspension
    assert all(op["Status"] != "FAILED" for op in ops_of(engine, arn, "ParallelBranch"))


def test_op_level_serdes_serializes_the_batch_result(engine):
    class Envelope:
        def serialize(self, value, ctx):
            assert isinstance(value, ds.BatchResult)
            return json.dumps({"envelope": value.to_dict()})

        def deserialize(self, text, ctx):
            return ds.BatchResult.from_dict(json.loads(text)["envelope"])

    @ds.durable_handler
    def handler(event, ctx):
        result = ctx.parallel([returns(1), fails()], name="p", config=ds.ParallelConfig(serdes=Envelope()))
        assert isinstance(result, ds.BatchResult)
        return projection(result)

    res = engine.run(handler)
    assert res.status == "SUCCEEDED", res.error
    assert res.result["results"] == [1] and res.result["failed"] == 1
    [parent] = ops_of(engine, res.arn, "Parallel")
    assert "envelope" in json.loads(parent["ContextDetails"]["Result"])


# ============================================================================= pool bounds and scale


def test_max_concurrency_bounds_concurrent_bodies(engine):
    overlap = Overlap()

    def fn(ctx, item, index, items):
        with overlap:
            time.sleep(0.005)
        return item

    @ds.durable_handler
    def handler(event, ctx):
        return ctx.map(list(range(24)), fn, name="m", config=ds.MapConfig(max_concurrency=3)).success_count

    res = engine.run(handler)
    assert res.result == 24
    assert overlap.max == 3  # bounded, and the pool really runs branches concurrently


def test_thread_count_is_bounded_and_back_to_baseline(engine):
    baseline = threading.active_count()
    overlap = Overlap()

    def fn(ctx, item, index, items):
        with overlap:
            time.sleep(0.002)
        return ctx.step(lambda s: item)

    @ds.durable_handler
    def handler(event, ctx):
        return ctx.map(list(range(300)), fn, name="no-limit").success_count

    res = engine.run(handler)
    assert res.status == "SUCCEEDED" and res.result == 300
    # Without max_concurrency: at most DEFAULT_MAX_THREADS branch threads (the caller is one of them),
    # plus the checkpoint flusher thread; never one thread per item.
    assert overlap.threads <= baseline + pool_mod.DEFAULT_MAX_THREADS
    assert overlap.max > 1
    assert threading.active_count() == baseline

    overlap = Overlap()

    @ds.durable_handler
    def limited(event, ctx):
        return ctx.map(list(range(50)), fn, name="limit", config=ds.MapConfig(max_concurrency=4)).success_count

    res = engine.run(limited)
    assert res.result == 50
    assert overlap.threads <= baseline + 4  # 3 workers + the caller + the flusher thread, minus the caller
    assert threading.active_count() == baseline


def test_no_thread_outlives_a_suspended_invocation(engine):
    baseline = threading.active_count()

    @ds.durable_handler
    def handler(event, ctx):
        return ctx.map(list(range(20)), lambda c, item, i, items: c.wait(10 + item), name="waits",
                       config=ds.MapConfig(max_concurrency=5)).success_count

    arn = engine.start(handler)
    assert engine.get_execution(arn).status == "RUNNING"
    assert threading.active_count() == baseline
    res = engine.wait(arn)
    assert res.status == "SUCCEEDED" and res.result == 20
    assert threading.active_count() == baseline


def test_thousand_item_map(engine):
    @ds.durable_handler
    def handler(event, ctx):
        result = ctx.map(list(range(1000)), lambda c, item, i, items: c.step(lambda s: item * 2), name="big",
                         config=ds.MapConfig(max_concurrency=10))
        return {"n": result.success_count, "sum": sum(result.get_results()), "first": result.get_results()[:3]}

    wall = time.perf_counter()
    res = engine.run(handler)
    assert res.status == "SUCCEEDED", res.error
    assert res.result == {"n": 1000, "sum": 999000, "first": [0, 2, 4]}
    assert len(ops_of(engine, res.arn, "MapIteration")) == 1000
    assert len(ops_of(engine, res.arn, "Step")) == 1000
    assert time.perf_counter() - wall < 20  # generous: about 0.1 s on an idle machine


# ============================================================================= BatchResult


def test_batch_result_to_dict_from_dict_round_trip():
    err = ds.ChildContextError.from_error_object({"ErrorType": "Boom", "ErrorMessage": "bad", "StackTrace": ["x"]})
    original = ds.BatchResult([
        ds.BatchItem(2, ds.BatchItemStatus.STARTED),
        ds.BatchItem(0, ds.BatchItemStatus.SUCCEEDED, {"k": [1, 2]}),
        ds.BatchItem(1, ds.BatchItemStatus.FAILED, None, err),
        ds.BatchItem(3, ds.BatchItemStatus.SUCCEEDED, None),
    ], "MIN_SUCCESSFUL_REACHED")
    data = original.to_dict()
    assert json.loads(json.dumps(data)) == data  # plain JSON data
    assert [item["index"] for item in data["all"]] == [0, 1, 2, 3]
    assert data["completionReason"] == "MIN_SUCCESSFUL_REACHED"
    assert data["all"][1]["error"] == {"ErrorType": "Boom", "ErrorMessage": "bad", "StackTrace": ["x"]}
    again = ds.BatchResult.from_dict(json.loads(json.dumps(data)))
    assert again == original and again.to_dict() == data
    assert again.completion_reason is ds.CompletionReason.MIN_SUCCESSFUL_REACHED
    assert again.get_results() == [{"k": [1, 2]}, None]
    assert (again.success_count, again.failure_count, again.started_count, again.total_count) == (2, 1, 1, 4)
    assert again.status is ds.BatchItemStatus.FAILED and again.has_failure
    assert isinstance(again.get_errors()[0], ds.ChildContextError)
    with pytest.raises(ds.ChildContextError) as info:
        again.throw_if_error()
    assert info.value.error_type == "Boom" and info.value.error_message == "bad"
    with pytest.raises(ds.SerDesError):
        ds.BatchResult.from_dict({"all": [], "completionReason": "NOPE"})


def test_batch_result_without_failures():
    result = ds.BatchResult([ds.BatchItem(0, ds.BatchItemStatus.SUCCEEDED, "a")], ds.CompletionReason.ALL_COMPLETED)
    result.throw_if_error()  # no failure: nothing raised
    assert result.status == "SUCCEEDED" and json.dumps(result.status) == '"SUCCEEDED"'
    assert not result.has_failure and result.get_errors() == []


# ============================================================================= the example


def test_fanout_enrichment_example(engine):
    import importlib.util
    import pathlib

    path = pathlib.Path(__file__).resolve().parent.parent / "examples" / "fanout_enrichment.py"
    spec = importlib.util.spec_from_file_location("fanout_enrichment_example", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    records = [{"id": 1, "email": "ada@example.com"}, {"id": 2, "email": "alan@example.org"},
               {"id": 3, "email": "not-an-email"}, {"id": 4, "email": "grace@example.net"}]
    res = engine.run(module.handler, {"records": records})
    assert res.status == "SUCCEEDED", res.error
    assert [r["id"] for r in res.result["enriched"]] == [1, 2, 4]
    assert res.result["enriched"][0]["name"] == "Ada" and res.result["enriched"][0]["score"] == 37
    assert res.result["failed"] == [{"id": 3, "error": "record 3: 'not-an-email' is not an email address"}]
    assert (res.result["completion"], res.result["status"]) == ("ALL_COMPLETED", "FAILED")
    retried = [e for e in events(engine, res.arn, "StepFailed")
               if e["StepFailedDetails"].get("RetryDetails", {}).get("NextAttemptDelaySeconds") == 1]
    assert len(retried) == 2  # records 2 and 4 were retried durably after 1 s
    names = sorted(op["Name"] for op in ops_of(engine, res.arn, "MapIteration"))
    assert names == ["enrich-1", "enrich-2", "enrich-3", "enrich-4"]
    # two failures of four exceed the 25 % tolerance: the fan-out stops
    bad = [{"id": 1, "email": "x"}, {"id": 3, "email": "y"}, {"id": 5, "email": "ok@example.com"},
           {"id": 7, "email": "z"}]
    res = engine.run(module.handler, {"records": bad})
    assert res.status == "SUCCEEDED", res.error
    assert res.result["completion"] == "FAILURE_TOLERANCE_EXCEEDED"
