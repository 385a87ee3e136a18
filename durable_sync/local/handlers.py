"""Handler references: how a function is named in text, and how that text is loaded back.

One reference syntax serves the CLI (``durable-sync run FILE[:HANDLER]``, ``serve -f
NAME=FILE:HANDLER``), the engine (a restarted engine imports the handler of an unfinished
execution from the reference it recorded) and process isolation (the child imports the
handler from it):

- ``path/to/file.py:attr`` (``attr`` defaults to ``handler``; a dotted ``attr`` reaches into
  classes): the file is imported as a module of its own (its directory on ``sys.path``);
- ``package.module:qualname``: an importable module.

Which loader a file reference takes is chosen by the file's suffix (``FILE_LOADERS``), so a
handler in another language is one more entry there. ``load`` is the one function that
resolves a reference; ``reference`` is its inverse for a handler object.
"""
from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from typing import Any, Callable, Optional

from ..errors import ValidationError

DEFAULT_ATTR = "handler"
_MODULE_PREFIX = "durable_user_"


class HandlerLoadError(ValidationError):
    """A handler reference that cannot be loaded: no such file, an import error, no such attribute."""


# -- references ---------------------------------------------------------------------------------
def split_reference(spec: str) -> tuple[str, str]:
    """``(target, attr)`` of ``TARGET[:ATTR]`` (a Windows drive letter is part of the path)."""
    if not isinstance(spec, str) or not spec:
        raise HandlerLoadError(f"a handler reference is FILE[:HANDLER] or module:qualname, got {spec!r}")
    target, _, attr = spec.rpartition(":") if ":" in spec else (spec, "", "")
    if len(target) == 1 and target.isalpha() and attr[:1] in "\\/":  # "C:\\dir\\file.py" with no handler
        target, attr = spec, ""
    if not target:
        raise HandlerLoadError(f"handler reference {spec!r} names no file or module")
    return target, attr or DEFAULT_ATTR


def is_file_reference(target: str) -> bool:
    """Whether ``target`` names a file (a known suffix, or a path) rather than a module."""
    return target.endswith(tuple(FILE_LOADERS)) or os.sep in target or "/" in target or os.path.isabs(target)


def reference(handler: Any) -> Optional[str]:
    """A text reference another process can ``load`` ``handler`` from, or None.

    ``__durable_ref__`` when it was loaded from a file; a script's handler ("ABS_FILE:qualname"
    for ``__main__``); else "module:qualname" when importing it gives back this very object.
    """
    ref = getattr(handler, "__durable_ref__", None)
    if ref:
        return ref
    module_name = getattr(handler, "__module__", None)
    qualname = getattr(handler, "__qualname__", None)
    if not module_name or not qualname or "<" in qualname:
        return None
    module = sys.modules.get(module_name)
    if module is None or _lookup(module, qualname) is not handler:
        return None
    if module_name == "__main__":
        path = getattr(module, "__file__", None)
        return f"{os.path.abspath(path)}:{qualname}" if path else None
    return f"{module_name}:{qualname}"


def function_name(target: str, attr: str) -> str:
    """The function name a file's handler is served as by default: the file's base name, plus
    ``-ATTR`` when the handler is not called ``handler``."""
    base = os.path.splitext(os.path.basename(target))[0]
    return base if attr == DEFAULT_ATTR else f"{base}-{attr}"


# -- loading ------------------------------------------------------------------------------------
def load(spec: str, *, fresh: bool = False) -> Callable:
    """The callable a reference names (see the module docstring); HandlerLoadError when it cannot be.

    ``fresh`` executes a file again even if it was imported before (the CLI does, so that each
    command sees the file as a new process would). A handler loaded from a file remembers its
    reference (``__durable_ref__``, with the absolute path), so a restarted engine or a child process
    loads the same file.
    """
    target, attr = split_reference(spec)
    if is_file_reference(target):
        loader = FILE_LOADERS.get(os.path.splitext(target)[1])
        if loader is None:
            kinds = ", ".join(sorted(FILE_LOADERS))
            raise HandlerLoadError(f"handler file {target!r} is not of a kind the engine runs ({kinds})")
        if not os.path.isfile(target):
            raise HandlerLoadError(f"handler file {target!r} does not exist")
        handler = loader(target, attr, fresh)
        ref = f"{os.path.abspath(target)}:{attr}"
        if getattr(handler, "__durable_ref__", None) is None:
            try:
                handler.__durable_ref__ = ref
            except (AttributeError, TypeError):
                pass
        return handler
    try:
        module = importlib.import_module(target)
    except ImportError as exc:
        raise HandlerLoadError(f"cannot import module {target!r}: {exc}") from None
    except BaseException as exc:  # noqa: BLE001 - any failure of the user's module (even sys.exit)
        if isinstance(exc, KeyboardInterrupt):
            raise
        raise HandlerLoadError(f"could not import {target}: {type(exc).__name__}: {exc}") from None
    handler = _lookup(module, attr)
    if handler is None:
        raise HandlerLoadError(f"module {target} has no attribute {attr!r}")
    if not callable(handler):
        raise HandlerLoadError(f"{target}:{attr} is not callable")
    return handler


