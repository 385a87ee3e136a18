"""Helpers shared by the conformance handlers (no durable_sync imports here).

``RunCounter`` counts how often a piece of handler code ran for one execution. It lives in a
file (under ``DURABLE_CONFORMANCE_STATE_DIR``, set per test by the test module) keyed by the
execution ARN, so it survives re-invocations and a crashed handler process, and separate
tests never share state.
"""
from __future__ import annotations

import enum
import fcntl
import hashlib
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

STATE_ENV = "DURABLE_CONFORMANCE_STATE_DIR"
#: PID of the pytest process; a handler asked to crash refuses to kill it.
RUNNER_PID_ENV = "DURABLE_CONFORMANCE_RUNNER_PID"

_lock = threading.Lock()


def state_dir() -> Path:
    directory = Path(os.environ.get(STATE_ENV) or Path(tempfile.gettempdir()) / "durable_sync_conformance")
    directory.mkdir(parents=True, exist_ok=True)
    return directory


class RunCounter:
    """A counter persisted in a file, keyed by (execution ARN, key)."""

    def __init__(self, execution_arn: str, key: str):
        digest = hashlib.sha256(f"{execution_arn}\0{key}".encode()).hexdigest()[:32]
        self.path = state_dir() / f"counter-{digest}"

    def increment(self) -> int:
        """Add one and return the new count (1 on the first run)."""
        with _lock, open(self.path, "a+", encoding="utf-8") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            fh.seek(0)
            text = fh.read().strip()
            count = (int(text) if text else 0) + 1
            fh.seek(0)
            fh.truncate()
            fh.write(str(count))
            fh.flush()
            os.fsync(fh.fileno())
        return count

    def value(self) -> int:
        try:
            text = self.path.read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            return 0
        return int(text) if text else 0


def crash_process() -> None:
    """Simulate a Lambda runtime crash (process.exit) in an isolated handler process."""
    if os.environ.get(RUNNER_PID_ENV) == str(os.getpid()):
        raise RuntimeError(
            "refusing to os._exit the test runner: the engine ran the handler in-process "
            'although LocalEngine(isolation="process") was asked for'
        )
    # Simulated work before the crash, not a durable wait: the START of an at-least-once
    # step is sent asynchronously by the background flusher, so give it time to persist.
    time.sleep(0.2)
    os._exit(1)


def enum_text(value: Any) -> Any:
    """An enum member as its wire text (value when it is a string, else its name)."""
    if isinstance(value, enum.Enum):
        return value.value if isinstance(value.value, str) else value.name
    return value


class TransientError(Exception):
    """A retryable error (1-15, 1-16)."""


class BranchError(Exception):
    """A failing parallel branch."""
