"""Callbacks: ``ctx.create_callback()``, the ``Callback`` handle and ``ctx.wait_for_callback()``.

A callback is a CALLBACK operation the outside world completes: the SDK checkpoints
CALLBACK START (awaited, so the service's answer carries the new CallbackId), gives
the id to the user, and ``Callback.result()`` suspends the invocation until the
service records the answer (success, failure, timeout or heartbeat timeout). The
answer comes from outside the function, so it is decoded as plain JSON only, never
with the pickling serdes -- unless the user passes a serdes in ``CallbackConfig``.

``wait_for_callback`` is a child CONTEXT (SubType WaitForCallback) holding the
callback (``"<name> create callback id"``) and a submitter step (``"<name> submitter"``),
named as the official Python SDK names them so executions replay across the two.
"""
from __future__ import annotations

from typing import Any, Callable, Optional

from .. import wire
from ..config import CallbackConfig, StepConfig, WaitForCallbackConfig, expect, optional_delay
from ..errors import (CallbackError, CallbackSubmitterError, CallbackTimeoutError, CheckpointError,
                      ChildContextError, StepError, ValidationError)
from ..serdes import decode_plain_json, deserialize_value
from .child import run_child
from .scope import AWAIT, Op, OperationScope, callable_name

__all__ = ["Callback", "create_callback", "wait_for_callback", "callback_error"]

#: ErrorType the service records when a callback times out (overall / heartbeat).
TIMEOUT_ERROR_TYPES = frozenset({"Callback.Timeout", "Callback.Heartbeat"})
#: ErrorType of a wait_for_callback context whose submitter step failed for good.
SUBMITTER_ERROR_TYPE = "CallbackSubmitterError"

_DEFAULT_CONFIG = CallbackConfig()
_DEFAULT_WAIT_CONFIG = WaitForCallbackConfig()


def _callback_options(config: CallbackConfig) -> dict[str, int]:
    """CallbackOptions of the START (the config checked its timeouts when it was built)."""
    options: dict[str, int] = {}
    timeout = optional_delay(config.timeout, "callback timeout")
    heartbeat = optional_delay(config.heartbeat_timeout, "callback heartbeat_timeout")
    if timeout is not None:
        options["TimeoutSeconds"] = timeout
    if heartbeat is not None:
        options["HeartbeatTimeoutSeconds"] = heartbeat
    return options


def callback_error(err: Optional[dict[str, Any]]) -> CallbackError:
    """The exception a failed callback (or wait_for_callback context) raises, from its ErrorObject."""
    err = err or {}
    error_type = err.get("ErrorType")
    if error_type == SUBMITTER_ERROR_TYPE:
        return CallbackSubmitterError.from_error_object(err)
    if error_type in TIMEOUT_ERROR_TYPES:
        return CallbackTimeoutError.from_error_object(err)
    return CallbackError.from_error_object(err)


class Callback:
    """A created callback: give ``callback_id`` to the outside system, then call ``result()``.

    ``result()`` returns the decoded answer, raises ``CallbackError`` (the outside reported a
    failure: its ErrorType / ErrorMessage / ErrorData are on the exception) or
    ``CallbackTimeoutError`` (timeout or heartbeat timeout), or suspends the invocation
    until the answer arrives. It may be called later, after other operations.
    """

    __slots__ = ("_scope", "_op", "_callback_id", "_serdes")

    def __init__(self, scope: OperationScope, op: Op, callback_id: str, serdes: Any = None):
        self._scope = scope
        self._op = op
        self._callback_id = callback_id
        self._serdes = serdes

    @property
    def callback_id(self) -> str:
        """The id the outside system answers with (SendDurableExecutionCallbackSuccess/Failure/Heartbeat)."""
        return self._callback_id

    @property
    def operation_id(self) -> str:
        return self._op.id

    @property
    def name(self) -> Optional[str]:
        return self._op.name

    def __repr__(self) -> str:
        return f"Callback(name={self._op.name!r}, callback_id={self._callback_id!r})"

    def _label(self) -> str:
        return repr(self._op.name) if self._op.name else self._op.id

    def result(self) -> Any:
        """The callback's answer; suspends the invocation while it has none."""
        scope = self._scope
        scope.check_thread(f"Callback.result() of callback {self._label()}")
        op = scope.record(self._op) or {}
        status = op.get("Status")
        details = op.get("CallbackDetails") or {}
        if status == wire.SUCCEEDED:
            return self._decode(details.get("Result"))
        if status == wire.TIMED_OUT:
            raise CallbackTimeoutError.from_error_object(details.get("Error") or {
                "ErrorType": "Callback.Timeout", "ErrorMessage": f"callback {self._label()} timed out"})
        if status in (wire.FAILED, wire.CANCELLED, wire.STOPPED):
            raise callback_error(details.get("Error") or {
                "ErrorType": "CallbackError", "ErrorMessage": f"callback {self._label()} ended {status}"})
        raise scope.suspend(f"callback {self._label()} waits for its answer")

    def _decode(self, payload: Optional[str]) -> Any:
        if self._serdes is not None:
            return deserialize_value(self._serdes, payload, self._scope.serdes_ctx(self._op.id))
        return decode_plain_json(payload, f"the result of callback {self._label()}")


