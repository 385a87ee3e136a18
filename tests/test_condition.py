"""``ctx.wait_for_condition``: durable polling, on ``LocalEngine(db=":memory:", skip_time=True)``."""
from __future__ import annotations

import dataclasses

import pytest

import durable_sync as ds
from durable_sync.local import LocalEngine


def events(engine, arn, *types_):
    return [e for e in engine.history(arn) if not types_ or e["EventType"] in types_]


CHECKS: list = []


@dataclasses.dataclass(frozen=True)
class Job:
    job_id: str
    status: str
    polls: int


def poll_job(state: Job, check_ctx) -> Job:
    CHECKS.append((state, check_ctx.attempt))
    polls = state.polls + 1
    return Job(state.job_id, "DONE" if polls >= 3 else "RUNNING", polls)


@ds.durable_handler
def wait_for_job(event, ctx):
    strategy = ds.create_wait_strategy(lambda job: job.status != "DONE", initial_delay=10, max_delay=10,
                                       backoff_rate=1.0, jitter="none")
    config = ds.WaitForConditionConfig(wait_strategy=strategy, initial_state=Job("j-1", "SUBMITTED", 0))
    job = ctx.wait_for_condition(poll_job, config, name="job-done")
    return {"job": job.job_id, "status": job.status, "polls": job.polls, "class": type(job).__name__}


def test_polls_with_the_strategy_delay_and_threads_the_state(engine):
    CHECKS.clear()
    arn = engine.start(wait_for_job)
    assert len(CHECKS) == 1
    engine.advance(9)
    assert len(CHECKS) == 1  # not before the delay
    engine.advance(1)
    assert len(CHECKS) == 2
    result = engine.wait(arn)
    assert result.result == {"job": "j-1", "status": "DONE", "polls": 3, "class": "Job"}
    # the state the check received: initial, then what the previous poll returned (a Job again)
    assert CHECKS == [(Job("j-1", "SUBMITTED", 0), 1), (Job("j-1", "RUNNING", 1), 2), (Job("j-1", "RUNNING", 2), 3)]

    history = [(e["EventType"], e.get("SubType"), e.get("Name")) for e in engine.history(arn)]
    poll = [("StepStarted", "WaitForCondition", "job-done"), ("StepSucceeded", "WaitForCondition", "job-done")]
    assert history == ([("ExecutionStarted", None, None)] + poll + [("InvocationCompleted", None, None)]
                       + poll + [("InvocationCompleted", None, None)] + poll
                       + [("InvocationCompleted", None, None), ("ExecutionSucceeded", None, None)])
    succeeded = events(engine, arn, "StepSucceeded")
    assert [e["StepSucceededDetails"].get("RetryDetails", {}).get("NextAttemptDelaySeconds") for e in succeeded] \
        == [10, 10, None]
    # a RETRY carries the state as its payload
    assert '"polls":1' in succeeded[0]["StepSucceededDetails"]["Result"]["Payload"].replace(" ", "")


@ds.durable_handler
def never_done(event, ctx):
    strategy = ds.create_wait_strategy(lambda state: True, max_attempts=3, initial_delay=5, max_delay=5,
                                       backoff_rate=1.0, jitter="none")
    try:
        ctx.wait_for_condition(lambda state, c: CHECKS.append(state) or state + 1,
                               ds.WaitForConditionConfig(wait_strategy=strategy, initial_state=0))
    except ds.WaitForConditionError as exc:
        ctx.wait(1)  # replay the failed operation: it raises the same error again, without checking
        return {"type": exc.error_type, "message": exc.error_message}
    return "unreachable"


def test_exceeding_max_attempts_fails_with_wait_for_condition_error(engine):
    CHECKS.clear()
    result = engine.run(never_done)
    assert result.status == "SUCCEEDED"
    assert result.result["type"] == "WaitForConditionError"
    assert "max_attempts=3" in result.result["message"]
    assert CHECKS == [0, 1, 2]
    [failed] = events(engine, result.arn, "StepFailed")
    assert failed["SubType"] == "WaitForCondition"
    assert failed["StepFailedDetails"]["Error"]["Payload"]["ErrorType"] == "WaitForConditionError"


