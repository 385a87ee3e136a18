"""SQLite persistence of the local engine: crash-safe, one transaction per checkpoint.

Layout (schema version ``SCHEMA_VERSION`` in ``PRAGMA user_version``; ``PRAGMA
application_id`` marks the file as a durable_sync database):

- ``executions``: one row per execution (identity, status, result/error, invocation
  failures, the handler reference used to resume it); ``id`` is its creation order.
- ``records``: each execution's journal, append-only, one JSON row per operation
  record or history event, in the order written. The integer key is ``execution id
  << 32 | n``, so one execution's journal is a contiguous range of the table with no
  secondary index to maintain. A row with ``op_id`` is a version of that operation's
  record (engine-private keys such as ``_timeout_due`` included): the last version
  wins, and operations keep the order in which they first appear (parents before
  children). A row without ``op_id`` is a history event. Rows are never updated, so
  a checkpoint is one multi-row INSERT, its own transaction: one statement and about
  one page appended to the WAL. Superseded versions stay until the execution is
  deleted (at most one per checkpoint that changed the operation, and the history
  holds as much).
- ``operations`` and ``events``: VIEWs of ``records`` (latest versions; events) for
  readers; ``timers``: a VIEW of pending waits, retries, callback deadlines and
  execution timeouts. The engine re-arms the same items from the operation records
  when it adopts an execution, so timers need no table.
- ``inbox``: callback answers (``kind`` succeed / fail / heartbeat, ``callback_id`` the
  callback id, ``payload`` the result or error) and execution-control requests (``kind``
  pause / resume / delete, ``callback_id`` the execution ARN, ``payload`` the pause or
  resume reason) posted by another process (``durable-sync callback``, ``pause``,
  ``resume REF``, ``delete``); the engine that owns the database applies them (those
  posted while none ran, as it starts) and records each one's ``outcome``.

A database of schema version 1 (separate, updated ``operations`` and ``events``
tables) is migrated in place, in one transaction, the first time it is opened.
``token_seq`` is written with the execution row, so after a restart it may be behind;
tokens carry a random prefix per invocation, so a lower counter never repeats a token.

Durability: WAL with ``synchronous=NORMAL``; ``save_checkpoint`` commits before it
returns, and the engine answers the checkpoint call only after that, so an
acknowledged checkpoint survives ``kill -9`` of the process at any moment (power
loss may lose the last commits; pass ``synchronous="FULL"`` to rule that out).

Threads: one connection and one lock; every call holds the lock for its whole
transaction. WAL checkpoints (copying the WAL into the database file) run on a thread of
their own with a second connection, every ``CHECKPOINT_PAGES`` pages of WAL, never on the
path of a checkpoint call. Processes: one engine owns a database at a time (an advisory
``flock`` on ``<db>-lock``, released by the kernel when the process dies); other
processes may read it at any time and post callback answers and pause / resume / delete
requests to the inbox.
"""
from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from typing import Any, Callable, Iterable, Optional

from .service import Execution

SCHEMA_VERSION = 2
APPLICATION_ID = 0x44534E43  # "DSNC": a durable_sync database
_SQLITE_HEADER = b"SQLite format 3\x00"

