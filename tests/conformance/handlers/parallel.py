"""Handlers of the ``parallel`` suite (8-x)."""
from __future__ import annotations

import json

import durable_sync as ds

from .common import BranchError, enum_text


def sequential(**kwargs) -> ds.ParallelConfig:
    """max_concurrency=1: branches run one after the other in index order."""
    return ds.ParallelConfig(max_concurrency=1, **kwargs)


def tolerate(**kwargs) -> ds.ParallelConfig:
    return sequential(completion_config=ds.CompletionConfig(**kwargs))


def returns(value):
    return lambda ctx: value


def step_returning(value):
    return lambda ctx: ctx.step(lambda step_ctx: value)


def fails(message="branch failed"):
    def failing_branch(ctx):
        raise BranchError(message)

    return failing_branch


def projection(result, *fields):
    values = {
        "completionReason": enum_text(result.completion_reason),
        "status": enum_text(result.status),
        "successCount": result.success_count,
        "failureCount": result.failure_count,
        "totalCount": result.total_count,
    }
    return {name: values[name] for name in fields}


ALL_FIELDS = ("completionReason", "status", "successCount", "failureCount", "totalCount")


# 8-1: two branches, each one step
@ds.durable_handler
def handler_8_1(event, ctx):
    branches = [step_returning("task-1"), step_returning("task-2")]
    return ctx.parallel(branches, name="parallel", config=sequential()).get_results()


# 8-2: no operation name; branches return directly
@ds.durable_handler
def handler_8_2(event, ctx):
    return ctx.parallel([returns("alpha"), returns("beta")], config=sequential()).get_results()


# 8-3: named branch objects
@ds.durable_handler
def handler_8_3(event, ctx):
    branches = [ds.ParallelBranch(returns("one"), name="first"), ds.ParallelBranch(returns("two"), name="second")]
    return ctx.parallel(branches, name="named", config=sequential()).get_results()


# 8-4: heterogeneous branch results
@ds.durable_handler
def handler_8_4(event, ctx):
    branches = [returns("hello"), returns(42), returns({"k": "v"})]
    return ctx.parallel(branches, name="hetero", config=sequential()).get_results()


# 8-5: no branches at all
@ds.durable_handler
def handler_8_5(event, ctx):
    return ctx.parallel([], name="empty").get_results()


# 8-6: fail-fast (tolerated_failure_count=0) stops after the first failure
@ds.durable_handler
def handler_8_6(event, ctx):
    result = ctx.parallel(
        [returns("ok"), fails(), returns("never")], name="failfast", config=tolerate(tolerated_failure_count=0)
    )
    return projection(result, *ALL_FIELDS)


# 8-7: throw_if_error rethrows the branch failure
@ds.durable_handler
def handler_8_7(event, ctx):
    result = ctx.parallel([fails(), returns("never")], name="throwing", config=tolerate(tolerated_failure_count=0))
    result.throw_if_error()
    return result.get_results()


# 8-8: min_successful=2 completes early
@ds.durable_handler
def handler_8_8(event, ctx):
    branches = [returns(f"b{i}") for i in range(4)]
    result = ctx.parallel(branches, name="min-successful", config=tolerate(min_successful=2))
    return projection(result, "completionReason", "successCount", "totalCount")


# 8-9: one failure within a tolerance of one
@ds.durable_handler
def handler_8_9(event, ctx):
    branches = [returns("b0"), fails(), returns("b2")]
    result = ctx.parallel(branches, name="tolerated", config=tolerate(tolerated_failure_count=1))
    return projection(result, *ALL_FIELDS)


# 8-10: two failures exceed a tolerance of one
@ds.durable_handler
def handler_8_10(event, ctx):
    branches = [fails(), fails(), returns("never")]
    result = ctx.parallel(branches, name="tolerated-exceeded", config=tolerate(tolerated_failure_count=1))
    return projection(result, "completionReason", "successCount", "failureCount", "totalCount")


# 8-11: real concurrency (max_concurrency=2); results stay in index order
@ds.durable_handler
def handler_8_11(event, ctx):
    branches = [returns("r0"), returns("r1"), returns("r2")]
    return ctx.parallel(branches, name="concurrent", config=ds.ParallelConfig(max_concurrency=2)).get_results()


# 8-12: FLAT nesting: no per-branch contexts
@ds.durable_handler
def handler_8_12(event, ctx):
    branches = [step_returning("fa"), step_returning("fb")]
    config = sequential(nesting_type=ds.NestingType.FLAT)
    return ctx.parallel(branches, name="flat", config=config).get_results()


