"""Typed errors of durable_sync.

Every error a user can see derives from ``DurableError``. Errors that stand for a
failed durable operation derive from ``DurableOperationError`` and carry the wire
``ErrorObject`` fields so that a failure recorded in one invocation is raised the
same way on replay.
"""
from __future__ import annotations

import re
from typing import Any


class DurableError(Exception):
    """Base class of every durable_sync error (the official SDK's ``DurableExecutionsError``)."""


class ValidationError(DurableError, ValueError):
    """Bad input detected before anything was checkpointed."""


class SerDesError(DurableError):
    """A value could not be serialized, or a payload could not be decoded safely."""


class NonDeterminismError(DurableError):
    """Replayed code asked for a different operation than the one recorded."""


#: The official SDK's names for the same classes.
DurableExecutionsError = DurableError
NonDeterministicExecutionError = NonDeterminismError


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

    @property
    def message(self) -> str:
        """``error_message`` under the official SDK's name."""
        return self.error_message

    @property
    def data(self) -> str | None:
        """``error_data`` under the official SDK's name."""
        return self.error_data


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


# The Lambda API's exception names the durable execution service answers with (``ServiceError.code``).
INVALID = "InvalidParameterValueException"
NOT_FOUND = "ResourceNotFoundException"
CONFLICT = "ResourceConflictException"
CALLBACK_TIMEOUT = "CallbackTimeoutException"


class ServiceError(Exception):
    """An error the durable execution service (the local engine) answers with: ``code`` is the modeled
    exception name (X-Amzn-ErrorType), ``status`` the HTTP status."""

    def __init__(self, code: str, message: str, status: int = 400):
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


class SuspendExecution(BaseException):
    """Unwinds the handler when the invocation must end PENDING.

    It derives from BaseException so that ``except Exception`` in user code does
    not swallow it. Code that catches BaseException must re-raise it; the SDK
    detects a swallowed suspension and fails the invocation loudly.
    """


def _truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


_NOT_UTF8 = re.compile("[\ud800-\udfff]")


def utf8_safe(text: str) -> str:
    """``text`` with every character UTF-8 cannot encode (lone surrogates, e.g. from
    ``os.fsdecode`` of a bad file name) replaced by U+FFFD; the same object when there is none.

    The one rule for text the SDK checkpoints: :func:`error_object`, ``serdes.serialize_value``
    and ``wire.validate_update`` (every update sent, also by the boto3 client) apply it, so a
    message or payload with such characters is stored, not refused by the store or the service.
    """
    if text.isascii() or _NOT_UTF8.search(text) is None:
        return text
    return _NOT_UTF8.sub("\ufffd", text)


def utf8_safe_error(err: dict[str, Any]) -> dict[str, Any]:
    """An ErrorObject whose text fields pass :func:`utf8_safe` (``err`` itself when already clean)."""
    clean = {k: utf8_safe(v) if isinstance(v, str) else v for k, v in err.items()}
    trace = clean.get("StackTrace")
    if isinstance(trace, list):
        clean["StackTrace"] = [utf8_safe(line) if isinstance(line, str) else line for line in trace]
    return err if clean == err else clean


def _message(exc: BaseException) -> str:
    try:
        return str(exc)
    except Exception as inner:  # noqa: BLE001 - a broken __str__ must not lose the failure
        return f"<{type(exc).__name__} whose str() raised {type(inner).__name__}>"


def error_object(exc: BaseException) -> dict[str, Any]:
    """The wire ErrorObject for an exception (type name, message, stack trace), safe to checkpoint."""
    if isinstance(exc, DurableOperationError):
        obj: dict[str, Any] = {"ErrorType": exc.error_type, "ErrorMessage": _truncate(exc.error_message, 8192)}
        if exc.error_data is not None:
            obj["ErrorData"] = exc.error_data
        if exc.stack_trace:
            obj["StackTrace"] = exc.stack_trace
        return utf8_safe_error(obj)
    import traceback  # only when an error is recorded: it costs ~20 ms at import

    obj = {"ErrorType": type(exc).__name__, "ErrorMessage": _truncate(_message(exc), 8192)}
    tb = traceback.format_exception(type(exc), exc, exc.__traceback__)
    if tb:
        obj["StackTrace"] = [_truncate(line.rstrip("\n"), 1024) for line in tb[-20:]]
    return utf8_safe_error(obj)
