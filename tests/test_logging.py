"""ctx.logger / step_ctx.logger: structured fields, silence during replay, with_replay, JSON lines."""
from __future__ import annotations

import io
import json
import logging

import durable_sync as ds
from durable_sync import wire
from durable_sync.logs import USER_LOGGER, JsonFormatter, configure_json_logging


def test_step_logger_records_carry_execution_operation_and_attempt(engine, captured):
    seen = {}

    @ds.durable_handler
    def handler(event, ctx):
        def charge(step):
            seen["id"] = step.operation_id
            step.logger.info("charging attempt %d", step.attempt)
            if step.attempt == 1:
                raise ConnectionError("flaky")
            return "ok"
        return ctx.step("charge", charge, config=ds.StepConfig(
            retry_strategy=ds.RetryPolicy(max_attempts=3, initial_delay=1, jitter="none")))

    result = engine.run(handler)
    assert result.status == "SUCCEEDED"
    assert captured.messages() == ["charging attempt 1", "charging attempt 2"]
    for record, attempt in zip(captured.records, (1, 2)):
        assert record.execution_arn == result.arn
        assert record.operation_id == seen["id"] == wire.operation_id(None, 1)
        assert record.operation_name == "charge"
        assert record.attempt == attempt
        assert record.name == "durable_sync.user"


def test_context_logger_names_its_context(engine, captured):
    @ds.durable_handler
    def handler(event, ctx):
        ctx.logger.info("at the root")
        with ctx.child("billing") as billing:
            billing.logger.warning("in billing")
        return None

    arn = engine.run(handler).arn
    root, child = captured.records
    assert root.execution_arn == arn and root.operation_id is None and root.operation_name is None
    assert child.execution_arn == arn
    assert child.operation_name == "billing"
    assert child.operation_id == wire.operation_id(None, 1)
    assert child.levelname == "WARNING"


def test_extra_fields_of_a_call_are_kept_next_to_the_durable_ones(engine, captured):
    @ds.durable_handler
    def handler(event, ctx):
        ctx.step("s", lambda step: step.logger.info("with extra", extra={"order_id": "o-1"}))

    arn = engine.run(handler).arn
    [record] = captured.records
    assert record.order_id == "o-1" and record.execution_arn == arn and record.operation_name == "s"


def test_context_logger_is_silent_while_replaying(engine, captured):
    @ds.durable_handler
    def handler(event, ctx):
        ctx.logger.info("before the wait")
        ctx.step("one", lambda s: 1)
        ctx.wait(10, name="pause")
        ctx.logger.info("after the wait")
        return "done"

    result = engine.run(handler)
    assert result.status == "SUCCEEDED"
    invocations = [e for e in engine.history(result.arn) if e["EventType"] == "InvocationCompleted"]
    assert len(invocations) == 2  # the handler ran twice: "before the wait" was replayed once
    assert captured.messages() == ["before the wait", "after the wait"]


def test_with_replay_logs_during_replay_too(engine, captured):
    replaying = []

    @ds.durable_handler
    def handler(event, ctx):
        log = ctx.logger.with_replay()
        replaying.append(ctx.is_replaying())
        log.info("before the wait")
        ctx.wait(10, name="pause")
        log.info("after the wait")
        return "done"

    assert engine.run(handler).status == "SUCCEEDED"
    assert replaying == [False, True]
    assert captured.messages() == ["before the wait", "before the wait", "after the wait"]
    assert all(r.execution_arn for r in captured.records)


def test_step_bodies_do_not_run_on_replay_so_their_logs_are_not_repeated(engine, captured):
    @ds.durable_handler
    def handler(event, ctx):
        ctx.step("first", lambda s: s.logger.info("first ran"))
        ctx.wait(5)
        ctx.step("second", lambda s: s.logger.info("second ran"))

    engine.run(handler)
    assert captured.messages() == ["first ran", "second ran"]


