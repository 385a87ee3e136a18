"""Runs last in this directory: prints the suite's summary line and checks its totals.

The same line is written to the terminal report at the end of the session (conftest.py)."""
from __future__ import annotations

from .chaos import STATS


def test_summary_line():
    line = STATS.line()
    print("\n" + "\n".join(STATS.scenarios) + "\n" + line)
    assert STATS.lost == 0, line
    assert STATS.duplicates == 0, line
    assert STATS.completed <= STATS.runs, line
