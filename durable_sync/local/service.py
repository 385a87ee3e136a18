"""The service's rules: how checkpoint updates and completions change an execution.

Small tables say which actions each operation type accepts and from which
statuses; ``apply_batch`` validates a whole batch against a copy-on-write view
and returns the new operation records, history events and timers, so a refused
batch changes nothing.
"""
from __future__ import annotations

import secrets
import threading
from dataclasses import dataclass, field
from typing import Any, Optional

from .. import wire
from . import history as h

INVALID = "InvalidParameterValueException"
NOT_FOUND = "ResourceNotFoundException"
CONFLICT = "ResourceConflictException"
TOO_LARGE = "RequestEntityTooLargeException"
CALLBACK_TIMEOUT = "CallbackTimeoutException"


class ServiceError(Exception):
    """An error the service answers with: ``code`` is the modeled exception name."""

    def __init__(self, code: str, message: str, status: int = 400):
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


# Action -> statuses the operation may be in before it (None: the operation is new).
TRANSITIONS: dict[str, dict[str, frozenset]] = {
    wire.STEP: {wire.START: frozenset({None, wire.READY}), wire.SUCCEED: frozenset({wire.STARTED}),
                wire.FAIL: frozenset({wire.STARTED}), wire.RETRY: frozenset({wire.STARTED})},
    wire.WAIT: {wire.START: frozenset({None}), wire.CANCEL: frozenset({wire.STARTED})},
    wire.CONTEXT: {wire.START: frozenset({None}), wire.SUCCEED: frozenset({wire.STARTED}),
                   wire.FAIL: frozenset({wire.STARTED})},
    wire.CALLBACK: {wire.START: frozenset({None}), wire.CANCEL: frozenset({wire.STARTED})},
    wire.CHAINED_INVOKE: {wire.START: frozenset({None}), wire.CANCEL: frozenset({wire.STARTED})},
    wire.EXECUTION: {wire.SUCCEED: frozenset({wire.STARTED}), wire.FAIL: frozenset({wire.STARTED})},
}


RUNNING = "RUNNING"  # an execution's status until it ends: SUCCEEDED, FAILED, TIMED_OUT or STOPPED
DEFAULT_EXECUTION_TIMEOUT = 366 * 24 * 3600  # seconds: the execution timeout when none is given, and the longest


@dataclass(order=True)
class Timer:
    due_ms: int
    seq: int
    kind: str = field(compare=False)  # wait | retry | callback_timeout | callback_heartbeat | execution_timeout
    arn: str = field(compare=False)
    op_id: Optional[str] = field(compare=False, default=None)


@dataclass
class Execution:
    """One durable execution as the engine keeps it."""

    arn: str
    function_name: str
    name: str
    exec_op_id: str
    start_ms: int
    timeout_s: int
    input_payload: Optional[str]
    status: str = RUNNING
    end_ms: Optional[int] = None
    result: Optional[str] = None
    error: Optional[dict] = None
    ops: dict = field(default_factory=dict)
    events: list = field(default_factory=list)
    token: str = ""
    token_seq: int = 0
    lock: threading.RLock = field(default_factory=threading.RLock, repr=False)
    invoking: bool = False
    needs_invoke: bool = False
    invocation_failures: int = 0
    service_changed: dict = field(default_factory=dict)  # ops changed by the service since the last checkpoint
    client_tokens: dict = field(default_factory=dict)  # ClientToken -> (token it was sent with, response)
    handler_ref: Optional[str] = None
    on_event: Optional[Any] = field(default=None, repr=False, compare=False)

    token_prefix: str = ""

    def new_token(self, new_invocation: bool = False) -> str:
        """Rotate the checkpoint token; a fresh random prefix for each invocation."""
        if new_invocation or not self.token_prefix:
            self.token_prefix = secrets.token_urlsafe(9)
        self.token_seq += 1
        self.token = f"{self.token_prefix}.{self.token_seq}"
        return self.token

    def add_event(self, event: dict) -> dict:
        event["EventId"] = len(self.events) + 1
        self.events.append(event)
        if self.on_event is not None:
            self.on_event(self, event)
        return event


def _invalid(message: str) -> ServiceError:
    return ServiceError(INVALID, message)


