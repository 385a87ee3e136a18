"""When things happen in the local engine: the timer heap, the ready queue and the two loops that drain them.

Every delay the service keeps (a wait, a retry's next attempt, a callback's timeout or heartbeat, the
execution timeout, the start of a chained invoke) is a ``Timer`` on one heap; an execution that needs an
invocation is an ARN on the ready queue. With virtual time (``skip_time=True``) the caller's thread runs
``drain`` and ``advance_to``; with real time ``schedule_loop`` runs on its own thread and hands the work
to the engine's thread pool. The heap, the queue and the locks are the engine's; these functions are
the rules for using them.
"""
from __future__ import annotations

import heapq
import logging
import time
from typing import TYPE_CHECKING, Optional

from .. import wire
from . import chained, control, runner
from . import history as h
from .commit import Change, commit, service_change
from .service import RUNNING, TIMER_STATES, Execution, Timer

if TYPE_CHECKING:
    from .engine import LocalEngine

_log = logging.getLogger("durable_sync.engine")
TIMER_RETRY_MS = 1000  # a timer whose completion failed (e.g. the disk) is tried again after this
MAX_TIMER_FAILURES = 10  # virtual time: failed timers in a row before the error reaches the caller


# -- timers -----------------------------------------------------------------------------------------
CALLBACK_TIMERS = frozenset({"callback_timeout", "callback_heartbeat"})


def push_timer(engine: "LocalEngine", due_ms: int, kind: str, arn: str, op_id: Optional[str] = None) -> None:
    """Arm a timer: ``kind`` of ``arn`` (and of its operation ``op_id``) fires at ``due_ms``.

    With ``real_time_callbacks``, a callback's timers go on the real-time heap instead: they fire once
    as much real time has passed as they are ahead of the virtual clock (``callback_clock_loop``)."""
    with engine._lock:
        timer = Timer(due_ms, next(engine._timer_seq), kind, arn, op_id)
        if engine.real_time_callbacks and kind in CALLBACK_TIMERS:
            if kind == "callback_heartbeat":  # a heartbeat restarts it: the earlier deadline is void (the virtual
                # clock may not have moved, so the virtual due time cannot tell the two apart)
                engine._real_timers[:] = [t for t in engine._real_timers
                                          if (t[2].kind, t[2].arn, t[2].op_id) != (kind, arn, op_id)]
                heapq.heapify(engine._real_timers)
            real_due = int(time.time() * 1000) + max(0, due_ms - engine.clock.now_ms())
            heapq.heappush(engine._real_timers, (real_due, timer.seq, timer))
            engine._cond.notify_all()
        else:
            heapq.heappush(engine._timers, timer)


def next_timer(engine: "LocalEngine", skip_execution_timeouts: bool = False) -> Optional[Timer]:
    """The next timer of a RUNNING execution (those of ended ones are dropped), or None.

    ``skip_execution_timeouts``: the next one that is not an execution timeout (what could still move
    an execution on by itself).
    """
    with engine._lock:
        while engine._timers:
            t = engine._timers[0]
            ex = engine._executions.get(t.arn)
            if ex is None or ex.status != RUNNING:
                heapq.heappop(engine._timers)
                continue
            if skip_execution_timeouts and t.kind == "execution_timeout":
                others = [x for x in engine._timers if x.kind != "execution_timeout"
                          and engine._executions.get(x.arn) is not None
                          and engine._executions[x.arn].status == RUNNING]
                return min(others) if others else None
            return t
        return None


def _due(kind: str, op: dict, now_ms: int) -> Optional[int]:
    """When the timer ``kind`` of operation record ``op`` is due (None: it has none)."""
    if kind == "wait":
        return op["WaitDetails"]["ScheduledEndTimestamp"]
    if kind == "retry":
        return op["StepDetails"]["NextAttemptTimestamp"]
    if kind == "invoke":
        return now_ms  # a chained invoke not settled yet: start (or attach to) its target now
    return op.get("_timeout_due" if kind == "callback_timeout" else "_heartbeat_due")


def rearm(engine: "LocalEngine", ex: Execution, op: dict) -> None:
    """The timers an operation of an execution loaded from the store is waiting on, armed again."""
    state = (op["Type"], op["Status"])
    for kind, acts_on in TIMER_STATES.items():
        due = _due(kind, op, engine.clock.now_ms()) if acts_on == state else None
        if due:
            push_timer(engine, due, kind, ex.arn, op["Id"])


