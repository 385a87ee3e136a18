"""tenacity strategies evaluated durably (imported only when a tenacity strategy is used).

tenacity decides with ``retry``, ``wait`` and ``stop`` against a ``RetryCallState``; here the
call state is synthetic and on the durable clock, and nothing sleeps: :func:`decide` returns
the delay the SDK checkpoints before suspending, or None to give up.
"""
from __future__ import annotations

from typing import Any, Callable, Optional

import tenacity
from tenacity.retry import retry_base
from tenacity.stop import stop_base
from tenacity.wait import wait_base

from .config import clamped_delay

#: Attempts allowed when the user gave a bare wait or retry strategy (no stop of their own).
DEFAULT_ATTEMPTS = 6


def is_tenacity_strategy(strategy: Any) -> bool:
    return isinstance(strategy, (tenacity.BaseRetrying, stop_base, wait_base, retry_base))


class _FallbackWait(wait_base):
    """A tenacity wait that asks ``delay_for(attempt)`` (the SDK's default back-off)."""

    def __init__(self, delay_for: Callable[[int], float]):
        self.delay_for = delay_for

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        return self.delay_for(retry_state.attempt_number)


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
            self._idle = float(sum(clamped_delay(wait(state)) for state in earlier))
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


def as_retrying(strategy: Any, fallback_delay: Callable[[int], float]) -> tenacity.BaseRetrying:
    """A ``Retrying`` for any tenacity strategy form.

    - ``tenacity.Retrying`` / any ``BaseRetrying``: itself (tenacity's defaults: retry on any
      Exception, no wait -> 1 s, never stop).
    - a bare stop: retry every error, waiting ``fallback_delay(attempt)``.
    - a bare wait: retry every error with that wait, up to 6 attempts.
    - a bare retry predicate: that predicate, ``fallback_delay`` waits, 6 attempts.
    """
    if isinstance(strategy, tenacity.BaseRetrying):
        return strategy
    parts: dict[str, Any] = {
        "stop": tenacity.stop_after_attempt(DEFAULT_ATTEMPTS),
        "wait": _FallbackWait(fallback_delay),
        "retry": tenacity.retry_if_exception_type(),  # tenacity's default: any Exception
    }
    if isinstance(strategy, stop_base):
        parts["stop"] = strategy
    elif isinstance(strategy, wait_base):
        parts["wait"] = strategy
    else:
        parts["retry"] = strategy
    return tenacity.Retrying(**parts)


def decide(retrying: tenacity.BaseRetrying, error: BaseException, attempt: int) -> Optional[int]:
    """Seconds to wait before retrying, or None to give up: retry, wait and stop in tenacity's order."""
    if not getattr(retrying, "enabled", True):
        return None
    state = _DurableCallState(retrying, error, attempt)
    if not (isinstance(error, tenacity.TryAgain) or retrying.retry(state)):
        return None
    state.upcoming_sleep = retrying.wait(state)
    if retrying.stop(state):
        return None
    return clamped_delay(state.upcoming_sleep)
