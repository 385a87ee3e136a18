"""``ctx.wait``: pause the execution durably.

A WAIT (SubType Wait): START with WaitSeconds (awaited), then the invocation suspends;
the service completes the wait when it is due and re-invokes. On replay a completed
wait returns None, one not yet due suspends again.
"""
from __future__ import annotations

from typing import Any, Optional

from .. import wire
from ..config import checked_delay
from .scope import AWAIT, OperationScope

__all__ = ["wait"]


def wait(scope: OperationScope, duration: Any, name: Optional[str] = None) -> None:
    """Pause for ``duration`` (Duration, timedelta or seconds; 1 s to 366 days)."""
    seconds = checked_delay(duration, "wait duration")
    op = scope.begin(wire.WAIT, wire.SubType.WAIT, name, f"ctx.wait({name or seconds!r})")
    if op.record is not None:
        if op.completed:
            return None
        raise scope.suspend(f"wait {op.label} has not elapsed")
    scope.checkpoint(op, wire.START, AWAIT, WaitOptions={"WaitSeconds": seconds})
    raise scope.suspend(f"wait {op.label} started ({seconds} s)")