def timer_is_live(ex: Execution, timer: Timer) -> bool:
    """Called with ex.lock: whether ``timer`` will still do something when it fires (its operation is still in
    the state it acts on; a heartbeat timer, the latest deadline)."""
    if timer.kind == "execution_timeout":
        return timer.due_ms == control.timeout_due(ex)
    if timer.kind == "reinvoke":  # the end of the last invocation could not be stored: it is invoked again
        return True
    op = ex.ops.get(timer.op_id)
    if op is None or (op["Type"], op["Status"]) != TIMER_STATES.get(timer.kind):
        return False
    return timer.kind != "callback_heartbeat" or op.get("_heartbeat_due") == timer.due_ms


def advance_to(engine: "LocalEngine", target_ms: int) -> None:
    """Virtual time: fire every timer due by ``target_ms`` in order, each with its re-invocation."""
    while True:
        drain(engine)
        with engine._lock:
            timer = engine._timers[0] if engine._timers else None
            if timer is None or timer.due_ms > target_ms:
                break
            heapq.heappop(engine._timers)
        engine.clock.advance_to(timer.due_ms)
        _fire_or_retry(engine, timer)
    engine.clock.advance_to(target_ms)
    drain(engine)


def _fire_or_retry(engine: "LocalEngine", timer: Timer) -> None:
    """Fire ``timer``; when that fails (the store refused the change, say) log it and arm the timer again
    TIMER_RETRY_MS later: one failing timer never stops the others. Virtual time has no one to wait for
    the fault to clear, so after MAX_TIMER_FAILURES failures in a row the error reaches the caller
    (``wait``, ``advance``), the timer still armed: calling again retries it."""
    try:
        engine._fire(timer)
    except Exception as exc:
        _log.warning("timer %s of %s failed (%s: %s); retrying it in %d ms", timer.kind, timer.arn,
                     type(exc).__name__, exc, TIMER_RETRY_MS)
        push_timer(engine, engine.clock.now_ms() + TIMER_RETRY_MS, timer.kind, timer.arn, timer.op_id)
        if engine.skip_time:
            engine._timer_failures += 1
            if engine._timer_failures >= MAX_TIMER_FAILURES:
                engine._timer_failures = 0
                raise
        return
    engine._timer_failures = 0


def fire(engine: "LocalEngine", timer: Timer) -> None:
    """Do what a due timer stands for (LocalEngine._fire calls this; the loops call LocalEngine._fire)."""
    ex = engine._executions.get(timer.arn)
    if ex is None:
        return
    if timer.kind == "invoke":  # runs user code / starts an execution: never under ex.lock
        if engine._pool is not None:
            try:
                engine._pool.submit(engine._guarded, chained.launch_invoke, ex, timer.op_id)
            except RuntimeError:
                pass  # the engine is closing; a restart re-arms the invoke
        else:
            chained.launch_invoke(engine, ex, timer.op_id)
        return
    if timer.kind == "reinvoke":  # the end of the last invocation could not be stored: invoke it again
        if ex.status == RUNNING:
            mark_ready(engine, ex)
            after_change(engine)
        return
    with ex.lock:
        if ex.status != RUNNING:
            return
        now = engine.clock.now_ms()
        if timer.kind == "execution_timeout":
            due = control.timeout_due(ex)
            if due > now:  # a pause holds the timeout, or moved it on: fire when it is due
                push_timer(engine, due, "execution_timeout", ex.arn)
                return
            engine._complete(ex, "TIMED_OUT", error={"ErrorType": "Execution.Timeout",
                             "ErrorMessage": f"the execution exceeded its timeout of {ex.timeout_s} s"})
            return
        if not timer_is_live(ex, timer):
            return  # its operation moved on (a heartbeat moved the deadline, the callback was answered, ...)
        commit(engine, ex, _complete_timer(timer, ex.ops[timer.op_id], now))  # refused by the store: nothing
        # changed, and _fire_or_retry arms it again
    after_change(engine)


