"""Which plugins an invocation gets: entries of ``plugins=[...]`` and of ``DURABLE_SYNC_PLUGINS``.

An entry is one of:
- a plugin instance (an :class:`InstrumentationPlugin`, or an official-SDK plugin instance):
  every invocation uses it;
- an official-SDK plugin factory (an object with ``create_plugin(info)``): called once per
  invocation with that invocation's official ``InvocationStartInfo``;
- a factory: a zero-argument callable (e.g. the plugin class) called once per invocation.

``DURABLE_SYNC_PLUGINS`` names entry points (comma-separated) of the group
``durable_sync.plugins``; each resolves to an entry as above. They are looked up on the first
invocation of the process (cold start) and cached; ``importlib.metadata`` is imported only
when the variable is set, so plugins cost nothing at import.
"""
from __future__ import annotations

import logging
import os
import threading
from typing import Any, Callable, Optional, Sequence

from ..errors import ValidationError
from .api import HOOKS, InstrumentationPlugin, InvocationStartInfo

ENV_VAR = "DURABLE_SYNC_PLUGINS"
ENTRY_POINT_GROUP = "durable_sync.plugins"

log = logging.getLogger("durable_sync.plugins")


class Source:
    """One registered entry; ``create(info)`` gives the plugin this invocation uses (or None)."""

    __slots__ = ("label", "_make")

    def __init__(self, label: str, make: Callable[[InvocationStartInfo], Any]):
        self.label = label
        self._make = make

    def create(self, info: InvocationStartInfo) -> Optional[Any]:
        """The plugin for one invocation; a factory that raises or returns nothing usable is logged
        and skipped for this invocation (the execution goes on)."""
        try:
            plugin = self._make(info)
        except Exception:  # noqa: BLE001 - a plugin never changes the execution's outcome
            log.exception("instrumentation plugin factory %s raised; this invocation runs without it", self.label)
            return None
        usable = as_plugin(plugin)
        if usable is None:
            log.error("instrumentation plugin factory %s returned %s, not a plugin (an InstrumentationPlugin "
                      "with on_* hooks); this invocation runs without it", self.label, _describe(plugin))
        return usable


def _describe(value: Any) -> str:
    if isinstance(value, type):
        return f"the class {value.__module__}.{value.__qualname__}"
    return f"a {type(value).__module__}.{type(value).__qualname__}"


def as_plugin(obj: Any) -> Optional[Any]:
    """``obj`` as a plugin with our hooks: ours as is, an official-SDK plugin wrapped; else None."""
    from . import official

    if isinstance(obj, InstrumentationPlugin):
        return obj
    if official.is_official_plugin(obj):
        return official.OfficialPlugin(obj)
    if obj is not None and not isinstance(obj, type) and any(callable(getattr(obj, h, None)) for h in HOOKS):
        return obj  # duck-typed: an object with some of the hooks
    return None


def source(entry: Any, where: str) -> Source:
    """Classify one entry; ValidationError naming ``where`` when it is none of the accepted kinds."""
    from . import official

    label = f"{where} ({_describe(entry)})"
    if not isinstance(entry, type):
        plugin = as_plugin(entry)
        if plugin is not None:
            return Source(label, lambda info, p=plugin: p)
        if callable(getattr(entry, "create_plugin", None)):
            return Source(label, lambda info, f=entry: official.create(f, info))
    if callable(entry):
        return Source(label, lambda info, f=entry: f())
    raise ValidationError(
        f"{where} is {_describe(entry)}, which is not an instrumentation plugin: pass an InstrumentationPlugin "
        "instance, a zero-argument factory such as the plugin class (called once per invocation), or an "
        "official-SDK plugin factory (an object with create_plugin(info))")


def explicit_sources(plugins: Optional[Sequence[Any]]) -> list[Source]:
    """The ``plugins=[...]`` of ``@durable_handler``, checked when the handler is decorated."""
    if plugins is None:
        return []
    if isinstance(plugins, (str, bytes)) or not isinstance(plugins, (list, tuple)):
        raise ValidationError(f"plugins= takes a list of plugins or factories, got {type(plugins).__name__}")
    return [source(entry, f"plugins[{index}]") for index, entry in enumerate(plugins)]


_configured: dict[str, list[Source]] = {}
_configured_lock = threading.Lock()
_process: list[Source] = []  # add_process_plugin(); replaced, never mutated, so readers need no lock


def add_process_plugin(entry: Any) -> Callable[[], None]:
    """Give every durable handler of this process the plugin ``entry`` (an instance or a factory, as in
    ``plugins=[...]``), as if ``DURABLE_SYNC_PLUGINS`` named it; returns a function that takes it away.
    Used by tools that run other people's handlers (``durable-sync run --trace``)."""
    global _process
    added = source(entry, "a process plugin")
    with _configured_lock:
        _process = [*_process, added]

    def remove() -> None:
        global _process
        with _configured_lock:
            _process = [s for s in _process if s is not added]
    return remove


def configured_sources(environ: Any = None) -> list[Source]:
    """The process plugins and the entries ``DURABLE_SYNC_PLUGINS`` names (loaded once per value)."""
    value = (os.environ if environ is None else environ).get(ENV_VAR)
    if not value or not value.strip():
        return _process
    found = _configured.get(value)
    if found is None:
        with _configured_lock:
            found = _configured.get(value)
            if found is None:
                found = _configured[value] = _load(value)
    return [*_process, *found] if _process else found


def _load(value: str) -> list[Source]:
    """Resolve the names of ``DURABLE_SYNC_PLUGINS``. A name that cannot be resolved is logged as an
    error (naming what is installed) and left out: a plugin never stops the function."""
    from importlib import metadata

    names = [n.strip() for n in value.split(",") if n.strip()]
    try:
        points = list(metadata.entry_points(group=ENTRY_POINT_GROUP))
    except Exception:  # noqa: BLE001
        log.exception("%s=%r: could not list the entry points of group %r", ENV_VAR, value, ENTRY_POINT_GROUP)
        return []
    by_name: dict[str, list[Any]] = {}
    for point in points:
        by_name.setdefault(point.name, []).append(point)
    sources: list[Source] = []
    for name in dict.fromkeys(names):  # a repeated name registers once
        matching = by_name.get(name, [])
        if len(matching) != 1:
            installed = ", ".join(sorted(by_name)) or "none"
            problem = "no entry point" if not matching else f"{len(matching)} entry points"
            log.error("%s names %r but there is %s of that name in group %r (installed: %s); install the package "
                      "that provides it (one only) or fix %s. The function runs without it.",
                      ENV_VAR, name, problem, ENTRY_POINT_GROUP, installed, ENV_VAR)
            continue
        try:
            entry = matching[0].load()
            sources.append(source(entry, f"{ENV_VAR} entry {name!r} ({matching[0].value})"))
        except Exception:  # noqa: BLE001 - import error or not a plugin: logged, left out
            log.exception("%s entry %r (%s) could not be loaded; the function runs without it",
                          ENV_VAR, name, matching[0].value)
    return sources
