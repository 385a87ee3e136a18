"""What every command shares: errors and exit codes, handler loading, the database, output helpers."""
from __future__ import annotations

import datetime as _dt
import json
import os
import sys
from typing import Any, Callable, Optional


DEFAULT_DB = "durable.db"
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_WAITING, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
_STATUSES = ("RUNNING", "SUCCEEDED", "FAILED", "TIMED_OUT", "STOPPED")


class CliError(Exception):
    """A one-line error for the user; exits non-zero."""

def load_handler(spec: str) -> Callable:
    """Import ``FILE[:HANDLER]`` (HANDLER defaults to ``handler``)."""
    from ..local.isolation import load_file_handler

    path, _, attr = spec.partition(":")
    if len(path) == 1 and attr and attr[:1] in "\\/":  # a Windows drive letter, not FILE:HANDLER
        path, _, attr = spec[2:].partition(":")
        path = spec[:2] + path
    attr = attr or "handler"
    if not os.path.isfile(path):
        raise CliError(f"handler file {path!r} does not exist")
    try:
        handler = load_file_handler(path, attr, fresh=True)
    except ImportError as exc:
        if "has no attribute" not in str(exc):
            raise CliError(f"could not import {path}: {exc}") from None
        handler = None
    except BaseException as exc:  # noqa: BLE001 - any import failure (even sys.exit) is the user's file
        if isinstance(exc, KeyboardInterrupt):
            raise
        raise CliError(f"could not import {path}: {type(exc).__name__}: {exc}") from None
    if handler is None or not callable(handler):
        module = sys.modules.get("durable_user_" + "".join(
            ch if ch.isalnum() else "_" for ch in os.path.splitext(os.path.basename(path))[0]))
        names = sorted(n for n, v in vars(module).items() if hasattr(v, "__durable_function__")) if module else []
        hint = f"; durable handlers in it: {', '.join(names)}" if names else ""
        raise CliError(f"{path} has no callable {attr!r}{hint} (use FILE:HANDLER)")
    if not hasattr(handler, "__durable_function__"):
        raise CliError(f"{path}:{attr} is not decorated with @durable_sync.durable_handler")
    handler.__durable_ref__ = f"{os.path.abspath(path)}:{attr}"
    if not hasattr(handler, "__durable_function_name__"):
        base = os.path.splitext(os.path.basename(path))[0]
        handler.__durable_function_name__ = base if attr == "handler" else f"{base}-{attr}"
    return handler

def parse_json(text: Optional[str], what: str) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise CliError(f"{what} is not valid JSON ({exc.msg} at position {exc.pos}): {text!r:.80}") from None

def err(text: str) -> None:
    print(text, file=sys.stderr, flush=True)

def exec_name(arn: str) -> str:
    parts = arn.split("/")
    return parts[-2] if len(parts) >= 3 else arn

def when(ms: Optional[int]) -> str:
    if ms is None:
        return ""
    return _dt.datetime.fromtimestamp(ms / 1000).strftime("%Y-%m-%d %H:%M:%S")

def json_default(value: Any) -> Any:
    if isinstance(value, _dt.datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)

def need_file_db(db: str, what: str) -> None:
    if db in ("", ":memory:"):
        raise CliError(f"{what} needs a database file; ':memory:' keeps nothing between commands")
    if not os.path.exists(db):
        raise CliError(f"no durable_sync database at {db} (start an execution with `durable-sync run FILE`, "
                       "or pass --db PATH)")

def open_reader(db: str, what: str) -> Any:
    from ..local.sqlite_store import Reader

    need_file_db(db, what)
    return Reader(db)

def find_execution(reader: Any, ref: str) -> Any:
    ex = reader.execution(ref)
    if ex is not None:
        return ex
    matches = reader.executions(name=ref)
    if len(matches) == 1:
        return reader.execution(matches[0].arn)
    if len(matches) > 1:
        raise CliError(f"{len(matches)} executions are named {ref!r} (functions "
                       f"{', '.join(m.function_name for m in matches)}); pass the ARN")
    raise CliError(f"no execution {ref!r} in {reader.path} (see `durable-sync list`)")

def title(ex: Any) -> str:
    return f"{ex.function_name} / {ex.name}"

def module_functions(handler: Callable, path: str) -> dict[str, Callable]:
    """The handler file's ``FUNCTIONS = {"name": handler}``: the functions ``ctx.invoke`` can call by name."""
    module = sys.modules.get(getattr(handler, "__module__", None) or "")
    table = getattr(module, "FUNCTIONS", None) if module is not None else None
    if table is None:
        return {}
    if not isinstance(table, dict) or not all(isinstance(k, str) and callable(v) for k, v in table.items()):
        raise CliError(f"{path}: FUNCTIONS must be a dict of function name -> handler (a callable)")
    file = os.path.abspath(getattr(module, "__file__", None) or path)
    for fn in table.values():
        attr = next((a for a, v in vars(module).items() if v is fn and a != "FUNCTIONS"), None)
        if attr and hasattr(fn, "__durable_function__") and not hasattr(fn, "__durable_ref__"):
            fn.__durable_ref__ = f"{file}:{attr}"  # a restarted engine imports the target from the file
    return dict(table)

def resolve_handlers(executions: list) -> tuple[dict[str, Callable], dict[str, str]]:
    """Import the handler of each execution from its reference: (function -> handler, arn -> problem)."""
    from ..local.isolation import load_handler_ref

    functions: dict[str, Callable] = {}
    problems: dict[str, str] = {}
    failed: dict[str, str] = {}
    for ex in executions:
        fn = ex.function_name
        if fn in functions:
            continue
        if fn in failed:
            problems[ex.arn] = failed[fn]
            continue
        if not ex.handler_ref:
            failed[fn] = (f"function {fn!r} is missing: the execution records no handler reference "
                          "(it was started from code that cannot be imported by name)")
        else:
            try:
                functions[fn] = load_handler_ref(ex.handler_ref)
                continue
            except (Exception, SystemExit) as exc:  # noqa: BLE001 - reported per execution
                failed[fn] = f"function {fn!r} is missing: cannot import {ex.handler_ref} ({type(exc).__name__}: {exc})"
        problems[ex.arn] = failed[fn]
    return functions, problems
