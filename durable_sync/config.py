"""Configuration values of durable operations (frozen dataclasses).

These are plain data: behaviour lives with the operations in ``context`` and
``retry``. Durations accept ``Duration``, ``datetime.timedelta`` or whole seconds.
"""
from __future__ import annotations

import datetime as _dt
import enum
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from .errors import ValidationError

MIN_DELAY_SECONDS = 1
MAX_DELAY_SECONDS = 366 * 24 * 3600


@dataclass(frozen=True)
class Duration:
    """A whole number of seconds; build with ``from_seconds/minutes/hours/days``."""

    seconds: int

    @classmethod
    def from_seconds(cls, seconds: float) -> "Duration":
        return cls(_whole_seconds(seconds))

    @classmethod
    def from_minutes(cls, minutes: float) -> "Duration":
        return cls(_whole_seconds(minutes * 60))

    @classmethod
    def from_hours(cls, hours: float) -> "Duration":
        return cls(_whole_seconds(hours * 3600))

    @classmethod
    def from_days(cls, days: float) -> "Duration":
        return cls(_whole_seconds(days * 86400))

    def to_seconds(self) -> int:
        return self.seconds


def _whole_seconds(value: float, what: str = "a duration") -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value) or math.isinf(value):
        raise ValidationError(f"{what} must be a finite number of seconds, got {value!r}")
    return int(math.ceil(value))


def to_seconds(value: Any, what: str = "duration") -> int:
    """Whole seconds from a Duration, timedelta or number (rounded up)."""
    if isinstance(value, Duration):
        return value.seconds
    if isinstance(value, _dt.timedelta):
        return _whole_seconds(value.total_seconds(), what)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return _whole_seconds(value, what)
    raise ValidationError(
        f"{what} must be a Duration, datetime.timedelta or a number of seconds, got {type(value).__name__}"
    )


def checked_delay(value: Any, what: str = "wait duration") -> int:
    """Seconds within the service's range (1 s to 366 days), else ValidationError."""
    seconds = to_seconds(value, what)
    raw = value.total_seconds() if isinstance(value, _dt.timedelta) else value
    if isinstance(raw, (int, float)) and raw < MIN_DELAY_SECONDS:
        seconds = raw  # a fraction of a second is out of range, not rounded up to 1 s
    if not MIN_DELAY_SECONDS <= seconds <= MAX_DELAY_SECONDS:
        raise ValidationError(
            f"{what} must be between 1 second and 366 days, got {seconds} s; "
            "use Duration.from_seconds/minutes/hours/days with a value in that range"
        )
    return seconds


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


@dataclass(frozen=True)
class StepConfig:
    retry_strategy: Any = None
    step_semantics: StepSemantics = StepSemantics.AT_LEAST_ONCE_PER_RETRY
    serdes: Any = None
    checkpoint_mode: Optional[CheckpointMode] = None  # None: the handler's mode (durable_handler(checkpoint_mode=))


@dataclass(frozen=True)
class ChildConfig:
    serdes: Any = None


@dataclass(frozen=True)
class CallbackConfig:
    timeout: Any = None
    heartbeat_timeout: Any = None
    serdes: Any = None


@dataclass(frozen=True)
class WaitForCallbackConfig(CallbackConfig):
    retry_strategy: Any = None


@dataclass(frozen=True)
class WaitForConditionDecision:
    """What a wait strategy decided after a poll."""

    should_continue: bool
    delay_seconds: int = 0

    @classmethod
    def continue_waiting(cls, delay: Any) -> "WaitForConditionDecision":
        return cls(True, checked_delay(delay, "wait_for_condition delay"))

    @classmethod
    def stop_polling(cls) -> "WaitForConditionDecision":
        return cls(False, 0)


@dataclass(frozen=True)
class WaitForConditionConfig:
    wait_strategy: Callable[[Any, int], WaitForConditionDecision]
    initial_state: Any = None
    serdes: Any = None


@dataclass(frozen=True)
class InvokeConfig:
    serdes_payload: Any = None
    serdes_result: Any = None
    tenant_id: Optional[str] = None


@dataclass(frozen=True)
class CompletionConfig:
    """When a map/parallel is done: enough successes, or too many failures."""

    min_successful: Optional[int] = None
    tolerated_failure_count: Optional[int] = None
    tolerated_failure_percentage: Optional[float] = None

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
    max_concurrency: Optional[int] = None
    completion_config: CompletionConfig = field(default_factory=CompletionConfig.all_completed)
    serdes: Any = None
    item_serdes: Any = None
    nesting_type: NestingType = NestingType.NESTED


@dataclass(frozen=True)
class MapConfig(ParallelConfig):
    item_namer: Optional[Callable[[Any, int], str]] = None


@dataclass(frozen=True)
class ParallelBranch:
    """A parallel branch with an explicit name."""

    func: Callable[..., Any]
    name: Optional[str] = None
