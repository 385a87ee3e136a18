"""Clocks of the local engine: real time, or a virtual clock driven by the caller.

The virtual clock never waits on real time. When freezegun is active, moving the
virtual clock moves the frozen clock too, so code under ``freeze_time`` sees time
advance by exactly the durable delay.
"""
from __future__ import annotations

import threading
import time


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
