"""Views of one durable execution: an indented text tree and a self-contained HTML timeline.

Both take what the engine (or AWS) records about an execution — its operation records
and its history events, in the boto3 shapes of ``GetDurableExecutionState`` /
``GetDurableExecutionHistory`` (timestamps as datetimes or epoch milliseconds) — so they
work for the local engine, a ``durable-sync`` database and records fetched with boto3::

    from durable_sync import views
    ops, events = engine.operations(arn), engine.history(arn)
    print(views.render_tree(ops, events))
    Path("run.html").write_text(views.render_html(engine.get_execution(arn), ops, events))

``durable-sync history ARN --html out.html`` writes the timeline of an execution kept in
the database. The HTML page has no scripts and loads nothing: open it anywhere, attach it
to a ticket.
"""
from __future__ import annotations

import datetime as _dt
import html
import json
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

from . import wire

__all__ = ["render_tree", "render_html", "format_duration", "LiveProgress"]

_TERMINAL = frozenset({"SUCCEEDED", "FAILED", "CANCELLED", "TIMED_OUT", "STOPPED"})


# --------------------------------------------------------------------------- small helpers
def format_duration(ms: Optional[float]) -> str:
    """``1.25 s``, ``340 ms``, ``2 min 5 s``, ``3 h 10 min``, ``2 d 4 h`` (empty for None)."""
    if ms is None:
        return ""
    ms = max(0, int(round(ms)))
    if ms < 1000:
        return f"{ms} ms"
    seconds = ms / 1000
    if seconds < 60:
        if ms % 1000 == 0:
            return f"{ms // 1000} s"
        return f"{seconds:.2f} s" if seconds < 10 else f"{seconds:.1f} s"
    minutes, sec = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes} min {sec} s" if sec else f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


def _ms(value: Any) -> Optional[int]:
    try:
        return wire.to_epoch_ms(value)
    except Exception:  # noqa: BLE001 - a view shows what it can
        return None


def _get(obj: Any, *names: str) -> Any:
    """The first present attribute / key of ``names`` (dicts and objects alike)."""
    if obj is None:
        return None
    for name in names:
        value = obj.get(name) if isinstance(obj, dict) else getattr(obj, name, None)
        if value is not None:
            return value
    return None


def _clip(text: Any, limit: int) -> str:
    text = str(text).replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 1] + "…"


_KIND = {  # SubType (or Type) -> the word a user knows
    "Step": "step", "Wait": "wait", "Callback": "callback", "ChainedInvoke": "invoke",
    "RunInChildContext": "child", "Map": "map", "MapIteration": "map item", "Parallel": "parallel",
    "ParallelBranch": "branch", "WaitForCallback": "wait_for_callback", "WaitForCondition": "wait_for_condition",
    "STEP": "step", "WAIT": "wait", "CONTEXT": "context", "CALLBACK": "callback", "CHAINED_INVOKE": "invoke",
}


# --------------------------------------------------------------------------- the model both views share
@dataclass
class _Segment:
    start: int
    end: int
    kind: str  # css class: ok, failed, running, backoff, waiting, poll, timedout, stopped, context, invocation
    title: str


@dataclass
class _Row:
    op_id: str
    name: Optional[str]
    label: str
    kind: str
    type: str
    status: str
    depth: int
    start: Optional[int]
    end: Optional[int]
    attempts: int = 0
    failed_attempts: int = 0
    retry_delays: list = field(default_factory=list)
    segments: list = field(default_factory=list)
    markers: list = field(default_factory=list)  # (ms, title)
    note: str = ""  # wait seconds, callback id, function name
    outcome: str = ""  # result or error, one line


def _status_class(status: str) -> str:
    return {"SUCCEEDED": "ok", "FAILED": "failed", "TIMED_OUT": "timedout", "STOPPED": "stopped",
            "CANCELLED": "stopped"}.get(status, "running")


def _rows(operations: Sequence[dict], history: Sequence[dict], now_ms: Optional[int]) -> list[_Row]:
    """One row per operation (EXECUTION excluded), depth first in the order the code asked for them."""
    from .testing.results import build_tree  # the same tree the testing toolkit shows

    roots = build_tree(list(operations), list(history or ()))
    rows: list[_Row] = []

    def visit(op: Any, depth: int) -> None:
        rows.append(_row(op, depth, now_ms))
        for child in op.children:
            visit(child, depth + 1)

    for root in roots:
        visit(root, 0)
    return rows


