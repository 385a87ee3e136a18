"""``durable-sync serve``: the Lambda API over HTTP (``durable_sync.local.http``) on the embedded engine, with the
live console (``durable_sync.console``) under ``/console/``; ``durable-sync console`` is the same server, for the
console."""
from __future__ import annotations

import argparse
import os
import re
import signal
import sys
import threading
from typing import Any, Callable

from .common import CliError, check_db_location, load_handler, user_logs, verbose_options

_FUNCTION_NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def add_serve_parser(sub: Any) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "serve", help="serve the Lambda API (durable operations + Invoke) over HTTP for boto3 and the AWS CLI",
        description="Serve the Lambda REST API for durable executions on the embedded engine. Point boto3 or the "
                    "AWS CLI at it with AWS_ENDPOINT_URL_LAMBDA=http://HOST:PORT (or --endpoint-url).",
        epilog="examples:\n  durable-sync serve -f examples/order_workflow.py --skip-time\n"
               "  AWS_ENDPOINT_URL_LAMBDA=http://127.0.0.1:9014 aws lambda invoke --function-name order_workflow \\\n"
               "      --durable-execution-name o-1 --payload '{\"order_id\": \"o-1\", \"items\": []}' out.json",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    _server_options(p)
    p.set_defaults(func=cmd_serve, console_first=False)
    return p


def add_console_parser(sub: Any) -> argparse.ArgumentParser:
    from ..local.http import DEFAULT_HOST, DEFAULT_PORT

    p = sub.add_parser(
        "console", help="the live console in a browser: executions, timelines, callbacks, stop / pause / resume",
        description="Serve the live console of the database's executions at http://HOST:PORT/console/ (the "
                    "`durable-sync serve` server: the Lambda API is served too). Watch executions run, answer "
                    "callbacks, stop, pause, resume, delete or run them again from the page. Listens on "
                    f"{DEFAULT_HOST} only unless --host says otherwise.",
        epilog=f"examples:\n  durable-sync console    # durable.db, http://{DEFAULT_HOST}:{DEFAULT_PORT}/console/\n"
               "  durable-sync console -f examples/human_approval.py --open",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    _server_options(p)
    p.add_argument("--open", action="store_true", help="open the console in the default web browser")
    p.set_defaults(func=cmd_serve, console_first=True)
    return p


def _server_options(p: argparse.ArgumentParser) -> None:
    from ..local.http import DEFAULT_HOST, DEFAULT_INVOKE_TIMEOUT, DEFAULT_PORT

    p.add_argument("--host", default=DEFAULT_HOST, help=f"address to bind (default {DEFAULT_HOST}; there is no auth)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT}; 0 picks one)")
    p.add_argument("--db", default="durable.db", help="SQLite database (default durable.db; ':memory:' for none)")
    p.add_argument("--skip-time", action="store_true",
                   help="virtual time: waits, retries and polling take no real time; callback timeouts and "
                        "heartbeat timeouts still take real time, so clients have the time to answer")
    p.add_argument("--function", "-f", action="append", default=[], metavar="[NAME=]FILE[:HANDLER]",
                   help="a handler to serve as function NAME (default: the file's name): durable_sync's, the "
                        "official AWS SDK's or any Lambda handler reaching the engine through boto3; repeatable")
    p.add_argument("--invoke-timeout", type=float, default=DEFAULT_INVOKE_TIMEOUT,
                   help="seconds a RequestResponse Invoke waits for the execution (default 900)")
    verbose_options(p)


def _load_functions(specs: list[str]) -> dict[str, Callable]:
    """``serve -f [NAME=]FILE[:HANDLER]``: the functions to serve, by name."""
    from ..local.http import named_function

    functions: dict[str, Callable] = {}
    for spec in specs:
        name, sep, target = spec.partition("=")
        if not sep or "/" in name or "\\" in name or name.endswith((".py", ".py:")):
            name, target = "", spec
        handler = load_handler(target)
        name = name or handler.__durable_function_name__
        if not _FUNCTION_NAME_RE.match(name):
            raise CliError(f"function name {name!r} must be 1-64 characters of [A-Za-z0-9_-] (use NAME=FILE:HANDLER)")
        if name in functions:
            raise CliError(f"function {name!r} is given twice")
        functions[name] = named_function(name, handler)
    return functions


def cmd_serve(args: argparse.Namespace) -> int:
    functions = _load_functions(args.function)
    check_db_location(args.db)
    with user_logs(args):
        return _serve(args, functions)


def _serve(args: argparse.Namespace, functions: dict) -> int:
    from ..console import PREFIX as CONSOLE_PREFIX
    from ..console import mount as mount_console
    from ..local import LocalEngine
    from ..local.http import make_server

    # --skip-time: waits, retries and polling take no time, but a callback's timeouts keep real time (a client
    # always has the configured time to answer). Unfinished executions in the database run once the server
    # serves (run_unfinished below): handlers that reach the engine over HTTP need its URL.
    engine = LocalEngine(db=args.db, skip_time=args.skip_time, functions=functions,
                         real_time_callbacks=args.skip_time, resume_unfinished=False)
    try:
        try:
            server = make_server(engine, args.host, args.port, functions=functions,
                                 invoke_timeout=args.invoke_timeout)
        except OSError as exc:
            raise CliError(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}") from None
        os.environ.update(engine.foreign.environment())  # boto3 in the served handlers reaches this server
        mount_console(server)
        if args.host not in ("127.0.0.1", "localhost", "::1"):
            print(f"durable-sync: warning: listening on {args.host} with no authentication", file=sys.stderr)
        names = ", ".join(sorted(functions)) or "none (add --function NAME=FILE:HANDLER)"
        console_url = f"{server.url}{CONSOLE_PREFIX}/"
        time_mode = f"db {args.db}, {'virtual' if args.skip_time else 'real'} time"
        if args.console_first:
            print(f"durable-sync: console on {console_url} ({time_mode})\n"
                  f"  functions: {names}\n"
                  f"  Lambda API on {server.url} (AWS_ENDPOINT_URL_LAMBDA={server.url})", file=sys.stderr, flush=True)
            if getattr(args, "open", False):
                import webbrowser

                webbrowser.open(console_url)
        else:
            print(f"durable-sync: Lambda API on {server.url} ({time_mode})\n"
                  f"  functions: {names}\n"
                  f"  export AWS_ENDPOINT_URL_LAMBDA={server.url}   # boto3 and the AWS CLI then use it\n"
                  f"  console: {console_url}", file=sys.stderr, flush=True)
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, _raise_interrupt)
        try:
            server.start()  # serves on its own thread from here on
            _run_unfinished(engine)
            forever = threading.Event()
            while not forever.wait(1.0):  # until Ctrl-C / SIGTERM
                pass
        except KeyboardInterrupt:
            print("durable-sync: stopping", file=sys.stderr)
        finally:
            server.close()
    finally:
        engine.close()
    return 0


def _run_unfinished(engine: Any) -> None:
    """The unfinished executions found in the database, run onward now that the server serves; in virtual
    time they are driven as the server drives the executions it starts (until each ends or waits on the
    outside)."""
    resumed = engine.run_unfinished()
    if not resumed:
        return
    print(f"durable-sync: resuming {len(resumed)} unfinished execution{'s' if len(resumed) != 1 else ''} "
          f"from the database", file=sys.stderr, flush=True)
    if engine.skip_time:
        for arn in resumed:
            engine.wait(arn)


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt
