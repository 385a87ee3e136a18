"""Operation records rebuilt from a ``GetDurableExecutionHistory`` event list."""
from __future__ import annotations

import datetime as _dt
from typing import Any, Optional, Sequence

from .. import wire

__all__ = ["operations_from_history", "operation_type_of"]


def operation_type_of(event_type: str) -> Optional[str]:
    """The operation Type (``STEP``, ``WAIT``, ...) a history event type is about; None for InvocationCompleted."""
    for prefix, kind in (("ChainedInvoke", wire.CHAINED_INVOKE), ("Execution", wire.EXECUTION),
                         ("Context", wire.CONTEXT), ("Callback", wire.CALLBACK), ("Step", wire.STEP),
                         ("Wait", wire.WAIT)):
        if event_type.startswith(prefix):
            return kind
    return None  # InvocationCompleted and unknown events carry no operation state


def operations_from_history(events: Sequence[dict]) -> list[dict]:
    """Rebuild operation records (wire shape) from ``GetDurableExecutionHistory`` events.

    History does not say whether a context was completed with ReplayChildren; rebuilt
    completed contexts get ReplayChildren=true, so their bodies re-run and their
    children replay from the rebuilt records (right for both kinds of context).
    """
    ops: dict[str, dict] = {}
    for event in events:
        event_type = event.get("EventType") or ""
        kind = operation_type_of(event_type)
        op_id = event.get("Id")
        if kind is None or op_id is None:
            continue
        details = event.get(f"{event_type}Details") or {}
        ts = event.get("EventTimestamp")
        op = ops.get(op_id)
        if op is None:
            op = {"Id": op_id, "Type": kind, "Status": wire.STARTED, "StartTimestamp": ts}
            for key in ("SubType", "Name", "ParentId"):
                if event.get(key) is not None:
                    op[key] = event[key]
            ops[op_id] = op
        result = (details.get("Result") or {}).get("Payload")
        error = (details.get("Error") or {}).get("Payload")
        verb = event_type[len(_prefix(kind)):]
        if kind == wire.EXECUTION:
            if verb == "Started":
                op["ExecutionDetails"] = {"InputPayload": (details.get("Input") or {}).get("Payload")}
            else:
                op["Status"] = {"Succeeded": wire.SUCCEEDED, "Failed": wire.FAILED, "TimedOut": wire.TIMED_OUT,
                                "Stopped": wire.STOPPED}.get(verb, op["Status"])
                op["EndTimestamp"] = ts
            continue
        if kind == wire.STEP:
            sd = op.setdefault("StepDetails", {})
            retry = details.get("RetryDetails") or {}
            if verb == "Started":
                sd["Attempt"] = sd.get("Attempt", 0) + 1
                op["Status"] = wire.STARTED
                sd.pop("NextAttemptTimestamp", None)
                continue
            if retry.get("CurrentAttempt"):
                sd["Attempt"] = retry["CurrentAttempt"]
            if verb == "Succeeded":
                sd["Result"] = result
                sd.pop("Error", None)
            else:
                sd["Error"] = error
            if retry.get("NextAttemptDelaySeconds") is not None:
                op["Status"] = wire.PENDING
                sd["NextAttemptTimestamp"] = _plus_seconds(ts, retry["NextAttemptDelaySeconds"])
            else:
                op["Status"] = wire.SUCCEEDED if verb == "Succeeded" else wire.FAILED
                op["EndTimestamp"] = ts
            continue
        d = op.setdefault(wire.DETAILS_KEY[kind], {})
        if verb == "Started":
            if kind == wire.WAIT and details.get("ScheduledEndTimestamp") is not None:
                d["ScheduledEndTimestamp"] = details["ScheduledEndTimestamp"]
            if kind == wire.CALLBACK and details.get("CallbackId"):
                d["CallbackId"] = details["CallbackId"]
            continue
        status = {"Succeeded": wire.SUCCEEDED, "Failed": wire.FAILED, "TimedOut": wire.TIMED_OUT,
                  "Cancelled": wire.CANCELLED, "Stopped": wire.STOPPED}.get(verb)
        if status is None:
            continue
        op["Status"] = status
        op["EndTimestamp"] = ts
        if result is not None:
            d["Result"] = result
        if error is not None:
            d["Error"] = error
        if kind == wire.CONTEXT:
            d["ReplayChildren"] = True
    return list(ops.values())


def _prefix(kind: str) -> str:
    return {wire.CHAINED_INVOKE: "ChainedInvoke", wire.EXECUTION: "Execution", wire.CONTEXT: "Context",
            wire.CALLBACK: "Callback", wire.STEP: "Step", wire.WAIT: "Wait"}[kind]


def _plus_seconds(ts: Any, seconds: int) -> Any:
    if isinstance(ts, _dt.datetime):
        return ts + _dt.timedelta(seconds=seconds)
    if isinstance(ts, (int, float)):
        return ts + seconds * 1000
    return ts