# Readers' views of the journal (see the module docstring); the engine itself never queries them.
_VIEWS = """
CREATE VIEW operations (id, op_id, record) AS
    SELECT max(id), op_id, record FROM records WHERE op_id IS NOT NULL GROUP BY id >> 32, op_id;
CREATE VIEW events (id, record) AS
    SELECT id, record FROM records WHERE op_id IS NULL;
CREATE VIEW timers (arn, op_id, kind, due_ms) AS
    SELECT e.arn, o.op_id, 'wait', json_extract(o.record, '$.WaitDetails.ScheduledEndTimestamp')
      FROM operations o JOIN executions e ON e.id = o.id >> 32 AND e.status = 'RUNNING'
     WHERE json_extract(o.record, '$.Type') = 'WAIT' AND json_extract(o.record, '$.Status') = 'STARTED'
    UNION ALL
    SELECT e.arn, o.op_id, 'retry', json_extract(o.record, '$.StepDetails.NextAttemptTimestamp')
      FROM operations o JOIN executions e ON e.id = o.id >> 32 AND e.status = 'RUNNING'
     WHERE json_extract(o.record, '$.Type') = 'STEP' AND json_extract(o.record, '$.Status') = 'PENDING'
    UNION ALL
    SELECT e.arn, o.op_id, 'callback_timeout', json_extract(o.record, '$._timeout_due')
      FROM operations o JOIN executions e ON e.id = o.id >> 32 AND e.status = 'RUNNING'
     WHERE json_extract(o.record, '$.Type') = 'CALLBACK' AND json_extract(o.record, '$.Status') = 'STARTED'
       AND json_extract(o.record, '$._timeout_due') IS NOT NULL
    UNION ALL
    SELECT e.arn, o.op_id, 'callback_heartbeat', json_extract(o.record, '$._heartbeat_due')
      FROM operations o JOIN executions e ON e.id = o.id >> 32 AND e.status = 'RUNNING'
     WHERE json_extract(o.record, '$.Type') = 'CALLBACK' AND json_extract(o.record, '$.Status') = 'STARTED'
       AND json_extract(o.record, '$._heartbeat_due') IS NOT NULL
    UNION ALL
    SELECT arn, NULL, 'execution_timeout', start_ms + timeout_s * 1000 FROM executions WHERE status = 'RUNNING';
"""

_SCHEMA = """
CREATE TABLE executions (
    id INTEGER PRIMARY KEY,
    arn TEXT NOT NULL UNIQUE,
    function_name TEXT NOT NULL,
    name TEXT NOT NULL,
    exec_op_id TEXT NOT NULL,
    start_ms INTEGER NOT NULL,
    end_ms INTEGER,
    timeout_s INTEGER NOT NULL,
    input_payload TEXT,
    status TEXT NOT NULL,
    result TEXT,
    error TEXT,
    token_seq INTEGER NOT NULL DEFAULT 0,
    invocation_failures INTEGER NOT NULL DEFAULT 0,
    handler_ref TEXT,
    UNIQUE (function_name, name)
);
CREATE INDEX executions_by_status ON executions (status, function_name);
CREATE TABLE records (
    id INTEGER PRIMARY KEY,
    op_id TEXT,
    record TEXT NOT NULL
);
CREATE TABLE inbox (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,
    callback_id TEXT NOT NULL,
    payload TEXT,
    posted_ms INTEGER NOT NULL,
    done_ms INTEGER,
    outcome TEXT
);
CREATE INDEX inbox_pending ON inbox (id) WHERE done_ms IS NULL;
""" + _VIEWS

_BEGIN = "BEGIN IMMEDIATE"
_SHIFT = 32  # row id of a journal row: execution id << 32 | n
# A checkpoint's rows go in one multi-row INSERT (one statement per _MAX_ROWS rows); a plain INSERT
# is cheaper than OR REPLACE, which only repairs rows a COMMIT wrote while the call failed (see _insert).
_MAX_ROWS = 64
_INSERT_ROWS = [""] + ["INSERT INTO records (id, op_id, record) VALUES " + ",".join(["(?, ?, ?)"] * n)
                       for n in range(1, _MAX_ROWS + 1)]
_REPLACE_ROW = "INSERT OR REPLACE INTO records (id, op_id, record) VALUES (?, ?, ?)"
_UPDATE_EXEC = ("UPDATE executions SET status = ?, end_ms = ?, result = ?, error = ?, invocation_failures = ?, "
                "handler_ref = ?, token_seq = ? WHERE id = ?")
