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

from . import wire
from .config import (CallbackConfig, ChildConfig, StepConfig, WaitForCallbackConfig, checked_delay,
                     to_seconds)
from .errors import (CallbackError, CallbackSubmitterError, CallbackTimeoutError, CheckpointError,
                     ChildContextError, NestedOperationError, StepError, ValidationError)
from .serdes import decode_plain_json, deserialize_value

__all__ = ["Callback", "create_callback", "wait_for_callback", "callback_error"]

#: ErrorType the service records when a callback times out (overall / heartbeat).
TIMEOUT_ERROR_TYPES = frozenset({"Callback.Timeout", "Callback.Heartbeat"})
#: ErrorType of a wait_for_callback context whose submitter step failed for good.
SUBMITTER_ERROR_TYPE = "CallbackSubmitterError"

_DEFAULT_CONFIG = CallbackConfig()


def _optional_seconds(value: Any, what: str) -> Optional[int]:
    """None (or 0) means "no timeout"; otherwise whole seconds in 1 s .. 366 days."""
    if value is None or to_seconds(value, what) == 0:
        return None
    return checked_delay(value, what)


def _callback_options(config: CallbackConfig) -> dict[str, int]:
    options: dict[str, int] = {}
    timeout = _optional_seconds(config.timeout, "callback timeout")
    heartbeat = _optional_seconds(config.heartbeat_timeout, "callback heartbeat_timeout")
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

    __slots__ = ("_ctx", "_op_id", "_name", "_callback_id", "_serdes")

    def __init__(self, ctx: Any, operation_id: str, name: Optional[str], callback_id: str, serdes: Any = None):
        self._ctx = ctx
        self._op_id = operation_id
        self._name = name
        self._callback_id = callback_id
        self._serdes = serdes

    @property
    def callback_id(self) -> str:
        """The id the outside system answers with (SendDurableExecutionCallbackSuccess/Failure/Heartbeat)."""
        return self._callback_id

    @property
    def operation_id(self) -> str:
        return self._op_id

    @property
    def name(self) -> Optional[str]:
        return self._name

    def __repr__(self) -> str:
        return f"Callback(name={self._name!r}, callback_id={self._callback_id!r})"

    def _label(self) -> str:
        return repr(self._name) if self._name else self._op_id

    def result(self) -> Any:
        """The callback's answer; suspends the invocation while it has none."""
        rt = self._ctx._rt
        in_step = getattr(rt.local, "step", None)
        if in_step is not None:
            raise NestedOperationError(
                f"Callback.result() of callback {self._label()} was called inside the body of step {in_step!r}. "
                "A step cannot wait for a callback; call result() in the handler or in a child context "
                "(`with ctx.child('name') as c:`).")
        op = rt.state.get(self._op_id) or {}
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
        raise rt.suspend(f"callback {self._label()} waits for its answer")

    def _decode(self, payload: Optional[str]) -> Any:
        if self._serdes is not None:
            return deserialize_value(self._serdes, payload, self._ctx._serdes_ctx(self._op_id))
        return decode_plain_json(payload, f"the result of callback {self._label()}")


def create_callback(ctx: Any, name: Optional[str] = None, config: Optional[CallbackConfig] = None) -> Callback:
    """CALLBACK START (awaited); the service's answer carries the CallbackId.

    Never raises for the callback's outcome (that is ``result()``'s job); only bad input
    (ValidationError) or a service that returned no CallbackId raise here.
    """
    cfg = _DEFAULT_CONFIG if config is None else config
    if not isinstance(cfg, CallbackConfig):
        raise ValidationError(f"create_callback config must be a CallbackConfig, got {type(cfg).__name__}")
    options = _callback_options(cfg)
    rt = ctx._rt
    was_replaying = rt.state.replaying
    op_id, op = ctx._begin(wire.CALLBACK, wire.SubType.CALLBACK, name, f"ctx.create_callback({name!r})")
    if op is None:
        fields: dict[str, Any] = {"CallbackOptions": options} if options else {}
        ctx._checkpoint(op_id, wire.CALLBACK, wire.SubType.CALLBACK, name, wire.START, wait=True, **fields)
        op = rt.state.get(op_id)
    elif op.get("Status") == wire.STARTED:
        # Creating a callback does not suspend: code after it already ran in an earlier
        # invocation, so an open callback does not end the replay (unlike a pending wait).
        rt.state.replaying = was_replaying
    callback_id = ((op or {}).get("CallbackDetails") or {}).get("CallbackId")
    if not callback_id:
        raise CheckpointError(
            f"the service returned no CallbackId for callback {name or op_id}: the CALLBACK START checkpoint's "
            "NewExecutionState must include the operation with CallbackDetails.CallbackId")
    return Callback(ctx, op_id, name, callback_id, cfg.serdes)


def wait_for_callback(ctx: Any, submitter: Callable[[str, Any], Any], name: Optional[str] = None,
                      config: Optional[WaitForCallbackConfig] = None) -> Any:
    """Create a callback, run ``submitter(callback_id, step_ctx)`` as a step, return the answer.

    All of it runs in a child context (SubType WaitForCallback). The submitter step is
    retried by ``config.retry_strategy``; when it fails for good, CallbackSubmitterError.
    The callback's failure / timeout raise CallbackError / CallbackTimeoutError, on the
    first run and on replay alike.
    """
    from .context import callable_name  # context imports this module lazily

    if not callable(submitter):
        raise ValidationError(f"wait_for_callback needs a callable submitter(callback_id, ctx), got "
                              f"{type(submitter).__name__}")
    cfg = WaitForCallbackConfig() if config is None else config
    if not isinstance(cfg, CallbackConfig):
        raise ValidationError(f"wait_for_callback config must be a WaitForCallbackConfig, got {type(cfg).__name__}")
    _callback_options(cfg)  # validate before anything is checkpointed
    if name is None:
        name = callable_name(submitter)
    prefix = f"{name} " if name else ""
    callback_config = CallbackConfig(timeout=cfg.timeout, heartbeat_timeout=cfg.heartbeat_timeout, serdes=cfg.serdes)
    step_config = StepConfig(retry_strategy=getattr(cfg, "retry_strategy", None))

    def body(child: Any) -> Any:
        callback = create_callback(child, f"{prefix}create callback id", callback_config)

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

    try:
        return ctx._run_child(body, name, ChildConfig(serdes=cfg.serdes), wire.SubType.WAIT_FOR_CALLBACK)
    except ChildContextError as exc:
        raise callback_error(exc.to_error_object()) from (exc.__cause__ or exc)
