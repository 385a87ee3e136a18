"""The HTML timeline of one execution: every operation as bars on one time axis.

The page's markup and CSS are ``timeline.html`` next to this module (package data): named
fragments, each a ``string.Template`` filled here with escaped text. The page has no scripts
and loads nothing: open it anywhere, attach it to a ticket. ``layout`` computes what the page draws
(each bar's place on the time axis, the ticks, each row's cells); the live console
(``durable_sync.console``) draws the same layout with the same CSS.
"""
from __future__ import annotations

import functools
import html
import re
from dataclasses import dataclass, field
from importlib import resources
from string import Template
from typing import Any, Optional, Sequence

from .model import Execution, Operation, StepOperation, WaitOperation, read_execution
from .tracebacks import parse_trace
from .tree import clip, format_duration, format_time, operation_notes, to_ms

__all__ = ["render_html", "layout", "Layout", "RowView", "Bar", "Marker", "LEGEND", "TracePart", "trace_parts",
           "error_text"]

LEGEND = [("ok", "succeeded"), ("failed", "failed attempt"), ("backoff", "retry back-off"),
           ("waiting", "wait / callback pending"), ("poll", "check (keeps polling)"), ("running", "running / pending"),
           ("timedout", "timed out"), ("stopped", "stopped"), ("context", "child context / map / parallel"),
           ("invocation", "handler invocation")]
_NICE_STEPS_MS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10_000, 15_000, 30_000, 60_000,
                  120_000, 300_000, 600_000, 900_000, 1_800_000, 3_600_000, 7_200_000, 10_800_000, 21_600_000,
                  43_200_000, 86_400_000, 172_800_000, 604_800_000, 1_209_600_000, 2_592_000_000]


@functools.lru_cache(maxsize=1)
def _fragments() -> dict[str, Template]:
    text = resources.files(__package__).joinpath("timeline.html").read_text(encoding="utf-8")
    parts = re.split(r"^<!-- fragment: (\w+) -->\n", text, flags=re.M)
    return {name: Template(body.rstrip("\n")) for name, body in zip(parts[1::2], parts[2::2])}


def _fill(fragment: str, **values: Any) -> str:
    return _fragments()[fragment].substitute(**{k: "" if v is None else v for k, v in values.items()})


esc = html.escape


@dataclass
class _Segment:
    start: int
    end: int
    kind: str  # css class: ok, failed, running, backoff, waiting, poll, timedout, stopped, context, invocation
    title: str


@dataclass
class _Row:
    op: Operation
    depth: int
    segments: list = field(default_factory=list)
    markers: list = field(default_factory=list)  # (ms, title)


def _status_class(status: str) -> str:
    return {"SUCCEEDED": "ok", "FAILED": "failed", "TIMED_OUT": "timedout", "STOPPED": "stopped",
            "CANCELLED": "stopped"}.get(status, "running")


def error_text(error: Optional[dict], limit: int) -> str:
    error = error or {}
    return f"{error.get('ErrorType')}: {clip(error.get('ErrorMessage') or '', limit)}"


def _step_segments(row: _Row, op: StepOperation, open_end: Optional[int]) -> None:
    label, polling = op.display_name, op.polling
    word = "check" if polling else "attempt"
    attempts = list(op.attempts)
    next_at = to_ms(op.next_attempt_time)
    start = op.start_ms
    for i, a in enumerate(attempts):
        a_start, a_end = to_ms(a.started_at), to_ms(a.ended_at)
        if a_start is None:
            a_start = a_end if a_end is not None else start
        if a_start is None:
            continue
        if a_end is None:
            a_end = open_end if open_end is not None else a_start
        if a.outcome == "FAILED":
            cls, what = "failed", f"failed: {error_text(a.error, 120)}"
        elif a.outcome == "SUCCEEDED":
            cls = "poll" if a.retry_delay is not None else "ok"
            what = "checked, keeps polling" if cls == "poll" else "succeeded"
        else:
            cls, what = "running", "running (or interrupted)"
        row.segments.append(_Segment(a_start, a_end, cls, f"{label} {word} {a.number}: {what}"))
        if len(attempts) > 1:
            row.markers.append((a_start, f"{word} {a.number}"))
        if a.retry_delay is not None:
            nxt = attempts[i + 1] if i + 1 < len(attempts) else None
            gap_end = to_ms(nxt.started_at) if nxt is not None else None
            if gap_end is None:
                gap_end = next_at if next_at is not None else a_end + a.retry_delay * 1000
            gap = "next check" if polling else "back-off"
            row.segments.append(_Segment(a_end, max(a_end, gap_end), "backoff",
                                         f"{label}: {gap} {format_duration(a.retry_delay * 1000)} before "
                                         f"{word} {a.number + 1}"))
    if not row.segments and start is not None:
        row.segments.append(_Segment(start, open_end if open_end is not None else start, _status_class(op.status),
                                     f"{label}: {op.status}"))