_INSERT_EXEC = ("INSERT INTO executions (arn, function_name, name, exec_op_id, start_ms, timeout_s, input_payload, "
                "status, end_ms, result, error, invocation_failures, handler_ref, token_seq) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
_EXEC_COLUMNS = ("id, arn, function_name, name, exec_op_id, start_ms, end_ms, timeout_s, input_payload, status, "
                 "result, error, token_seq, invocation_failures, handler_ref")


def _make_dumps() -> Any:
    """Compact JSON text of a record: ``JSONEncoder(...).encode`` without its per-call set-up.

    ``encode`` builds the C encoder anew on every call (about a third of its cost on the small
    records of a checkpoint); the same C encoder, built once with the same arguments, gives the
    same text. Falls back to ``encode`` where the C encoder is missing or differs.
    """
    encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), check_circular=False)
    try:
        from json.encoder import c_make_encoder, encode_basestring

        c_encode = c_make_encoder(None, encoder.default, encode_basestring, None, ":", ",", False, False, True)
        join = "".join

        def dumps(obj: Any) -> str:
            return join(c_encode(obj, 0))

        sample = {"s": "é\n\"", "i": [1, -2, 2 ** 70], "f": [0.1, 1e300, float("inf")], "b": [True, False, None],
                  "d": {"k": {}}, "l": [[], ["x"]]}
        if dumps(sample) == encoder.encode(sample) and dumps("x") == encoder.encode("x"):
            return dumps
    except Exception:  # noqa: BLE001 - no C accelerator, or another signature: the plain encoder
        pass
    return encoder.encode


_dumps = _make_dumps()
_loads = json.loads


class StoreError(Exception):
    """The database cannot be used: corrupt, not a durable_sync database, a newer schema, or in use."""


class DatabaseInUse(StoreError):
    """Another engine (another process, or an engine not yet closed) owns the database."""

    def __init__(self, message: str, owner_pid: Optional[int] = None):
        super().__init__(message)
        self.owner_pid = owner_pid


def check_file(path: str) -> bool:
    """True when ``path`` holds data; StoreError when that data is not an SQLite database."""
    if os.path.isdir(path):
        raise StoreError(f"{path} is a directory, not a database file")
    try:
        with open(path, "rb") as fh:
            header = fh.read(len(_SQLITE_HEADER))
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise StoreError(f"cannot read database {path}: {exc.strerror or exc}") from None
    if not header:
        return False
    if header != _SQLITE_HEADER:
        raise StoreError(f"{path} is not a durable_sync database (not an SQLite file); "
                         "pass another --db / LocalEngine(db=...) path")
    return True


def _verify(conn: sqlite3.Connection, path: str) -> bool:
    """Check the identity and schema version without writing; True when the schema must be created
    (an empty file) or migrated (an older version)."""
    app_id = conn.execute("PRAGMA application_id").fetchone()[0]
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if app_id == 0 and version == 0:
        tables = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
        if tables:
            raise StoreError(f"{path} is an SQLite database of another application, not a durable_sync database; "
                             "pass another --db / LocalEngine(db=...) path")
        return True
    if app_id != APPLICATION_ID:
        raise StoreError(f"{path} is an SQLite database of another application (application_id {app_id:#x}), "
                         "not a durable_sync database")
    if version > SCHEMA_VERSION:
        raise StoreError(f"{path} has durable_sync schema version {version}, newer than this version of "
                         f"durable_sync understands ({SCHEMA_VERSION}); upgrade durable_sync")
    if version < 1:
        raise StoreError(f"{path} has an unknown durable_sync schema version {version}")
    return version < SCHEMA_VERSION


def _transaction(conn: sqlite3.Connection, body: Callable[[], Any]) -> Any:
    """``body()`` inside BEGIN IMMEDIATE ... COMMIT, rolled back if it raises; returns its result."""
    conn.execute(_BEGIN)
    try:
        result = body()
        conn.execute("COMMIT")
    except BaseException:
        try:
            conn.execute("ROLLBACK")
        except sqlite3.Error:
            pass
        raise
    return result


def _run_script(conn: sqlite3.Connection, script: str) -> None:
    for statement in script.split(";"):
        if statement.strip():
            conn.execute(statement)


