"""What every command shares: errors and exit codes, handler loading, input, the database, output helpers."""
from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import json
import logging
import os
import sys
from typing import Any, Callable, Iterator, Optional

from .. import wire

DEFAULT_DB = "durable.db"
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_WAITING, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
_STATUSES = wire.EXECUTION_STATUSES
#: Exit status of ``run`` (and ``resume REF``) for each way an execution can stand when the command returns.
EXIT_FOR_STATUS = {"SUCCEEDED": EXIT_OK, "FAILED": EXIT_FAILED, "TIMED_OUT": EXIT_FAILED, "STOPPED": EXIT_FAILED,
                   "RUNNING": EXIT_WAITING}


class CliError(Exception):
    """A one-line error for the user; exits 2 (usage) with nothing changed."""


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


def read_input(value: Optional[str], what: str = "--input") -> tuple[bool, Any]:
    """``(given, value)`` of a JSON argument given inline, as ``file://PATH`` / ``@PATH``, or ``-`` (stdin)."""
    if value is None:
        return False, None
    if value == "-":
        return True, parse_json(sys.stdin.read(), f"{what} (read from stdin)")
    path = value[len("file://"):] if value.startswith("file://") else value[1:] if value.startswith("@") else None
    if path is None:
        return True, parse_json(value, what)
    try:
        with open(path, encoding="utf-8") as source:
            text = source.read()
    except OSError as exc:
        raise CliError(f"{what} {value}: cannot read {path}: {exc.strerror or exc}") from None
    return True, parse_json(text, f"{what} {value}")


def err(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def exec_name(arn: str) -> str:
    """The execution's name in its ARN (the ARN itself when it is not one)."""
    parts = wire.parse_execution_arn(arn)
    return parts.name if parts else arn


def when(ms: Optional[int], *, date: bool = True) -> str:
    """A time for people: local, with its zone (``2026-01-01 14:03:07 CET``; ``14:03:07 CET`` without the date)."""
    if ms is None:
        return ""
    return _dt.datetime.fromtimestamp(ms / 1000).astimezone().strftime(
        "%Y-%m-%d %H:%M:%S %Z" if date else "%H:%M:%S %Z")


def json_default(value: Any) -> Any:
    if isinstance(value, _dt.datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def db_option(parser: argparse.ArgumentParser, memory: bool = False) -> None:
    extra = "; ':memory:' keeps nothing" if memory else ""
    parser.add_argument("--db", default=DEFAULT_DB, metavar="PATH", help=f"SQLite database (default {DEFAULT_DB}{extra})")


def check_db_location(db: str) -> None:
    """A database file can be created where ``db`` points: its directory exists (else a usage error)."""
    if db in ("", ":memory:"):
        return
    directory = os.path.dirname(os.path.abspath(db))
    if not os.path.isdir(directory):
        raise CliError(f"--db {db}: the directory {os.path.dirname(db) or directory} does not exist "
                       "(create it, or pass another --db)")


def verbose_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="show what handlers log with ctx.logger / step.logger (level INFO)")
    parser.add_argument("--log-level", default=None, choices=("DEBUG", "INFO", "WARNING", "ERROR"), type=str.upper,
                        help="the level of those logs (implies --verbose)")


class _CurrentStderr:
    """Writes to whatever ``sys.stderr`` is at the time (the live status line wraps it)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


class _UserLogFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        where = getattr(record, "operation_name", None) or ""
        attempt = getattr(record, "attempt", None)
        if where and attempt and attempt > 1:
            where += f" (attempt {attempt})"
        text = f"    log {record.levelname.lower():<7} {where + ': ' if where else ''}{record.getMessage()}"
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


@contextlib.contextmanager

def user_logs(args: argparse.Namespace) -> Iterator[None]:
    """With ``-v`` / ``--log-level``: what handlers log with ``ctx.logger`` / ``step.logger``, on stderr."""
    level = getattr(args, "log_level", None) or ("INFO" if getattr(args, "verbose", False) else None)
    if level is None:
        yield
        return
    from ..logs import USER_LOGGER

    handler = logging.StreamHandler(_CurrentStderr())  # type: ignore[arg-type]
    handler.setFormatter(_UserLogFormatter())
    previous = USER_LOGGER.level
    USER_LOGGER.addHandler(handler)
    USER_LOGGER.setLevel(level)
    try:
        yield
    finally:
        USER_LOGGER.removeHandler(handler)
        USER_LOGGER.setLevel(previous)


class _GuardedStdout:
    """stdout that survives its reader going away (``durable-sync run ... | head``): the rest is dropped,
    and the command goes on to its end (an execution is never left half-run by a closed pipe)."""

    def __init__(self, inner: Any):
        self._inner = inner
        self.broken = False

    def write(self, text: str) -> int:
        if not self.broken:
            try:
                return self._inner.write(text)
            except (BrokenPipeError, ValueError):
                self._break()
        return len(text)

    def flush(self) -> None:
        if not self.broken:
            try:
                self._inner.flush()
            except (BrokenPipeError, ValueError):
                self._break()

    def _break(self) -> None:
        self.broken = True
        try:  # the interpreter flushes stdout at exit: point it at nothing so that raises nothing either
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.__stdout__.fileno())
            os.close(devnull)
        except (OSError, AttributeError, ValueError):
            pass

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


@contextlib.contextmanager

def guarded_stdout() -> Iterator[None]:
    saved = sys.stdout
    sys.stdout = _GuardedStdout(saved)  # type: ignore[assignment]
    try:
        yield
    finally:
        sys.stdout = saved


def need_file_db(db: str, what: str) -> None:
    if db in ("", ":memory:"):
        raise CliError(f"{what} needs a database file; ':memory:' keeps nothing between commands")
    if not os.path.exists(db):
        raise CliError(f"no durable_sync database at {db} (start an execution with `durable-sync run FILE`, "
                       "or pass --db PATH)")


def open_reader(db: str, what: str) -> Any:
    from ..local.store import Reader

    need_file_db(db, what)
    return Reader(db)


def find_execution(reader: Any, ref: str) -> Any:
    """The database's record of execution REF (an ARN, or a unique name), without its operations and history
    (``reader.operations`` / ``reader.history`` read those)."""
    ex = reader.execution(ref, with_history=False)
    if ex is not None:
        return ex
    matches = reader.executions(name=ref)
    if len(matches) == 1:
        return matches[0]
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
