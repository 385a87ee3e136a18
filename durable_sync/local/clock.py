"""Clocks of the local engine: real time, or a virtual clock driven by the caller.

The virtual clock never waits on real time. When freezegun is active, moving the
virtual clock moves the frozen clock too, so code under ``freeze_time`` sees time
advance by exactly the durable delay.
"""
from __future__ import annotations

import threading
import time
from typing import Any

from ..errors import ValidationError


class RealClock:
    """Wall-clock milliseconds; waiting blocks for real."""

    virtual = False

    def now_ms(self) -> int:
        return int(time.time() * 1000)

    def wait(self, cond: threading.Condition, until_ms: int | None) -> None:
        """Block on ``cond`` (held) until notified or ``until_ms`` (None: until notified)."""
        if until_ms is None:
            cond.wait()
        else:
            cond.wait(max(0.0, (until_ms - self.now_ms()) / 1000))


def _freezegun_factory():
    try:
        from freezegun import api
    except ImportError:
        return None
    factories = getattr(api, "freeze_factories", None)
    return factories[-1] if factories else None


class VirtualClock:
    """Time that moves only when ``advance_to`` is called."""

    virtual = True

    def __init__(self, start_ms: int | None = None):
        self._ms = int(time.time() * 1000) if start_ms is None else start_ms

    def now_ms(self) -> int:
        return self._ms

    def advance_to(self, ms: int) -> None:
        if ms <= self._ms:
            return
        delta = ms - self._ms
        self._ms = ms
        factory = _freezegun_factory()
        if factory is not None:
            import datetime
            factory.tick(datetime.timedelta(milliseconds=delta))


def check_clock(clock: Any, skip_time: bool) -> None:
    """Refuse a clock that cannot serve the engine's time mode (``LocalEngine(clock=...)``).

    Every clock has ``now_ms() -> int`` (epoch milliseconds). With ``skip_time=True`` the engine moves
    time itself: the clock must be virtual (``virtual = True``) with ``advance_to(ms)``. Without it a
    scheduler thread sleeps until items fall due: the clock must be real (``virtual = False``) with
    ``wait(condition, until_ms)``, since a virtual clock would never reach a due time and the engine
    would hang.
    """
    if not callable(getattr(clock, "now_ms", None)):
        raise ValidationError(f"clock {clock!r} has no now_ms() method; pass a durable_sync.local.clock "
                              "RealClock or VirtualClock, or None for the default")
    virtual = getattr(clock, "virtual", None)
    if skip_time:
        if virtual is not True or not callable(getattr(clock, "advance_to", None)):
            raise ValidationError(f"skip_time=True drives a virtual clock, and {type(clock).__name__} is not one "
                                  "(it needs virtual = True and advance_to(ms)); pass a VirtualClock, or None")
    elif virtual is not False or not callable(getattr(clock, "wait", None)):
        raise ValidationError(f"real time (skip_time=False) needs a real clock, and {type(clock).__name__} is not one "
                              "(it needs virtual = False and wait(condition, until_ms)): a virtual clock never "
                              "reaches a due time there. Pass skip_time=True to use a virtual clock")
