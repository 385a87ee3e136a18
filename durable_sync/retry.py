"""Retry and polling strategies, evaluated durably.

A strategy only *decides*: given the error and the 1-based number of the
attempt that just failed, it returns a :class:`RetryDecision`. Nothing here
sleeps; the SDK checkpoints the delay and suspends the invocation.

tenacity strategies are accepted and evaluated against a synthetic
``RetryCallState`` (see :func:`resolve_retry_strategy`).
"""
from __future__ import annotations

import datetime as _dt
import math
import random
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence, Union

import tenacity
from tenacity.retry import retry_base
from tenacity.stop import stop_base
from tenacity.wait import wait_base

from .config import MAX_DELAY_SECONDS, Duration, WaitForConditionDecision, to_seconds
from .errors import ValidationError, WaitForConditionError

__all__ = [
    "RetryDecision",
    "RetryPolicy",
    "RetryPresets",
    "RetryStrategy",
    "resolve_retry_strategy",
    "create_wait_strategy",
    "seed_jitter",
]

_JITTERS = ("full", "half", "none")
_default_rng = random.Random()


def seed_jitter(seed: Any) -> None:
    """Seed the RNG used for jitter by policies created without ``rng`` (for reproducible tests)."""
    _default_rng.seed(seed)


def _clamp_delay(delay: Any) -> int:
    """Whole seconds, rounded up, clamped to 1 s .. 366 days."""
    return min(max(to_seconds(delay, "retry delay"), 1), MAX_DELAY_SECONDS)


@dataclass(frozen=True)
class RetryDecision:
    """Whether to retry a failed attempt, and after how many seconds."""

    should_retry: bool
    delay_seconds: int = 0

    @classmethod
    def retry(cls, delay: Union[int, float, _dt.timedelta, Duration]) -> "RetryDecision":
        """Retry after ``delay`` (rounded up to whole seconds, at least 1, at most 366 days)."""
        return cls(True, _clamp_delay(delay))

    @classmethod
    def no_retry(cls) -> "RetryDecision":
        return cls(False, 0)


RetryStrategy = Callable[[BaseException, int], RetryDecision]


def _seconds(value: Any, what: str) -> float:
    """Non-negative seconds (fractions kept) from a number, timedelta or Duration."""
    if isinstance(value, Duration):
        value = value.seconds
    elif isinstance(value, _dt.timedelta):
        value = value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ValidationError(f"{what} must be a finite number of seconds >= 0 (or a timedelta/Duration), got {value!r}")
    return float(value)


def _check_backoff(max_attempts: Any, initial_delay: Any, max_delay: Any, backoff_rate: Any, jitter: Any) -> tuple:
    if isinstance(max_attempts, bool) or not isinstance(max_attempts, int) or max_attempts < 1:
        raise ValidationError(f"max_attempts must be an int >= 1, got {max_attempts!r}")
    initial = _seconds(initial_delay, "initial_delay")
    maximum = _seconds(max_delay, "max_delay")
    if isinstance(backoff_rate, bool) or not isinstance(backoff_rate, (int, float)) or not backoff_rate >= 1:
        raise ValidationError(f"backoff_rate must be a number >= 1, got {backoff_rate!r}")
    if backoff_rate == math.inf:
        raise ValidationError("backoff_rate must be finite")
    if jitter not in _JITTERS:
        raise ValidationError(f"jitter must be one of {', '.join(map(repr, _JITTERS))}, got {jitter!r}")
    return initial, maximum, float(backoff_rate)


