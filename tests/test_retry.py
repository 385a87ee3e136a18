"""Tests of durable_sync.retry: policies, tenacity mapping, wait strategies. Nothing sleeps."""
from __future__ import annotations

import datetime as dt
import random
import re
import time

import pytest
import tenacity

from durable_sync import retry as retry_mod
from durable_sync.config import Duration, WaitForConditionDecision
from durable_sync.errors import ValidationError, WaitForConditionError
from durable_sync.retry import (
    RetryDecision,
    RetryPolicy,
    RetryPresets,
    create_wait_strategy,
    resolve_retry_strategy,
    seed_jitter,
)

DAY = 86400
ERR = ValueError("boom")


@pytest.fixture(autouse=True)
def _never_sleep(monkeypatch):
    def no_sleep(seconds):
        raise AssertionError(f"slept {seconds}s: strategies must be evaluated durably")

    monkeypatch.setattr(time, "sleep", no_sleep)
    monkeypatch.setattr(tenacity.nap, "sleep", no_sleep)


def delays(strategy, attempts, error=ERR):
    """The delay after each failed attempt, or None where it gives up."""
    out = []
    for attempt in range(1, attempts + 1):
        decision = strategy(error, attempt)
        assert isinstance(decision, RetryDecision)
        out.append(decision.delay_seconds if decision.should_retry else None)
    return out


# ----------------------------------------------------------------------------- RetryDecision


@pytest.mark.parametrize(
    "delay, seconds",
    [
        (5, 5),
        (1.2, 2),
        (0.01, 1),
        (0, 1),
        (-3, 1),
        (dt.timedelta(seconds=2.5), 3),
        (dt.timedelta(minutes=1), 60),
        (Duration.from_minutes(2), 120),
        (400 * DAY, 366 * DAY),
    ],
)
def test_retry_decision_rounds_up_and_clamps(delay, seconds):
    assert RetryDecision.retry(delay) == RetryDecision(True, seconds)


def test_no_retry_and_bad_delays():
    assert RetryDecision.no_retry() == RetryDecision(False, 0)
    for bad in [float("nan"), float("inf"), "5", None, True]:
        with pytest.raises(ValidationError):
            RetryDecision.retry(bad)


# ----------------------------------------------------------------------------- RetryPolicy


def test_policy_exact_delays_without_jitter():
    policy = RetryPolicy(jitter="none")
    assert delays(policy, 7) == [5, 10, 20, 40, 60, None, None]


def test_policy_rounds_each_delay_up():
    policy = RetryPolicy(max_attempts=5, initial_delay=5, backoff_rate=1.5, max_delay=1000, jitter="none")
    assert delays(policy, 5) == [5, 8, 12, 17, None]  # 5, 7.5, 11.25, 16.875


def test_policy_accepts_timedelta_and_duration_delays():
    policy = RetryPolicy(initial_delay=dt.timedelta(seconds=3), max_delay=Duration.from_seconds(7), jitter="none")
    assert delays(policy, 4) == [3, 6, 7, 7]


def test_policy_zero_delay_is_at_least_one_second_and_huge_attempts_do_not_overflow():
    assert delays(RetryPolicy(initial_delay=0, jitter="none"), 2) == [1, 1]
    policy = RetryPolicy(max_attempts=10**6, jitter="none")
    assert policy(ERR, 50_000) == RetryDecision.retry(60)


def test_single_attempt_never_retries():
    assert delays(RetryPolicy(max_attempts=1), 2) == [None, None]
    assert delays(RetryPresets.none(), 1) == [None]


def test_full_jitter_bounds():
    policy = RetryPolicy(max_attempts=100, jitter="full", rng=random.Random(3))
    for attempt in range(1, 8):
        cap = min(5 * 2 ** (attempt - 1), 60)
        samples = [policy(ERR, attempt).delay_seconds for _ in range(200)]
        assert all(1 <= d <= cap for d in samples)
        assert len(set(samples)) > 1


