"""History events in the botocore ``GetDurableExecutionHistory`` shape.

Events are kept with epoch-millisecond timestamps and turned into the boto3 form
(timezone-aware datetimes, absent members omitted) when read.
"""
from __future__ import annotations

import copy
from typing import Any, Optional

from ..events import EVENTS, event_for
from ..wire import ms_to_datetime

_TIMESTAMP_KEYS = ("EventTimestamp", "ScheduledEndTimestamp", "StartTimestamp", "EndTimestamp",
                   "PauseRequestTimestamp", "ResumeRequestTimestamp")


#: EventType -> the member holding its details (``StepStartedDetails``, ...); read-only.
_DETAILS_MEMBER: dict[str, str] = {event_type: rule.details_key(event_type) for event_type, rule in EVENTS.items()}


def op_event(event_type: str, op: dict[str, Any], ts_ms: int, details: Optional[dict[str, Any]] = None) -> dict:
    """An event about operation ``op`` (EventId is set when it is appended)."""
    return {"EventType": event_type, "SubType": op.get("SubType"), "Id": op["Id"], "Name": op.get("Name"),
            "ParentId": op.get("ParentId"), "EventTimestamp": ts_ms, _DETAILS_MEMBER[event_type]: details or {}}


def change_event(op: dict[str, Any], ts_ms: int, details: Optional[dict[str, Any]] = None) -> dict:
    """The event that records ``op`` reaching its (new) status (``durable_sync.events``)."""
    return op_event(event_for(op["Type"], op["Status"]), op, ts_ms, details)


def execution_event(event_type: str, exec_op: dict[str, Any], ts_ms: int, details: Optional[dict] = None) -> dict:
    return {"EventType": event_type, "Id": exec_op["Id"], "Name": exec_op.get("Name"), "EventTimestamp": ts_ms,
            f"{event_type}Details": details or {}}


def result(payload: Optional[str]) -> dict[str, Any]:
    return {"Payload": payload, "Truncated": False}


def error(error_object: Optional[dict[str, Any]]) -> dict[str, Any]:
    return {"Payload": error_object or {}, "Truncated": False}


def to_boto(event: dict[str, Any]) -> dict[str, Any]:
    """The event as boto3 returns it: no None members, datetimes for timestamps."""
    return _convert(event)


def _convert(value: Any) -> Any:
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if v is None:
                continue
            if k in _TIMESTAMP_KEYS and isinstance(v, int):
                out[k] = ms_to_datetime(v)
            else:
                out[k] = _convert(v)
        return out
    if isinstance(value, list):
        return [_convert(v) for v in value]
    return copy.copy(value)
