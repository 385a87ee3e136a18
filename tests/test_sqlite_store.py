"""The SQLite store: schema, round trips, one transaction per checkpoint, bad files, ownership."""
from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading

import pytest

import durable_sync as ds
from durable_sync.local import LocalEngine
from durable_sync.local.store import (APPLICATION_ID, SCHEMA_VERSION, DatabaseInUse, Reader, SqliteStore,
                                             StoreError)
from durable_sync.local.store import MemoryStore


@ds.durable_handler
def two_steps(event, ctx):
    a = ctx.step("a", lambda s: event["n"])
    with ctx.child("group") as c:
        b = c.step("b", lambda s: a * 2)
        c.result = b
    ctx.wait(30, name="pause")
    return {"b": b}


@ds.durable_handler
def with_callback(event, ctx):
    cb = ctx.create_callback("approval", config=ds.CallbackConfig(timeout=3600, heartbeat_timeout=600))
    ctx.step("announce", lambda s: cb.callback_id)
    return cb.result()


def _db(tmp_path) -> str:
    return str(tmp_path / "durable.db")


def test_default_db_is_sqlite_and_memory_stays_in_memory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    engine = LocalEngine(skip_time=True)
    try:
        assert isinstance(engine._store, SqliteStore)
        assert (tmp_path / "durable.db").exists()
    finally:
        engine.close()
    engine = LocalEngine(db=":memory:", skip_time=True)
    try:
        assert isinstance(engine._store, MemoryStore)
    finally:
        engine.close()


def test_schema_version_wal_and_tables(tmp_path):
    engine = LocalEngine(db=_db(tmp_path), skip_time=True)
    engine.close()
    conn = sqlite3.connect(_db(tmp_path))
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert conn.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type IN ('table', 'view')")}
    assert {"executions", "records", "operations", "events", "timers", "inbox"} <= names


def test_synchronous_normal(tmp_path):
    store = SqliteStore(_db(tmp_path))
    try:
        assert store._conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    finally:
        store.close()


def test_everything_round_trips_through_a_restart(tmp_path):
    db = _db(tmp_path)
    engine = LocalEngine(db=db, skip_time=True)
    try:
        arn = engine.start(two_steps, {"n": 21}, name="rt")
        cb_arn = engine.start(with_callback, None, name="cb")
        before = {a: (engine.history(a), engine.operations(a), engine.get_execution(a)) for a in (arn, cb_arn)}
        private_before = {k: v for k, v in engine._executions[cb_arn].ops.items()}
        token_seq = engine._executions[arn].token_seq
    finally:
        engine.close()
    store = SqliteStore(db)
    try:
        loaded = {ex.arn: ex for ex in store.load_executions()}
    finally:
        store.close()
    ex = loaded[arn]
    assert (ex.function_name, ex.name, ex.status) == ("two_steps", "rt", "RUNNING")
    assert 0 <= ex.token_seq <= token_seq  # written with the execution row only (tokens have a random prefix)
    assert ex.handler_ref == f"{__name__}:two_steps"
    # engine-private keys (callback deadlines) are persisted with the record
    assert loaded[cb_arn].ops == private_before
    assert any("_timeout_due" in op and "_heartbeat_s" in op for op in loaded[cb_arn].ops.values())
    engine = LocalEngine(db=db, skip_time=True)
    try:
        for a in (arn, cb_arn):
            history, operations, result = before[a]
            assert engine.history(a) == history
            assert engine.operations(a) == operations
            assert engine.get_execution(a) == result
        assert engine.wait(arn).result == {"b": 42}
    finally:
        engine.close()
    engine = LocalEngine(db=db, skip_time=True)
    try:
        done = engine.get_execution(arn)
        assert (done.status, done.result, done.raw_result) == ("SUCCEEDED", {"b": 42}, '{"b": 42}')
        assert engine.history(arn)[-1]["EventType"] == "ExecutionSucceeded"
    finally:
        engine.close()


def test_operation_order_is_kept_when_records_change(tmp_path):
    db = _db(tmp_path)
    engine = LocalEngine(db=db, skip_time=True)
    try:
        arn = engine.start(two_steps, {"n": 1})
        order = [op["Id"] for op in engine.operations(arn)]
    finally:
        engine.close()
    store = SqliteStore(db)
    try:
        [ex] = store.load_executions()
        assert list(ex.ops) == order  # the context ("group") was updated after its child: still before it
    finally:
        store.close()


