"""LocalEngine: runs durable handlers on one machine, as the service would.

This module is the engine's public API and the state it owns: the executions (in memory, journaled
by a store), the locks, the timer heap and the ready queue, the callback and chained-invoke indexes.
The rest of the engine is (mostly) plain functions over that state, one module per concern:

- ``scheduler``: timers and the ready queue; virtual time (``drain`` / ``advance_to``) and the
  real-time scheduler thread.
- ``runner``: one invocation of a handler (in process or isolated) and what its outcome does.
- ``chained``: chained invoke of another registered function.
- ``control``: pause and resume, and the execution timeout a pause holds.

One invocation is in flight per execution, one re-invocation follows each completion. With
``skip_time=True`` the clock is virtual and the caller drives it (start/advance/run/wait return when
the engine is idle); otherwise a scheduler thread fires timers in real time.

Lock order: an execution's ``ex.lock`` may be held while taking ``engine._lock``, never the reverse.
"""
from __future__ import annotations

import functools
import itertools
import json
import logging
import threading
import time
import uuid
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from types import MappingProxyType
from typing import Any, Callable, Iterable, Mapping, Optional

from .. import wire
from ..errors import ValidationError
from ..events import event_for
from . import chained, control, foreign, runner, scheduler
from .commit import SERVICE_ERROR, Change, commit, completion, describe, ends, service_change
from . import history as h
from .clock import RealClock, VirtualClock, check_clock
from .control import MAX_REASON_CHARS  # noqa: F401 - re-exported
from .handlers import reference as handler_reference
from .handlers import resolve as resolve_handler
from .runner import (MAX_INVOCATION_ATTEMPTS, InProcessClient, LocalLambdaContext,  # noqa: F401 - re-exported
                     checkpoint_error)
from .service import (CALLBACK_TIMEOUT, CONFLICT, DEFAULT_EXECUTION_TIMEOUT, INVALID, NOT_FOUND, PAGE_MAX_ITEMS,
                      RUNNING, Execution, ServiceError, Timer, apply_batch, callback_id, changed_operations,
                      check_text, page, visible_operations)
from .snapshot import (ExecutionResult, ExecutionSnapshot, OpenCallback, PendingTimer, boto_history, boto_operations,
                       list_item)
from .store import open_store

_log = logging.getLogger("durable_sync.engine")
_ERROR_OBJECT_KEYS = ("ErrorType", "ErrorMessage", "ErrorData", "StackTrace")
#: Invocations that run at once in real time (``LocalEngine(max_concurrent_invocations=...)``).
DEFAULT_MAX_CONCURRENT_INVOCATIONS = 64
MAX_CONCURRENT_INVOCATIONS_LIMIT = 4096
CLIENT_TOKENS_KEPT = 64  # checkpoint answers kept per execution for a retried ClientToken (at least this many)


def _check_open(ex: Execution, op: dict, callback_id: str, takes: str) -> None:
    """CallbackTimeoutException unless callback ``op`` still waits (for an answer or a heartbeat: ``takes``)."""
    if op["Status"] != wire.STARTED or ex.status != RUNNING:
        state = op["Status"] if op["Status"] != wire.STARTED else f"closed (execution {ex.status})"
        raise ServiceError(CALLBACK_TIMEOUT, f"callback {callback_id} is already {state}; it takes no more {takes}")


def _function_name(handler: Any) -> str:
    raw = getattr(handler, "__name__", None) or type(handler).__name__
    return "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in raw)[:64] or "handler"