# 8-13: a 25 % failure tolerance exceeded by the second failure of four
@ds.durable_handler
def handler_8_13(event, ctx):
    branches = [fails(), fails(), returns("b2"), returns("b3")]
    result = ctx.parallel(branches, name="tolerated-pct", config=tolerate(tolerated_failure_percentage=25))
    return projection(result, "completionReason", "successCount", "failureCount", "totalCount")


# 8-14: a branch suspends on a wait; replay skips the succeeded branch
@ds.durable_handler
def handler_8_14(event, ctx):
    def waiting_branch(branch_ctx):
        branch_ctx.wait(ds.Duration.from_seconds(2))
        return "b1"

    branches = [step_returning("b0"), waiting_branch]
    return ctx.parallel(branches, name="replay", config=sequential()).get_results()


# 8-15: a per-branch serdes that wraps results in {"wrapped": v}
class WrappingSerDes:
    def serialize(self, value, ctx):
        return json.dumps({"wrapped": value})

    def deserialize(self, text, ctx):
        return json.loads(text)["wrapped"]


@ds.durable_handler
def handler_8_15(event, ctx):
    config = sequential(item_serdes=WrappingSerDes())
    return ctx.parallel([returns("x"), returns("y")], name="serde", config=config).get_results()


# 8-16: every branch fails within a tolerance of three
@ds.durable_handler
def handler_8_16(event, ctx):
    result = ctx.parallel([fails(), fails(), fails()], name="all-fail", config=tolerate(tolerated_failure_count=3))
    return projection(result, *ALL_FIELDS)


# 8-17: min_successful=3 never reached
@ds.durable_handler
def handler_8_17(event, ctx):
    branches = [returns("b0"), fails(), returns("b2")]
    result = ctx.parallel(branches, name="min-not-reached", config=tolerate(min_successful=3))
    return projection(result, *ALL_FIELDS)


# 8-18: min_successful=3 and tolerated_failure_count=1: the tolerance is exceeded first
@ds.durable_handler
def handler_8_18(event, ctx):
    branches = [fails(), fails(), returns("b2"), returns("b3")]
    result = ctx.parallel(
        branches, name="combined", config=tolerate(min_successful=3, tolerated_failure_count=1)
    )
    return projection(result, "completionReason", "successCount", "failureCount", "totalCount")


# 8-19: max_concurrency=0 is rejected before anything is checkpointed
@ds.durable_handler
def handler_8_19(event, ctx):
    config = ds.ParallelConfig(max_concurrency=0)
    return ctx.parallel([returns("a"), returns("b")], name="bad-concurrency", config=config).get_results()


# 8-20: BatchResult accessors
@ds.durable_handler
def handler_8_20(event, ctx):
    branches = [returns("b0"), fails(), returns("b2")]
    result = ctx.parallel(branches, name="accessors", config=tolerate(tolerated_failure_count=1))
    return {
        "hasFailure": result.has_failure,
        "successCount": len(result.succeeded()),
        "failureCount": len(result.failed()),
        "errorCount": len(result.get_errors()),
    }


# 8-21: a parallel inside a parallel branch
@ds.durable_handler
def handler_8_21(event, ctx):
    def branch_a(branch_ctx):
        inner = [step_returning("i1"), step_returning("i2")]
        return branch_ctx.parallel(inner, name="inner", config=sequential()).get_results()

    return ctx.parallel([branch_a], name="outer", config=sequential()).get_results()


# 8-22: a 25 % failure tolerance met exactly (not exceeded)
@ds.durable_handler
def handler_8_22(event, ctx):
    branches = [fails(), returns("b1"), returns("b2"), returns("b3")]
    result = ctx.parallel(branches, name="pct-boundary", config=tolerate(tolerated_failure_percentage=25))
    return projection(result, *ALL_FIELDS)


HANDLERS = {
    "8-1": handler_8_1,
    "8-2": handler_8_2,
    "8-3": handler_8_3,
    "8-4": handler_8_4,
    "8-5": handler_8_5,
    "8-6": handler_8_6,
    "8-7": handler_8_7,
    "8-8": handler_8_8,
    "8-9": handler_8_9,
    "8-10": handler_8_10,
    "8-11": handler_8_11,
    "8-12": handler_8_12,
    "8-13": handler_8_13,
    "8-14": handler_8_14,
    "8-15": handler_8_15,
    "8-16": handler_8_16,
    "8-17": handler_8_17,
    "8-18": handler_8_18,
    "8-19": handler_8_19,
    "8-20": handler_8_20,
    "8-21": handler_8_21,
    "8-22": handler_8_22,
}
