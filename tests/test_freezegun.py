"""Time-frozen tests: the engine's virtual clock drives freezegun's frozen clock.

Under ``freeze_time`` a DurableTestRunner never waits on real time: waits, retry
back-offs, callback timeouts and condition polls jump the virtual clock, and every
jump moves the frozen clock by the same amount, so a step body reading
``time.time()`` / ``datetime.now()`` sees exactly the configured delays.
"""
from __future__ import annotations

import datetime as dt
import random
import threading
import time

import pytest
import tenacity
from freezegun import freeze_time

import durable_sync as ds
from durable_sync.retry import seed_jitter
from durable_sync.testing import DurableTestRunner

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
T0_EPOCH = T0.timestamp()


@pytest.fixture(autouse=True)
def _no_real_waiting(monkeypatch):
    """Nothing may sleep or wait on real time for a durable delay."""
    def no_sleep(seconds):
        raise AssertionError(f"slept {seconds}s in-process")

    monkeypatch.setattr(time, "sleep", no_sleep)
    monkeypatch.setattr(tenacity.nap, "sleep", no_sleep)
    real_wait = threading.Event.wait

    def short_wait(self, timeout=None):
        assert timeout is None or timeout < 1, f"Event.wait({timeout}) would block on real time"
        return real_wait(self, timeout)

    monkeypatch.setattr(threading.Event, "wait", short_wait)


def _real_seconds(fn):
    """Run ``fn`` and return (its value, real seconds taken), measured outside freezegun."""
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start


# --------------------------------------------------------------------------- retry back-off


def _flaky_handler(seen):
    policy = ds.RetryPolicy(max_attempts=5, initial_delay=2, backoff_rate=2, jitter="none")

    @ds.durable_handler
    def handler(event, ctx):
        def call_api(step_ctx):
            seen.append((step_ctx.attempt, time.time(), dt.datetime.now(), dt.datetime.now(dt.timezone.utc)))
            if step_ctx.attempt < 3:
                raise ConnectionError(f"attempt {step_ctx.attempt} failed")
            return "ok"

        return ctx.step("call-api", call_api, config=ds.StepConfig(retry_strategy=policy))

    return handler


def test_retry_back_off_seen_by_the_step_body_is_exact():
    seen = []

    def scenario():
        with freeze_time("2026-01-01"):
            with DurableTestRunner(_flaky_handler(seen)) as runner:
                result = runner.run()
                return result, time.time()

    (result, now_after), took = _real_seconds(scenario)
    result.assert_succeeded()
    assert result.result == "ok"
    # attempts 1, 2, 3 at t0, t0 + 2 s, t0 + 2 s + 4 s -- read with time.time() and datetime.now()
    assert [(attempt, ts - T0_EPOCH) for attempt, ts, _, _ in seen] == [(1, 0.0), (2, 2.0), (3, 6.0)]
    assert [naive for _, _, naive, _ in seen] == [dt.datetime(2026, 1, 1, 0, 0, s) for s in (0, 2, 6)]
    assert [aware for _, _, _, aware in seen] == [T0 + dt.timedelta(seconds=s) for s in (0, 2, 6)]
    assert now_after - T0_EPOCH == 6.0  # the frozen clock stands where the engine left it
    # the same back-off, as the toolkit reports it from the history
    step = result.get_step("call-api")
    assert step.attempt == 3
    assert step.retry_delays == [2, 4]
    assert [a.started_at for a in step.attempts] == [T0 + dt.timedelta(seconds=s) for s in (0, 2, 6)]
    assert [a.outcome for a in step.attempts] == ["FAILED", "FAILED", "SUCCEEDED"]
    assert step.attempts[0].error["ErrorType"] == "ConnectionError"
    assert took < 1.0, f"a time-frozen retry test took {took:.2f}s of real time"


@freeze_time("2026-01-01")
def test_decorated_test_and_the_durable_runner_fixture(durable_runner):
    seen = []
    result = durable_runner(_flaky_handler(seen)).run()
    assert result.status == "SUCCEEDED"
    assert [ts - T0_EPOCH for _, ts, _, _ in seen] == [0.0, 2.0, 6.0]


def test_engine_clock_follows_freezegun():
    with freeze_time("2026-01-01"):
        runner = DurableTestRunner(_flaky_handler([]))
        # LocalEngine's VirtualClock reads time.time() when it is created: the frozen time
        assert runner.now() == T0
        runner.run()
        assert runner.now() == T0 + dt.timedelta(seconds=6)
        assert dt.datetime.now(dt.timezone.utc) == runner.now()
        events = runner.result().history
        assert events[0]["EventTimestamp"] == T0
        assert events[-1]["EventTimestamp"] == T0 + dt.timedelta(seconds=6)
        runner.close()


def test_runner_created_before_freeze_time_still_follows_it():
    """The runner builds its engine on first use, so creating it outside freeze_time is fine."""
    seen = []
    runner = DurableTestRunner(_flaky_handler(seen))
    with freeze_time("2026-01-01"):
        runner.run()
        assert runner.now() == T0 + dt.timedelta(seconds=6)
    runner.close()
    assert [ts - T0_EPOCH for _, ts, _, _ in seen] == [0.0, 2.0, 6.0]


