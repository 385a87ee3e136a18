"""SIGKILL this process around the N-th commit of the SQLite store (crash-test harnesses).

A commit is a COMMIT, or a write statement outside BEGIN ... COMMIT (SQLite commits it as
its own transaction: the store's usual checkpoint is one INSERT). ``KILL_AT=before:N`` kills
inside the N-th transaction (the checkpoint is lost, never acknowledged); ``after:N`` kills
right after it committed (acknowledged, then the crash).
Used by tests/test_resume.py and tests/reliability/kill_workflow.py subprocesses.
"""
from __future__ import annotations

import os
import signal

from durable_sync.local.store import SqliteStore


class KillingConnection:
    """Wraps the store's connection; kills the process before or after its N-th commit."""

    def __init__(self, conn, when, n):
        self._conn, self._when, self._n, self._commits = conn, when, n, 0

    def execute(self, sql, *args):
        if sql == "COMMIT" or (not self._conn.in_transaction and sql.startswith(("INSERT", "UPDATE", "DELETE"))):
            self._commits += 1
            if self._commits == self._n and self._when == "before":
                os.kill(os.getpid(), signal.SIGKILL)
            result = self._conn.execute(sql, *args)
            if self._commits == self._n and self._when == "after":
                os.kill(os.getpid(), signal.SIGKILL)
            return result
        return self._conn.execute(sql, *args)

    def __getattr__(self, name):
        return getattr(self._conn, name)


def kill_at_commit_from_env() -> None:
    """Patch SqliteStore so every store opened in this process obeys ``KILL_AT`` (if set)."""
    kill_at = os.environ.get("KILL_AT")
    if not kill_at:
        return
    when, n = kill_at.split(":")
    original_init = SqliteStore.__init__

    def patched_init(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        self._conn = KillingConnection(self._conn, when, int(n))

    SqliteStore.__init__ = patched_init