def _migrate_v1(conn: sqlite3.Connection) -> None:
    """(in a transaction) Schema 1 -> 2: the ``operations`` and ``events`` tables become the journal.

    Each execution's operations (in recorded order), then its events, become its first journal rows.
    """
    conn.execute("CREATE TABLE records (id INTEGER PRIMARY KEY, op_id TEXT, record TEXT NOT NULL)")
    next_row: dict[int, int] = {}

    def renumber(old_id: int) -> int:
        exec_id = old_id >> _SHIFT
        n = next_row.get(exec_id, (exec_id << _SHIFT) + 1)
        next_row[exec_id] = n + 1
        return n

    ops = conn.execute("SELECT id, op_id, record FROM operations ORDER BY id").fetchall()
    conn.executemany(_REPLACE_ROW, [(renumber(i), op_id, record) for i, op_id, record in ops])
    events = conn.execute("SELECT id, record FROM events ORDER BY id").fetchall()
    conn.executemany(_REPLACE_ROW, [(renumber(i), None, record) for i, record in events])
    conn.execute("DROP VIEW IF EXISTS timers")
    conn.execute("DROP TABLE operations")
    conn.execute("DROP TABLE events")
    _run_script(conn, _VIEWS)


def _create_or_migrate(conn: sqlite3.Connection, path: str) -> None:
    """(in a transaction) Create the schema in an empty file, or migrate an older one."""
    if not _verify(conn, path):  # another process created or migrated it meanwhile
        return
    if conn.execute("PRAGMA user_version").fetchone()[0] == 0:
        _run_script(conn, _SCHEMA)
        conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    else:
        _migrate_v1(conn)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


def connect(path: str, *, create: bool = True, timeout: float = 10.0) -> sqlite3.Connection:
    """A verified connection to the durable_sync database at ``path`` (schema created when new)."""
    exists = check_file(path)
    if not exists and not create:
        raise StoreError(f"no durable_sync database at {path}")
    conn = None
    try:
        conn = sqlite3.connect(path, timeout=timeout, isolation_level=None, check_same_thread=False,
                               cached_statements=128)  # the _INSERT_ROWS variants and the rest
        stale = _verify(conn, path)  # before anything writes: a foreign file stays untouched
        conn.execute("PRAGMA journal_mode=WAL")
        if stale:
            _transaction(conn, lambda: _create_or_migrate(conn, path))
        return conn
    except sqlite3.DatabaseError as exc:
        if conn is not None:
            conn.close()
        raise StoreError(f"{path} is not a usable durable_sync database: {exc}") from None
    except BaseException:
        if conn is not None:
            conn.close()
        raise


class _OwnerLock:
    """An advisory lock on ``<db>-lock``; the kernel drops it when the process dies (kill -9 included)."""

    def __init__(self, path: str):
        self.path = path + "-lock"
        self._fd: Optional[int] = None
        try:
            import fcntl
        except ImportError:  # no flock (Windows): single-engine use is the user's responsibility
            return
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            owner = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
            os.close(fd)
            pid = int(owner) if owner.isdigit() else None
            who = f"the engine in process {pid}" if pid and pid != os.getpid() else \
                "another engine in this process (close() it first)" if pid == os.getpid() else "another engine"
            raise DatabaseInUse(f"database {path} is in use by {who}; one engine owns a database at a time "
                                "(use another database, or stop that engine first)", pid) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode("ascii"), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock
            self._fd = None


