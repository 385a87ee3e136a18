"""Deleting, pausing and resuming executions on the engine (DeleteDurableExecution,
PauseDurableExecution, ResumeDurableExecution), whatever botocore is installed.

Semantics, from the botocore ``lambda`` model's documentation of those operations:
- delete: only an ended execution (SUCCEEDED, FAILED, STOPPED, TIMED_OUT), else
  ResourceConflictException; its data (history, operations, payloads) is gone.
- pause: no invocations while paused, but waits and callbacks go on completing; PAUSING while
  an invocation is in flight, until its next checkpoint; the execution timeout is held while
  paused unless ExecutionTimeoutPaused is false, never past 366 days after the start.
- resume: invokes again if the pause interrupted an invocation or an operation completed
  meanwhile, else the execution goes on waiting; resuming a PAUSING execution cancels the pause.
"""
from __future__ import annotations

import datetime as dt
import json
import sqlite3
import time

import pytest

import durable_sync as ds
from durable_sync.local import LocalEngine, ServiceError
from durable_sync.local.engine import DEFAULT_EXECUTION_TIMEOUT

CONFLICT = "ResourceConflictException"
NOT_FOUND = "ResourceNotFoundException"
INVALID = "InvalidParameterValueException"

RUNS: dict = {}


def _count(key):
    RUNS[key] = RUNS.get(key, 0) + 1


def _types(engine, arn):
    return [e["EventType"] for e in engine.history(arn)]


@ds.durable_handler
def step_wait_step(event, ctx):
    tag = event["tag"]
    first = ctx.step("first", lambda s: (_count((tag, "first")), 1)[1])
    ctx.wait(event.get("wait", 60), name="nap")
    second = ctx.step("second", lambda s: (_count((tag, "second")), 2)[1])
    return first + second


@ds.durable_handler
def approval(event, ctx):
    callback = ctx.create_callback(name="approve")
    return {"answer": callback.result()}


def _code(info):
    return info.value.code


# -- delete -------------------------------------------------------------------------------------------
def test_delete_removes_an_ended_execution_and_frees_its_name(engine):
    arn = engine.start(step_wait_step, {"tag": "del-1", "wait": 1}, name="del-1")
    assert engine.wait(arn).status == "SUCCEEDED"
    deleted = engine.delete(arn)
    assert isinstance(deleted, dt.datetime) and deleted.tzinfo is not None
    for call in (engine.get_execution, engine.history, engine.operations, engine.delete):
        with pytest.raises(ServiceError) as info:
            call(arn)
        assert (_code(info), info.value.status) == (NOT_FOUND, 404)
    assert engine.list_executions(function_name="step_wait_step") == []
    again = engine.start(step_wait_step, {"tag": "del-1b", "wait": 1}, name="del-1")  # a new execution
    assert again != arn and engine.wait(again).result == 3


def test_only_ended_executions_can_be_deleted(engine):
    arn = engine.start(approval, {})
    with pytest.raises(ServiceError) as info:
        engine.delete(arn)
    assert (_code(info), info.value.status) == (CONFLICT, 409) and "RUNNING" in info.value.message
    engine.pause(arn)
    with pytest.raises(ServiceError) as info:
        engine.delete(arn)
    assert _code(info) == CONFLICT and "PAUSED" in info.value.message
    engine.stop(arn)
    engine.delete(arn)
    with pytest.raises(ServiceError) as info:
        engine.delete(arn)
    assert _code(info) == NOT_FOUND


def test_a_deleted_execution_forgets_its_callbacks(engine):
    arn = engine.start(approval, {})
    callback_id = next(e["CallbackStartedDetails"]["CallbackId"] for e in engine.history(arn)
                       if e["EventType"] == "CallbackStarted")
    engine.stop(arn)
    engine.delete(arn)
    with pytest.raises(ServiceError, match="unknown callback id"):
        engine.send_callback_success(callback_id, '"late"')


def test_delete_is_persisted_and_leaves_other_executions(tmp_path):
    db = str(tmp_path / "d.db")
    engine = LocalEngine(db=db, skip_time=True)
    try:
        kept = engine.run(step_wait_step, {"tag": "del-p1", "wait": 1}).arn
        gone = engine.run(step_wait_step, {"tag": "del-p2", "wait": 1}).arn  # the newest row: its id is reused
        kept_history = engine.history(kept)
        engine.delete(gone)
    finally:
        engine.close()
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT arn FROM executions").fetchall() == [(kept,)]
        (exec_id,) = conn.execute("SELECT id FROM executions").fetchone()
        low, high = exec_id << 32, ((exec_id + 1) << 32) - 1
        for table in ("operations", "events"):  # nothing but the kept execution's rows
            total = conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            own = conn.execute(f"SELECT count(*) FROM {table} WHERE id BETWEEN ? AND ?", (low, high)).fetchone()[0]
            assert total == own > 0
    engine = LocalEngine(db=db, skip_time=True)
    try:
        assert [e["DurableExecutionArn"] for e in engine.list_executions()] == [kept]
        assert engine.history(kept) == kept_history
        with pytest.raises(ServiceError):
            engine.get_execution(gone)
        fresh = engine.run(step_wait_step, {"tag": "del-p3", "wait": 1})  # takes the deleted row's id
        assert fresh.result == 3 and _types(engine, fresh.arn)[0] == "ExecutionStarted"
        assert engine.history(kept) == kept_history
    finally:
        engine.close()


