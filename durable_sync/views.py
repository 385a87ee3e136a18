"""An execution as a text tree or an HTML timeline: ``durable_sync.inspection`` under its former name.

    from durable_sync import views
    print(views.render_tree(engine.operations(arn), engine.history(arn)))
"""
from __future__ import annotations

import datetime as _dt
from typing import Any, Optional

from .inspection import format_duration, render_html, render_tree
from .inspection.model import to_ms as _ms

__all__ = ["render_tree", "render_html", "format_duration", "LiveProgress"]


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
