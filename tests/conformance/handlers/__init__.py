"""One handler per conformance requirement, one module per suite.

Each suite module maps requirement ids to durable handlers in ``HANDLERS``. Modules are
imported on demand, so a suite the SDK cannot import yet fails its own tests only.
"""
from __future__ import annotations

import importlib
from typing import Any, Callable

#: Requirements whose handler crashes its process (``os._exit``): they need
#: ``LocalEngine(isolation="process")``.
PROCESS_ISOLATION = frozenset({"step/1-17", "step/1-18", "child/3-12"})


def get_handler(suite: str, rid: str) -> Callable[..., Any]:
    """The handler of one requirement; KeyError when none is written."""
    module = importlib.import_module(f"{__name__}.{suite}")
    try:
        return module.HANDLERS[rid]
    except KeyError:
        raise KeyError(f"no handler for requirement {suite}/{rid} in {module.__name__}.HANDLERS") from None
