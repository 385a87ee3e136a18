"""Handlers of the ``child`` suite (3-x)."""
from __future__ import annotations

from .common import RunCounter, crash_process

import durable_sync as ds

NO_RETRY = ds.StepConfig(retry_strategy=ds.RetryPresets.none())


def _fixed_retry(max_attempts: int) -> ds.StepConfig:
    policy = ds.RetryPolicy(max_attempts=max_attempts, initial_delay=1, backoff_rate=1.0, jitter="none")
    return ds.StepConfig(retry_strategy=policy)


# 3-1: child context with a single step (an unnamed child: a lambda)
@ds.durable_handler
def handler_3_1(event, ctx):
    return ctx.run_in_child_context(lambda child: child.step(lambda step_ctx: event))


# 3-2: child context named after the input, as a `with` block
@ds.durable_handler
def handler_3_2(event, ctx):
    with ctx.child(event["name"]) as child:
        value = child.step(lambda step_ctx: event["value"])
        child.result = value
    return value


# 3-3: two sequential steps in a child context, the second uses the first's result
@ds.durable_handler
def handler_3_3(event, ctx):
    def two_steps(child):
        first = child.step(lambda step_ctx: event, name="first")
        return child.step(lambda step_ctx: first, name="second")

    return ctx.run_in_child_context(two_steps)


# 3-4: the child's step fails (no retry) and the execution fails
@ds.durable_handler
def handler_3_4(event, ctx):
    def failing_child(child):
        def failing_step(step_ctx):
            raise RuntimeError("child step failed")

        return child.step(failing_step, config=NO_RETRY)

    return ctx.run_in_child_context(failing_child)


# 3-5: the child's failure is caught; a recovery step follows
@ds.durable_handler
def handler_3_5(event, ctx):
    def failing_child(child):
        def failing_step(step_ctx):
            raise RuntimeError("child step failed")

        return child.step(failing_step, config=NO_RETRY)

    try:
        ctx.run_in_child_context(failing_child)
    except ds.ChildContextError:
        pass
    return ctx.step(lambda step_ctx: event, name="recovery")


# 3-6: nested child contexts, each with a step
@ds.durable_handler
def handler_3_6(event, ctx):
    def inner(child):
        return child.step(lambda step_ctx: event, name="inner_step")

    def outer(child):
        child.step(lambda step_ctx: event, name="outer_step")
        return child.run_in_child_context(inner, name="inner")

    return ctx.run_in_child_context(outer, name="outer")


# 3-7: the child's step fails once, then succeeds on the retry
@ds.durable_handler
def handler_3_7(event, ctx):
    runs = RunCounter(ctx.execution_arn, "3-7")

    def unreliable_step(step_ctx):
        if runs.increment() == 1:
            raise RuntimeError("first attempt fails")
        return event

    def child_with_retry(child):
        return child.step(unreliable_step, config=_fixed_retry(3))

    return ctx.run_in_child_context(child_with_retry)


# 3-8: the child's step exhausts its 2 attempts; the child and the execution fail
@ds.durable_handler
def handler_3_8(event, ctx):
    def always_fail(step_ctx):
        raise RuntimeError("always fails")

    def child_with_failing_step(child):
        return child.step(always_fail, config=_fixed_retry(2))

    return ctx.run_in_child_context(child_with_failing_step)


# 3-9: a completed child context is not run again on replay
@ds.durable_handler
def handler_3_9(event, ctx):
    runs = RunCounter(ctx.execution_arn, "3-9")

    def child_body(child):
        runs.increment()
        return child.step(lambda step_ctx: event)

    value = ctx.run_in_child_context(child_body)
    ctx.wait(ds.Duration.from_seconds(1))
    if runs.value() != 1:
        raise AssertionError(f"the completed child context ran {runs.value()} times")
    return value


# 3-10: a step and a wait inside a child context
@ds.durable_handler
def handler_3_10(event, ctx):
    def child_with_step_and_wait(child):
        value = child.step(lambda step_ctx: event)
        child.wait(ds.Duration.from_seconds(1))
        return value

    return ctx.run_in_child_context(child_with_step_and_wait)


# 3-11: a child result over 256 KiB (ReplayChildren): the body re-runs on replay
@ds.durable_handler
def handler_3_11(event, ctx):
    def large_child(child):
        child.logger.with_replay().info(f"large child context for {event}")
        small = child.step(lambda step_ctx: "x")
        return small * (300 * 1024)

    large = ctx.run_in_child_context(large_child, name="large_child")
    ctx.wait(ds.Duration.from_seconds(1))
    return len(large)


# 3-12: the process crashes inside the child's step; the retry checkpoints only StepSucceeded
@ds.durable_handler
def handler_3_12(event, ctx):
    runs = RunCounter(ctx.execution_arn, "3-12")

    def crashing_step(step_ctx):
        if runs.increment() == 1:
            crash_process()
        return event

    return ctx.run_in_child_context(lambda child: child.step(crashing_step))


# 3-13: a child context holding only a wait, then a step outside
@ds.durable_handler
def handler_3_13(event, ctx):
    def child_with_wait(child):
        child.wait(ds.Duration.from_seconds(1))
        return event

    ctx.run_in_child_context(child_with_wait)
    return ctx.step(lambda step_ctx: event)


# 3-14: child context with a custom serdes that stores the result upper-cased, verbatim
class UppercaseTextSerDes:
    def serialize(self, value, ctx):
        return str(value).upper()

    def deserialize(self, text, ctx):
        return text


@ds.durable_handler
def handler_3_14(event, ctx):
    def uppercase_child(child):
        return child.step(lambda step_ctx: event)

    return ctx.run_in_child_context(uppercase_child, config=ds.ChildConfig(serdes=UppercaseTextSerDes()))


# 3-15: the child body raises without any durable operation
@ds.durable_handler
def handler_3_15(event, ctx):
    def failing_child(child):
        raise ValueError("child body failed")

    return ctx.run_in_child_context(failing_child)


# 3-16: the child returns None without any durable operation
@ds.durable_handler
def handler_3_16(event, ctx):
    def null_child(child):
        return None

    return ctx.run_in_child_context(null_child)


# 3-17: the child only logs (replay logging on); it must not run again on replay
@ds.durable_handler
def handler_3_17(event, ctx):
    def logging_child(child):
        child.logger.with_replay().info(f"child context for {event}")
        return event

    value = ctx.run_in_child_context(logging_child)
    ctx.wait(ds.Duration.from_seconds(1))
    return value


# 3-18: step and wait inside a child, then a step and a wait outside
@ds.durable_handler
def handler_3_18(event, ctx):
    def child_with_step_and_wait(child):
        value = child.step(lambda step_ctx: event)
        child.wait(ds.Duration.from_seconds(1))
        return value

    value = ctx.run_in_child_context(child_with_step_and_wait)
    outer = ctx.step(lambda step_ctx: value)
    ctx.wait(ds.Duration.from_seconds(1))
    return outer


HANDLERS = {
    "3-1": handler_3_1,
    "3-2": handler_3_2,
    "3-3": handler_3_3,
    "3-4": handler_3_4,
    "3-5": handler_3_5,
    "3-6": handler_3_6,
    "3-7": handler_3_7,
    "3-8": handler_3_8,
    "3-9": handler_3_9,
    "3-10": handler_3_10,
    "3-11": handler_3_11,
    "3-12": handler_3_12,
    "3-13": handler_3_13,
    "3-14": handler_3_14,
    "3-15": handler_3_15,
    "3-16": handler_3_16,
    "3-17": handler_3_17,
    "3-18": handler_3_18,
}
