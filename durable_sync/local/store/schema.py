"""The SQLite database of the local engine: its schema, views and migrations, the codec of its
records, opening and verifying a file, and the owner lock (one engine per database).

Layout (schema version ``SCHEMA_VERSION`` in ``PRAGMA user_version``; ``PRAGMA application_id``
marks the file as a durable_sync database):

- ``executions``: one row per execution (identity, status, result/error, invocation failures, the
  handler reference used to resume it); ``id`` is its creation order.
- ``records``: each execution's journal, append-only, one JSON row per operation record or history
  event, in the order written. The integer key is ``execution id << 32 | n`` (``SHIFT``), so one
  execution's journal is a contiguous range of the table with no secondary index to maintain. A row
  with ``op_id`` is a version of that operation's record (engine-private keys such as
  ``_timeout_due`` included): the last version wins, and operations keep the order in which they
  first appear (parents before children). A row without ``op_id`` is a history event.
- ``operations`` and ``events``: VIEWs of ``records`` (latest versions; events) for readers;
  ``timers``: a VIEW of pending waits, retries, callback deadlines and execution timeouts.
- ``inbox``: requests other processes post to the engine that owns the database (``inbox.py``).

A database of schema version 1 (separate, updated ``operations`` and ``events`` tables) is migrated
in place, in one transaction, the first time it is opened.
"""
from __future__ import annotations

import json
import os
import sqlite3
from typing import Any, Callable, Iterable, Optional

from ..service import Execution

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
SHIFT = 32  # row id of a journal row: execution id << 32 | n
REPLACE_ROW = "INSERT OR REPLACE INTO records (id, op_id, record) VALUES (?, ?, ?)"
EXEC_COLUMNS = ("id, arn, function_name, name, exec_op_id, start_ms, end_ms, timeout_s, input_payload, status, "
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


dumps = _make_dumps()
loads = json.loads


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


def transaction(conn: sqlite3.Connection, body: Callable[[], Any]) -> Any:
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
        exec_id = old_id >> SHIFT
        n = next_row.get(exec_id, (exec_id << SHIFT) + 1)
        next_row[exec_id] = n + 1
        return n

    ops = conn.execute("SELECT id, op_id, record FROM operations ORDER BY id").fetchall()
    conn.executemany(REPLACE_ROW, [(renumber(i), op_id, record) for i, op_id, record in ops])
    events = conn.execute("SELECT id, record FROM events ORDER BY id").fetchall()
    conn.executemany(REPLACE_ROW, [(renumber(i), None, record) for i, record in events])
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
            transaction(conn, lambda: _create_or_migrate(conn, path))
        return conn
    except sqlite3.DatabaseError as exc:
        if conn is not None:
            conn.close()
        raise StoreError(f"{path} is not a usable durable_sync database: {exc}") from None
    except BaseException:
        if conn is not None:
            conn.close()
        raise


class OwnerLock:
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


def journal_range(exec_id: int) -> tuple[int, int]:
    """The lowest and highest row id execution ``exec_id``'s journal can have (``SHIFT``)."""
    return exec_id << SHIFT, ((exec_id + 1) << SHIFT) - 1


def journal_contents(rows: Iterable[tuple[Optional[str], str]]) -> tuple[dict, list]:
    """(operation id -> record, history events) of one execution's journal rows ``(op_id, record)`` in row
    order: an operation's last version wins, its first fixed the order (parents before children)."""
    records: dict[str, str] = {}
    events = []
    for op_id, record in rows:
        if op_id is None:
            events.append(loads(record))
        else:
            records[op_id] = record
    return {op_id: loads(record) for op_id, record in records.items()}, events


def execution_from_row(row: tuple) -> Execution:
    (_, arn, function_name, name, exec_op_id, start_ms, end_ms, timeout_s, input_payload, status, result, error,
     token_seq, invocation_failures, handler_ref) = row
    ex = Execution(arn=arn, function_name=function_name, name=name, exec_op_id=exec_op_id, start_ms=start_ms,
                   timeout_s=timeout_s, input_payload=input_payload, status=status, end_ms=end_ms, result=result,
                   error=loads(error) if error else None, handler_ref=handler_ref)
    ex.token_seq = token_seq
    ex.invocation_failures = invocation_failures
    return ex


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