def test_a_failed_execution_keeps_its_error(tmp_path):
    @ds.durable_handler
    def failing(event, ctx):
        ctx.step("boom", lambda s: 1 / 0, config=ds.StepConfig(retry_strategy=ds.RetryPresets.none()))

    db = _db(tmp_path)
    with LocalEngine(db=db, skip_time=True) as engine:
        arn = engine.start(failing, None)
        error = engine.get_execution(arn).error
    with LocalEngine(db=db, skip_time=True, functions={"failing": failing}) as engine:
        result = engine.get_execution(arn)
        assert result.status == "FAILED" and result.error == error and "ZeroDivisionError" in str(error)


def test_one_transaction_per_checkpoint_committed_before_the_answer(tmp_path):
    db = _db(tmp_path)
    engine = LocalEngine(db=db, skip_time=True)
    statements: list[str] = []
    engine._store._conn.set_trace_callback(statements.append)
    observer = sqlite3.connect(db, check_same_thread=False)
    seen_by_observer = []
    original = engine.checkpoint

    def checkpoint(arn, token, updates, client_token=None, **kw):
        statements.append("-- checkpoint")
        response = original(arn, token, updates, client_token, **kw)
        # another connection sees the change when the call answers: it is committed
        seen_by_observer.append(observer.execute("SELECT count(*) FROM events").fetchone()[0])
        return response

    engine.checkpoint = checkpoint
    engine._client._engine = engine
    try:
        engine.start(two_steps, {"n": 2})
    finally:
        engine.close()
    assert seen_by_observer == sorted(seen_by_observer) and seen_by_observer[0] > 1
    chunks = "\n".join(statements).split("-- checkpoint")[1:]
    single = 0
    for chunk in chunks:
        lines = [s for s in chunk.strip().splitlines() if s.strip()]
        if lines[0].startswith("INSERT INTO records"):  # one statement: SQLite commits it as its own transaction
            single += 1
            continue
        upto = lines[:lines.index("COMMIT") + 1]
        assert upto[0] == "BEGIN IMMEDIATE" and upto.count("BEGIN IMMEDIATE") == 1 and upto[-1] == "COMMIT"
    assert single >= len(chunks) // 2  # the usual checkpoint: one INSERT, no BEGIN / COMMIT round trips


def test_concurrent_executions_on_threads_are_all_persisted(tmp_path):
    @ds.durable_handler
    def many_steps(event, ctx):
        return sum(ctx.step(f"s{i}", lambda s, i=i: i) for i in range(40))

    db = _db(tmp_path)
    engine = LocalEngine(db=db)  # real time: a pool of invocation threads writes concurrently
    try:
        arns = [engine.start(many_steps, {"k": k}) for k in range(12)]
        results = [engine.wait(a, timeout=60) for a in arns]
        assert {r.status for r in results} == {"SUCCEEDED"} and {r.result for r in results} == {780}
        histories = {a: engine.history(a) for a in arns}
    finally:
        engine.close()
    with LocalEngine(db=db, skip_time=True) as engine:
        for a in arns:
            assert engine.history(a) == histories[a]


def test_timers_view_lists_what_the_engine_rearms(tmp_path):
    db = _db(tmp_path)
    with LocalEngine(db=db, skip_time=True) as engine:
        arn = engine.start(two_steps, {"n": 1})
        cb_arn = engine.start(with_callback, None)
        now = engine.clock.now_ms()
    with Reader(db) as reader:
        kinds = {k for k, _, _ in reader.next_timers(arn)}
        assert kinds == {"wait", "execution_timeout"}
        [(wait_due)] = [due for k, _, due in reader.next_timers(arn) if k == "wait"]
        assert wait_due == now + 30_000
        assert {k for k, _, _ in reader.next_timers(cb_arn)} == {"callback_timeout", "callback_heartbeat",
                                                                 "execution_timeout"}


