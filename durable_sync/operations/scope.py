"""OperationScope: the one path every durable operation takes.

Every ``DurableContext`` wraps one ``OperationScope``; every operation module
(``step``, ``wait``, ``child``, ``callback``, ``condition``, ``invoke``, ``batch``,
``concurrently``) drives an operation through the scope's public methods only.
Each replay rule lives here, once:

* numbering and ids: the n-th operation of a context gets ``wire.operation_id(context_id, n)``,
  numbered by the one thread that runs the context's body (the guard refuses any other), so ids
  never depend on thread timing;
  map/parallel branch ``i`` gets ``wire.branch_id(batch_id, i)`` (``begin_at``);
* the thread rule and the nesting guard (``check``): a context is used only by the *body* that
  owns it -- the handler, a map item, a parallel branch, a ``concurrently`` unit, each on the
  thread running it (a ``with ctx.child()`` block belongs to the body that opened it) -- and never
  inside a step body; a context closed by an open ``concurrently`` block refuses operations
  (``closed_reason``). Each thread notes the body it runs (``Runtime.local.body``); a scope
  remembers the body it was created in, so a refusal never depends on which thread a pool picks;
* the replay lookup and identity check: the record of the id from earlier invocations must
  have the same Type, SubType and Name, else ``NonDeterminismError``;
* the replay status, per context (``is_replaying``; muted logs): a context replays while the
  code walks through operations it recorded in earlier invocations. It stops at a new operation,
  at an unfinished step (its body runs now), and right after the last recorded operation of the
  context (look-ahead: the next id has no record). A child context starts replaying when its
  operation has a record and its first operation too;
* the exception a recorded failure raises (``recorded_error``): the same class as on the first run;
* the testing hook (``Runtime.operation_hook``) sees every operation the code asks for;
* the checkpoint call: every update an operation writes goes through ``checkpoint``; a result
  over the service's payload limit fails the operation (FAIL, ``SerDesError``) instead.

The three places instrumentation and checkpoint policy attach to, each exactly one:

(a) **An operation begins** in ``OperationScope._open`` -- live (no record: ``op.record is
    None``) or on replay (``op.record`` is the record from earlier invocations). ``begin``
    (the next operation of a context) and ``begin_at`` (a map/parallel branch) both end there.
(b) **User code of an operation runs** in ``run_step_body`` (each attempt of a step body, each
    wait_for_condition check) and ``run_child_body`` (the body of a child context: a
    ``run_in_child_context`` function, a map item, a parallel branch, a ``concurrently`` unit's
    child, the ``wait_for_callback`` child). A ``with ctx.child()`` / ``with group.child()`` block
    is Python's ``with`` body: it runs between ``open_block`` (which makes its scope) and
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

from typing import Any, Callable, Optional

from .. import wire
from ..checkpoint import AWAIT, DEFER, QUEUE
from ..errors import (DurableOperationError, NestedOperationError, NonDeterminismError, SerDesError,
                      SuspendExecution, ValidationError, error_object)
from ..serdes import SerDesContext
from ..state import Runtime

__all__ = ["Op", "OperationScope", "Body", "callable_name", "decorated_name", "recorded_error", "raised_as_itself",
           "AWAIT", "DEFER", "QUEUE"]

_TERMINAL = wire.TERMINAL
# A non-terminal record of these types is not the end of the replay: a context's body replays its
# children, and creating a callback does not suspend (code after it may have run already).
_KEEPS_REPLAYING = frozenset({wire.CONTEXT, wire.CALLBACK})
_PAYLOAD_ACTIONS = frozenset({wire.SUCCEED, wire.RETRY})

#: Programming errors every operation raises as themselves, never retried and never wrapped in its
#: DurableOperationError: on the first run and, from the recorded ErrorType, on every replay.
_RAISED_AS_THEMSELVES = (SerDesError, NestedOperationError)
_BY_NAME = {cls.__name__: cls for cls in _RAISED_AS_THEMSELVES}


def raised_as_itself(exc: BaseException) -> bool:
    """A programming error the operation records as its failure and raises unchanged (not retried)."""
    return type(exc) in _RAISED_AS_THEMSELVES  # the exact class: replay finds it by its ErrorType


def recorded_error(error_cls: type, err: Optional[dict]) -> Exception:
    """The exception a recorded failure raises: ``error_cls`` (the operation's error class), or the
    programming error the first run raised as itself (``raised_as_itself``)."""
    err = err or {}
    itself = _BY_NAME.get(err.get("ErrorType") or "")
    if itself is not None:
        return itself(err.get("ErrorMessage") or err.get("ErrorType"))
    if issubclass(error_cls, DurableOperationError):
        return error_cls.from_error_object(err)
    return error_cls(err.get("ErrorMessage") or "the operation failed")

_TERMINAL_ACTIONS = frozenset({wire.SUCCEED, wire.FAIL})


def _ended_by(exc: BaseException) -> tuple[Optional[dict], Optional[str]]:
    """(error, outcome) for instrumentation of user code that raised ``exc``: a suspension is INCOMPLETE."""
    if isinstance(exc, SuspendExecution):
        return None, "INCOMPLETE"
    return error_object(exc), None


def decorated_name(fn: Any) -> Optional[str]:
    """The name a decorator (``durable_step``, ``durable_with_child_context``) gave ``fn``, else None.

    The only name the official SDK takes from a function (its ``_original_name``; accepted too).
    """
    for attribute in ("__durable_name__", "_original_name"):
        name = getattr(fn, attribute, None)
        if name and isinstance(name, str):
            return name
    return None


def callable_name(fn: Any) -> Optional[str]:
    """The Name an operation gets from its function: decorated name, else __name__; lambdas get none."""
    name = decorated_name(fn)
    if name:
        return name
    name = getattr(fn, "__name__", None)
    if not name or name == "<lambda>":
        return None
    return name


class Body:
    """A body of user code that owns contexts: the handler, a map item, a parallel branch, a unit.

    ``owner`` is the object that runs it and ``key`` which of its units it is; ``describe()`` gives
    ``(label, context)`` -- what it is ("map item 2 of ctx.map('orders')") and how its own context
    reaches it -- from ``owner.describe_unit(key)``, only when a refusal needs the words.
    """

    __slots__ = ("owner", "key")

    def __init__(self, owner: Any, key: Any = None):
        self.owner = owner
        self.key = key

    def describe(self) -> tuple[str, str]:
        return self.owner.describe_unit(self.key)


class _Handler:
    """The owner of the handler's body."""

    @staticmethod
    def describe_unit(key: Any) -> tuple[str, str]:
        return "the handler", "the handler's `ctx`"


_HANDLER = _Handler()


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
    the batch as their parent. ``body`` is the body of user code the context belongs to.
    """

    __slots__ = ("rt", "context_id", "parent_id", "name", "body", "replaying", "closed_reason", "_counter",
                 "_peek")

    def __init__(self, rt: Runtime, context_id: Optional[str] = None, name: Optional[str] = None,
                 parent_id: Optional[str] = None, virtual: bool = False, replaying: bool = False):
        self.rt = rt
        self.context_id = context_id
        self.parent_id = parent_id if virtual else context_id
        self.name = name
        self.body: Optional[Body] = getattr(rt.local, "body", None)  # created on the thread running its body
        self.closed_reason: Optional[str] = None  # set while a concurrently() block owns this context
        self._counter = 0  # only the thread running ``body`` numbers operations (``begin`` checks it first)
        self._peek: Optional[tuple[int, str]] = None  # (n, id) of the next operation, computed by a look-ahead
        self.replaying = replaying and self._recorded(1)

    @classmethod
    def root(cls, rt: Runtime) -> "OperationScope":
        """The handler's scope; the calling thread runs the handler's body."""
        rt.local.body = Body(_HANDLER)
        return cls(rt, replaying=True)

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
        """True while this context walks through operations it recorded in earlier invocations."""
        return self.replaying

    def describe(self) -> str:
        return f"context {self.name or self.context_id!r}" if self.context_id else "the handler's context"

    # -- the thread rule and the nesting guard ---------------------------------------------------------
    def body_here(self) -> Any:
        """What the current thread runs: a ``Body``, the ``Op`` of a step body, or None (a foreign thread)."""
        return getattr(self.rt.local, "body", None)

    def check(self, what: str) -> None:
        """Refuse durable work outside the body this context belongs to (``begin`` does this too)."""
        here = getattr(self.rt.local, "body", None)
        if here is not self.body:
            raise self._refusal(here, what)

    def check_thread(self, what: str) -> None:
        """Refuse waiting durably (``Callback.result()``) inside a step body or on a foreign thread."""
        here = getattr(self.rt.local, "body", None)
        if here is None or isinstance(here, Op):
            raise self._refusal(here, what)

    def _refusal(self, here: Any, what: str) -> NestedOperationError:
        if isinstance(here, Op):
            return NestedOperationError(
                f"{what} was called inside the body of step {here.label!r}. A step is one atomic operation "
                "and cannot run durable operations (steps, waits, child contexts, ...). Group operations "
                "in a child context with ctx.child() -- `with ctx.child('name') as c:` -- or "
                "ctx.run_in_child_context(fn) instead.")
        if self.closed_reason is not None:
            return NestedOperationError(self.closed_reason)
        if here is None:
            return NestedOperationError(
                f"{what} was called from a thread durable_sync did not start (one the handler or a step body "
                f"started itself). A context may be used only from the thread that runs its body: run "
                "concurrent durable work with ctx.map / ctx.parallel or `with ctx.concurrently() as group:`.")
        owner = self.body.describe()[0] if self.body is not None else "another body"
        label, context = here.describe()
        return NestedOperationError(
            f"{what} was called on {self.describe()} (which belongs to {owner}) from {label}: each map "
            f"item, parallel branch and concurrently unit has a context of its own -- use {context}, "
            "the context it receives, not an enclosing one.")

    # -- (a) an operation begins ---------------------------------------------------------------------
    def begin(self, op_type: str, subtype: str, name: Optional[str], what: str) -> Op:
        """The next operation of this context: guard, number, look up, check identity, hook, replay status."""
        here = getattr(self.rt.local, "body", None)
        if here is not self.body or self.closed_reason is not None:
            raise self._refusal(here, what)
        if name is not None:
            wire.validate_name(name)
        n = self._counter = self._counter + 1
        peek = self._peek
        op_id = peek[1] if peek is not None and peek[0] == n else wire.operation_id(self.context_id, n)
        op = self._open(op_id, n, op_type, subtype, name, what)
        if self.replaying:
            self._track(op, n)
        return op

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
        record = rt.state.get(op_id)
        hook = rt.operation_hook
        cut = hook is not None and hook({"Id": op_id, "ParentId": self.parent_id, "Position": position,
                                         "Type": op_type, "SubType": subtype, "Name": name}, record)
        if record is not None and (record.get("Type") != op_type or record.get("SubType") != subtype
                                   or record.get("Name") != name):
            raise NonDeterminismError(
                f"non-deterministic replay at {what} (operation #{position} of {self.describe()}, id {op_id}): "
                f"the code now asks for {op_type}/{subtype} named {name!r}, but the execution recorded "
                f"{record.get('Type')}/{record.get('SubType')} named {record.get('Name')!r}. Durable code must "
                "call the same operations in the same order on every invocation; keep the old code path for "
                "running executions or start a new execution.")
        if cut:
            raise rt.suspend(f"{what}: invocation ended by the operation hook")
        if rt.instrumentation is not None:
            rt.instrumentation.begin(op_id, op_type, subtype, name, self.parent_id, record)
        return Op(op_id, op_type, subtype, name, record)

    def _track(self, op: Op, n: int) -> None:
        """(while replaying, on the context's own thread) Does the replay of this context end here?"""
        record = op.record
        if record is None or (record["Status"] not in _TERMINAL and op.type not in _KEEPS_REPLAYING):
            self.replaying = False  # new code, or an unfinished step whose body runs now
            return
        nxt = wire.operation_id(self.context_id, n + 1)
        self._peek = (n + 1, nxt)
        if self.rt.state.get(nxt) is None:
            self.replaying = False  # the last recorded operation of this context: what follows is new

    def _recorded(self, n: int) -> bool:
        """Whether this context's ``n``-th operation has a record (remembers its id for ``begin``)."""
        op_id = wire.operation_id(self.context_id, n)
        self._peek = (n, op_id)
        return self.rt.state.get(op_id) is not None

    # -- (b) user code of an operation runs -------------------------------------------------------------
    def run_step_body(self, op: Op, fn: Callable[..., Any], *args: Any, attempt: int) -> Any:
        """Call a step-like body (attempt ``attempt`` of a step, a wait_for_condition check) on this thread.

        Durable operations inside it are refused (``check``: the thread runs the step's body), and
        the thread does not count as running durable code meanwhile: a body may block on I/O, and
        batching must not wait for it.
        """
        rt = self.rt
        flusher = rt.flusher
        # The body may act on any result before it: those are saved first; then this thread waits in user
        # code, not in durable code.
        flusher.persist_deferred(then_idle=True)
        local = rt.local
        instr = rt.instrumentation
        body = getattr(local, "body", None)
        try:
            run = instr.user_function_start(op.id, op.type, op.subtype, op.name, self.parent_id, op.record,
                                            attempt) if instr is not None else None
            local.body = op
            try:
                result = fn(*args)
            except BaseException as exc:
                if run is not None:
                    instr.user_function_end(run, *_ended_by(exc))
                raise
        finally:
            local.body = body
            flusher.activity(1)
        if run is not None:
            instr.user_function_end(run, None)
        return result

    def child_scope(self, op: Op) -> "OperationScope":
        """The scope of the child context ``op`` opens (its operations are numbered under ``op.id``)."""
        return OperationScope(self.rt, op.id, op.name, replaying=op.record is not None)

    def virtual_scope(self, branch_id: str, name: Optional[str]) -> "OperationScope":
        """A FLAT branch: ids derive from ``branch_id``, updates name this (batch) context as parent."""
        return OperationScope(self.rt, branch_id, name, parent_id=self.context_id, virtual=True, replaying=True)

    def context(self, scope: "OperationScope") -> Any:
        """The DurableContext user code receives for ``scope``."""
        return self.rt.context_factory(scope)

    def run_child_body(self, op: Optional[Op], child: "OperationScope", fn: Callable[[Any], Any]) -> Any:
        """Run ``fn(child_ctx)``: the body of child context ``op`` (None: a FLAT branch) in scope ``child``."""
        instr = self.rt.instrumentation
        run = (instr.user_function_start(op.id, op.type, op.subtype, op.name, self.parent_id, op.record)
               if instr is not None and op is not None else None)
        try:  # one path with and without plugins: the same frames in a failure's stack trace
            result = fn(self.rt.context_factory(child))
        except BaseException as exc:
            if run is not None:
                instr.user_function_end(run, *_ended_by(exc))
            raise
        if run is not None:
            instr.user_function_end(run, None)
        return result

    def open_block(self, op: Op) -> "OperationScope":
        """Start the body of a ``with`` block (``ctx.child``, ``ctx.concurrently``): returns its scope."""
        instr = self.rt.instrumentation
        if instr is not None:  # blocks nest on their thread: their runs are a per-thread stack
            local = self.rt.local
            if not hasattr(local, "blocks"):
                local.blocks = []
            local.blocks.append(instr.user_function_start(op.id, op.type, op.subtype, op.name, self.parent_id,
                                                          op.record))
        return self.child_scope(op)

    def close_block(self, op: Op, error: Optional[BaseException]) -> None:
        """The body of a ``with`` block opened by ``open_block`` ended (``error``: what it raised, if anything)."""
        instr = self.rt.instrumentation
        if instr is not None:
            run = self.rt.local.blocks.pop()
            if error is None:
                instr.user_function_end(run, None)
            else:
                instr.user_function_end(run, *_ended_by(error))

    # -- units: bodies of their own -------------------------------------------------------------------------
    def enter_unit(self, owner: Any, key: Any = None) -> Any:
        """The current thread starts the body of a unit (map item, branch, concurrently unit) of
        ``owner`` (which has ``describe_unit(key) -> (label, context)``); returns what the thread ran
        before, for ``leave_unit``. Contexts created from now on belong to the unit."""
        local = self.rt.local
        before = getattr(local, "body", None)
        local.body = Body(owner, key)
        return before

    def leave_unit(self, before: Any) -> None:
        self.rt.local.body = before

    def run_unit(self, owner: Any, key: Any, fn: Callable[..., Any], *args: Any) -> Any:
        """Run ``fn(*args)`` as the body of unit ``key`` of ``owner`` on the current thread (a pool
        thread, or a thread that waits for the unit and runs it itself): its operations belong to it."""
        before = self.enter_unit(owner, key)
        try:
            return fn(*args)
        finally:
            self.leave_unit(before)

    # -- (c) an update is checkpointed ------------------------------------------------------------------
    def checkpoint(self, op: Op, action: str, persist: str, **fields: Any) -> None:
        """Queue ``action`` for ``op``; ``persist``: AWAIT (return once it is persisted), DEFER or QUEUE.

        A SUCCEED / RETRY whose Payload is over the service's limit is refused by the checkpoint
        path before it is queued; the operation then FAILs with a ``SerDesError`` saying so (raised).
        """
        update = {"Id": op.id, "Type": op.type, "SubType": op.subtype, "Action": action, **fields}
        if self.parent_id is not None:
            update["ParentId"] = self.parent_id
        if op.name is not None:
            update["Name"] = op.name
        rt = self.rt
        instr = rt.instrumentation
        if instr is not None and persist == DEFER and action in _TERMINAL_ACTIONS:
            # Plugins see an operation's end with the service's record (its timestamps, its result),
            # so with plugins registered a deferred end is awaited: one round trip per end.
            persist = AWAIT
        try:
            rt.flusher.enqueue(update, persist, shape_checked=True)
        except ValidationError as exc:
            if action not in _PAYLOAD_ACTIONS or "Payload" not in fields:
                raise
            error = SerDesError(f"the result of {op.type.lower()} {op.label!r} cannot be checkpointed: {exc}")
            self.checkpoint(op, wire.FAIL, DEFER, Error=error_object(error))
            raise error from None
        if instr is not None:
            if action in _TERMINAL_ACTIONS:
                instr.ended(update, rt.state.get(op.id))
            instr.deliver_changes()
