"""durable_sync: a synchronous Python SDK for AWS Lambda durable functions.

Write plain blocking handlers; every step, wait and child context is checkpointed
and replayed. ``durable_sync.local.LocalEngine`` runs them on one machine.
"""
from . import errors, serdes
from .config import (CallbackConfig, CheckpointMode, ChildConfig, CompletionConfig, Duration, InvokeConfig,
                     JitterStrategy, MapConfig, NestingType, ParallelBranch, ParallelConfig, StepConfig, StepSemantics, WaitForCallbackConfig,
                     WaitForConditionConfig, WaitForConditionDecision)
from .context import DurableContext, StepContext, durable_step, durable_with_child_context
from .batch import BatchItem, BatchItemStatus, BatchResult, CompletionReason
from .concurrently import ConcurrentGroup, DurableFuture
from .callbacks import Callback
from .errors import (CallbackError, CallbackSubmitterError, CallbackTimeoutError, CheckpointError,
                     ChildContextError, DurableError, DurableExecutionsError, DurableOperationError, InvokeError,
                     NestedOperationError, NonDeterminismError, NonDeterministicExecutionError, SerDesError, StepError,
                     StepInterruptedError, SuspendExecution, ValidationError, WaitForConditionError)
from .handler import durable_handler
from .logs import JsonFormatter
from .retry import (RetryDecision, RetryPolicy, RetryPresets, RetryStrategyConfig, WaitStrategyConfig,
                    create_retry_strategy, create_wait_strategy)
from .serdes import SerDes, SerDesContext

__version__ = "0.1.0"

__all__ = [
    "durable_handler", "DurableContext", "StepContext", "durable_step", "durable_with_child_context",
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
]
