"""Configuration values of durable operations (frozen dataclasses).

These are plain data, checked when built (a wrong field is a ValidationError naming the
field and what to pass); behaviour lives with the operations and in ``retry``.

Durations (SPEC §2) are whole seconds: a ``Duration``, a ``datetime.timedelta`` or a number
of seconds, a fraction rounded UP (``1.2`` -> 2 s, ``0.5`` -> 1 s). Zero, negative, NaN/inf
and non-numbers are refused by ``Duration(...)`` and by every operation taking a duration
(:func:`checked_delay`).
"""
from __future__ import annotations

import datetime as _dt
import enum
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Generic, Optional, TypeVar

from . import wire
from .errors import ValidationError

T = TypeVar("T")
P = TypeVar("P")  # an invoke's payload type
R = TypeVar("R")  # an invoke's result type

MIN_DELAY_SECONDS = 1
MAX_DELAY_SECONDS = wire.MAX_DELAY_SECONDS  # the service's limit for any delay


def seconds_of(value: Any, what: str) -> float:
    """The seconds in a Duration, timedelta or real number; ValidationError for anything else.

    The one place that decides what counts as a duration (SPEC §2): numbers must be finite,
    ``bool`` and strings are refused. The sign is checked by the callers.
    """
    if isinstance(value, Duration):
        return float(value.seconds)
    if isinstance(value, _dt.timedelta):
        return value.total_seconds()
    return _number(value, what, "a Duration, datetime.timedelta or a number of seconds",
                   "e.g. ds.Duration.from_seconds(5), timedelta(minutes=1) or 5")


def _number(value: Any, what: str, expected: str = "a number", hint: str = "") -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValidationError(f"{what} must be {expected}, got {type(value).__name__} {value!r}"
                              + (f"; {hint}" if hint else ""))
    if not math.isfinite(value):
        raise ValidationError(f"{what} must be a finite number, got {value!r}")
    return float(value)


def _ceil(seconds: float) -> int:
    """Whole seconds, rounded up; sub-microsecond float noise (``0.1 * 60``) is not a second more."""
    return math.ceil(round(seconds, 6))


def _positive_seconds(value: Any, what: str) -> int:
    seconds = seconds_of(value, what)
    if seconds <= 0:
        raise ValidationError(
            f"{what} must be more than 0 seconds, got {value!r}; fractions round up to whole seconds "
            "(0.5 -> 1 s)")
    return _ceil(seconds)


@dataclass(frozen=True)
class Duration:
    """A positive whole number of seconds.

    ``Duration(seconds)`` or ``from_seconds/minutes/hours/days``; a fraction of a second rounds UP
    (``Duration(1.2).seconds == 2``); zero, negative, NaN/inf and non-numbers are a ValidationError.
    """

    seconds: int

    def __post_init__(self) -> None:
        hint = "pass it as it is where a duration is expected" if isinstance(self.seconds, _dt.timedelta) \
            else "e.g. Duration(5) or Duration.from_minutes(2)"
        seconds = _number(self.seconds, "Duration(seconds)", "a number of seconds", hint)
        object.__setattr__(self, "seconds", _positive_seconds(seconds, "a Duration"))

    @classmethod
    def from_seconds(cls, seconds: float) -> "Duration":
        return cls(seconds)

    @classmethod
    def from_minutes(cls, minutes: float) -> "Duration":
        return cls(_number(minutes, "Duration.from_minutes()") * 60)

    @classmethod
    def from_hours(cls, hours: float) -> "Duration":
        return cls(_number(hours, "Duration.from_hours()") * 3600)

    @classmethod
    def from_days(cls, days: float) -> "Duration":
        return cls(_number(days, "Duration.from_days()") * 86400)

    def to_seconds(self) -> int:
        return self.seconds


def to_seconds(value: Any, what: str = "duration") -> int:
    """Whole seconds (rounded up, any sign) from a Duration, timedelta or number."""
    return _ceil(seconds_of(value, what))


def clamped_delay(value: Any, what: str = "retry delay") -> int:
    """A computed delay (retry back-off, jitter): whole seconds rounded up, clamped to 1 s .. 366 days."""
    return min(max(to_seconds(value, what), MIN_DELAY_SECONDS), MAX_DELAY_SECONDS)