class SqliteStore:
    """The engine's store on an SQLite file (see the module docstring)."""

    def __init__(self, path: str, synchronous: str = "NORMAL", timeout: float = 10.0):
        self.path = os.fspath(path)
        if synchronous.upper() not in ("OFF", "NORMAL", "FULL", "EXTRA"):
            raise ValueError(f"synchronous must be OFF, NORMAL, FULL or EXTRA, got {synchronous!r}")
        if check_file(self.path):  # a foreign or corrupt file gets no lock file and no WAL
            connect(self.path, create=False, timeout=timeout).close()
        self._owner = _OwnerLock(self.path)
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
                rows = self._conn.execute(f"SELECT {_EXEC_COLUMNS} FROM executions ORDER BY id").fetchall()
                journal = self._conn.execute("SELECT id, op_id, record FROM records ORDER BY id").fetchall()
            except sqlite3.DatabaseError as exc:
                raise StoreError(f"cannot read {self.path}: {exc}") from None
            by_id: dict[int, tuple[Execution, _Saved, dict]] = {}
            for row in rows:
                ex = _execution_from_row(row)
                saved = self._state[ex.arn] = _Saved(row[0], _row_values(ex))
                by_id[row[0]] = (ex, saved, {})
            for row_id, op_id, record in journal:
                entry = by_id.get(row_id >> _SHIFT)
                if entry is not None:
                    if op_id is None:
                        entry[0].events.append(_loads(record))
                    else:
                        entry[2][op_id] = record  # the last version wins; the first fixed the order
                    entry[1].next_row = row_id + 1
            for ex, saved, records in by_id.values():
                ex.ops.update((op_id, _loads(record)) for op_id, record in records.items())
                saved.events = len(ex.events)
            return [ex for ex, _, _ in by_id.values()]

    def create_execution(self, ex: Execution) -> None:
        with self._lock:
            self._write(ex, ex.ops, (), create=True)

    def save_checkpoint(self, ex: Execution, ops: dict, events: list) -> None:
        """Persist changed operations, the new tail of the history and the execution row; commits.

        ``events`` are the change's new history events. The engine may call this before it appends
        them to ``ex.events`` (numbered already: ``EventId`` is the position they will take), so
        that a write that fails changes nothing in memory; events it appended already are the last
        of ``ex.events``. Either way every event since the last write of ``ex`` is written.
        """
        with self._lock:
            self._write(ex, ops, events)

    def save_execution(self, ex: Execution, events: list) -> None:
        """Persist the execution's (terminal) state, its EXECUTION operation and the new events; commits."""
        with self._lock:
            self._write(ex, {ex.exec_op_id: ex.ops[ex.exec_op_id]} if ex.exec_op_id in ex.ops else {}, events)

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
                    low, high = row[0] << _SHIFT, ((row[0] + 1) << _SHIFT) - 1
                    conn.execute("DELETE FROM records WHERE id BETWEEN ? AND ?", (low, high))
                    conn.execute("DELETE FROM executions WHERE id = ?", (row[0],))

            _transaction(conn, delete)
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

    def _write(self, ex: Execution, ops: dict, events: Any, create: bool = False) -> None:
        """Called with the lock: the whole change in one transaction, committed before returning.

        Appends the operations given (the engine passes every record it changed) and every
        event appended since the last write of this execution, followed by ``events`` when
        they are not appended yet (see save_checkpoint); writes the execution row if it changed.
        The store's bookkeeping (``_Saved``) moves on only once the COMMIT succeeded.

        This is the hot path of the SQLite store (one call per checkpoint): when the execution
        row is unchanged (nearly always) the journal rows go in one INSERT, which SQLite
        commits as its own transaction — no BEGIN/COMMIT round trips.
        """
        if self._closed:
            raise StoreError(f"the store of {self.path} is closed")
        conn = self._conn
        saved = None if create else self._state.get(ex.arn)
        values = _row_values(ex)
        new_events = ex.events if saved is None else ex.events[saved.events:]
        if events and (not ex.events or events[-1] is not ex.events[-1]):  # not appended to ex.events yet
            new_events = new_events + events if new_events else events
        if saved is not None and values == saved.row:
            target = saved
            rows, size = _journal_rows(saved.next_row, ops, new_events)
            if len(rows) <= 3 * _MAX_ROWS:
                self._insert(conn, rows)  # its own transaction
            else:
                _transaction(conn, lambda: self._insert(conn, rows))
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

            target, rows, size = _transaction(conn, write)
            self._state[ex.arn] = target
            target.row = values
        target.next_row += len(rows) // 3
        target.events += len(new_events)
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
            conn.executemany(_REPLACE_ROW, zip(rows[::3], rows[1::3], rows[2::3]))

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
            pending = self._conn.execute(
                "SELECT id, kind, callback_id, payload FROM inbox WHERE done_ms IS NULL ORDER BY id").fetchall()
        for row_id, kind, target, payload in pending:
            outcome = deliver(engine, kind, target, payload)
            with self._lock:
                if self._closed:
                    return
                self._conn.execute("UPDATE inbox SET done_ms = ?, outcome = ? WHERE id = ?",
                                   (int(time.time() * 1000), outcome, row_id))


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
    from .service import ServiceError

    try:
        if kind == "succeed":
            engine.send_callback_success(target, payload)
        elif kind == "fail":
            engine.send_callback_failure(target, _loads(payload) if payload else None)
        elif kind == "heartbeat":
            engine.send_callback_heartbeat(target)
        elif kind == "pause":
            engine.pause(target, reason=payload)
        elif kind == "resume":
            engine.resume_execution(target, reason=payload)
        elif kind == "delete":
            engine.delete(target)
        elif kind == "stop":
            engine.stop(target, error=_loads(payload) if payload else None)
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


