"""Retry and polling strategies, evaluated durably.

A strategy only *decides*: given the error and the 1-based number of the
attempt that just failed, it returns a :class:`RetryDecision`. Nothing here
sleeps; the SDK checkpoints the delay and suspends the invocation.

tenacity strategies are accepted and evaluated against a synthetic
``RetryCallState`` (``durable_sync.retry_tenacity``, imported only when one is
used). The official SDK's ``RetryStrategyConfig`` / ``create_retry_strategy``
and ``WaitStrategyConfig`` build the same policies.
"""
from __future__ import annotations

import datetime as _dt
import math
import random
import re
import sys
from dataclasses import dataclass, field
from typing import Any, Callable, Generic, Optional, Sequence, TypeVar, Union

from .config import (Duration, JitterStrategy, WaitForConditionDecision, clamped_delay, retry_strategy_problem,
                     seconds_of)
from .errors import ValidationError, WaitForConditionError

__all__ = [
    "RetryDecision",
    "RetryPolicy",
    "RetryPresets",
    "RetryStrategy",
    "RetryStrategyConfig",
    "WaitStrategyConfig",
    "resolve_retry_strategy",
    "create_retry_strategy",
    "create_wait_strategy",
    "seed_jitter",
]

_JITTERS = ("full", "half", "none")
_default_rng = random.Random()


def seed_jitter(seed: Any) -> None:
    """Seed the RNG used for jitter by policies created without ``rng`` (for reproducible tests)."""
    _default_rng.seed(seed)


@dataclass(frozen=True)
class RetryDecision:
    """Whether to retry a failed attempt, and after how many seconds (1 s .. 366 days, rounded up)."""

    should_retry: bool
    delay_seconds: int = 0

    def __post_init__(self) -> None:
        if self.should_retry:
            object.__setattr__(self, "delay_seconds", clamped_delay(self.delay_seconds))

    @classmethod
    def retry(cls, delay: Union[int, float, _dt.timedelta, Duration]) -> "RetryDecision":
        """Retry after ``delay`` (rounded up to whole seconds, at least 1, at most 366 days)."""
        return cls(True, delay)

    @classmethod
    def no_retry(cls) -> "RetryDecision":
        return cls(False, 0)

    @property
    def delay(self) -> Optional[Duration]:
        """The delay as a Duration (None when not retrying), as the official SDK names it."""
        return Duration(self.delay_seconds) if self.should_retry else None


RetryStrategy = Callable[[BaseException, int], RetryDecision]


def _seconds(value: Any, what: str) -> float:
    """Non-negative seconds (fractions kept for the back-off arithmetic)."""
    seconds = seconds_of(value, what)
    if seconds < 0:
        raise ValidationError(f"{what} must be >= 0 seconds, got {value!r}")
    return seconds


def _jitter(value: Any) -> str:
    """"full", "half" or "none" from those strings (any case) or a JitterStrategy."""
    if isinstance(value, str) and value.lower() in _JITTERS:
        return str(value.lower())
    raise ValidationError(f"jitter must be one of {', '.join(map(repr, _JITTERS))} or a ds.JitterStrategy, "
                          f"got {value!r}")


def _check_backoff(max_attempts: Any, initial_delay: Any, max_delay: Any, backoff_rate: Any, jitter: Any) -> tuple:
    if isinstance(max_attempts, bool) or not isinstance(max_attempts, int) or max_attempts < 1:
        raise ValidationError(f"max_attempts must be an int >= 1, got {max_attempts!r}")
    initial = _seconds(initial_delay, "initial_delay")
    maximum = _seconds(max_delay, "max_delay")
    if isinstance(backoff_rate, bool) or not isinstance(backoff_rate, (int, float)) or not backoff_rate >= 1:
        raise ValidationError(f"backoff_rate must be a number >= 1, got {backoff_rate!r}")
    if backoff_rate == math.inf:
        raise ValidationError("backoff_rate must be finite")
    return initial, maximum, float(backoff_rate), _jitter(jitter)


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
    return clamped_delay(delay)


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
    jitter: Union[str, JitterStrategy] = "full"
    retryable_errors: Optional[Sequence[Union[str, "re.Pattern[str]"]]] = None
    retryable_error_types: Optional[Sequence[type]] = None
    rng: Optional[random.Random] = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        *backoff, jitter = _check_backoff(self.max_attempts, self.initial_delay, self.max_delay, self.backoff_rate,
                                          self.jitter)
        object.__setattr__(self, "_backoff", tuple(backoff))  # (initial, max, rate) in float seconds
        object.__setattr__(self, "jitter", jitter)
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
    """Ready-made policies (the official SDK's presets, same numbers)."""

    @staticmethod
    def none() -> RetryPolicy:
        """One attempt, no retry."""
        return RetryPolicy(max_attempts=1)

    @staticmethod
    def default() -> RetryPolicy:
        """6 attempts, 5 s initial delay, x2 per attempt, at most 60 s, full jitter."""
        return RetryPolicy(max_attempts=6, initial_delay=5, max_delay=60, backoff_rate=2.0, jitter="full")

    @staticmethod
    def transient() -> RetryPolicy:
        """Quick retries: 3 attempts, 5 s initial delay, x2, at most 5 min, half jitter."""
        return RetryPolicy(max_attempts=3, initial_delay=5, max_delay=300, backoff_rate=2.0, jitter="half")

    @staticmethod
    def resource_availability() -> RetryPolicy:
        """Longer retries: 5 attempts, 5 s initial delay, x2, at most 5 min, full jitter."""
        return RetryPolicy(max_attempts=5, initial_delay=5, max_delay=300, backoff_rate=2.0, jitter="full")

    @staticmethod
    def critical() -> RetryPolicy:
        """Many quick retries: 10 attempts, 1 s initial delay, x1.5, at most 60 s, no jitter."""
        return RetryPolicy(max_attempts=10, initial_delay=1, max_delay=60, backoff_rate=1.5, jitter="none")

    @staticmethod
    def fixed(interval: Union[int, float, _dt.timedelta, Duration, None] = None) -> RetryPolicy:
        """5 attempts, ``interval`` (default 5 s) between them, no jitter."""
        delay = 5 if interval is None else interval
        return RetryPolicy(max_attempts=5, initial_delay=delay, max_delay=delay, backoff_rate=1.0, jitter="none")