def _delay(value: Any, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= wire.MAX_DELAY_SECONDS:
        raise _invalid(f"{what} must be an integer between 1 and {wire.MAX_DELAY_SECONDS} seconds, got {value!r}")
    return value


def apply_batch(ex: Execution, updates: list[dict], now_ms: int, new_callback_id=None, trusted: bool = False):
    """Validate and apply ``updates``; returns (changed ops, events, timers). Raises ServiceError.

    ``trusted``: the updates come from this process's SDK, which checked ids, names and sizes
    (wire.validate_update) before sending; the state-machine rules are always applied.
    """
    if not isinstance(updates, list):
        raise _invalid("Updates must be a list")
    if len(updates) > wire.MAX_BATCH_UPDATES:
        raise _invalid(f"a checkpoint holds at most {wire.MAX_BATCH_UPDATES} updates, got {len(updates)}")
    view: dict[str, dict] = {}
    events: list[dict] = []
    timers: list[tuple[int, str, str]] = []
    for update in updates:
        _apply_one(ex, view, update, now_ms, events, timers, new_callback_id, trusted)
    return view, events, timers


def _apply_one(ex, view, u, now_ms, events, timers, new_callback_id, trusted=False) -> None:
    if not isinstance(u, dict):
        raise _invalid("each update must be an object")
    op_id, op_type, action = u.get("Id"), u.get("Type"), u.get("Action")
    if not trusted:
        try:
            wire.validate_update(u)
        except Exception as exc:  # noqa: BLE001 - reported as the service would
            raise _invalid(str(exc)) from None
    allowed = TRANSITIONS[op_type]
    if action not in allowed:
        raise _invalid(f"operation {op_id}: action {action} is not valid for type {op_type}")
    old = view.get(op_id) or ex.ops.get(op_id)
    prev_status = old["Status"] if old else None
    if prev_status not in allowed[action]:
        state = f"status {prev_status}" if old else "not started"
        raise _invalid(f"operation {op_id} ({op_type}): invalid state transition, {action} is not allowed "
                       f"when the operation is {state}")
    if old is not None and op_type != wire.EXECUTION:
        for key in ("Type", "SubType", "Name", "ParentId"):
            if u.get(key) != old.get(key):
                raise _invalid(f"operation {op_id}: {key} {u.get(key)!r} is inconsistent with the recorded "
                               f"{old.get(key)!r}")
    parent_id = u.get("ParentId")
    if old is None and parent_id is not None:
        parent = view.get(parent_id) or ex.ops.get(parent_id)
        if parent is None or parent["Type"] != wire.CONTEXT:
            raise _invalid(f"operation {op_id}: unknown parent context {parent_id}")
    if old is None:
        op = {"Id": op_id, "Type": op_type, "SubType": u.get("SubType"), "Status": wire.STARTED,
              "StartTimestamp": now_ms}
        if parent_id is not None:
            op["ParentId"] = parent_id
        if u.get("Name") is not None:
            op["Name"] = u["Name"]
    else:
        op = dict(old)
    view[op_id] = op
    handler = _HANDLERS[(op_type, action)]
    handler(ex, op, u, now_ms, events, timers, new_callback_id)


def _finish(op: dict, status: str, now_ms: int, details_key: str, **details: Any) -> None:
    op["Status"] = status
    op["EndTimestamp"] = now_ms
    merged = dict(op.get(details_key) or {})
    merged.update({k: v for k, v in details.items() if v is not None})
    op[details_key] = merged


# -- STEP -------------------------------------------------------------------------------
def _step_start(ex, op, u, now_ms, events, timers, _cb) -> None:
    details = dict(op.get("StepDetails") or {})
    details["Attempt"] = details.get("Attempt", 0) + 1 if op["Status"] == wire.READY else 1
    details.pop("NextAttemptTimestamp", None)
    op["Status"] = wire.STARTED
    op["StepDetails"] = details
    events.append(h.op_event("StepStarted", op, now_ms))


def _step_succeed(ex, op, u, now_ms, events, timers, _cb) -> None:
    _finish(op, wire.SUCCEEDED, now_ms, "StepDetails", Result=u.get("Payload"))
    op["StepDetails"].pop("Error", None)
    events.append(h.op_event("StepSucceeded", op, now_ms, {
        "Result": h.result(u.get("Payload")), "RetryDetails": {"CurrentAttempt": op["StepDetails"]["Attempt"]}}))


def _step_fail(ex, op, u, now_ms, events, timers, _cb) -> None:
    _finish(op, wire.FAILED, now_ms, "StepDetails", Error=u.get("Error"))
    events.append(h.op_event("StepFailed", op, now_ms, {
        "Error": h.error(u.get("Error")), "RetryDetails": {"CurrentAttempt": op["StepDetails"]["Attempt"]}}))


def _step_retry(ex, op, u, now_ms, events, timers, _cb) -> None:
    delay = _delay((u.get("StepOptions") or {}).get("NextAttemptDelaySeconds"), "StepOptions.NextAttemptDelaySeconds")
    details = dict(op.get("StepDetails") or {})
    due = now_ms + delay * 1000
    details["NextAttemptTimestamp"] = due
    retry = {"CurrentAttempt": details.get("Attempt", 1), "NextAttemptDelaySeconds": delay}
    if u.get("Error") is not None:
        details["Error"] = u["Error"]
        events.append(h.op_event("StepFailed", op, now_ms, {"Error": h.error(u["Error"]), "RetryDetails": retry}))
    else:
        details["Result"] = u.get("Payload")
        details.pop("Error", None)
        events.append(h.op_event("StepSucceeded", op, now_ms, {"Result": h.result(u.get("Payload")),
                                                                "RetryDetails": retry}))
    op["Status"] = wire.PENDING
    op["StepDetails"] = details
    timers.append((due, "retry", op["Id"]))


# -- WAIT -------------------------------------------------------------------------------
def _wait_start(ex, op, u, now_ms, events, timers, _cb) -> None:
    seconds = _delay((u.get("WaitOptions") or {}).get("WaitSeconds"), "WaitOptions.WaitSeconds")
    due = now_ms + seconds * 1000
    op["WaitDetails"] = {"ScheduledEndTimestamp": due}
    events.append(h.op_event("WaitStarted", op, now_ms, {"Duration": seconds, "ScheduledEndTimestamp": due}))
    timers.append((due, "wait", op["Id"]))


def _wait_cancel(ex, op, u, now_ms, events, timers, _cb) -> None:
    op["Status"] = wire.CANCELLED
    op["EndTimestamp"] = now_ms
    details = {"Error": h.error(u["Error"])} if u.get("Error") else {}
    events.append(h.op_event("WaitCancelled", op, now_ms, details))


# -- CONTEXT ----------------------------------------------------------------------------
def _context_start(ex, op, u, now_ms, events, timers, _cb) -> None:
    events.append(h.op_event("ContextStarted", op, now_ms))


def _context_done(status: str, event_type: str):
    def apply(ex, op, u, now_ms, events, timers, _cb) -> None:
        replay = bool((u.get("ContextOptions") or {}).get("ReplayChildren"))
        if status == wire.SUCCEEDED:
            _finish(op, status, now_ms, "ContextDetails", Result=u.get("Payload"), ReplayChildren=replay or None)
            details = {"Result": h.result(u.get("Payload"))}
        else:
            _finish(op, status, now_ms, "ContextDetails", Error=u.get("Error"), ReplayChildren=replay or None)
            details = {"Error": h.error(u.get("Error"))}
        events.append(h.op_event(event_type, op, now_ms, details))
    return apply


# -- CALLBACK ---------------------------------------------------------------------------
def _callback_start(ex, op, u, now_ms, events, timers, new_callback_id) -> None:
    opts = u.get("CallbackOptions") or {}
    timeout, heartbeat = opts.get("TimeoutSeconds"), opts.get("HeartbeatTimeoutSeconds")
    if timeout:
        _delay(timeout, "CallbackOptions.TimeoutSeconds")
        op["_timeout_due"] = now_ms + timeout * 1000
        timers.append((op["_timeout_due"], "callback_timeout", op["Id"]))
    if heartbeat:
        _delay(heartbeat, "CallbackOptions.HeartbeatTimeoutSeconds")
        op["_heartbeat_s"] = heartbeat
        op["_heartbeat_due"] = now_ms + heartbeat * 1000
        timers.append((op["_heartbeat_due"], "callback_heartbeat", op["Id"]))
    callback_id = new_callback_id(ex, op["Id"])
    op["CallbackDetails"] = {"CallbackId": callback_id}
    details = {"CallbackId": callback_id}
    if timeout:
        details["Timeout"] = timeout
    if heartbeat:
        details["HeartbeatTimeout"] = heartbeat
    events.append(h.op_event("CallbackStarted", op, now_ms, details))


def _cancel(event_type: str):
    def apply(ex, op, u, now_ms, events, timers, _cb) -> None:
        op["Status"] = wire.CANCELLED
        op["EndTimestamp"] = now_ms
        events.append(h.op_event(event_type, op, now_ms, {}))
    return apply


# -- CHAINED_INVOKE ---------------------------------------------------------------------
def _invoke_start(ex, op, u, now_ms, events, timers, _cb) -> None:
    opts = u.get("ChainedInvokeOptions") or {}
    if not opts.get("FunctionName"):
        raise _invalid(f"operation {op['Id']}: ChainedInvokeOptions.FunctionName is required")
    op["ChainedInvokeDetails"] = {}
    op["_invoke"] = {"FunctionName": opts["FunctionName"], "TenantId": opts.get("TenantId"),
                     "Payload": u.get("Payload")}
    details = {"FunctionName": opts["FunctionName"], "Input": h.result(u.get("Payload"))}
    if opts.get("TenantId"):
        details["TenantId"] = opts["TenantId"]
    events.append(h.op_event("ChainedInvokeStarted", op, now_ms, details))
    timers.append((now_ms, "invoke", op["Id"]))


# -- EXECUTION --------------------------------------------------------------------------
def _execution_done(status: str):
    def apply(ex, op, u, now_ms, events, timers, _cb) -> None:
        if status == wire.SUCCEEDED:
            op["_result"] = u.get("Payload")
        else:
            op["_error"] = u.get("Error")
    return apply


_HANDLERS = {
    (wire.STEP, wire.START): _step_start, (wire.STEP, wire.SUCCEED): _step_succeed,
    (wire.STEP, wire.FAIL): _step_fail, (wire.STEP, wire.RETRY): _step_retry,
    (wire.WAIT, wire.START): _wait_start, (wire.WAIT, wire.CANCEL): _wait_cancel,
    (wire.CONTEXT, wire.START): _context_start,
    (wire.CONTEXT, wire.SUCCEED): _context_done(wire.SUCCEEDED, "ContextSucceeded"),
    (wire.CONTEXT, wire.FAIL): _context_done(wire.FAILED, "ContextFailed"),
    (wire.CALLBACK, wire.START): _callback_start, (wire.CALLBACK, wire.CANCEL): _cancel("CallbackFailed"),
    (wire.CHAINED_INVOKE, wire.START): _invoke_start,
    (wire.CHAINED_INVOKE, wire.CANCEL): _cancel("ChainedInvokeStopped"),
    (wire.EXECUTION, wire.SUCCEED): _execution_done(wire.SUCCEEDED),
    (wire.EXECUTION, wire.FAIL): _execution_done(wire.FAILED),
}


def visible_operations(ex: Execution) -> list[dict]:
    """Operations the SDK sees: children of a context completed without ReplayChildren are hidden."""
    hidden: set = set()
    out = []
    ops = ex.ops
    for op in ops.values():
        parent_id = op.get("ParentId")
        if parent_id is not None:
            if parent_id in hidden:
                hidden.add(op["Id"])
                continue
            parent = ops.get(parent_id)
            if parent is not None and parent["Status"] in wire.TERMINAL and not (
                    parent.get("ContextDetails") or {}).get("ReplayChildren"):
                hidden.add(op["Id"])
                continue
        out.append(public_op(op))
    return out


_PRIVATE_KEYS_TYPES = frozenset({wire.EXECUTION, wire.CHAINED_INVOKE, wire.CALLBACK})


def public_op(op: dict) -> dict:
    """The wire form of an operation record (engine-private keys start with '_').

    Records are never mutated in place (updates copy them), so sharing is safe.
    """
    if op["Type"] not in _PRIVATE_KEYS_TYPES:
        return op
    return {k: v for k, v in op.items() if not k.startswith("_")}
