"""`durable-sync console` (and `serve`, which mounts the console too): the commands that start it."""
from __future__ import annotations

import os
import queue
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

from durable_sync.cli import build_parser, cmd_serve

REPO = Path(__file__).resolve().parents[2]
TIMEOUT = 30.0


def test_console_is_serve_with_the_console_first_on_the_default_database():
    args = build_parser().parse_args(["console"])
    assert args.func is cmd_serve and args.console_first is True
    assert args.db == "durable.db" and args.host == "127.0.0.1" and args.open is False
    assert build_parser().parse_args(["serve"]).console_first is False


def _start(command: list[str], cwd: Path, marker: str) -> tuple[subprocess.Popen, str, list[str]]:
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen([sys.executable, "-m", "durable_sync.cli", *command], stderr=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, stdin=subprocess.DEVNULL, text=True, env=env, cwd=cwd)
    lines: queue.Queue = queue.Queue()
    seen: list[str] = []
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stderr], daemon=True).start()
    deadline = time.monotonic() + TIMEOUT
    try:
        while True:
            line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            seen.append(line)
            if marker in line:
                return proc, line.split(marker, 1)[1].split()[0], seen
    except BaseException:
        proc.kill()
        proc.wait(timeout=10)
        raise AssertionError(f"{command[0]} did not start; its stderr:\n{''.join(seen)}") from None


def _stop(proc: subprocess.Popen) -> int:
    proc.terminate()
    try:
        return proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait(timeout=10)


def test_durable_sync_console_serves_the_console_of_durable_db_in_the_current_directory(tmp_path):
    proc, url, seen = _start(["console", "--port", "0"], tmp_path, "console on ")
    try:
        assert url.startswith("http://127.0.0.1:") and url.endswith("/console/")
        with urllib.request.urlopen(url, timeout=TIMEOUT) as response:
            page = response.read().decode("utf-8")
        assert response.status == 200 and 'name="durable-console-token"' in page
        with urllib.request.urlopen(url + "api/executions", timeout=TIMEOUT) as response:
            assert b'"executions": []' in response.read()
        assert (tmp_path / "durable.db").exists()
    finally:
        assert _stop(proc) == 0


def test_durable_sync_serve_names_the_console_url_too(tmp_path):
    proc, url, seen = _start(["serve", "--port", "0", "--db", ":memory:"], tmp_path, "console: ")
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT) as response:
            assert response.status == 200
        assert any("Lambda API on " in line for line in seen)
    finally:
        assert _stop(proc) == 0