def _complete_timer(timer: Timer, op: dict, now: int) -> Change:
    """Called with ex.lock: the change a due, live timer (wait, retry, callback timeout or heartbeat timeout)
    makes to its operation."""
    kind = timer.kind
    if kind == "wait":
        new = {**op, "Status": wire.SUCCEEDED, "EndTimestamp": now}
        duration = (op["WaitDetails"]["ScheduledEndTimestamp"] - op["StartTimestamp"]) // 1000
        return service_change(new, h.change_event(new, now, {"Duration": duration}))
    if kind == "retry":
        return service_change({**op, "Status": wire.READY})
    error_type = "Callback.Timeout" if kind == "callback_timeout" else "Callback.Heartbeat"
    error = {"ErrorType": error_type, "ErrorMessage": "Callback timed out" if kind == "callback_timeout"
             else "Callback timed out waiting for a heartbeat"}
    new = {**op, "Status": wire.TIMED_OUT, "EndTimestamp": now,
           "CallbackDetails": {**op.get("CallbackDetails", {}), "Error": error}}
    return service_change(new, h.change_event(new, now, {"Error": h.error(error)}))


# -- the ready queue and the loops -------------------------------------------------------------------
def mark_ready(engine: "LocalEngine", ex: Execution) -> None:
    """Queue an invocation of ``ex``."""
    ex.needs_invoke = True
    with engine._lock:
        engine._ready.append(ex.arn)
        engine._cond.notify_all()


def after_change(engine: "LocalEngine") -> None:
    """After a change from outside an invocation: with virtual time, run what it made due."""
    if engine.skip_time:
        drain(engine)


def drain(engine: "LocalEngine") -> None:
    """Virtual time: run every invocation and fire every item due now, until the engine is idle.

    Items due now are the starts of chained invokes (the clock does not move for them). Not
    re-entered on one thread: a call made from inside the loop (e.g. a completion sent from a
    step body, or a chained invoke starting its target) leaves the work to the running loop,
    so an execution is never invoked from inside its own invocation.
    """
    if not engine.skip_time or getattr(engine._tls, "draining", False):
        return
    engine._tls.draining = True
    try:
        while True:
            timer = None
            with engine._lock:
                if engine._ready:
                    arn = engine._ready.popleft()
                elif engine._timers and engine._timers[0].due_ms <= engine.clock.now_ms():
                    timer = heapq.heappop(engine._timers)
                else:
                    return
            if timer is not None:
                _fire_or_retry(engine, timer)  # a failure arms it again later: advance_to reports a lasting one
                continue
            ex = engine._executions.get(arn)
            if ex is not None and runner.invoke(engine, ex) and ex.needs_invoke and ex.status == RUNNING:
                # A completion arrived while it ran (e.g. a callback answer sent from another thread, whose
                # own drain found the invocation in flight and left it): the one who ran it invokes again.
                with engine._lock:
                    engine._ready.append(arn)
    finally:
        engine._tls.draining = False


def callback_clock_loop(engine: "LocalEngine") -> None:
    """Virtual time with ``real_time_callbacks`` (its own thread): fire callback timeouts and heartbeat
    timeouts in real time, then drive the execution on in virtual time as ``wait`` does."""
    with engine._cond:
        while not engine._closed:
            heap = engine._real_timers
            now = time.time() * 1000
            if heap and heap[0][0] <= now:
                timer = heapq.heappop(heap)[2]
                engine._cond.release()
                try:
                    with engine._virtual_lock:
                        _fire_or_retry(engine, timer)
                        if timer.arn in engine._executions:
                            engine.wait(timer.arn)
                except Exception:  # noqa: BLE001 - logged; a failed timer was armed again by _fire_or_retry
                    _log.exception("callback timer %s of %s failed", timer.kind, timer.arn)
                finally:
                    engine._cond.acquire()
                continue
            engine._cond.wait((heap[0][0] - now) / 1000 if heap else None)


def schedule_loop(engine: "LocalEngine") -> None:
    """Real time (the scheduler thread): fire timers when due and hand ready executions to the pool."""
    with engine._cond:
        while not engine._closed:
            while engine._ready:
                arn = engine._ready.popleft()
                ex = engine._executions.get(arn)
                if ex is not None and not ex.invoking:
                    engine._pool.submit(engine._run_invocation, ex)
            timer = engine._timers[0] if engine._timers else None
            if timer is not None and timer.due_ms <= engine.clock.now_ms():
                heapq.heappop(engine._timers)
                engine._cond.release()
                try:
                    _fire_or_retry(engine, timer)
                finally:
                    engine._cond.acquire()
                continue
            engine.clock.wait(engine._cond, timer.due_ms if timer else None)