def _row(op: Operation, depth: int, now_ms: Optional[int]) -> _Row:
    row = _Row(op, depth)
    start, end, status, label = op.start_ms, op.end_ms, str(op.status), op.display_name
    open_end = end if end is not None else now_ms if now_ms is not None else start
    if isinstance(op, StepOperation):
        _step_segments(row, op, open_end)
    elif isinstance(op, WaitOperation):
        due = to_ms(op.scheduled_end_time)
        if start is not None:
            stop = end if end is not None else (due if due is not None else open_end)
            cls = "waiting" if status in ("SUCCEEDED", "STARTED") else _status_class(status)
            title = f"{label}: wait {format_duration((op.wait_seconds or 0) * 1000)}"
            if end is None and due is not None:
                title += f", due {format_time(due)}"
            row.segments.append(_Segment(start, max(start, stop or start), cls, title))
            if end is None:
                row.markers.append((stop or start, "due"))
    elif start is not None:
        stop = open_end if open_end is not None else start
        if op.type == "CONTEXT":
            cls = "context" if status == "SUCCEEDED" else _status_class(status)
        elif op.type == "CALLBACK" and status == "STARTED":
            cls = "waiting"
        else:
            cls = _status_class(status)
        row.segments.append(_Segment(start, max(start, stop), cls, f"{label}: {op.kind} {status}"))
    return row


def _rows(execution: Execution, now_ms: Optional[int]) -> list[_Row]:
    rows: list[_Row] = []

    def visit(op: Operation, depth: int) -> None:
        rows.append(_row(op, depth, now_ms))
        for child in op.children:
            visit(child, depth + 1)

    for root in execution.roots:
        visit(root, 0)
    return rows


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


@dataclass(frozen=True)
class TracePart:
    """A piece of a stack trace as the timeline shows it: text of the user's frames (with the header and the
    exception line), or a run of ``count`` library frames folded under the names of their ``functions``."""

    text: str
    library: bool = False
    count: int = 0
    functions: str = ""


def trace_parts(stack_trace: Any) -> list[TracePart]:
    """A recorded StackTrace as the timeline shows it: the user's frames open, each run of library frames folded."""
    trace = parse_trace(stack_trace)
    if trace is None:
        return []
    parts: list[TracePart] = []
    pending: list[str] = [trace.header]
    for library, frames in trace.segments():
        text = "\n".join(f.text for f in frames)
        if library and trace.user_frames:
            if pending:
                parts.append(TracePart("\n".join(pending)))
                pending = []
            functions = ", ".join(dict.fromkeys(f.function for f in frames))
            parts.append(TracePart(text, True, len(frames), clip(functions, 80)))
        else:
            pending.append(text)
    pending.extend(trace.exception)
    parts.append(TracePart("\n".join(pending)))
    return parts


def _trace(title: str, stack_trace: Any) -> str:
    """A collapsible stack trace: the user's frames open, each run of library frames folded inside."""
    parts = trace_parts(stack_trace)
    if not parts:
        return ""
    html_parts = [_fill("trace_library", count=p.count, plural="s" if p.count != 1 else "",
                        functions=esc(p.functions), text=esc(p.text)) if p.library
                  else _fill("trace_frames", text=esc(p.text)) for p in parts]
    return _fill("trace", title=esc(title), parts="".join(html_parts))


def _operation_traces(op: Operation) -> str:
    """One collapsible stack per failed attempt (steps), or per recorded error (other operations)."""
    if isinstance(op, StepOperation) and op.attempts:
        word = "check" if op.polling else "attempt"
        return "".join(_trace(f"{word} {a.number}: {error_text(a.error, 120)}", (a.error or {}).get("StackTrace"))
                       for a in op.attempts if a.outcome == "FAILED" and a.error)
    if op.error and str(op.status) != "SUCCEEDED":
        return _trace(error_text(op.error, 120), op.error.get("StackTrace"))
    return ""


@dataclass(frozen=True)
class Bar:
    """One bar on the time axis: its css ``kind``, ``left`` and ``width`` in percent of the axis, its hover text."""

    kind: str
    left: float
    width: float
    title: str


@dataclass(frozen=True)
class Marker:
    left: float
    title: str
    text: str


@dataclass(frozen=True)
class RowView:
    """One operation's row: its label cells and its bars, as the timeline draws them."""

    op: Operation
    depth: int
    title: str
    note: str  # shown after the kind ("" for none)
    duration: str
    bars: tuple[Bar, ...]
    markers: tuple[Marker, ...]


