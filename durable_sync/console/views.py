"""What the console's pages show, as JSON: a page of the executions list, one execution, one whole payload.

Read through the engine's public read API (``list_executions``, ``snapshot``, ``functions``) and the one
read model of an execution (``durable_sync.inspection``): the execution page's chart is the HTML
timeline's ``layout``, so both draw the same bars. Times and durations are formatted here, by the
inspection module's functions, so the pages never compute them.

Payloads (inputs, results) are sent clipped to a preview and history events as one line each;
``payload(...)`` gives a whole payload or event.
Everything is text: the pages put it into the document as text, never as markup.
"""
from __future__ import annotations

import datetime as _dt
import json
from typing import Any, Optional

from .. import wire
from ..inspection import read_execution
from ..inspection.model import StepOperation
from ..inspection.timeline import LEGEND, error_text, layout, trace_parts
from ..inspection.tree import format_duration, format_time
from .guard import BAD_REQUEST, Refused

STATUSES = ("RUNNING", "PAUSING", "PAUSED", "SUCCEEDED", "FAILED", "TIMED_OUT", "STOPPED")
PAGE_SIZES = (25, 50, 100, 200)
DEFAULT_PAGE_SIZE = 50
PREVIEW_CHARS = 2000  # a payload longer than this is clipped ("show all" fetches it whole)
MAX_CHART_ROWS = 2000  # as the HTML timeline: more operations are listed, not drawn
TERMINAL = wire.EXECUTION_TERMINAL


def _int(value: Optional[str], what: str, default: int, lowest: int = 0) -> int:
    if value in (None, ""):
        return default
    try:
        number = int(value)
    except ValueError:
        raise Refused(400, BAD_REQUEST, f"{what} must be a whole number, got {value!r}") from None
    if number < lowest:
        raise Refused(400, BAD_REQUEST, f"{what} must be at least {lowest}, got {number}")
    return number


# -- the executions list -------------------------------------------------------------------------------------
def executions_page(engine: Any, *, function: Optional[str] = None, status: Optional[str] = None,
                    name: Optional[str] = None, offset: Optional[str] = None, limit: Optional[str] = None) -> dict:
    """One page of the executions, newest first, with the filters applied.

    ``function``: that function's executions; ``status``: one of ``STATUSES`` (PAUSING / PAUSED are the
    paused ones, which RUNNING leaves out); ``name``: names containing that text (any case).
    """
    start = _int(offset, "offset", 0)
    size = _int(limit, "limit", DEFAULT_PAGE_SIZE, 1)
    if size not in PAGE_SIZES:
        raise Refused(400, BAD_REQUEST, f"limit must be one of {', '.join(map(str, PAGE_SIZES))}, got {size}")
    if status and status not in STATUSES:
        raise Refused(400, BAD_REQUEST, f"status must be one of {', '.join(STATUSES)}, got {status!r}")
    selected = dict(function_name=function or None, status=status or None, reverse=True)
    if name:  # a search: the engine filters by exact name only
        needle = name.lower()
        found = [item for item in engine.list_executions(**selected) if needle in item["DurableExecutionName"].lower()]
        items = found[start:start + size + 1]
    else:
        items = engine.list_executions(**selected, offset=start, limit=size + 1)
    now = engine.clock.now_ms()
    functions = set(engine.functions)
    rows = []
    for item in items[:size]:
        started = _ms(item["StartTimestamp"])
        ended = _ms(item.get("EndTimestamp"))
        rows.append({"arn": item["DurableExecutionArn"], "name": item["DurableExecutionName"],
                     "function": item["FunctionName"], "status": item["Status"], "started": format_time(started),
                     "duration": format_duration((ended if ended is not None else now) - started),
                     "ended": ended is not None})
        functions.add(item["FunctionName"])
    running = bool(engine.list_executions(status=("RUNNING", "PAUSING"), limit=1))
    return {"executions": rows, "offset": start, "limit": size, "has_more": len(items) > size,
            "any_running": running, "functions": sorted(functions), "statuses": list(STATUSES),
            "page_sizes": list(PAGE_SIZES), "now": format_time(now)}


def _ms(value: Any) -> Optional[int]:
    if value is None:
        return None
    if isinstance(value, _dt.datetime):
        return int(value.timestamp() * 1000)
    return int(value)


