"""The inbox: requests other processes post to the engine that owns a database.

A row is a callback answer (``kind`` succeed / fail / heartbeat, ``callback_id`` the callback id,
``payload`` the result or error) or an execution-control request (``kind`` pause / resume / delete,
``callback_id`` the execution ARN, ``payload`` the pause or resume reason), posted by another process
(``durable-sync callback``, ``pause``, ``resume REF``, ``delete``). The engine that owns the database
applies them (those posted while none ran, as it starts: ``SqliteStore.attach``) and records each
one's ``outcome``, which the poster reads.
"""
from __future__ import annotations

import sqlite3
import time
from typing import Any, Optional

from .schema import StoreError, loads

CALLBACK_KINDS = ("succeed", "fail", "heartbeat")  # inbox kinds of callback answers: the target is a callback id
CONTROL_KINDS = ("pause", "resume", "delete", "stop")  # inbox kinds of execution-control requests: the target is an ARN
INBOX_KINDS = CALLBACK_KINDS + CONTROL_KINDS


def deliver(engine: Any, kind: str, target: str, payload: Optional[str]) -> str:
    """Apply one inbox item on ``engine``: 'ok' or 'error: <message>'.

    A callback answer (``CALLBACK_KINDS``; ``target`` the callback id, ``payload`` the result or the
    error) or an execution-control request (``CONTROL_KINDS``: ``engine.pause`` / ``resume_execution`` /
    ``delete`` / ``stop`` of the execution ARN ``target``; ``payload`` the pause or resume reason, the stop's
    ErrorObject as JSON, or None).
    """
    from ..service import ServiceError

    try:
        if kind == "succeed":
            engine.send_callback_success(target, payload)
        elif kind == "fail":
            engine.send_callback_failure(target, loads(payload) if payload else None)
        elif kind == "heartbeat":
            engine.send_callback_heartbeat(target)
        elif kind == "pause":
            engine.pause(target, reason=payload)
        elif kind == "resume":
            engine.resume_execution(target, reason=payload)
        elif kind == "delete":
            engine.delete(target)
        elif kind == "stop":
            engine.stop(target, error=loads(payload) if payload else None)
        else:
            return f"error: unknown inbox request {kind!r} (a newer durable_sync posted it?)"
    except ServiceError as exc:
        return f"error: {exc.message}"
    except Exception as exc:  # noqa: BLE001 - reported to the process that posted it
        return f"error: {type(exc).__name__}: {exc}"
    return "ok"


def deliver_callback(engine: Any, kind: str, callback_id: str, payload: Optional[str]) -> str:
    """Answer a callback on ``engine`` (``kind`` succeed / fail / heartbeat): 'ok' or 'error: <message>'.

    The callback answers of ``deliver`` (kept for callers of this name).
    """
    if kind not in CALLBACK_KINDS:
        return f"error: unknown callback answer {kind!r}"
    return deliver(engine, kind, callback_id, payload)


# -- the engine's side ----------------------------------------------------------------------------
def pending(conn: sqlite3.Connection) -> list[tuple]:
    """(row id, kind, target, payload) of every request not applied yet, oldest first."""
    return conn.execute("SELECT id, kind, callback_id, payload FROM inbox WHERE done_ms IS NULL ORDER BY id").fetchall()


def mark_done(conn: sqlite3.Connection, row_id: int, outcome: str) -> None:
    conn.execute("UPDATE inbox SET done_ms = ?, outcome = ? WHERE id = ?", (int(time.time() * 1000), outcome, row_id))


# -- the posting side -----------------------------------------------------------------------------
def post(conn: sqlite3.Connection, path: str, kind: str, target: str, payload: Optional[str]) -> int:
    """Post a request; returns its row (``outcome``)."""
    try:
        cur = conn.execute("INSERT INTO inbox (kind, callback_id, payload, posted_ms) VALUES (?, ?, ?, ?)",
                           (kind, target, payload, int(time.time() * 1000)))
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"cannot write to {path}: {exc}") from None
    return cur.lastrowid


def outcome(conn: sqlite3.Connection, row_id: int) -> Optional[str]:
    """'ok' or 'error: ...' once the engine applied row ``row_id``, else None."""
    rows = conn.execute("SELECT outcome FROM inbox WHERE id = ? AND done_ms IS NOT NULL", (row_id,)).fetchall()
    return rows[0][0] if rows else None


def withdraw(conn: sqlite3.Connection, row_id: int) -> bool:
    """Take back a request nobody applied yet; False when an engine already took it."""
    return conn.execute("DELETE FROM inbox WHERE id = ? AND done_ms IS NULL", (row_id,)).rowcount == 1