# -- pause and resume ---------------------------------------------------------------------------------
def test_a_paused_execution_gets_no_invocation_but_its_wait_completes(engine):
    arn = engine.start(step_wait_step, {"tag": "p-1"})
    paused = engine.pause(arn, "maintenance")
    assert (paused.status, paused.pause_status) == ("RUNNING", "PAUSED")
    assert paused.pause_details["Reason"] == "maintenance"
    assert paused.pause_details["ExecutionTimeoutPaused"] is True
    assert isinstance(paused.pause_details["PauseRequestTimestamp"], dt.datetime)
    event = engine.history(arn)[-1]
    assert event["EventType"] == "ExecutionPaused"
    assert event["ExecutionPausedDetails"] == {"PauseRequestTimestamp": paused.pause_details["PauseRequestTimestamp"],
                                               "ExecutionTimeoutPaused": True,
                                               "Reason": {"Payload": "maintenance", "Truncated": False}}
    assert [e["Status"] for e in engine.list_executions(function_name="step_wait_step")
            if e["DurableExecutionArn"] == arn] == ["PAUSED"]
    assert [e["DurableExecutionArn"] for e in engine.list_executions(status="PAUSED")] == [arn]
    assert engine.list_executions(status="RUNNING") == []
    invocations = _types(engine, arn).count("InvocationCompleted")
    engine.advance(3600)  # the wait comes due and completes; nothing is invoked
    assert _types(engine, arn)[-1] == "WaitSucceeded"
    assert _types(engine, arn).count("InvocationCompleted") == invocations
    assert RUNS.get(("p-1", "second")) is None
    result = engine.wait(arn)  # only a resume can move it: returns at once
    assert (result.status, result.pause_status) == ("RUNNING", "PAUSED")
    resumed = engine.resume_execution(arn, "done")
    assert (resumed.status, resumed.result, resumed.pause_status) == ("SUCCEEDED", 3, None)
    types = _types(engine, arn)
    assert types[types.index("WaitSucceeded") + 1] == "ExecutionResumed"
    resume_event = engine.history(arn)[types.index("ExecutionResumed")]
    assert resume_event["ExecutionResumedDetails"]["Reason"] == {"Payload": "done", "Truncated": False}
    assert RUNS[("p-1", "first")] == RUNS[("p-1", "second")] == 1


def test_resume_before_anything_completed_only_goes_on_waiting(engine):
    arn = engine.start(step_wait_step, {"tag": "p-2"})
    engine.pause(arn)
    engine.advance(10)
    invocations = _types(engine, arn).count("InvocationCompleted")
    assert engine.resume_execution(arn).status == "RUNNING"
    assert _types(engine, arn).count("InvocationCompleted") == invocations  # no invocation: nothing changed
    assert _types(engine, arn)[-1] == "ExecutionResumed"
    assert engine.wait(arn).result == 3


def test_callbacks_are_answered_while_paused_and_seen_after_the_resume(engine):
    arn = engine.start(approval, {})
    callback_id = next(e["CallbackStartedDetails"]["CallbackId"] for e in engine.history(arn)
                       if e["EventType"] == "CallbackStarted")
    engine.pause(arn)
    engine.send_callback_success(callback_id, json.dumps("yes"))
    assert engine.get_execution(arn).pause_status == "PAUSED"
    assert _types(engine, arn)[-2:] == ["ExecutionPaused", "CallbackSucceeded"]
    assert engine.resume_execution(arn).result == {"answer": "yes"}


@ds.durable_handler
def pauses_itself(event, ctx):
    tag = event["tag"]
    engine = ENGINES[tag]

    def body(step_ctx):
        _count((tag, "body"))
        if RUNS[(tag, "body")] == 1:  # first run: the operator pauses while this invocation runs
            SEEN[tag] = engine.pause(ctx.execution_arn, "from inside").pause_status
            if event.get("cancel"):
                SEEN[tag + "/resumed"] = engine.resume_execution(ctx.execution_arn).pause_status
        return "done"

    return ctx.step("work", body)


