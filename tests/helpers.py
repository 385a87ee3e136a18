"""Small helpers shared by the project's tests (pytest puts tests/ on sys.path)."""
from __future__ import annotations

import collections
import contextlib
import functools
import json
import os
import queue
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def os_threads():
    """The ids of this process's threads as the OS lists them: also plain ``_thread`` threads (the
    checkpoint flusher's background thread), which ``threading.enumerate()`` does not list."""
    return frozenset(os.listdir("/proc/self/task"))


def wait_until(predicate, what, timeout=10.0, interval=0.001):
    """Call ``predicate`` until it returns something true, and return that; after ``timeout`` real seconds
    fail with "timed out waiting for <what>". For things another thread does; never for a durable wait."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(interval)


def threads_gone(before, timeout=10.0):
    """True once every thread started since ``before`` (an ``os_threads()``) is gone, else fails. A joined
    thread has returned from its Python code; the OS removes it a moment later, so this waits for that."""
    return wait_until(lambda: os_threads() <= before, "the threads started since then to end", timeout)


def events(engine, arn, *types, name=None):
    """History events of ``arn``, optionally only of the given types and operation name."""
    out = [e for e in engine.history(arn) if not types or e["EventType"] in types]
    if name is not None:
        out = [e for e in out if e.get("Name") == name]
    return out


def refuse_checkpoints_naming(engine, name):
    """From now on the engine refuses (InvalidParameterValueException) every checkpoint batch that
    holds an update of an operation named ``name``; others go through."""
    from durable_sync.local.service import ServiceError

    real = engine.checkpoint

    def refusing(arn, token, updates, client_token=None, **kw):
        if any(u.get("Name") == name for u in updates):
            raise ServiceError("InvalidParameterValueException", "refused by the test")
        return real(arn, token, updates, client_token, **kw)

    engine.checkpoint = refusing


def rewrite_operation(db, name, change):
    """Edit the stored record of the operation named ``name`` in the SQLite file ``db`` (no engine
    open): ``change(op)`` edits the dict in place. The latest version of the record is the one read."""
    conn = sqlite3.connect(db)
    try:
        [(row_id, record)] = [(i, r) for i, r in conn.execute("SELECT id, record FROM operations")
                              if json.loads(r).get("Name") == name]
        op = json.loads(record)
        change(op)
        conn.execute("UPDATE records SET record = ? WHERE id = ?", (json.dumps(op), row_id))
        conn.commit()
    finally:
        conn.close()


class Calls:
    """Thread-safe counters of how often each piece of handler code ran."""

    def __init__(self):
        self._lock = threading.Lock()
        self.counts: collections.Counter = collections.Counter()

    def hit(self, key):
        with self._lock:
            self.counts[key] += 1

    def __getitem__(self, key):
        return self.counts[key]


class Overlap:
    """Tracks how many bodies run at the same time (lock + counter)."""

    def __init__(self):
        self._lock = threading.Lock()
        self.now = 0
        self.max = 0
        self.threads = 0

    def __enter__(self):
        with self._lock:
            self.now += 1
            self.max = max(self.max, self.now)
            self.threads = max(self.threads, threading.active_count())
        return self

    def __exit__(self, *exc):
        with self._lock:
            self.now -= 1


@functools.lru_cache(maxsize=1)
def lambda_model():
    """botocore's ``lambda`` service model (loaded once: it is large)."""
    import botocore.session

    return botocore.session.get_session().get_service_model("lambda")


def boto_shape_problems(value, shape=None, path="event", present=None):
    """Where ``value`` (a history event as boto3 returns it, by default) breaks its botocore ``lambda``
    shape: members the shape lacks, required members missing, values of the wrong type. ``present``
    (a set) collects the (shape, member) pairs seen."""
    import datetime as dt

    if shape is None:
        shape = lambda_model().shape_for("Event")
    problems = []
    kind = shape.type_name
    if kind == "structure":
        if not isinstance(value, dict):
            return [f"{path}: expected an object, got {type(value).__name__}"]
        problems += [f"{path}.{key}: not a member of {shape.name}" for key in value if key not in shape.members]
        problems += [f"{path}.{key}: required by {shape.name}, missing" for key in shape.required_members
                     if key not in value]
        for key, member in shape.members.items():
            if key in value:
                if present is not None:
                    present.add((shape.name, key))
                problems += boto_shape_problems(value[key], member, f"{path}.{key}", present)
    elif kind == "list":
        if not isinstance(value, list):
            return [f"{path}: expected a list"]
        for i, item in enumerate(value):
            problems += boto_shape_problems(item, shape.member, f"{path}[{i}]", present)
    elif kind == "string":
        if not isinstance(value, str):
            problems.append(f"{path}: expected a string, got {value!r:.60}")
        elif shape.enum and value not in shape.enum:
            problems.append(f"{path}: {value!r} is not one of {shape.enum}")
    elif kind in ("integer", "long"):
        if not isinstance(value, int) or isinstance(value, bool):
            problems.append(f"{path}: expected an integer, got {value!r}")
    elif kind == "boolean":
        if not isinstance(value, bool):
            problems.append(f"{path}: expected a boolean, got {value!r}")
    elif kind == "timestamp":
        if not isinstance(value, dt.datetime) or value.tzinfo is None:
            problems.append(f"{path}: expected an aware datetime, got {value!r}")
    return problems


@contextlib.contextmanager
def durable_sync_serve(*args, cwd, timeout=30.0):
    """``durable-sync serve --port 0 ARGS`` in a subprocess (this checkout on its path, no AWS endpoint
    inherited): yields ``(url, stderr)`` once it listens, ``stderr`` the list of the lines it printed (the
    rest are added when it ends). Afterwards it is terminated and must exit 0; any failure inside reports
    its stderr."""
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    for key in ("AWS_ENDPOINT_URL_LAMBDA", "AWS_ENDPOINT_URL"):
        env.pop(key, None)
    proc = subprocess.Popen([sys.executable, "-m", "durable_sync.cli", "serve", "--port", "0", *map(str, args)],
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env, cwd=cwd)
    lines: queue.Queue = queue.Queue()
    seen: list = []
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stderr], daemon=True).start()

    def stop() -> int:
        proc.terminate()
        code = proc.wait(timeout=timeout)
        while not lines.empty():
            seen.append(lines.get_nowait())
        return code

    try:
        url, deadline = None, time.monotonic() + timeout
        while url is None:
            line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            seen.append(line)
            if "Lambda API on " in line:
                url = line.split("Lambda API on ", 1)[1].split()[0]
        yield url, seen
    except BaseException as exc:
        stop()
        raise AssertionError(f"serve failed: {exc!r}; its stderr:\n{''.join(seen)}") from exc
    code = stop()
    assert code == 0, "".join(seen)