# -- one execution -------------------------------------------------------------------------------------------
def version(snapshot: Any) -> str:
    """Changes whenever what the execution page shows changes (a new event, a pause, a timer, a callback)."""
    ex = snapshot.execution
    timers = ",".join(f"{t.kind}@{t.due_ms}" for t in snapshot.pending_timers)
    return "|".join(str(part) for part in (
        len(snapshot.history), ex.status, ex.pause_status, snapshot.invocation_in_flight, snapshot.invocation_queued,
        len(snapshot.operations), timers, ",".join(cb.callback_id for cb in snapshot.open_callbacks)))


def execution_page(engine: Any, arn: str, since: Optional[str] = None) -> dict:
    """Execution ``arn`` as its page shows it; ``{"version", "unchanged": true}`` when ``since`` is still current."""
    snapshot = engine.snapshot(arn)
    current = version(snapshot)
    if since is not None and since == current:
        return {"version": current, "unchanged": True}
    execution = read_execution(snapshot, snapshot.operations, snapshot.history)
    now = engine.clock.now_ms()
    lay = layout(snapshot, snapshot.operations, snapshot.history, now=now if execution.end_ms is None else None,
                 execution=execution)
    status = snapshot.execution.pause_status or snapshot.status
    timers_of: dict[str, list] = {}
    for timer in snapshot.pending_timers:
        timers_of.setdefault(timer.operation_id or "", []).append(_timer(timer, now))
    events = [_event(event) for event in snapshot.history]
    events_of: dict[str, list] = {}
    for event in events:
        events_of.setdefault(event["op"], []).append(event["id"])
    operations = []
    for i, row in enumerate(lay.rows):
        op = row.op
        operations.append({
            "id": op.id, "parent_id": op.parent_id, "depth": row.depth, "label": op.display_name, "name": op.name,
            "kind": op.kind, "status": str(op.status), "title": row.title, "note": row.note, "duration": row.duration,
            "started_at": format_time(op.start_ms), "ended_at": format_time(op.end_ms),
            "offset": f"+{format_duration(op.start_ms - lay.t0)}" if op.start_ms is not None else "",
            "drawn": i < MAX_CHART_ROWS,
            "bars": [_bar(b) for b in row.bars] if i < MAX_CHART_ROWS else [],
            "markers": [{"left": m.left, "title": m.title, "text": m.text} for m in row.markers]
            if i < MAX_CHART_ROWS else [],
            "result": _payload(op.result_payload, f"op:{op.id}"),
            "error": _error(op.error) if op.error and str(op.status) != "SUCCEEDED" else None,
            "attempts": _attempts(op),
            "callback_id": getattr(op, "callback_id", None),
            "timers": timers_of.get(op.id, []),
            "events": events_of.get(op.id, []),
        })
    exec_error = _error(execution.error) if execution.error else None
    invocations = [{"number": inv.number, "started": format_time(inv.start_ms),
                    "duration": format_duration(inv.duration_ms), "error": _error(inv.error) if inv.error else None}
                   for inv in execution.invocations]
    return {
        "version": current, "arn": snapshot.arn, "name": snapshot.name, "function": snapshot.function_name,
        "status": status, "terminal": snapshot.status in TERMINAL, "meta": lay.meta,
        "pause": _jsonable(snapshot.execution.pause_details),
        "input": _payload(execution.input_payload, "input"),
        "result": _payload(execution.result_payload, "result") if snapshot.status == "SUCCEEDED" else None,
        "error": exec_error,
        "open_callbacks": [{"callback_id": cb.callback_id, "operation_id": cb.operation_id,
                            "name": cb.operation_name} for cb in snapshot.open_callbacks],
        "timers": timers_of.get("", []) + [t for op_id, ts in timers_of.items() if op_id for t in ts],
        "invocations": invocations,
        "running": {"in_flight": snapshot.invocation_in_flight, "queued": snapshot.invocation_queued},
        "can": {"stop": snapshot.status == "RUNNING", "pause": snapshot.status == "RUNNING" and status == "RUNNING",
                "resume": status in ("PAUSING", "PAUSED"), "delete": snapshot.status in TERMINAL,
                "run_again": snapshot.function_name in engine.functions},
        "chart": {"ticks": [{"left": left, "text": text, "extra": extra.strip()} for left, text, extra in lay.ticks],
                  "execution": {"status": execution.status, "duration": lay.execution_duration,
                                "bar": _bar(lay.execution_bar)},
                  "invocations": {"count": len(execution.invocations), "duration": lay.invocations_duration,
                                  "bars": [_bar(b) for b in lay.invocation_bars]},
                  "not_drawn": max(0, len(lay.rows) - MAX_CHART_ROWS)},
        "legend": [{"kind": kind, "text": text} for kind, text in LEGEND],
        "operations": operations,
        "events": events,
    }


