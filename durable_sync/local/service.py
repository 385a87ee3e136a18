"""The service's rules: how checkpoint updates and completions change an execution.

Small tables say which actions each operation type accepts and from which
statuses; ``apply_batch`` validates a whole batch against a copy-on-write view
and returns what it would change (new operation records, history events, timers,
the execution's end), so a refused batch changes nothing: the
engine commits the ``Change`` only once the whole batch passed.

The rules follow the service's CheckpointDurableExecution: a SUCCEED carries no
Error and a FAIL no Payload, a RETRY not both; an Error is at most
``MAX_ERROR_BYTES`` of JSON; at most one EXECUTION update, the last of its batch
(its Id is free: the official SDK sends ``execution-result-<ms>``), which ends the
execution; and the state transitions of ``TRANSITIONS``.
"""
from __future__ import annotations

import json
import secrets
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from .. import wire
from ..events import retry_event
from . import history as h

from ..errors import CALLBACK_TIMEOUT, CONFLICT, INVALID, NOT_FOUND, ServiceError  # noqa: F401 - re-exported


# Action -> statuses the operation may be in before it (None: the operation is new). A callback and a
# chained invoke take START only: the service completes them (an answer, a timeout, the target's end).
TRANSITIONS: dict[str, dict[str, frozenset]] = {
    wire.STEP: {wire.START: frozenset({None, wire.READY}), wire.SUCCEED: frozenset({wire.STARTED}),
                wire.FAIL: frozenset({wire.STARTED}), wire.RETRY: frozenset({wire.STARTED})},
    wire.WAIT: {wire.START: frozenset({None}), wire.CANCEL: frozenset({wire.STARTED})},
    wire.CONTEXT: {wire.START: frozenset({None}), wire.SUCCEED: frozenset({wire.STARTED}),
                   wire.FAIL: frozenset({wire.STARTED})},
    wire.CALLBACK: {wire.START: frozenset({None})},
    wire.CHAINED_INVOKE: {wire.START: frozenset({None})},
    wire.EXECUTION: {wire.SUCCEED: frozenset({wire.STARTED}), wire.FAIL: frozenset({wire.STARTED})},
}

MAX_ERROR_BYTES = 32 * 1024  # an update's Error, as JSON text: the service refuses a larger one
MAX_CALLBACK_TIMEOUT_SECONDS = 99_999_999  # CallbackOptions bounds of the botocore model; 0 means none
EXECUTED_VERSION = wire.LATEST  # the version every local function runs as
ACCOUNT, REGION = wire.LOCAL_ACCOUNT, wire.LOCAL_REGION  # of every local function's ARN (wire.function_arn)


def new_callback_id() -> str:
    """256 random bits; hex fits the service's CallbackId pattern [A-Za-z0-9+/]+={0,2}, a URL path segment
    and a CLI argument (token_urlsafe may start with '-', which argparse takes for an option)."""
    return secrets.token_hex(32)


RUNNING = wire.RUNNING  # an execution's status until it ends: SUCCEEDED, FAILED, TIMED_OUT or STOPPED
DEFAULT_EXECUTION_TIMEOUT = 366 * 24 * 3600  # seconds: the execution timeout when none is given, and the longest


@dataclass(order=True, slots=True)
class Timer:
    due_ms: int
    seq: int
    kind: str = field(compare=False)  # a TIMER_STATES kind, execution_timeout or reinvoke
    arn: str = field(compare=False)
    op_id: Optional[str] = field(compare=False, default=None)


#: The operation (type, status) each kind of operation timer acts on: a timer whose operation left that
#: state is stale. (``execution_timeout`` and ``reinvoke`` act on the execution itself.)
TIMER_STATES = {"wait": (wire.WAIT, wire.STARTED), "retry": (wire.STEP, wire.PENDING),
                "callback_timeout": (wire.CALLBACK, wire.STARTED), "callback_heartbeat": (wire.CALLBACK, wire.STARTED),
                "invoke": (wire.CHAINED_INVOKE, wire.STARTED)}


