"""Handlers of the ``step`` suite (1-x)."""
from __future__ import annotations

import json
from typing import Any

import durable_sync as ds

from .common import RunCounter, TransientError, crash_process

NO_RETRY = ds.StepConfig(retry_strategy=ds.RetryPresets.none())


def fixed_retry(max_attempts: int, delay: int = 1) -> ds.StepConfig:
    """A retry policy with a constant delay (no back-off, no jitter)."""
    return ds.StepConfig(
        retry_strategy=ds.RetryPolicy(max_attempts=max_attempts, initial_delay=delay, backoff_rate=1.0, jitter="none")
    )


@ds.durable_step
def greet(step_ctx, name):
    return f"Hello, {name}!"


# 1-1: step basic
@ds.durable_handler
def handler_1_1(event, ctx):
    return ctx.step(greet(event))


# 1-2: step with an explicit name
@ds.durable_handler
def handler_1_2(event, ctx):
    return ctx.step(lambda step_ctx: f"Hello, {event}!", name="custom_step_name")


# 1-3: the second step uses the first step's result
def step_one(step_ctx):
    return "first"


@ds.durable_step
def step_two(step_ctx, previous):
    return f"{previous}_second"


@ds.durable_handler
def handler_1_3(event, ctx):
    result1 = ctx.step(step_one)
    return ctx.step(step_two(result1))


# 1-4: a nested object result
@ds.durable_step
def build_response(step_ctx, event):
    return {"user": {"name": event["name"], "tags": list(event["tags"])}, "count": len(event["tags"])}


@ds.durable_handler
def handler_1_4(event, ctx):
    return ctx.step(build_response(event))


# 1-5: a None result
def do_nothing(step_ctx):
    return None


@ds.durable_handler
def handler_1_5(event, ctx):
    return ctx.step(do_nothing)


# 1-6: per-step custom serdes that upper-cases strings on serialization
def _upper(value: Any) -> Any:
    if isinstance(value, str):
        return value.upper()
    if isinstance(value, list):
        return [_upper(v) for v in value]
    if isinstance(value, dict):
        return {k: _upper(v) for k, v in value.items()}
    return value


class UppercaseSerDes:
    def serialize(self, value, ctx):
        return json.dumps(_upper(value))

    def deserialize(self, text, ctx):
        return json.loads(text)


@ds.durable_handler
def handler_1_6(event, ctx):
    def return_input(step_ctx):
        return event

    return ctx.step(return_input, config=ds.StepConfig(serdes=UppercaseSerDes()))


# 1-7: step context logger
@ds.durable_step
def greet_with_logs(step_ctx, name):
    step_ctx.logger.info(f"Greeting step started for: {name}")
    greeting = f"Hello, {name}!"
    step_ctx.logger.info(f"Greeting step completed with: {greeting}")
    return greeting


@ds.durable_handler
def handler_1_7(event, ctx):
    return ctx.step(greet_with_logs(event))


# 1-8: a step, then a wait; replay skips the step
def compute(step_ctx):
    return "computed"


@ds.durable_handler
def handler_1_8(event, ctx):
    value = ctx.step(compute)
    ctx.wait(ds.Duration.from_seconds(2))
    return value


# 1-9: replay returns the checkpointed result without running the step again
@ds.durable_handler
def handler_1_9(event, ctx):
    runs = RunCounter(ctx.execution_arn, "1-9")

    def cached_step(step_ctx):
        runs.increment()
        step_ctx.logger.info("step executed")
        return "cached_value"

    value = ctx.step(cached_step)
    ctx.wait(ds.Duration.from_seconds(1))
    if runs.value() != 1:
        raise AssertionError(f"the succeeded step ran {runs.value()} times")
    return value


# 1-10: replay re-throws the failed step's error without running it again
@ds.durable_handler
def handler_1_10(event, ctx):
    runs = RunCounter(ctx.execution_arn, "1-10")

    def failing_step(step_ctx):
        runs.increment()
        step_ctx.logger.info("step executed")
        raise RuntimeError("permanent failure")

    try:
        ctx.step(failing_step, config=NO_RETRY)
    except ds.StepError:
        pass
    ctx.wait(ds.Duration.from_seconds(1))
    if runs.value() != 1:
        raise AssertionError(f"the failed step ran {runs.value()} times")
    return None


# 1-11: fails on the first attempt, succeeds on the second
@ds.durable_handler
def handler_1_11(event, ctx):
    runs = RunCounter(ctx.execution_arn, "1-11")

    def unreliable_func(step_ctx):
        if runs.increment() == 1:
            raise RuntimeError("first attempt fails")
        return "Operation succeeded"

    return ctx.step(unreliable_func, config=fixed_retry(3))


# 1-12: retries exhausted after 4 attempts
def always_fail(step_ctx):
    raise RuntimeError("always fails")


