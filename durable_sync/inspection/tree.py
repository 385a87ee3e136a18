"""The one text tree of an execution's operations, and the one way durations and times are written.

It reads the operation views of ``model`` (by their attributes: it imports nothing of the model, which
uses it for its own one-line labels).
"""
from __future__ import annotations

from typing import Any, Optional, Sequence

from .. import wire

__all__ = ["render_tree", "operation_line", "operation_cells", "operation_notes", "format_duration", "format_time",
           "clip", "to_ms"]


def to_ms(value: Any) -> Optional[int]:
    """Epoch milliseconds of a datetime / epoch-ms number / ISO string, or None when there is none."""
    try:
        return wire.to_epoch_ms(value)
    except Exception:  # noqa: BLE001 - a view shows what it can
        return None

_OPEN = frozenset({"STARTED", "PENDING", "READY", "RUNNING"})
_BAD = frozenset({"FAILED", "TIMED_OUT", "STOPPED", "CANCELLED"})


def format_duration(ms: Optional[float]) -> str:
    """``340 ms``, ``1.25 s``, ``12.5 s``, ``2 min 5 s``, ``3 h 10 min``, ``2 d 4 h`` (empty for None)."""
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


def format_time(value: Any) -> str:
    """A timestamp (datetime or epoch ms) as ``2026-01-01 14:03:07 UTC``: times always say their zone."""
    ms = to_ms(value)
    if ms is None:
        return ""
    return wire.ms_to_datetime(ms).strftime("%Y-%m-%d %H:%M:%S UTC")


def clip(text: Any, limit: int) -> str:
    """One line of at most ``limit`` characters."""
    text = str(text).replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _seconds(values: Sequence[int]) -> str:
    return ", ".join(format_duration(v * 1000) for v in values)


def operation_notes(op: Any) -> list[str]:
    """What else a reader wants on the operation's line: attempts and back-offs, what a wait or callback waits for."""
    status = str(op.status)
    cells: list[str] = []
    if op.type == "STEP":
        n = max(op.attempt, len(op.attempts))
        if op.polling:
            cells.append(f"{n} check{'s' if n != 1 else ''}")
        else:
            failed = op.failed_attempts
            cells.append(f"{n} attempt{'s' if n != 1 else ''}" + (f" ({failed} failed)" if failed else ""))
        if op.retry_delays:
            cells.append(("polled after " if op.polling else "back-off ") + _seconds(op.retry_delays))
        if status in ("PENDING", "READY") and op.next_attempt_time is not None:
            cells.append(f"{'next check' if op.polling else 'next attempt'} {format_time(op.next_attempt_time)}")
    elif op.type == "WAIT":
        if op.wait_seconds is not None and op.end_time is None:
            cells.append(f"wait {format_duration(op.wait_seconds * 1000)}")
        if op.end_time is None and op.scheduled_end_time is not None:
            cells.append(f"due {format_time(op.scheduled_end_time)}")
    elif op.type == "CALLBACK":
        callback_id = getattr(op, "callback_id", None)
        if callback_id and status == "STARTED":
            cells.append(f"callback id {callback_id}")
    elif op.type == "CHAINED_INVOKE":
        function = getattr(op, "function_name", None)
        if function:
            cells.append(f"→ {function}")
    return cells


def operation_cells(op: Any, *, results: bool = False) -> list[str]:
    """The cells of an operation's line, after its label: kind, status, notes, duration, outcome."""
    status = str(op.status)
    cells = [op.kind, status, *operation_notes(op)]
    if op.duration_ms is not None:
        cells.append(format_duration(op.duration_ms))
    elif status in _OPEN:
        cells.append("…")
    if op.error and status in _BAD:
        cells.append(f"{op.error_type}: {clip(op.error_message or '', 160)}")
    elif results and status == "SUCCEEDED" and op.result_payload not in (None, ""):
        cells.append("→ " + clip(op.result_payload, 80))
    return cells


def operation_line(op: Any, *, results: bool = False) -> str:
    """One line for an operation: ``reserve  step  SUCCEEDED  2 attempts (1 failed)  back-off 1 s  1 s``."""
    return "  ".join([op.display_name, *operation_cells(op, results=results)])


def render_tree(roots: Sequence[Any], *, max_lines: int = 2000, results: bool = False) -> str:
    """Operation views (``build_tree(...)``, ``TestResult.operation_tree``) as an indented tree, one aligned
    line each; ``results=True`` adds each succeeded operation's result, clipped."""
    roots = list(roots or ())
    rows: list[tuple[str, list[str]]] = []

    def visit(op: Any, prefix: str, last: bool) -> None:
        rows.append((prefix + ("└─ " if last else "├─ ") + op.display_name, operation_cells(op, results=results)))
        kids = op.children
        for i, child in enumerate(kids):
            visit(child, prefix + ("   " if last else "│  "), i == len(kids) - 1)

    for i, root in enumerate(roots):
        visit(root, "", i == len(roots) - 1)
    if not rows:
        return "(no operations)"
    shown = rows[:max_lines]
    width = min(max(len(left) for left, _ in shown), 60)
    kind_w = max(len(cells[0]) for _, cells in shown)
    status_w = max(len(cells[1]) for _, cells in shown)
    lines = []
    for left, cells in shown:
        bits = [cells[0].ljust(kind_w), cells[1].ljust(status_w), *cells[2:]]
        lines.append(f"{left.ljust(width)}  {'  '.join(bits)}".rstrip())
    if len(rows) > max_lines:
        lines.append(f"… ({len(rows) - max_lines} more operations)")
    return "\n".join(lines)
