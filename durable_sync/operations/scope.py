"""OperationScope: the one path every durable operation takes.

Every ``DurableContext`` wraps one ``OperationScope``; every operation module
(``step``, ``wait``, ``child``, ``callback``, ``condition``, ``invoke``, ``batch``,
``concurrently``) drives an operation through the scope's public methods only.
Each replay rule lives here, once:

* numbering and ids: the n-th operation of a context gets ``wire.operation_id(context_id, n)``,
  numbered under the scope's lock on the calling thread (ids never depend on thread timing);
  map/parallel branch ``i`` gets ``wire.branch_id(batch_id, i)`` (``begin_at``);
* the nesting guard: no durable operation inside a step body (``check``), none on a context
  closed by an open ``concurrently`` block (``closed_reason``);
* the replay lookup and identity check: the record of the id from earlier invocations must
  have the same Type, SubType and Name, else ``NonDeterminismError``;
* the replay bookkeeping: whether the code is still walking through recorded operations
  (``is_replaying``; muted logs), updated as operations begin;
* the testing hook (``Runtime.operation_hook``) sees every operation the code asks for;
* the checkpoint call: every update an operation writes goes through ``checkpoint``.

The three places instrumentation and checkpoint policy attach to, each exactly one:

(a) **An operation begins** in ``OperationScope._open`` -- live (no record: ``op.record is
    None``) or on replay (``op.record`` is the record from earlier invocations). ``begin``
    (the next operation of a context) and ``begin_at`` (a map/parallel branch) both end there.
(b) **User code of an operation runs** in ``run_step_body`` (each attempt of a step body, each
    wait_for_condition check) and ``run_child_body`` (the body of a child context: a
    ``run_in_child_context`` function, a map item, a parallel branch, a ``concurrently`` unit's
    child, the ``wait_for_callback`` child). A ``with ctx.child()`` / ``with group.child()`` block
    is Python's ``with`` body: it runs between ``open_block`` (which makes its context) and
    ``close_block``.
(c) **An operation's update is checkpointed** in ``checkpoint(op, action, persist, **fields)``;
    ``persist`` says how long it may stay unsaved (``durable_sync.checkpoint``): ``AWAIT`` (the
    caller blocks until it is persisted), ``DEFER`` (persisted before anything could act on it:
    the next step body -- ``run_step_body`` makes sure --, the next awaited update, the end of
    the invocation) or ``QUEUE`` (with the next batch). SPEC §3 "When an update must be persisted".

Operation modules never read ``Runtime`` internals other than through these methods and
the small read-only accessors (``serdes``, ``record``, ``serdes_ctx``, ``suspend``).
"""
from __future__ import annotations

import threading
from typing import Any, Callable, Optional

from .. import wire
from ..checkpoint import AWAIT, DEFER, QUEUE
from ..errors import NestedOperationError, NonDeterminismError, SuspendExecution
from ..serdes import SerDesContext
from ..state import Runtime

__all__ = ["Op", "OperationScope", "callable_name", "AWAIT", "DEFER", "QUEUE"]

_TERMINAL = wire.TERMINAL
# A non-terminal record of these types does not end the replay: a context's body replays its
# children, and creating a callback does not suspend (code after it already ran).
_KEEPS_REPLAYING = frozenset({wire.CONTEXT, wire.CALLBACK})


def callable_name(fn: Any) -> Optional[str]:
    """The Name an operation gets from its function: decorated name, else __name__; lambdas get none."""
    name = getattr(fn, "__durable_name__", None)
    if name:
        return name
    name = getattr(fn, "__name__", None)
    if not name or name == "<lambda>":
        return None
    return name


class Op:
    """One operation as the code asks for it, and its record from earlier invocations (None: new)."""

    __slots__ = ("id", "type", "subtype", "name", "record")

    def __init__(self, op_id: str, op_type: str, subtype: str, name: Optional[str], record: Optional[dict]):
        self.id = op_id
        self.type = op_type
        self.subtype = subtype
        self.name = name
        self.record = record

    @property
    def status(self) -> Optional[str]:
        """The recorded status, None for a new operation."""
        return self.record["Status"] if self.record is not None else None

    @property
    def completed(self) -> bool:
        """Recorded with a terminal status in an earlier invocation."""
        return self.record is not None and self.record["Status"] in _TERMINAL

    def details(self, key: str) -> dict:
        """The recorded ``StepDetails`` / ``ContextDetails`` / ... (empty for a new operation)."""
        return (self.record.get(key) if self.record is not None else None) or {}

    @property
    def label(self) -> str:
        return self.name or self.id

    def __repr__(self) -> str:
        return f"Op({self.type}/{self.subtype} {self.name!r} {self.id[:12]} {self.status})"