def checked_delay(value: Any, what: str = "wait duration") -> int:
    """Whole seconds of an operation's duration, rounded up: 1 s to 366 days, else ValidationError.

    Every duration an operation takes (wait, callback timeouts, wait_for_condition delays) goes
    through here: ``wait(1.2)`` waits 2 s, ``wait(0.5)`` 1 s; ``0``, negatives, NaN/inf and
    non-numbers are refused before anything is checkpointed.
    """
    seconds = _positive_seconds(value, what)
    if seconds > MAX_DELAY_SECONDS:
        raise ValidationError(
            f"{what} must be between 1 second and 366 days, got {seconds} s; "
            "use Duration.from_seconds/minutes/hours/days with a value in that range"
        )
    return seconds


def optional_delay(value: Any, what: str) -> Optional[int]:
    """A timeout that may be off: None (or 0) means "no timeout"; otherwise :func:`checked_delay`."""
    if value is None or (not isinstance(value, bool) and isinstance(value, (int, float, _dt.timedelta))
                         and seconds_of(value, what) == 0):
        return None
    return checked_delay(value, what)


class StepSemantics(enum.Enum):
    """How often a step body may run per retry attempt."""

    AT_LEAST_ONCE_PER_RETRY = "AT_LEAST_ONCE_PER_RETRY"
    AT_MOST_ONCE_PER_RETRY = "AT_MOST_ONCE_PER_RETRY"


class CheckpointMode(enum.Enum):
    """When a step's result is saved (SPEC §3 "When an update must be persisted").

    AWAITED: before anything could act on it (the next step body, an at-most-once START, a wait,
    the end of the invocation). PIPELINED: an at-least-once step's result is not waited for at
    all; it rides with the next checkpoint that is, or the last one before the invocation ends.
    A crash can then re-run steps whose results were not saved yet (docs/performance.md).
    """

    AWAITED = "AWAITED"
    PIPELINED = "PIPELINED"


class NestingType(enum.Enum):
    """NESTED: every branch is its own CONTEXT; FLAT: branches are not checkpointed as contexts."""

    NESTED = "NESTED"
    FLAT = "FLAT"


class JitterStrategy(str, enum.Enum):
    """Jitter of retry and polling back-off; ``jitter=`` also takes the strings "full", "half", "none"."""

    NONE = "NONE"
    FULL = "FULL"
    HALF = "HALF"


# --------------------------------------------------------------------------- validation
# Each config validates itself when built, so a mistake is a ValidationError at the line that
# made it, naming the field and what to pass, before any operation runs.


def _fail(owner: str, name: str, expected: str, value: Any, hint: str = "") -> ValidationError:
    shown = repr(value) if len(repr(value)) <= 80 else repr(value)[:77] + "..."
    return ValidationError(f"{owner}.{name} must be {expected}, got {type(value).__name__} {shown}"
                           + (f"; {hint}" if hint else ""))


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_enum(owner: str, name: str, value: Any, cls: type) -> None:
    if isinstance(value, cls):
        return
    members = " or ".join(f"ds.{cls.__name__}.{m.name}" for m in cls)  # type: ignore[attr-defined]
    hint = f"pass {members}"
    if isinstance(value, str) and value.upper() in cls.__members__:
        hint = f"pass ds.{cls.__name__}.{value.upper()}, not the string"
    raise _fail(owner, name, f"a {cls.__name__}", value, hint)


def check_checkpoint_mode(owner: str, name: str, value: Any) -> None:
    """None (use the handler's mode) or a ``CheckpointMode``."""
    if value is not None:
        _check_enum(owner, name, value, CheckpointMode)


def check_serdes(owner: str, name: str, value: Any) -> None:
    """None, or an object with ``serialize(value, ctx)`` and ``deserialize(text, ctx)`` methods."""
    if value is None:
        return
    if isinstance(value, type):
        raise _fail(owner, name, "a SerDes instance", value, f"pass an instance: {value.__name__}()")
    if not (callable(getattr(value, "serialize", None)) and callable(getattr(value, "deserialize", None))):
        raise _fail(owner, name, "a SerDes (an object with serialize(value, ctx) and deserialize(text, ctx))",
                    value)


