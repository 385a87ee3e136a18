"""A full disk and a read-only database under a running engine (real SQLite errors, no mocks).

Faults are made by SQLite itself on the store's own connection:
- disk full: ``PRAGMA max_page_count`` set to the database's current size, so the next write that
  needs a new page fails with SQLITE_FULL ("database or disk is full");
- read-only: ``PRAGMA query_only``, so every write fails with SQLITE_READONLY (``chmod`` would not
  do: the suite may run as root, which ignores file modes).

What must hold: a checkpoint the store could not commit is refused (a 5xx, retryable: the
invocation is retried and replays) and leaves the engine's memory as it was (memory and
database never disagree); nothing acknowledged is lost, which the test checks by reopening the
database in a fresh engine; completed steps are not run again. A fault that clears within the
engine's invocation retries costs nothing but retries (SUCCEEDED); one that does not clear fails
the execution with an error naming the cause (disk full), or, when not even that can be written
(read-only), surfaces to the caller and the execution resumes from the database after a restart.
Service-side changes (a callback answer, a wait coming due) that the store refuses are refused as
a whole too: the answer can be sent again and the timer fires again once the fault clears.
"""
from __future__ import annotations

import logging

import json
import random
import sqlite3

import pytest

import durable_sync as ds
from durable_sync.local import LocalEngine, ServiceError
from durable_sync.local.store import Reader

from . import chaos
from .chaos import STATS, Audit, FaultyStore, Probe, audit_run, chaos_workflow, drive, recorded_steps, scale

EVENT = {"steps": 8, "items": 4}


def _fault_after(store: FaultyStore, trigger: str, mode: str, fail_writes: int):
    """A probe fault that switches the store's fault on the first time ``trigger`` is reached."""
    fired = []

    def fault(point: str) -> None:
        if point == trigger and not fired:
            fired.append(point)
            store.set_fault(mode, fail_writes)

    return fault


def disk_steps(path: str, arn: str) -> dict[str, str]:
    """Step name -> recorded result token, read from the database file (no engine, nothing resumed)."""
    with Reader(path) as reader:
        ex = reader.execution(arn)
    return {op["Name"]: json.loads(op["StepDetails"]["Result"]) for op in ex.ops.values()
            if op["Type"] == "STEP" and op.get("SubType") == "Step" and op["Status"] == "SUCCEEDED"}


def _reopen_and_finish(path: str, arn: str, probe: Probe):
    """A fresh engine on the database: what is on disk is all there is."""
    on_disk = disk_steps(path, arn)
    engine = LocalEngine(db=path, skip_time=True, functions={"chaos_workflow": chaos_workflow})
    try:
        _, result = drive(engine, chaos_workflow, EVENT, "disk", probe)
        audit = audit_run(engine, arn, result, probe, EVENT)
    finally:
        engine.close()
    return on_disk, result, audit


def _acked_on_disk(entries: list, on_disk: dict) -> Audit:
    out = Audit()
    for e in entries:
        if e.kind == "ack" and on_disk.get(e.key) != e.token:
            out.lose(f"step {e.key}: acknowledged result {e.token} is not in the database ({on_disk.get(e.key)})")
    return out


TRIGGERS = ["after:s1", "after:s4", "after:w1", "after:kid-a", "after:create-cb", "branch:1", "branch:2"]


def test_a_transient_full_disk_is_retried_and_the_execution_succeeds(tmp_path):
    rng = random.Random()
    runs = scale(3, 14)
    faults = completed = lost = dups = 0
    problems = []
    for n in range(runs):
        path = str(tmp_path / f"full-{n}.db")
        store = FaultyStore(path)
        trigger = TRIGGERS[n % len(TRIGGERS)]
        chaos.PROBE = probe = Probe(_fault_after(store, trigger, "full", fail_writes=rng.randint(1, 2)))
        engine = LocalEngine(db=store, skip_time=True)
        try:
            arn, result = drive(engine, chaos_workflow, EVENT, "disk", probe)
            audit = audit_run(engine, arn, result, probe, EVENT)
            history = engine.history(arn)
        finally:
            engine.close()
        # a refused checkpoint is a retryable service error: the invocation failed and was retried (a write
        # that still fits in the database's free pages succeeds, as on a real full disk)
        errors = [e["InvocationCompletedDetails"]["Error"]["Payload"] for e in history
                  if e["EventType"] == "InvocationCompleted" and e["InvocationCompletedDetails"].get("Error")]
        assert all("database or disk is full" in err["ErrorMessage"] for err in errors), errors
        assert len(errors) <= store.failed
        # reopen: the database holds exactly what this engine reported
        entries = list(probe.ledger.entries)
        on_disk, again, reaudit = _reopen_and_finish(path, arn, probe)
        audit.merge(_acked_on_disk(entries, on_disk)).merge(reaudit)
        assert again.status == "SUCCEEDED" and again.result == result.result
        faults += store.failed
        completed += result.status == "SUCCEEDED"
        lost += audit.lost
        dups += audit.duplicates
        problems += [f"{trigger}: {p}" for p in audit.problems]
        chaos.PROBE = Probe()
    STATS.record("transient disk full", runs=runs, completed=completed, faults={"disk-full-write": faults},
                 lost=lost, duplicates=dups)
    assert not problems, "\n".join(problems)
    assert completed == runs
    assert faults >= runs // 2, "the disk-full faults hardly ever hit a write"


