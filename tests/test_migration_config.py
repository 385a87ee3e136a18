"""Official-SDK code for configs, retries, waits, serialization and errors runs after an import change.

The handler module below is written against ``aws_durable_execution_sdk_python`` (and is checked
to load with it); the test swaps only its import lines for ``durable_sync`` ones and runs it.
"""
from __future__ import annotations

import sys
import types

import pytest

from durable_sync.local import LocalEngine

OFFICIAL_IMPORTS = '''
from aws_durable_execution_sdk_python import DurableContext, durable_execution, StepError, DurableExecutionsError
from aws_durable_execution_sdk_python.config import (Duration, StepConfig, StepSemantics, JitterStrategy,
                                                     ChildConfig, CompletionConfig, MapConfig, InvokeConfig)
from aws_durable_execution_sdk_python.retries import RetryStrategyConfig, create_retry_strategy, RetryPresets
from aws_durable_execution_sdk_python.waits import (WaitStrategyConfig, create_wait_strategy,
                                                    WaitForConditionConfig, WaitForConditionDecision)
from aws_durable_execution_sdk_python.serdes import SerDes, SerDesContext
'''

OUR_IMPORTS = '''
from durable_sync import DurableContext, durable_handler as durable_execution, StepError, DurableExecutionsError
from durable_sync import (Duration, StepConfig, StepSemantics, JitterStrategy,
                          ChildConfig, CompletionConfig, MapConfig, InvokeConfig)
from durable_sync import RetryStrategyConfig, create_retry_strategy, RetryPresets
from durable_sync import (WaitStrategyConfig, create_wait_strategy,
                          WaitForConditionConfig, WaitForConditionDecision)
from durable_sync import SerDes, SerDesContext
'''

BODY = '''
import dataclasses
import json


@dataclasses.dataclass
class Order:
    id: str
    total: int


class OrderSerDes(SerDes[Order]):
    def serialize(self, value: Order, serdes_context: SerDesContext) -> str:
        return json.dumps({"id": value.id, "total": value.total})

    def deserialize(self, data: str, serdes_context: SerDesContext) -> Order:
        return Order(**json.loads(data))


ATTEMPTS = {"flaky": 0}
NO_RETRY = StepConfig(retry_strategy=RetryPresets.none())
RETRY = StepConfig(
    retry_strategy=create_retry_strategy(RetryStrategyConfig(
        max_attempts=3, initial_delay=Duration.from_seconds(2), max_delay=Duration.from_minutes(1),
        backoff_rate=2, jitter_strategy=JitterStrategy.NONE, retryable_error_types=[ConnectionError])),
    step_semantics=StepSemantics.AT_MOST_ONCE_PER_RETRY)


def flaky(step_context):
    ATTEMPTS["flaky"] += 1
    if ATTEMPTS["flaky"] < 3:
        raise ConnectionError("try again")
    return "connected"


def fails(step_context):
    raise KeyError("missing")


@durable_execution
def handler(event, context: DurableContext):
    order = context.step(lambda s: Order("o-1", 42), name="load",
                         config=StepConfig(serdes=OrderSerDes()))
    connected = context.step(flaky, name="connect", config=RETRY)
    context.wait(Duration.from_seconds(5), name="cool-down")
    try:
        context.step(fails, name="fails", config=NO_RETRY)
    except StepError as error:
        failure = [type(error).__name__, error.error_type, isinstance(error, DurableExecutionsError)]
    polls = context.wait_for_condition(
        lambda state, check_context: state + 1,
        config=WaitForConditionConfig(
            wait_strategy=create_wait_strategy(WaitStrategyConfig(
                should_continue_polling=lambda state: state < 3, initial_delay=Duration.from_seconds(1),
                jitter_strategy=JitterStrategy.NONE)),
            initial_state=0),
        name="poll")
    total = context.run_in_child_context(
        lambda child: child.step(lambda s: order.total * 2, name="double"), name="double",
        config=ChildConfig(serdes=None))
    return {"order": [order.id, order.total], "connected": connected, "attempts": ATTEMPTS["flaky"],
            "failure": failure, "polls": polls, "total": total}
'''


def load(imports: str, name: str) -> types.ModuleType:
    module = sys.modules[name] = types.ModuleType(name)  # dataclasses look their module up
    exec(compile(imports + BODY, f"{name}.py", "exec"), module.__dict__)  # noqa: S102 - test code
    return module


def test_the_module_is_official_sdk_code():
    module = load(OFFICIAL_IMPORTS, "official_handler")  # loads (configs are built at import) with the official SDK
    assert module.RETRY.step_semantics.name == "AT_MOST_ONCE_PER_RETRY"


@pytest.mark.parametrize("db", [":memory:", "sqlite"])
def test_it_runs_on_durable_sync_after_changing_only_the_imports(db, tmp_path):
    module = load(OUR_IMPORTS, f"migrated_handler_{db.strip(':')}")
    with LocalEngine(db=":memory:" if db == ":memory:" else str(tmp_path / "m.db"), skip_time=True) as engine:
        res = engine.run(module.handler, {})
    assert res.status == "SUCCEEDED", res.error
    assert res.result == {"order": ["o-1", 42], "connected": "connected", "attempts": 3,
                          "failure": ["StepError", "KeyError", True], "polls": 3, "total": 84}
