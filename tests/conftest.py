"""Shared pytest setup for the project's own tests."""
from __future__ import annotations

import pytest

from durable_sync.local import LocalEngine


@pytest.fixture
def engine():
    """A fresh in-memory engine on a virtual clock (tests may define their own ``engine``)."""
    eng = LocalEngine(db=":memory:", skip_time=True)
    yield eng
    eng.close()


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: needs network or minutes; runs only with DURABLE_SLOW=1")
    # The durable_runner fixture comes from durable_sync's pytest plugin. When the package is
    # installed (pip install -e .) its pytest11 entry point has registered it already; registering
    # the module a second time would be an error, so add it only when it is missing (not installed,
    # or entry-point autoloading disabled).
    import durable_sync.testing.plugin as plugin

    if not config.pluginmanager.is_registered(plugin):
        config.pluginmanager.register(plugin, "durable_sync.testing.plugin")
