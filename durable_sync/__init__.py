"""durable_sync: a synchronous Python SDK for AWS Lambda durable functions.

Write plain blocking handlers; every step, wait and child context is checkpointed
and replayed. ``durable_sync.local.LocalEngine`` runs them on one machine.

What a handler needs to start is imported with the package; retry policies (``ds.RetryPolicy``,
``ds.RetryPresets``, ...) are imported the first time one of their names is used or a step fails,
and the rich-value serializer, tenacity and boto3 only when a value, a strategy or the AWS path
needs them, so a cold start pays only for what it uses.
"""
from typing import TYPE_CHECKING

from . import errors, serdes
from .config import (CallbackConfig, CheckpointMode, ChildConfig, CompletionConfig, Duration, InvokeConfig,
                     JitterStrategy, MapConfig, NestingType, ParallelBranch, ParallelConfig, StepConfig, StepSemantics,
                     WaitForCallbackConfig, WaitForConditionConfig, WaitForConditionDecision)
from .context import (DurableContext, StepContext, WaitForCallbackContext, WaitForConditionCheckContext,
                      durable_parallel_branch, durable_step, durable_wait_for_callback, durable_with_child_context)
from .operations.batch_result import BatchItem, BatchItemStatus, BatchResult, CompletionReason
from .operations.callback import Callback
from .operations.concurrently import ConcurrentGroup, DurableFuture
from .errors import (CallbackError, CallbackSubmitterError, CallbackTimeoutError, CheckpointError,
                     ChildContextError, DurableError, DurableExecutionsError, DurableOperationError, InvokeError,
                     NestedOperationError, NonDeterminismError, NonDeterministicExecutionError, SerDesError, StepError,
                     StepInterruptedError, SuspendExecution, ValidationError, WaitForConditionError)
from .handler import durable_handler
from .logs import JsonFormatter
from .serdes import SerDes, SerDesContext
# instrumentation plugins (obs)
from .instrumentation import (InstrumentationPlugin, InvocationEndInfo, InvocationStartInfo, OperationChangeInfo,
                              OperationEndInfo, OperationInfo, OperationStartInfo, UserFunctionEndInfo,
                              UserFunctionStartInfo)

if TYPE_CHECKING:  # imported on first use, see __getattr__
    from . import retry
    from .retry import (RetryDecision, RetryPolicy, RetryPresets, RetryStrategyConfig, WaitStrategyConfig,
                        create_retry_strategy, create_wait_strategy)

#: name -> the module (relative) that defines it, imported on first use.
_LAZY = dict.fromkeys(["RetryDecision", "RetryPolicy", "RetryPresets", "RetryStrategyConfig", "WaitStrategyConfig",
                       "create_retry_strategy", "create_wait_strategy"], "retry")
_LAZY_MODULES = frozenset({"retry"})


durable_execution = durable_handler  # the official SDK's name for the decorator


def __getattr__(name: str):
    import importlib

    if name in _LAZY_MODULES:
        return importlib.import_module(f"{__name__}.{name}")
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value  # later lookups are plain attribute reads
    return value


def __dir__() -> list:
    return sorted(set(globals()) | set(_LAZY) | _LAZY_MODULES)


__version__ = "0.1.0"

__all__ = [
    "durable_handler", "DurableContext", "StepContext", "durable_step", "durable_with_child_context",
    "durable_execution", "durable_parallel_branch", "durable_wait_for_callback", "WaitForCallbackContext",
    "WaitForConditionCheckContext",
    "Duration", "StepConfig", "StepSemantics", "CheckpointMode", "ChildConfig", "CallbackConfig", "WaitForCallbackConfig",
    "WaitForConditionConfig", "WaitForConditionDecision", "InvokeConfig", "ParallelConfig", "MapConfig",
    "CompletionConfig", "NestingType", "ParallelBranch",
    "RetryPolicy", "RetryPresets", "RetryDecision", "create_wait_strategy", "JitterStrategy",
    "RetryStrategyConfig", "create_retry_strategy", "WaitStrategyConfig",
    "SerDes", "SerDesContext", "JsonFormatter", "errors", "serdes",
    "DurableError", "DurableExecutionsError", "NonDeterministicExecutionError", "ValidationError", "SerDesError", "NonDeterminismError", "NestedOperationError",
    "CheckpointError", "DurableOperationError", "StepError", "StepInterruptedError", "ChildContextError",
    "CallbackError", "CallbackTimeoutError", "CallbackSubmitterError", "InvokeError", "WaitForConditionError",
    "SuspendExecution", "Callback",
    "BatchResult", "BatchItem", "BatchItemStatus", "CompletionReason", "ConcurrentGroup", "DurableFuture",
    # instrumentation plugins (obs)
    "InstrumentationPlugin", "InvocationStartInfo", "InvocationEndInfo", "OperationInfo", "OperationStartInfo",
    "OperationEndInfo", "OperationChangeInfo", "UserFunctionStartInfo", "UserFunctionEndInfo",
]
