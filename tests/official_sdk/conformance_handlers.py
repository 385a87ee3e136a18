"""Conformance requirements (../shared/conformance) written with the official AWS Python SDK: the
engine must record, for that SDK's checkpoints, the histories the requirements expect."""
from __future__ import annotations

from aws_durable_execution_sdk_python import DurableContext, StepContext, durable_execution, durable_step
from aws_durable_execution_sdk_python.config import (Duration, JitterStrategy, ParallelConfig, StepConfig)
from aws_durable_execution_sdk_python.retries import RetryStrategyConfig, create_retry_strategy
from aws_durable_execution_sdk_python.waits import (WaitForConditionConfig, WaitStrategyConfig,
                                                    create_wait_strategy)


@durable_step
def greet(step_ctx: StepContext, name: str) -> str:
    return f"Hello, {name}!"


@durable_execution
def step_1_1(event, context: DurableContext):
    return context.step(greet(event))


def unreliable(step_ctx: StepContext) -> str:
    if step_ctx.attempt < 2:
        raise RuntimeError("first attempt fails")
    return "Operation succeeded"


@durable_execution
def step_1_11(event, context: DurableContext):
    return context.step(unreliable, config=StepConfig(retry_strategy=create_retry_strategy(RetryStrategyConfig(
        max_attempts=2, initial_delay=Duration.from_seconds(1), jitter_strategy=JitterStrategy.NONE))))


@durable_execution
def wait_2_1(event, context: DurableContext):
    context.wait(Duration.from_seconds(2))


@durable_execution
def child_3_1(event, context: DurableContext):
    return context.run_in_child_context(lambda child: child.step(lambda s: event))


@durable_execution
def callback_4_1(event, context: DurableContext):
    return context.create_callback(name=event).result()


@durable_execution
def wait_for_condition_6_1(event, context: DurableContext):
    return context.wait_for_condition(lambda state, check_context: state + 1, WaitForConditionConfig(
        wait_strategy=create_wait_strategy(WaitStrategyConfig(
            should_continue_polling=lambda state: state < event, initial_delay=Duration.from_seconds(1),
            jitter_strategy=JitterStrategy.NONE)),
        initial_state=0))


@durable_execution
def parallel_8_1(event, context: DurableContext):
    branches = [lambda ctx: ctx.step(lambda s: "task-1"), lambda ctx: ctx.step(lambda s: "task-2")]
    return context.parallel(branches, name="parallel", config=ParallelConfig(max_concurrency=1)).get_results()


HANDLERS = {("step", "1-1"): step_1_1, ("step", "1-11"): step_1_11, ("wait", "2-1"): wait_2_1,
            ("child", "3-1"): child_3_1, ("callback", "4-1"): callback_4_1,
            ("wait_for_condition", "6-1"): wait_for_condition_6_1, ("parallel", "8-1"): parallel_8_1}
