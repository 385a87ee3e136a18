"""``durable-sync run``: run a handler to completion on the embedded engine; settling and summaries."""
from __future__ import annotations

import argparse
import json
import os
import shlex
from typing import Any

from ..inspection import format_duration
from .common import (EXIT_FAILED, EXIT_OK, EXIT_WAITING, CliError, err, exec_name, load_handler, module_functions,
                     open_reader, parse_json)
from .progress import EventPrinter, live_progress


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


def report_waiting(engine: Any, arn: str, db: str) -> None:
    paused = engine.get_execution(arn).pause_status
    if paused:
        err(f"  {paused.lower()}: the engine does not invoke it until it is resumed; resume it with\n"
             f"    durable-sync resume {shlex.quote(exec_name(arn))} --db {db}")
    snapshot = engine.snapshot(arn)
    for callback in snapshot.open_callbacks:
        err(f"  waiting for callback {callback.operation_name or callback.operation_id[:12]}: answer it with\n"
             f"    durable-sync callback succeed {callback.callback_id} 'JSON' --db {db}")
    timers = [t for t in snapshot.pending_timers if t.kind != "execution_timeout"]
    if timers:
        timer = timers[0]
        left = max(0, timer.due_ms - engine.clock.now_ms())
        err(f"  next: {timer.kind} {timer.operation_name or (timer.operation_id or '')[:12]} due in {format_duration(left)}; "
             f"continue with `durable-sync resume --db {db}` (add --skip-time to fast-forward)")


def summary(engine: Any, arn: str, db: str, result: Any) -> None:
    ex = engine.snapshot(arn)
    invocations = ex.invocations
    operations = len(ex.operations) - 1
    took = (ex.end_ms if ex.end_ms is not None else engine.clock.now_ms()) - ex.start_ms
    err(f"status {result.status}")
    err(f"  execution  {ex.function_name} / {ex.name}")
    err(f"  arn        {arn}")
    err(f"  operations {operations}, invocations {invocations}, {format_duration(took)}"
         f"{' of virtual time' if engine.skip_time else ''}")
    if result.error:
        err(f"  error      {result.error.get('ErrorType')}: {result.error.get('ErrorMessage')}")
    if db not in ("", ":memory:"):
        err(f"  database   {db}  (durable-sync history {ex.name} --db {db})")


def cmd_run(args: argparse.Namespace) -> int:
    from ..local import LocalEngine

    handler = load_handler(args.file)
    payload = parse_json(args.input, "--input")
    fn_name = handler.__durable_function_name__
    existing, unfinished = None, []
    if args.db not in ("", ":memory:") and os.path.exists(args.db):
        with open_reader(args.db, "run") as reader:
            found = reader.executions(function_name=fn_name, name=args.name) if args.name else []
            unfinished = reader.executions(status="RUNNING")
        if found:
            existing = found[0]
            stored = json.loads(existing.input_payload) if existing.input_payload else None
            if args.input is not None and stored != payload:
                raise CliError(f"execution {args.name!r} of {fn_name} already exists in {args.db} with another input "
                               f"({existing.input_payload!r:.60}); use another --name, or omit --input to attach")
    others = [ex for ex in unfinished if existing is None or ex.arn != existing.arn]
    if others:
        shown = ", ".join(f"{ex.function_name} / {ex.name}" for ex in others[:3]) + (", ..." if len(others) > 3 else "")
        err(f"the engine also resumes {len(others)} other unfinished execution{'s' if len(others) > 1 else ''} "
             f"in {args.db}: {shown}")
    printer = EventPrinter(others={ex.arn for ex in others})
    live = live_progress(printer)  # a status line when stderr is a terminal; else one line per event
    functions = {**module_functions(handler, args.file), fn_name: handler}
    engine = LocalEngine(db=args.db, skip_time=args.skip_time, functions=functions, listeners=[live or printer])
    try:
        if live is not None:
            live.start(engine.clock)
        if existing is not None:
            arn = printer.main_arn = existing.arn
            status = existing.status  # as found: a restarted engine may already have moved it
            err(f"attaching to execution {args.name} of {fn_name} ({status.lower()}"
                 f"{', resuming it' if status == 'RUNNING' else ''})")
        else:
            arn = engine.start(handler, input=payload, name=args.name)
            printer.main_arn = arn
        result = settle(engine, arn)
        if live is not None:
            live.stop()
        summary(engine, arn, args.db, result)
        if result.status == "RUNNING":
            report_waiting(engine, arn, args.db)
    except KeyboardInterrupt:
        if live is not None:
            live.stop()
        err(f"interrupted; continue with `durable-sync resume --db {args.db}`")
        raise
    finally:
        if live is not None:
            live.stop()
        engine.close()
    if result.status == "SUCCEEDED":
        print(result.raw_result if result.raw_result is not None else "null")
        return EXIT_OK
    print(json.dumps({"status": result.status, "arn": arn, "error": result.error}))
    return EXIT_WAITING if result.status == "RUNNING" else EXIT_FAILED
