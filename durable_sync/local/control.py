"""Pause and resume of an execution (PauseDurableExecution, ResumeDurableExecution).

A paused execution stays RUNNING in its lifecycle (``ex.status``: waits, retries, callbacks and its
timeout go on); the engine only stops invoking it. The pause in force is kept on the execution's
EXECUTION operation record under ``PAUSE_KEY`` (engine-private, persisted with the record) and is
reported as the service's PAUSING / PAUSED status. A pause may hold the execution timeout, so when an
execution times out is worked out here too. Kept out of engine.py because it is a small state machine of
its own that the checkpoint path, the invocation runner and the timers all consult.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

from .. import wire
from . import history as h
from . import scheduler
from .commit import Change, commit
from .service import CONFLICT, DEFAULT_EXECUTION_TIMEOUT, INVALID, RUNNING, Execution, ServiceError

if TYPE_CHECKING:
    from .engine import LocalEngine

PAUSING, PAUSED = "PAUSING", "PAUSED"
PAUSE_KEY = "_pause"  # {"Status", "RequestedMs", "TimeoutPaused", "Reason", "PausedMs"?, "Interrupted"?}
EXTENSION_KEY = "_timeout_extension_ms"  # the execution timeout moved on by time spent paused
CONTROL_EVENTS = frozenset({"ExecutionPaused", "ExecutionResumed"})
_CLIENT_TOKEN_TTL_MS = 15 * 60 * 1000  # a repeated pause / resume with the same ClientToken is a no-op this long
MAX_REASON_CHARS = 1024  # PauseReason / ResumeReason


def pause_execution(engine: "LocalEngine", arn: str, reason: Optional[str], execution_timeout_paused: Any,
                    client_token: Optional[str]) -> None:
    """The work of LocalEngine.pause() (see its docstring for the rules)."""
    check_reason(reason)
    timeout_paused = True if execution_timeout_paused is None else bool(execution_timeout_paused)
    ex = engine._get(arn)
    key, args = ("pause", arn, client_token), (reason, timeout_paused)
    with ex.lock:
        if not repeated(engine, key, args):
            if ex.status != RUNNING:
                raise ServiceError(CONFLICT, f"execution {arn} is {ex.status}; only a RUNNING execution can be "
                                             "paused", status=409)
            current = pause_of(ex)
            if current is not None:
                raise ServiceError(CONFLICT, f"execution {arn} is {current['Status']} already; resume it "
                                             "first", status=409)
            pause = {"Status": PAUSING, "RequestedMs": engine.clock.now_ms(), "TimeoutPaused": timeout_paused,
                     "Reason": reason}
            if ex.invoking:  # PAUSED at its next checkpoint, or when it ends
                save_exec_record(engine, ex, {**ex.ops[ex.exec_op_id], PAUSE_KEY: pause})
            else:
                pause_takes_effect(engine, ex, pause)
            remember(engine, key, args)


def resume_execution(engine: "LocalEngine", arn: str, reason: Optional[str], client_token: Optional[str]) -> None:
    """The work of LocalEngine.resume_execution() (see its docstring for the rules)."""
    check_reason(reason)
    ex = engine._get(arn)
    key, args = ("resume", arn, client_token), (reason,)
    with ex.lock:
        if not repeated(engine, key, args):
            pause = pause_of(ex)
            if pause is None:
                raise ServiceError(CONFLICT, f"execution {arn} is {ex.status}, not PAUSED or PAUSING; only a "
                                             "paused execution can be resumed", status=409)
            now = engine.clock.now_ms()
            record = {k: v for k, v in ex.ops[ex.exec_op_id].items() if k != PAUSE_KEY}
            event = None
            if pause["Status"] == PAUSED:
                if pause["TimeoutPaused"]:
                    record[EXTENSION_KEY] = record.get(EXTENSION_KEY, 0) + max(0, now - pause["PausedMs"])
                details: dict[str, Any] = {"ResumeRequestTimestamp": now}
                if reason is not None:
                    details["Reason"] = h.result(reason)
                event = h.execution_event("ExecutionResumed", record, now, details)
            save_exec_record(engine, ex, record, event)
            remember(engine, key, args)
            if pause["Status"] == PAUSED:
                scheduler.push_timer(engine, timeout_due(ex), "execution_timeout", arn)
                if ex.needs_invoke:
                    scheduler.mark_ready(engine, ex)
    scheduler.after_change(engine)


def pause_of(ex: Execution) -> Optional[dict]:
    """The pause in force on a RUNNING execution (its record: Status PAUSING or PAUSED), else None."""
    if ex.status != RUNNING:
        return None
    record = ex.ops.get(ex.exec_op_id)
    return record.get(PAUSE_KEY) if record is not None else None


def pause_takes_effect(engine: "LocalEngine", ex: Execution, pause: dict) -> None:
    """Called with ex.lock: the execution is PAUSED from now (history: ExecutionPaused)."""
    now = engine.clock.now_ms()
    pause = {**pause, "Status": PAUSED, "PausedMs": now}
    details: dict[str, Any] = {"PauseRequestTimestamp": pause["RequestedMs"],
                               "ExecutionTimeoutPaused": pause["TimeoutPaused"]}
    if pause.get("Reason") is not None:
        details["Reason"] = h.result(pause["Reason"])
    record = {**ex.ops[ex.exec_op_id], PAUSE_KEY: pause}
    save_exec_record(engine, ex, record, h.execution_event("ExecutionPaused", record, now, details))
    with engine._cond:
        engine._cond.notify_all()


def save_exec_record(engine: "LocalEngine", ex: Execution, record: dict, event: Optional[dict] = None) -> None:
    """Called with ex.lock: replace the EXECUTION operation's record (and append ``event``), through the commit path."""
    commit(engine, ex, Change(ops={ex.exec_op_id: record}, events=[event] if event is not None else []))