class LocalEngine:
    """The embedded durable execution engine (see SPEC §4)."""

    def __init__(self, db: str = "durable.db", skip_time: bool = False, functions: Optional[dict] = None,
                 isolation: Optional[str] = None, clock: Any = None,
                 listeners: Optional[list[Callable[[str, dict], None]]] = None, *,
                 max_concurrent_invocations: int = DEFAULT_MAX_CONCURRENT_INVOCATIONS,
                 resume_unfinished: bool = True, real_time_callbacks: bool = False):
        """Open the engine on ``db`` (a SQLite file, or ":memory:").

        - ``skip_time``: virtual time, driven by the caller (see the module docstring).
        - ``functions``: name -> handler, the functions chained invokes (and the HTTP façade) call by name;
          a handler may be given as a reference, e.g. ``"path/handler.js:handler"`` for a Node.js one.
        - ``isolation``: None (invocations run on the engine's threads) or "process" (a fresh child
          process per invocation).
        - ``clock``: the engine's clock (default: ``VirtualClock()`` with ``skip_time``, else
          ``RealClock()``); one that cannot serve the time mode is refused here (ValidationError).
        - ``listeners``: ``listener(arn, event)`` for every history event as it is recorded.
        - ``max_concurrent_invocations``: real time: how many invocations run at once (default
          DEFAULT_MAX_CONCURRENT_INVOCATIONS); more wait their turn in the order they were asked for.
          Virtual time runs one at a time on the caller's thread.
        - ``real_time_callbacks``: with ``skip_time``, callback timeouts and heartbeat timeouts still take
          real time (everything else stays virtual), so an outside client always has the configured time
          to answer: ``durable-sync serve --skip-time`` runs this way. ``wait``/``run`` then return RUNNING
          while only a callback can move an execution, and ``advance`` never fires those timers.
        - ``resume_unfinished``: run the unfinished executions found in ``db`` onward (default). With
          False they are loaded (readable, listed) but left alone until ``start()`` attaches to one by
          its name or a callback answer or resume reaches it.
        """
        if isolation not in (None, "process"):
            raise ValidationError(f"isolation must be None or 'process', got {isolation!r}")
        if isinstance(max_concurrent_invocations, bool) or not isinstance(max_concurrent_invocations, int) or \
                not 1 <= max_concurrent_invocations <= MAX_CONCURRENT_INVOCATIONS_LIMIT:
            raise ValidationError(f"max_concurrent_invocations must be an integer from 1 to "
                                  f"{MAX_CONCURRENT_INVOCATIONS_LIMIT}, got {max_concurrent_invocations!r}")
        if clock is not None:
            check_clock(clock, skip_time)
        self.skip_time = skip_time
        self.real_time_callbacks = bool(real_time_callbacks) and skip_time
        self.isolation = isolation
        self.max_concurrent_invocations = max_concurrent_invocations
        self.resume_unfinished = bool(resume_unfinished)
        self.clock = clock or (VirtualClock() if skip_time else RealClock())
        self._unrecorded: dict[str, int] = {}  # ARN -> invocation ends in a row the store refused
        self._dormant: set[str] = set()  # unfinished executions loaded with resume_unfinished=False, left alone
        self._lock = threading.RLock()  # executions, timers, ready queue; never held while taking ex.lock
        self._cond = threading.Condition(self._lock)
        self._executions: dict[str, Execution] = {}
        self._by_name: dict[tuple[str, str], str] = {}
        self._callbacks: dict[str, tuple[str, str]] = {}
        # (function name, execution name) of a chained invoke's durable target -> (caller ARN, op id)
        self._invoke_links: dict[tuple[str, str], tuple[str, str]] = {}
        self._invoke_target = functools.partial(chained.invoke_target, self)  # how a CHAINED_INVOKE START resolves
        self._tls = threading.local()  # per-thread: a scheduler.drain() loop is running
        self._functions: dict[str, Callable] = {name: resolve_handler(fn) for name, fn in (functions or {}).items()}
        self._missing: dict[str, str] = {}  # ARN -> why its handler is unknown (adopted executions only)
        # (operation, ARN, ClientToken) -> (arguments, expiry ms) of recent pause / resume calls
        self._control_tokens: dict[tuple, tuple] = {}
        self._timers: list[Timer] = []
        self._real_timers: list[tuple] = []  # real_time_callbacks: (real due ms, seq, Timer) of callback timers
        self._virtual_lock = threading.RLock()  # one thread at a time moves virtual time (wait, advance)
        self._timer_seq = itertools.count()
        self._timer_failures = 0  # virtual time: timers failed in a row (scheduler.MAX_TIMER_FAILURES)
        self._ready: deque[str] = deque()
        self._client = InProcessClient(self)
        self.foreign = foreign.Host()  # how handlers not written with durable_sync reach the engine
        # Serve mode (durable_sync.local.http): returns the checkpoint client handlers get in their
        # lambda_context (None there: the SDK's boto3 default client); None here: the in-process client.
        self.client_factory: Optional[Callable[[], Any]] = None
        self._closed = False
        self._listeners: list[Callable[[str, dict], None]] = list(listeners or [])
        self._store = open_store(db)
        loaded = self._store.load_executions()
        if skip_time and clock is None and loaded:  # virtual time never runs backwards over stored history
            self.clock.advance_to(max((ex.events[-1]["EventTimestamp"] for ex in loaded if ex.events), default=0))
        for ex in loaded:
            self._adopt(ex)
        self._pool: Optional[ThreadPoolExecutor] = None
        self._scheduler: Optional[threading.Thread] = None
        # SQLite: callback answers and pause / resume / delete requests other processes posted to the inbox
        # (durable-sync callback, pause, resume REF, delete). Those posted while no engine ran are applied
        # before anything runs, so that a pause holds its execution from the start; virtual time drains once
        # all of them are applied (the flag makes the drains they ask for leave the work to that one).
        self._tls.draining = True
        try:
            self._store.attach(self)
        except BaseException:
            self._store.close()
            raise
        finally:
            self._tls.draining = False
        if not skip_time:
            self._pool = ThreadPoolExecutor(max_workers=max_concurrent_invocations, thread_name_prefix="durable-invoke")
            self._scheduler = threading.Thread(target=scheduler.schedule_loop, args=(self,), name="durable-scheduler",
                                               daemon=True)
            self._scheduler.start()
        else:
            scheduler.drain(self)
        self._callback_clock: Optional[threading.Thread] = None
        if self.real_time_callbacks:
            self._callback_clock = threading.Thread(target=scheduler.callback_clock_loop, args=(self,),
                                                    name="durable-callback-clock", daemon=True)
            self._callback_clock.start()

    # -- public API ---------------------------------------------------------------
    def add_listener(self, listener: Callable[[str, dict], None]) -> None:
        """Call ``listener(arn, event)`` for every history event as it is recorded (boto3 shape)."""
        self._listeners.append(listener)

    def _emit(self, ex: Execution, event: dict) -> None:
        if self._listeners:
            boto_event = h.to_boto(event)
            for listener in self._listeners:
                listener(ex.arn, boto_event)

    def register_function(self, name: str, handler: Callable | str) -> None:
        """Make ``handler`` invokable by name (chained invoke, CLI, HTTP); a reference
        (``"path/handler.js:handler"``, ``"path/file.py:handler"``) is loaded first."""
        handler = resolve_handler(handler)
        with self._lock:
            self._functions[name] = handler
            waiting = [self._executions[arn] for arn in self._missing if self._executions[arn].function_name == name]
            for ex in waiting:
                del self._missing[ex.arn]
        for ex in waiting:
            scheduler.mark_ready(self, ex)
        if waiting:
            scheduler.after_change(self)

    def run_unfinished(self) -> list[str]:
        """Run onward every unfinished execution the engine left alone (``resume_unfinished=False``): arm
        its timers and invoke it if it needs an invocation (its last one was cut short, say), as an engine
        opened with ``resume_unfinished=True`` does when it opens. Returns their ARNs, oldest first.

        For a host that must be ready before handlers run: ``durable-sync serve`` opens the engine with
        ``resume_unfinished=False``, starts its HTTP server (handlers that reach the engine over HTTP
        need its URL), then calls this. Virtual time: their due invocations run before it returns (the
        clock does not move; ``wait(arn)`` moves it). Calling it again does nothing."""
        with self._lock:
            dormant = [ex for arn, ex in self._executions.items() if arn in self._dormant]
        for ex in dormant:
            self._wake(ex)
        scheduler.after_change(self)
        return [ex.arn for ex in dormant]

    def missing_handlers(self) -> dict[str, str]:
        """ARN -> why an unfinished execution loaded from the database cannot be invoked (no handler)."""
        with self._lock:
            return {arn: why for arn, why in self._missing.items()
                    if self._executions[arn].status == RUNNING and self._executions[arn].function_name
                    not in self._functions}

    def start(self, handler: Callable, input: Any = None, name: Optional[str] = None,
              execution_timeout: Optional[int] = None, *, function_name: Optional[str] = None,
              execution_id: Optional[str] = None) -> str:
        """Start an execution of ``handler`` with ``input`` (JSON value); returns its ARN.

        ``function_name`` names the function in the ARN (default: the handler's name); chained
        invoke passes the name the target was registered under, and the ``execution_id`` its
        ChainedInvokeStarted event announced.
        """
        fn_name = function_name or getattr(handler, "__durable_function_name__", None) or _function_name(handler)
        if name is not None:
            wire.validate_name(name)
        try:
            payload = json.dumps(input)
        except (TypeError, ValueError) as exc:
            raise ServiceError(INVALID, f"the execution input must be JSON data: {exc}") from None
        timeout = DEFAULT_EXECUTION_TIMEOUT if execution_timeout is None else int(execution_timeout)
        if not 1 <= timeout <= DEFAULT_EXECUTION_TIMEOUT:
            raise ServiceError(INVALID, f"execution_timeout must be 1..{DEFAULT_EXECUTION_TIMEOUT} seconds")
        with self._lock:
            self._functions.setdefault(fn_name, handler)
            if self._functions[fn_name] is not handler:
                self._functions[fn_name] = handler
            name = name or str(uuid.uuid4())
            existing = self._by_name.get((fn_name, name))
            if existing is not None:
                ex = self._executions[existing]
                if ex.input_payload != payload:
                    raise ServiceError(CONFLICT, f"execution {name!r} of {fn_name} already exists with another input")
                wake = ex.arn in self._dormant  # woken below: its ex.lock is never taken under self._lock
                if ex.status == RUNNING and not wake:
                    scheduler.mark_ready(self, ex)
            else:
                exec_id = execution_id or uuid.uuid4().hex
                arn = wire.execution_arn(fn_name, name, exec_id)
                now = self.clock.now_ms()
                ex = Execution(arn=arn, function_name=fn_name, name=name, exec_op_id=exec_id, start_ms=now,
                               timeout_s=timeout, input_payload=payload)
                ex.handler_ref = handler_reference(handler)  # lets a restarted engine import it
                ex.ops[exec_id] = {"Id": exec_id, "Type": wire.EXECUTION, "Status": wire.STARTED,
                                   "StartTimestamp": now, "ExecutionDetails": {"InputPayload": payload}}
                started = h.execution_event(event_for(wire.EXECUTION, wire.STARTED), ex.ops[exec_id], now, {
                    "Input": h.result(payload), "ExecutionTimeout": timeout})
                started["EventId"] = 1
                ex.events.append(started)  # not announced before the store has it
                try:  # disk first: an execution the store refused must not exist in memory either
                    self._store.create_execution(ex)
                except Exception as exc:  # noqa: BLE001 - disk full, read-only, I/O error
                    raise ServiceError(SERVICE_ERROR, f"the engine could not persist the new execution "
                                                      f"({type(exc).__name__}: {exc}); nothing was started",
                                       status=500) from exc
                self._executions[arn] = ex
                self._by_name[(fn_name, name)] = arn
                scheduler.push_timer(self, now + timeout * 1000, "execution_timeout", arn)
                scheduler.mark_ready(self, ex)
                wake = False
                self._emit(ex, started)
        if wake:
            self._wake(ex)
        scheduler.after_change(self)
        return ex.arn

    def run(self, handler: Callable, input: Any = None, name: Optional[str] = None,
            execution_timeout: Optional[int] = None) -> ExecutionResult:
        """Start an execution and block until it is terminal (virtual time: until nothing can move it)."""
        return self.wait(self.start(handler, input, name, execution_timeout))

    def wait(self, arn: str, timeout: Optional[float] = None) -> ExecutionResult:
        """Until ``arn`` is terminal. Virtual time: fire due items in order; RUNNING when only the outside can help."""
        ex = self._get(arn)
        if self.skip_time:
            with self._virtual_lock:
                while True:
                    scheduler.drain(self)
                    if ex.status != RUNNING or control.pause_of(ex) is not None:
                        break  # ended, or paused: only resume_execution() moves it on
                    due = self.next_due_ms()
                    if due is None:
                        break
                    scheduler.advance_to(self, due)
            return self.get_execution(arn)
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while ex.status == RUNNING:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    break
                self._cond.wait(remaining if remaining is not None else 1.0)
        return self.get_execution(arn)

    def advance(self, seconds: float) -> None:
        """Virtual time: move the clock by exactly ``seconds``, firing every due item in time order."""
        if not self.skip_time:
            raise ServiceError(INVALID, "advance() needs LocalEngine(skip_time=True)")
        if seconds < 0:
            raise ServiceError(INVALID, "advance() takes a non-negative number of seconds")
        with self._virtual_lock:
            scheduler.advance_to(self, self.clock.now_ms() + int(round(seconds * 1000)))

    def get_execution(self, arn: str) -> ExecutionResult:
        ex = self._get(arn)
        with ex.lock:
            value = None
            if ex.result is not None and ex.result != "":
                from ..serdes import decode_plain_json
                value = decode_plain_json(ex.result, "the execution result")
            pause = control.pause_of(ex)
            return ExecutionResult(ex.arn, ex.status, value, ex.error, ex.result,
                                   pause_status=pause["Status"] if pause else None,
                                   pause_details=control.pause_details(pause) if pause else None,
                                   timeout_at=wire.ms_to_datetime(control.timeout_due(ex)) if ex.status == RUNNING
                                   else None)

    def history(self, arn: str) -> list[dict]:
        """Events as boto3's get_durable_execution_history returns them."""
        ex = self._get(arn)
        with ex.lock:
            return boto_history(ex.events)

    def operations(self, arn: str) -> list[dict]:
        """Every operation of the execution (wire shape, timestamps as datetimes)."""
        ex = self._get(arn)
        with ex.lock:
            return boto_operations(ex.ops.values())

    def list_executions(self, function_name: Optional[str] = None, name: Optional[str] = None,
                        status: Optional[str | Iterable[str]] = None, *, started_after: Any = None,
                        started_before: Any = None, reverse: bool = False, offset: int = 0,
                        limit: Optional[int] = None) -> list[dict]:
        """Executions as ListDurableExecutionsByFunction lists them, oldest first (``reverse``: newest first).

        ``Status`` is the service's status: PAUSING / PAUSED for a paused execution (which get_execution()
        reports as RUNNING with ``pause_status``). Filters: ``function_name``, ``name``, ``status`` (one
        status or several), ``started_after`` / ``started_before`` (datetimes, exclusive). Paging:
        ``offset`` items skipped, at most ``limit`` returned (ask for one more than a page to learn
        whether another page follows).
        """
        statuses = {status} if isinstance(status, str) else set(status) if status is not None else set()
        after = None if started_after is None else wire.to_epoch_ms(started_after)
        before = None if started_before is None else wire.to_epoch_ms(started_before)
        with self._lock:
            items = list(self._executions.values())
        selected = []
        for ex in items:
            if (function_name and ex.function_name != function_name) or (name and ex.name != name):
                continue
            if (after is not None and ex.start_ms <= after) or (before is not None and ex.start_ms >= before):
                continue
            with ex.lock:
                pause = control.pause_of(ex)
                reported = pause["Status"] if pause else ex.status  # PAUSING / PAUSED, as the service lists them
                end_ms = ex.end_ms
            if statuses and reported not in statuses:
                continue
            selected.append((ex.start_ms, ex, reported, end_ms))
        selected.sort(key=lambda item: item[0], reverse=reverse)  # stable: creation order among equal starts
        stop = None if limit is None else max(0, offset) + max(0, limit)
        return [{**list_item(ex.arn, ex.name, ex.function_name, reported, start_ms, end_ms),
                 "FunctionName": ex.function_name}
                for start_ms, ex, reported, end_ms in selected[max(0, offset):stop]]

    def next_due_ms(self, *, execution_timeouts: bool = False) -> Optional[int]:
        """When the engine next does something by itself for a RUNNING execution (a wait ends, a retry or
        a chained invoke falls due, a callback times out), in epoch milliseconds of its clock; None when
        nothing is pending. Execution timeouts count only with ``execution_timeouts=True``: they end
        executions rather than move them on. (With ``real_time_callbacks`` a callback's timers keep real
        time and are not counted.) A virtual-time caller moves the clock there with ``advance``, as
        ``wait`` does."""
        timer = scheduler.next_timer(self, skip_execution_timeouts=not execution_timeouts)
        return None if timer is None else timer.due_ms

    @property
    def functions(self) -> Mapping[str, Callable]:
        """The function registry (name -> handler), read-only: what chained invokes and the HTTP façade
        call by name. Change it with ``register_function``."""
        with self._lock:
            return MappingProxyType(dict(self._functions))

    def snapshot(self, arn: str) -> ExecutionSnapshot:
        """Execution ``arn`` as the engine holds it now (ResourceNotFoundException if unknown): its
        status and result, operations and history (boto3 shape), pending timers, open callbacks, and
        whether an invocation runs or is queued. A consistent copy; it does not change afterwards."""
        ex = self._get(arn)
        with ex.lock:
            execution = self.get_execution(arn)
            operations = tuple(boto_operations(ex.ops.values()))
            history = tuple(boto_history(ex.events))
            callbacks = tuple(OpenCallback(callback_id(op) or "", op["Id"], op.get("Name"))
                              for op in ex.ops.values() if op["Type"] == wire.CALLBACK and op["Status"] == wire.STARTED)
            in_flight, needs_invoke = ex.invoking, ex.needs_invoke
            with self._lock:
                timers = sorted(t for t in self._timers if t.arn == arn)
                queued = arn in self._ready
            pending = tuple(PendingTimer(t.kind, t.due_ms, t.op_id, (ex.ops.get(t.op_id) or {}).get("Name"))
                            for t in timers if ex.status == RUNNING and scheduler.timer_is_live(ex, t))
            return ExecutionSnapshot(arn=ex.arn, function_name=ex.function_name, name=ex.name, execution=execution,
                                     start_ms=ex.start_ms, end_ms=ex.end_ms, operations=operations, history=history,
                                     pending_timers=pending, open_callbacks=callbacks if ex.status == RUNNING else (),
                                     invocation_in_flight=in_flight,
                                     invocation_queued=ex.status == RUNNING and (needs_invoke or queued))

    def stop(self, arn: str, error: Optional[dict] = None) -> ExecutionResult:
        ex = self._get(arn)
        check_text(error, "the stop error")
        with ex.lock:
            if ex.status != RUNNING:
                raise ServiceError(INVALID, f"execution {arn} is already {ex.status}")
            self._complete(ex, "STOPPED", error=error)
        scheduler.after_change(self)
        return self.get_execution(arn)

    # -- pause, resume, delete -------------------------------------------------------
    def pause(self, arn: str, reason: Optional[str] = None, *, execution_timeout_paused: bool = True,
              client_token: Optional[str] = None) -> ExecutionResult:
        """PauseDurableExecution: no invocation of ``arn`` until resume_execution().

        Waits, retries, callbacks and chained invokes go on completing while it is paused; the
        invocation after the resume sees them. With no invocation in flight the execution is PAUSED at
        once (history: ``ExecutionPaused``); with one in flight it is PAUSING until that invocation's next
        checkpoint, which is refused as a stale token (nothing of it applied: the SDK ends the
        invocation and the resume replays it from the last checkpoint) and the execution is PAUSED. An
        invocation that ends without checkpointing again pauses it as it ends (or completes it, when it
        returned the execution's outcome). ``execution_timeout_paused`` (default True) holds the execution
        timeout while PAUSED and moves it on by the time spent paused, never past 366 days after the start.

        A repeat with the same ``client_token`` and arguments within 15 minutes does nothing and
        succeeds. Otherwise pausing an execution that is not RUNNING (pausing or paused already, or
        ended) raises ResourceConflictException; an unknown ARN, ResourceNotFoundException.
        """
        check_text(reason, "the pause reason")
        control.pause_execution(self, arn, reason, execution_timeout_paused, client_token)
        return self.get_execution(arn)

    def resume_execution(self, arn: str, reason: Optional[str] = None, *,
                         client_token: Optional[str] = None) -> ExecutionResult:
        """ResumeDurableExecution: end the pause of ``arn``.

        (Named so as not to be confused with resuming unfinished executions after a restart, which
        the engine does by itself.) A PAUSED execution is invoked again if the pause interrupted an
        invocation or an operation completed meanwhile, else it goes on waiting for its pending
        operations (history: ``ExecutionResumed``); a PAUSING one has its pause cancelled and its
        invocation goes on (no event: it never paused). Same ``client_token`` rule as pause(); resuming
        an execution that is not paused raises ResourceConflictException.
        """
        check_text(reason, "the resume reason")
        control.resume_execution(self, arn, reason, client_token)
        self._wake(self._get(arn))
        scheduler.after_change(self)
        return self.get_execution(arn)

    def delete(self, arn: str) -> Any:
        """DeleteDurableExecution: remove an ended execution with its operations, history, input and
        result, from memory and the database; returns when (the DeletionRequestTimestamp, a datetime).

        Only a SUCCEEDED, FAILED, STOPPED or TIMED_OUT execution can be deleted, and not while its last
        invocation is still running (a stop does not wait for it): otherwise ResourceConflictException.
        Afterwards the ARN is unknown (ResourceNotFoundException), its callback ids are unknown, and its
        name may be used again. Child executions started by its chained invokes are kept.
        """
        ex = self._get(arn)
        with ex.lock:
            if ex.status == RUNNING:
                pause = control.pause_of(ex)
                raise ServiceError(CONFLICT, f"execution {arn} is {pause['Status'] if pause else RUNNING}; only a "
                                             "SUCCEEDED, FAILED, STOPPED or TIMED_OUT execution can be deleted (stop "
                                             "it first)", status=409)
            if ex.invoking:
                raise ServiceError(CONFLICT, f"execution {arn} is {ex.status} but its last invocation is still "
                                             "running; delete it once that invocation has ended", status=409)
            now = self.clock.now_ms()
            try:
                self._store.delete_execution(ex)
            except Exception as exc:  # noqa: BLE001 - disk full, read-only, I/O error: nothing was deleted
                raise ServiceError(SERVICE_ERROR, f"the engine could not delete the execution from its database "
                                                  f"({type(exc).__name__}: {exc}); nothing was deleted, retry it",
                                   status=500) from exc
            with self._lock:
                self._executions.pop(arn, None)
                if self._by_name.get((ex.function_name, ex.name)) == arn:
                    del self._by_name[(ex.function_name, ex.name)]
                self._missing.pop(arn, None)
                for op in ex.ops.values():
                    issued = callback_id(op)
                    if issued and self._callbacks.get(issued, (None,))[0] == arn:
                        del self._callbacks[issued]
                for token_key in [k for k in self._control_tokens if k[1] == arn]:
                    del self._control_tokens[token_key]
        return wire.ms_to_datetime(now)

    # -- callbacks ------------------------------------------------------------------
    def send_callback_success(self, callback_id: str, result: Any = None) -> None:
        """SendDurableExecutionCallbackSuccess: ``result`` is the raw payload (str, bytes or None).

        The SDK decodes it as plain JSON (never unpickled) unless the callback has a custom serdes.
        """
        if isinstance(result, (bytes, bytearray)):
            try:
                result = bytes(result).decode("utf-8")
            except UnicodeDecodeError:
                raise ServiceError(INVALID, "a callback result must be UTF-8 text") from None
        if result is not None and not isinstance(result, str):
            raise ServiceError(INVALID, "a callback result is the raw payload: str, bytes or None")
        check_text(result, "the callback result")
        if result is not None and len(result.encode("utf-8")) > wire.MAX_CALLBACK_RESULT_BYTES:
            raise ServiceError(INVALID, f"callback result of {len(result.encode('utf-8'))} bytes exceeds the "
                                        f"limit of {wire.MAX_CALLBACK_RESULT_BYTES} bytes")
        self._complete_callback(callback_id, wire.SUCCEEDED, result=result)

    def send_callback_failure(self, callback_id: str, error: Optional[dict] = None) -> None:
        """SendDurableExecutionCallbackFailure with a wire ErrorObject (ErrorType, ErrorMessage, ...)."""
        if error is not None and not isinstance(error, dict):
            raise ServiceError(INVALID, "a callback error is an ErrorObject dict (ErrorType, ErrorMessage, ...)")
        error = {k: v for k, v in (error or {}).items() if k in _ERROR_OBJECT_KEYS and v is not None}
        check_text(error, "the callback error")
        for key in ("ErrorType", "ErrorMessage", "ErrorData"):
            if key in error and not isinstance(error[key], str):
                raise ServiceError(INVALID, f"callback error {key} must be a string")
        if "StackTrace" in error and not (isinstance(error["StackTrace"], list)
                                          and all(isinstance(x, str) for x in error["StackTrace"])):
            raise ServiceError(INVALID, "callback error StackTrace must be a list of strings")
        if len(json.dumps(error).encode("utf-8")) > wire.MAX_CALLBACK_RESULT_BYTES:
            raise ServiceError(INVALID, f"callback error exceeds {wire.MAX_CALLBACK_RESULT_BYTES} bytes")
        self._complete_callback(callback_id, wire.FAILED, error=error)

    def send_callback_heartbeat(self, callback_id: str) -> None:
        """SendDurableExecutionCallbackHeartbeat: restarts the callback's heartbeat timeout, if it has one."""
        ex, op = self._callback_op(callback_id, "heartbeats")
        with ex.lock:
            op = ex.ops[op["Id"]]
            _check_open(ex, op, callback_id, "heartbeats")
            timeout = op.get("_heartbeat_s")
            if timeout:
                due = self.clock.now_ms() + timeout * 1000
                commit(self, ex, Change(ops={op["Id"]: {**op, "_heartbeat_due": due}},
                                        timers=[(due, "callback_heartbeat", op["Id"])]))

    # -- the service API the SDK calls --------------------------------------------------
    def checkpoint(self, arn: str, token: str, updates: list, client_token: Optional[str] = None,
                   trusted: bool = False) -> dict:
        """CheckpointDurableExecution. ``trusted``: from this process's SDK, which validated the updates."""
        ex = self._get(arn)
        with ex.lock:
            if client_token is not None:
                seen = ex.client_tokens.get(client_token)
                if seen is not None and seen[0] == token:
                    return seen[1]
            if ex.status != RUNNING:
                raise ServiceError(INVALID, f"execution {arn} is {ex.status}; it takes no more checkpoints")
            if token != ex.token:
                raise ServiceError(INVALID, "Invalid checkpoint token: it is stale or belongs to another invocation")
            pause = control.pause_of(ex)  # (RUNNING here)
            if pause is not None:  # PAUSING: this is the invocation's next checkpoint, where the pause takes effect
                if pause["Status"] == control.PAUSING:
                    control.pause_takes_effect(self, ex, {**pause, "Interrupted": True})
                ex.needs_invoke = True  # interrupted: resume_execution() invokes again, which replays
                ex.new_token()  # nothing from this invocation is accepted any more
                raise ServiceError(INVALID, "Invalid checkpoint token: the execution is paused (PauseDurableExecution); "
                                            "this invocation ends here and nothing of this checkpoint was applied. "
                                            "ResumeDurableExecution continues it from its last checkpoint")
            now = self.clock.now_ms()
            change, ending = apply_batch(ex, updates, now, trusted, self._invoke_target)
            batch_ops = change.ops  # what the answer carries: the batch's operations alone
            if ending is not None:  # the EXECUTION update: the execution ends with this batch
                batch_ops = dict(batch_ops)
                status, result, error = ending
                change.merge(completion(ex, status, now, result, error, exec_op=batch_ops.get(ex.exec_op_id)))
            commit(self, ex, change)  # raises (nothing applied) on a store failure
            # The service's changes since the handler last saw them, then this batch's (a START the SDK
            # awaits comes back in its new state); one page, GetDurableExecutionState serves the rest.
            if ex.service_changed:
                changed = changed_operations(ex, {**ex.service_changed, **batch_ops})  # each id once
                ex.service_changed.clear()
            else:
                changed = changed_operations(ex, batch_ops)
            if ending is not None:  # the EXECUTION update: the execution ended here, no token follows
                response = {"NewExecutionState": {"Operations": page(changed)[0]}}
            else:
                ops, more = page(changed)
                state = {"Operations": ops, **({"NextMarker": "0"} if more is not None else {})}
                response = {"CheckpointToken": ex.new_token(), "NewExecutionState": state}
            if client_token is not None:
                tokens = ex.client_tokens
                if len(tokens) >= 2 * CLIENT_TOKENS_KEPT:  # keep the newest CLIENT_TOKENS_KEPT, trimmed in bulk
                    ex.client_tokens = tokens = dict(list(tokens.items())[-CLIENT_TOKENS_KEPT:])
                tokens[client_token] = (token, response)
        return response

    def get_state(self, arn: str, token: str, marker: Optional[str] = None, max_items: int = PAGE_MAX_ITEMS) -> dict:
        """GetDurableExecutionState: a page of the visible operations from ``marker`` (a NextMarker)."""
        ex = self._get(arn)
        if marker not in (None, "") and not (isinstance(marker, str) and marker.isdigit()):
            raise ServiceError(INVALID, f"Marker {marker!r} was not returned by this engine; pass a NextMarker")
        with ex.lock:
            if token != ex.token:
                raise ServiceError(INVALID, "Invalid checkpoint token: it is stale or belongs to another invocation")
            ops = visible_operations(ex)
        ops, more = page(ops, int(marker or 0), max(1, min(max_items or PAGE_MAX_ITEMS, PAGE_MAX_ITEMS)))
        return {"Operations": ops, **({"NextMarker": str(more)} if more is not None else {})}

    def close(self) -> None:
        """Stop background threads and close the store."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self._scheduler is not None:
            self._scheduler.join()
        if self._callback_clock is not None:
            self._callback_clock.join()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        for handler in list(self._functions.values()):  # e.g. a Node.js handler's warm processes
            release = getattr(handler, "__durable_release__", None)
            if release is not None:
                release()
        self.foreign.close()
        self._store.close()

    def __enter__(self) -> "LocalEngine":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- internals: lookup, adoption, timers ----------------------------------------------------
    def _get(self, arn: str) -> Execution:
        ex = self._executions.get(arn)
        if ex is None:
            raise ServiceError(NOT_FOUND, f"no durable execution {arn!r}", status=404)
        return ex

    def _adopt(self, ex: Execution) -> None:
        """Take over an execution loaded from the store (resume after a restart)."""
        self._executions[ex.arn] = ex
        self._by_name[(ex.function_name, ex.name)] = ex.arn
        for op in ex.ops.values():
            issued = callback_id(op)
            if issued:
                self._callbacks[issued] = (ex.arn, op["Id"])
        if ex.status == RUNNING:
            runner.recall_changes(ex)
            pause = control.pause_of(ex)
            if pause is not None and pause["Status"] == control.PAUSING:  # its invocation ended with the process
                control.pause_takes_effect(self, ex, {**pause, "Interrupted": True})
            if self.resume_unfinished:
                self._run_onward(ex)
            else:
                self._dormant.add(ex.arn)

    def _run_onward(self, ex: Execution) -> None:
        """An unfinished execution loaded from the store: arm its timers, invoke it if it needs it."""
        scheduler.push_timer(self, control.timeout_due(ex), "execution_timeout", ex.arn)
        for op in ex.ops.values():
            scheduler.rearm(self, ex, op)
        if runner.needs_invocation(ex):
            scheduler.mark_ready(self, ex)

    def _wake(self, ex: Execution) -> None:
        """Run onward an execution left alone (resume_unfinished=False) once something reaches it."""
        with self._lock:
            if ex.arn not in self._dormant:
                return
            self._dormant.discard(ex.arn)
        with ex.lock:
            if ex.status == RUNNING:
                self._run_onward(ex)

    def _fire(self, timer: Timer) -> None:
        """Do what a due timer stands for. The loops in ``scheduler`` call it through the instance, so a
        test may replace it on one engine."""
        scheduler.fire(self, timer)

    # -- internals: the commit path (durable_sync.local.commit) -------------------------------------
    def _announce(self, ex: Execution, change: Change, callbacks: list) -> None:
        """Called with ex.lock by ``commit`` once a change is stored and applied: index its callback ids,
        tell the listeners, arm its timers, queue an invocation, settle the chained invoke of an execution
        that ended, wake waiters."""
        if callbacks:
            with self._lock:
                for issued, op_id in callbacks:
                    self._callbacks.setdefault(issued, (ex.arn, op_id))
        if self._listeners:
            for event in change.events:
                self._emit(ex, event)
        for due, kind, op_id in change.timers:
            scheduler.push_timer(self, due, kind, ex.arn, op_id)
        if change.ready and ex.status == RUNNING:
            scheduler.mark_ready(self, ex)
        if not (change.fields or change.timers or change.ready):
            return  # records and events only (a checkpoint's usual change): no loop or waiter has news
        if ends(change):
            with self._lock:
                link = self._invoke_links.pop((ex.function_name, ex.name), None)
            if link is not None:  # the target of a chained invoke: complete the caller's operation
                self._settle_link(link, ex)
        with self._cond:
            self._cond.notify_all()

    def _settle_link(self, link: tuple[str, str], ex: Execution) -> None:
        """Complete the caller's chained-invoke operation with ended target ``ex``'s outcome. When the store
        refuses that, the caller's invoke timer is armed again: it attaches to the ended target and settles."""
        try:
            chained.settle_invoke(self, link[0], link[1], ex.status, ex.result, ex.error)
        except ServiceError as exc:
            _log.warning("could not settle chained invoke %s of %s (%s); trying again in %d ms", link[1], link[0],
                         exc.message, scheduler.TIMER_RETRY_MS)
            scheduler.push_timer(self, self.clock.now_ms() + scheduler.TIMER_RETRY_MS, "invoke", link[0], link[1])

    def _complete(self, ex: Execution, status: str, result: Optional[str] = None,
                  error: Optional[dict] = None) -> None:
        """Called with ex.lock: end the execution with its terminal event (through the commit path)."""
        commit(self, ex, completion(ex, status, self.clock.now_ms(), result, error))

    def _invocation_unrecorded(self, ex: Execution, exc: ServiceError) -> None:
        """Called with ex.lock when the end of an invocation could not be stored: nothing of it is applied
        (as if the Lambda had crashed), and the execution is invoked again TIMER_RETRY_MS later, which
        replays it. Virtual time has no one to wait for the fault to clear: after MAX_INVOCATION_ATTEMPTS
        such ends in a row the error reaches the caller (calling again retries)."""
        failures = self._unrecorded[ex.arn] = self._unrecorded.get(ex.arn, 0) + 1
        _log.warning("the end of an invocation of %s could not be stored (%s); invoking it again in %d ms",
                     ex.arn, exc.message, scheduler.TIMER_RETRY_MS)
        scheduler.push_timer(self, self.clock.now_ms() + scheduler.TIMER_RETRY_MS, "reinvoke", ex.arn)
        if self.skip_time and failures >= runner.MAX_INVOCATION_ATTEMPTS:
            self._unrecorded.pop(ex.arn, None)
            raise exc

    def _invocation_recorded(self, ex: Execution) -> None:
        self._unrecorded.pop(ex.arn, None)

    def _run_invocation(self, ex: Execution) -> None:
        """Real time (a pool thread): one invocation of ``ex``. When it needs another, it goes to the back
        of the ready queue, so an execution that is invoked again and again never keeps the others
        waiting. An exception out of the engine's own code is logged with its traceback and ends the
        execution FAILED (``Engine.InternalError``)."""
        try:
            invoked = runner.invoke(self, ex)
        except Exception as exc:  # noqa: BLE001 - an engine bug or an unexpected fault: never lost silently
            _log.exception("the engine failed while invoking %s", ex.arn)
            self._fail_execution(ex, exc)
            invoked = False
        if invoked:
            with ex.lock:
                again = ex.needs_invoke and ex.status == RUNNING and not ex.invoking
            if again and not self._closed:
                scheduler.mark_ready(self, ex)
        with self._cond:
            self._cond.notify_all()

    def _guarded(self, work: Callable[..., Any], ex: Execution, *args: Any) -> None:
        """Real time (a pool thread): ``work(self, ex, *args)``; an exception is logged with its traceback
        and ends the execution FAILED."""
        try:
            work(self, ex, *args)
        except Exception as exc:  # noqa: BLE001 - see _run_invocation
            _log.exception("the engine failed while working on %s", ex.arn)
            self._fail_execution(ex, exc)

    def _fail_execution(self, ex: Execution, exc: BaseException) -> None:
        """End ``ex`` FAILED for an engine failure; when even that cannot be stored it stays RUNNING, logged,
        and resumes from the database when the engine restarts."""
        with ex.lock:
            if ex.status != RUNNING:
                return
            try:
                self._complete(ex, "FAILED", error=describe(exc))
            except ServiceError as store_exc:
                _log.error("execution %s stays RUNNING: its failure could not be stored either (%s); it resumes "
                           "from the database when the engine restarts", ex.arn, store_exc.message)

    # -- internals: callbacks ----------------------------------------------------------------------
    def _callback_op(self, callback_id: str, takes: str = "answers") -> tuple[Execution, dict]:
        """The open callback ``callback_id``; the service's errors for unknown and closed ones (its state is
        checked again under ``ex.lock`` before it changes: ``_check_open``)."""
        ref = self._callbacks.get(callback_id) if isinstance(callback_id, str) else None
        ex = self._executions.get(ref[0]) if ref is not None else None
        op = ex.ops.get(ref[1]) if ex is not None else None
        if op is None:  # never issued (or issued by a checkpoint batch that was refused)
            raise ServiceError(INVALID, f"unknown callback id {callback_id!r}: no callback of this engine has it")
        _check_open(ex, op, callback_id, takes)
        return ex, op

    def _complete_callback(self, callback_id: str, status: str, result: Any = None,
                           error: Optional[dict] = None) -> None:
        ex, op = self._callback_op(callback_id)
        self._wake(ex)
        with ex.lock:
            op = ex.ops[op["Id"]]
            _check_open(ex, op, callback_id, "answers")
            now = self.clock.now_ms()
            details = dict(op.get("CallbackDetails") or {})
            if status == wire.SUCCEEDED:
                details["Result"] = result
                event_details = {"Result": h.result(result)}
            else:
                details["Error"] = error
                event_details = {"Error": h.error(error)}
            new = {**op, "Status": status, "EndTimestamp": now, "CallbackDetails": details}
            commit(self, ex, service_change(new, h.change_event(new, now, event_details)))
        scheduler.after_change(self)
