"""The engine's SQLite store: the journal writer (one transaction, usually one INSERT, per change,
committed before the engine applies the change) and the WAL checkpointer.

Durability: WAL with ``synchronous=NORMAL``; ``commit`` returns only once the change is committed, and
the engine applies a change to its memory (and answers the call that made it) only after that, so an
acknowledged change survives ``kill -9`` of the process at any moment (power loss may lose the last
commits; pass ``synchronous="FULL"`` to rule that out). ``token_seq`` is written with the execution
row, so after a restart it may be behind; tokens carry a random prefix per invocation, so a lower
counter never repeats a token.

Threads: one connection and one lock; every call holds the lock for its whole transaction. WAL
checkpoints (copying the WAL into the database file) run on a thread of their own with a second
connection, every ``CHECKPOINT_PAGES`` pages of WAL, never on the path of a commit. Processes: one
engine owns a database at a time (``schema.OwnerLock``); other processes read it (``reader.Reader``)
and post requests to its inbox (``inbox``).
"""
from __future__ import annotations

import os
import sqlite3
import threading
from typing import Any, Optional

from ..service import Execution
from . import inbox
from .schema import (EXEC_COLUMNS, REPLACE_ROW, SHIFT, OwnerLock, StoreError, check_file, connect, dumps,
                     execution_from_row, journal_contents, journal_range, transaction)

# A checkpoint's rows go in one multi-row INSERT (one statement per _MAX_ROWS rows); a plain INSERT
# is cheaper than OR REPLACE, which only repairs rows a COMMIT wrote while the call failed (see _insert).
_MAX_ROWS = 64
_INSERT_ROWS = [""] + ["INSERT INTO records (id, op_id, record) VALUES " + ",".join(["(?, ?, ?)"] * n)
                       for n in range(1, _MAX_ROWS + 1)]
_UPDATE_EXEC = ("UPDATE executions SET status = ?, end_ms = ?, result = ?, error = ?, invocation_failures = ?, "
                "handler_ref = ?, token_seq = ? WHERE id = ?")
_INSERT_EXEC = ("INSERT INTO executions (arn, function_name, name, exec_op_id, start_ms, timeout_s, input_payload, "
                "status, end_ms, result, error, invocation_failures, handler_ref, token_seq) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")


