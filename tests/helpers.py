"""Small helpers shared by the project's tests (pytest puts tests/ on sys.path)."""
from __future__ import annotations

import collections
import json
import sqlite3
import threading


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
