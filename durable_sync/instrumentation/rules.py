"""When operation hooks fire: the start / end rules, as pure functions of recorded operation states.

- An operation fires at most ONE live start (``is_replayed=False``) in its whole life: when the
  code reaches it and the service has no record of it. Reached again while its record is
  unfinished (a wait not yet elapsed, a retry due, a context whose children still run), it fires
  a replayed start (``is_replayed=True``).
- An operation fires exactly one end, in the first invocation that sees it terminal: the one
  whose own checkpoint (or a checkpoint response) made it terminal, or — when it became terminal
  while the execution was suspended (a wait that fired, a callback answered) — the next
  invocation, which finds its id among the envelope's ``UpdatedOperationIds``. Later replays of a
  terminal operation fire nothing.

The dispatcher (``dispatch.py``) applies these rules; the tests check them on recorded states.
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping, Optional

from .. import wire

LIVE_START = "live-start"
REPLAYED_START = "replayed-start"
END = "end"
NOTHING = "nothing"


def is_terminal(status: Optional[str]) -> bool:
    return status in wire.TERMINAL


def end_is_owed(initial_status: Optional[str], current_status: Optional[str], updated: bool, fired: bool) -> bool:
    """Whether this invocation owes an operation its end hook.

    ``initial_status``: its status in the envelope (None when absent); ``current_status``: its status
    now; ``updated``: its id is among the envelope's UpdatedOperationIds; ``fired``: this invocation
    already reported its end.
    """
    if fired or not is_terminal(current_status):
        return False
    return not is_terminal(initial_status) or updated


def on_begin(record: Optional[Mapping[str, Any]], initial_status: Optional[str], updated: bool,
             fired: bool) -> str:
    """What the code reaching an operation fires, given the record it finds (None: a new operation)."""
    if record is None:
        return LIVE_START
    status = record.get("Status")
    if not is_terminal(status):
        return REPLAYED_START
    return END if end_is_owed(initial_status, status, updated, fired) else NOTHING


def ends_owed(initial: Mapping[str, Optional[str]], current: Iterable[Mapping[str, Any]],
              updated_ids: frozenset, fired: set) -> list[str]:
    """Operations (in ``current``'s order) whose end is still owed when the invocation ends.

    ``initial``: id -> status at the invocation's start; ``current``: the records now. The
    EXECUTION operation is not an operation for these hooks.
    """
    return [op["Id"] for op in current
            if op.get("Type") != wire.EXECUTION
            and end_is_owed(initial.get(op["Id"]), op.get("Status"), op["Id"] in updated_ids, op["Id"] in fired)]