def payload(engine: Any, arn: str, ref: str) -> dict:
    """The whole text behind a clipped preview: ``input``, ``result``, ``op:<id>`` (an operation's result) or
    ``event:<EventId>`` (a history event as JSON)."""
    snapshot = engine.snapshot(arn)
    if ref in ("input", "result"):
        execution = read_execution(snapshot, snapshot.operations, snapshot.history)
        text = execution.input_payload if ref == "input" else execution.result_payload
    elif ref.startswith("op:"):
        op_id = ref[3:]
        record = next((op for op in snapshot.operations if op.get("Id") == op_id), None)
        if record is None:
            raise Refused(404, "ResourceNotFoundException", f"execution {arn} has no operation {op_id!r}")
        details = next((value for key, value in record.items() if key.endswith("Details") and isinstance(value, dict)),
                       {})
        text = details.get("Result")
    elif ref.startswith("event:"):
        event_id = _int(ref[6:], "the event id", 0, 1)
        event = next((e for e in snapshot.history if e.get("EventId") == event_id), None)
        if event is None:
            raise Refused(404, "ResourceNotFoundException", f"execution {arn} has no history event {event_id}")
        text = _event_json(event)
    else:
        raise Refused(400, BAD_REQUEST, f"unknown payload {ref!r}: input, result, op:ID or event:N")
    return {"ref": ref, "text": text, "size": None if text is None else len(text)}


# -- pieces ------------------------------------------------------------------------------------------------------
def _payload(text: Optional[str], ref: str, limit: int = PREVIEW_CHARS) -> Optional[dict]:
    if text is None:
        return None
    return {"text": text[:limit], "size": len(text), "truncated": len(text) > limit, "ref": ref}


def _error(error: Optional[dict]) -> Optional[dict]:
    if not error:
        return None
    return {"type": error.get("ErrorType"), "message": error.get("ErrorMessage"), "data": error.get("ErrorData"),
            "summary": error_text(error, 300),
            "trace": [{"text": p.text, "library": p.library, "count": p.count, "functions": p.functions}
                      for p in trace_parts(error.get("StackTrace"))]}


def _bar(bar: Any) -> dict:
    return {"kind": bar.kind, "left": round(bar.left, 3), "width": round(bar.width, 3), "title": bar.title}


def _attempts(op: Any) -> list[dict]:
    if not isinstance(op, StepOperation):
        return []
    word = "check" if op.polling else "attempt"
    return [{"number": a.number, "word": word, "outcome": a.outcome, "started": format_time(a.started_at),
             "duration": format_duration(a.duration_ms),
             "retry_delay": format_duration(a.retry_delay * 1000) if a.retry_delay is not None else "",
             "error": _error(a.error)} for a in op.attempts]


def _timer(timer: Any, now: int) -> dict:
    return {"kind": timer.kind, "operation_id": timer.operation_id, "operation": timer.operation_name,
            "due": format_time(timer.due_ms), "in": format_duration(max(0, timer.due_ms - now))}


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=_default)) if value is not None else None


def _default(value: Any) -> Any:
    if isinstance(value, _dt.datetime):
        return format_time(value)
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8", "replace")
    return str(value)


def _event_json(event: dict) -> str:
    return json.dumps(event, default=_default, indent=2, ensure_ascii=False)


def _event(event: dict) -> dict:
    """A history event's line; the page fetches the event itself (``payload(..., "event:N")``) when it is opened."""
    return {"id": event.get("EventId"), "type": event.get("EventType"), "op": event.get("Id"),
            "name": event.get("Name"), "time": format_time(event.get("EventTimestamp")),
            "ref": f"event:{event.get('EventId')}"}