@dataclass(frozen=True)
class Layout:
    """Where everything of one execution sits on one time axis: what ``render_html`` draws, and what the
    live console (``durable_sync.console``) draws with the same classes."""

    execution: Execution
    t0: int
    t1: int
    now_ms: Optional[int]
    rows: tuple[RowView, ...]
    ticks: tuple[tuple[float, str, str], ...]  # (left %, label, extra css class)
    execution_bar: Bar
    execution_duration: str
    invocation_bars: tuple[Bar, ...]
    invocations_duration: str  # the time the handler ran

    @property
    def meta(self) -> list[str]:
        """The execution's one-line facts: when it started, how long it took (or runs so far), how much it did."""
        execution, meta = self.execution, []
        if execution.start_ms is not None:
            meta.append("started " + format_time(execution.start_ms))
            if execution.end_ms is not None:
                meta.append(f"took {format_duration(execution.end_ms - execution.start_ms)}")
            else:
                meta.append(f"running for {format_duration(self.t1 - execution.start_ms)} so far")
        n_inv, n_ops = len(execution.invocations), len(self.rows)
        meta.append(f"{n_ops} operation{'s' if n_ops != 1 else ''}, {n_inv} invocation{'s' if n_inv != 1 else ''}")
        return meta


def layout(execution_info: Any, operations: Sequence[dict], history: Sequence[dict] = (), *, now: Any = None,
           execution: Optional[Execution] = None) -> Layout:
    """The timeline of an execution as positions on its time axis (see ``render_html`` for the arguments;
    ``execution``: the read model when the caller has it already)."""
    if execution is None:
        execution = read_execution(execution_info, operations, history)
    now_ms = to_ms(now)
    stamps: list[int] = []
    for op in operations:
        for key in ("StartTimestamp", "EndTimestamp"):
            value = to_ms(op.get(key))
            if value is not None:
                stamps.append(value)
        for key in ("WaitDetails", "StepDetails"):
            d = op.get(key) or {}
            value = to_ms(d.get("ScheduledEndTimestamp") or d.get("NextAttemptTimestamp"))
            if value is not None:
                stamps.append(value)
    for event in history or ():
        value = to_ms(event.get("EventTimestamp"))
        if value is not None:
            stamps.append(value)
    if now_ms is None and execution.end_ms is None:
        now_ms = max(stamps) if stamps else None
    rows = _rows(execution, now_ms if execution.end_ms is None else execution.end_ms)
    t0 = execution.start_ms if execution.start_ms is not None else (min(stamps) if stamps else 0)
    t1 = max([t0] + stamps + ([execution.end_ms] if execution.end_ms else []) + ([now_ms] if now_ms else []))
    span = max(t1 - t0, 1)

    def pct(ms: int) -> float:
        return max(0.0, min(100.0, (ms - t0) * 100.0 / span))

    def bar(seg: _Segment, extra: str = "") -> Bar:
        left = pct(seg.start)
        width = max(0.0, pct(max(seg.end, seg.start)) - left)
        offsets = f"+{format_duration(seg.start - t0)}"
        if seg.end > seg.start:
            offsets += f" → +{format_duration(seg.end - t0)} ({format_duration(seg.end - seg.start)})"
        return Bar(seg.kind + extra, left, width, seg.title + " · " + offsets)

    ticks = []
    for i, t in enumerate(_ticks(span)):
        extra = " first" if i == 0 else " last" if t * 100.0 / span > 94 else ""
        ticks.append((t * 100.0 / span, _tick_label(t), extra))
    status = execution.status
    exec_end = execution.end_ms if execution.end_ms is not None else t1
    inv_bars = []
    for inv in execution.invocations:
        if inv.start_ms is None:
            continue
        what = f"invocation {inv.number}" + (f" failed: {error_text(inv.error, 100)}" if inv.error else "")
        inv_bars.append(bar(_Segment(inv.start_ms, inv.end_ms if inv.end_ms is not None else inv.start_ms,
                                     "invocation", what), " failed" if inv.error else ""))
    views = []
    for row in rows:
        op = row.op
        notes = operation_notes(op)
        note = notes[0] if notes else ""
        views.append(RowView(
            op=op, depth=row.depth, title=" · ".join([op.display_name, op.kind, str(op.status), *notes]),
            note=note if op.type != "CALLBACK" else "",
            duration=format_duration(op.duration_ms) if op.duration_ms is not None else "…",
            bars=tuple(bar(seg, " failedctx" if seg.kind == "context" and op.status == "FAILED" else "")
                       for seg in row.segments),
            markers=tuple(Marker(pct(ms), op.display_name + ": " + text,
                                 text.replace("attempt ", "#").replace("check ", "#")) for ms, text in row.markers)))
    busy = sum(inv.duration_ms or 0 for inv in execution.invocations)
    return Layout(execution=execution, t0=t0, t1=t1, now_ms=now_ms, rows=tuple(views), ticks=tuple(ticks),
                  execution_bar=bar(_Segment(t0, exec_end, _status_class(status), f"execution {status}"), " execution"),
                  execution_duration=format_duration(exec_end - t0), invocation_bars=tuple(inv_bars),
                  invocations_duration=format_duration(busy))