def _row(op: Any, depth: int, now_ms: Optional[int]) -> _Row:
    sub = op.sub_type or op.type
    kind = _KIND.get(sub, str(sub).lower())
    if op.name is not None:
        label = op.name
    elif op.position is not None and op.sub_type in ("MapIteration", "ParallelBranch"):
        label = f"({kind} {op.position})"
    elif op.position is not None:
        label = f"({kind} #{op.position})"
    else:
        label = f"({op.id[:8]})"
    start, end = _ms(op.start_time), _ms(op.end_time)
    status = str(op.status)
    row = _Row(op.id, op.name, label, kind, op.type, status, depth, start, end)
    open_end = end if end is not None else now_ms if now_ms is not None else start

    error = op.error
    if error:
        row.outcome = f"{error.get('ErrorType')}: {_clip(error.get('ErrorMessage') or '', 160)}"
    else:
        payload = op.details.get("Result")
        if payload not in (None, ""):
            row.outcome = "→ " + _clip(payload, 160)

    if op.type == "STEP":
        attempts = list(getattr(op, "attempts", ()) or ())
        row.attempts = max(int(getattr(op, "attempt", 0) or 0), len(attempts))
        row.failed_attempts = sum(1 for a in attempts if a.outcome == "FAILED")
        row.retry_delays = [a.retry_delay for a in attempts if a.retry_delay is not None]
        polling = op.sub_type == "WaitForCondition"
        next_at = _ms(getattr(op, "next_attempt_time", None))
        for i, a in enumerate(attempts):
            a_start = _ms(a.started_at)
            a_end = _ms(a.ended_at)
            if a_start is None:
                a_start = a_end if a_end is not None else start
            if a_start is None:
                continue
            if a_end is None:
                a_end = open_end if open_end is not None else a_start
            if a.outcome == "FAILED":
                cls = "failed"
                what = f"failed: {(a.error or {}).get('ErrorType')}: {_clip((a.error or {}).get('ErrorMessage') or '', 120)}"
            elif a.outcome == "SUCCEEDED":
                cls = "poll" if a.retry_delay is not None else "ok"
                what = "checked, keeps polling" if cls == "poll" else "succeeded"
            else:
                cls, what = "running", "running (or interrupted)"
            title = f"{label} {'poll' if polling else 'attempt'} {a.number}: {what}"
            row.segments.append(_Segment(a_start, a_end, cls, title))
            if i > 0 or len(attempts) > 1:
                row.markers.append((a_start, f"{'poll' if polling else 'attempt'} {a.number}"))
            if a.retry_delay is not None:
                nxt = attempts[i + 1] if i + 1 < len(attempts) else None
                gap_end = _ms(nxt.started_at) if nxt is not None and nxt.started_at is not None else None
                if gap_end is None:
                    gap_end = next_at if next_at is not None else a_end + a.retry_delay * 1000
                word = "next poll" if polling else "back-off"
                row.segments.append(_Segment(a_end, max(a_end, gap_end), "backoff",
                                             f"{label}: {word} {a.retry_delay} s before "
                                             f"{'poll' if polling else 'attempt'} {a.number + 1}"))
        if not row.segments and start is not None:
            row.segments.append(_Segment(start, open_end if open_end is not None else start, _status_class(status),
                                         f"{label}: {status}"))
        if polling:
            row.note = f"{row.attempts} poll{'s' if row.attempts != 1 else ''}"
        elif row.attempts:
            row.note = f"{row.attempts} attempt{'s' if row.attempts != 1 else ''}"
            if row.failed_attempts:
                row.note += f" ({row.failed_attempts} failed)"
    elif op.type == "WAIT":
        seconds = getattr(op, "wait_seconds", None)
        due = _ms(getattr(op, "scheduled_end_time", None))
        if end is None and due is not None:
            row.note = f"due {_dt.datetime.fromtimestamp(due / 1000, _dt.timezone.utc):%Y-%m-%d %H:%M:%S} UTC"
        if start is not None:
            stop = end if end is not None else (due if due is not None else open_end)
            cls = "waiting" if status in ("SUCCEEDED", "STARTED") else _status_class(status)
            title = f"{label}: wait {format_duration((seconds or 0) * 1000)}"
            if end is None and due is not None:
                title += f", due {_dt.datetime.fromtimestamp(due / 1000, _dt.timezone.utc):%Y-%m-%d %H:%M:%S} UTC"
            row.segments.append(_Segment(start, max(start, stop or start), cls, title))
            if end is None:
                row.markers.append((stop or start, "due"))
    else:
        if op.type == "CALLBACK":
            cid = getattr(op, "callback_id", None)
            row.note = f"callback id {cid}" if cid and status == "STARTED" else ""
        elif op.type == "CHAINED_INVOKE":
            fn = getattr(op, "function_name", None)
            row.note = f"→ {fn}" if fn else ""
        if start is not None:
            stop = open_end if open_end is not None else start
            if op.type == "CONTEXT":
                cls = "context" if status == "SUCCEEDED" else _status_class(status)
            elif op.type == "CALLBACK" and status == "STARTED":
                cls = "waiting"
            else:
                cls = _status_class(status)
            row.segments.append(_Segment(start, max(start, stop), cls, f"{label}: {kind} {status}"))
    return row