def _backoff_delay(attempt: int, initial: float, maximum: float, rate: float, jitter: str,
                   rng: Optional[random.Random]) -> int:
    """min(initial * rate**(attempt-1), maximum), jittered, in whole seconds (>= 1)."""
    try:
        delay = min(initial * rate ** (attempt - 1), maximum)
    except OverflowError:
        delay = maximum
    rng = rng or _default_rng
    if jitter == "full":
        delay = rng.uniform(0, delay)
    elif jitter == "half":
        delay = delay / 2 + rng.uniform(0, delay / 2)
    return _clamp_delay(delay)


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential back-off with jitter; call it as ``policy(error, attempt)``.

    ``retryable_errors`` are strings (substring of ``str(error)``) or regex
    patterns (``re.search``); ``retryable_error_types`` are exception classes.
    With neither, every error is retryable; with either, an error is retried
    when it matches any of them.
    """

    max_attempts: int = 6
    initial_delay: Union[int, float, _dt.timedelta, Duration] = 5
    max_delay: Union[int, float, _dt.timedelta, Duration] = 60
    backoff_rate: float = 2.0
    jitter: str = "full"
    retryable_errors: Optional[Sequence[Union[str, "re.Pattern[str]"]]] = None
    retryable_error_types: Optional[Sequence[type]] = None
    rng: Optional[random.Random] = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        backoff = _check_backoff(self.max_attempts, self.initial_delay, self.max_delay, self.backoff_rate, self.jitter)
        object.__setattr__(self, "_backoff", backoff)  # (initial, max, rate) in float seconds
        if self.retryable_errors is not None:
            patterns = (self.retryable_errors,) if isinstance(self.retryable_errors, (str, re.Pattern)) \
                else tuple(self.retryable_errors)
            if not all(isinstance(p, (str, re.Pattern)) for p in patterns):
                raise ValidationError(f"retryable_errors must be strings or compiled regexes, got {patterns!r}")
            object.__setattr__(self, "retryable_errors", patterns)
        if self.retryable_error_types is not None:
            types = (self.retryable_error_types,) if isinstance(self.retryable_error_types, type) \
                else tuple(self.retryable_error_types)
            if not all(isinstance(t, type) and issubclass(t, BaseException) for t in types):
                raise ValidationError(f"retryable_error_types must be exception classes, got {types!r}")
            object.__setattr__(self, "retryable_error_types", types)

    def is_retryable(self, error: BaseException) -> bool:
        """Whether ``error`` matches ``retryable_errors`` / ``retryable_error_types``."""
        if self.retryable_errors is None and self.retryable_error_types is None:
            return True
        if self.retryable_error_types and isinstance(error, self.retryable_error_types):
            return True
        message = str(error)
        return any(
            (p in message) if isinstance(p, str) else p.search(message) is not None
            for p in self.retryable_errors or ()
        )

    def delay_for(self, attempt: int) -> int:
        """Jittered delay (whole seconds) before the attempt after ``attempt``."""
        initial, maximum, rate = self._backoff  # type: ignore[attr-defined]
        return _backoff_delay(attempt, initial, maximum, rate, self.jitter, self.rng)

    def __call__(self, error: BaseException, attempt: int) -> RetryDecision:
        if attempt >= self.max_attempts or not self.is_retryable(error):
            return RetryDecision.no_retry()
        return RetryDecision.retry(self.delay_for(attempt))


class RetryPresets:
    """Ready-made policies."""

    @staticmethod
    def none() -> RetryPolicy:
        """One attempt, no retry."""
        return RetryPolicy(max_attempts=1)

    @staticmethod
    def default() -> RetryPolicy:
        """6 attempts, 5 s initial delay, x2 per attempt, at most 60 s, full jitter."""
        return RetryPolicy(max_attempts=6, initial_delay=5, max_delay=60, backoff_rate=2.0, jitter="full")


# --------------------------------------------------------------------------- tenacity

_DEFAULT_TENACITY_ATTEMPTS = 6


class _PolicyWait(wait_base):
    """A tenacity wait giving the default preset's back-off (for bare stop/retry strategies)."""

    def __init__(self, policy: RetryPolicy):
        self.policy = policy

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        return self.policy.delay_for(retry_state.attempt_number)


class _DurableCallState(tenacity.RetryCallState):
    """The RetryCallState of a failed attempt, on the durable clock.

    The clock starts at 0 and the attempt ends at ``idle_for``: the sum of the
    (whole-second) delays the wait strategy gives for the earlier attempts,
    computed lazily since only time-based stops need it (the current error
    stands in for the earlier ones). Exact for deterministic waits, an estimate
    for random ones. Time spent running the attempts is not counted (it is not
    known across invocations).
    """

    def __init__(self, retrying: tenacity.BaseRetrying, error: BaseException, attempt: int):
        super().__init__(retrying, None, (), {})
        self.start_time = 0.0
        self.attempt_number = attempt
        self.outcome = tenacity.Future(attempt)
        self.outcome.set_exception(error)
        self._error = error
        self._idle: Optional[float] = None

    @property
    def idle_for(self) -> float:
        if self._idle is None:
            wait = self.retry_object.wait
            earlier = (_DurableCallState(self.retry_object, self._error, n) for n in range(1, self.attempt_number))
            self._idle = float(sum(_clamp_delay(wait(state)) for state in earlier))
        return self._idle

    @idle_for.setter
    def idle_for(self, value: float) -> None:
        self._idle = None  # only RetryCallState.__init__ writes it (0.0): keep it derived

    @property
    def outcome_timestamp(self) -> float:
        return self.start_time + self.idle_for

    @outcome_timestamp.setter
    def outcome_timestamp(self, value: Any) -> None:
        pass  # only RetryCallState.__init__ writes it (None): keep it derived

    @property
    def seconds_since_start(self) -> float:
        return self.idle_for


