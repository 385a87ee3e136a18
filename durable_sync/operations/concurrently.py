"""``with ctx.concurrently("name") as group:``: blocking steps that run in parallel.

::

    with ctx.concurrently("enrich", max_concurrency=4) as group:
        profile = group.step("profile", lambda s: fetch_profile(uid))      # a DurableFuture, at once
        orders = group.step("orders", lambda s: fetch_orders(uid))
        with group.child("risk") as c:     # a child context whose body runs here, inline
            c.step("score", ...)
    send_summary(profile.result(), orders.result())

Wire shape. The group is a CONTEXT with SubType ``RunInChildContext`` in the calling
context, exactly what ``with ctx.child(name)`` writes: START (async), then SUCCEED
(Payload: a small JSON summary) or FAIL (Error: the error the block raised), always with
ReplayChildren=true, because the block's body runs again on replay to re-create its
futures. Its *units* are ordinary operations of the group's context, numbered 1, 2, ...
in submission order: ``group.step`` is a STEP/Step, ``group.run_in_child_context`` and
``group.child`` are CONTEXT/RunInChildContext. A history written by ``concurrently`` is
therefore the history of the sequential program ``with ctx.child(name) as c: c.step(...)
...``: the service (and the local engine) accepts and replays it like any other context;
only the operations' times overlap.

Units. ``group.step(...)`` (the call shapes of ``ctx.step``) and
``group.run_in_child_context(fn, name, config)`` number the unit on the calling thread
(ids never depend on thread scheduling), then queue it on the group's pool
(``durable_sync.pool``, the scheduler map/parallel use) and return a ``DurableFuture``
at once. A unit that completed in an earlier invocation is answered from its checkpoint
at submission: no thread, no slot, its body does not run. ``with group.child(name) as c:``
is a unit too, but its body is the ``with`` body, which Python runs on the caller's
thread: it starts once the units queued before it have started and a slot is free, runs
inline while the pool units keep running, and blocks the caller like ``ctx.child``;
exceptions and suspensions in it propagate out of it unchanged. ``.future`` on the
object ``group.child()`` returns is its DurableFuture.

Scheduling. ``max_concurrency`` bounds the units in flight (inline child included;
a suspended unit keeps its slot until the invocation ends, as in map/parallel); beyond
it units queue in submission order. At most ``max_concurrency`` pool threads run them
(without it, ``INITIAL_THREADS``, growing to ``DEFAULT_MAX_THREADS`` while checkpoint calls
are slow: ``durable_sync.pool``). A thread that holds a slot (a unit's
body, an inline child's body) and waits on a sibling's future that has not started
runs that sibling itself, so waiting never deadlocks the bound.

Leaving the block (by any path) waits for every unit; the caller's thread helps run the
queued ones, and every pool thread is joined before the block ends. Then, in order:
a fatal error (a ``CheckpointError``, ``NonDeterminismError``, interpreter exit) in the
body or a unit is raised as is, nothing recorded; else if the body suspended or a unit
is suspended (or could not start because every slot is held by suspended units), the
invocation suspends (replay answers completed units from their checkpoints and resumes
the others); else if a unit failed, the first failed unit's error in submission order is
raised (``StepError`` for steps, ``ChildContextError`` for ``run_in_child_context``, the
body's own exception for ``with group.child()``) with every other failure attached as
a note (``add_note``), and the group is checkpointed FAILED; an exception raised by the
block's own code that is no unit's failure is raised as is, with the unit failures as
notes. Otherwise the group SUCCEEDs.

Misuse raises ``NestedOperationError``: a durable operation on the parent context while
the block is open (``OperationScope.closed_reason``), group operations after the block
closed, from another thread (a unit's body), or inside ``with group.child() as c:``
(use ``c``).
"""
from __future__ import annotations

import functools
import json
import threading
import time
from typing import Any, Callable, Optional

