"""``durable-sync``: run, inspect and operate durable executions on the local engine."""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
from typing import Any, Callable, Optional


class CliError(Exception):
    """A one-line error for the user; exits non-zero."""


def load_handler(spec: str) -> Callable:
    """Import ``FILE[:HANDLER]`` (HANDLER defaults to ``handler``)."""
    path, _, attr = spec.partition(":")
    if len(path) == 1 and attr and attr[:1] in "\\/":  # a Windows drive letter, not FILE:HANDLER
        path, _, attr = spec[2:].partition(":")
        path = spec[:2] + path
    attr = attr or "handler"
    if not os.path.isfile(path):
        raise CliError(f"handler file {path!r} does not exist")
    module_name = "durable_user_" + os.path.splitext(os.path.basename(path))[0].replace("-", "_")
    directory = os.path.dirname(os.path.abspath(path))
    if directory not in sys.path:
        sys.path.insert(0, directory)
    try:
        module_spec = importlib.util.spec_from_file_location(module_name, path)
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[module_name] = module
        module_spec.loader.exec_module(module)
    except Exception as exc:  # noqa: BLE001 - any import failure is the user's file
        raise CliError(f"could not import {path}: {type(exc).__name__}: {exc}") from None
    handler = getattr(module, attr, None)
    if handler is None or not callable(handler):
        names = sorted(n for n, v in vars(module).items() if hasattr(v, "__durable_function__"))
        hint = f"; durable handlers in it: {', '.join(names)}" if names else ""
        raise CliError(f"{path} has no callable {attr!r}{hint} (use FILE:HANDLER)")
    if not hasattr(handler, "__durable_function__"):
        raise CliError(f"{path}:{attr} is not decorated with @durable_sync.durable_handler")
    handler.__durable_ref__ = f"{os.path.abspath(path)}:{attr}"
    if not hasattr(handler, "__durable_function_name__"):
        base = os.path.splitext(os.path.basename(path))[0]
        handler.__durable_function_name__ = base if attr == "handler" else f"{base}-{attr}"
    return handler


def _parse_json(text: Optional[str], what: str) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise CliError(f"{what} is not valid JSON ({exc.msg} at position {exc.pos}): {text!r:.80}") from None


def _describe(event: dict) -> Optional[str]:
    etype = event.get("EventType", "")
    label = event.get("Name") or (event.get("Id") or "")[:12]
    details = event.get(f"{etype}Details") or {}
    if etype == "ExecutionStarted":
        return f"execution {event.get('Id')} started"
    if etype == "InvocationCompleted":
        err = (details.get("Error") or {}).get("Payload")
        return f"  invocation failed: {err.get('ErrorType')}: {err.get('ErrorMessage')}" if err else None
    if etype.endswith("Started") and etype not in ("WaitStarted", "CallbackStarted"):
        return None
    extra = ""
    if etype == "WaitStarted":
        extra = f" ({details.get('Duration')} s)"
    elif etype == "CallbackStarted":
        extra = f" (callback id {details.get('CallbackId')})"
    elif "RetryDetails" in details and details["RetryDetails"].get("NextAttemptDelaySeconds"):
        r = details["RetryDetails"]
        err = (details.get("Error") or {}).get("Payload") or {}
        extra = (f" attempt {r['CurrentAttempt']} failed ({err.get('ErrorType')}: {err.get('ErrorMessage')}),"
                 f" retry in {r['NextAttemptDelaySeconds']} s")
    elif etype.endswith("Failed"):
        err = (details.get("Error") or {}).get("Payload") or {}
        extra = f" ({err.get('ErrorType')}: {err.get('ErrorMessage')})"
    return f"  {etype:<22} {label}{extra}"


def cmd_run(args: argparse.Namespace) -> int:
    from .local import LocalEngine

    handler = load_handler(args.file)
    payload = _parse_json(args.input, "--input")
    engine = LocalEngine(db=args.db, skip_time=args.skip_time)
    try:
        engine.add_listener(lambda arn, event: (line := _describe(event)) and print(line, file=sys.stderr,
                                                                                      flush=True))
        result = engine.wait(engine.start(handler, input=payload, name=args.name))
    finally:
        engine.close()
    print(f"status {result.status}", file=sys.stderr)
    if result.status == "SUCCEEDED":
        print(result.raw_result if result.raw_result is not None else "null")
        return 0
    if result.error:
        print(f"error {result.error.get('ErrorType')}: {result.error.get('ErrorMessage')}", file=sys.stderr)
    print(json.dumps({"status": result.status, "error": result.error}))
    return 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="durable-sync", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run a durable handler to completion on the embedded engine")
    run.add_argument("file", help="FILE[:HANDLER] (HANDLER defaults to 'handler')")
    run.add_argument("--input", default=None, help="the event, as JSON")
    run.add_argument("--db", default="durable.db", help="SQLite database (default durable.db; ':memory:' for none)")
    run.add_argument("--name", default=None, help="execution name; an existing execution of that name is resumed")
    run.add_argument("--skip-time", action="store_true", help="virtual time: waits and retries take no real time")
    run.set_defaults(func=cmd_run)
    return parser


def main(argv: Optional[list[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except CliError as exc:
        print(f"durable-sync: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
