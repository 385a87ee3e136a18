"""JavaScript handlers with the durable-sync command: `run` (in process, no server to start), and a
SIGKILL of the whole engine mid-step, after which the same command finishes the work from SQLite."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

from durable_sync import cli

from .support import HANDLERS

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_run_prints_only_the_result_on_stdout(js_sdk, capfd):
    code = cli.main(["run", f"{HANDLERS}/context_echo.mjs:prints", "--skip-time", "--db", ":memory:"])
    out, err = capfd.readouterr()
    # not a durable handler: it fails, but what it printed stays on stderr
    assert code == cli.EXIT_FAILED
    assert "to stdout" not in out and "to stdout" in err
    code = cli.main(["run", f"{HANDLERS}/step_wait.mjs", "--input", json.dumps({"name": "cli"}),
                     "--skip-time", "--db", ":memory:"])
    out, err = capfd.readouterr()
    assert code == cli.EXIT_OK, err
    assert out.splitlines() == ['{"first":"hello cli","second":"HELLO CLI"}']
    assert "WaitSucceeded" in err


def _run(args: list[str], tmp_path, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": REPO + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.Popen([sys.executable, "-m", "durable_sync.cli", "run", *args], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


def test_sigkill_mid_step_then_the_same_command_finishes_from_sqlite(js_sdk, tmp_path):
    args = [f"{HANDLERS}/killed.mjs", "--input", json.dumps({"order": "o-9", "dir": str(tmp_path)}),
            "--skip-time", "--db", str(tmp_path / "durable.db"), "--name", "order-o-9"]
    first = _run(args, tmp_path, start_new_session=True)  # its own process group: the engine and its Node
    try:
        deadline = time.monotonic() + 120
        while not (tmp_path / "charging").exists():  # the charge step is running in Node
            assert first.poll() is None, first.communicate()
            assert time.monotonic() < deadline, "the charge step never started"
            time.sleep(0.05)
        os.killpg(first.pid, signal.SIGKILL)
    finally:
        first.wait(timeout=30)
        first.communicate()
    assert first.returncode == -signal.SIGKILL

    second = _run(args, tmp_path)
    out, err = second.communicate(timeout=120)
    assert second.returncode == 0, err
    assert json.loads(out) == {"reservation": "res-o-9", "receipt": "charged-res-o-9"}
    assert "attaching to execution order-o-9" in err
    assert (tmp_path / "reserve-runs").read_text() == "1"  # acknowledged before the kill: never run again
    assert (tmp_path / "charge-runs").read_text() == "2"  # interrupted: run again

    listed = subprocess.run([sys.executable, "-m", "durable_sync.cli", "history", "order-o-9", "--db",
                             str(tmp_path / "durable.db"), "--json"], capture_output=True, text=True, timeout=60,
                            env={**os.environ, "PYTHONPATH": REPO})
    events = json.loads(listed.stdout)
    types = [e["EventType"] for e in events]
    charge = [e["EventType"] for e in events if e.get("Name") == "charge"]
    # started (and recorded) before the kill; the run after it re-runs the body and records only its success,
    # as conformance requirement 3-12 says the service sees it
    assert charge == ["StepStarted", "StepSucceeded"]
    assert [e["Name"] for e in events if e["EventType"] == "StepSucceeded"] == ["reserve", "charge"]
    assert types[-1] == "ExecutionSucceeded"
