"""What ``durable-sync run`` shows while an execution runs: one line per event, or a live status line.

Both are engine listeners (``listener(arn, event)`` for every history event). Operations get the
labels the tree shows (``score-all[3]`` for an unnamed map item, ``step #2`` for an unnamed step);
the items of a map or parallel report as one summary line when the batch ends, and only their
failures on their own; lines of other executions (chained-invoke targets) start with a short
label such as ``[fraud-check]``.
"""
from __future__ import annotations

import os
import shlex
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any, Optional

from .. import wire
from ..inspection import format_duration, format_trace
from ..inspection.history import operation_type_of
from ..inspection.model import BRANCH_SUBTYPES, kind_word, operation_label
from ..inspection.tree import to_ms
from .common import err, exec_name, when

#: Errors that mean the code is wrong, not the world: retrying them is rarely what the user wants.
PROGRAMMING_ERRORS = frozenset({
    "KeyError", "IndexError", "TypeError", "AttributeError", "NameError", "UnboundLocalError", "ZeroDivisionError",
    "AssertionError", "NotImplementedError", "RecursionError", "ImportError", "ModuleNotFoundError", "SyntaxError",
})
_BATCH_SUBTYPES = frozenset({wire.SubType.MAP, wire.SubType.PARALLEL})
_ENDS = ("Succeeded", "Failed", "TimedOut", "Stopped", "Cancelled")


@dataclass
class _Op:
    label: str
    sub_type: Optional[str]
    parent_id: Optional[str]
    in_batch: bool  # a map / parallel item, or inside one


class Labels:
    """Readable labels of the operations seen in events, the same the tree gives them."""

    def __init__(self) -> None:
        self._ops: dict[tuple[str, str], _Op] = {}
        self._positions: dict[tuple[str, Optional[str]], list] = {}  # (arn, parent) -> [next n, {id: n}]

    def get(self, arn: str, op_id: Optional[str]) -> Optional[_Op]:
        return self._ops.get((arn, op_id or ""))

    def see(self, arn: str, event: dict) -> Optional[_Op]:
        """The operation an event is about (registered on first sight); None for execution-level events."""
        op_id = event.get("Id")
        etype = event.get("EventType", "")
        if not op_id or etype.startswith(("Execution", "Invocation")):
            return None
        known = self._ops.get((arn, op_id))
        if known is not None:
            return known
        sub = event.get("SubType") or operation_type_of(etype)
        parent_id = event.get("ParentId")
        parent = self._ops.get((arn, parent_id)) if parent_id else None
        name = event.get("Name")
        label = name
        if not label or sub in BRANCH_SUBTYPES:
            position = self._position(arn, parent_id, op_id)
            label = operation_label(name, kind_word(sub), sub, position, parent.label if parent else None)
        if parent is not None and parent.in_batch:  # inside a map item: say which ("enrich-3 › lookup")
            item = parent.label.split(" › ")[0]
            label = f"{item} › {label}"
        op = _Op(label, sub, parent_id, parent is not None and (parent.in_batch or parent.sub_type in BRANCH_SUBTYPES)
                 or sub in BRANCH_SUBTYPES)
        self._ops[(arn, op_id)] = op
        return op

    def _position(self, arn: str, parent_id: Optional[str], op_id: str) -> Optional[int]:
        """Operation n of its context (branch index for map/parallel items), from the positional ids."""
        entry = self._positions.setdefault((arn, parent_id), [0 if parent_id else 1, {}])
        found = entry[1].get(op_id)
        limit = entry[0] + 1024  # ids are handed out in order: a new one is never far past the last
        while found is None and entry[0] < limit:
            n = entry[0]
            entry[1][wire.operation_id(parent_id, n)] = n
            entry[0] += 1
            if entry[1].get(op_id) is not None:
                found = n
        return found


def _error_of(details: dict) -> dict:
    return (details.get("Error") or {}).get("Payload") or {}


def _error_text(error: dict) -> str:
    return f"{error.get('ErrorType')}: {error.get('ErrorMessage')}"