def callback_id(op: dict) -> Optional[str]:
    """The CallbackId of a CALLBACK operation record (None for any other)."""
    return (op.get("CallbackDetails") or {}).get("CallbackId")


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

    token_prefix: str = ""

    def new_token(self, new_invocation: bool = False) -> str:
        """Rotate the checkpoint token; a fresh random prefix for each invocation."""
        if new_invocation or not self.token_prefix:
            self.token_prefix = secrets.token_urlsafe(9)
        self.token_seq += 1
        self.token = f"{self.token_prefix}.{self.token_seq}"
        return self.token


def _invalid(message: str) -> ServiceError:
    return ServiceError(INVALID, message)


def check_text(value: Any, what: str) -> None:
    """Refuse text that is not valid Unicode: a lone surrogate (JSON can carry ``"\\ud800"``; UTF-8, and so
    the store, cannot). Walks dicts and lists; raises InvalidParameterValueException naming where."""
    if isinstance(value, str):
        if not value.isascii():
            try:
                value.encode("utf-8")
            except UnicodeEncodeError as exc:
                raise _invalid(f"{what} is not valid Unicode text: it holds a lone surrogate "
                               f"(U+{ord(value[exc.start]):04X}) at character {exc.start}") from None
    elif isinstance(value, dict):
        for key, item in value.items():
            check_text(key, what)
            check_text(item, f"{what}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            check_text(item, f"{what}[{i}]")


def _delay(value: Any, what: str, low: int = 1, high: int = wire.MAX_DELAY_SECONDS) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise _invalid(f"{what} must be an integer between {low} and {high} seconds, got {value!r}")
    return value


@dataclass(slots=True)
class Change:
    """One change of one execution: what an accepted request or event does to it. The engine commits it
    (``commit.commit``: store, then memory, then announce)."""

    ops: dict = field(default_factory=dict)  # operation id -> its new record
    events: list = field(default_factory=list)  # new history events (EventId is given by commit)
    fields: dict = field(default_factory=dict)  # execution field -> new value (FIELDS)
    timers: list = field(default_factory=list)  # (due ms, kind, operation id) to arm
    ready: bool = False  # the execution needs an invocation
    #: Made by the service, not by the execution's own checkpoint: the operations go into the next
    #: checkpoint response (NewExecutionState).
    by_service: bool = False

    def merge(self, other: "Change") -> "Change":
        """This change followed by ``other``, as one."""
        self.ops.update(other.ops)
        self.events.extend(other.events)
        self.fields.update(other.fields)
        self.timers.extend(other.timers)
        self.ready = self.ready or other.ready
        self.by_service = self.by_service or other.by_service
        return self


#: How a CHAINED_INVOKE START learns its target: (function name, caller, operation id) -> (target ARN or
#: None when the target is not a durable function, execution id to start it with).
InvokeTarget = Callable[[str, "Execution", str], tuple]


def apply_batch(ex: Execution, updates: list[dict], now_ms: int, trusted: bool = False,
                invoke_target: Optional[InvokeTarget] = None) -> tuple[Change, Optional[tuple]]:
    """Validate and apply ``updates`` on a copy-on-write view; returns the change (its operations are the
    batch's alone) and how an EXECUTION update ends the execution, ``(status, result, error)`` or None.
    Raises ServiceError.

    ``trusted``: the updates come from this process's SDK, which checked ids, names and sizes
    (wire.validate_update) before sending and builds every update of an operation from one record (so
    Type, SubType, Name and ParentId agree with the recorded ones); the state-machine rules are always
    applied.
    """
    if not isinstance(updates, list):
        raise _invalid("Updates must be a list")
    if len(updates) > wire.MAX_BATCH_UPDATES:
        raise _invalid(f"a checkpoint holds at most {wire.MAX_BATCH_UPDATES} updates, got {len(updates)}")
    change = Change({}, [], {}, [])
    ending = None
    for update in updates:
        if ending is not None:  # an update follows the EXECUTION update
            _refuse_execution_position(updates)
        ending = _apply_one(ex, change, update, now_ms, trusted, invoke_target)
    return change, ending


def _refuse_execution_position(updates: list) -> None:
    """An EXECUTION update is not the last of its batch: the service's refusal."""
    positions = [i for i, u in enumerate(updates) if isinstance(u, dict) and u.get("Type") == wire.EXECUTION]
    if len(positions) > 1:
        raise _invalid(f"a checkpoint holds at most one EXECUTION update, got {len(positions)}")
    raise _invalid(f"the EXECUTION update must be the last of its checkpoint; it is update {positions[0] + 1} of "
                   f"{len(updates)}")


def _check_fields(u: dict) -> None:
    """The members an action may carry (the service refuses the others rather than drop them)."""
    action, error = u.get("Action"), u.get("Error")
    if error is None:
        if action == wire.FAIL and u.get("Payload") is not None:
            raise _invalid(f"operation {u.get('Id')} ({u.get('Type')}): a FAIL update cannot carry a Payload")
        return
    where = f"operation {u.get('Id')} ({u.get('Type')})"
    if action == wire.SUCCEED:
        raise _invalid(f"{where}: a SUCCEED update cannot carry an Error")
    if action == wire.FAIL and u.get("Payload") is not None:
        raise _invalid(f"{where}: a FAIL update cannot carry a Payload")
    if action == wire.RETRY and u.get("Payload") is not None:
        raise _invalid(f"{where}: a RETRY update carries an Error or a Payload, not both")
    if not isinstance(error, dict):
        raise _invalid(f"{where}: Error must be an ErrorObject (ErrorType, ErrorMessage, ErrorData, StackTrace)")
    size = len(json.dumps(error, ensure_ascii=False).encode("utf-8"))  # check_text refused lone surrogates
    if size > MAX_ERROR_BYTES:
        raise _invalid(f"{where}: the Error object is {size} bytes; it must be at most {MAX_ERROR_BYTES} bytes")


def _apply_one(ex, change: Change, u, now_ms, trusted, invoke_target) -> Optional[tuple]:
    """Apply one update to ``change``; returns how it ends the execution (an EXECUTION update), else None."""
    if not isinstance(u, dict):
        raise _invalid("each update must be an object")
    get = u.get
    op_id, op_type, action = get("Id"), get("Type"), get("Action")
    if not trusted:
        check_text(u, f"update {op_id!r}" if isinstance(op_id, str) else "an update")
        try:
            wire.validate_update(u)
        except Exception as exc:  # noqa: BLE001 - reported as the service would
            raise _invalid(str(exc)) from None
    allowed = TRANSITIONS[op_type].get(action)  # the statuses the operation may be in before it
    if allowed is None:
        raise _invalid(f"operation {op_id}: action {action} is not valid for type {op_type}")
    if action == wire.FAIL or get("Error") is not None:  # _check_fields refuses nothing else
        _check_fields(u)
    if op_type == wire.EXECUTION:  # the execution itself, whatever the update's Id
        if ex.ops[ex.exec_op_id]["Status"] not in allowed:
            raise _invalid(f"execution {ex.exec_op_id}: {action} is not allowed when it is "
                           f"{ex.ops[ex.exec_op_id]['Status']}")
        if action == wire.SUCCEED:
            return wire.SUCCEEDED, get("Payload") if get("Payload") is not None else "null", None
        return wire.FAILED, None, get("Error") or {"ErrorType": "Unknown"}
    view = change.ops
    old = view.get(op_id) or ex.ops.get(op_id)
    if old is None:
        if None not in allowed:
            raise _transition_refused(op_id, op_type, action, None)
        parent_id = get("ParentId")
        op = {"Id": op_id, "Type": op_type, "SubType": get("SubType"), "Status": wire.STARTED,
              "StartTimestamp": now_ms}
        if parent_id is not None:
            parent = view.get(parent_id) or ex.ops.get(parent_id)
            if parent is None or parent["Type"] != wire.CONTEXT:
                raise _invalid(f"operation {op_id}: unknown parent context {parent_id}")
            op["ParentId"] = parent_id
        if get("Name") is not None:
            op["Name"] = u["Name"]
    else:
        if old["Status"] not in allowed:
            raise _transition_refused(op_id, op_type, action, old["Status"])
        if not trusted:  # (this process's SDK builds every update of an operation from one record of it)
            for key in ("Type", "SubType", "Name", "ParentId"):
                if get(key) != old.get(key):
                    raise _invalid(f"operation {op_id}: {key} {get(key)!r} is inconsistent with the recorded "
                                   f"{old.get(key)!r}")
        op = dict(old)
    view[op_id] = op
    if op_type == wire.CHAINED_INVOKE:  # START only (TRANSITIONS)
        _invoke_start(ex, op, u, now_ms, change.events, change.timers, invoke_target)
    else:
        _HANDLERS[(op_type, action)](ex, op, u, now_ms, change.events, change.timers)
    return None


def _transition_refused(op_id: str, op_type: str, action: str, status: Optional[str]) -> ServiceError:
    state = f"status {status}" if status is not None else "not started"
    return _invalid(f"operation {op_id} ({op_type}): invalid state transition, {action} is not allowed "
                    f"when the operation is {state}")


def _finish(op: dict, status: str, now_ms: int, details_key: str, **details: Any) -> None:
    op["Status"] = status
    op["EndTimestamp"] = now_ms
    merged = dict(op.get(details_key) or {})
    for key, value in details.items():
        if value is not None:
            merged[key] = value
    op[details_key] = merged


# -- STEP -------------------------------------------------------------------------------
def _step_start(ex, op, u, now_ms, events, timers) -> None:
    details = dict(op.get("StepDetails") or {})
    details["Attempt"] = details.get("Attempt", 0) + 1 if op["Status"] == wire.READY else 1
    details.pop("NextAttemptTimestamp", None)
    op["Status"] = wire.STARTED
    op["StepDetails"] = details
    events.append(h.change_event(op, now_ms))


def _step_succeed(ex, op, u, now_ms, events, timers) -> None:
    _finish(op, wire.SUCCEEDED, now_ms, "StepDetails", Result=u.get("Payload"))
    op["StepDetails"].pop("Error", None)
    events.append(h.change_event(op, now_ms, {
        "Result": h.result(u.get("Payload")), "RetryDetails": {"CurrentAttempt": op["StepDetails"]["Attempt"]}}))


def _step_fail(ex, op, u, now_ms, events, timers) -> None:
    _finish(op, wire.FAILED, now_ms, "StepDetails", Error=u.get("Error"))
    events.append(h.change_event(op, now_ms, {
        "Error": h.error(u.get("Error")), "RetryDetails": {"CurrentAttempt": op["StepDetails"]["Attempt"]}}))


def _step_retry(ex, op, u, now_ms, events, timers) -> None:
    delay = _delay((u.get("StepOptions") or {}).get("NextAttemptDelaySeconds"), "StepOptions.NextAttemptDelaySeconds")
    details = dict(op.get("StepDetails") or {})
    due = now_ms + delay * 1000
    details["NextAttemptTimestamp"] = due
    retry = {"CurrentAttempt": details.get("Attempt", 1), "NextAttemptDelaySeconds": delay}
    if u.get("Error") is not None:
        details["Error"] = u["Error"]
        events.append(h.op_event(retry_event(True), op, now_ms, {"Error": h.error(u["Error"]), "RetryDetails": retry}))
    else:
        details["Result"] = u.get("Payload")
        details.pop("Error", None)
        events.append(h.op_event(retry_event(False), op, now_ms, {"Result": h.result(u.get("Payload")),
                                                                "RetryDetails": retry}))
    op["Status"] = wire.PENDING
    op["StepDetails"] = details
    timers.append((due, "retry", op["Id"]))


# -- WAIT -------------------------------------------------------------------------------
def _wait_start(ex, op, u, now_ms, events, timers) -> None:
    seconds = _delay((u.get("WaitOptions") or {}).get("WaitSeconds"), "WaitOptions.WaitSeconds")
    due = now_ms + seconds * 1000
    op["WaitDetails"] = {"ScheduledEndTimestamp": due}
    events.append(h.change_event(op, now_ms, {"Duration": seconds, "ScheduledEndTimestamp": due}))
    timers.append((due, "wait", op["Id"]))


def _wait_cancel(ex, op, u, now_ms, events, timers) -> None:
    op["Status"] = wire.CANCELLED
    op["EndTimestamp"] = now_ms
    details = {"Error": h.error(u["Error"])} if u.get("Error") else {}
    events.append(h.change_event(op, now_ms, details))


# -- CONTEXT ----------------------------------------------------------------------------
def _context_start(ex, op, u, now_ms, events, timers) -> None:
    events.append(h.change_event(op, now_ms))


def _context_done(status: str):
    def apply(ex, op, u, now_ms, events, timers) -> None:
        replay = bool((u.get("ContextOptions") or {}).get("ReplayChildren"))
        if status == wire.SUCCEEDED:
            _finish(op, status, now_ms, "ContextDetails", Result=u.get("Payload"), ReplayChildren=replay or None)
            details = {"Result": h.result(u.get("Payload"))}
        else:
            _finish(op, status, now_ms, "ContextDetails", Error=u.get("Error"), ReplayChildren=replay or None)
            details = {"Error": h.error(u.get("Error"))}
        events.append(h.change_event(op, now_ms, details))
    return apply


# -- CALLBACK ---------------------------------------------------------------------------
def _callback_start(ex, op, u, now_ms, events, timers) -> None:
    opts = u.get("CallbackOptions") or {}
    timeout, heartbeat = opts.get("TimeoutSeconds"), opts.get("HeartbeatTimeoutSeconds")
    for value, what in ((timeout, "TimeoutSeconds"), (heartbeat, "HeartbeatTimeoutSeconds")):
        if value is not None:
            _delay(value, f"CallbackOptions.{what}", 0, MAX_CALLBACK_TIMEOUT_SECONDS)
    if timeout:
        op["_timeout_due"] = now_ms + timeout * 1000
        timers.append((op["_timeout_due"], "callback_timeout", op["Id"]))
    if heartbeat:
        op["_heartbeat_s"] = heartbeat
        op["_heartbeat_due"] = now_ms + heartbeat * 1000
        timers.append((op["_heartbeat_due"], "callback_heartbeat", op["Id"]))
    callback_id = new_callback_id()
    op["CallbackDetails"] = {"CallbackId": callback_id}
    details = {"CallbackId": callback_id}
    if timeout:
        details["Timeout"] = timeout
    if heartbeat:
        details["HeartbeatTimeout"] = heartbeat
    events.append(h.change_event(op, now_ms, details))


# -- CHAINED_INVOKE ---------------------------------------------------------------------
def _invoke_start(ex, op, u, now_ms, events, timers, invoke_target: Optional[InvokeTarget]) -> None:
    opts = u.get("ChainedInvokeOptions") or {}
    function_name = opts.get("FunctionName")
    if not isinstance(function_name, str) or not function_name:
        raise _invalid(f"operation {op['Id']}: ChainedInvokeOptions.FunctionName is required")
    target_arn, execution_id = invoke_target(function_name, ex, op["Id"]) if invoke_target else (None, None)
    op["ChainedInvokeDetails"] = {}
    op["_invoke"] = {"FunctionName": function_name, "TenantId": opts.get("TenantId"),
                     "Payload": u.get("Payload"), "ExecutionId": execution_id}
    details = {"FunctionName": function_name, "Input": h.result(u.get("Payload")),
               "ExecutedVersion": EXECUTED_VERSION}
    if opts.get("TenantId"):
        details["TenantId"] = opts["TenantId"]
    if target_arn:
        details["DurableExecutionArn"] = target_arn
    events.append(h.change_event(op, now_ms, details))
    timers.append((now_ms, "invoke", op["Id"]))


_HANDLERS = {
    (wire.STEP, wire.START): _step_start, (wire.STEP, wire.SUCCEED): _step_succeed,
    (wire.STEP, wire.FAIL): _step_fail, (wire.STEP, wire.RETRY): _step_retry,
    (wire.WAIT, wire.START): _wait_start, (wire.WAIT, wire.CANCEL): _wait_cancel,
    (wire.CONTEXT, wire.START): _context_start,
    (wire.CONTEXT, wire.SUCCEED): _context_done(wire.SUCCEEDED),
    (wire.CONTEXT, wire.FAIL): _context_done(wire.FAILED),
    (wire.CALLBACK, wire.START): _callback_start,
}


PAGE_MAX_ITEMS = 1000  # operations in one page of state (GetDurableExecutionState's MaxItems bound)
PAGE_MAX_BYTES = 5 * 1024 * 1024  # and about this much of them, so a page fits an invocation payload


def _size(op: dict) -> int:
    """About how many bytes ``op`` takes on the wire beyond a fixed 200: its payloads (and error texts)."""
    size = 0
    details = op.get(wire.DETAILS_KEY.get(op["Type"], ""))
    if details:
        for item in details.values():
            if type(item) is str:
                size += len(item)
            elif type(item) is dict:
                size += 100 + sum(len(v) for v in item.values() if type(v) is str)
    return size


def page(ops: list, start: int = 0, max_items: int = PAGE_MAX_ITEMS,
         max_bytes: int = PAGE_MAX_BYTES) -> tuple[list, Optional[int]]:
    """``ops`` from ``start``: at most ``max_items`` and about ``max_bytes`` (at least one); the next start."""
    if len(ops) - start <= 1:  # a checkpoint answer of one operation: always a page of its own
        return ops[start:], None
    chunk = ops[start:start + max_items]
    total = 200 * len(chunk)
    for op in chunk:
        total += _size(op)
    if total > max_bytes:  # cut where the bytes run out (a page holds one operation at least)
        total, end = 0, 0
        for end, op in enumerate(chunk):
            total += 200 + _size(op)
            if end and total > max_bytes:
                break
        else:
            end = len(chunk)
        chunk = chunk[:end]
    end = start + len(chunk)
    return chunk, (end if end < len(ops) else None)


def _visible(ops: dict, op: dict) -> bool:
    """Whether the SDK sees ``op``: not under a context completed without ReplayChildren."""
    parent_id = op.get("ParentId")
    while parent_id is not None:
        parent = ops.get(parent_id)
        if parent is None:
            return True
        if parent["Status"] in wire.TERMINAL and not (parent.get("ContextDetails") or {}).get("ReplayChildren"):
            return False
        parent_id = parent.get("ParentId")
    return True


def changed_operations(ex: Execution, changed_ids) -> list[dict]:
    """The visible operations among ``changed_ids`` (distinct ids, in order), as a checkpoint response
    carries them: its own batch's and those the service changed since the handler last saw them."""
    out = []
    ops = ex.ops
    for op_id in changed_ids:
        op = ops.get(op_id)
        if op is None or (op.get("ParentId") is not None and not _visible(ops, op)):  # a root op is visible
            continue
        out.append(op if op["Type"] not in _PRIVATE_KEYS_TYPES else public_op(op))
    return out


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