from .. import wire
from ..config import ChildConfig, expect
from ..errors import NestedOperationError, SuspendExecution, ValidationError
from ..pool import ERR, FATAL, OK, SUSPEND, UnitPool, classify, outcome_of, pool_threads
from ..serdes import as_replayed, serialize_value
from .calls import either
from .child import ChildBlock, finish_block, open_block, run_child
from .scope import Body, Op, OperationScope, callable_name
from .step import bad_callable, parse_step_call, run_step

__all__ = ["ConcurrentGroup", "DurableFuture", "GroupChildBlock"]

_DEFAULT_CHILD_CONFIG = ChildConfig()

# States of a unit.
_QUEUED, _RUNNING = "QUEUED", "RUNNING"
_SUCCEEDED, _FAILED, _SUSPENDED, _FATAL, _CANCELLED = "SUCCEEDED", "FAILED", "SUSPENDED", "FATAL", "CANCELLED"
_SETTLED_BY_KIND = {OK: _SUCCEEDED, ERR: _FAILED, SUSPEND: _SUSPENDED, FATAL: _FATAL}
_WAITING = frozenset({_QUEUED, _RUNNING})


class DurableFuture:
    """The outcome of one unit of a ``ctx.concurrently()`` group.

    ``result(timeout=None)`` blocks until the unit finished and returns its result (after
    a serdes round trip, as every operation) or raises its error; ``exception()`` returns
    the error instead; ``done()`` says whether it finished. A unit that suspended (a wait,
    a retry back-off, a callback) has no outcome in this invocation: ``result()`` then
    raises the SDK's ``SuspendExecution``, which ends the invocation (let it propagate);
    on replay the unit resumes. ``timeout`` is in real seconds; on expiry
    ``TimeoutError`` is raised. After the block, every future is done.
    """

    __slots__ = ("_group", "index", "kind", "name", "operation_id", "_run", "_state", "_value", "_error", "_runner")

    def __init__(self, group: "ConcurrentGroup", index: int, kind: str, name: Optional[str],
                 operation_id: Optional[str], run: Optional[Callable[[], Any]]):
        self._group = group
        self.index = index            # 1-based position in the group, in submission order
        self.kind = kind              # "step" or "child"
        self.name = name
        self.operation_id = operation_id
        self._run = run
        self._state = _QUEUED
        self._value: Any = None
        self._error: Optional[BaseException] = None
        self._runner: Optional[int] = None  # the thread running the unit

    def done(self) -> bool:
        """True once the unit succeeded or failed (a suspended unit is not done)."""
        return self._state in (_SUCCEEDED, _FAILED, _FATAL, _CANCELLED)

    def result(self, timeout: Optional[float] = None) -> Any:
        """The unit's result; raises its error (StepError, ChildContextError, ...) if it failed."""
        self._group._await(self, timeout)
        if self._state == _SUCCEEDED:
            return self._value
        if self._state == _SUSPENDED:
            raise self._group._parent.suspend(f"{self._label()} is suspended; it resumes on a later invocation")
        raise self._error  # type: ignore[misc]

    def exception(self, timeout: Optional[float] = None) -> Optional[BaseException]:
        """The unit's error, or None if it succeeded (blocks like ``result``)."""
        self._group._await(self, timeout)
        if self._state == _SUCCEEDED:
            return None
        if self._state == _SUSPENDED:
            raise self._group._parent.suspend(f"{self._label()} is suspended; it resumes on a later invocation")
        return self._error

    def _label(self) -> str:
        what = f"{self.kind} {self.name!r}" if self.name else self.kind
        return f"unit #{self.index} ({what}) of {self._group._label()}"

    def __repr__(self) -> str:
        return f"<DurableFuture #{self.index} {self.kind} {self.name!r} {self._state}>"


