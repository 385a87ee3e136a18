"""``durable-sync``: run, inspect and operate durable executions on the embedded engine.

One module per group of commands: ``run`` (run.py), ``list`` / ``history`` (inspect.py), ``resume``
/ ``pause`` / ``stop`` / ``delete`` / ``callback`` (control.py), ``serve`` and ``console`` (serve.py); what they
share is in common.py, and what ``run`` shows while an execution runs in progress.py.
"""
from __future__ import annotations

import argparse
import sys
from typing import Optional

from .common import (DEFAULT_DB, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, EXIT_WAITING, CliError, err,
                     guarded_stdout, load_handler)
from .control import add_parsers as _control_parsers
from .control import cmd_callback, cmd_delete, cmd_pause, cmd_resume, cmd_stop
from .inspect import add_parsers as _inspect_parsers
from .inspect import cmd_history, cmd_list
from .run import add_parser as _run_parser
from .run import cmd_run
from .serve import add_console_parser, add_serve_parser, cmd_serve

__all__ = ["main", "build_parser", "load_handler", "CliError", "cmd_run", "cmd_list", "cmd_history", "cmd_resume",
           "cmd_pause", "cmd_stop", "cmd_delete", "cmd_callback", "cmd_serve", "DEFAULT_DB", "EXIT_OK",
           "EXIT_FAILED", "EXIT_USAGE", "EXIT_WAITING", "EXIT_INTERRUPTED"]

DESCRIPTION = """Run, inspect and operate durable executions on the embedded engine (no AWS account needed).

REF is an execution's ARN, or its name when unique. The database is durable.db in the current
directory unless --db says otherwise. When a `run` or `serve` in another process owns the database,
callback, pause, resume REF, stop and delete hand their request to it.

exit status: 0 success (run: the execution SUCCEEDED), 1 the execution FAILED / TIMED_OUT / STOPPED
or could not be resumed, 2 a usage or input error (one line on stderr, nothing changed), 3 the
execution waits for something only the outside can give (a callback), 130 interrupted."""

EXAMPLES = """examples:
  durable-sync run examples/order_workflow.py --input '{"order_id": "o-1", "items": [{"sku": "apple", "qty": 3}]}'
  durable-sync list
  durable-sync history NAME --html timeline.html
  durable-sync console    (the live console: http://127.0.0.1:9014/console/)
  durable-sync resume NAME --skip-time
  durable-sync COMMAND --help     (what each command does, with examples)"""


def _version() -> str:
    from .. import __version__

    return (f"durable-sync {__version__} (distribution lambda-durable-sync, Python "
            f"{sys.version_info.major}.{sys.version_info.minor}.{sys.version_info.micro})")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="durable-sync", description=DESCRIPTION, epilog=EXAMPLES,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _run_parser(sub)
    _inspect_parsers(sub)
    _control_parsers(sub)
    add_serve_parser(sub)
    add_console_parser(sub)
    return parser


def main(argv: Optional[list[str]] = None) -> int:
    from ..errors import DurableError
    from ..local.service import ServiceError
    from ..local.store import StoreError

    parser = build_parser()
    args = parser.parse_args(argv)
    with guarded_stdout():  # `durable-sync ... | head`: the command still runs to its end
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
    return EXIT_USAGE
