"""The engine's one commit path: every change it accepts is written to the store first, then applied
in memory, then announced.

A ``Change`` (``service.Change``: the service's rules produce one per accepted batch) says what one
accepted request or event does to one execution: new operation records,
new history events, new values of the execution's own fields (status, result, ...), timers to arm,
whether it needs an invocation. ``commit`` applies it in three stages, always in this order:

1. **store**: ``store.commit(ex, change)`` commits it (one transaction) or raises; when it raises,
   nothing changed anywhere and the caller gets a ``ServiceError`` (``ServiceException``, 500), so the
   change can be made again;
2. **memory**: records, events and fields are applied to the execution, callback ids enter the index;
3. **announce**: listeners get the events, timers are armed, the execution is queued for an
   invocation, an execution that ended settles the chained invoke that started it, and waiters wake.

Checkpoints, invocation ends, execution completion, timers firing, callback answers and heartbeats,
pause and resume all go through it; deleting an execution is the same order in one step
(``LocalEngine.delete``).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Optional

from .. import wire
from ..events import event_for
from . import history as h
from .service import RUNNING, Change, Execution, ServiceError, callback_id

if TYPE_CHECKING:
    from .engine import LocalEngine

SERVICE_ERROR = "ServiceException"  # the modeled 5xx of the Lambda API
#: Execution fields a change may set (the columns of the store's execution row).
FIELDS = frozenset({"status", "end_ms", "result", "error", "invocation_failures"})


def commit(engine: "LocalEngine", ex: Execution, change: Change) -> None:
    """Called with ``ex.lock``: store, then memory, then announce (see the module docstring)."""
    fields = change.fields
    if fields and not FIELDS.issuperset(fields):
        raise ValueError(f"a change cannot set {sorted(set(fields) - FIELDS)}")
    event_id = len(ex.events)
    for event in change.events:
        event_id += 1
        event["EventId"] = event_id
    try:
        engine._store.commit(ex, change)
    except Exception as exc:  # noqa: BLE001 - disk full, read-only, I/O error: nothing was applied
        raise ServiceError(SERVICE_ERROR, f"the engine could not persist the change ({type(exc).__name__}: {exc}); "
                                          "nothing was applied, retry it", status=500) from exc
    # memory
    ops = change.ops
    ex.ops.update(ops)
    ex.events.extend(change.events)
    if fields:
        for name, value in fields.items():
            setattr(ex, name, value)
    callbacks = []  # (callback id, operation id) of the callbacks that have an id
    for op in ops.values():
        if op["Type"] == wire.CALLBACK:
            issued = callback_id(op)
            if issued:
                callbacks.append((issued, op["Id"]))
    if change.by_service:
        ex.service_changed.update(dict.fromkeys(ops))  # an ordered set: the next checkpoint answer has them
    # announce
    engine._announce(ex, change, callbacks)


def completion(ex: Execution, status: str, now: int, result: Optional[str] = None,
               error: Optional[dict] = None, exec_op: Optional[dict] = None) -> Change:
    """The change that ends ``ex`` with ``status``: its fields, its EXECUTION record and terminal event.
    ``exec_op``: the EXECUTION record as a change made before it in the same commit leaves it."""
    exec_op = exec_op or ex.ops[ex.exec_op_id]
    details = {"Result": h.result(result)} if status == wire.SUCCEEDED else {"Error": h.error(error)}  # required
    event = h.execution_event(event_for(wire.EXECUTION, status), exec_op, now, details)
    return Change(ops={ex.exec_op_id: {**exec_op, "Status": status, "EndTimestamp": now}}, events=[event],
                  fields={"status": status, "end_ms": now, "result": result, "error": error})


def ends(change: Change) -> bool:
    """Whether ``change`` ends its execution."""
    return change.fields.get("status", RUNNING) != RUNNING


def service_change(op: dict, event: Optional[dict] = None) -> Change:
    """A change the service makes to one operation (a wait or callback completing, a retry coming due, a
    chained invoke settling): recorded with its event, and the execution is invoked again."""
    return Change(ops={op["Id"]: op}, events=[event] if event is not None else [], ready=True, by_service=True)


def describe(exc: BaseException) -> dict:
    """An ErrorObject for an engine failure that ends an execution."""
    return {"ErrorType": "Engine.InternalError", "ErrorMessage": f"the engine failed while running this execution "
                                                                 f"({type(exc).__name__}: {exc}); see its log"}


__all__ = ["Change", "commit", "completion", "describe", "ends", "service_change", "SERVICE_ERROR"]