def _tenacity_strategy(retrying: tenacity.BaseRetrying) -> RetryStrategy:
    """Evaluate tenacity's retry, wait and stop in the order tenacity does, without sleeping."""

    def decide(error: BaseException, attempt: int) -> RetryDecision:
        if not getattr(retrying, "enabled", True):
            return RetryDecision.no_retry()
        state = _DurableCallState(retrying, error, attempt)
        if not (isinstance(error, tenacity.TryAgain) or retrying.retry(state)):
            return RetryDecision.no_retry()
        state.upcoming_sleep = retrying.wait(state)
        if retrying.stop(state):
            return RetryDecision.no_retry()
        return RetryDecision.retry(state.upcoming_sleep)

    return decide


def _checked_callable(fn: Callable[[BaseException, int], Any]) -> RetryStrategy:
    def decide(error: BaseException, attempt: int) -> RetryDecision:
        decision = fn(error, attempt)
        if not isinstance(decision, RetryDecision):
            raise ValidationError(
                f"retry strategy {getattr(fn, '__qualname__', fn)!r} returned {type(decision).__name__}; "
                "it must return RetryDecision.retry(delay) or RetryDecision.no_retry()"
            )
        return decision

    return decide


def resolve_retry_strategy(strategy: Any) -> RetryStrategy:
    """A ``(error, attempt) -> RetryDecision`` callable for any accepted strategy form.

    - ``None``: :meth:`RetryPresets.default`.
    - :class:`RetryPolicy`: itself.
    - ``tenacity.Retrying`` / any ``BaseRetrying``: its ``retry``, ``wait`` and
      ``stop`` (tenacity's defaults: retry on any Exception, no wait -> 1 s, never stop).
    - a bare tenacity stop: retry every error, waiting like the default preset.
    - a bare tenacity wait: retry every error with that wait, up to 6 attempts.
    - a bare tenacity retry predicate: that predicate, the default preset's waits, 6 attempts.
    - any other callable ``(error, attempt) -> RetryDecision`` (checked on each call).
    """
    if strategy is None:
        return RetryPresets.default()
    if isinstance(strategy, RetryPolicy):
        return strategy
    if isinstance(strategy, tenacity.BaseRetrying):
        return _tenacity_strategy(strategy)
    if isinstance(strategy, (stop_base, wait_base, retry_base)):
        default_wait = _PolicyWait(RetryPresets.default())
        parts: dict[str, Any] = {
            "stop": tenacity.stop_after_attempt(_DEFAULT_TENACITY_ATTEMPTS),
            "wait": default_wait,
            "retry": tenacity.retry_if_exception_type(),  # tenacity's default: any Exception
        }
        if isinstance(strategy, stop_base):
            parts["stop"] = strategy
        elif isinstance(strategy, wait_base):
            parts["wait"] = strategy
        else:
            parts["retry"] = strategy
        return _tenacity_strategy(tenacity.Retrying(**parts))
    if callable(strategy):
        return _checked_callable(strategy)
    raise ValidationError(
        f"retry_strategy of type {type(strategy).__name__} is not supported; use a ds.RetryPolicy, "
        "a tenacity.Retrying(...) or tenacity stop/wait/retry strategy, or a callable "
        "(error, attempt) -> RetryDecision"
    )


# --------------------------------------------------------------------------- wait_for_condition


def create_wait_strategy(
    should_continue_polling: Callable[[Any], bool],
    max_attempts: int = 60,
    initial_delay: Union[int, float, _dt.timedelta, Duration] = 5,
    max_delay: Union[int, float, _dt.timedelta, Duration] = 300,
    backoff_rate: float = 1.5,
    jitter: str = "full",
    rng: Optional[random.Random] = None,
) -> Callable[[Any, int], WaitForConditionDecision]:
    """A wait_for_condition strategy ``(state, attempt) -> WaitForConditionDecision``.

    Stops polling once ``should_continue_polling(state)`` is false; otherwise
    waits with the same back-off as :class:`RetryPolicy`. When the condition is
    still unmet after ``max_attempts`` checks it raises WaitForConditionError.
    """
    if not callable(should_continue_polling):
        raise ValidationError(f"should_continue_polling must be a callable (state) -> bool, got {should_continue_polling!r}")
    initial, maximum, rate = _check_backoff(max_attempts, initial_delay, max_delay, backoff_rate, jitter)

    def wait_strategy(state: Any, attempt: int) -> WaitForConditionDecision:
        if not should_continue_polling(state):
            return WaitForConditionDecision.stop_polling()
        if attempt >= max_attempts:
            raise WaitForConditionError(
                f"wait_for_condition ran out of attempts: the condition was still unmet after "
                f"{attempt} checks (max_attempts={max_attempts})"
            )
        return WaitForConditionDecision.continue_waiting(
            _backoff_delay(attempt, initial, maximum, rate, jitter, rng))

    return wait_strategy