class ConcurrentGroup:
    """``with ctx.concurrently(name, max_concurrency) as group:`` (see the module docstring)."""

    def __init__(self, parent: OperationScope, name: Optional[str] = None, max_concurrency: Optional[int] = None):
        mc = max_concurrency
        if mc is not None and (isinstance(mc, bool) or not isinstance(mc, int) or mc < 1):
            raise ValidationError(f"concurrently: max_concurrency must be a positive integer (or None for no "
                                  f"limit), got {mc!r}")
        wire.validate_name(name)
        self._parent = parent
        self.name = name
        self.max_concurrency = mc
        self._state = "new"  # new -> open -> closed
        self._op: Optional[Op] = None
        self._scope: Optional[OperationScope] = None  # the group context's scope: units are its operations
        self._pool: Optional[UnitPool] = None
        self._growing = False  # the pool grows while checkpoint calls are slow (no max_concurrency)
        self._units: list[DurableFuture] = []
        self._fatal: Optional[BaseException] = None
        self._was_suspended = False
        self._prev_reason: Optional[str] = None

    # -- accessors -------------------------------------------------------------------------------
    @property
    def context_id(self) -> Optional[str]:
        """The group context's operation id (None before the block is entered)."""
        return self._scope.context_id if self._scope is not None else None

    @property
    def futures(self) -> list[DurableFuture]:
        """The units submitted so far, in submission order."""
        return list(self._units)

    def _label(self) -> str:
        return f"concurrently({self.name!r})" if self.name else f"concurrently({self.context_id})"

    # -- the block -------------------------------------------------------------------------------
    def __enter__(self) -> "ConcurrentGroup":
        if self._state != "new":
            raise NestedOperationError(f"{self._label()} was entered twice; call ctx.concurrently() again for "
                                       "another group")
        parent, name = self._parent, self.name
        what = f"ctx.concurrently({name!r})"
        op = self._op = open_block(parent, name, what)
        self._scope = parent.open_block(op)
        mc = self.max_concurrency
        threads, max_threads = pool_threads(mc)
        self._pool = UnitPool(self._run_unit, self._on_outcome, max_slots=mc, max_threads=max_threads,
                              threads=threads, label=f"durable-concurrently-{op.id[:8]}", on_start=self._on_start,
                              activity=parent.activity)
        self._growing = max_threads > threads  # no max_concurrency: more threads start while checkpoints are slow
        if self._growing:
            parent.watch_slow_calls(self._pool.grow)
        self._was_suspended = parent.suspension_mark()
        self._prev_reason = parent.closed_reason
        parent.closed_reason = (
            f"a durable operation was called on the context that opened `with {what} as group:` while that "
            "block is open: use group.step(...), group.child(...) or group.run_in_child_context(...) inside "
            "`with ctx.concurrently()` (and a unit's own context inside a unit), or move the call after the block")
        self._state = "open"
        return self

    def __exit__(self, exc_type: Any, exc: Optional[BaseException], tb: Any) -> bool:
        pool = self._pool
        assert pool is not None
        if exc is not None and classify(exc) == FATAL:
            with pool.cond:
                self._set_fatal(exc)
        try:
            pool.work()   # the caller's thread helps with the queued units ...
            pool.join()   # ... and no pool thread outlives the block
        finally:
            if self._growing:
                self._parent.unwatch_slow_calls(pool.grow)
            self._parent.closed_reason = self._prev_reason
            self._parent.close_block(self._op, exc)
            self._scope.closed_reason = (
                f"the context of {self._label()} was used after its block closed; open a new "
                "`with ctx.concurrently()` block for more units")
            self._state = "closed"
        return self._finish(exc)

    def _finish(self, exc: Optional[BaseException]) -> bool:
        """Decide what leaving the block means (see the module docstring); False lets ``exc`` propagate."""
        parent, units = self._parent, self._units
        fatal = exc if exc is not None and classify(exc) == FATAL else self._fatal
        if fatal is not None:
            parent.restore_suspension(self._was_suspended)  # the failure is the outcome, not the units' suspensions
            if fatal is exc:
                return False
            raise fatal
        if isinstance(exc, SuspendExecution):
            return False
        waiting = [u for u in units if u._state in (_SUSPENDED, _QUEUED)]
        if waiting:
            done = sum(1 for u in units if u.done())
            raise parent.suspend(f"{self._label()}: {len(waiting)} unit(s) waiting, {done} of {len(units)} completed") \
                from None
        failures = [u for u in units if u._state == _FAILED]
        if exc is not None and not any(u._error is exc for u in failures):
            primary: Optional[BaseException] = exc  # the block's own code failed
        elif failures:
            primary = failures[0]._error
        else:
            primary = None
        if primary is None:
            summary = json.dumps({"type": "Concurrently", "unitCount": len(units)}, separators=(",", ":"))
            finish_block(parent, self._op, None, summary)
            return False
        for unit in failures:
            if unit._error is not primary:
                primary.add_note(f"{unit._label()} also failed: {_describe_error(unit._error)}")
        finish_block(parent, self._op, primary)
        if primary is exc:
            return False
        if exc is not None:
            primary.__suppress_context__ = True  # exc is a later unit's failure, already in the notes
        raise primary

    # -- submitting units ------------------------------------------------------------------------
    def step(self, fn_or_name: Any = None, fn: Any = None, name: Optional[str] = None, config: Any = None, *,
             func: Any = None) -> DurableFuture:
        """Start a step (``step(fn, name=None, config=None)`` or ``step("name", fn, config)``); returns its future."""
        self._check("group.step(...)")
        name, fn, cfg = parse_step_call(either(fn_or_name, func, "fn", "func", "group.step"), fn, name, config)
        scope = self._scope
        op = scope.begin(wire.STEP, wire.SubType.STEP, name, f"group.step({name!r})")
        stored = op.status in (wire.SUCCEEDED, wire.FAILED)
        return self._submit("step", op, functools.partial(run_step, scope, op, fn, cfg), stored)

    def run_in_child_context(self, fn: Optional[Callable[[Any], Any]] = None, name: Optional[str] = None,
                             config: Optional[ChildConfig] = None, *, func: Any = None) -> DurableFuture:
        """Start ``fn(child_ctx)`` as a child context on the pool; returns its future."""
        fn = either(fn, func, "fn", "func", "group.run_in_child_context")
        if name is None and callable(fn):
            name = callable_name(fn)
        what = f"group.run_in_child_context({name!r})"
        self._check(what)
        if not callable(fn):
            raise bad_callable("run_in_child_context", fn)
        cfg = expect(config, ChildConfig, "group.run_in_child_context", _DEFAULT_CHILD_CONFIG)
        scope = self._scope
        op = scope.begin(wire.CONTEXT, wire.SubType.RUN_IN_CHILD_CONTEXT, name, what)
        stored = op.status == wire.FAILED or (
            op.status == wire.SUCCEEDED and not op.details("ContextDetails").get("ReplayChildren"))
        return self._submit("child", op, functools.partial(run_child, scope, op, fn, cfg.serdes), stored)

    def child(self, name: Optional[str] = None, config: Optional[ChildConfig] = None) -> "GroupChildBlock":
        """``with group.child("name") as c:`` -- a child-context unit whose body runs inline, on this thread."""
        self._check(f"group.child({name!r})")
        return GroupChildBlock(self, name, expect(config, ChildConfig, "group.child", _DEFAULT_CHILD_CONFIG))

    def _check(self, what: str) -> None:
        if self._state != "open":
            if self._state == "new":
                raise NestedOperationError(f"{what}: the group is not open; use it as "
                                           "`with ctx.concurrently(...) as group:`")
            raise NestedOperationError(
                f"{what} after the `with {self._label()}` block closed: a group takes units only inside its "
                "block (its futures stay readable). Open a new `with ctx.concurrently()` block for more units.")
        here = self._scope.body_here()
        if isinstance(here, Body) and isinstance(here.owner, GroupChildBlock) and here.owner._group is self:
            raise NestedOperationError(
                f"{what} was called inside `with group.child({here.owner._name!r}) as c:`: use c.step(...) / "
                "c.child(...) for that child's operations, or submit the unit after its block.")
        if here is not self._scope.body:
            if isinstance(here, Op):
                self._scope.check(what)  # inside a step body: the step's message
            raise NestedOperationError(
                f"{what} was called from inside a unit or from another thread: submit units from the code of the "
                f"`with {self._label()}` block itself; inside a unit use that unit's own context (the `c` of "
                "group.run_in_child_context(lambda c: ...)).")

    def _submit(self, kind: str, op: Op, run: Callable[[], Any], stored: bool) -> DurableFuture:
        """(caller's thread, after the unit was numbered) Queue a unit; a completed one is answered at once."""
        pool = self._pool
        future = DurableFuture(self, len(self._units) + 1, kind, op.name, op.id, run)
        self._units.append(future)
        if stored:  # completed in an earlier invocation: its checkpoint answers, no thread, no slot
            kind_, value = outcome_of(run)
            with pool.cond:
                self._on_outcome(future, kind_, value)
        else:
            pool.submit(future)
        return future

    # -- pool callbacks and waiting ------------------------------------------------------------------
    def _run_unit(self, future: DurableFuture) -> tuple[str, Any]:
        """Run a unit (on a pool thread, or on a thread that waits for it): its outcome as (kind, value)."""
        return self._scope.run_unit(self, future, outcome_of, future._run)

    def describe_unit(self, future: DurableFuture) -> tuple[str, str]:
        """(label, context) of a unit for refusal messages (OperationScope.Body)."""
        return future._label(), "the context it receives (the `c` of group.run_in_child_context(lambda c: ...))"

    def _on_start(self, future: DurableFuture) -> None:
        """(pool lock held) The unit is taken by the current thread."""
        future._state = _RUNNING
        future._runner = threading.get_ident()

    def _on_outcome(self, future: DurableFuture, kind: str, value: Any) -> None:
        """(pool lock held) Settle the unit's future."""
        future._state = _SETTLED_BY_KIND[kind]
        future._run = None  # drop the closure (and what it holds) once the unit ran
        if kind == OK:
            future._value = value
        else:
            future._error = value
            if kind == FATAL:
                self._set_fatal(value)
        self._pool.cond.notify_all()

    def _set_fatal(self, exc: BaseException) -> None:
        """(pool lock held) The invocation fails: queued units never start."""
        if self._fatal is None:
            self._fatal = exc
        for unit in self._pool.cancel_pending():
            unit._state, unit._error, unit._run = _CANCELLED, exc, None

    def _await(self, future: DurableFuture, timeout: Optional[float]) -> None:
        """Block until ``future`` is no longer queued or running (see DurableFuture.result)."""
        if future._state not in _WAITING:
            return
        pool = self._pool
        deadline = None if timeout is None else time.monotonic() + max(0.0, float(timeout))
        pool.enter()  # waiting: the flusher's gathering must not wait for this thread
        try:
            self._await_locked(future, deadline, timeout)
        finally:
            pool.leave()

    def _await_locked(self, future: DurableFuture, deadline: Optional[float], timeout: Optional[float]) -> None:
        pool = self._pool
        cond = pool.cond
        me = threading.get_ident()
        with cond:
            while future._state in _WAITING:
                if future._state == _RUNNING and future._runner == me:
                    raise NestedOperationError(f"{future._label()} waits for its own result: it would never end")
                if future._state == _QUEUED:
                    if pool.holds_slot() and pool.steal(future):
                        # This thread holds a slot (a unit's body, an inline child): run the sibling here
                        # rather than wait for a slot that may be the one it holds (a unit of its own:
                        # _run_unit gives it its own body marker).
                        cond.release()
                        try:
                            pool.run_stolen(future)
                        finally:
                            cond.acquire()
                        continue
                    if pool.startable() and pool.active == 0:  # no thread could be started: run queued units here
                        pool.help_locked()
                        continue
                    if pool.stalled():
                        raise self._parent.suspend(f"{future._label()} cannot start before the suspended units of "
                                               "the group resume")
                if deadline is None:
                    cond.wait()
                    continue
                remaining = deadline - time.monotonic()
                if (remaining <= 0 or not cond.wait(remaining)) and future._state in _WAITING:
                    raise TimeoutError(f"{future._label()} did not finish within {timeout} s")