def test_the_reader_gives_operations_and_history_as_the_engine_does(tmp_path):
    db = _db(tmp_path)
    with LocalEngine(db=db, skip_time=True) as engine:
        arn = engine.start(with_callback, None)
        done = engine.start(two_steps, {"n": 2})
        engine.advance(30)
        expected = {a: (engine.operations(a), engine.history(a)) for a in (arn, done)}
    with Reader(db) as reader:
        for a in (arn, done):
            assert (reader.operations(a), reader.history(a)) == expected[a]  # boto3 shapes, datetimes
        [callback] = [op for op in reader.operations(arn) if op["Type"] == "CALLBACK"]
        assert not [key for key in callback if key.startswith("_")]  # the engine's own keys stay inside
        assert reader.history(done)[-1]["EventType"] == "ExecutionSucceeded"
        assert reader.operations("arn:nope") == [] and reader.history("arn:nope") == []


def test_a_heartbeat_is_persisted(tmp_path):
    db = _db(tmp_path)
    with LocalEngine(db=db, skip_time=True) as engine:
        arn = engine.start(with_callback, None)
        [op] = [op for op in engine.operations(arn) if op["Type"] == "CALLBACK"]
        callback_id = op["CallbackDetails"]["CallbackId"]
        engine.advance(500)
        engine.send_callback_heartbeat(callback_id)
        due = engine._executions[arn].ops[op["Id"]]["_heartbeat_due"]
    with LocalEngine(db=db, skip_time=True) as engine:
        assert engine._executions[arn].ops[op["Id"]]["_heartbeat_due"] == due
        # virtual time restarts at the last recorded event (the start): +650 s is past the original
        # heartbeat deadline (600 s), not the extended one (1100 s)
        engine.advance(650)
        assert engine.get_execution(arn).status == "RUNNING"
        engine.advance(500)
        result = engine.get_execution(arn)
        assert result.status == "FAILED"
        assert "CallbackTimedOut" in [e["EventType"] for e in engine.history(arn)]


# -- bad files --------------------------------------------------------------------------------------------
def _digest(path) -> str:
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def test_a_file_that_is_not_sqlite_is_refused_untouched(tmp_path):
    path = tmp_path / "notes.db"
    path.write_bytes(b"these are my notes, not a database\n" * 10)
    digest = _digest(path)
    with pytest.raises(StoreError, match="not a durable_sync database"):
        LocalEngine(db=str(path), skip_time=True)
    assert _digest(path) == digest
    assert sorted(os.listdir(tmp_path)) == ["notes.db"]  # no lock, WAL or journal files


def test_a_foreign_sqlite_database_is_refused_untouched(tmp_path):
    path = tmp_path / "app.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
    conn.commit()
    conn.close()
    digest = _digest(path)
    with pytest.raises(StoreError, match="another application"):
        LocalEngine(db=str(path), skip_time=True)
    assert _digest(path) == digest
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    assert sorted(os.listdir(tmp_path)) == ["app.db"]


def test_a_newer_schema_is_refused(tmp_path):
    db = _db(tmp_path)
    LocalEngine(db=db, skip_time=True).close()
    conn = sqlite3.connect(db)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="newer"):
        LocalEngine(db=db, skip_time=True)