def test_manual_time_control_with_advance():
    seen = []
    with freeze_time("2026-01-01"):
        with DurableTestRunner(_flaky_handler(seen)) as runner:
            runner.start()
            assert runner.result().status == "RUNNING"
            assert len(seen) == 1
            runner.advance(1)  # not yet due
            assert len(seen) == 1 and time.time() - T0_EPOCH == 1.0
            runner.advance(dt.timedelta(seconds=1))  # t0 + 2 s: attempt 2
            assert len(seen) == 2
            runner.advance(ds.Duration.from_seconds(4))  # t0 + 6 s: attempt 3
            assert runner.result().status == "SUCCEEDED"
    assert [ts - T0_EPOCH for _, ts, _, _ in seen] == [0.0, 2.0, 6.0]


# --------------------------------------------------------------------------- long waits


@ds.durable_handler
def _weekly_report(event, ctx):
    started = ctx.step("started", lambda s: dt.datetime.now(dt.timezone.utc).isoformat())
    ctx.wait(ds.Duration.from_days(7), name="a-week")
    finished = ctx.step("finished", lambda s: dt.datetime.now(dt.timezone.utc).isoformat())
    return {"started": started, "finished": finished}


def test_seven_day_wait_takes_no_real_time():
    result, took = _real_seconds(lambda: DurableTestRunner(_weekly_report).run())
    assert result.status == "SUCCEEDED"
    wait = result.get_wait("a-week")
    assert wait.wait_seconds == 7 * 24 * 3600
    assert wait.elapsed == dt.timedelta(days=7)
    assert took < 1.0, f"a 7-day wait took {took:.2f}s of real time"


def test_seven_day_wait_under_freeze_time():
    def scenario():
        with freeze_time("2026-01-01"):
            result = DurableTestRunner(_weekly_report).run()
            return result, dt.datetime.now(dt.timezone.utc)

    (result, now_after), took = _real_seconds(scenario)
    assert result.result == {"started": "2026-01-01T00:00:00+00:00", "finished": "2026-01-08T00:00:00+00:00"}
    assert now_after == T0 + dt.timedelta(days=7)
    assert took < 1.0


# --------------------------------------------------------------------------- callbacks and polling

needs_callbacks = pytest.mark.skipif(not hasattr(ds.DurableContext, "create_callback"),
                                     reason="ctx.create_callback is not implemented yet")
needs_conditions = pytest.mark.skipif(not hasattr(ds.DurableContext, "wait_for_condition"),
                                      reason="ctx.wait_for_condition is not implemented yet")


@needs_callbacks
def test_callback_timeout_fires_in_virtual_time():
    @ds.durable_handler
    def handler(event, ctx):
        callback = ctx.create_callback("approval", ds.CallbackConfig(timeout=ds.Duration.from_hours(1)))
        try:
            return callback.result()
        except ds.CallbackTimeoutError:
            return {"timed_out_at": dt.datetime.now(dt.timezone.utc).isoformat()}

    def scenario():
        with freeze_time("2026-01-01"):
            return DurableTestRunner(handler).run()

    result, took = _real_seconds(scenario)
    assert result.result == {"timed_out_at": "2026-01-01T01:00:00+00:00"}
    assert result.get_callback("approval").status == "TIMED_OUT"
    assert took < 1.0


@needs_conditions
def test_condition_polls_see_the_exact_poll_delays():
    polls = []

    def check(state, check_ctx):
        polls.append(time.time() - T0_EPOCH)
        return state + 1

    def strategy(state, attempt):
        if state >= 4:
            return ds.WaitForConditionDecision.stop_polling()
        return ds.WaitForConditionDecision.continue_waiting(ds.Duration.from_minutes(attempt))

    @ds.durable_handler
    def handler(event, ctx):
        return ctx.wait_for_condition(check, ds.WaitForConditionConfig(wait_strategy=strategy, initial_state=0),
                                      name="until-four")

    with freeze_time("2026-01-01"):
        result = DurableTestRunner(handler).run()
    assert result.result == 4
    assert polls == [0.0, 60.0, 180.0, 360.0]  # delays of 1, 2, 3 minutes


# --------------------------------------------------------------------------- jitter


def _jittered_delays(policy):
    @ds.durable_handler
    def handler(event, ctx):
        def always_fails(step_ctx):
            raise RuntimeError("down")
        try:
            ctx.step("flaky", always_fails, config=ds.StepConfig(retry_strategy=policy))
        except ds.StepError:
            return "gave up"

    with freeze_time("2026-01-01"):
        result = DurableTestRunner(handler).run()
    assert result.result == "gave up"
    return result.get_step("flaky").retry_delays


def test_jitter_is_reproducible_with_a_seeded_rng():
    def policy():
        return ds.RetryPolicy(max_attempts=5, initial_delay=10, backoff_rate=2, max_delay=300, jitter="full",
                              rng=random.Random(7))

    first, second = _jittered_delays(policy()), _jittered_delays(policy())
    assert first == second
    reference = policy()
    assert first == [reference.delay_for(n) for n in (1, 2, 3, 4)]
    assert len(first) == 4 and all(1 <= d <= 10 * 2 ** i for i, d in enumerate(first))


def test_jitter_of_policies_without_rng_follows_seed_jitter():
    def policy():
        return ds.RetryPolicy(max_attempts=4, initial_delay=30, jitter="half")

    seed_jitter(7)
    first = _jittered_delays(policy())
    seed_jitter(7)
    second = _jittered_delays(policy())
    assert first == second
    assert all(15 <= d <= 60 for d in first)