def create_callback(scope: OperationScope, name: Optional[str] = None,
                    config: Optional[CallbackConfig] = None) -> Callback:
    """CALLBACK START (awaited); the service's answer carries the CallbackId.

    Never raises for the callback's outcome (that is ``result()``'s job); only bad input
    (ValidationError) or a service that returned no CallbackId raise here.
    """
    cfg = expect(config, CallbackConfig, "create_callback", _DEFAULT_CONFIG)
    options = _callback_options(cfg)
    op = scope.begin(wire.CALLBACK, wire.SubType.CALLBACK, name, f"ctx.create_callback({name!r})")
    record = op.record
    if record is None:
        fields: dict[str, Any] = {"CallbackOptions": options} if options else {}
        scope.checkpoint(op, wire.START, AWAIT, **fields)
        record = scope.record(op)
    callback_id = ((record or {}).get("CallbackDetails") or {}).get("CallbackId")
    if not callback_id:
        raise CheckpointError(
            f"the service returned no CallbackId for callback {op.label}: the CALLBACK START checkpoint's "
            "NewExecutionState must include the operation with CallbackDetails.CallbackId")
    return Callback(scope, op, callback_id, cfg.serdes)


def wait_for_callback(scope: OperationScope, submitter: Callable[[str, Any], Any], name: Optional[str] = None,
                      config: Optional[WaitForCallbackConfig] = None) -> Any:
    """Create a callback, run ``submitter(callback_id, step_ctx)`` as a step, return the answer.

    All of it runs in a child context (SubType WaitForCallback). The submitter step is
    retried by ``config.retry_strategy``; when it fails for good, CallbackSubmitterError.
    The callback's failure / timeout raise CallbackError / CallbackTimeoutError, on the
    first run and on replay alike.
    """
    if not callable(submitter):
        raise ValidationError(f"wait_for_callback needs a callable submitter(callback_id, ctx), got "
                              f"{type(submitter).__name__}")
    cfg = config if isinstance(config, CallbackConfig) else expect(
        config, WaitForCallbackConfig, "wait_for_callback", _DEFAULT_WAIT_CONFIG)
    if name is None:
        name = callable_name(submitter)
    prefix = f"{name} " if name else ""
    callback_config = CallbackConfig(timeout=cfg.timeout, heartbeat_timeout=cfg.heartbeat_timeout, serdes=cfg.serdes)
    step_config = StepConfig(retry_strategy=getattr(cfg, "retry_strategy", None))

    def body(child: Any) -> Any:
        callback = child.create_callback(f"{prefix}create callback id", callback_config)

        def submit(step_ctx: Any) -> None:
            submitter(callback.callback_id, step_ctx)
            return None  # the submitter's return value is not part of the protocol

        try:
            child.step(submit, name=f"{prefix}submitter", config=step_config)
        except StepError as exc:
            raise CallbackSubmitterError(
                f"the submitter of wait_for_callback {name!r} failed: {exc.error_type}: {exc.error_message}",
                error_type=SUBMITTER_ERROR_TYPE, error_data=exc.error_data, stack_trace=exc.stack_trace) from exc
        return callback.result()

    op = scope.begin(wire.CONTEXT, wire.SubType.WAIT_FOR_CALLBACK, name, f"child context {name!r}")
    try:
        return run_child(scope, op, body, cfg.serdes)
    except ChildContextError as exc:
        raise callback_error(exc.to_error_object()) from (exc.__cause__ or exc)