class EventPrinter:
    """An engine listener that describes each event worth a line, on stderr.

    ``lines(arn, event)`` gives ``(text, notable)`` pairs: notable lines (failures, retries,
    callbacks to answer, batch summaries, the start) are the ones a live status line keeps on
    screen. ``run_name`` and ``db`` make the hints name the command that continues the run;
    ``clock`` (real time) lets a retry say when its next attempt is due.
    """

    def __init__(self, *, db: Optional[str] = None, clock: Any = None, prefix_all: bool = False) -> None:
        self.main_arn: Optional[str] = None
        self.labels = Labels()
        self.db = db
        self.clock = clock  # real time only: None under --skip-time
        self.prefix_all = prefix_all
        self._lock = threading.Lock()
        self._exec_labels: dict[str, str] = {}
        self._batches: dict[tuple[str, str], dict[str, int]] = {}  # (arn, map/parallel id) -> outcome counts
        self._explained: set[tuple[str, str]] = set()  # (arn, op id): programming-error hint shown
        self._wait_hint_shown = False

    def __call__(self, arn: str, event: dict) -> None:
        for text, _ in self.lines(arn, event):
            err(text)

    # -- labels -------------------------------------------------------------------------------
    def exec_label(self, arn: str) -> str:
        """A short, stable label for an execution other than the main one: its function's name."""
        label = self._exec_labels.get(arn)
        if label is None:
            parts = wire.parse_execution_arn(arn)
            function = parts.function_name if parts else exec_name(arn)
            taken = sum(1 for other in self._exec_labels.values() if other.split("#")[0] == function)
            label = function if not taken else f"{function}#{taken + 1}"
            self._exec_labels[arn] = label
        return label

    def _prefix(self, arn: str) -> Optional[str]:
        if self.prefix_all or (self.main_arn is not None and arn != self.main_arn):
            return f"[{self.exec_label(arn)}]"
        return None

    # -- lines --------------------------------------------------------------------------------
    def lines(self, arn: str, event: dict) -> list[tuple[str, bool]]:
        with self._lock:
            out = self._describe(arn, event)
            prefix = self._prefix(arn)
        if prefix:
            out = [(f"{prefix} {text.strip()}" if not text.startswith("    ") else f"{' ' * len(prefix)}{text}",
                    notable) for text, notable in out]
        return out

    def _describe(self, arn: str, event: dict) -> list[tuple[str, bool]]:
        etype = event.get("EventType", "")
        details = event.get(f"{etype}Details") or {}
        if etype == "ExecutionStarted":
            if self.main_arn is None and not self.prefix_all:
                self.main_arn = arn  # the first execution to start is the one the command started
            parts = wire.parse_execution_arn(arn)
            function, name = (parts.function_name, parts.name) if parts else ("execution", arn)
            return [(f"execution {function} / {name} started", True)]
        if etype == "InvocationCompleted":
            error = _error_of(details)
            return [(f"  invocation failed: {_error_text(error)}", True)] if error else []
        if etype.startswith("Execution"):
            if self._prefix(arn) is None:
                return []  # the main execution's end is the summary's business
            error = _error_of(details)
            return [(f"  {etype:<22}" + (f" ({_error_text(error)})" if error else ""), True)]
        op = self.labels.see(arn, event)
        if op is None:
            return []
        label = op.label
        ended = etype.endswith(_ENDS)
        failed = ended and not etype.endswith("Succeeded")
        if op.sub_type in BRANCH_SUBTYPES and ended:
            counts = self._batches.setdefault((arn, event.get("ParentId") or ""), {})
            outcome = etype.rsplit("Context", 1)[-1].lower() or "ended"
            counts[outcome] = counts.get(outcome, 0) + 1
        if op.in_batch and not failed:
            return []  # an item's routine events: the batch's summary line counts them
        if etype.endswith("Started"):
            if etype == "WaitStarted":
                return [(f"  {etype:<22} {label} ({format_duration((details.get('Duration') or 0) * 1000)})",
                         False)]
            if etype == "CallbackStarted":
                return [(f"  {etype:<22} {label} (callback id {details.get('CallbackId')})", True)]
            if etype == "ChainedInvokeStarted":
                target = details.get("FunctionName")
                return [(f"  {etype:<22} {label}" + (f" (→ {target})" if target else ""), False)]
            return []
        retry = details.get("RetryDetails") or {}
        delay = retry.get("NextAttemptDelaySeconds")
        if delay is not None and etype == "StepSucceeded":  # wait_for_condition: a check that says "not yet"
            return [(f"  {'check':<22} {label} check {retry.get('CurrentAttempt')}: not done yet, next check in "
                     f"{format_duration(delay * 1000)}", False)]
        if delay is not None and etype == "StepFailed":
            return self._retry_lines(arn, event, label, details, retry, delay)
        extra = ""
        if op.sub_type in _BATCH_SUBTYPES and ended:
            counts = self._batches.pop((arn, event.get("Id") or ""), {})
            total = sum(counts.values())
            word = "item" if op.sub_type == wire.SubType.MAP else "branch"
            plural = "s" if op.sub_type == wire.SubType.MAP else "es"
            extra = (f" ({kind_word(op.sub_type)}: {total} {word}{plural if total != 1 else ''}"
                     + "".join(f", {n} {what}" for what, n in sorted(counts.items())) + ")")
        if failed:
            extra += f" ({_error_text(_error_of(details))})"
        return [(f"  {etype:<22} {label}{extra}", failed or op.sub_type in _BATCH_SUBTYPES)]

    def _retry_lines(self, arn: str, event: dict, label: str, details: dict, retry: dict,
                     delay: int) -> list[tuple[str, bool]]:
        error = _error_of(details)
        line = (f"  {event['EventType']:<22} {label} attempt {retry.get('CurrentAttempt')} failed "
                f"({_error_text(error)}), retry in {format_duration(delay * 1000)}")
        out = []
        if self.clock is not None:  # real time: say when, and how not to wait
            due = (to_ms(event.get("EventTimestamp")) or self.clock.now_ms()) + delay * 1000
            line += f", at {when(due, date=False)}"
            out.append((line, True))
            if not self._wait_hint_shown and delay >= 2:
                self._wait_hint_shown = True
                run = shlex.quote(exec_name(self.main_arn or event.get("Id", "")))
                db = f" --db {shlex.quote(self.db)}" if self.db and self.db != "durable.db" else ""
                out.append((f"    not waiting for it? run with --skip-time, or press Ctrl-C and continue with "
                            f"`durable-sync resume {run}{db} --skip-time` (nothing is lost)", True))
        else:
            out.append((line, True))
        key = (arn, event.get("Id") or "")
        if error.get("ErrorType") in PROGRAMMING_ERRORS and key not in self._explained:
            self._explained.add(key)
            out.append((f"    {error.get('ErrorType')} is usually a bug in the code, and it is retried like any error "
                        "(the default retry policy retries every error). Fix the code, or limit what is retried: "
                        "StepConfig(retry_strategy=ds.RetryPolicy(retryable_error_types=[...]))", True))
            trace = format_trace(error.get("StackTrace"), indent="    ")
            if trace:
                out.append((trace, True))
        return out