ENGINES: dict = {}
SEEN: dict = {}


def test_pausing_waits_for_the_next_checkpoint_which_ends_the_invocation(engine):
    ENGINES["pi-1"] = engine
    arn = engine.start(pauses_itself, {"tag": "pi-1"})
    assert SEEN["pi-1"] == "PAUSING"  # an invocation was in flight
    result = engine.get_execution(arn)
    assert (result.status, result.pause_status) == ("RUNNING", "PAUSED")
    types = _types(engine, arn)
    assert "StepSucceeded" not in types  # the refused checkpoint applied nothing
    assert types[-2:] == ["ExecutionPaused", "InvocationCompleted"]
    assert "invalid checkpoint token" in json.dumps(engine.history(arn)[-1]["InvocationCompletedDetails"],
                                                  default=str).lower()
    engine.advance(3600)
    assert engine.get_execution(arn).status == "RUNNING"  # an interrupted invocation is no failed attempt
    assert RUNS[("pi-1", "body")] == 1
    resumed = engine.resume_execution(arn)  # the pause interrupted an invocation: invoked again, replays
    assert (resumed.status, resumed.result) == ("SUCCEEDED", "done")
    assert RUNS[("pi-1", "body")] == 2


def test_resuming_a_pausing_execution_cancels_the_pause(engine):
    ENGINES["pi-2"] = engine
    arn = engine.start(pauses_itself, {"tag": "pi-2", "cancel": True})
    assert (SEEN["pi-2"], SEEN["pi-2/resumed"]) == ("PAUSING", None)
    result = engine.get_execution(arn)
    assert (result.status, result.result) == ("SUCCEEDED", "done")
    assert RUNS[("pi-2", "body")] == 1
    assert not {"ExecutionPaused", "ExecutionResumed"} & set(_types(engine, arn))  # it never paused


def test_pause_and_resume_errors_and_client_tokens(engine):
    missing = "arn:aws:lambda:us-east-1:000000000000:function:f:$LATEST/durable-execution/x/y"
    for call in (engine.pause, engine.resume_execution):
        with pytest.raises(ServiceError) as info:
            call(missing)
        assert (_code(info), info.value.status) == (NOT_FOUND, 404)
    arn = engine.start(approval, {})
    with pytest.raises(ServiceError) as info:
        engine.resume_execution(arn)  # not paused
    assert (_code(info), info.value.status) == (CONFLICT, 409)
    engine.pause(arn, "r", client_token="tok-1")
    events = len(engine.history(arn))
    assert engine.pause(arn, "r", client_token="tok-1").pause_status == "PAUSED"  # a repeat: no-op, success
    assert len(engine.history(arn)) == events
    with pytest.raises(ServiceError) as info:
        engine.pause(arn, "other", client_token="tok-1")  # same token, other arguments
    assert _code(info) == INVALID
    with pytest.raises(ServiceError) as info:
        engine.pause(arn, "r", client_token="tok-2")  # a new request while paused
    assert (_code(info), info.value.status) == (CONFLICT, 409)
    with pytest.raises(ServiceError) as info:
        engine.resume_execution(arn, "x" * 1025)
    assert _code(info) == INVALID
    engine.resume_execution(arn, client_token="tok-3")
    engine.resume_execution(arn, client_token="tok-3")  # a repeat of a resume that went through
    engine.advance(16 * 60)
    with pytest.raises(ServiceError) as info:
        engine.resume_execution(arn, client_token="tok-3")  # 15 minutes later it is a new request
    assert _code(info) == CONFLICT
    engine.stop(arn)
    for call in (engine.pause, engine.resume_execution):
        with pytest.raises(ServiceError) as info:
            call(arn)
        assert (_code(info), info.value.status) == (CONFLICT, 409) and "STOPPED" in info.value.message


def test_the_execution_timeout_is_held_while_paused(engine):
    arn = engine.start(step_wait_step, {"tag": "t-1", "wait": 1000}, execution_timeout=100)
    started = engine.history(arn)[0]["EventTimestamp"]
    assert engine.get_execution(arn).timeout_at == started + dt.timedelta(seconds=100)
    engine.pause(arn)  # ExecutionTimeoutPaused defaults to true
    assert engine.get_execution(arn).timeout_at == started + dt.timedelta(seconds=DEFAULT_EXECUTION_TIMEOUT)
    engine.advance(500)
    assert engine.get_execution(arn).status == "RUNNING"
    engine.resume_execution(arn)
    assert engine.get_execution(arn).timeout_at == started + dt.timedelta(seconds=600)  # 100 s + 500 s paused
    engine.advance(99)
    assert engine.get_execution(arn).status == "RUNNING"
    engine.advance(2)
    result = engine.get_execution(arn)
    assert result.status == "TIMED_OUT" and result.timeout_at is None