@ds.durable_handler
def handler_1_12(event, ctx):
    return ctx.step(always_fail, config=fixed_retry(4))


# 1-13: the default retry strategy (6 attempts, 5 s, x2, max 60 s, full jitter)
@ds.durable_handler
def handler_1_13(event, ctx):
    runs = RunCounter(ctx.execution_arn, "1-13")

    def unreliable_func(step_ctx):
        if runs.increment() <= 2:
            raise RuntimeError("fails on the first two attempts")
        return "succeeded on third attempt"

    return ctx.step(unreliable_func)


# 1-14: custom back-off: 2 s initial, x3, no jitter
@ds.durable_handler
def handler_1_14(event, ctx):
    runs = RunCounter(ctx.execution_arn, "1-14")

    def unreliable_func(step_ctx):
        if runs.increment() <= 2:
            raise RuntimeError("fails on the first two attempts")
        return "succeeded on third attempt"

    policy = ds.RetryPolicy(max_attempts=5, initial_delay=2, backoff_rate=3.0, jitter="none")
    return ctx.step(unreliable_func, config=ds.StepConfig(retry_strategy=policy))


# 1-15: the strategy retries TransientError only
def retry_on_transient(error, attempt):
    if isinstance(error, TransientError):
        return ds.RetryDecision.retry(ds.Duration.from_seconds(1))
    return ds.RetryDecision.no_retry()


@ds.durable_handler
def handler_1_15(event, ctx):
    runs = RunCounter(ctx.execution_arn, "1-15")

    def func(step_ctx):
        if runs.increment() == 1:
            raise TransientError("transient failure")
        return "recovered"

    return ctx.step(func, config=ds.StepConfig(retry_strategy=retry_on_transient))


# 1-16: the strategy does not retry TransientError
def no_retry_on_transient_error(error, attempt):
    if isinstance(error, TransientError):
        return ds.RetryDecision.no_retry()
    return ds.RetryDecision.retry(ds.Duration.from_seconds(1))


@ds.durable_handler
def handler_1_16(event, ctx):
    def func(step_ctx):
        raise TransientError("transient failure")

    return ctx.step(func, config=ds.StepConfig(retry_strategy=no_retry_on_transient_error))


# 1-17: at-most-once step interrupted by a crash, no retry (needs process isolation)
@ds.durable_step
def at_most_once_flaky_step(step_ctx, text):
    step_ctx.logger.info(f"at-most-once step processing {text}")
    crash_process()


@ds.durable_handler
def handler_1_17(event, ctx):
    config = ds.StepConfig(
        retry_strategy=ds.RetryPresets.none(), step_semantics=ds.StepSemantics.AT_MOST_ONCE_PER_RETRY
    )
    return ctx.step(at_most_once_flaky_step(event), config=config)


# 1-18: at-most-once step crashes on its first attempt, succeeds on the retry
@ds.durable_handler
def handler_1_18(event, ctx):
    runs = RunCounter(ctx.execution_arn, "1-18")

    def at_most_once_step(step_ctx):
        step_ctx.logger.info(f"at-most-once step processing {event}")
        if runs.increment() == 1:
            crash_process()
        return "succeeded on second attempt"

    policy = ds.RetryPolicy(max_attempts=3, initial_delay=1, backoff_rate=1.0, jitter="none")
    config = ds.StepConfig(retry_strategy=policy, step_semantics=ds.StepSemantics.AT_MOST_ONCE_PER_RETRY)
    return ctx.step(at_most_once_step, config=config)


# 1-19: fails permanently, no retries
def failing_func(step_ctx):
    raise RuntimeError("step failed")


@ds.durable_handler
def handler_1_19(event, ctx):
    return ctx.step(failing_func, config=ds.StepConfig(retry_strategy=ds.RetryPresets.none()))


# 1-20: the error is caught and the handler continues with a fallback
@ds.durable_handler
def handler_1_20(event, ctx):
    try:
        value = ctx.step(failing_func, config=NO_RETRY)
    except ds.StepError:
        value = "fallback_result"
    return ctx.step(lambda step_ctx: value)


HANDLERS = {
    "1-1": handler_1_1,
    "1-2": handler_1_2,
    "1-3": handler_1_3,
    "1-4": handler_1_4,
    "1-5": handler_1_5,
    "1-6": handler_1_6,
    "1-7": handler_1_7,
    "1-8": handler_1_8,
    "1-9": handler_1_9,
    "1-10": handler_1_10,
    "1-11": handler_1_11,
    "1-12": handler_1_12,
    "1-13": handler_1_13,
    "1-14": handler_1_14,
    "1-15": handler_1_15,
    "1-16": handler_1_16,
    "1-17": handler_1_17,
    "1-18": handler_1_18,
    "1-19": handler_1_19,
    "1-20": handler_1_20,
}