def live_progress(printer: EventPrinter) -> Any:
    """``run``'s live status line when stderr is a terminal, else None."""
    stream = sys.stderr
    if not getattr(stream, "isatty", lambda: False)() or os.environ.get("TERM") == "dumb":
        return None
    return LiveProgress(stream, printer)


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

        ⠹ 12 done · running reserve (attempt 2) · score-all: 37 done, 5 running · next: cool-down due 14:03:07 (in 4 s) · 3 invocations · 6.1 s

    The notable lines of ``printer`` (failures, retries, callbacks to answer, batch summaries,
    the start of the execution) stay on screen; the rest only update the line. While it runs,
    ``sys.stdout`` / ``sys.stderr`` are wrapped so that anything else printed first erases the
    line (it is redrawn afterwards). ``durable-sync run`` uses it when stderr is a terminal.
    """

    def __init__(self, stream: Any, printer: Optional[EventPrinter] = None, *, interval: float = 0.25,
                 width: Optional[int] = None):
        self.stream = stream
        self.printer = printer if printer is not None else EventPrinter()
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
        self._running: dict[str, str] = {}  # op id -> label of started, unfinished ops
        self._pending: dict[str, tuple[int, str]] = {}  # op id -> (due ms or -1, label)
        self._attempts: dict[str, int] = {}  # op id -> attempts started
        self._batches: dict[str, dict[str, int]] = {}  # batch label -> {"done": n, "running": m}
        self._started_at: Optional[float] = None
        self._thread: Any = None
        self._stop = threading.Event()
        self._saved: Optional[tuple[Any, Any]] = None

    # -- engine listener ------------------------------------------------------------------
    def __call__(self, arn: str, event: dict) -> None:
        etype = event.get("EventType", "")
        op_id = f"{arn}/{event.get('Id') or ''}"
        details = event.get(f"{etype}Details") or {}
        with self._lock:
            lines = [text for text, notable in self.printer.lines(arn, event) if notable]
            op = self.printer.labels.get(arn, event.get("Id"))
            prefix = self.printer._prefix(arn)
            label = (f"{prefix} " if prefix else "") + (op.label if op is not None else "")
            batch = self._batch_of(arn, event, op)
            if etype == "InvocationCompleted":
                self._invocations += 1
            elif op is None:
                pass
            elif batch is not None:
                counts = self._batches.setdefault(batch, {"done": 0, "running": 0})
                if op.sub_type in BRANCH_SUBTYPES:
                    if etype.endswith("Started"):
                        counts["running"] += 1
                    elif etype.endswith(_ENDS):
                        counts["running"] = max(0, counts["running"] - 1)
                        counts["done"] += 1
            elif etype.endswith("Started"):
                if etype == "WaitStarted":
                    due = to_ms(details.get("ScheduledEndTimestamp"))
                    self._pending[op_id] = (due if due is not None else -1, label)
                elif etype == "CallbackStarted":
                    timeout = details.get("Timeout")
                    due = to_ms(event.get("EventTimestamp"))
                    due = due + int(timeout) * 1000 if timeout and due is not None else -1
                    self._pending[op_id] = (due, f"callback {label}")
                elif etype == "ChainedInvokeStarted":
                    self._pending[op_id] = (-1, f"invoke {label}")
                else:
                    self._pending.pop(op_id, None)
                    attempt = ""
                    if etype == "StepStarted":
                        n = self._attempts.get(op_id, 0) + 1
                        self._attempts[op_id] = n
                        attempt = f" ({'check' if op.sub_type == wire.SubType.WAIT_FOR_CONDITION else 'attempt'} {n})" \
                            if n > 1 else ""
                    self._running[op_id] = label + attempt
            else:
                self._running.pop(op_id, None)
                delay = (details.get("RetryDetails") or {}).get("NextAttemptDelaySeconds")
                if delay is not None:
                    at = to_ms(event.get("EventTimestamp"))
                    word = "retry" if etype == "StepFailed" else "next check"
                    self._pending[op_id] = (at + int(delay) * 1000 if at is not None else -1, f"{label} {word}")
                else:
                    self._pending.pop(op_id, None)
                    self._done += 1
                    if op.sub_type in _BATCH_SUBTYPES:
                        self._batches.pop(label, None)
            self._dirty = True
            if lines:
                self._erase()
                for text in lines:
                    err(text)
            now = _monotonic()
            if self._started_at is not None and now - self._last_draw >= self.interval:
                self._draw(now)

    def _batch_of(self, arn: str, event: dict, op: Optional[_Op]) -> Optional[str]:
        """The label of the map / parallel an item (or an operation inside one) belongs to."""
        if op is None or not op.in_batch:
            return None
        parent_id = op.parent_id
        while parent_id:
            parent = self.printer.labels.get(arn, parent_id)
            if parent is None:
                return None
            if parent.sub_type in _BATCH_SUBTYPES:
                prefix = self.printer._prefix(arn)
                return (f"{prefix} " if prefix else "") + parent.label
            parent_id = parent.parent_id
        return None

    # -- life cycle -------------------------------------------------------------------------
    def start(self, clock: Any = None) -> "LiveProgress":
        """Wrap stdout/stderr and redraw in the background (countdowns move without events)."""
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
                more = f" (+{len(running) - 1} more)" if len(running) > 1 else ""
                parts.append(f"running {running[-1]}{more}")
            for label, counts in list(self._batches.items())[:2]:
                parts.append(f"{label}: {counts['done']} done" + (f", {counts['running']} running"
                                                                  if counts["running"] else ""))
            now = self.clock.now_ms() if self.clock is not None else None
            pending = sorted(self._pending.values(), key=lambda p: (p[0] < 0, p[0]))
            if pending:
                shown = []
                for due, label in pending[:2]:
                    if due >= 0:
                        left = f" (in {format_duration(max(0, due - now))})" if now is not None else ""
                        shown.append(f"{label} due {when(due, date=False)}{left}")
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
    return time.monotonic()