def test_json_formatter_writes_one_object_per_line_with_the_lambda_fields(engine):
    stream = io.StringIO()
    handler_obj = logging.StreamHandler(stream)
    handler_obj.setFormatter(JsonFormatter())
    old_level = USER_LOGGER.level
    USER_LOGGER.addHandler(handler_obj)
    USER_LOGGER.setLevel(logging.INFO)
    try:
        @ds.durable_handler
        def handler(event, ctx):
            ctx.step("greet", lambda s: s.logger.info("hello %s", "world\nline two"))
            ctx.logger.error("done")

        arn = engine.run(handler).arn
    finally:
        USER_LOGGER.removeHandler(handler_obj)
        USER_LOGGER.setLevel(old_level)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2  # a newline in a message stays inside its JSON line
    step_line, ctx_line = (json.loads(line) for line in lines)
    assert step_line["level"] == "INFO"
    assert step_line["message"] == "hello world\nline two"
    assert step_line["executionArn"] == arn
    assert step_line["operationId"] == wire.operation_id(None, 1)
    assert step_line["operationName"] == "greet"
    assert step_line["attempt"] == 1
    assert {"level", "message", "executionArn", "operationId", "operationName", "attempt"} <= set(step_line)
    assert step_line["timestamp"].endswith("Z")
    assert ctx_line["level"] == "ERROR" and ctx_line["executionArn"] == arn
    assert "operationId" not in ctx_line  # the root context is no operation: absent, not null


def test_json_formatter_adds_the_error_of_logger_exception():
    record_stream = io.StringIO()
    logger = logging.getLogger("durable_sync.test.exc")
    handler = logging.StreamHandler(record_stream)
    handler.setFormatter(JsonFormatter())
    logger.addHandler(handler)
    logger.propagate = False
    try:
        try:
            raise KeyError("sku")
        except KeyError:
            logger.exception("lookup failed", extra={"execution_arn": "arn:x", "attempt": 3})
    finally:
        logger.removeHandler(handler)
    line = json.loads(record_stream.getvalue())
    assert line["message"] == "lookup failed" and line["level"] == "ERROR"
    assert line["executionArn"] == "arn:x" and line["attempt"] == 3
    assert line["errorType"] == "KeyError"
    assert any("KeyError" in part for part in line["stackTrace"])


def test_configure_json_logging_is_one_call_and_idempotent(engine):
    stream = io.StringIO()
    name = "durable_sync.user"
    saved = list(USER_LOGGER.handlers), USER_LOGGER.level
    try:
        configure_json_logging(stream=stream, logger=name)
        added = configure_json_logging(stream=stream, logger=name)  # again: still one handler
        assert [h for h in USER_LOGGER.handlers if getattr(h, "_durable_sync_json", False)] == [added]
        assert USER_LOGGER.level == logging.INFO

        @ds.durable_handler
        def handler(event, ctx):
            ctx.logger.debug("not shown at INFO")
            ctx.step("work", lambda s: s.logger.info("working"))

        arn = engine.run(handler).arn
    finally:
        USER_LOGGER.handlers[:] = saved[0]
        USER_LOGGER.setLevel(saved[1])
    [line] = [json.loads(text) for text in stream.getvalue().splitlines()]
    assert line == {**line, "level": "INFO", "message": "working", "executionArn": arn, "operationName": "work",
                    "attempt": 1, "logger": name}


def test_configure_json_logging_keeps_other_handlers_when_asked():
    logger = logging.getLogger("durable_sync.test.keep")
    other = logging.NullHandler()
    logger.addHandler(other)
    try:
        configure_json_logging(stream=io.StringIO(), logger=logger.name, replace=False)
        assert other in logger.handlers and len(logger.handlers) == 2
        configure_json_logging(stream=io.StringIO(), logger=logger.name)
        assert other not in logger.handlers and len(logger.handlers) == 1
    finally:
        logger.handlers.clear()


def test_json_timestamps_are_utc_whatever_the_local_zone(monkeypatch):
    import datetime as _dt
    import time as _time

    monkeypatch.setenv("TZ", "America/Los_Angeles")
    _time.tzset()
    try:
        record = logging.LogRecord("x", logging.INFO, __file__, 1, "hi", None, None)
        record.created, record.msecs = 1767323045.25, 250.0  # 2026-01-02T03:04:05.250Z
        line = json.loads(JsonFormatter().format(record))
    finally:
        monkeypatch.delenv("TZ")
        _time.tzset()
    assert line["timestamp"] == "2026-01-02T03:04:05.250Z"
    parsed = _dt.datetime.fromisoformat(line["timestamp"].replace("Z", "+00:00"))
    assert parsed.timestamp() == 1767323045.25