# --------------------------------------------------------------------------- text tree
def render_tree(operations: Sequence[dict], history: Sequence[dict] = (), *, max_lines: int = 2000) -> str:
    """The operations as an indented tree: name, kind, status, attempts and duration per line.

    ``operations`` and ``history`` are boto3-shaped records (``engine.operations(arn)``,
    ``engine.history(arn)``); without a history, step attempts show only the latest number.
    """
    rows = _rows(operations, history, None)
    if not rows:
        return "(no operations)"
    # tree prefixes: a row is "last" when no later row at the same depth shares its parent
    lefts: list[str] = []
    open_levels: list[bool] = []  # per depth: a later sibling follows (draw a "│")
    for i, row in enumerate(rows):
        later_sibling = False
        for nxt in rows[i + 1:]:
            if nxt.depth < row.depth:
                break
            if nxt.depth == row.depth:
                later_sibling = True
                break
        del open_levels[row.depth:]
        prefix = "".join("│  " if more else "   " for more in open_levels)
        lefts.append(prefix + ("├─ " if later_sibling else "└─ ") + row.label)
        open_levels.append(later_sibling)
    width = min(max(len(left) for left in lefts), 60)
    kind_w = max(len(row.kind) for row in rows)
    status_w = max(len(row.status) for row in rows)
    lines = []
    for left, row in zip(lefts, rows):
        bits = [row.kind.ljust(kind_w), row.status.ljust(status_w)]
        if row.note:
            bits.append(row.note)
        if row.retry_delays:
            word = "polled after" if row.kind == "wait_for_condition" else "back-off"
            bits.append(f"{word} " + ", ".join(f"{d} s" for d in row.retry_delays))
        if row.start is not None and row.end is not None:
            bits.append(format_duration(row.end - row.start))
        elif row.status not in _TERMINAL:
            bits.append("…")
        if row.status in ("FAILED", "TIMED_OUT", "STOPPED") and row.outcome:
            bits.append(row.outcome)
        lines.append(f"{left.ljust(width)}  {'  '.join(bits)}".rstrip())
    if len(lines) > max_lines:
        lines = lines[:max_lines] + [f"… ({len(lines) - max_lines} more operations)"]
    return "\n".join(lines)


# --------------------------------------------------------------------------- HTML timeline
def _execution(info: Any, operations: Sequence[dict], history: Sequence[dict]) -> dict:
    """Normalize what we know about the execution (ExecutionResult, boto3 dict, store record, None)."""
    exec_op = next((op for op in operations if op.get("Type") == "EXECUTION"), None) or {}
    arn = _get(info, "arn", "DurableExecutionArn") or ""
    status = _get(info, "status", "Status") or exec_op.get("Status") or "RUNNING"
    name = _get(info, "name", "DurableExecutionName")
    function = _get(info, "function_name", "FunctionName")
    parts = arn.split("/")
    if not name and len(parts) >= 3 and parts[-3] == "durable-execution":
        name = parts[-2]
    if not function and ":function:" in arn:
        function = arn.split(":function:", 1)[1].split(":")[0].split("/")[0]
    start = _ms(_get(info, "start_ms", "StartTimestamp")) or _ms(exec_op.get("StartTimestamp"))
    end = _ms(_get(info, "end_ms", "EndTimestamp")) or _ms(exec_op.get("EndTimestamp"))
    error = _get(info, "error", "Error")
    result = _get(info, "raw_result", "Result")
    if result is None and not isinstance(info, dict):
        result = _get(info, "result")
        if result is not None and not isinstance(result, str):
            result = json.dumps(result, default=str)
    invocations = []
    for event in history or ():
        etype = event.get("EventType")
        if start is None and etype == "ExecutionStarted":
            start = _ms(event.get("EventTimestamp"))
        if etype in ("ExecutionSucceeded", "ExecutionFailed", "ExecutionTimedOut", "ExecutionStopped") and end is None:
            end = _ms(event.get("EventTimestamp"))
        if etype == "InvocationCompleted":
            d = event.get("InvocationCompletedDetails") or {}
            err = (d.get("Error") or {}).get("Payload")
            invocations.append((_ms(d.get("StartTimestamp")) or _ms(event.get("EventTimestamp")),
                                _ms(d.get("EndTimestamp")) or _ms(event.get("EventTimestamp")), err))
        if error is None and etype in ("ExecutionFailed", "ExecutionTimedOut", "ExecutionStopped"):
            error = ((event.get(f"{etype}Details") or {}).get("Error") or {}).get("Payload")
        if result is None and etype == "ExecutionSucceeded":
            result = ((event.get("ExecutionSucceededDetails") or {}).get("Result") or {}).get("Payload")
    return {"arn": arn, "status": str(status), "name": name or "", "function": function or "", "start": start,
            "end": end, "error": error, "result": result, "invocations": invocations}