def _as_schema_1(source: str, target: str) -> None:
    """Write ``source`` (current schema) out as a schema-1 database: separate, updated-in-place
    ``operations`` (one row per operation, in recorded order) and ``events`` tables."""
    src = sqlite3.connect(source)
    dst = sqlite3.connect(target)
    columns = [r[1] for r in src.execute("PRAGMA table_info(executions)")]
    dst.executescript(src.execute("SELECT sql FROM sqlite_master WHERE name = 'executions'").fetchone()[0] + ";"
                      "CREATE TABLE operations (id INTEGER PRIMARY KEY, op_id TEXT NOT NULL, record TEXT NOT NULL);"
                      "CREATE TABLE events (id INTEGER PRIMARY KEY, record TEXT NOT NULL);"
                      "CREATE TABLE inbox (id INTEGER PRIMARY KEY, kind TEXT NOT NULL, callback_id TEXT NOT NULL, "
                      "payload TEXT, posted_ms INTEGER NOT NULL, done_ms INTEGER, outcome TEXT);"
                      "CREATE VIEW timers (arn, op_id, kind, due_ms) AS SELECT arn, NULL, 'execution_timeout', "
                      "start_ms + timeout_s * 1000 FROM executions WHERE status = 'RUNNING';")
    marks = ", ".join("?" * len(columns))
    dst.executemany(f"INSERT INTO executions VALUES ({marks})", src.execute("SELECT * FROM executions"))
    latest: dict = {}
    for row_id, op_id, record in src.execute("SELECT id, op_id, record FROM records ORDER BY id"):
        if op_id is None:
            event = json.loads(record)
            dst.execute("INSERT INTO events VALUES (?, ?)", (((row_id >> 32) << 32) | event["EventId"], record))
        else:
            latest.setdefault((row_id >> 32, op_id), []).append(record)
    numbering: dict = {}
    for (exec_id, op_id), versions in latest.items():  # first-appearance order, as schema 1 numbered them
        n = numbering[exec_id] = numbering.get(exec_id, 0) + 1
        dst.execute("INSERT INTO operations VALUES (?, ?, ?)", ((exec_id << 32) | n, op_id, versions[-1]))
    dst.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    dst.execute("PRAGMA user_version = 1")
    dst.commit()
    dst.close()
    src.close()


def test_a_schema_1_database_is_migrated_and_its_executions_resume(tmp_path):
    current, old = _db(tmp_path), str(tmp_path / "old.db")
    with LocalEngine(db=current, skip_time=True) as engine:
        arn = engine.start(two_steps, {"n": 5}, name="old")  # suspended in its 30 s wait
        cb_arn = engine.start(with_callback, None, name="cb")
        before = {a: (engine.history(a), engine.operations(a)) for a in (arn, cb_arn)}
        callback_id = engine.operations(cb_arn)[1]["CallbackDetails"]["CallbackId"]
    _as_schema_1(current, old)
    with LocalEngine(db=old, skip_time=True, functions={"two_steps": two_steps, "with_callback": with_callback}) \
            as engine:
        assert {a: (engine.history(a), engine.operations(a)) for a in (arn, cb_arn)} == before
        conn = sqlite3.connect(old)
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert "records" in tables and not {"operations", "events"} & tables
        conn.close()
        assert engine.wait(arn).result == {"b": 10}
        engine.send_callback_success(callback_id, json.dumps("yes"))
        assert engine.wait(cb_arn).result == "yes"


def test_a_corrupt_database_is_refused_with_a_clear_error(tmp_path):
    db = _db(tmp_path)
    with LocalEngine(db=db, skip_time=True) as engine:
        for k in range(30):
            engine.start(two_steps, {"n": k})
    data = bytearray(open(db, "rb").read())
    assert len(data) > 8192
    for i in range(4096, len(data), 7):  # overwrite every page after the first with garbage
        data[i] = 0xA5
    open(db, "wb").write(bytes(data))
    with pytest.raises(StoreError) as info:
        LocalEngine(db=db, skip_time=True)
    assert db in str(info.value) and "\n" not in str(info.value)


def test_a_directory_is_refused(tmp_path):
    with pytest.raises(StoreError, match="directory"):
        SqliteStore(str(tmp_path))


# -- one engine owns a database ------------------------------------------------------------------------------
def test_a_second_engine_on_the_same_database_is_refused_until_the_first_closes(tmp_path):
    db = _db(tmp_path)
    first = LocalEngine(db=db, skip_time=True)
    try:
        with pytest.raises(DatabaseInUse, match="in use"):
            LocalEngine(db=db, skip_time=True)
        with Reader(db) as reader:  # readers are always welcome
            assert reader.executions() == []
    finally:
        first.close()
    LocalEngine(db=db, skip_time=True).close()


