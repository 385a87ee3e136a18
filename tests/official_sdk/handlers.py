"""Handlers written with the official AWS Python SDK (``aws_durable_execution_sdk_python``), as its users
write them: nothing here knows about durable_sync. The tests run each on the engine (in process, in a
child process, under ``durable-sync serve`` through boto3) and on the official SDK's own local runner.

``FUNCTIONS`` names them as Lambda functions (chained invoke targets included). Every result is plain
JSON and deterministic, so the runs can be compared.
"""
from __future__ import annotations

from aws_durable_execution_sdk_python import DurableContext, StepContext, durable_execution, durable_step
from aws_durable_execution_sdk_python.config import (CallbackConfig, Duration, JitterStrategy, MapConfig,
                                                     StepConfig, StepSemantics)
from aws_durable_execution_sdk_python.retries import RetryStrategyConfig, create_retry_strategy
from aws_durable_execution_sdk_python.waits import (WaitForConditionConfig, WaitStrategyConfig,
                                                    create_wait_strategy)

RETRY_TWICE = create_retry_strategy(RetryStrategyConfig(
    max_attempts=3, initial_delay=Duration.from_seconds(2), backoff_rate=1, jitter_strategy=JitterStrategy.NONE))
LARGE_RESULT_CHARS = 6 * 1024 * 1024 - 40  # as JSON: over the 6 MiB - 50 bytes an output holds, under 6 MiB


@durable_step
def add(step_ctx: StepContext, a: int, b: int) -> int:
    return a + b


def flaky(step_ctx: StepContext) -> str:
    if step_ctx.attempt < 3:
        raise RuntimeError(f"attempt {step_ctx.attempt} fails")
    return f"ok after {step_ctx.attempt} attempts"


@durable_execution
def steps(event: dict, context: DurableContext) -> dict:
    """Both step semantics, a retried step, and a failure that is caught."""
    least = context.step(add(event["a"], 1), name="at-least-once")
    most = context.step(add(least, 10), name="at-most-once",
                        config=StepConfig(step_semantics=StepSemantics.AT_MOST_ONCE_PER_RETRY))
    retried = context.step(flaky, name="flaky", config=StepConfig(retry_strategy=RETRY_TWICE))
    try:
        context.step(lambda s: 1 / 0, name="doomed", config=StepConfig(
            retry_strategy=create_retry_strategy(RetryStrategyConfig(max_attempts=1))))
        failure = None
    except Exception as exc:  # noqa: BLE001 - the step's error, as the SDK raises it on every replay
        failure = type(exc).__name__
    return {"least": least, "most": most, "retried": retried, "failure": failure}


def _inside(child: DurableContext) -> int:
    first = child.step(add(1, 2), name="inner-add")
    child.wait(Duration.from_seconds(30), name="inner-wait")
    return child.step(add(first, 100), name="inner-add-again")


@durable_execution
def waits_and_children(event: dict, context: DurableContext) -> dict:
    context.wait(Duration.from_hours(2), name="two-hours")
    inner = context.run_in_child_context(_inside, name="child")
    context.wait(Duration.from_seconds(5), name="short")
    return {"inner": inner}


def _square(ctx: DurableContext, item: int, index: int, items: list) -> int:
    return ctx.step(add(item * item, 0), name=f"square-{index}")


@durable_execution
def map_and_parallel(event: dict, context: DurableContext) -> dict:
    squares = context.map(event["items"], _square, name="squares", config=MapConfig(max_concurrency=2))
    branches = context.parallel([
        lambda ctx: ctx.step(add(1, 1), name="left"),
        lambda ctx: (ctx.wait(Duration.from_seconds(60), name="right-wait"), ctx.step(add(2, 2), name="right"))[1],
    ], name="both")
    return {"squares": squares.get_results(), "branches": branches.get_results()}


@durable_execution
def callbacks(event: dict, context: DurableContext) -> dict:
    """A callback answered by the outside, and a wait_for_callback whose submitter hands the id out."""
    approval = context.create_callback(name="approval", config=CallbackConfig(timeout=Duration.from_minutes(10)))
    answer = approval.result()

    def submit(callback_id, wait_context) -> None:
        wait_context.logger.info("submitting %s", callback_id)

    confirmed = context.wait_for_callback(submit, name="confirmation",
                                          config=None)
    return {"approval": answer, "confirmation": confirmed}


def _poll(state: int, check_context) -> int:
    return state + 1


@durable_execution
def condition(event: dict, context: DurableContext) -> dict:
    final = context.wait_for_condition(_poll, WaitForConditionConfig(
        wait_strategy=create_wait_strategy(WaitStrategyConfig(
            should_continue_polling=lambda state: state < 4, initial_delay=Duration.from_seconds(10),
            backoff_rate=1, jitter_strategy=JitterStrategy.NONE)),
        initial_state=0), name="poll")
    return {"polls": final}


@durable_execution
def invoked(event: dict, context: DurableContext) -> dict:
    doubled = context.step(add(event["n"], event["n"]), name="double")
    context.wait(Duration.from_seconds(20), name="think")
    return {"doubled": doubled}


@durable_execution
def invoker(event: dict, context: DurableContext) -> dict:
    first = context.invoke("invoked", {"n": event["n"]}, name="call-invoked")
    return {"first": first, "after": context.step(add(first["doubled"], 1), name="after")}


@durable_execution
def large(event: dict, context: DurableContext) -> str:
    size = context.step(add(LARGE_RESULT_CHARS, 0), name="size")
    return "x" * size


FUNCTIONS = {"steps": steps, "waits_and_children": waits_and_children, "map_and_parallel": map_and_parallel,
             "callbacks": callbacks, "condition": condition, "invoked": invoked, "invoker": invoker,
             "large": large}