class _Saved:
    """What the store has written of one execution."""

    __slots__ = ("exec_id", "row", "next_row", "events")

    def __init__(self, exec_id: int, row: tuple):
        self.exec_id = exec_id
        self.row = row  # the mutable columns as last written
        self.next_row = (exec_id << _SHIFT) + 1  # the id of its next journal row
        self.events = 0  # events written


def _journal_rows(next_row: int, ops: dict, events: list) -> tuple[list, int]:
    """The flat INSERT parameters for ``ops`` then ``events`` from row ``next_row`` on, and their bytes."""
    rows: list = []
    size = 0
    n = next_row
    for op_id, op in ops.items():
        record = _dumps(op)
        size += len(record)
        rows += (n, op_id, record)
        n += 1
    for event in events:
        record = _dumps(event)
        size += len(record)
        rows += (n, None, record)
        n += 1
    return rows, size


def _row_values(ex: Execution) -> tuple:
    return (ex.status, ex.end_ms, ex.result, None if ex.error is None else _dumps(ex.error), ex.invocation_failures,
            ex.handler_ref)


def _execution_from_row(row: tuple) -> Execution:
    (_, arn, function_name, name, exec_op_id, start_ms, end_ms, timeout_s, input_payload, status, result, error,
     token_seq, invocation_failures, handler_ref) = row
    ex = Execution(arn=arn, function_name=function_name, name=name, exec_op_id=exec_op_id, start_ms=start_ms,
                   timeout_s=timeout_s, input_payload=input_payload, status=status, end_ms=end_ms, result=result,
                   error=_loads(error) if error else None, handler_ref=handler_ref)
    ex.token_seq = token_seq
    ex.invocation_failures = invocation_failures
    return ex