def test_answers_posted_to_the_inbox_reach_the_owning_engine(tmp_path):
    db = _db(tmp_path)
    engine = LocalEngine(db=db)  # real time: polls its inbox
    try:
        arn = engine.start(with_callback, None)
        deadline = threading.Event()
        callback_id = None
        for _ in range(200):
            ops = [op for op in engine.operations(arn) if op["Type"] == "CALLBACK"]
            if ops:
                callback_id = ops[0]["CallbackDetails"]["CallbackId"]
                break
            deadline.wait(0.01)
        with Reader(db) as reader:
            row = reader.post_callback("succeed", callback_id, '"yes"')
            result = engine.wait(arn, timeout=10)
            assert (result.status, result.result) == ("SUCCEEDED", "yes")
            for _ in range(100):
                if reader.inbox_outcome(row) is not None:
                    break
                deadline.wait(0.02)
            assert reader.inbox_outcome(row) == "ok"
            bad = reader.post_callback("succeed", "no-such-callback", None)
            for _ in range(100):
                if reader.inbox_outcome(bad) is not None:
                    break
                deadline.wait(0.02)
            assert reader.inbox_outcome(bad).startswith("error: unknown callback id")
    finally:
        engine.close()


def test_answers_posted_while_no_engine_runs_are_applied_at_the_next_start(tmp_path):
    db = _db(tmp_path)
    with LocalEngine(db=db, skip_time=True) as engine:
        arn = engine.start(with_callback, None)
        [op] = [op for op in engine.operations(arn) if op["Type"] == "CALLBACK"]
    with Reader(db) as reader:
        row = reader.post_callback("fail", op["CallbackDetails"]["CallbackId"],
                                   '{"ErrorType": "Rejected", "ErrorMessage": "no"}')
    with LocalEngine(db=db, skip_time=True) as engine:
        result = engine.get_execution(arn)
        assert (result.status, result.error) == ("FAILED", {"ErrorType": "Rejected", "ErrorMessage": "no"})
    with Reader(db) as reader:
        assert reader.inbox_outcome(row) == "ok"


def test_pause_resume_and_delete_posted_while_no_engine_runs_are_applied_at_the_next_start(tmp_path):
    db = _db(tmp_path)
    with LocalEngine(db=db, skip_time=True) as engine:
        arn = engine.start(with_callback, None)
        [op] = [op for op in engine.operations(arn) if op["Type"] == "CALLBACK"]
    with Reader(db) as reader:
        # the answer alone would let the next engine finish the execution; the pause posted after it is applied
        # first too, before that engine invokes anything
        answer = reader.post_callback("succeed", op["CallbackDetails"]["CallbackId"], '"yes"')
        pause = reader.post("pause", arn, "maintenance")
        with pytest.raises(ValueError, match="inbox kind must be one of"):
            reader.post("reboot", arn)
    with LocalEngine(db=db, skip_time=True) as engine:
        result = engine.get_execution(arn)
        assert (result.status, result.pause_status, result.pause_details["Reason"]) == ("RUNNING", "PAUSED",
                                                                                        "maintenance")
    with Reader(db) as reader:
        assert (reader.inbox_outcome(answer), reader.inbox_outcome(pause)) == ("ok", "ok")
        resume = reader.post("resume", arn, None)
        early_delete = reader.post("delete", arn)
    with LocalEngine(db=db, skip_time=True) as engine:
        result = engine.get_execution(arn)
        assert (result.status, result.result, result.pause_status) == ("SUCCEEDED", "yes", None)
    with Reader(db) as reader:
        assert reader.inbox_outcome(resume) == "ok"
        assert reader.inbox_outcome(early_delete).startswith(f"error: execution {arn} is RUNNING; only a SUCCEEDED")
        again = reader.post("pause", arn, None)
        delete = reader.post("delete", arn)
    with LocalEngine(db=db, skip_time=True) as engine:
        assert engine.list_executions() == []
    with Reader(db) as reader:
        assert reader.inbox_outcome(again).startswith(f"error: execution {arn} is SUCCEEDED; only a RUNNING")
        assert reader.inbox_outcome(delete) == "ok"
        assert reader.executions() == []


def test_both_stores_implement_the_store_protocol_and_nothing_else_is_taken(tmp_path):
    from durable_sync.errors import ValidationError
    from durable_sync.local.store import Store, open_store

    store = open_store(_db(tmp_path))
    try:
        assert isinstance(store, SqliteStore) and isinstance(store, Store)
    finally:
        store.close()
    assert isinstance(open_store(":memory:"), Store)
    for bad in (42, object(), ""):
        with pytest.raises(ValidationError, match="db"):
            LocalEngine(db=bad, skip_time=True)
