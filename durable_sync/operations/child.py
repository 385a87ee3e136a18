"""Child contexts: ``ctx.run_in_child_context(fn)`` and ``with ctx.child("name") as c:``.

A child context is a CONTEXT whose operations are numbered under its own id.

``run_child`` is the protocol every function-bodied child shares (run_in_child_context,
map items and parallel branches, concurrently units, wait_for_callback): START (not
awaited), run ``fn(child_ctx)``, then SUCCEED with the serialized result (a result over
256 KiB is checkpointed with ReplayChildren and an empty payload: replay re-runs the body,
whose children replay from their own checkpoints) or FAIL, raising ``ChildContextError``.
A completed child returns its stored result (or raises its stored error) without running.

``with ctx.child()`` blocks (and ``with ctx.concurrently()``, which records the same
shape) always complete with ReplayChildren: the ``with`` body runs again on every replay.
``open_block`` / ``finish_block`` are the helpers both share.
"""
from __future__ import annotations

from typing import Any, Callable, Optional

from .. import wire
from ..config import ChildConfig, expect
from ..errors import CheckpointError, ChildContextError, NonDeterminismError, SuspendExecution, error_object
from ..serdes import as_replayed, deserialize_value, serialize_value
from .scope import DEFER, QUEUE, Op, OperationScope, callable_name, raised_as_itself, recorded_error
from .step import bad_callable

__all__ = ["run_in_child_context", "run_child", "ChildBlock", "open_block", "finish_block", "utf8_len"]

_DEFAULT_CONFIG = ChildConfig()


def utf8_len(text: str) -> int:
    """Size of a payload on the wire (limits are in bytes, not characters)."""
    return len(text) if text.isascii() else len(text.encode("utf-8"))


def run_in_child_context(scope: OperationScope, fn: Callable[[Any], Any], name: Optional[str] = None,
                         config: Optional[ChildConfig] = None) -> Any:
    """``ctx.run_in_child_context``: a completed child returns its stored result without running ``fn``."""
    if not callable(fn):
        raise bad_callable("run_in_child_context", fn)
    if name is None:
        name = callable_name(fn)
    cfg = expect(config, ChildConfig, "run_in_child_context", _DEFAULT_CONFIG)
    op = scope.begin(wire.CONTEXT, wire.SubType.RUN_IN_CHILD_CONTEXT, name, f"child context {name!r}")
    return run_child(scope, op, fn, cfg.serdes)


def run_child(scope: OperationScope, op: Op, fn: Callable[[Any], Any], serdes: Any = None) -> Any:
    """The child-context protocol shared by run_in_child_context, map/parallel branches and friends."""
    serdes = serdes or scope.serdes
    sctx = scope.serdes_ctx(op.id, op.name)
    record = op.record
    if record is not None:
        status = record["Status"]
        details = op.details("ContextDetails")
        if status == wire.SUCCEEDED and not details.get("ReplayChildren"):
            return deserialize_value(serdes, details.get("Result"), sctx)
        if status == wire.FAILED:
            raise recorded_error(ChildContextError, details.get("Error"))
    else:
        scope.checkpoint(op, wire.START, QUEUE)
    completed = op.completed
    try:
        value = scope.run_child_body(op, scope.child_scope(op), fn)
        payload = serialize_value(serdes, value, sctx)
    except (SuspendExecution, NonDeterminismError, CheckpointError):
        raise  # changed code / the checkpoint path is not the context's outcome: never recorded, never wrapped
    except Exception as exc:  # noqa: BLE001 - recorded as the context's failure
        err = error_object(exc)
        if not completed:
            scope.checkpoint(op, wire.FAIL, DEFER, Error=err)
        if raised_as_itself(exc):
            raise
        raise ChildContextError.from_error_object(err) from exc
    if not completed:
        if utf8_len(payload) > wire.MAX_CONTEXT_RESULT_BYTES:
            scope.checkpoint(op, wire.SUCCEED, DEFER, Payload="", ContextOptions={"ReplayChildren": True})
        else:
            scope.checkpoint(op, wire.SUCCEED, DEFER, Payload=payload)
    return as_replayed(serdes, value, payload, sctx)


def open_block(scope: OperationScope, name: Optional[str], what: str) -> Op:
    """Begin the CONTEXT of a ``with`` block (``ctx.child`` / ``ctx.concurrently``); START it when new.

    A block is recorded with ReplayChildren, so its body can run again on replay; a context
    completed without them was written by run_in_child_context and cannot be reopened as a block.
    """
    op = scope.begin(wire.CONTEXT, wire.SubType.RUN_IN_CHILD_CONTEXT, name, what)
    if op.record is None:
        scope.checkpoint(op, wire.START, QUEUE)
    elif op.completed and not op.details("ContextDetails").get("ReplayChildren"):
        if op.status == wire.FAILED:
            raise recorded_error(ChildContextError, op.details("ContextDetails").get("Error"))
        raise NonDeterminismError(
            f"child context {name!r} ({op.id}) was recorded by run_in_child_context, but the code now opens it "
            f"with `with {what}`")
    return op


def finish_block(scope: OperationScope, op: Op, error: Optional[BaseException], payload: str = "") -> None:
    """Record the outcome of a block opened by ``open_block`` (nothing for a replayed, completed block)."""
    if op.completed:
        return
    if error is None:
        scope.checkpoint(op, wire.SUCCEED, DEFER, Payload=payload, ContextOptions={"ReplayChildren": True})
    else:
        scope.checkpoint(op, wire.FAIL, DEFER, Error=error_object(error), ContextOptions={"ReplayChildren": True})


class ChildBlock:
    """The context manager behind ``with ctx.child(name) as c:``.

    The block's body always runs, on replay too (its children replay from their
    own checkpoints), so it completes with ReplayChildren=true. Exceptions raised
    in the body propagate unchanged.
    """

    def __init__(self, scope: OperationScope, name: Optional[str], cfg: Optional[ChildConfig]):
        self._scope = scope
        self._name = name
        self._cfg = expect(cfg, ChildConfig, "child", _DEFAULT_CONFIG)
        self.op: Optional[Op] = None
        self._ctx: Any = None

    def __enter__(self) -> Any:
        self.begin()
        return self.open()

    def begin(self) -> Op:
        """Begin the block's operation in the enclosing context (START it when new)."""
        self.op = open_block(self._scope, self._name, f"ctx.child({self._name!r})")
        return self.op

    def open(self) -> Any:
        """Make the block's context (it belongs to the body the current thread runs)."""
        scope = self._scope
        self._ctx = scope.context(scope.open_block(self.op))
        return self._ctx

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> bool:
        scope, op = self._scope, self.op
        scope.close_block(op, exc)
        if op.completed or (exc_type is not None and (not issubclass(exc_type, Exception)
                                                      or issubclass(exc_type, NonDeterminismError))):
            return False  # replayed block, suspension / interpreter exit, or changed code: nothing to record
        if exc is None:
            payload = serialize_value(self._cfg.serdes or scope.serdes, self._ctx.result,
                                      scope.serdes_ctx(op.id, op.name))
            if utf8_len(payload) > wire.MAX_CONTEXT_RESULT_BYTES:
                payload = ""
            finish_block(scope, op, None, payload)
        else:
            finish_block(scope, op, exc)
        return False

    @property
    def context(self) -> Any:
        """The block's DurableContext (None before ``__enter__``)."""
        return self._ctx