def _describe_error(err: BaseException) -> str:
    kind = type(err).__name__
    original = getattr(err, "error_type", None)  # a DurableOperationError names the original exception
    if original and original != kind:
        kind = f"{kind} ({original})"
    return f"{kind}: {err}"


class GroupChildBlock:
    """What ``group.child(name)`` returns: ``with group.child(name) as c:`` runs a child-context unit inline.

    The ``with`` body runs on the caller's thread (Python runs it there): the unit is
    numbered in the group when the block is entered, waits for the units queued before it
    and for a free slot, then runs while the pool units keep running, and is recorded
    as ``ctx.child`` records a block (ReplayChildren=true; ``c.result`` is its result).
    Exceptions and suspensions in the body propagate unchanged, and also count as the
    unit's outcome. ``.future`` is the unit's DurableFuture (None before the block).
    """

    def __init__(self, group: ConcurrentGroup, name: Optional[str], cfg: ChildConfig):
        self._group = group
        self._name = name
        self._cfg = cfg
        self._block: Optional[ChildBlock] = None
        self._ctx: Any = None
        self._before: Any = None  # what the thread ran before the block's body (scope.enter_unit)
        self.future: Optional[DurableFuture] = None

    def __enter__(self) -> Any:
        group = self._group
        group._check(f"group.child({self._name!r})")
        if self._block is not None:
            raise NestedOperationError(f"group.child({self._name!r}) was entered twice")
        pool = group._pool
        if not pool.acquire_inline():
            raise group._parent.suspend(f"{group._label()}: no slot for child {self._name!r} before the suspended "
                                    "units resume")
        scope = group._scope
        entered = False
        try:
            block = self._block = ChildBlock(scope, self._name, self._cfg)
            block.begin()
            future = DurableFuture(group, len(group._units) + 1, "child", self._name, block.op.id, None)
            # The `with` body is a unit of its own: its context belongs to it, not to the block's code.
            self._before = scope.enter_unit(self)
            entered = True
            self._ctx = block.open()
        except BaseException:
            if entered:
                scope.leave_unit(self._before)
            pool.release_inline(suspended=False)
            raise
        future._state, future._runner = _RUNNING, threading.get_ident()
        group._units.append(future)
        self.future = future
        return self._ctx

    def describe_unit(self, key: Any) -> tuple[str, str]:
        """(label, context) of the block's body for refusal messages (OperationScope.Body)."""
        return self.future._label(), f"its `c` (`with group.child({self._name!r}) as c:`)"

    def __exit__(self, exc_type: Any, exc: Optional[BaseException], tb: Any) -> bool:
        group, future = self._group, self.future
        group._scope.leave_unit(self._before)
        raised: Optional[BaseException] = None
        try:
            self._block.__exit__(exc_type, exc, tb)
        except BaseException as err:  # noqa: BLE001 - recording failed (checkpoint, serdes): the unit's outcome
            raised = err
        if raised is not None:
            kind, value = classify(raised), raised
        elif exc is not None:
            kind, value = classify(exc), exc
        else:
            serdes = self._cfg.serdes or group._scope.serdes
            sctx = group._scope.serdes_ctx(future.operation_id)
            kind, value = outcome_of(
                lambda: as_replayed(serdes, self._ctx.result, serialize_value(serdes, self._ctx.result, sctx), sctx))
            if kind != OK:
                raised = value
        pool = group._pool
        with pool.cond:
            group._on_outcome(future, kind, value)
        pool.release_inline(suspended=kind == SUSPEND)
        if raised is not None:
            raise raised
        return False