_NICE_STEPS_MS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10_000, 15_000, 30_000, 60_000,
                  120_000, 300_000, 600_000, 900_000, 1_800_000, 3_600_000, 7_200_000, 10_800_000, 21_600_000,
                  43_200_000, 86_400_000, 172_800_000, 604_800_000, 1_209_600_000, 2_592_000_000]


def _ticks(span: int, max_ticks: int = 8) -> list[int]:
    step = next((s for s in _NICE_STEPS_MS if span / s <= max_ticks), _NICE_STEPS_MS[-1])
    return list(range(0, span + 1, step))


def _tick_label(ms: int) -> str:
    if ms == 0:
        return "0"
    text = format_duration(ms)
    if text.endswith(" s") and "." in text:  # axis labels: 1.50 s -> 1.5 s
        text = text[:-2].rstrip("0").rstrip(".") + " s"
    return "+" + text


_CSS = """
:root { --ok:#2f9e5b; --failed:#d64545; --running:#3b7dd8; --timedout:#e08a1e; --stopped:#8a8f98;
  --wait:#6b8fc9; --grid:#e6e8ec; --muted:#6b7280; --label-w:330px; --dur-w:96px; --pad:8px; }
* { box-sizing: border-box; }
body { font: 13px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
  color:#1f2328; margin:24px; background:#fff; }
h1 { font-size:18px; margin:0 0 4px; }
.meta { color:var(--muted); margin:0 0 4px; word-break:break-all; }
.pill { display:inline-block; padding:1px 8px; border-radius:10px; font-size:11px; font-weight:600;
  color:#fff; vertical-align:1px; }
.pill.SUCCEEDED { background:var(--ok); } .pill.FAILED { background:var(--failed); }
.pill.TIMED_OUT { background:var(--timedout); } .pill.STOPPED, .pill.CANCELLED { background:var(--stopped); }
.pill.RUNNING, .pill.STARTED, .pill.PENDING, .pill.READY { background:var(--running); }
.summary { margin:8px 0 14px; }
.summary .err { color:var(--failed); font-family:ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }
.summary .res { font-family:ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; color:#374151; }
.legend { display:flex; flex-wrap:wrap; gap:14px; margin:0 0 12px; color:#374151; }
.legend span { display:inline-flex; align-items:center; gap:5px; }
.legend i { display:inline-block; width:22px; height:10px; border-radius:2px; }
.chart { position:relative; border:1px solid var(--grid); border-radius:6px; overflow:hidden; }
.gridlayer { position:absolute; top:0; bottom:0; left:calc(var(--label-w) + var(--pad));
  right:calc(var(--dur-w) + var(--pad)); pointer-events:none; }
.gridline { position:absolute; top:0; bottom:0; width:0; border-left:1px solid var(--grid); }
.row { display:grid; grid-template-columns: var(--label-w) 1fr var(--dur-w); align-items:center;
  min-height:26px; border-top:1px solid #f1f2f4; position:relative; }
.row:nth-child(even of .row) { background:#fafbfc; }
.row.axis { border-top:none; background:#f6f7f9; height:26px; font-size:11px; color:var(--muted); }
.row.axis .track { height:26px; }
.ticklabel { position:absolute; top:6px; transform:translateX(-50%); white-space:nowrap; }
.ticklabel.first { transform:none; } .ticklabel.last { transform:translateX(-100%); }
.label { padding:3px 8px; white-space:nowrap; overflow:hidden; text-overflow:ellipsis; }
.label .name { font-family:ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-weight:600; }
.label .kind { color:var(--muted); font-size:11px; margin-left:6px; }
.label .st { font-size:10px; font-weight:700; margin-left:6px; }
.st.SUCCEEDED { color:var(--ok); } .st.FAILED { color:var(--failed); } .st.TIMED_OUT { color:var(--timedout); }
.st.STOPPED, .st.CANCELLED { color:var(--stopped); }
.st.RUNNING, .st.STARTED, .st.PENDING, .st.READY { color:var(--running); }
.track { position:relative; height:26px; margin:0 var(--pad); }
.dur { padding:0 8px; text-align:right; color:#374151; font-variant-numeric:tabular-nums; white-space:nowrap; }
.bar { position:absolute; top:9px; height:11px; min-width:4px; border-radius:2px; }
.bar.ok { background:var(--ok); } .bar.failed { background:var(--failed); }
.bar.running { background:var(--running); } .bar.timedout { background:var(--timedout); }
.bar.stopped { background:var(--stopped); }
.bar.poll { background:#7aa7e0; }
.bar.context { top:6px; height:17px; background:rgba(47,158,91,.10); border:1.5px solid var(--ok); }
.bar.context.failedctx { background:rgba(214,69,69,.10); border-color:var(--failed); }
.bar.waiting { background:repeating-linear-gradient(135deg, #dbe6f6 0 4px, #c3d4ee 4px 8px);
  border:1px solid var(--wait); }
.bar.backoff { top:12px; height:5px; min-width:1px; background:repeating-linear-gradient(90deg, #f3b2b2 0 3px,
  transparent 3px 6px); }
.bar.invocation { background:#9aa3ae; top:8px; height:11px; min-width:4px; }
.bar.invocation.failed { background:var(--failed); }
.bar.execution { top:10px; height:8px; opacity:.85; }
.marker { position:absolute; top:0; height:9px; width:0; }
.marker b { position:absolute; top:-1px; left:0; font-size:9px; line-height:9px; font-weight:600; color:#374151;
  white-space:nowrap; }
.section { font-weight:600; background:#f6f7f9 !important; color:#374151; }
table.ops { border-collapse:collapse; margin-top:20px; width:100%; font-size:12px; }
table.ops th, table.ops td { border-bottom:1px solid var(--grid); padding:4px 8px; text-align:left;
  vertical-align:top; }
table.ops th { background:#f6f7f9; font-weight:600; }
table.ops td.mono { font-family:ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; word-break:break-all; }
table.ops td.opname { white-space:nowrap; word-break:normal; }
.note { color:var(--muted); margin-top:8px; font-size:12px; }
"""

