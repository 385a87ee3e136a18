"""Config values: durations (SPEC §2) and configs that validate themselves when built."""
from __future__ import annotations

import datetime as dt

import pytest

import durable_sync as ds
from durable_sync.config import checked_delay, expect, optional_delay, to_seconds

DAY = 86400


# ----------------------------------------------------------------------------- durations


@pytest.mark.parametrize("build, seconds", [
    (lambda: ds.Duration(1.2), 2),
    (lambda: ds.Duration(0.5), 1),
    (lambda: ds.Duration(5), 5),
    (lambda: ds.Duration(seconds=3.001), 4),
    (lambda: ds.Duration.from_seconds(0.2), 1),
    (lambda: ds.Duration.from_minutes(0.1), 6),  # 0.1 * 60 is 6.000000000000001 in floats: still 6 s
    (lambda: ds.Duration.from_minutes(1.5), 90),
    (lambda: ds.Duration.from_hours(0.5), 1800),
    (lambda: ds.Duration.from_days(1 / 3), 28800),
])
def test_durations_are_whole_seconds_rounded_up(build, seconds):
    duration = build()
    assert duration.seconds == seconds and duration.to_seconds() == seconds
    assert isinstance(duration.seconds, int)


@pytest.mark.parametrize("bad", ["5", -5, -0.1, 0, 0.0, float("nan"), float("inf"), -float("inf"), True, None,
                                 [1], dt.timedelta(seconds=5)])
def test_a_bad_duration_is_refused_when_built(bad):
    with pytest.raises(ds.ValidationError, match="Duration"):
        ds.Duration(bad)


@pytest.mark.parametrize("factory", [ds.Duration.from_seconds, ds.Duration.from_minutes, ds.Duration.from_hours,
                                     ds.Duration.from_days])
@pytest.mark.parametrize("bad", ["1", 0, -1, float("nan"), float("inf"), False])
def test_duration_constructors_refuse_bad_values(factory, bad):
    with pytest.raises(ds.ValidationError):
        factory(bad)


def test_durations_compare_by_their_whole_seconds():
    assert ds.Duration(1.2) == ds.Duration(2) == ds.Duration.from_seconds(1.5)
    assert {ds.Duration(2), ds.Duration(1.1)} == {ds.Duration(2)}


@pytest.mark.parametrize("value, seconds", [(0.5, 1), (1, 1), (1.2, 2), (dt.timedelta(milliseconds=1), 1),
                                            (dt.timedelta(minutes=2), 120), (ds.Duration(7), 7),
                                            (366 * DAY, 366 * DAY), (366 * DAY - 0.5, 366 * DAY)])
def test_checked_delay_rounds_up_within_the_service_range(value, seconds):
    assert checked_delay(value) == seconds


@pytest.mark.parametrize("bad", [0, -0.5, -1, 366 * DAY + 0.5, dt.timedelta(0), ds.Duration.from_days(367), "5",
                                 None, True, float("nan"), float("inf"), [1]])
def test_checked_delay_refuses_what_spec_refuses(bad):
    with pytest.raises(ds.ValidationError, match="wait duration"):
        checked_delay(bad)


def test_optional_delay_takes_none_and_zero_as_no_timeout():
    assert optional_delay(None, "t") is None and optional_delay(0, "t") is None
    assert optional_delay(dt.timedelta(0), "t") is None
    assert optional_delay(0.5, "t") == 1
    for bad in (-1, "5", True, float("nan")):
        with pytest.raises(ds.ValidationError):
            optional_delay(bad, "t")


def test_to_seconds_keeps_the_sign_for_computed_delays():
    assert to_seconds(-2.5) == -2 and to_seconds(2.5) == 3 and to_seconds(dt.timedelta(seconds=1.5)) == 2


def test_wait_for_condition_decisions_round_up_too():
    assert ds.WaitForConditionDecision.continue_waiting(0.5).delay_seconds == 1
    assert ds.WaitForConditionDecision.continue_waiting(ds.Duration(1.2)).delay == ds.Duration(2)
    with pytest.raises(ds.ValidationError):
        ds.WaitForConditionDecision.continue_waiting(0)
    assert ds.WaitForConditionDecision(True, 1.5).delay_seconds == 2  # built directly: the same rule
    with pytest.raises(ds.ValidationError, match="wait_for_condition delay"):
        ds.WaitForConditionDecision(True, 0)


# ----------------------------------------------------------------------------- configs validate themselves


def _policy_class():
    return ds.RetryPolicy