def test_uncaught_max_attempts_fails_the_execution(engine):
    @ds.durable_handler
    def handler(event, ctx):
        strategy = ds.create_wait_strategy(lambda s: True, max_attempts=2, initial_delay=1, jitter="none")
        return ctx.wait_for_condition(lambda s, c: s, ds.WaitForConditionConfig(strategy, initial_state="x"))

    result = engine.run(handler)
    assert result.status == "FAILED"
    assert result.error["ErrorType"] == "WaitForConditionError"


def test_a_check_error_fails_at_once_without_retry(engine):
    CHECKS.clear()

    def check(state, check_ctx):
        CHECKS.append(state)
        raise RuntimeError("status endpoint down")

    @ds.durable_handler
    def handler(event, ctx):
        strategy = ds.create_wait_strategy(lambda s: True, initial_delay=1)
        try:
            ctx.wait_for_condition(check, ds.WaitForConditionConfig(strategy, initial_state=0))
        except ds.WaitForConditionError as exc:
            return [type(exc).__name__, exc.error_type, exc.error_message]

    result = engine.run(handler)
    assert result.result == ["WaitForConditionError", "RuntimeError", "status endpoint down"]
    assert CHECKS == [0]
    assert [e["EventType"] for e in events(engine, result.arn, "StepStarted", "StepFailed")] == [
        "StepStarted", "StepFailed"]


def test_stop_on_the_first_check_completes_without_suspending(engine):
    @ds.durable_handler
    def handler(event, ctx):
        config = ds.WaitForConditionConfig(lambda s, a: ds.WaitForConditionDecision.stop_polling(), initial_state=5)
        return ctx.wait_for_condition(lambda s, c: s * 2, config)

    result = engine.run(handler)
    assert result.result == 10
    assert len(events(engine, result.arn, "InvocationCompleted")) == 1


def test_completed_condition_is_not_checked_again_on_replay(engine):
    CHECKS.clear()

    @ds.durable_handler
    def handler(event, ctx):
        def strategy(state, attempt):
            return ds.WaitForConditionDecision.continue_waiting(2) if state < 2 else \
                ds.WaitForConditionDecision.stop_polling()

        reached = ctx.wait_for_condition(lambda s, c: CHECKS.append(s) or s + 1,
                                         ds.WaitForConditionConfig(strategy, initial_state=0))
        ctx.wait(30)
        return reached

    result = engine.run(handler)
    assert result.result == 2
    assert CHECKS == [0, 1]
    assert len(events(engine, result.arn, "InvocationCompleted")) == 3


def test_durable_operations_inside_the_check_are_refused(engine):
    @ds.durable_handler
    def handler(event, ctx):
        config = ds.WaitForConditionConfig(lambda s, a: ds.WaitForConditionDecision.stop_polling())
        try:
            ctx.wait_for_condition(lambda s, c: ctx.step("inner", lambda x: 1), config)
        except ds.NestedOperationError as exc:  # a programming error: raised as itself, not wrapped
            return type(exc).__name__

    assert engine.run(handler).result == "NestedOperationError"


def test_bad_strategy_result_and_missing_config_are_errors(engine):
    @ds.durable_handler
    def bad_decision(event, ctx):
        ctx.wait_for_condition(lambda s, c: s, ds.WaitForConditionConfig(lambda s, a: True))

    result = engine.run(bad_decision)
    assert result.status == "FAILED"
    assert "WaitForConditionDecision" in result.error["ErrorMessage"]

    @ds.durable_handler
    def no_config(event, ctx):
        ctx.wait_for_condition(lambda s, c: s, None)

    result = engine.run(no_config)
    assert result.error["ErrorType"] == "ValidationError"
    assert not events(engine, result.arn, "StepStarted")
