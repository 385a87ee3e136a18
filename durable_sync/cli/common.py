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
    """Import the durable handler ``FILE[:HANDLER]`` (HANDLER defaults to ``handler``)."""
    from ..local.handlers import HandlerLoadError, load_durable

    try:
        return load_durable(spec, fresh=True)
    except HandlerLoadError as exc:
        raise CliError(str(exc)) from None


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
    """The handler file's ``FUNCTIONS = {"name": handler}`` (see durable_sync.local.handlers.module_functions)."""
    from ..local.handlers import HandlerLoadError, module_functions

    try:
        return module_functions(handler, path)
    except HandlerLoadError as exc:
        raise CliError(str(exc)) from None


def resolve_handlers(executions: list) -> tuple[dict[str, Callable], dict[str, str]]:
    """Import the handler of each execution from its reference: (function -> handler, arn -> problem)."""
    from ..local.handlers import load as load_handler_ref

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