def test_half_jitter_bounds():
    policy = RetryPolicy(max_attempts=100, initial_delay=10, max_delay=60, jitter="half", rng=random.Random(4))
    for attempt in range(1, 6):
        cap = min(10 * 2 ** (attempt - 1), 60)
        samples = [policy(ERR, attempt).delay_seconds for _ in range(200)]
        assert all(cap // 2 <= d <= cap for d in samples)
        assert len(set(samples)) > 1


def test_seeded_rng_is_reproducible():
    def run(seed):
        return delays(RetryPolicy(max_attempts=10, jitter="full", rng=random.Random(seed)), 9)

    assert run(42) == run(42)
    assert run(42) != run(43)


def test_seed_jitter_seeds_the_default_rng():
    policy = RetryPolicy(max_attempts=10, jitter="half")
    seed_jitter(7)
    first = delays(policy, 9)
    seed_jitter(7)
    assert delays(policy, 9) == first
    seed_jitter(8)
    assert delays(policy, 9) != first


def test_retryable_errors_match_substrings_and_regexes():
    policy = RetryPolicy(jitter="none", retryable_errors=["timeout", re.compile(r"^HTTP 5\d\d")])
    assert policy(RuntimeError("read timeout"), 1).should_retry
    assert policy(RuntimeError("HTTP 503 busy"), 1).should_retry
    assert not policy(RuntimeError("got HTTP 503"), 1).should_retry
    assert not policy(RuntimeError("bad input"), 1).should_retry


def test_retryable_error_types_and_either_matching():
    by_type = RetryPolicy(retryable_error_types=[ConnectionError])
    assert by_type(ConnectionResetError("x"), 1).should_retry
    assert not by_type(ValueError("x"), 1).should_retry
    both = RetryPolicy(retryable_errors=["later"], retryable_error_types=(KeyError,))
    assert both(KeyError("k"), 1).should_retry
    assert both(ValueError("try later"), 1).should_retry
    assert not both(ValueError("no"), 1).should_retry
    assert RetryPolicy()(ValueError("anything"), 1).should_retry


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_attempts": 0},
        {"max_attempts": 1.5},
        {"initial_delay": -1},
        {"max_delay": -0.5},
        {"initial_delay": "5"},
        {"backoff_rate": 0.5},
        {"backoff_rate": float("nan")},
        {"jitter": "random"},
        {"retryable_errors": [1]},
        {"retryable_error_types": [str]},
    ],
)
def test_policy_validates_arguments(kwargs):
    with pytest.raises(ValidationError):
        RetryPolicy(**kwargs)


def test_presets():
    default = RetryPresets.default()
    assert default == RetryPolicy(max_attempts=6, initial_delay=5, max_delay=60, backoff_rate=2.0, jitter="full")
    assert RetryPresets.none().max_attempts == 1
    got = delays(RetryPolicy(jitter="full", rng=random.Random(1)), 6)
    assert got[-1] is None and all(1 <= d <= min(5 * 2**i, 60) for i, d in enumerate(got[:-1]))


# ----------------------------------------------------------------------------- resolve_retry_strategy


def test_resolve_none_and_policy():
    assert resolve_retry_strategy(None) == RetryPresets.default()
    policy = RetryPolicy(jitter="none")
    assert resolve_retry_strategy(policy) is policy


def test_resolve_retrying_object():
    strategy = resolve_retry_strategy(
        tenacity.Retrying(stop=tenacity.stop_after_attempt(4), wait=tenacity.wait_exponential(multiplier=2, max=10))
    )
    assert delays(strategy, 5) == [2, 4, 8, None, None]


def test_resolve_retrying_retry_predicate():
    strategy = resolve_retry_strategy(
        tenacity.Retrying(
            stop=tenacity.stop_after_attempt(3),
            wait=tenacity.wait_fixed(2),
            retry=tenacity.retry_if_exception_type(ConnectionError) | tenacity.retry_if_exception_message(match="try again"),
        )
    )
    assert strategy(ConnectionError(), 1) == RetryDecision.retry(2)
    assert strategy(ValueError("try again later"), 1) == RetryDecision.retry(2)
    assert strategy(ValueError("fatal"), 1) == RetryDecision.no_retry()


def test_tenacity_defaults_never_stop_and_retry_exceptions_only():
    strategy = resolve_retry_strategy(tenacity.Retrying())
    assert strategy(ERR, 1) == RetryDecision.retry(1)  # wait_none -> at least 1 s
    assert strategy(ERR, 10_000) == RetryDecision.retry(1)
    assert strategy(KeyboardInterrupt(), 1) == RetryDecision.no_retry()


def test_tenacity_try_again_and_disabled():
    strategy = resolve_retry_strategy(
        tenacity.Retrying(retry=tenacity.retry_never, stop=tenacity.stop_after_attempt(3), wait=tenacity.wait_fixed(1))
    )
    assert strategy(tenacity.TryAgain(), 1).should_retry
    assert not strategy(ERR, 1).should_retry
    disabled = resolve_retry_strategy(tenacity.Retrying(enabled=False))
    assert disabled(ERR, 1) == RetryDecision.no_retry()


def test_stop_after_delay_uses_the_sum_of_earlier_delays():
    strategy = resolve_retry_strategy(tenacity.Retrying(stop=tenacity.stop_after_delay(20), wait=tenacity.wait_fixed(7)))
    # elapsed before deciding: 0, 7, 14, 21 -> stop once 21 >= 20
    assert delays(strategy, 5) == [7, 7, 7, None, None]


