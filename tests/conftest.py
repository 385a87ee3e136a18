"""Shared pytest setup for the project's own tests."""
from __future__ import annotations

import logging

import pytest

from durable_sync.local import LocalEngine
from durable_sync.logs import USER_LOGGER


@pytest.fixture
def engine():
    """A fresh in-memory engine on a virtual clock (tests may define their own ``engine``)."""
    eng = LocalEngine(db=":memory:", skip_time=True)
    yield eng
    eng.close()


class Capture(logging.Handler):
    """Keeps the records it is given."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def messages(self) -> list[str]:
        return [r.getMessage() for r in self.records]


@pytest.fixture
def captured():
    """Every record of the user logger (``ctx.logger``, ``step_ctx.logger``), at DEBUG and above."""
    handler = Capture()
    old_level = USER_LOGGER.level
    USER_LOGGER.addHandler(handler)
    USER_LOGGER.setLevel(logging.DEBUG)
    yield handler
    USER_LOGGER.removeHandler(handler)
    USER_LOGGER.setLevel(old_level)


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: needs network or minutes; runs only with DURABLE_SLOW=1")
    # The durable_runner fixture comes from durable_sync's pytest plugin. When the package is
    # installed (pip install -e .) its pytest11 entry point has registered it already; registering
    # the module a second time would be an error, so add it only when it is missing (not installed,
    # or entry-point autoloading disabled).
    import durable_sync.testing.plugin as plugin

    if not config.pluginmanager.is_registered(plugin):
        config.pluginmanager.register(plugin, "durable_sync.testing.plugin")