class SqliteStore:
    """The engine's store on an SQLite file (see the module docstring)."""

    def __init__(self, path: str, synchronous: str = "NORMAL", timeout: float = 10.0):
        self.path = os.fspath(path)
        if synchronous.upper() not in ("OFF", "NORMAL", "FULL", "EXTRA"):
            raise ValueError(f"synchronous must be OFF, NORMAL, FULL or EXTRA, got {synchronous!r}")
        if check_file(self.path):  # a foreign or corrupt file gets no lock file and no WAL
            connect(self.path, create=False, timeout=timeout).close()
        self._owner = OwnerLock(self.path)
        try:
            self._conn = connect(self.path, timeout=timeout)
            self._conn.execute(f"PRAGMA synchronous={synchronous.upper()}")
            self._conn.execute("PRAGMA wal_autocheckpoint=0")  # the checkpointer thread does it (below)
            self._conn.execute(f"PRAGMA journal_size_limit={64 * 1024 * 1024}")
        except BaseException:
            self._owner.release()
            raise
        self._lock = threading.Lock()
        self._state: dict[str, _Saved] = {}  # arn -> what is persisted of it
        self._closed = False
        self._inbox_stop = threading.Event()
        self._inbox_thread: Optional[threading.Thread] = None
        # WAL checkpoints (copying the WAL into the database file, with its fsyncs) run on a thread
        # of their own once about CHECKPOINT_PAGES pages were appended to the WAL, off the path of
        # the checkpoint calls.
        self._wal_pages = 0  # an estimate: pages appended to the WAL since the last checkpoint request
        self._checkpoint_wanted = threading.Event()
        self._checkpointer = threading.Thread(target=self._checkpoint_loop, args=(timeout,),
                                              name="durable-wal-checkpoint", daemon=True)
        self._checkpointer.start()

    # -- the store interface the engine uses -------------------------------------------
    def load_executions(self) -> list[Execution]:
        """Every execution, ready for ``LocalEngine._adopt``: ops in recorded order, full history."""
        with self._lock:
            try:
                rows = self._conn.execute(f"SELECT {EXEC_COLUMNS} FROM executions ORDER BY id").fetchall()
                journal = self._conn.execute("SELECT id, op_id, record FROM records ORDER BY id").fetchall()
            except sqlite3.DatabaseError as exc:
                raise StoreError(f"cannot read {self.path}: {exc}") from None
            by_id: dict[int, tuple[Execution, _Saved, list]] = {}
            for row in rows:
                ex = execution_from_row(row)
                saved = self._state[ex.arn] = _Saved(row[0], _row_values(ex, {}))
                by_id[row[0]] = (ex, saved, [])
            for row_id, op_id, record in journal:
                entry = by_id.get(row_id >> SHIFT)
                if entry is not None:
                    entry[2].append((op_id, record))
                    entry[1].next_row = row_id + 1
            for ex, _, own_rows in by_id.values():
                ops, events = journal_contents(own_rows)
                ex.ops.update(ops)
                ex.events.extend(events)
            return [ex for ex, _, _ in by_id.values()]

    def create_execution(self, ex: Execution) -> None:
        """Persist a new execution: its row, its operations and its events (``ex.events``)."""
        with self._lock:
            self._write(ex, ex.ops, ex.events, _row_values(ex, {}), create=True)

    def commit(self, ex: Execution, change: Any) -> None:
        """Persist one change of ``ex`` (``commit.Change``) before the engine applies it: its operation
        records, its events (numbered, not in ``ex.events`` yet) and, when they differ from what is
        written, the execution's fields as the change leaves them. One transaction."""
        with self._lock:
            self._write(ex, change.ops, change.events, _row_values(ex, change.fields))

    def delete_execution(self, ex: Execution) -> None:
        """Remove the execution row, its operations and its history in one transaction (DeleteDurableExecution).

        The engine deletes only ended executions with no invocation in flight, so nothing writes the
        execution afterwards; a later execution may take its id again (its ranges are empty by then).
        """
        with self._lock:
            if self._closed:
                raise StoreError(f"the store of {self.path} is closed")
            conn = self._conn

            def delete() -> None:
                row = conn.execute("SELECT id FROM executions WHERE arn = ?", (ex.arn,)).fetchone()
                if row is not None:
                    conn.execute("DELETE FROM records WHERE id BETWEEN ? AND ?", journal_range(row[0]))
                    conn.execute("DELETE FROM executions WHERE id = ?", (row[0],))

            transaction(conn, delete)
            self._state.pop(ex.arn, None)

    def close(self) -> None:
        self._inbox_stop.set()
        if self._inbox_thread is not None and self._inbox_thread is not threading.current_thread():
            self._inbox_thread.join()
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._checkpoint_wanted.set()
        self._checkpointer.join()
        with self._lock:
            try:
                self._conn.close()  # the last connection checkpoints the WAL and removes it
            finally:
                self._owner.release()

    # -- internals -------------------------------------------------------------------------
    # Pages appended to the WAL between WAL checkpoints, as the store counts them: one per commit
    # (the journal's last page) plus what large records fill; interior pages make it a little more.
    # Each checkpoint (10-15 ms on a 2-core VM) slows the writer down by 2-4 ms in all (its copying
    # and fsyncs contend with the appends): fewer, larger ones cost less per commit (store benchmark:
    # every ~1000 commits instead of every 256 saved ~3-6 us per commit). Counting large records by
    # their size keeps the WAL about this size whatever the payloads.
    CHECKPOINT_PAGES = 2048

    def _checkpoint_loop(self, timeout: float) -> None:
        try:
            conn = sqlite3.connect(self.path, timeout=timeout, isolation_level=None, check_same_thread=False)
        except sqlite3.Error:
            return
        try:
            while True:
                self._checkpoint_wanted.wait()
                self._checkpoint_wanted.clear()
                if self._closed:
                    return
                try:
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
                except sqlite3.Error:
                    pass  # busy or closing: the next one catches up
        finally:
            conn.close()

    def _write(self, ex: Execution, ops: dict, events: list, values: tuple, create: bool = False) -> None:
        """Called with the lock: the whole change in one transaction, committed before returning.

        Appends the operation records and the events given, and writes the execution row (``values``)
        if it changed. The store's bookkeeping (``_Saved``) moves on only once the COMMIT succeeded.

        This is the hot path of the SQLite store (one call per checkpoint): when the execution
        row is unchanged (nearly always) the journal rows go in one INSERT, which SQLite
        commits as its own transaction — no BEGIN/COMMIT round trips.
        """
        if self._closed:
            raise StoreError(f"the store of {self.path} is closed")
        conn = self._conn
        saved = None if create else self._state.get(ex.arn)
        new_events = events
        if saved is not None and values == saved.row:
            target = saved
            rows, size = _journal_rows(saved.next_row, ops, new_events)
            if len(rows) <= 3 * _MAX_ROWS:
                self._insert(conn, rows)  # its own transaction
            else:
                transaction(conn, lambda: self._insert(conn, rows))
        else:
            def write() -> tuple[_Saved, list, int]:
                if saved is None:
                    cur = conn.execute(_INSERT_EXEC, (ex.arn, ex.function_name, ex.name, ex.exec_op_id, ex.start_ms,
                                                      ex.timeout_s, ex.input_payload, *values, ex.token_seq))
                    written = _Saved(cur.lastrowid, values)
                else:
                    conn.execute(_UPDATE_EXEC, (*values, ex.token_seq, saved.exec_id))
                    written = saved
                journal, nbytes = _journal_rows(written.next_row, ops, new_events)
                self._insert(conn, journal)
                return written, journal, nbytes + len(values[2] or "")

            target, rows, size = transaction(conn, write)
            self._state[ex.arn] = target
            target.row = values
        target.next_row += len(rows) // 3
        self._wal_pages += 1 + (size >> 12)  # the journal's last page, and what big records fill
        if self._wal_pages >= self.CHECKPOINT_PAGES:
            self._wal_pages = 0
            self._checkpoint_wanted.set()

    @staticmethod
    def _insert(conn: sqlite3.Connection, rows: list) -> None:
        """``rows``: id, op_id, record, id, op_id, record, ... in one flat list."""
        try:
            for start in range(0, len(rows), 3 * _MAX_ROWS):
                chunk = rows[start:start + 3 * _MAX_ROWS]
                conn.execute(_INSERT_ROWS[len(chunk) // 3], chunk)
        except sqlite3.IntegrityError:
            # Rows with those ids exist: a COMMIT went through but the call did not return (an
            # exception raised right after it), so the bookkeeping did not move on. Overwrite them.
            conn.executemany(REPLACE_ROW, zip(rows[::3], rows[1::3], rows[2::3]))

    # -- the inbox: callback answers and pause / resume / delete requests from other processes ---------
    # -- the inbox: callback answers and pause / resume / delete requests from other processes ---------
    def attach(self, engine: Any) -> None:
        """Called by the engine as it starts, before it runs anything: apply what was posted while no
        engine owned the db, and (real time) keep polling for new posts."""
        self._apply_inbox(engine)
        if not getattr(engine, "skip_time", False) and self._inbox_thread is None:
            self._inbox_thread = threading.Thread(target=self._inbox_loop, args=(engine,), name="durable-inbox",
                                                  daemon=True)
            self._inbox_thread.start()

    def _inbox_loop(self, engine: Any, interval: float = 0.2) -> None:
        while not self._inbox_stop.wait(interval):
            try:
                self._apply_inbox(engine)
            except (StoreError, sqlite3.Error):
                return

    def _apply_inbox(self, engine: Any) -> None:
        with self._lock:
            if self._closed:
                return
            pending = inbox.pending(self._conn)
        for row_id, kind, target, payload in pending:
            outcome = inbox.deliver(engine, kind, target, payload)
            with self._lock:
                if self._closed:
                    return
                inbox.mark_done(self._conn, row_id, outcome)


class _Saved:
    """What the store has written of one execution."""

    __slots__ = ("exec_id", "row", "next_row")

    def __init__(self, exec_id: int, row: tuple):
        self.exec_id = exec_id
        self.row = row  # the mutable columns as last written
        self.next_row = (exec_id << SHIFT) + 1  # the id of its next journal row


def _journal_rows(next_row: int, ops: dict, events: list) -> tuple[list, int]:
    """The flat INSERT parameters for ``ops`` then ``events`` from row ``next_row`` on, and their bytes."""
    rows: list = []
    size = 0
    n = next_row
    for op_id, op in ops.items():
        record = dumps(op)
        size += len(record)
        rows += (n, op_id, record)
        n += 1
    for event in events:
        record = dumps(event)
        size += len(record)
        rows += (n, None, record)
        n += 1
    return rows, size


def _row_values(ex: Execution, fields: dict) -> tuple:
    """The mutable columns of ``ex``'s row once ``fields`` (a change's new field values) are applied."""
    def value(name: str) -> Any:
        return fields[name] if name in fields else getattr(ex, name)

    error = value("error")
    return (value("status"), value("end_ms"), value("result"), None if error is None else dumps(error),
            value("invocation_failures"), ex.handler_ref)