@pytest.mark.parametrize("mode, trigger", [
    ("full", "after:s3"), ("full", "after:kid-b"), ("full", "branch:0"),
    ("readonly", "after:s2"), ("readonly", "after:create-cb"), ("readonly", "branch:1"),
])
def test_a_lasting_fault_stops_the_engine_and_a_restart_resumes_from_the_database(tmp_path, mode, trigger):
    """The fault does not clear: the engine cannot even record that an invocation failed, so the
    SQLite error reaches the caller (or, if the failure itself could still be written, the execution
    ends FAILED naming the cause). Reopened with the fault cleared, the database holds every
    acknowledged step and nothing the engine did not acknowledge; a RUNNING execution resumes."""
    path = str(tmp_path / f"{mode}.db")
    store = FaultyStore(path)
    chaos.PROBE = probe = Probe(_fault_after(store, trigger, mode, fail_writes=0))
    engine = LocalEngine(db=store, skip_time=True)
    cause = "database or disk is full" if mode == "full" else "readonly"
    try:
        try:
            _, result = drive(engine, chaos_workflow, EVENT, "disk", probe)
        except ServiceError as exc:  # the engine's 5xx, caused by the store's error
            assert exc.status == 500 and isinstance(exc.__cause__, sqlite3.OperationalError), exc
            assert cause in str(exc)
            result = None
        else:
            assert result.status == "FAILED" and cause in result.error["ErrorMessage"], result
        [item] = engine.list_executions()
        arn = item["DurableExecutionArn"]
        in_memory = recorded_steps(engine, arn)
    finally:
        store.set_fault(None)
        engine.close()
    first_run = list(probe.ledger.entries)
    acked_before = {e.key: e.token for e in first_run if e.kind == "ack"}
    on_disk = disk_steps(path, arn)
    engine = LocalEngine(db=path, skip_time=True, functions={"chaos_workflow": chaos_workflow})
    try:
        assert on_disk == in_memory  # memory never ran ahead of the database
        audit = _acked_on_disk(first_run, on_disk)  # nothing acknowledged was lost
        assert set(acked_before) <= set(on_disk)
        if engine.get_execution(arn).status == "RUNNING":
            _, final = drive(engine, chaos_workflow, EVENT, "disk", probe)
            assert final.status == "SUCCEEDED", final
            audit.merge(audit_run(engine, arn, final, probe, EVENT))
        else:
            assert result is not None and engine.get_execution(arn).status == "FAILED"
            audit.merge(audit_run(engine, arn, result, probe, EVENT, expect_success=False))
    finally:
        engine.close()
        chaos.PROBE = Probe()
    STATS.record(f"lasting {mode} at {trigger}", runs=1, completed=1, faults={f"{mode}-write": store.failed},
                 lost=audit.lost, duplicates=audit.duplicates)
    assert store.failed >= 1
    assert not audit.problems, audit.problems


@ds.durable_handler
def answer_then_wait(event, ctx):
    answer = ctx.create_callback(name="cb").result()
    ctx.wait(30, name="pause")
    return {"answer": answer, "after": ctx.step("after", lambda s: "done")}


def test_service_side_changes_the_store_refuses_can_be_made_again(tmp_path, caplog):
    """A callback answer and a wait coming due while the store cannot write (read-only: a full disk takes
    the same path, but only fails writes that need a new page): the answer is refused (the sender sees
    the error) and can be sent again once the fault clears; the wait fires then, without a restart; the
    database never holds what the engine did not accept."""
    mode = "readonly"
    path = str(tmp_path / "svc.db")
    store = FaultyStore(path)
    engine = LocalEngine(db=store, skip_time=True)
    faults = 0
    try:
        arn = engine.start(answer_then_wait, {})
        [cb] = [op for op in engine.operations(arn) if op["Type"] == "CALLBACK"]
        callback_id = cb["CallbackDetails"]["CallbackId"]
        store.set_fault("readonly")
        with pytest.raises(ServiceError) as refused:
            engine.send_callback_success(callback_id, '"first try"')
        assert refused.value.status == 500 and isinstance(refused.value.__cause__, sqlite3.OperationalError)
        faults += 1
        assert disk_callback_status(path, arn) == "STARTED"
        assert [op["Status"] for op in engine.operations(arn) if op["Type"] == "CALLBACK"] == ["STARTED"]
        store.set_fault(None)
        engine.send_callback_success(callback_id, '"second try"')  # accepted now: nothing half-done before
        assert disk_callback_status(path, arn) == "SUCCEEDED"
        store.set_fault("readonly")
        with caplog.at_level(logging.WARNING, logger="durable_sync.engine"):
            engine.advance(30)  # the wait comes due while the store is read-only: armed again, as the service would
        assert any("timer wait" in r.getMessage() and "readonly" in r.getMessage() for r in caplog.records)
        faults += 1
        assert [op["Status"] for op in engine.operations(arn) if op["Type"] == "WAIT"] == ["STARTED"]
        store.set_fault(None)
        result = engine.wait(arn)  # the timer fires again: no restart needed
        assert (result.status, result.result) == ("SUCCEEDED", {"answer": "second try", "after": "done"})
        events = [e["EventType"] for e in engine.history(arn)]
        assert events.count("CallbackSucceeded") == 1 and events.count("WaitSucceeded") == 1
    finally:
        store.set_fault(None)
        engine.close()
    with Reader(path) as reader:
        assert reader.execution(arn).status == "SUCCEEDED"
    STATS.record(f"service-side changes under {mode}", runs=1, completed=1, faults={f"{mode}-write": faults})


def disk_callback_status(path: str, arn: str) -> str:
    with Reader(path) as reader:
        [op] = [op for op in reader.execution(arn).ops.values() if op["Type"] == "CALLBACK"]
    return op["Status"]
