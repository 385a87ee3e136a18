"""History events and operation changes: one table, read both ways.

Every event of ``GetDurableExecutionHistory`` (botocore's ``EventType``) records one change of one
operation: ``EVENTS`` says which operation type it belongs to and which status it leaves that
operation in. The engine asks ``event_for(type, status)`` which event records a change it makes; a
reader of a history asks ``status_after(event)`` what an event did to its operation.

Two statuses have no event of their own, as on the service: a cancelled callback is recorded as
``CallbackFailed`` and a cancelled chained invoke as ``ChainedInvokeStopped``. A step that will be
retried (status ``PENDING``) is recorded as ``StepFailed`` (with an error) or ``StepSucceeded``
(without), its ``RetryDetails.NextAttemptDelaySeconds`` set (``retry_event``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from . import wire


@dataclass(frozen=True)
class EventRule:
    """What one event type records: a change of an operation of ``operation_type`` to ``status``
    (None: no status change, e.g. ``InvocationCompleted``)."""

    operation_type: str
    status: Optional[str]

    def details_key(self, event_type: str) -> str:
        return f"{event_type}Details"


_S, _OK, _FAIL, _TO, _STOP, _CANCEL = (wire.STARTED, wire.SUCCEEDED, wire.FAILED, wire.TIMED_OUT, wire.STOPPED,
                                       wire.CANCELLED)

#: EventType -> the operation change it records.
EVENTS: dict[str, EventRule] = {
    "ExecutionStarted": EventRule(wire.EXECUTION, _S), "ExecutionSucceeded": EventRule(wire.EXECUTION, _OK),
    "ExecutionFailed": EventRule(wire.EXECUTION, _FAIL), "ExecutionTimedOut": EventRule(wire.EXECUTION, _TO),
    "ExecutionStopped": EventRule(wire.EXECUTION, _STOP),
    "InvocationCompleted": EventRule(wire.EXECUTION, None), "ExecutionPaused": EventRule(wire.EXECUTION, None),
    "ExecutionResumed": EventRule(wire.EXECUTION, None),
    "StepStarted": EventRule(wire.STEP, _S), "StepSucceeded": EventRule(wire.STEP, _OK),
    "StepFailed": EventRule(wire.STEP, _FAIL),
    "WaitStarted": EventRule(wire.WAIT, _S), "WaitSucceeded": EventRule(wire.WAIT, _OK),
    "WaitCancelled": EventRule(wire.WAIT, _CANCEL),
    "ContextStarted": EventRule(wire.CONTEXT, _S), "ContextSucceeded": EventRule(wire.CONTEXT, _OK),
    "ContextFailed": EventRule(wire.CONTEXT, _FAIL),
    "CallbackStarted": EventRule(wire.CALLBACK, _S), "CallbackSucceeded": EventRule(wire.CALLBACK, _OK),
    "CallbackFailed": EventRule(wire.CALLBACK, _FAIL), "CallbackTimedOut": EventRule(wire.CALLBACK, _TO),
    "ChainedInvokeStarted": EventRule(wire.CHAINED_INVOKE, _S),
    "ChainedInvokeSucceeded": EventRule(wire.CHAINED_INVOKE, _OK),
    "ChainedInvokeFailed": EventRule(wire.CHAINED_INVOKE, _FAIL),
    "ChainedInvokeTimedOut": EventRule(wire.CHAINED_INVOKE, _TO),
    "ChainedInvokeStopped": EventRule(wire.CHAINED_INVOKE, _STOP),
}

#: (operation type, status) -> the event that records an operation reaching that status.
_CHANGES: dict[tuple[str, str], str] = {(rule.operation_type, rule.status): event_type
                                        for event_type, rule in EVENTS.items() if rule.status is not None}
_CHANGES[(wire.CALLBACK, _CANCEL)] = "CallbackFailed"
_CHANGES[(wire.CHAINED_INVOKE, _CANCEL)] = "ChainedInvokeStopped"

#: Events the service records by itself (not from a checkpoint): each one asks for a re-invocation.
SERVICE_COMPLETIONS = frozenset({"WaitSucceeded", "CallbackSucceeded", "CallbackFailed", "CallbackTimedOut",
                                 "ChainedInvokeSucceeded", "ChainedInvokeFailed", "ChainedInvokeTimedOut",
                                 "ChainedInvokeStopped"})
TERMINAL_EXECUTION_EVENTS = frozenset(t for t, r in EVENTS.items()
                                      if r.operation_type == wire.EXECUTION and r.status in wire.TERMINAL)


def event_for(operation_type: str, status: str) -> str:
    """The event type that records an operation of ``operation_type`` reaching ``status``."""
    try:
        return _CHANGES[(operation_type, status)]
    except KeyError:
        raise ValueError(f"no history event records a {operation_type} operation becoming {status}") from None


def retry_event(has_error: bool) -> str:
    """The event of a step that will be retried (status PENDING)."""
    return "StepFailed" if has_error else "StepSucceeded"


def status_after(event: dict) -> Optional[str]:
    """The status ``event`` leaves its operation in (None: it changes no status, or is unknown)."""
    event_type = event.get("EventType") or ""
    rule = EVENTS.get(event_type)
    if rule is None:
        return None
    if rule.operation_type == wire.STEP and rule.status in (_OK, _FAIL):
        retry = (event.get(rule.details_key(event_type)) or {}).get("RetryDetails") or {}
        if retry.get("NextAttemptDelaySeconds") is not None:
            return wire.PENDING
    return rule.status


def operation_type(event_type: str) -> Optional[str]:
    """The operation type an event type belongs to, or None for an unknown event type."""
    rule = EVENTS.get(event_type)
    return rule.operation_type if rule is not None else None
