"""The fault-injection suite's tally goes into the terminal report (with or without -s)."""
from __future__ import annotations

from .chaos import STATS


def pytest_terminal_summary(terminalreporter):
    if STATS.runs or STATS.scenarios:
        terminalreporter.write_sep("-", "durable_sync fault injection")
        for line in STATS.scenarios:
            terminalreporter.write_line(line)
        terminalreporter.write_line(STATS.line())
