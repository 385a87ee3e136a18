"""One test per conformance requirement file (test id ``suite/requirement``).

Each test runs the requirement's handler on a fresh ``LocalEngine(db=":memory:",
skip_time=True)`` and checks ExpectedResult, ExpectedExecutionHistory and ExpectedLogs with
the README's matching rules (see ``harness``). The only skip is a missing requirements
directory.
"""
from __future__ import annotations

import contextlib
import os
import signal
import threading
import uuid

import pytest

from . import harness
from .handlers import PROCESS_ISOLATION, common, get_handler

#: Per-test wall-clock guard: a hung engine call fails the test instead of the whole run.
TEST_TIMEOUT_SECONDS = 120

def _marks(req: harness.Requirement) -> list[pytest.MarkDecorator]:
    marks = []  # PROCESS_ISOLATION requirements run with LocalEngine(isolation="process") (below) and pass
    return marks


def _params() -> list:
    params = []
    for req in harness.iter_requirements_or_none():
        if req is None:
            reason = (
                f"conformance requirements not found at {harness.conformance_dir()} "
                f"(set {harness.CONFORMANCE_ENV} to their directory)"
            )
            params.append(pytest.param(None, id="conformance-dir-missing", marks=pytest.mark.skip(reason=reason)))
        else:
            params.append(pytest.param(req, id=req.test_id, marks=_marks(req)))
    return params


@contextlib.contextmanager
def _time_limit(seconds: int):
    if not hasattr(signal, "SIGALRM") or threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_alarm(signum, frame):
        raise TimeoutError(f"conformance test exceeded {seconds}s of wall-clock time (engine hung?)")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@pytest.mark.parametrize("req", _params())
def test_requirement(req: harness.Requirement, tmp_path, monkeypatch):
    from durable_sync.local import LocalEngine

    data = req.load()
    rng, seed = harness.make_rng()
    bindings = harness.bind_variables(data.get("Variables"), rng)
    handler = get_handler(req.suite, req.rid)
    monkeypatch.setenv(common.STATE_ENV, str(tmp_path))
    monkeypatch.setenv(common.RUNNER_PID_ENV, str(os.getpid()))
    isolation = "process" if req.test_id in PROCESS_ISOLATION else None
    engine = LocalEngine(db=":memory:", skip_time=True, isolation=isolation)
    name = f"conformance-{req.suite}-{req.rid}-{uuid.uuid4().hex[:8]}".replace("_", "-")
    try:
        with _time_limit(TEST_TIMEOUT_SECONDS):
            outcome = harness.run_requirement(data, handler, engine, name=name, bindings=bindings)
    finally:
        close = getattr(engine, "close", None)
        if callable(close):
            close()
    outcome.notes.append(f"{harness.SEED_ENV}={seed}")
    harness.check_outcome(data, outcome, bindings)