def timeout_due(ex: Execution) -> int:
    """When the execution times out: its timeout, moved on by time spent paused with the timeout held;
    while so paused, 366 days after the start (the cap that holds in every case)."""
    cap = ex.start_ms + DEFAULT_EXECUTION_TIMEOUT * 1000
    record = ex.ops.get(ex.exec_op_id) or {}
    pause = record.get(PAUSE_KEY)
    if pause is not None and pause["Status"] == PAUSED and pause["TimeoutPaused"]:
        return cap
    return min(ex.start_ms + ex.timeout_s * 1000 + record.get(EXTENSION_KEY, 0), cap)


def repeated(engine: "LocalEngine", key: tuple, args: tuple) -> bool:
    """A pause / resume repeated with its ClientToken within 15 minutes (True: do nothing)."""
    if key[2] is None:
        return False
    with engine._lock:
        seen = engine._control_tokens.get(key)
    if seen is None or seen[1] <= engine.clock.now_ms():
        return False
    if seen[0] != args:
        raise ServiceError(INVALID, f"ClientToken {key[2]!r} was used for another {key[0]} request of this "
                                    "execution within 15 minutes; use a new token")
    return True


def remember(engine: "LocalEngine", key: tuple, args: tuple) -> None:
    """Record a pause / resume made with a ClientToken, so that a repeat within 15 minutes is a no-op."""
    if key[2] is None:
        return
    now = engine.clock.now_ms()
    with engine._lock:
        if len(engine._control_tokens) >= 1024:
            for old in [k for k, (_, expiry) in engine._control_tokens.items() if expiry <= now]:
                del engine._control_tokens[old]
            while len(engine._control_tokens) >= 1024:
                del engine._control_tokens[next(iter(engine._control_tokens))]
        engine._control_tokens[key] = (args, now + _CLIENT_TOKEN_TTL_MS)


def check_reason(reason: Any) -> None:
    """Refuse a PauseReason / ResumeReason that is not a string of at most MAX_REASON_CHARS characters."""
    if reason is not None and (not isinstance(reason, str) or len(reason) > MAX_REASON_CHARS):
        raise ServiceError(INVALID, f"a pause / resume reason is a string of at most {MAX_REASON_CHARS} characters")


def pause_details(pause: dict) -> dict:
    """PauseDetails as boto3 returns them."""
    details = {"PauseRequestTimestamp": wire.ms_to_datetime(pause["RequestedMs"]),
               "ExecutionTimeoutPaused": pause["TimeoutPaused"]}
    if pause.get("Reason") is not None:
        details["Reason"] = pause["Reason"]
    return details