def _bar_html(b: Bar) -> str:
    return _fill("bar", kind=esc(b.kind), left=f"{b.left:.3f}", width=f"{b.width:.3f}", title=esc(b.title))


def render_html(execution_info: Any, operations: Sequence[dict], history: Sequence[dict] = (), *,
                title: Optional[str] = None, now: Any = None, max_rows: int = 2000) -> str:
    """A self-contained HTML page: the execution's operations as bars on one time axis.

    ``execution_info`` may be an ``ExecutionResult``, a ``GetDurableExecution`` response
    dict, a ``durable-sync`` database record or None (then it is derived from the
    EXECUTION operation and the history). One row per operation, indented under its
    parent context, colored by outcome; a step's attempts are separate segments with
    the back-off between them; waits are hatched; the table below holds every operation
    with its result or error, and a collapsible stack trace per failed attempt. ``now``
    (datetime or epoch ms) is the end of the axis for a running execution (default: its
    last recorded timestamp).
    """
    lay = layout(execution_info, operations, history, now=now)
    execution, t0 = lay.execution, lay.t0
    status = execution.status
    heading = title or (f"{execution.function_name} / {execution.name}"
                        if execution.function_name or execution.name else "execution")
    if execution.error:
        summary = _fill("error_summary", error=esc(error_text(execution.error, 600)),
                        traces=_trace("stack trace", execution.error.get("StackTrace")))
    elif execution.result_payload not in (None, ""):
        summary = _fill("result_summary", result=esc(clip(execution.result_payload, 600)))
    else:
        summary = ""
    tick_labels = [_fill("tick", extra=extra, left=f"{left:.3f}", text=esc(text)) for left, text, extra in lay.ticks]
    execution_row = _fill("execution_row", status=esc(status), duration=esc(lay.execution_duration),
                          bars=_bar_html(lay.execution_bar))
    invocations_row = _fill("invocations_row", count=len(execution.invocations),
                            bars="".join(_bar_html(b) for b in lay.invocation_bars),
                            duration=esc(lay.invocations_duration))

    op_rows, table_rows = [], []
    for i, row in enumerate(lay.rows):
        op = row.op
        if i < max_rows:
            segs = [_bar_html(b) for b in row.bars]
            segs.extend(_fill("marker", left=f"{m.left:.3f}", title=esc(m.title), text=esc(m.text))
                        for m in row.markers)
            op_rows.append(_fill(
                "op_row", op_id=esc(op.id), op_name=esc(op.name or ""), status=esc(str(op.status)),
                indent=8 + row.depth * 16, label=esc(op.display_name), kind=esc(op.kind), bars="".join(segs),
                title=esc(row.title), note=_fill("op_note", note=esc(row.note)) if row.note else "",
                duration=esc(row.duration)))
        notes = operation_notes(op)
        note = notes[0] if notes else ""
        if op.error and str(op.status) != "SUCCEEDED":
            outcome = error_text(op.error, 160)
        elif op.result_payload not in (None, ""):
            outcome = "→ " + clip(op.result_payload, 160)
        else:
            outcome = ""
        if op.type == "CALLBACK" and note:
            outcome = f"{note} {outcome}".strip()
        started = f"+{format_duration(op.start_ms - t0)}" if op.start_ms is not None else ""
        attempts = ""
        if isinstance(op, StepOperation):
            attempts = str(max(op.attempt, len(op.attempts)))
            if op.retry_delays:
                word = "polled after" if op.polling else "back-off"
                attempts += f" ({word} " + ", ".join(format_duration(d * 1000) for d in op.retry_delays) + ")"
        table_rows.append(_fill("table_row", op_id=esc(op.id), indent=8 + row.depth * 14, label=esc(op.display_name),
                                kind=esc(op.kind), status=esc(str(op.status)), attempts=esc(attempts),
                                started=esc(started), duration=esc(row.duration), outcome=esc(outcome),
                                traces=_operation_traces(op)))
    return _fill(
        "page", heading=esc(heading), status=esc(status),
        arn=_fill("arn", arn=esc(execution.arn)) if execution.arn else "", meta=esc(" · ".join(lay.meta)),
        summary=summary,
        legend="".join(_fill("legend_item", kind=k, text=esc(v)) for k, v in LEGEND),
        gridlines="".join(_fill("gridline", left=f"{left:.3f}") for left, _, _ in lay.ticks),
        ticks="".join(tick_labels), execution_row=execution_row, invocations_row=invocations_row,
        rows="\n".join(op_rows),
        more=_fill("more", count=len(lay.rows) - max_rows) if len(lay.rows) > max_rows else "",
        table_rows="\n".join(table_rows)) + "\n"