BAD_CONFIGS = [
    (lambda: ds.StepConfig(step_semantics="AT_MOST_ONCE_PER_RETRY"), "step_semantics",
     "ds.StepSemantics.AT_MOST_ONCE_PER_RETRY"),
    (lambda: ds.StepConfig(step_semantics="at_least_once_per_retry"), "step_semantics",
     "ds.StepSemantics.AT_LEAST_ONCE_PER_RETRY"),
    (lambda: ds.StepConfig(retry_strategy=42), "retry_strategy", "ds.RetryPolicy"),
    (lambda: ds.StepConfig(retry_strategy="fast"), "retry_strategy", "tenacity"),
    (lambda: ds.StepConfig(retry_strategy=_policy_class()), "retry_strategy", "pass an instance"),
    (lambda: ds.StepConfig(retry_strategy=ds.RetryStrategyConfig()), "retry_strategy", "create_retry_strategy"),
    (lambda: ds.StepConfig(serdes=object()), "serdes", "serialize"),
    (lambda: ds.StepConfig(serdes=ds.serdes.DefaultSerDes), "serdes", "DefaultSerDes()"),
    (lambda: ds.ChildConfig(serdes="json"), "serdes", "SerDes"),
    (lambda: ds.CallbackConfig(timeout="5"), "timeout", "Duration"),
    (lambda: ds.CallbackConfig(timeout=-1), "timeout", "more than 0"),
    (lambda: ds.CallbackConfig(heartbeat_timeout=367 * DAY), "heartbeat_timeout", "366 days"),
    (lambda: ds.WaitForCallbackConfig(retry_strategy=3), "retry_strategy", "RetryPolicy"),
    (lambda: ds.WaitForCallbackConfig(timeout=float("nan")), "timeout", "finite"),
    (lambda: ds.WaitForConditionConfig(wait_strategy=None), "wait_strategy", "create_wait_strategy"),
    (lambda: ds.InvokeConfig(tenant_id=""), "tenant_id", "non-empty"),
    (lambda: ds.InvokeConfig(serdes_result=1), "serdes_result", "SerDes"),
    (lambda: ds.CompletionConfig(min_successful=0), "min_successful", ">= 1"),
    (lambda: ds.CompletionConfig(min_successful=True), "min_successful", ">= 1"),
    (lambda: ds.CompletionConfig(tolerated_failure_count=-1), "tolerated_failure_count", ">= 0"),
    (lambda: ds.CompletionConfig(tolerated_failure_percentage=101), "tolerated_failure_percentage", "0 to 100"),
    (lambda: ds.ParallelConfig(max_concurrency=0), "max_concurrency", "positive integer"),
    (lambda: ds.MapConfig(max_concurrency="2"), "max_concurrency", "positive integer"),
    (lambda: ds.MapConfig(completion_config={"min_successful": 1}), "completion_config", "CompletionConfig"),
    (lambda: ds.MapConfig(nesting_type="FLAT"), "nesting_type", "ds.NestingType.FLAT"),
    (lambda: ds.MapConfig(item_namer="item-{i}"), "item_namer", "(item, index)"),
    (lambda: ds.ParallelConfig(item_serdes=42), "item_serdes", "SerDes"),
    (lambda: ds.ParallelBranch("not callable"), "func", "callable"),
    (lambda: ds.ParallelBranch(lambda c: 1, name=3), "name", "string"),
]


@pytest.mark.parametrize("build, field, advice", BAD_CONFIGS, ids=[f"{i}-{b[1]}" for i, b in enumerate(BAD_CONFIGS)])
def test_a_config_with_a_wrong_field_is_refused_naming_the_field_and_the_fix(build, field, advice):
    with pytest.raises(ds.ValidationError) as info:
        build()
    message = str(info.value)
    assert f".{field} must be" in message and advice in message, message


def test_dataclasses_replace_validates_too():
    import dataclasses

    with pytest.raises(ds.ValidationError, match="max_concurrency"):
        dataclasses.replace(ds.MapConfig(), max_concurrency=-1)


def test_good_configs_are_accepted():
    import tenacity

    ds.StepConfig(retry_strategy=ds.RetryPolicy(), step_semantics=ds.StepSemantics.AT_MOST_ONCE_PER_RETRY,
                  serdes=ds.serdes.DefaultSerDes())
    ds.StepConfig(retry_strategy=tenacity.Retrying(stop=tenacity.stop_after_attempt(2)))
    ds.StepConfig(retry_strategy=tenacity.wait_fixed(2))
    ds.StepConfig(retry_strategy=lambda error, attempt: ds.RetryDecision.no_retry())
    ds.CallbackConfig(timeout=0, heartbeat_timeout=None)
    ds.CallbackConfig(timeout=ds.Duration.from_hours(1), heartbeat_timeout=dt.timedelta(minutes=5))
    ds.MapConfig(max_concurrency=3, completion_config=None, item_namer=lambda item, i: f"x{i}",
                 nesting_type=ds.NestingType.FLAT)


def test_expect_refuses_another_operations_config_or_a_dict():
    default = ds.StepConfig()
    assert expect(None, ds.StepConfig, "step", default) is default
    cfg = ds.StepConfig(retry_strategy=ds.RetryPresets.none())
    assert expect(cfg, ds.StepConfig, "step") is cfg
    with pytest.raises(ds.ValidationError, match=r"step takes config=ds.StepConfig\(...\), got MapConfig"):
        expect(ds.MapConfig(), ds.StepConfig, "step")
    with pytest.raises(ds.ValidationError, match=r"ds.StepConfig\(\*\*your_dict\)"):
        expect({"retry_strategy": None}, ds.StepConfig, "step")


def test_configs_are_subscriptable_like_the_official_sdks():
    assert ds.MapConfig[int](max_concurrency=2) == ds.MapConfig(max_concurrency=2)
    assert ds.InvokeConfig[dict, dict](tenant_id="t") == ds.InvokeConfig(tenant_id="t")
    assert ds.ChildConfig[str]() == ds.ChildConfig()
    assert ds.WaitForConditionConfig[int](wait_strategy=lambda s, a: None).initial_state is None
    assert ds.ParallelBranch[int](abs, name="b").name == "b"
    assert ds.WaitStrategyConfig[int](should_continue_polling=bool).max_attempts == 60