def test_without_execution_timeout_paused_the_timeout_runs_on(engine):
    arn = engine.start(step_wait_step, {"tag": "t-2", "wait": 1000}, execution_timeout=100)
    engine.pause(arn, execution_timeout_paused=False)
    assert engine.get_execution(arn).pause_details["ExecutionTimeoutPaused"] is False
    engine.advance(101)
    result = engine.get_execution(arn)
    assert (result.status, result.pause_status) == ("TIMED_OUT", None)


def test_a_paused_execution_can_be_stopped_then_deleted(engine):
    arn = engine.start(approval, {})
    engine.pause(arn)
    stopped = engine.stop(arn)
    assert (stopped.status, stopped.pause_status) == ("STOPPED", None)
    assert engine.list_executions(status="STOPPED")[0]["DurableExecutionArn"] == arn
    engine.delete(arn)


def test_a_pause_survives_a_restart(tmp_path):
    db = str(tmp_path / "p.db")
    engine = LocalEngine(db=db, skip_time=True)
    try:
        arn = engine.start(step_wait_step, {"tag": "r-1"})
        engine.pause(arn, "across restarts")
    finally:
        engine.close()
    engine = LocalEngine(db=db, skip_time=True, functions={"step_wait_step": step_wait_step})
    try:
        result = engine.get_execution(arn)
        assert (result.status, result.pause_status, result.pause_details["Reason"]) == \
            ("RUNNING", "PAUSED", "across restarts")
        assert engine.list_executions(status="PAUSED")[0]["DurableExecutionArn"] == arn
        engine.advance(3600)
        assert _types(engine, arn)[-1] == "WaitSucceeded" and RUNS.get(("r-1", "second")) is None
        assert engine.resume_execution(arn).result == 3
    finally:
        engine.close()


def test_an_execution_left_pausing_by_a_crash_is_paused_after_the_restart(tmp_path):
    """The process died while an invocation ran under a pause request: the pause took effect, and the
    resume invokes again at once (the pause interrupted an invocation)."""
    db = str(tmp_path / "c.db")
    engine = LocalEngine(db=db, skip_time=True)
    try:
        arn = engine.start(step_wait_step, {"tag": "c-1"})
        exec_op = arn.rsplit("/", 1)[1]
    finally:
        engine.close()
    with sqlite3.connect(db) as conn:  # what a pause request during an invocation killed with the process leaves
        conn.execute("UPDATE records SET record = json_set(record, '$._pause', json(?)) "
                     "WHERE id = (SELECT id FROM operations WHERE op_id = ?)",
                     (json.dumps({"Status": "PAUSING", "RequestedMs": 0, "TimeoutPaused": True, "Reason": None}),
                      exec_op))
        (last_id, last) = conn.execute("SELECT id, record FROM events ORDER BY id DESC LIMIT 1").fetchone()
        assert json.loads(last)["EventType"] == "InvocationCompleted"
        conn.execute("DELETE FROM records WHERE id = ?", (last_id,))  # the invocation never completed
    engine = LocalEngine(db=db, skip_time=True, functions={"step_wait_step": step_wait_step})
    try:
        result = engine.get_execution(arn)
        assert (result.status, result.pause_status) == ("RUNNING", "PAUSED")
        assert _types(engine, arn)[-1] == "ExecutionPaused"
        assert "InvocationCompleted" not in _types(engine, arn)  # nothing invoked while paused
        assert engine.resume_execution(arn).status == "RUNNING"
        assert _types(engine, arn)[-2:] == ["ExecutionResumed", "InvocationCompleted"]  # invoked at once
        assert RUNS[("c-1", "first")] == 1  # replayed from its checkpoint
        engine.advance(3600)
        assert engine.get_execution(arn).result == 3
    finally:
        engine.close()


def test_a_real_time_engine_pauses_and_resumes():
    engine = LocalEngine(db=":memory:")
    try:
        arn = engine.start(step_wait_step, {"tag": "rt-1", "wait": 1})
        deadline = time.monotonic() + 10
        while "InvocationCompleted" not in _types(engine, arn):  # idle in its 1 s wait
            assert time.monotonic() < deadline
            time.sleep(0.01)
        engine.pause(arn)
        assert engine.wait(arn, timeout=2.5).pause_status == "PAUSED"  # the wait came due meanwhile
        assert "WaitSucceeded" in _types(engine, arn) and RUNS.get(("rt-1", "second")) is None
        engine.resume_execution(arn)
        assert engine.wait(arn, timeout=10).result == 3
        engine.delete(arn)
    finally:
        engine.close()
