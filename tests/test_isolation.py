"""LocalEngine(isolation="process"): every invocation in its own child process.

Handlers are module-level functions of this (importable) module: the child imports them.
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest

import durable_sync as ds
from durable_sync.local import LocalEngine
from durable_sync.local.engine import MAX_INVOCATION_ATTEMPTS

STATE = "DURABLE_ISOLATION_TEST_DIR"


def _state() -> Path:
    return Path(os.environ[STATE])


def _first_time(tag: str) -> bool:
    marker = _state() / tag
    if marker.exists():
        return False
    marker.write_text("x")
    return True


@ds.durable_handler
def pids(event, ctx):
    first = ctx.step("where", lambda s: os.getpid())
    ctx.wait(10, name="pause")
    second = ctx.step("again", lambda s: os.getpid())
    return {"first": first, "second": second}


@ds.durable_handler
def crashes_once(event, ctx):
    value = ctx.step("before", lambda s: "kept")
    if _first_time("crash"):
        os._exit(3)  # the Lambda runtime dies: not an exception, no output
    return {"value": value, "after": ctx.step("after", lambda s: "done")}


@ds.durable_handler
def always_crashes(event, ctx):
    os._exit(1)


@ds.durable_handler
def raises(event, ctx):
    ctx.step("ok", lambda s: 1)
    raise KeyError("missing thing")


def plain_raises(event, lambda_context):
    raise RuntimeError("not even durable")


@ds.durable_handler
def _waits_once(event, ctx):
    ctx.wait(10, name="pause")
    return "done"


def answers_its_request_id(event, lambda_context):
    """A Lambda handler around a durable one: its result is the request id its lambda context had."""
    output = _waits_once(event, lambda_context)
    if output.get("Status") == "SUCCEEDED":
        output["Result"] = json.dumps(lambda_context.aws_request_id)
    return output


@ds.durable_handler
def logs(event, ctx):
    def body(step):
        step.logger.info("inside the child: %s", event)
        return 1

    ctx.step("log", body)
    ctx.logger.warning("root context warning")
    return "logged"


@ds.durable_handler
def exits_cleanly_without_answer(event, ctx):
    raise SystemExit(0)


@pytest.fixture(autouse=True)
def _state_dir(tmp_path, monkeypatch):
    monkeypatch.setenv(STATE, str(tmp_path))


def _types(engine: LocalEngine, arn: str) -> list[str]:
    return [e["EventType"] for e in engine.history(arn)]


def test_handlers_run_in_a_child_process_and_checkpoint_through_the_parent():
    with LocalEngine(db=":memory:", skip_time=True, isolation="process") as engine:
        result = engine.run(pids, None)
        assert result.status == "SUCCEEDED"
        first, second = result.result["first"], result.result["second"]
        assert os.getpid() not in (first, second)
        assert first != second  # a new process per invocation
        assert _types(engine, result.arn).count("InvocationCompleted") == 2


def test_a_child_that_dies_is_an_exit_error_and_is_invoked_again():
    with LocalEngine(db=":memory:", skip_time=True, isolation="process") as engine:
        result = engine.run(crashes_once, None)
        assert (result.status, result.result) == ("SUCCEEDED", {"value": "kept", "after": "done"})
        history = engine.history(result.arn)
        completed = [e for e in history if e["EventType"] == "InvocationCompleted"]
        assert len(completed) == 2
        error = completed[0]["InvocationCompletedDetails"]["Error"]["Payload"]
        assert error["ErrorType"] == "Runtime.ExitError" and "status 3" in error["ErrorMessage"]
        assert "Error" not in completed[1]["InvocationCompletedDetails"]
        assert [e["Name"] for e in history if e["EventType"] == "StepSucceeded"] == ["before", "after"]


def test_a_child_that_always_dies_fails_the_execution_after_bounded_attempts():
    with LocalEngine(db=":memory:", skip_time=True, isolation="process") as engine:
        result = engine.run(always_crashes, None)
        assert result.status == "FAILED"
        assert result.error["ErrorType"] == "Runtime.ExitError"
        assert f"failed {MAX_INVOCATION_ATTEMPTS} times" in result.error["ErrorMessage"]
        assert _types(engine, result.arn).count("InvocationCompleted") == MAX_INVOCATION_ATTEMPTS


def test_a_clean_exit_without_an_answer_is_an_exit_error_too():
    with LocalEngine(db=":memory:", skip_time=True, isolation="process") as engine:
        result = engine.run(exits_cleanly_without_answer, None)
        assert result.status == "FAILED" and result.error["ErrorType"] == "Runtime.ExitError"


def test_errors_raised_in_the_child_are_reported_as_in_process():
    with LocalEngine(db=":memory:", skip_time=True, isolation="process") as engine:
        durable = engine.run(raises, None)
        assert durable.status == "FAILED" and durable.error["ErrorType"] == "KeyError"
        plain = engine.run(plain_raises, None)
        assert plain.status == "FAILED" and plain.error["ErrorType"] == "RuntimeError"
        assert "not even durable" in plain.error["ErrorMessage"]


def test_log_records_of_the_child_reach_the_parents_handlers(caplog):
    caplog.set_level(logging.INFO)
    with LocalEngine(db=":memory:", skip_time=True, isolation="process") as engine:
        result = engine.run(logs, "hello")
        assert result.result == "logged"
    records = [r for r in caplog.records if r.name == "durable_sync.user"]
    assert [r.getMessage() for r in records] == ["inside the child: hello", "root context warning"]
    assert records[0].execution_arn == result.arn and records[0].operation_name == "log"
    assert records[0].process != os.getpid()


def test_a_handler_the_child_cannot_import_is_a_clear_error():
    @ds.durable_handler
    def local_closure(event, ctx):
        return 1

    with LocalEngine(db=":memory:", skip_time=True, isolation="process") as engine:
        result = engine.run(local_closure, None)
        assert result.status == "FAILED" and result.error["ErrorType"] == "Runtime.IsolationError"
        assert "not importable" in result.error["ErrorMessage"]


def test_isolation_works_with_the_sqlite_store(tmp_path):
    with LocalEngine(db=str(tmp_path / "d.db"), skip_time=True, isolation="process") as engine:
        arn = engine.start(crashes_once, None)
        assert engine.wait(arn).status == "SUCCEEDED"
    with LocalEngine(db=str(tmp_path / "d.db"), skip_time=True) as engine:
        assert engine.get_execution(arn).result == {"value": "kept", "after": "done"}


def test_isolation_in_real_time():
    with LocalEngine(db=":memory:", isolation="process") as engine:
        arn = engine.start(crashes_once, None)
        result = engine.wait(arn, timeout=60)
        assert result.status == "SUCCEEDED"


def test_bad_isolation_value():
    with pytest.raises(ValueError, match="isolation"):
        LocalEngine(db=":memory:", isolation="thread")


@pytest.mark.parametrize("status, message, retryable", [
    (500, "the engine could not persist the checkpoint", True),
    (400, "Invalid checkpoint token: it is stale", True),
    (400, "operation x: invalid state transition", False),
])
def test_an_isolated_handler_classifies_service_errors_like_the_boto3_client(status, message, retryable):
    from durable_sync.local.isolation import PipeClient
    from durable_sync.local.service import ServiceError

    class Channel:
        def call(self, method, *args):
            raise ServiceError("SomeException", message, status)

    with pytest.raises(ds.CheckpointError) as info:
        PipeClient(Channel()).checkpoint("arn", "tok", [], "ct")
    assert info.value.retryable is retryable


@pytest.mark.parametrize("isolation", [None, "process"])
def test_invocation_completed_carries_the_request_id_of_the_invocation(isolation):
    with LocalEngine(db=":memory:", skip_time=True, isolation=isolation) as engine:
        result = engine.run(answers_its_request_id, None)
        assert result.status == "SUCCEEDED", result.error
        ids = [e["InvocationCompletedDetails"]["RequestId"] for e in engine.history(result.arn)
               if e["EventType"] == "InvocationCompleted"]
        assert len(ids) == 2 and len(set(ids)) == 2  # one per invocation
        assert ids[-1] == result.result  # the one its lambda context had
