"""``durable-sync``: run, inspect and operate durable executions on the local engine.

  durable-sync run FILE[:HANDLER] --input JSON [--db PATH] [--name NAME] [--skip-time]
  durable-sync list [--db PATH] [--function F] [--status S] [--name N] [--json]
  durable-sync history ARN|NAME [--db PATH] [--json] [--html PATH]
  durable-sync resume [REF [--reason TEXT]] [--db PATH] [--skip-time]
  durable-sync callback succeed|fail|heartbeat CALLBACK_ID [PAYLOAD] [--db PATH] [--skip-time]
  durable-sync pause REF [--reason TEXT] [--db PATH]
  durable-sync delete REF [--db PATH]
  durable-sync serve ...

REF is an execution ARN, or its name when unique. When an engine in another process owns the
database (a ``run`` or ``serve`` in progress), callback answers and pause / resume / delete are
handed to it through the database's inbox.

The database defaults to ``durable.db`` in the current directory. Exit status: 0 success
(``run``: the execution SUCCEEDED), 1 the execution FAILED / TIMED_OUT / STOPPED or could
not be resumed, 2 a usage or input error (one line on stderr, nothing changed), 3 the
execution waits for something only the outside can give (a callback); 130 interrupted.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Optional

from .common import (DEFAULT_DB, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, EXIT_WAITING, _STATUSES,
                     CliError, err, load_handler)
from .control import cmd_callback, cmd_delete, cmd_pause, cmd_resume
from .inspect import cmd_history, cmd_list
from .run import cmd_run
from .serve import add_serve_parser, cmd_serve

__all__ = ["main", "build_parser", "load_handler", "CliError", "cmd_serve", "EXIT_OK", "EXIT_FAILED", "EXIT_USAGE",
           "EXIT_WAITING", "EXIT_INTERRUPTED"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="durable-sync", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    def db_option(p: argparse.ArgumentParser) -> None:
        p.add_argument("--db", default=DEFAULT_DB, help=f"SQLite database (default {DEFAULT_DB})")

    run = sub.add_parser("run", help="run a durable handler to completion on the embedded engine")
    run.add_argument("file", help="FILE[:HANDLER] (HANDLER defaults to 'handler')")
    run.add_argument("--input", default=None, help="the event, as JSON")
    run.add_argument("--db", default=DEFAULT_DB, help=f"SQLite database (default {DEFAULT_DB}; ':memory:' for none)")
    run.add_argument("--name", default=None,
                     help="execution name; an existing execution of that name is attached to (resumed if unfinished)")
    run.add_argument("--skip-time", action="store_true", help="virtual time: waits and retries take no real time")
    run.set_defaults(func=cmd_run)

    lst = sub.add_parser("list", help="list executions in the database")
    db_option(lst)
    lst.add_argument("--function", default=None, help="only this function")
    lst.add_argument("--status", default=None, help=f"only this status ({', '.join(_STATUSES)})")
    lst.add_argument("--name", default=None, help="only this execution name")
    lst.add_argument("--json", action="store_true", help="JSON, as ListDurableExecutionsByFunction")
    lst.set_defaults(func=cmd_list)

    hist = sub.add_parser("history", help="the operations of an execution as a tree (or its raw events)")
    hist.add_argument("ref", metavar="REF", help="execution ARN (or its name, when unique)")
    db_option(hist)
    hist.add_argument("--json", action="store_true", help="the raw history events, as boto3 returns them")
    hist.add_argument("--traceback", action="store_true",
                      help="the stack trace of every failed attempt (the execution's own error shows its trace anyway)")
    hist.add_argument("--html", metavar="PATH", default=None,
                      help="also write a self-contained HTML timeline of the execution to PATH")
    hist.set_defaults(func=cmd_history)

    def wait_option(p: argparse.ArgumentParser, what: str) -> None:
        p.add_argument("--wait", type=float, default=10.0, metavar="SECONDS",
                       help=f"seconds to wait for a running engine that owns the database to take the {what} "
                            "(default 10)")

    res = sub.add_parser(
        "resume", help="run unfinished executions onward; with REF, end that execution's pause and run it onward",
        description="Without REF: run every unfinished execution in the database onward. Paused executions stay "
                    "paused: the engine does not invoke them (their waits, retries and callbacks still complete) "
                    "until they are resumed by name. With REF: resume that execution if it is paused "
                    "(ResumeDurableExecution), then run it onward; when an engine in another process owns the "
                    "database, the resume is handed to it and it runs the execution.")
    res.add_argument("ref", metavar="REF", nargs="?", default=None,
                     help="only this execution (ARN, or its name when unique): ends its pause first if it is paused")
    db_option(res)
    res.add_argument("--skip-time", action="store_true", help="virtual time: fast-forward waits and retries")
    res.add_argument("--reason", default=None, metavar="TEXT",
                     help="with REF: why it is resumed (recorded in its history, ExecutionResumed)")
    wait_option(res, "resume")
    res.set_defaults(func=cmd_resume)

    pause = sub.add_parser(
        "pause", help="pause an execution: no invocation until `durable-sync resume REF`",
        description="PauseDurableExecution: the engine does not invoke the execution until it is resumed "
                    "(`durable-sync resume REF`); its waits, retries and callbacks go on completing, and its "
                    "execution timeout is held. PAUSED at once, or PAUSING while an invocation is in flight "
                    "(PAUSED at its next checkpoint). Prints the resulting state.")
    pause.add_argument("ref", metavar="REF", help="execution ARN (or its name, when unique)")
    pause.add_argument("--reason", default=None, metavar="TEXT",
                       help="why it is paused (recorded in its history, ExecutionPaused)")
    db_option(pause)
    wait_option(pause, "pause")
    pause.set_defaults(func=cmd_pause)

    delete = sub.add_parser(
        "delete", help="delete an ended execution with its history",
        description="DeleteDurableExecution: remove an ended execution (SUCCEEDED, FAILED, STOPPED or TIMED_OUT) "
                    "with its operations, history, input and result; its name may be used again. A running "
                    "(or paused) execution is refused.")
    delete.add_argument("ref", metavar="REF", help="execution ARN (or its name, when unique)")
    db_option(delete)
    wait_option(delete, "delete")
    delete.set_defaults(func=cmd_delete)

    cb = sub.add_parser("callback", help="answer a callback, then run its execution onward")
    cb.add_argument("action", choices=("succeed", "fail", "heartbeat"))
    cb.add_argument("callback_id", metavar="CALLBACK_ID")
    cb.add_argument("payload", metavar="PAYLOAD", nargs="?", default=None,
                    help="succeed: the result (JSON); fail: an ErrorObject (JSON) or a message")
    db_option(cb)
    cb.add_argument("--raw", action="store_true", help="succeed: send PAYLOAD as is, even if it is not JSON")
    cb.add_argument("--skip-time", action="store_true",
                    help="after answering, fast-forward the execution's waits and retries in virtual time")
    wait_option(cb, "answer")
    cb.set_defaults(func=cmd_callback)

    add_serve_parser(sub)
    return parser


def main(argv: Optional[list[str]] = None) -> int:
    from ..errors import DurableError
    from ..local.service import ServiceError
    from ..local.sqlite_store import StoreError

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (CliError, StoreError) as exc:
        err(f"durable-sync: error: {exc}")
    except ServiceError as exc:
        err(f"durable-sync: error: {exc.message}")
    except DurableError as exc:
        err(f"durable-sync: error: {type(exc).__name__}: {exc}")
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `durable-sync history ... | head`
        try:
            sys.stdout = open(os.devnull, "w")
        except OSError:
            pass
        return EXIT_OK
    return EXIT_USAGE