def test_stop_before_delay_counts_the_upcoming_wait():
    strategy = resolve_retry_strategy(tenacity.Retrying(stop=tenacity.stop_before_delay(20), wait=tenacity.wait_fixed(7)))
    # elapsed + upcoming: 7, 14, 21 -> stop at the third
    assert delays(strategy, 4) == [7, 7, None, None]


def test_elapsed_time_counts_whole_second_delays():
    strategy = resolve_retry_strategy(
        tenacity.Retrying(stop=tenacity.stop_after_delay(3), wait=tenacity.wait_fixed(0.2))
    )
    assert delays(strategy, 5) == [1, 1, 1, None, None]  # each 0.2 s wait is checkpointed as 1 s


def test_combined_tenacity_strategies():
    strategy = resolve_retry_strategy(
        tenacity.Retrying(
            stop=tenacity.stop_after_attempt(10) | tenacity.stop_after_delay(12),
            wait=tenacity.wait_chain(tenacity.wait_fixed(1), tenacity.wait_fixed(5)) + tenacity.wait_fixed(1),
        )
    )
    assert delays(strategy, 6) == [2, 6, 6, None, None, None]  # elapsed 0, 2, 8, 14


def test_bare_stop_uses_default_preset_waits():
    seed_jitter(11)
    strategy = resolve_retry_strategy(tenacity.stop_after_attempt(4))
    got = delays(strategy, 5)
    assert got[3:] == [None, None]
    assert all(1 <= d <= 5 * 2**i for i, d in enumerate(got[:3]))
    seed_jitter(11)
    assert delays(resolve_retry_strategy(tenacity.stop_after_attempt(4)), 5) == got


def test_bare_wait_retries_six_attempts():
    strategy = resolve_retry_strategy(tenacity.wait_fixed(3))
    assert delays(strategy, 7) == [3, 3, 3, 3, 3, None, None]
    assert strategy(KeyboardInterrupt(), 1) == RetryDecision.no_retry()


def test_bare_retry_predicate_uses_default_stop_and_wait():
    strategy = resolve_retry_strategy(tenacity.retry_if_exception_type(KeyError))
    assert strategy(ERR, 1) == RetryDecision.no_retry()
    got = delays(strategy, 7, error=KeyError("k"))
    assert got[5:] == [None, None] and all(1 <= d <= 60 for d in got[:5])


def test_plain_callable_strategy():
    def strategy(error, attempt):
        return RetryDecision.retry(attempt * 1.5) if attempt < 3 else RetryDecision.no_retry()

    resolved = resolve_retry_strategy(strategy)
    assert delays(resolved, 3) == [2, 3, None]


def test_callable_must_return_a_retry_decision():
    resolved = resolve_retry_strategy(lambda error, attempt: True)
    with pytest.raises(ValidationError, match="RetryDecision"):
        resolved(ERR, 1)


@pytest.mark.parametrize("bad", [42, "fast", [1, 2], RetryDecision.no_retry()])
def test_unsupported_strategy_forms(bad):
    with pytest.raises(ValidationError) as info:
        resolve_retry_strategy(bad)
    assert type(bad).__name__ in str(info.value) and "tenacity" in str(info.value)


# ----------------------------------------------------------------------------- create_wait_strategy


def test_wait_strategy_stops_when_condition_met():
    wait = create_wait_strategy(lambda state: state["status"] != "done", jitter="none")
    assert wait({"status": "done"}, 1) == WaitForConditionDecision.stop_polling()
    assert wait({"status": "done"}, 500) == WaitForConditionDecision.stop_polling()


def test_wait_strategy_exact_backoff():
    wait = create_wait_strategy(lambda s: True, max_attempts=8, jitter="none")
    got = [wait(None, n).delay_seconds for n in range(1, 8)]
    assert got == [5, 8, 12, 17, 26, 38, 57]  # 5 * 1.5**(n-1), rounded up
    capped = create_wait_strategy(lambda s: True, max_attempts=100, initial_delay=100, max_delay=300, jitter="none")
    assert capped(None, 10) == WaitForConditionDecision.continue_waiting(300)


def test_wait_strategy_seeded_jitter_is_reproducible():
    def run(seed):
        wait = create_wait_strategy(lambda s: True, jitter="full", rng=random.Random(seed))
        return [wait(None, n).delay_seconds for n in range(1, 20)]

    assert run(5) == run(5)
    assert all(1 <= d <= 300 for d in run(5))


