"""Typed errors of durable_sync.

Every error a user can see derives from ``DurableError``. Errors that stand for a
failed durable operation derive from ``DurableOperationError`` and carry the wire
``ErrorObject`` fields so that a failure recorded in one invocation is raised the
same way on replay.
"""
from __future__ import annotations

import traceback
from typing import Any


class DurableError(Exception):
    """Base class of every durable_sync error."""


class ValidationError(DurableError, ValueError):
    """Bad input detected before anything was checkpointed."""


class SerDesError(DurableError):
    """A value could not be serialized, or a payload could not be decoded safely."""


class NonDeterminismError(DurableError):
    """Replayed code asked for a different operation than the one recorded."""


class NestedOperationError(DurableError):
    """A durable operation was called inside a step body."""


class CheckpointError(DurableError):
    """The service refused or failed a checkpoint.

    ``retryable`` is True when Lambda should retry the whole invocation (stale
    token, 5xx, throttling after our own retries); False when the execution
    must fail (other 4xx).
    """

    def __init__(self, message: str, *, retryable: bool = False, error_type: str | None = None):
        super().__init__(message)
        self.retryable = retryable
        self.error_type = error_type


class ExecutionEnvelopeError(ValidationError):
    """The invocation event is not a durable execution envelope."""


class DurableOperationError(DurableError):
    """A durable operation failed; mirrors the wire ErrorObject."""

    def __init__(
        self,
        error_message: str | None = None,
        *,
        error_type: str | None = None,
        error_data: str | None = None,
        stack_trace: list[str] | None = None,
    ):
        super().__init__(error_message or error_type or type(self).__name__)
        self.error_type = error_type or type(self).__name__
        self.error_message = error_message or ""
        self.error_data = error_data
        self.stack_trace = stack_trace

    @classmethod
    def from_error_object(cls, err: dict[str, Any] | None) -> "DurableOperationError":
        err = err or {}
        return cls(
            err.get("ErrorMessage"),
            error_type=err.get("ErrorType"),
            error_data=err.get("ErrorData"),
            stack_trace=err.get("StackTrace"),
        )

    def to_error_object(self) -> dict[str, Any]:
        return error_object(self)


class StepError(DurableOperationError):
    """A step failed for good (retries exhausted or not retryable)."""


class StepInterruptedError(DurableOperationError):
    """An at-most-once step was found started but never finished (the invocation died)."""


class ChildContextError(DurableOperationError):
    """A child context (or a map/parallel branch) failed."""


class CallbackError(DurableOperationError):
    """A callback was completed with a failure by the outside system."""


class CallbackTimeoutError(CallbackError):
    """A callback timed out (overall timeout or heartbeat timeout)."""


class CallbackSubmitterError(CallbackError):
    """The submitter step of ``wait_for_callback`` failed for good."""


class InvokeError(DurableOperationError):
    """A chained invoke's target failed, timed out or was stopped."""


class WaitForConditionError(DurableOperationError):
    """``wait_for_condition`` failed: the check raised or attempts ran out."""


class SuspendExecution(BaseException):
    """Unwinds the handler when the invocation must end PENDING.

    It derives from BaseException so that ``except Exception`` in user code does
    not swallow it. Code that catches BaseException must re-raise it; the SDK
    detects a swallowed suspension and fails the invocation loudly.
    """


def _truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def error_object(exc: BaseException) -> dict[str, Any]:
    """The wire ErrorObject for an exception (type name, message, stack trace)."""
    if isinstance(exc, DurableOperationError):
        obj: dict[str, Any] = {"ErrorType": exc.error_type, "ErrorMessage": _truncate(exc.error_message, 8192)}
        if exc.error_data is not None:
            obj["ErrorData"] = exc.error_data
        if exc.stack_trace:
            obj["StackTrace"] = exc.stack_trace
        return obj
    obj = {"ErrorType": type(exc).__name__, "ErrorMessage": _truncate(str(exc), 8192)}
    tb = traceback.format_exception(type(exc), exc, exc.__traceback__)
    if tb:
        obj["StackTrace"] = [_truncate(line.rstrip("\n"), 1024) for line in tb[-20:]]
    return obj