def retry_strategy_problem(value: Any) -> Optional[str]:
    """Why ``value`` cannot be a retry strategy, or None when it can (checked without importing tenacity)."""
    if value is None:
        return None
    if isinstance(value, type):
        return f"the class {value.__name__} was passed; pass an instance, e.g. {value.__name__}(...)"
    if type(value).__name__ == "RetryStrategyConfig" and not callable(value):
        return "a RetryStrategyConfig is a description; pass create_retry_strategy(config) or ds.RetryPolicy(...)"
    if not callable(value):
        return ("use a ds.RetryPolicy(...), a tenacity.Retrying(...) or tenacity stop/wait/retry strategy, "
                "or a callable (error, attempt) -> RetryDecision")
    return None


def check_retry_strategy(owner: str, name: str, value: Any) -> None:
    problem = retry_strategy_problem(value)
    if problem is not None:
        raise _fail(owner, name, "a supported retry strategy", value, problem)


def _check_callable(owner: str, name: str, value: Any, signature: str, optional: bool = False) -> None:
    if optional and value is None:
        return
    if not callable(value):
        raise _fail(owner, name, f"a callable {signature}", value)


def expect(config: Any, cls: type, operation: str, default: Any = None) -> Any:
    """``config`` when it is a ``cls`` (``default`` when it is None), else a ValidationError.

    For operations: ``cfg = expect(config, StepConfig, "step", DEFAULT)`` refuses a MapConfig or a
    dict passed to ``step`` with a message that names the operation and the config to build.
    """
    if config is None:
        return default
    if isinstance(config, cls):
        return config
    hint = f"build one: ds.{cls.__name__}(**your_dict)" if isinstance(config, dict) else \
        f"pass ds.{cls.__name__}(...)"
    raise ValidationError(f"{operation} takes config=ds.{cls.__name__}(...), got {type(config).__name__}; {hint}")


# --------------------------------------------------------------------------- configs


@dataclass(frozen=True)
class StepConfig:
    """How a step runs: its retry strategy, its semantics per attempt and its result's serdes."""

    retry_strategy: Any = None
    step_semantics: StepSemantics = StepSemantics.AT_LEAST_ONCE_PER_RETRY
    serdes: Any = None
    checkpoint_mode: Optional[CheckpointMode] = None  # None: the handler's mode (durable_handler(checkpoint_mode=))

    def __post_init__(self) -> None:
        check_retry_strategy("StepConfig", "retry_strategy", self.retry_strategy)
        _check_enum("StepConfig", "step_semantics", self.step_semantics, StepSemantics)
        check_serdes("StepConfig", "serdes", self.serdes)
        check_checkpoint_mode("StepConfig", "checkpoint_mode", self.checkpoint_mode)


@dataclass(frozen=True)
class ChildConfig(Generic[T]):
    """The serdes of a child context's result."""

    serdes: Any = None

    def __post_init__(self) -> None:
        check_serdes("ChildConfig", "serdes", self.serdes)


@dataclass(frozen=True)
class CallbackConfig:
    """``timeout`` / ``heartbeat_timeout``: None or 0 for none, else 1 s to 366 days."""

    timeout: Any = None
    heartbeat_timeout: Any = None
    serdes: Any = None

    def __post_init__(self) -> None:
        owner = type(self).__name__
        optional_delay(self.timeout, f"{owner}.timeout")
        optional_delay(self.heartbeat_timeout, f"{owner}.heartbeat_timeout")
        check_serdes(owner, "serdes", self.serdes)


@dataclass(frozen=True)
class WaitForCallbackConfig(CallbackConfig):
    """A callback's config plus the retry strategy of the step that submits it."""

    retry_strategy: Any = None

    def __post_init__(self) -> None:
        super().__post_init__()
        check_retry_strategy("WaitForCallbackConfig", "retry_strategy", self.retry_strategy)


@dataclass(frozen=True)
class WaitForConditionDecision:
    """What a wait strategy decided after a poll."""

    should_continue: bool
    delay_seconds: int = 0

    def __post_init__(self) -> None:
        if self.should_continue:
            object.__setattr__(self, "delay_seconds", checked_delay(self.delay_seconds, "wait_for_condition delay"))

    @classmethod
    def continue_waiting(cls, delay: Any) -> "WaitForConditionDecision":
        """Poll again after ``delay`` (whole seconds rounded up, 1 s .. 366 days)."""
        return cls(True, delay)

    @classmethod
    def stop_polling(cls) -> "WaitForConditionDecision":
        return cls(False, 0)

    @property
    def delay(self) -> Optional[Duration]:
        """The delay as a Duration (None when polling stops), as the official SDK names it."""
        return Duration(self.delay_seconds) if self.delay_seconds else None


