"""``durable-sync run``: run a handler to completion on the embedded engine; settling, summaries and hints."""
from __future__ import annotations

import argparse
import contextlib
import json
import shlex
import signal
import threading
from typing import Any, Optional

from ..inspection import format_duration, format_trace
from .common import (EXIT_FOR_STATUS, CliError, check_db_location, db_option, err, exec_name, load_handler,
                     module_functions, read_input, user_logs, verbose_options)
from .progress import EventPrinter, live_progress

RUN_EXAMPLES = """examples:
  durable-sync run examples/order_workflow.py --input '{"order_id": "o-1", "items": [{"sku": "apple", "qty": 3}]}'
  durable-sync run flow.py:handler --input @event.json --name order-7 --skip-time
  echo '{"id": 7}' | durable-sync run flow.py --input - --json

On SUCCEEDED stdout holds one line, the result as JSON; otherwise stdout is empty and the status, the
error with its stack trace, and what to do next go to stderr (--json: one status object on stdout for
every outcome). Exit status: 0 SUCCEEDED, 1 FAILED / TIMED_OUT / STOPPED, 2 usage error, 3 waiting for
a callback, 130 interrupted. Re-running the same command with the same --name attaches to that
execution (and finishes it if it is unfinished) instead of starting a second one."""


def add_parser(sub: Any) -> None:
    run = sub.add_parser(
        "run", help="run a durable handler to completion on the embedded engine",
        description="Run a durable handler on the embedded engine until its execution ends, showing each operation "
                    "on stderr as it happens (a live status line on a terminal). Only this execution runs (and "
                    "what it invokes); `durable-sync resume` runs the other unfinished ones.",
        epilog=RUN_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    run.add_argument("file", metavar="FILE[:HANDLER]", help="the handler's file (HANDLER defaults to 'handler')")
    run.add_argument("--input", default=None, metavar="JSON",
                     help="the event: JSON, file://PATH or @PATH (a JSON file), or - (stdin); default null")
    db_option(run, memory=True)
    run.add_argument("--name", default=None,
                     help="execution name; an existing execution of that name is attached to (resumed if unfinished)")
    run.add_argument("--skip-time", action="store_true", help="virtual time: waits and retries take no real time")
    run.add_argument("--json", action="store_true",
                     help='print one object {"status", "arn", "name", "result" | "error"} on stdout, for every outcome')
    run.add_argument("--trace", default=None, metavar="FILE",
                     help="write the run's OpenTelemetry spans to FILE as OTLP-JSON lines (extra [otel])")
    verbose_options(run)
    run.set_defaults(func=cmd_run)


# -- settling --------------------------------------------------------------------------------------------------
def settle(engine: Any, arn: str) -> Any:
    """Until ``arn`` is terminal or waits on the outside; virtual time fast-forwards."""
    if engine.skip_time:
        return engine.wait(arn)
    quiet = 0
    while True:
        result = engine.wait(arn, timeout=0.1)
        if result.status != "RUNNING":
            return result
        quiet = quiet + 1 if engine.snapshot(arn).waits_on_outside else 0
        if quiet >= 3:  # stable over ~0.3 s: not a completion in the middle of being applied
            return result


def _db_flag(db: str) -> str:
    return "" if db == "durable.db" else f" --db {shlex.quote(db)}"


def report_waiting(engine: Any, arn: str, db: str) -> None:
    """What a RUNNING execution waits for, and the command that moves it on."""
    ref = shlex.quote(exec_name(arn))
    paused = engine.get_execution(arn).pause_status
    if paused:
        err(f"  {paused.lower()}: the engine does not invoke it until it is resumed; resume it with\n"
            f"    durable-sync resume {ref}{_db_flag(db)}")
    snapshot = engine.snapshot(arn)
    for callback in snapshot.open_callbacks:
        err(f"  waiting for callback {callback.operation_name or 'callback'}: answer it with\n"
            f"    durable-sync callback succeed {callback.callback_id} 'JSON'{_db_flag(db)}")
    timers = [t for t in snapshot.pending_timers if t.kind != "execution_timeout"]
    if timers:
        timer = timers[0]
        left = max(0, timer.due_ms - engine.clock.now_ms())
        err(f"  next: {timer.kind} {timer.operation_name or ''} due in {format_duration(left)}; continue with "
            f"`durable-sync resume {ref}{_db_flag(db)}` (add --skip-time to fast-forward)")


def summary(engine: Any, arn: str, db: str, result: Any) -> None:
    """The outcome on stderr: status, what ran, the error with the user's stack trace, where to look next."""
    ex = engine.snapshot(arn)
    operations = len(ex.operations) - 1
    took = (ex.end_ms if ex.end_ms is not None else engine.clock.now_ms()) - ex.start_ms
    err(f"status {result.status}")
    err(f"  execution  {ex.function_name} / {ex.name}")
    err(f"  arn        {arn}")
    err(f"  operations {operations}, invocations {ex.invocations}, {format_duration(took)}"
        f"{' of virtual time' if engine.skip_time else ''}")
    if result.error:
        err(f"  error      {result.error.get('ErrorType')}: {result.error.get('ErrorMessage')}")
        trace = format_trace(result.error.get("StackTrace"), indent="    ")
        if trace:
            err(trace)
    if db not in ("", ":memory:"):
        more = " --traceback" if result.status == "FAILED" else ""
        err(f"  history    durable-sync history {shlex.quote(ex.name)}{_db_flag(db)}{more}")


def status_object(result: Any, arn: str) -> str:
    """``--json``: one line ``{"status", "arn", "name", "result" | "error"}``."""
    out: dict[str, Any] = {"status": result.status, "arn": arn, "name": exec_name(arn)}
    if result.status == "SUCCEEDED":
        out["result"] = result.result
    else:
        out["error"] = result.error
    return json.dumps(out, default=str)


def print_outcome(args: argparse.Namespace, result: Any, arn: str) -> int:
    """stdout: the result (one line) on SUCCEEDED, else nothing; ``--json``: the status object. The exit status."""
    if getattr(args, "json", False):
        print(status_object(result, arn), flush=True)
    elif result.status == "SUCCEEDED":
        print(result.raw_result if result.raw_result is not None else "null", flush=True)
    return EXIT_FOR_STATUS.get(result.status, 1)


# -- interrupts -------------------------------------------------------------------------------------------------
class _Terminated(KeyboardInterrupt):
    """SIGTERM, handled as Ctrl-C is."""


def _raise_terminated(signum: int, frame: Any) -> None:
    raise _Terminated()


class interrupts_as_keyboard:  # noqa: N801 - used as a context manager
    """SIGTERM raises KeyboardInterrupt too, so both end a command the same way (and print the same hint)."""

    def __enter__(self) -> "interrupts_as_keyboard":
        self._saved = None
        if threading.current_thread() is threading.main_thread():
            self._saved = signal.signal(signal.SIGTERM, _raise_terminated)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._saved is not None:
            signal.signal(signal.SIGTERM, self._saved)


def interrupted_hint(db: str, name: Optional[str]) -> str:
    if db in ("", ":memory:"):
        return "interrupted; the execution lived in memory (--db :memory:) and is gone"
    target = f" {shlex.quote(name)}" if name else ""
    return (f"interrupted; nothing is lost: continue with `durable-sync resume{target}{_db_flag(db)}` "
            "(add --skip-time to fast-forward)")


# -- the command -----------------------------------------------------------------------------------------------
def _existing(engine: Any, fn_name: str, name: Optional[str], given: bool, payload: Any,
              db: str) -> tuple[Optional[Any], Any]:
    """The execution ``--name`` names, if it exists: ``(snapshot, its input)``; its input must be ``payload``
    when one was given."""
    from ..inspection import read_execution

    found = engine.list_executions(function_name=fn_name, name=name) if name is not None else []
    if not found:
        return None, payload
    snapshot = engine.snapshot(found[0]["DurableExecutionArn"])
    text = read_execution(snapshot.execution, snapshot.operations, snapshot.history).input_payload
    stored = json.loads(text) if text else None
    if given and stored != payload:
        raise CliError(f"execution {name!r} of {fn_name} already exists in {db} with another input "
                       f"({text!r:.60}); use another --name, or omit --input to attach to it")
    return snapshot, stored


def traced(path: Optional[str], service_name: str) -> Any:
    """With ``--trace FILE``: every handler of the run traced to FILE (docs/observability.md)."""
    if path is None:
        return contextlib.nullcontext()
    try:
        from ..otel import trace_to_file
    except ImportError as exc:
        raise CliError(f"--trace needs OpenTelemetry ({exc}): pip install 'lambda-durable-sync[otel]'") from None
    return trace_to_file(path, service_name)


def cmd_run(args: argparse.Namespace) -> int:
    from ..local import LocalEngine

    handler = load_handler(args.file)
    given, payload = read_input(args.input)
    check_db_location(args.db)
    fn_name = handler.__durable_function_name__
    functions = {**module_functions(handler, args.file), fn_name: handler}
    printer = EventPrinter(db=args.db)
    live = live_progress(printer)  # a status line when stderr is a terminal; else one line per event
    name: Optional[str] = args.name
    with interrupts_as_keyboard(), user_logs(args), traced(args.trace, fn_name):
        engine = LocalEngine(db=args.db, skip_time=args.skip_time, functions=functions, listeners=[live or printer],
                             resume_unfinished=False)
        try:
            if not args.skip_time:
                printer.clock = engine.clock
            if live is not None:
                live.start(engine.clock)
            existing, payload = _existing(engine, fn_name, name, given, payload, args.db)
            if existing is not None:
                printer.main_arn = existing.arn
                err(f"attaching to execution {name} of {fn_name} ({existing.status.lower()}"
                    f"{', resuming it' if existing.status == 'RUNNING' else ''})")
            arn = engine.start(handler, input=payload, name=name)  # attaches to an existing one of that name
            name = exec_name(arn)
            result = settle(engine, arn)
            if live is not None:
                live.stop()
            summary(engine, arn, args.db, result)
            if result.status == "RUNNING":
                report_waiting(engine, arn, args.db)
        except KeyboardInterrupt:
            if live is not None:
                live.stop()
            err(interrupted_hint(args.db, name))
            raise
        finally:
            if live is not None:
                live.stop()
            engine.close()
    return print_outcome(args, result, arn)