class OperationScope:
    """The operations of one context: numbering, guard, replay, hook, checkpoint (see the module docstring).

    ``context_id`` prefixes the ids of the scope's operations; ``parent_id`` is the ParentId
    their updates carry: the same, except for a virtual (FLAT) branch, whose operations name
    the batch as their parent.
    """

    __slots__ = ("rt", "context_id", "parent_id", "name", "_counter", "_lock", "closed_reason")

    def __init__(self, rt: Runtime, context_id: Optional[str] = None, name: Optional[str] = None,
                 parent_id: Optional[str] = None, virtual: bool = False):
        self.rt = rt
        self.context_id = context_id
        self.parent_id = parent_id if virtual else context_id
        self.name = name
        self._counter = 0
        self._lock = threading.Lock()
        self.closed_reason: Optional[str] = None  # set while a concurrently() block owns this context

    # -- small accessors ---------------------------------------------------------------------------
    @property
    def arn(self) -> str:
        return self.rt.arn

    @property
    def serdes(self) -> Any:
        """The handler's serdes (None: the default)."""
        return self.rt.serdes

    def serdes_ctx(self, op_id: str, name: Optional[str] = None) -> SerDesContext:
        """What a SerDes sees; ``name`` lets serialization errors name the operation, not its id."""
        return SerDesContext(op_id, self.rt.arn, name)

    def record(self, op: Op) -> Optional[dict]:
        """The operation's current record (after a checkpoint response merged a newer one)."""
        return self.rt.state.get(op.id)

    def suspend(self, reason: str) -> SuspendExecution:
        """The exception that ends the invocation PENDING (raise it)."""
        return self.rt.suspend(reason)

    @property
    def checkpoint_mode(self) -> Any:
        """The handler's ``CheckpointMode`` (None: AWAITED); a step's config may override it."""
        return self.rt.checkpoint_mode

    @property
    def activity(self) -> Callable[[int], None]:
        """The flusher's ``activity(+1 | -1)``: a thread starts / stops running durable code (pools)."""
        return self.rt.flusher.activity

    def watch_slow_calls(self, grow: Callable[[], None]) -> None:
        """``grow()`` after every slow checkpoint call, until ``unwatch_slow_calls`` (``Flusher.watch_slow_calls``)."""
        self.rt.flusher.watch_slow_calls(grow)

    def unwatch_slow_calls(self, grow: Callable[[], None]) -> None:
        self.rt.flusher.unwatch_slow_calls(grow)

    def suspension_mark(self) -> bool:
        """Whether a suspension was raised so far (map/parallel/concurrently restore it when they absorb one)."""
        return self.rt.suspended

    def restore_suspension(self, mark: bool) -> None:
        """Suspensions raised since ``mark`` were absorbed (a batch decided without its suspended units)."""
        self.rt.restore_suspended(mark)

    def is_replaying(self) -> bool:
        """True while the code walks through operations recorded in earlier invocations."""
        return self.rt.state.replaying

    def describe(self) -> str:
        return f"context {self.name or self.context_id!r}" if self.context_id else "the handler"

    # -- the nesting guard ---------------------------------------------------------------------------
    def check(self, what: str) -> None:
        """Refuse durable work (an operation, waiting for a callback) inside a step body."""
        in_step = getattr(self.rt.local, "step", None)
        if in_step is not None:
            raise NestedOperationError(
                f"{what} was called inside the body of step {in_step!r}. A step is one atomic operation "
                "and cannot run durable operations (steps, waits, child contexts, ...). Group operations "
                "in a child context with ctx.child() -- `with ctx.child('name') as c:` -- or "
                "ctx.run_in_child_context(fn) instead.")

    # -- (a) an operation begins ---------------------------------------------------------------------
    def begin(self, op_type: str, subtype: str, name: Optional[str], what: str) -> Op:
        """The next operation of this context: guard, number, look up, check identity, hook."""
        self.check(what)
        if self.closed_reason is not None:
            raise NestedOperationError(self.closed_reason)
        if name is not None:
            wire.validate_name(name)
        with self._lock:
            self._counter += 1
            n = self._counter
        return self._open(wire.operation_id(self.context_id, n), n, op_type, subtype, name, what)

    def begin_at(self, index: int, op_type: str, subtype: str, name: Optional[str], what: str,
                 recorded_only: bool = False) -> Optional[Op]:
        """Branch ``index`` (0-based) of this batch context; the batch validated the names.

        ``recorded_only``: begin it only if it has a record (else return None, nothing seen): a
        batch answers its recorded branches up front and begins the others when they start.
        """
        op_id = wire.branch_id(self.context_id, index)
        if recorded_only and self.rt.state.get(op_id) is None:
            return None
        return self._open(op_id, index + 1, op_type, subtype, name, what)

    def _open(self, op_id: str, position: int, op_type: str, subtype: str, name: Optional[str], what: str) -> Op:
        rt = self.rt
        state = rt.state
        record = state.get(op_id)
        hook = rt.operation_hook
        cut = hook is not None and hook({"Id": op_id, "ParentId": self.parent_id, "Position": position,
                                         "Type": op_type, "SubType": subtype, "Name": name}, record)
        if record is None:
            state.replaying = False
        else:
            if record.get("Type") != op_type or record.get("SubType") != subtype or record.get("Name") != name:
                raise NonDeterminismError(
                    f"non-deterministic replay at {what} (operation #{position} of {self.describe()}, id {op_id}): "
                    f"the code now asks for {op_type}/{subtype} named {name!r}, but the execution recorded "
                    f"{record.get('Type')}/{record.get('SubType')} named {record.get('Name')!r}. Durable code must "
                    "call the same operations in the same order on every invocation; keep the old code path for "
                    "running executions or start a new execution.")
            if record.get("Status") in _TERMINAL:
                state.visit(op_id)
            elif op_type not in _KEEPS_REPLAYING:
                state.replaying = False
        if cut:
            raise rt.suspend(f"{what}: invocation ended by the operation hook")
        return Op(op_id, op_type, subtype, name, record)

    # -- (b) user code of an operation runs -------------------------------------------------------------
    def run_step_body(self, op: Op, fn: Callable[..., Any], *args: Any) -> Any:
        """Call a step-like body (a step attempt, a wait_for_condition check) on this thread.

        Durable operations inside it are refused (``check``), and the thread does not count as
        running durable code meanwhile: a body may block on I/O, and batching must not wait for it.
        """
        rt = self.rt
        rt.flusher.persist_deferred()  # the body may act on any result before it: those are saved first
        local = rt.local
        local.step = op.name or op.id
        rt.flusher.activity(-1)
        try:
            return fn(*args)
        finally:
            local.step = None
            rt.flusher.activity(1)

    def child_scope(self, op: Op) -> "OperationScope":
        """The scope of the child context ``op`` opens (its operations are numbered under ``op.id``)."""
        return OperationScope(self.rt, op.id, op.name)

    def virtual_scope(self, branch_id: str, name: Optional[str]) -> "OperationScope":
        """A FLAT branch: ids derive from ``branch_id``, updates name this (batch) context as parent."""
        return OperationScope(self.rt, branch_id, name, parent_id=self.context_id, virtual=True)

    def context(self, scope: "OperationScope") -> Any:
        """The DurableContext user code receives for ``scope``."""
        return self.rt.context_factory(scope)

    def run_child_body(self, op: Optional[Op], child: "OperationScope", fn: Callable[[Any], Any]) -> Any:
        """Run ``fn(child_ctx)``: the body of child context ``op`` (None: a FLAT branch) in scope ``child``."""
        return fn(self.rt.context_factory(child))

    def open_block(self, op: Op) -> "OperationScope":
        """Start the body of a ``with`` block (``ctx.child``, ``ctx.concurrently``): returns its scope."""
        return self.child_scope(op)

    def close_block(self, op: Op, error: Optional[BaseException]) -> None:
        """The body of a ``with`` block opened by ``open_block`` ended (``error``: what it raised, if anything)."""

    def run_unit(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run a unit of this (group) context on the current thread -- a pool thread, or a thread that
        waits for the unit and runs it itself: the unit's operations belong to it, not to a step body
        the thread may be in."""
        local = self.rt.local
        in_step = getattr(local, "step", None)
        local.step = None
        try:
            return fn(*args)
        finally:
            local.step = in_step

    # -- (c) an update is checkpointed ------------------------------------------------------------------
    def checkpoint(self, op: Op, action: str, persist: str, **fields: Any) -> None:
        """Queue ``action`` for ``op``; ``persist``: AWAIT (return once it is persisted), DEFER or QUEUE."""
        update = {"Id": op.id, "Type": op.type, "SubType": op.subtype, "Action": action}
        if self.parent_id is not None:
            update["ParentId"] = self.parent_id
        if op.name is not None:
            update["Name"] = op.name
        if fields:
            update.update(fields)
        self.rt.flusher.enqueue(update, persist, shape_checked=True)