@dataclass(frozen=True)
class WaitForConditionConfig(Generic[T]):
    """``wait_strategy(state, attempt)`` decides after each poll; polling starts from ``initial_state``."""

    wait_strategy: Callable[[Any, int], WaitForConditionDecision]
    initial_state: Any = None
    serdes: Any = None

    def __post_init__(self) -> None:
        _check_callable("WaitForConditionConfig", "wait_strategy", self.wait_strategy,
                        "(state, attempt) -> WaitForConditionDecision; see ds.create_wait_strategy()")
        check_serdes("WaitForConditionConfig", "serdes", self.serdes)


@dataclass(frozen=True)
class InvokeConfig(Generic[P, R]):
    """The serdes of a chained invoke's payload and result, and the target's tenant."""

    serdes_payload: Any = None
    serdes_result: Any = None
    tenant_id: Optional[str] = None

    def __post_init__(self) -> None:
        check_serdes("InvokeConfig", "serdes_payload", self.serdes_payload)
        check_serdes("InvokeConfig", "serdes_result", self.serdes_result)
        if self.tenant_id is not None and (not isinstance(self.tenant_id, str) or not self.tenant_id):
            raise _fail("InvokeConfig", "tenant_id", "a non-empty string (or None)", self.tenant_id)


@dataclass(frozen=True)
class CompletionConfig:
    """When a map/parallel is done: enough successes, or too many failures."""

    min_successful: Optional[int] = None
    tolerated_failure_count: Optional[int] = None
    tolerated_failure_percentage: Optional[float] = None

    def __post_init__(self) -> None:
        value = self.min_successful
        if value is not None and (not _is_int(value) or value < 1):
            raise _fail("CompletionConfig", "min_successful", "an integer >= 1 (or None)", value)
        value = self.tolerated_failure_count
        if value is not None and (not _is_int(value) or value < 0):
            raise _fail("CompletionConfig", "tolerated_failure_count", "an integer >= 0 (or None)", value)
        value = self.tolerated_failure_percentage
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                  or not 0 <= value <= 100):
            raise _fail("CompletionConfig", "tolerated_failure_percentage", "a number from 0 to 100 (or None)",
                        value)

    @classmethod
    def all_successful(cls) -> "CompletionConfig":
        return cls(tolerated_failure_count=0)

    @classmethod
    def all_completed(cls) -> "CompletionConfig":
        return cls()

    @classmethod
    def first_successful(cls) -> "CompletionConfig":
        return cls(min_successful=1)


@dataclass(frozen=True)
class ParallelConfig:
    """How many branches run at once, when the batch is complete, and the serdes of results."""

    max_concurrency: Optional[int] = None
    completion_config: CompletionConfig = field(default_factory=CompletionConfig.all_completed)
    serdes: Any = None
    item_serdes: Any = None
    nesting_type: NestingType = NestingType.NESTED

    def __post_init__(self) -> None:
        owner = type(self).__name__
        value = self.max_concurrency
        if value is not None and (not _is_int(value) or value < 1):
            raise _fail(owner, "max_concurrency", "a positive integer (or None for no limit)", value)
        if self.completion_config is not None and not isinstance(self.completion_config, CompletionConfig):
            raise _fail(owner, "completion_config", "a CompletionConfig", self.completion_config,
                        "e.g. ds.CompletionConfig.all_successful()")
        check_serdes(owner, "serdes", self.serdes)
        check_serdes(owner, "item_serdes", self.item_serdes)
        _check_enum(owner, "nesting_type", self.nesting_type, NestingType)


@dataclass(frozen=True)
class MapConfig(ParallelConfig, Generic[T]):
    """ParallelConfig for ``map``, plus ``item_namer(item, index) -> str`` naming each item."""

    item_namer: Optional[Callable[[Any, int], str]] = None

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_callable("MapConfig", "item_namer", self.item_namer, "(item, index) -> str", optional=True)


@dataclass(frozen=True)
class ParallelBranch(Generic[T]):
    """A parallel branch with an explicit name."""

    func: Callable[..., Any]
    name: Optional[str] = None

    def __post_init__(self) -> None:
        _check_callable("ParallelBranch", "func", self.func, "func(ctx)")
        if self.name is not None and not isinstance(self.name, str):
            raise _fail("ParallelBranch", "name", "a string (or None)", self.name)

    def __call__(self, ctx: Any) -> Any:
        return self.func(ctx)
