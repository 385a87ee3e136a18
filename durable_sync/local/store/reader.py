"""Read-only access to a database another engine may be writing (WAL readers never block it), for the
CLI's list / history / callback commands: executions as the engine keeps them, and their operations and
history as boto3 (and ``LocalEngine``) gives them. It also posts requests to the owner's inbox."""
from __future__ import annotations

import os
import sqlite3
from typing import Any, Iterable, Optional

from ..service import Execution
from ..snapshot import boto_history, boto_operations
from . import inbox
from .schema import EXEC_COLUMNS, StoreError, connect, execution_from_row, journal_contents, journal_range, loads


class Reader:
    """Read-only views of a database another engine may be writing (WAL readers never block it)."""

    def __init__(self, path: str):
        self.path = os.fspath(path)
        self._conn = connect(self.path, create=False)

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> "Reader":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _query(self, sql: str, params: Iterable = ()) -> list:
        try:
            return self._conn.execute(sql, tuple(params)).fetchall()
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"cannot read {self.path}: {exc}") from None

    def executions(self, function_name: Optional[str] = None, name: Optional[str] = None,
                   status: Optional[str] = None) -> list[Execution]:
        """Matching executions (no operations or events loaded), oldest first."""
        where, params = [], []
        for column, value in (("function_name", function_name), ("name", name), ("status", status)):
            if value:
                where.append(f"{column} = ?")
                params.append(value)
        sql = f"SELECT {EXEC_COLUMNS} FROM executions"
        if where:
            sql += " WHERE " + " AND ".join(where)
        return [execution_from_row(r) for r in self._query(sql + " ORDER BY id", params)]

    def execution(self, arn: str, with_history: bool = True) -> Optional[Execution]:
        """The execution ``arn`` as the engine keeps it (None when the database has none): its row, and with
        ``with_history`` its operation records and history events."""
        rows = self._query(f"SELECT {EXEC_COLUMNS} FROM executions WHERE arn = ?", (arn,))
        if not rows:
            return None
        ex = execution_from_row(rows[0])
        if with_history:
            ops, events = journal_contents(self._journal(rows[0][0]))
            ex.ops.update(ops)
            ex.events.extend(events)
        return ex

    def operations(self, arn: str) -> list[dict]:
        """Every operation of execution ``arn`` as boto3 returns operations, as ``LocalEngine.operations``
        gives them (timestamps as datetimes, engine-private keys left out); [] when the database has no
        such execution."""
        exec_id = self._exec_id(arn)
        if exec_id is None:
            return []
        return boto_operations(journal_contents(self._journal(exec_id, "AND op_id IS NOT NULL"))[0].values())

    def history(self, arn: str) -> list[dict]:
        """The history of execution ``arn`` as boto3's ``get_durable_execution_history`` returns it, as
        ``LocalEngine.history`` gives it; [] when the database has no such execution."""
        exec_id = self._exec_id(arn)
        if exec_id is None:
            return []
        return boto_history(journal_contents(self._journal(exec_id, "AND op_id IS NULL"))[1])

    def _exec_id(self, arn: str) -> Optional[int]:
        rows = self._query("SELECT id FROM executions WHERE arn = ?", (arn,))
        return rows[0][0] if rows else None

    def _journal(self, exec_id: int, where: str = "") -> list:
        """(op_id, record) of the execution's journal rows (``where``: a condition on them), in order."""
        return self._query(f"SELECT op_id, record FROM records WHERE id BETWEEN ? AND ? {where} ORDER BY id",
                           journal_range(exec_id))

    def counts(self, arns: list[str]) -> dict[str, int]:
        """arn -> number of operations (the EXECUTION operation not counted)."""
        out = {}
        for arn in arns:
            exec_id = self._exec_id(arn)
            if exec_id is not None:
                n = self._query("SELECT count(DISTINCT op_id) FROM records WHERE id BETWEEN ? AND ?",
                                journal_range(exec_id))[0][0]
                out[arn] = max(0, n - 1)
        return out

    def pause_statuses(self, executions: list[Execution]) -> dict[str, str]:
        """arn -> PAUSING / PAUSED for the RUNNING executions a PauseDurableExecution holds."""
        out = {}
        for ex in executions:
            exec_id = self._exec_id(ex.arn) if ex.status == "RUNNING" else None
            if exec_id is not None:
                found = self._query("SELECT json_extract(record, '$._pause.Status') FROM records "
                                    "WHERE id BETWEEN ? AND ? AND op_id = ? ORDER BY id DESC LIMIT 1",
                                    (*journal_range(exec_id), ex.exec_op_id))
                if found and found[0][0]:
                    out[ex.arn] = found[0][0]
        return out

    def find_callback(self, callback_id: str) -> Optional[tuple[str, str, dict]]:
        """(arn, operation id, operation record) of the callback with that id, or None."""
        rows = self._query("SELECT e.arn, r.op_id, r.record FROM records r JOIN executions e ON e.id = r.id >> 32 "
                           "WHERE r.op_id IS NOT NULL AND json_extract(r.record, '$.CallbackDetails.CallbackId') = ? "
                           "ORDER BY r.id DESC LIMIT 1", (callback_id,))
        if not rows:
            return None
        arn, op_id, record = rows[0]
        return arn, op_id, loads(record)

    def next_timers(self, arn: str) -> list[tuple[str, Optional[str], int]]:
        """(kind, operation id, due ms) of the execution's pending timers, soonest first."""
        return [(kind, op_id, due) for kind, op_id, due in self._query(
            "SELECT kind, op_id, due_ms FROM timers WHERE arn = ? ORDER BY due_ms", (arn,))]

    # inbox (client side)
    def post(self, kind: str, target: str, payload: Optional[str] = None) -> int:
        """Post a callback answer or an execution-control request (see ``inbox.deliver``) for the engine that
        owns the database, or the next one to start; returns its inbox row (``inbox_outcome``)."""
        if kind not in inbox.INBOX_KINDS:
            raise ValueError(f"inbox kind must be one of {', '.join(inbox.INBOX_KINDS)}, got {kind!r}")
        return inbox.post(self._conn, self.path, kind, target, payload)

    def post_callback(self, kind: str, callback_id: str, payload: Optional[str]) -> int:
        """Post a callback answer (``kind`` succeed / fail / heartbeat); see ``post``."""
        return inbox.post(self._conn, self.path, kind, callback_id, payload)

    def inbox_outcome(self, row_id: int) -> Optional[str]:
        return inbox.outcome(self._conn, row_id)

    def withdraw(self, row_id: int) -> bool:
        """Take back an answer nobody applied yet; False when an engine already took it."""
        return inbox.withdraw(self._conn, row_id)
