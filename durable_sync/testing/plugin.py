"""pytest plugin of durable_sync (entry point ``pytest11``: ``durable_sync``).

* ``durable_runner`` fixture: a factory ``durable_runner(handler, functions=None, **options)``
  returning a :class:`~durable_sync.testing.DurableTestRunner`; every runner it made is
  closed at teardown.
* Failed assertions about a ``TestResult`` or an operation view (``assert result.status ==
  "SUCCEEDED"``, ``assert step.status == ...``) show the execution's operation tree.
"""
from __future__ import annotations

from typing import Any, Callable, Iterator, Optional

import pytest

from .results import Status, explain
from .runner import DurableTestRunner


@pytest.fixture
def durable_runner() -> Iterator[Callable[..., DurableTestRunner]]:
    """Factory fixture: ``runner = durable_runner(handler, functions=None, skip_time=True, ...)``."""
    runners: list[DurableTestRunner] = []

    def make(handler: Callable, functions: Optional[dict] = None, **options: Any) -> DurableTestRunner:
        runner = DurableTestRunner(handler, functions=functions, **options)
        runners.append(runner)
        return runner

    yield make
    for runner in runners:
        runner.close()


def pytest_assertrepr_compare(config: Any, op: str, left: Any, right: Any) -> Optional[list[str]]:
    """Explain a failed comparison involving a TestResult, an operation view or their ``status``.

    Kept compact (the tree, no stack trace): pytest shows 8 lines unless run with -vv.
    ``result.assert_succeeded()`` / ``result.describe()`` give the stack trace too.
    """
    explanation = explain(left) or explain(right)
    if explanation is None:
        return None
    if isinstance(left, Status) or isinstance(right, Status):
        head = f"{str(left)!r} {op} {str(right)!r}"
    else:
        head = f"{left!r} {op} {right!r}"
    return [head] + explanation.splitlines()