@dataclass(frozen=True)
class RetryStrategyConfig:
    """The official SDK's description of a back-off policy; :func:`create_retry_strategy` builds it.

    Same fields and defaults as there (note ``max_attempts=3`` and ``max_delay`` 5 min, unlike
    :meth:`RetryPresets.default`); ``RetryPolicy`` takes the same values under ``jitter=``.
    """

    max_attempts: int = 3
    initial_delay: Union[int, float, _dt.timedelta, Duration] = Duration(5)
    max_delay: Union[int, float, _dt.timedelta, Duration] = Duration(300)
    backoff_rate: float = 2.0
    jitter_strategy: Union[str, JitterStrategy] = JitterStrategy.FULL
    retryable_errors: Optional[Sequence[Union[str, "re.Pattern[str]"]]] = None
    retryable_error_types: Optional[Sequence[type]] = None

    def __post_init__(self) -> None:
        create_retry_strategy(self)  # the same checks as RetryPolicy, when the config is built

    @property
    def initial_delay_seconds(self) -> int:
        return math.ceil(_seconds(self.initial_delay, "initial_delay"))

    @property
    def max_delay_seconds(self) -> int:
        return math.ceil(_seconds(self.max_delay, "max_delay"))


def create_retry_strategy(config: Optional[RetryStrategyConfig] = None) -> RetryPolicy:
    """The :class:`RetryPolicy` described by an official-SDK ``RetryStrategyConfig`` (its defaults if None)."""
    if config is None:
        config = RetryStrategyConfig()
    if not isinstance(config, RetryStrategyConfig):
        raise ValidationError(f"create_retry_strategy takes a RetryStrategyConfig, got {type(config).__name__}")
    return RetryPolicy(max_attempts=config.max_attempts, initial_delay=config.initial_delay,
                       max_delay=config.max_delay, backoff_rate=config.backoff_rate, jitter=config.jitter_strategy,
                       retryable_errors=config.retryable_errors, retryable_error_types=config.retryable_error_types)


def _tenacity_strategy(strategy: Any) -> RetryStrategy:
    from . import retry_tenacity  # tenacity is imported only by users of tenacity strategies

    retrying = retry_tenacity.as_retrying(strategy, RetryPresets.default().delay_for)

    def decide(error: BaseException, attempt: int) -> RetryDecision:
        delay = retry_tenacity.decide(retrying, error, attempt)
        return RetryDecision.no_retry() if delay is None else RetryDecision.retry(delay)

    return decide


def _is_tenacity_strategy(strategy: Any) -> bool:
    if "tenacity" not in sys.modules:
        return False  # a tenacity object cannot exist before tenacity is imported
    from . import retry_tenacity

    return retry_tenacity.is_tenacity_strategy(strategy)


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
    if _is_tenacity_strategy(strategy):
        return _tenacity_strategy(strategy)
    problem = retry_strategy_problem(strategy)
    if problem is not None:
        raise ValidationError(f"retry_strategy of type {type(strategy).__name__} is not supported; {problem}")
    return _checked_callable(strategy)


# --------------------------------------------------------------------------- wait_for_condition


T = TypeVar("T")


@dataclass(frozen=True)
class WaitStrategyConfig(Generic[T]):
    """The official SDK's description of a polling back-off; pass it to :func:`create_wait_strategy`."""

    should_continue_polling: Callable[[Any], bool]
    max_attempts: int = 60
    initial_delay: Union[int, float, _dt.timedelta, Duration] = Duration(5)
    max_delay: Union[int, float, _dt.timedelta, Duration] = Duration(300)
    backoff_rate: float = 1.5
    jitter_strategy: Union[str, JitterStrategy] = JitterStrategy.FULL


def create_wait_strategy(
    should_continue_polling: Union[Callable[[Any], bool], WaitStrategyConfig],
    max_attempts: int = 60,
    initial_delay: Union[int, float, _dt.timedelta, Duration] = 5,
    max_delay: Union[int, float, _dt.timedelta, Duration] = 300,
    backoff_rate: float = 1.5,
    jitter: Union[str, JitterStrategy] = "full",
    rng: Optional[random.Random] = None,
) -> Callable[[Any, int], WaitForConditionDecision]:
    """A wait_for_condition strategy ``(state, attempt) -> WaitForConditionDecision``.

    Stops polling once ``should_continue_polling(state)`` is false; otherwise
    waits with the same back-off as :class:`RetryPolicy`. When the condition is
    still unmet after ``max_attempts`` checks it raises WaitForConditionError.
    An official-SDK ``WaitStrategyConfig`` may be passed instead of the arguments.
    """
    if isinstance(should_continue_polling, WaitStrategyConfig):
        cfg = should_continue_polling
        return create_wait_strategy(cfg.should_continue_polling, cfg.max_attempts, cfg.initial_delay, cfg.max_delay,
                                    cfg.backoff_rate, cfg.jitter_strategy, rng)
    if not callable(should_continue_polling):
        raise ValidationError(f"should_continue_polling must be a callable (state) -> bool, got {should_continue_polling!r}")
    initial, maximum, rate, jitter = _check_backoff(max_attempts, initial_delay, max_delay, backoff_rate, jitter)

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