def resolve(handler: Any) -> Callable:
    """A function given to the engine as a callable or as a reference (``"path/handler.js:handler"``,
    ``"path/file.py:handler"``): the callable, loaded when it is a reference."""
    return load(handler) if isinstance(handler, str) else handler


def load_python_file(path: str, attr: str, fresh: bool = False) -> Callable:
    """Import the module at ``path`` (its directory goes on sys.path) and return its callable ``attr``.

    The module is cached under a ``durable_user_<name>`` name; ``fresh`` executes it again.
    """
    module = _import_file(path, fresh)
    handler = _lookup(module, attr)
    if handler is None or not callable(handler):
        names = sorted(n for n, v in vars(module).items() if hasattr(v, "__durable_function__"))
        hint = f"; durable handlers in it: {', '.join(names)}" if names else ""
        raise HandlerLoadError(f"{path} has no callable {attr!r}{hint} (use FILE:HANDLER)")
    return handler


def load_node_file(path: str, attr: str, fresh: bool = False) -> Callable:
    """The Node.js handler ``attr`` of the module at ``path``, checked by loading it in Node
    (``node_runtime.load_node_handler``); each invocation then runs in a Node process."""
    from .node_runtime import load_node_handler  # node_runtime raises this module's HandlerLoadError

    return load_node_handler(path, attr)


#: File suffix -> loader(path, attr, fresh) of a handler in such a file.
FILE_LOADERS: dict[str, Callable[[str, str, bool], Callable]] = {
    ".py": load_python_file, ".js": load_node_file, ".mjs": load_node_file, ".cjs": load_node_file}


def _import_file(path: str, fresh: bool) -> Any:
    base = os.path.splitext(os.path.basename(path))[0]
    module_name = _MODULE_PREFIX + "".join(ch if ch.isalnum() else "_" for ch in base)
    module = sys.modules.get(module_name)
    if not fresh and module is not None and \
            os.path.abspath(getattr(module, "__file__", "") or "") == os.path.abspath(path):
        return module
    directory = os.path.dirname(os.path.abspath(path))
    if directory not in sys.path:
        sys.path.insert(0, directory)
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise HandlerLoadError(f"{path} is not a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException as exc:  # noqa: BLE001 - any import failure (even sys.exit) is the user's file
        sys.modules.pop(module_name, None)
        if isinstance(exc, KeyboardInterrupt):
            raise
        raise HandlerLoadError(f"could not import {path}: {type(exc).__name__}: {exc}") from None
    return module


def _lookup(obj: Any, qualname: str) -> Any:
    for part in qualname.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj


# -- the durable handlers of a file ------------------------------------------------------------
def load_durable(spec: str, *, fresh: bool = True) -> Callable:
    """``load`` for a handler the engine runs as a durable function: any Lambda handler ``(event,
    lambda_context)`` (durable_sync's ``@durable_handler``, the official SDK's ``@durable_execution``, or
    one that talks to the service through boto3 itself); names it after its file
    (``__durable_function_name__``, see ``function_name``) unless it names itself."""
    handler = load(spec, fresh=fresh)  # refuses what is not callable
    target, attr = split_reference(spec)
    if not hasattr(handler, "__durable_function_name__"):
        handler.__durable_function_name__ = function_name(target, attr)
    return handler


def module_functions(handler: Callable, path: str) -> dict[str, Callable]:
    """The handler file's ``FUNCTIONS = {"name": handler}``: the functions ``ctx.invoke`` can call by name.

    Each durable one found at module level gets a reference, so a restarted engine imports it from the file.
    """
    module = sys.modules.get(getattr(handler, "__module__", None) or "")
    table = getattr(module, "FUNCTIONS", None) if module is not None else None
    if table is None:
        return {}
    if not isinstance(table, dict) or not all(isinstance(k, str) and callable(v) for k, v in table.items()):
        raise HandlerLoadError(f"{path}: FUNCTIONS must be a dict of function name -> handler (a callable)")
    file = os.path.abspath(getattr(module, "__file__", None) or path)
    for fn in table.values():
        attr = next((a for a, v in vars(module).items() if v is fn and a != "FUNCTIONS"), None)
        if attr and hasattr(fn, "__durable_function__") and not hasattr(fn, "__durable_ref__"):
            fn.__durable_ref__ = f"{file}:{attr}"
    return dict(table)