# -- read access for other processes (CLI list/history/callback), no ownership needed -------------
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
        sql = f"SELECT {_EXEC_COLUMNS} FROM executions"
        if where:
            sql += " WHERE " + " AND ".join(where)
        return [_execution_from_row(r) for r in self._query(sql + " ORDER BY id", params)]

    def execution(self, arn: str, with_history: bool = True) -> Optional[Execution]:
        rows = self._query(f"SELECT {_EXEC_COLUMNS} FROM executions WHERE arn = ?", (arn,))
        if not rows:
            return None
        ex = _execution_from_row(rows[0])
        if with_history:
            low, high = rows[0][0] << _SHIFT, ((rows[0][0] + 1) << _SHIFT) - 1
            records: dict[str, str] = {}
            for op_id, record in self._query("SELECT op_id, record FROM records WHERE id BETWEEN ? AND ? ORDER BY id",
                                             (low, high)):
                if op_id is None:
                    ex.events.append(_loads(record))
                else:
                    records[op_id] = record  # the last version wins; the first fixed the order
            ex.ops.update((op_id, _loads(record)) for op_id, record in records.items())
        return ex

    def counts(self, arns: list[str]) -> dict[str, int]:
        """arn -> number of operations (the EXECUTION operation not counted)."""
        out = {}
        for arn in arns:
            rows = self._query("SELECT id FROM executions WHERE arn = ?", (arn,))
            if rows:
                low, high = rows[0][0] << _SHIFT, ((rows[0][0] + 1) << _SHIFT) - 1
                n = self._query("SELECT count(DISTINCT op_id) FROM records WHERE id BETWEEN ? AND ?",
                                (low, high))[0][0]
                out[arn] = max(0, n - 1)
        return out

    def pause_statuses(self, executions: list[Execution]) -> dict[str, str]:
        """arn -> PAUSING / PAUSED for the RUNNING executions a PauseDurableExecution holds."""
        out = {}
        for ex in executions:
            rows = self._query("SELECT id FROM executions WHERE arn = ?", (ex.arn,)) if ex.status == "RUNNING" else []
            if rows:
                low, high = rows[0][0] << _SHIFT, ((rows[0][0] + 1) << _SHIFT) - 1
                found = self._query("SELECT json_extract(record, '$._pause.Status') FROM records "
                                    "WHERE id BETWEEN ? AND ? AND op_id = ? ORDER BY id DESC LIMIT 1",
                                    (low, high, ex.exec_op_id))
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
        return arn, op_id, _loads(record)

    def next_timers(self, arn: str) -> list[tuple[str, Optional[str], int]]:
        """(kind, operation id, due ms) of the execution's pending timers, soonest first."""
        return [(kind, op_id, due) for kind, op_id, due in self._query(
            "SELECT kind, op_id, due_ms FROM timers WHERE arn = ? ORDER BY due_ms", (arn,))]

    # inbox (client side)
    def post(self, kind: str, target: str, payload: Optional[str] = None) -> int:
        """Post a callback answer or an execution-control request (see ``deliver``) for the engine that
        owns the database, or the next one to start; returns its inbox row (``inbox_outcome``)."""
        if kind not in INBOX_KINDS:
            raise ValueError(f"inbox kind must be one of {', '.join(INBOX_KINDS)}, got {kind!r}")
        return self._post(kind, target, payload)

    def post_callback(self, kind: str, callback_id: str, payload: Optional[str]) -> int:
        """Post a callback answer (``kind`` succeed / fail / heartbeat); see ``post``."""
        return self._post(kind, callback_id, payload)

    def _post(self, kind: str, target: str, payload: Optional[str]) -> int:
        try:
            cur = self._conn.execute("INSERT INTO inbox (kind, callback_id, payload, posted_ms) VALUES (?, ?, ?, ?)",
                                     (kind, target, payload, int(time.time() * 1000)))
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"cannot write to {self.path}: {exc}") from None
        return cur.lastrowid

    def inbox_outcome(self, row_id: int) -> Optional[str]:
        rows = self._query("SELECT outcome FROM inbox WHERE id = ? AND done_ms IS NOT NULL", (row_id,))
        return rows[0][0] if rows else None

    def withdraw(self, row_id: int) -> bool:
        """Take back an answer nobody applied yet; False when an engine already took it."""
        cur = self._conn.execute("DELETE FROM inbox WHERE id = ? AND done_ms IS NULL", (row_id,))
        return cur.rowcount == 1


def owner_pid(path: str) -> Optional[int]:
    """The pid recorded by the engine owning ``path`` (None when nobody owns it)."""
    try:
        import fcntl
    except ImportError:
        return None
    try:
        fd = os.open(path + "-lock", os.O_RDWR)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
            return int(text) if text.isdigit() else -1
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)