_LEGEND = [("ok", "succeeded"), ("failed", "failed attempt"), ("backoff", "retry back-off"),
           ("waiting", "wait / callback pending"), ("poll", "poll (keeps waiting)"), ("running", "running / pending"),
           ("timedout", "timed out"), ("stopped", "stopped"), ("context", "child context / map / parallel"),
           ("invocation", "handler invocation")]


def render_html(execution_info: Any, operations: Sequence[dict], history: Sequence[dict] = (), *,
                title: Optional[str] = None, now: Any = None, max_rows: int = 2000) -> str:
    """A self-contained HTML page: the execution's operations as bars on one time axis.

    ``execution_info`` may be an ``ExecutionResult``, a ``GetDurableExecution`` response
    dict, a ``durable-sync`` database record or None (then it is derived from the
    EXECUTION operation and the history). One row per operation, indented under its
    parent context, colored by outcome; a step's attempts are separate segments with
    the back-off between them; waits are hatched. ``now`` (datetime or epoch ms) is the
    end of the axis for a running execution (default: its last recorded timestamp).
    No scripts, no external assets.
    """
    info = _execution(execution_info, operations, history)
    now_ms = _ms(now)
    stamps: list[int] = []
    for op in operations:
        for key in ("StartTimestamp", "EndTimestamp"):
            v = _ms(op.get(key))
            if v is not None:
                stamps.append(v)
        for key in ("WaitDetails", "StepDetails"):
            d = op.get(key) or {}
            v = _ms(d.get("ScheduledEndTimestamp") or d.get("NextAttemptTimestamp"))
            if v is not None:
                stamps.append(v)
    for event in history or ():
        v = _ms(event.get("EventTimestamp"))
        if v is not None:
            stamps.append(v)
    if now_ms is None and info["end"] is None:
        now_ms = max(stamps) if stamps else None
    rows = _rows(operations, history, now_ms if info["end"] is None else info["end"])
    t0 = info["start"] if info["start"] is not None else (min(stamps) if stamps else 0)
    t1 = max([t0] + stamps + ([info["end"]] if info["end"] else []) + ([now_ms] if now_ms else []))
    span = max(t1 - t0, 1)

    def pct(ms: int) -> float:
        return max(0.0, min(100.0, (ms - t0) * 100.0 / span))

    def bar(seg: _Segment, extra: str = "") -> str:
        left = pct(seg.start)
        width = max(0.0, pct(max(seg.end, seg.start)) - left)
        offsets = f"+{format_duration(seg.start - t0)}"
        if seg.end > seg.start:
            offsets += f" → +{format_duration(seg.end - t0)} ({format_duration(seg.end - seg.start)})"
        return (f'<div class="bar {seg.kind}{extra}" style="left:{left:.3f}%;width:{width:.3f}%" '
                f'title="{html.escape(seg.title + " · " + offsets)}"></div>')

    esc = html.escape
    status = info["status"]
    heading = title or (f"{info['function']} / {info['name']}" if info["function"] or info["name"] else "execution")
    out: list[str] = []
    out.append("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">")
    out.append(f"<title>{esc(heading)} — durable execution timeline</title>")
    out.append(f"<style>{_CSS}</style></head><body>")
    out.append(f'<h1>{esc(heading)} <span class="pill {esc(status)}">{esc(status)}</span></h1>')
    if info["arn"]:
        out.append(f'<p class="meta">{esc(info["arn"])}</p>')
    bits = []
    if info["start"] is not None:
        bits.append("started " + _dt.datetime.fromtimestamp(info["start"] / 1000, _dt.timezone.utc)
                    .strftime("%Y-%m-%d %H:%M:%S UTC"))
    if info["end"] is not None and info["start"] is not None:
        bits.append(f"took {format_duration(info['end'] - info['start'])}")
    elif info["start"] is not None:
        bits.append(f"running for {format_duration(t1 - info['start'])} so far")
    n_inv = len(info["invocations"])
    bits.append(f"{len(rows)} operation{'s' if len(rows) != 1 else ''}, {n_inv} invocation{'s' if n_inv != 1 else ''}")
    out.append(f'<p class="meta">{esc(" · ".join(bits))}</p>')
    summary = []
    if info["error"]:
        err = info["error"]
        summary.append(f'<div class="err">{esc(str(err.get("ErrorType")))}: '
                       f'{esc(_clip(err.get("ErrorMessage") or "", 600))}</div>')
    elif info["result"] not in (None, ""):
        summary.append(f'<div class="res">result {esc(_clip(info["result"], 600))}</div>')
    if summary:
        out.append(f'<div class="summary">{"".join(summary)}</div>')
    out.append('<div class="legend">' + "".join(
        f'<span><i class="bar {k}" style="position:static"></i>{esc(v)}</span>' for k, v in _LEGEND) + "</div>")

    out.append('<div class="chart">')
    ticks = _ticks(span)
    out.append('<div class="gridlayer">' + "".join(
        f'<div class="gridline" style="left:{t * 100.0 / span:.3f}%"></div>' for t in ticks) + "</div>")
    # axis
    labels = []
    for i, t in enumerate(ticks):
        cls = " first" if i == 0 else " last" if t * 100.0 / span > 94 else ""
        labels.append(f'<span class="ticklabel{cls}" style="left:{t * 100.0 / span:.3f}%">{esc(_tick_label(t))}</span>')
    out.append(f'<div class="row axis"><div class="label">operation</div><div class="track">{"".join(labels)}</div>'
               f'<div class="dur">duration</div></div>')
    # execution and invocations
    exec_end = info["end"] if info["end"] is not None else t1
    exec_cls = _status_class(status)
    out.append(f'<div class="row" data-row="execution"><div class="label"><span class="name">execution</span>'
               f'<span class="st {esc(status)}">{esc(status)}</span></div><div class="track">'
               + bar(_Segment(t0, exec_end, exec_cls, f"execution {status}"), " execution")
               + f'</div><div class="dur">{esc(format_duration(exec_end - t0))}</div></div>')
    inv_bars = []
    for i, (s, e, err) in enumerate(info["invocations"], 1):
        if s is None:
            continue
        what = f"invocation {i}" + (f" failed: {err.get('ErrorType')}: {_clip(err.get('ErrorMessage') or '', 100)}"
                                    if err else "")
        inv_bars.append(bar(_Segment(s, e if e is not None else s, "invocation", what), " failed" if err else ""))
    busy = sum(max(0, (e or s) - s) for s, e, _ in info["invocations"] if s is not None)
    out.append(f'<div class="row" data-row="invocations"><div class="label"><span class="name">invocations</span>'
               f'<span class="kind">{n_inv} × handler</span></div><div class="track">{"".join(inv_bars)}</div>'
               f'<div class="dur" title="time the handler ran">{esc(format_duration(busy))}</div></div>')
    # operations
    for row in rows[:max_rows]:
        segs = []
        for seg in row.segments:
            extra = " failedctx" if seg.kind == "context" and row.status == "FAILED" else ""
            segs.append(bar(seg, extra))
        for ms, text in row.markers:
            segs.append(f'<div class="marker" style="left:{pct(ms):.3f}%" title="{esc(row.label + ": " + text)}">'
                        f'<b>{esc(text.replace("attempt ", "#").replace("poll ", "#"))}</b></div>')
        dur = format_duration(row.end - row.start) if row.start is not None and row.end is not None else "…"
        indent = 8 + row.depth * 16
        note = f'<span class="kind">{esc(row.note)}</span>' if row.note and row.type != "CALLBACK" else ""
        out.append(
            f'<div class="row op-row" data-op-id="{esc(row.op_id)}" data-op-name="{esc(row.name or "")}" '
            f'data-status="{esc(row.status)}">'
            f'<div class="label" style="padding-left:{indent}px" title="{esc(row.label)} · {esc(row.kind)} · '
            f'{esc(row.status)}{(" · " + esc(row.note)) if row.note else ""}">'
            f'<span class="name">{esc(row.label)}</span><span class="st {esc(row.status)}">{esc(row.status)}</span>'
            f'<span class="kind">{esc(row.kind)}</span>{note}</div>'
            f'<div class="track">{"".join(segs)}</div><div class="dur">{esc(dur)}</div></div>')
    out.append("</div>")
    if len(rows) > max_rows:
        out.append(f'<p class="note">… {len(rows) - max_rows} more operations not drawn (see the table).</p>')
    out.append('<p class="note">Time runs left to right from the start of the execution. Hover a bar for exact '
               "times. Steps are instantaneous on a virtual clock (<code>--skip-time</code>); waits and back-offs "
               "keep their durable length.</p>")

    # the table: every operation, with its outcome
    out.append('<table class="ops"><thead><tr><th>operation</th><th>kind</th><th>status</th><th>attempts</th>'
               "<th>started</th><th>duration</th><th>result / error</th></tr></thead><tbody>")
    for row in rows:
        started = f"+{format_duration(row.start - t0)}" if row.start is not None else ""
        dur = format_duration(row.end - row.start) if row.start is not None and row.end is not None else "…"
        attempts = str(row.attempts) if row.attempts else ""
        if row.retry_delays:
            word = "polled after" if row.kind == "wait_for_condition" else "back-off"
            attempts += f" ({word} " + ", ".join(f"{d} s" for d in row.retry_delays) + ")"
        out.append(
            f'<tr data-op-id="{esc(row.op_id)}"><td class="mono opname" style="padding-left:{8 + row.depth * 14}px">'
            f'{esc(row.label)}</td><td>{esc(row.kind)}</td><td><span class="st {esc(row.status)}">{esc(row.status)}'
            f"</span></td><td>{esc(attempts)}</td><td>{esc(started)}</td><td>{esc(dur)}</td>"
            f'<td class="mono">{esc(row.note + " " if row.type == "CALLBACK" and row.note else "")}'
            f"{esc(row.outcome)}</td></tr>")
    out.append("</tbody></table>")
    out.append('<p class="note">Generated by durable_sync.views.render_html.</p>')
    out.append("</body></html>\n")
    return "\n".join(out)


# --------------------------------------------------------------------------- live progress (durable-sync run)
_SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"
_CLEAR = "\r\x1b[K"


class _ClearingStream:
    """Wraps stdout/stderr while a status line is shown: any other output first erases the line."""

    def __init__(self, inner: Any, progress: "LiveProgress"):
        self._inner = inner
        self._progress = progress

    def write(self, text: str) -> int:
        self._progress._erase()
        return self._inner.write(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class LiveProgress:
    """One status line on a terminal for a running execution, rewritten a few times a second.

    An engine listener (``LocalEngine(listeners=[progress])``)::

        ⠹ 12 done · running reserve (attempt 2) · next: cool-down due 14:03:07 (in 4 s) · 3 invocations · 6.1 s

    Events worth keeping (failures, retries, callbacks to answer, failed invocations, the
    start of the execution) are handed to ``printer(arn, event)`` and stay on screen; the
    rest only update the line. While it runs, ``sys.stdout`` / ``sys.stderr`` are wrapped
    so that anything else printed first erases the line (it is redrawn afterwards).
    ``durable-sync run`` uses it when stderr is a terminal.
    """

    def __init__(self, stream: Any, printer: Any = None, *, interval: float = 0.25, width: Optional[int] = None):
        import threading

        self.stream = stream
        self.printer = printer
        self.interval = interval
        self.width = width
        self.clock: Any = None  # an object with now_ms(); the engine's clock (virtual with --skip-time)
        self._lock = threading.RLock()
        self._shown = False
        self._dirty = False
        self._last_draw = 0.0
        self._frame = 0
        self._done = 0
        self._invocations = 0
        self._running: dict[str, tuple[str, str]] = {}  # op id -> (arn, label) of started, unfinished ops
        self._pending: dict[str, tuple[str, int, str]] = {}  # op id -> (arn, due ms or -1, label)
        self._attempts: dict[str, int] = {}  # op id -> attempts started
        self._arns: set[str] = set()
        self._started_at: Optional[float] = None
        self._thread: Any = None
        self._stop: Any = threading.Event()
        self._saved: Optional[tuple[Any, Any]] = None

    # -- engine listener ------------------------------------------------------------------
    def __call__(self, arn: str, event: dict) -> None:
        etype = event.get("EventType", "")
        op_id = event.get("Id") or ""
        label = event.get("Name") or f"({op_id[:8]})"
        details = event.get(f"{etype}Details") or {}
        notable = False
        with self._lock:
            self._arns.add(arn)
            main = getattr(self.printer, "main_arn", None)
            if main is not None and arn != main:
                label = f"[{_exec_label(arn)}] {label}"
            if etype == "ExecutionStarted":
                notable = True
            elif etype == "InvocationCompleted":
                self._invocations += 1
                notable = bool(details.get("Error"))
            elif etype.startswith("Execution"):
                pass
            elif etype.endswith("Started"):
                if etype == "WaitStarted":
                    due = _ms(details.get("ScheduledEndTimestamp"))
                    self._pending[op_id] = (arn, due if due is not None else -1, label)
                elif etype == "CallbackStarted":
                    timeout = details.get("Timeout")
                    due = _ms(event.get("EventTimestamp"))
                    due = due + int(timeout) * 1000 if timeout and due is not None else -1
                    self._pending[op_id] = (arn, due, f"callback {label}")
                    notable = True  # the id to answer it with
                elif etype == "ChainedInvokeStarted":
                    self._pending[op_id] = (arn, -1, f"invoke {label}")
                else:
                    self._pending.pop(op_id, None)
                    attempt = ""
                    if etype == "StepStarted":
                        n = self._attempts.get(op_id, 0) + 1
                        self._attempts[op_id] = n
                        attempt = f" (attempt {n})" if n > 1 else ""
                    self._running[op_id] = (arn, label + attempt)
            else:
                self._running.pop(op_id, None)
                retry = details.get("RetryDetails") or {}
                delay = retry.get("NextAttemptDelaySeconds")
                if delay:
                    at = _ms(event.get("EventTimestamp"))
                    word = "retry" if etype == "StepFailed" else "poll"
                    self._pending[op_id] = (arn, at + int(delay) * 1000 if at is not None else -1, f"{label} {word}")
                    notable = etype == "StepFailed"
                else:
                    self._pending.pop(op_id, None)
                    self._done += 1
                    notable = etype.endswith("Failed") or etype.endswith("TimedOut") or etype.endswith("Stopped")
            self._dirty = True
            if notable and self.printer is not None:
                self._erase()
                self.printer(arn, event)
            now = _monotonic()
            if self._started_at is not None and now - self._last_draw >= self.interval:
                self._draw(now)

    # -- life cycle -------------------------------------------------------------------------
    def start(self, clock: Any = None) -> "LiveProgress":
        """Wrap stdout/stderr and redraw in the background (countdowns move without events)."""
        import sys
        import threading

        if clock is not None:
            self.clock = clock
        self._started_at = _monotonic()
        self._saved = (sys.stdout, sys.stderr)
        sys.stdout = _ClearingStream(sys.stdout, self)  # type: ignore[assignment]
        sys.stderr = _ClearingStream(sys.stderr, self)  # type: ignore[assignment]
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="durable-progress", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Erase the line and restore stdout/stderr (idempotent)."""
        import sys

        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
            self._thread = None
        with self._lock:
            self._erase()
            if self._saved is not None:
                sys.stdout, sys.stderr = self._saved
                self._saved = None

    def __enter__(self) -> "LiveProgress":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            with self._lock:
                self._draw(_monotonic())

    # -- drawing ------------------------------------------------------------------------------
    def _erase(self) -> None:
        with self._lock:
            if self._shown:
                self.stream.write(_CLEAR)
                self.stream.flush()
                self._shown = False

    def status_text(self) -> str:
        """The status line's text (without the spinner)."""
        with self._lock:
            parts = [f"{self._done} done"]
            running = list(self._running.values())
            if running:
                current = running[-1][1]
                more = f" (+{len(running) - 1} more)" if len(running) > 1 else ""
                parts.append(f"running {current}{more}")
            now = self.clock.now_ms() if self.clock is not None else None
            pending = sorted(self._pending.values(), key=lambda p: (p[1] < 0, p[1]))
            if pending:
                shown = []
                for _, due, label in pending[:2]:
                    if due >= 0:
                        when = _dt.datetime.fromtimestamp(due / 1000).strftime("%H:%M:%S")
                        left = f" (in {format_duration(max(0, due - now))})" if now is not None else ""
                        shown.append(f"{label} due {when}{left}")
                    else:
                        shown.append(f"{label} (waiting)")
                more = f" +{len(pending) - 2}" if len(pending) > 2 else ""
                parts.append("next: " + ", ".join(shown) + more)
            parts.append(f"{self._invocations} invocation{'s' if self._invocations != 1 else ''}")
            if self._started_at is not None:
                parts.append(format_duration((_monotonic() - self._started_at) * 1000))
            return " · ".join(parts)

    def _draw(self, now: float) -> None:
        if not self._dirty and not self._pending and not self._running and self._shown:
            return
        import shutil

        width = self.width or shutil.get_terminal_size((100, 20)).columns
        self._frame += 1
        text = f"{_SPINNER[self._frame % len(_SPINNER)]} {self.status_text()}"
        if len(text) > width - 1:
            text = text[: max(10, width - 2)] + "…"
        self.stream.write(_CLEAR + text)
        self.stream.flush()
        self._shown = True
        self._dirty = False
        self._last_draw = now


def _monotonic() -> float:
    import time

    return time.monotonic()


def _exec_label(arn: str) -> str:
    parts = arn.split("/")
    return parts[-2] if len(parts) >= 3 else arn