def test_wait_strategy_runs_out_of_attempts():
    wait = create_wait_strategy(lambda s: True, max_attempts=3, jitter="none")
    assert wait(None, 2).should_continue
    with pytest.raises(WaitForConditionError, match="attempts"):
        wait(None, 3)


@pytest.mark.parametrize(
    "kwargs", [{"max_attempts": 0}, {"initial_delay": -1}, {"backoff_rate": 0.9}, {"jitter": "all"}]
)
def test_wait_strategy_validates_arguments(kwargs):
    with pytest.raises(ValidationError):
        create_wait_strategy(lambda s: True, **kwargs)
    with pytest.raises(ValidationError):
        create_wait_strategy("not callable")


def test_default_rng_is_module_level():
    assert isinstance(retry_mod._default_rng, random.Random)


# ----------------------------------------------------------------------------- the official SDK's names


def test_retry_strategy_config_builds_the_same_policy_as_the_official_sdk():
    from aws_durable_execution_sdk_python.config import Duration as OfficialDuration, JitterStrategy as OJ
    from aws_durable_execution_sdk_python.retries import (RetryStrategyConfig as OfficialConfig,
                                                          create_retry_strategy as official_create)

    from durable_sync import JitterStrategy, RetryStrategyConfig, create_retry_strategy

    ours = create_retry_strategy(RetryStrategyConfig(max_attempts=5, initial_delay=Duration(2), max_delay=Duration(20),
                                                     backoff_rate=3, jitter_strategy=JitterStrategy.NONE,
                                                     retryable_error_types=[KeyError]))
    theirs = official_create(OfficialConfig(max_attempts=5, initial_delay=OfficialDuration(2),
                                            max_delay=OfficialDuration(20), backoff_rate=3, jitter_strategy=OJ.NONE,
                                            retryable_error_types=[KeyError]))
    for error in (KeyError("k"), ValueError("v")):
        for attempt in range(1, 7):
            a, b = ours(error, attempt), theirs(error, attempt)
            assert (a.should_retry, a.delay_seconds if a.should_retry else 0) == \
                (b.should_retry, b.delay_seconds if b.should_retry else 0), (error, attempt)
    defaults = create_retry_strategy()
    assert (defaults.max_attempts, defaults.initial_delay, defaults.max_delay, defaults.jitter) == \
        (3, Duration(5), Duration(300), "full")


def test_official_presets_have_the_official_numbers():
    from aws_durable_execution_sdk_python.retries import RetryPresets as Official

    for name in ("none", "default", "transient", "resource_availability", "critical"):
        ours, theirs = getattr(RetryPresets, name)(), getattr(Official, name)()
        for attempt in range(1, 12):
            a, b = ours(ERR, attempt), theirs(ERR, attempt)
            assert a.should_retry == b.should_retry, (name, attempt)
    assert delays(RetryPresets.critical(), 4) == [1, 2, 3, 4]  # 1 * 1.5**n rounded up, no jitter
    assert delays(RetryPresets.fixed(Duration(7)), 6) == [7, 7, 7, 7, None, None]
    assert delays(RetryPresets.fixed(), 2) == [5, 5]


@pytest.mark.parametrize("jitter", ["FULL", "Full", "full"])
def test_jitter_takes_the_enum_and_strings_in_any_case(jitter):
    from durable_sync import JitterStrategy

    assert RetryPolicy(jitter=jitter) == RetryPolicy(jitter=JitterStrategy.FULL) == RetryPolicy(jitter="full")


def test_retry_strategy_config_is_checked_when_built():
    from durable_sync import RetryStrategyConfig

    with pytest.raises(ValidationError, match="max_attempts"):
        RetryStrategyConfig(max_attempts=0)
    with pytest.raises(ValidationError, match="jitter"):
        RetryStrategyConfig(jitter_strategy="random")


def test_wait_strategy_config_of_the_official_sdk_is_accepted():
    from durable_sync import JitterStrategy, WaitStrategyConfig

    wait = create_wait_strategy(WaitStrategyConfig(should_continue_polling=lambda s: s < 10, max_attempts=3,
                                                   initial_delay=Duration(2), jitter_strategy=JitterStrategy.NONE))
    assert wait(1, 1) == WaitForConditionDecision.continue_waiting(2)
    assert wait(1, 2) == WaitForConditionDecision.continue_waiting(3)  # 2 * 1.5
    assert wait(10, 1) == WaitForConditionDecision.stop_polling()
    with pytest.raises(WaitForConditionError):
        wait(1, 3)


def test_decisions_expose_their_delay_as_a_duration():
    assert RetryDecision.retry(1.2).delay == Duration(2) and RetryDecision.no_retry().delay is None
    assert RetryDecision(True, 0.5).delay_seconds == 1  # built directly: the same rounding as retry()
