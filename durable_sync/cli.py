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
import datetime as _dt
import json
import os
import re
import shlex
import signal
import threading
import sys
import time
from typing import Any, Callable, Optional

DEFAULT_DB = "durable.db"
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_WAITING, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
_STATUSES = ("RUNNING", "SUCCEEDED", "FAILED", "TIMED_OUT", "STOPPED")


class CliError(Exception):
    """A one-line error for the user; exits non-zero."""


# -- handlers ------------------------------------------------------------------------------------
def load_handler(spec: str) -> Callable:
    """Import the durable handler ``FILE[:HANDLER]`` (HANDLER defaults to ``handler``)."""
    from .local.handlers import HandlerLoadError, load_durable

    try:
        return load_durable(spec, fresh=True)
    except HandlerLoadError as exc:
        raise CliError(str(exc)) from None


def _parse_json(text: Optional[str], what: str) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise CliError(f"{what} is not valid JSON ({exc.msg} at position {exc.pos}): {text!r:.80}") from None


# -- output helpers ---------------------------------------------------------------------------------
def _err(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _exec_name(arn: str) -> str:
    parts = arn.split("/")
    return parts[-2] if len(parts) >= 3 else arn


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
    elif etype.endswith("Failed") or etype.endswith("TimedOut"):
        err = (details.get("Error") or {}).get("Payload") or {}
        extra = f" ({err.get('ErrorType')}: {err.get('ErrorMessage')})"
    return f"  {etype:<22} {label}{extra}"


class _Printer:
    """An engine listener: each operation on stderr as it happens.

    Lines of executions other than the main one (unfinished ones the engine resumed from the
    database, targets of chained invokes) are prefixed with the execution's name.
    """

    def __init__(self, others: Optional[set] = None, prefix_all: bool = False) -> None:
        self.main_arn: Optional[str] = None
        self.others = set(others or ())
        self.prefix_all = prefix_all

    def __call__(self, arn: str, event: dict) -> None:
        line = _describe(event)
        if line is None:
            return
        if self.prefix_all or arn in self.others or (self.main_arn is not None and arn != self.main_arn):
            line = f"[{_exec_name(arn)}] {line.strip()}"
        _err(line)


def _ms(ms: Optional[int]) -> str:
    if ms is None:
        return ""
    if ms < 1000:
        return f"{ms} ms"
    seconds = ms / 1000
    if seconds < 60:
        return f"{seconds:.2f} s"
    minutes, seconds = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes} min {seconds} s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min"
    return f"{hours // 24} d {hours % 24} h"


def _when(ms: Optional[int]) -> str:
    if ms is None:
        return ""
    return _dt.datetime.fromtimestamp(ms / 1000).strftime("%Y-%m-%d %H:%M:%S")


def _json_default(value: Any) -> Any:
    if isinstance(value, _dt.datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


# -- the database ------------------------------------------------------------------------------------
def _need_file_db(db: str, what: str) -> None:
    if db in ("", ":memory:"):
        raise CliError(f"{what} needs a database file; ':memory:' keeps nothing between commands")
    if not os.path.exists(db):
        raise CliError(f"no durable_sync database at {db} (start an execution with `durable-sync run FILE`, "
                       "or pass --db PATH)")


def _reader(db: str, what: str) -> Any:
    from .local.store import Reader

    _need_file_db(db, what)
    return Reader(db)


def _find_execution(reader: Any, ref: str) -> Any:
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


# -- waiting -------------------------------------------------------------------------------------------
def _settle(engine: Any, arn: str) -> Any:
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


def _report_waiting(engine: Any, arn: str, db: str) -> None:
    paused = engine.get_execution(arn).pause_status
    if paused:
        _err(f"  {paused.lower()}: the engine does not invoke it until it is resumed; resume it with\n"
             f"    durable-sync resume {shlex.quote(_exec_name(arn))} --db {db}")
    snapshot = engine.snapshot(arn)
    for callback in snapshot.open_callbacks:
        _err(f"  waiting for callback {callback.operation_name or callback.operation_id[:12]}: answer it with\n"
             f"    durable-sync callback succeed {callback.callback_id} 'JSON' --db {db}")
    timers = [t for t in snapshot.pending_timers if t.kind != "execution_timeout"]
    if timers:
        timer = timers[0]
        left = max(0, timer.due_ms - engine.clock.now_ms())
        _err(f"  next: {timer.kind} {timer.operation_name or (timer.operation_id or '')[:12]} due in {_ms(left)}; "
             f"continue with `durable-sync resume --db {db}` (add --skip-time to fast-forward)")


def _summary(engine: Any, arn: str, db: str, result: Any) -> None:
    ex = engine.snapshot(arn)
    invocations = ex.invocations
    operations = len(ex.operations) - 1
    took = (ex.end_ms if ex.end_ms is not None else engine.clock.now_ms()) - ex.start_ms
    _err(f"status {result.status}")
    _err(f"  execution  {ex.function_name} / {ex.name}")
    _err(f"  arn        {arn}")
    _err(f"  operations {operations}, invocations {invocations}, {_ms(took)}"
         f"{' of virtual time' if engine.skip_time else ''}")
    if result.error:
        _err(f"  error      {result.error.get('ErrorType')}: {result.error.get('ErrorMessage')}")
    if db not in ("", ":memory:"):
        _err(f"  database   {db}  (durable-sync history {ex.name} --db {db})")


# -- commands ----------------------------------------------------------------------------------------------
def _module_functions(handler: Callable, path: str) -> dict[str, Callable]:
    """The handler file's ``FUNCTIONS = {"name": handler}`` (see durable_sync.local.handlers.module_functions)."""
    from .local.handlers import HandlerLoadError, module_functions

    try:
        return module_functions(handler, path)
    except HandlerLoadError as exc:
        raise CliError(str(exc)) from None


def _live_progress(printer: "_Printer") -> Any:
    """``run``'s live status line (durable_sync.views.LiveProgress) when stderr is a terminal, else None."""
    stream = sys.stderr
    if not getattr(stream, "isatty", lambda: False)() or os.environ.get("TERM") == "dumb":
        return None
    from .views import LiveProgress

    return LiveProgress(stream, printer)


def cmd_run(args: argparse.Namespace) -> int:
    from .local import LocalEngine

    handler = load_handler(args.file)
    payload = _parse_json(args.input, "--input")
    fn_name = handler.__durable_function_name__
    existing, unfinished = None, []
    if args.db not in ("", ":memory:") and os.path.exists(args.db):
        with _reader(args.db, "run") as reader:
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
        _err(f"the engine also resumes {len(others)} other unfinished execution{'s' if len(others) > 1 else ''} "
             f"in {args.db}: {shown}")
    printer = _Printer(others={ex.arn for ex in others})
    live = _live_progress(printer)  # a status line when stderr is a terminal; else one line per event
    functions = {**_module_functions(handler, args.file), fn_name: handler}
    engine = LocalEngine(db=args.db, skip_time=args.skip_time, functions=functions, listeners=[live or printer])
    try:
        if live is not None:
            live.start(engine.clock)
        if existing is not None:
            arn = printer.main_arn = existing.arn
            status = existing.status  # as found: a restarted engine may already have moved it
            _err(f"attaching to execution {args.name} of {fn_name} ({status.lower()}"
                 f"{', resuming it' if status == 'RUNNING' else ''})")
        else:
            arn = engine.start(handler, input=payload, name=args.name)
            printer.main_arn = arn
        result = _settle(engine, arn)
        if live is not None:
            live.stop()
        _summary(engine, arn, args.db, result)
        if result.status == "RUNNING":
            _report_waiting(engine, arn, args.db)
    except KeyboardInterrupt:
        if live is not None:
            live.stop()
        _err(f"interrupted; continue with `durable-sync resume --db {args.db}`")
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


def cmd_list(args: argparse.Namespace) -> int:
    status = args.status.upper() if args.status else None
    if status and status not in _STATUSES:
        raise CliError(f"--status must be one of {', '.join(_STATUSES)}, got {args.status!r}")
    with _reader(args.db, "list") as reader:
        rows = reader.executions(function_name=args.function, name=args.name, status=status)
        counts = reader.counts([r.arn for r in rows]) if rows else {}
        paused = reader.pause_statuses(rows)  # RUNNING, held by PauseDurableExecution
    if args.json:
        print(json.dumps([{"DurableExecutionArn": r.arn, "DurableExecutionName": r.name,
                           "FunctionName": r.function_name, "Status": r.status,
                           **({"PauseStatus": paused[r.arn]} if r.arn in paused else {}),
                           "StartTimestamp": _dt.datetime.fromtimestamp(r.start_ms / 1000, _dt.timezone.utc),
                           **({"EndTimestamp": _dt.datetime.fromtimestamp(r.end_ms / 1000, _dt.timezone.utc)}
                              if r.end_ms else {})} for r in rows], default=_json_default, indent=2))
        return EXIT_OK
    if not rows:
        _err(f"no executions{' match' if (args.function or args.name or status) else ''} in {args.db}")
        return EXIT_OK
    table = [("NAME", "FUNCTION", "STATUS", "STARTED", "DURATION", "OPS", "ARN")]
    for r in rows:
        ops = counts.get(r.arn, 0)
        shown = f"{r.status} ({paused[r.arn]})" if r.arn in paused else r.status
        table.append((r.name, r.function_name, shown, _when(r.start_ms),
                      _ms(r.end_ms - r.start_ms) if r.end_ms else "-", str(ops), r.arn))
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]) - 1)]
    for row in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[-1])
    return EXIT_OK


def _op_label(op: dict) -> str:
    return op.get("Name") or f"({op['Id'][:8]})"


def _op_line(op: dict, failures: dict) -> str:
    kind = op.get("SubType") or op["Type"].title()
    status = op["Status"]
    bits = []
    step = op.get("StepDetails") or {}
    if op["Type"] == "STEP" and step.get("Attempt"):
        failed = failures.get(op["Id"], 0)
        bits.append(f"attempt {step['Attempt']}" + (f" ({failed} failed)" if failed else ""))
    if op["Type"] == "WAIT" and status == "STARTED":
        sched = (op.get("WaitDetails") or {}).get("ScheduledEndTimestamp")
        if sched:
            bits.append(f"until {_when(sched)}")
    if op["Type"] == "CALLBACK":
        cid = (op.get("CallbackDetails") or {}).get("CallbackId")
        if cid and status == "STARTED":
            bits.append(f"callback id {cid}")
    if op.get("EndTimestamp") is not None and op.get("StartTimestamp") is not None:
        bits.append(_ms(op["EndTimestamp"] - op["StartTimestamp"]))
    elif status in ("STARTED", "PENDING", "READY"):
        bits.append("...")
    error = None
    for key in ("StepDetails", "ContextDetails", "CallbackDetails", "ChainedInvokeDetails"):
        error = error or (op.get(key) or {}).get("Error")
    if error and status not in ("SUCCEEDED",):
        bits.append(f"{error.get('ErrorType')}: {str(error.get('ErrorMessage'))[:80]}")
    return f"{kind:<18} {status:<10} {'  '.join(bits)}"


def _print_tree(ex: Any) -> None:
    children: dict[Optional[str], list[dict]] = {}
    for op in ex.ops.values():
        if op["Type"] == "EXECUTION":
            continue
        children.setdefault(op.get("ParentId"), []).append(op)
    failures: dict[str, int] = {}
    for e in ex.events:
        if e["EventType"] == "StepFailed":
            failures[e["Id"]] = failures.get(e["Id"], 0) + 1
    lines: list[tuple[str, str]] = []

    def walk(parent: Optional[str], prefix: str) -> None:
        kids = children.get(parent, [])
        for i, op in enumerate(kids):
            last = i == len(kids) - 1
            lines.append((prefix + ("└─ " if last else "├─ ") + _op_label(op), _op_line(op, failures)))
            walk(op["Id"], prefix + ("   " if last else "│  "))

    walk(None, "")
    invocations = sum(1 for e in ex.events if e["EventType"] == "InvocationCompleted")
    took = _ms(ex.end_ms - ex.start_ms) if ex.end_ms else f"running for {_ms(int(time.time() * 1000) - ex.start_ms)}"
    print(f"{ex.function_name} / {ex.name}  {ex.status}  {took}, {invocations} invocation"
          f"{'s' if invocations != 1 else ''}")
    print(f"  {ex.arn}")
    width = max((len(left) for left, _ in lines), default=0)
    for left, right in lines:
        print(f"{left.ljust(width)}  {right}")
    if not lines:
        print("(no operations)")
    if ex.status == "SUCCEEDED":
        print(f"result {ex.result}")
    elif ex.error:
        print(f"error {ex.error.get('ErrorType')}: {ex.error.get('ErrorMessage')}")


def cmd_history(args: argparse.Namespace) -> int:
    from .local import history as h

    with _reader(args.db, "history") as reader:
        ex = _find_execution(reader, args.arn)
    if args.json:
        print(json.dumps([h.to_boto(e) for e in ex.events], default=_json_default, indent=2))
    else:
        _print_tree(ex)
    if args.html:
        _write_timeline(ex, args.html)
    return EXIT_OK


def _write_timeline(ex: Any, path: str) -> None:
    """``history --html PATH``: the execution as a self-contained HTML timeline (durable_sync.views)."""
    from .local import history as h
    from .local.service import public_op
    from .views import render_html

    operations = [h.to_boto(public_op(op)) for op in ex.ops.values()]
    page = render_html(ex, operations, [h.to_boto(e) for e in ex.events],
                       now=None if ex.end_ms else int(time.time() * 1000))
    try:
        with open(path, "w", encoding="utf-8") as out:
            out.write(page)
    except OSError as exc:
        raise CliError(f"cannot write the timeline to {path}: {exc.strerror or exc}") from None
    _err(f"timeline written to {path} ({len(operations) - 1} operations); open it in a browser")


def _resolve_handlers(executions: list) -> tuple[dict[str, Callable], dict[str, str]]:
    """Import the handler of each execution from its reference: (function -> handler, arn -> problem)."""
    from .local.handlers import load as load_handler_ref

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


def _run_onward(engine: Any, executions: list, problems: dict[str, str], db: str) -> int:
    """``resume``: settle each execution on ``engine`` (one line on stdout each); EXIT_FAILED when one
    could not be resumed (its handler cannot be imported)."""
    try:
        for ex in executions:
            if ex.arn in problems:
                continue
            _err(f"resuming {ex.function_name} / {ex.name}")
            result = _settle(engine, ex.arn)
            line = f"{ex.name}: {result.status}"
            if result.status == "SUCCEEDED":
                line += f" {result.raw_result}"
            elif result.error:
                line += f" {result.error.get('ErrorType')}: {result.error.get('ErrorMessage')}"
            print(line)
            if result.status == "RUNNING":
                _report_waiting(engine, ex.arn, db)
    except KeyboardInterrupt:
        _err(f"interrupted; run `durable-sync resume --db {db}` again to continue")
        raise
    return EXIT_FAILED if problems else EXIT_OK


def cmd_resume(args: argparse.Namespace) -> int:
    from .local import LocalEngine

    if args.ref is not None:
        return _resume_one(args)
    if args.reason is not None:
        raise CliError("--reason goes with REF: `durable-sync resume REF --reason TEXT` ends that execution's pause")
    with _reader(args.db, "resume") as reader:
        unfinished = reader.executions(status="RUNNING")
    if not unfinished:
        _err(f"nothing to resume: no unfinished executions in {args.db}")
        return EXIT_OK
    functions, problems = _resolve_handlers(unfinished)
    for ex in unfinished:
        if ex.arn in problems:
            _err(f"cannot resume {ex.name} ({ex.arn}): {problems[ex.arn]}")
    printer = _Printer(prefix_all=len(unfinished) > 1)
    engine = LocalEngine(db=args.db, skip_time=args.skip_time, functions=functions, listeners=[printer])
    try:
        return _run_onward(engine, unfinished, problems, args.db)
    finally:
        engine.close()


# -- pause, resume REF, delete: requests to the engine, through the inbox when another process owns the db ----------
def _control_target(args: argparse.Namespace, what: str) -> tuple[Any, Optional[str], list]:
    """The execution REF names, its pause status (PAUSING / PAUSED / None), and the other unfinished ones."""
    with _reader(args.db, what) as reader:
        ex = _find_execution(reader, args.ref)
        pause = reader.pause_statuses([ex]).get(ex.arn)
        others = [o for o in reader.executions(status="RUNNING") if o.arn != ex.arn]
    return ex, pause, others


def _title(ex: Any) -> str:
    return f"{ex.function_name} / {ex.name}"


def _check_reason(reason: Optional[str]) -> None:
    from .local.control import MAX_REASON_CHARS

    if reason is not None and len(reason) > MAX_REASON_CHARS:
        raise CliError(f"--reason is {len(reason)} characters; at most {MAX_REASON_CHARS} are kept")


def _await_owner(reader: Any, row: int, owner: Optional[int], wait: float, db: str, what: str) -> str:
    """The outcome of inbox row ``row`` once the engine that owns ``db`` applied it ('ok' or 'error: ...').

    After ``wait`` seconds (or on Ctrl-C) the row is taken back if nobody applied it yet.
    """
    deadline = time.monotonic() + wait
    try:
        while time.monotonic() < deadline:
            outcome = reader.inbox_outcome(row)
            if outcome is not None:
                return outcome
            time.sleep(0.05)
    except KeyboardInterrupt:
        if reader.withdraw(row):
            _err(f"interrupted; the {what} was taken back, nothing was sent")
        raise
    if reader.withdraw(row):
        raise CliError(f"the engine that owns {db} (process {owner}) did not take the {what} within "
                       f"{wait:g} s (a virtual-time engine only reads the inbox when it starts); nothing was sent")
    outcome = reader.inbox_outcome(row)  # the engine took it meanwhile: it writes the outcome as it marks it done
    if outcome is None:  # (someone else removed the row)
        raise CliError(f"the {what} left the inbox of {db} without an outcome; check `durable-sync list` and retry")
    return outcome


def _request(args: argparse.Namespace, kind: str, ex: Any, payload: Optional[str],
             open_engine: Callable[[], Any]) -> tuple[str, Optional[int], Any]:
    """Have ``kind`` (pause / resume / delete) applied to ``ex``: posted to the database's inbox, then taken
    by the engine that owns the database (waiting for it, up to --wait seconds), or else by the engine
    ``open_engine()`` starts here, which applies what was posted before it runs anything.

    Returns (outcome, the owner's pid or None, the engine started here or None: the caller closes it).
    """
    from .local.store import DatabaseInUse, Reader, owner_pid

    with Reader(args.db) as reader:
        row = reader.post(kind, ex.arn, payload)
        owner = owner_pid(args.db)
        if owner is None:
            try:
                engine = open_engine()
            except DatabaseInUse as exc:  # an engine started meanwhile: it takes the request
                owner = exc.owner_pid
            except BaseException:
                reader.withdraw(row)
                raise
            else:
                outcome = reader.inbox_outcome(row)
                if outcome is None:  # (not expected: the engine applies the inbox as it starts)
                    engine.close()
                    raise CliError(f"the engine did not take the {kind} request; "
                                   f"{'nothing was sent' if reader.withdraw(row) else 'try again'}")
                return outcome, None, engine
        return _await_owner(reader, row, owner, args.wait, args.db, f"{kind} request"), owner, None


def _refused(kind: str, ex: Any, outcome: str) -> CliError:
    return CliError(f"{kind} {_title(ex)}: {outcome.removeprefix('error: ')}")


def cmd_pause(args: argparse.Namespace) -> int:
    from .local import LocalEngine
    from .local.store import Reader

    _check_reason(args.reason)
    ex, pause, _ = _control_target(args, "pause")
    ref = shlex.quote(args.ref)
    if ex.status != "RUNNING":
        raise CliError(f"execution {_title(ex)} already ended ({ex.status}); only a running execution can be paused")
    if pause is not None:
        raise CliError(f"execution {_title(ex)} is {pause} already; `durable-sync resume {ref} --db {args.db}` "
                       "ends the pause")
    printer = _Printer()
    printer.main_arn = ex.arn
    outcome, owner, engine = _request(args, "pause", ex, args.reason,
                                      lambda: LocalEngine(db=args.db, skip_time=True, listeners=[printer]))
    if engine is not None:
        try:
            result = engine.get_execution(ex.arn) if outcome == "ok" else None
        finally:
            engine.close()
    if outcome != "ok":
        raise _refused("pause", ex, outcome)
    if engine is not None:
        state = result.pause_status or result.status
    else:  # as the owner left it (PAUSING until its invocation in flight reaches a checkpoint)
        with Reader(args.db) as reader:
            now = reader.execution(ex.arn, with_history=False)
            state = (reader.pause_statuses([now]).get(ex.arn) or now.status) if now is not None else "DELETED"
    print(f"{ex.name}: {state}")
    by = f" by the engine running in process {owner}" if owner is not None else ""
    if state == "PAUSING":
        _err(f"pause recorded{by}: the invocation in flight ends at its next checkpoint, then the execution is "
             "PAUSED (`durable-sync list` shows it)")
    elif state == "PAUSED":
        _err(f"paused{by}: waits, retries and callbacks go on completing, but the engine does not invoke it "
             "until it is resumed")
    if state in ("PAUSING", "PAUSED"):
        _err(f"  resume it with `durable-sync resume {ref} --db {args.db}`")
    return EXIT_OK


def _resume_one(args: argparse.Namespace) -> int:
    """``resume REF``: end the pause of that execution if it is paused, then run it onward."""
    from .local import LocalEngine
    from .local.store import owner_pid

    _check_reason(args.reason)
    ex, pause, others = _control_target(args, "resume")
    if ex.status != "RUNNING":
        raise CliError(f"execution {_title(ex)} already ended ({ex.status}); there is nothing to resume "
                       f"(`durable-sync history {shlex.quote(args.ref)} --db {args.db}` shows it)")
    functions, problems = _resolve_handlers([ex])
    printer = _Printer(others={o.arn for o in others})
    printer.main_arn = ex.arn

    def open_engine() -> Any:
        return LocalEngine(db=args.db, skip_time=args.skip_time, functions=functions, listeners=[printer])

    owner = owner_pid(args.db)
    if pause is None:
        if owner is not None:
            raise CliError(f"execution {_title(ex)} is not paused, and the engine in process {owner} that owns "
                           f"{args.db} runs it; there is nothing to resume here")
        if args.reason is not None:
            _err(f"execution {_title(ex)} is not paused: --reason is not recorded")
    if others and owner is None:  # the engine started here runs them too
        shown = ", ".join(_title(o) for o in others[:3]) + (", ..." if len(others) > 3 else "")
        _err(f"the engine also resumes {len(others)} other unfinished execution{'s' if len(others) > 1 else ''} "
             f"in {args.db}: {shown}")
    if pause is None:
        engine = open_engine()
    else:
        outcome, owner, engine = _request(args, "resume", ex, args.reason, open_engine)
        if outcome != "ok":
            if engine is not None:
                engine.close()
            raise _refused("resume", ex, outcome)
        if engine is None:
            print(f"{ex.name}: resumed by the engine running in process {owner}, which runs it onward")
            return EXIT_OK
    try:
        if ex.arn in problems:
            _err(f"cannot run {ex.name} onward ({ex.arn}): {problems[ex.arn]}")
        return _run_onward(engine, [ex], problems, args.db)
    finally:
        engine.close()


def cmd_delete(args: argparse.Namespace) -> int:
    from .local import LocalEngine

    ex, pause, _ = _control_target(args, "delete")
    ref = shlex.quote(args.ref)
    if ex.status == "RUNNING":
        state = f"RUNNING ({pause})" if pause else "RUNNING"
        todo = (f"resume it (`durable-sync resume {ref} --db {args.db}`) and let it finish" if pause else
                f"let it finish (`durable-sync resume {ref} --db {args.db}`)")
        raise CliError(f"execution {_title(ex)} is {state}; only an ended execution (SUCCEEDED, FAILED, STOPPED or "
                       f"TIMED_OUT) can be deleted: {todo}, or stop it (StopDurableExecution), then delete it")
    printer = _Printer(prefix_all=True)
    outcome, owner, engine = _request(args, "delete", ex, None,
                                      lambda: LocalEngine(db=args.db, skip_time=True, listeners=[printer]))
    if engine is not None:
        engine.close()
    if outcome != "ok":
        raise _refused("delete", ex, outcome)
    by = f" by the engine running in process {owner}" if owner is not None else ""
    print(f"{ex.name}: deleted{by} ({ex.status} execution of {ex.function_name}, with its history)")
    return EXIT_OK


def _callback_payload(args: argparse.Namespace) -> Optional[str]:
    if args.action == "heartbeat":
        if args.payload is not None:
            raise CliError("callback heartbeat takes no payload")
        return None
    if args.action == "succeed":
        if args.payload is None:
            return None
        if not args.raw:
            _parse_json(args.payload, "the callback result")
        return args.payload
    if args.payload is None:
        return json.dumps({"ErrorType": "CallbackError", "ErrorMessage": "failed with durable-sync callback fail"})
    try:
        value = json.loads(args.payload)
    except json.JSONDecodeError:
        value = args.payload
    if isinstance(value, dict):
        if not isinstance(value.get("ErrorType", ""), str) or not isinstance(value.get("ErrorMessage", ""), str):
            raise CliError("the callback error is a JSON ErrorObject with string ErrorType / ErrorMessage")
        return json.dumps(value)
    return json.dumps({"ErrorType": "CallbackError", "ErrorMessage": str(value)})


def _post_to_owner(args: argparse.Namespace, payload: Optional[str], owner: Optional[int]) -> int:
    from .local.store import Reader

    with Reader(args.db) as reader:
        row = reader.post_callback(args.action, args.callback_id, payload)
        outcome = _await_owner(reader, row, owner, args.wait, args.db, "answer")
    if outcome != "ok":
        raise CliError(f"callback {args.callback_id}: {outcome.removeprefix('error: ')}")
    print(f"callback {args.callback_id}: {args.action} delivered to the engine running in process {owner}")
    return EXIT_OK


def cmd_callback(args: argparse.Namespace) -> int:
    from .local import LocalEngine
    from .local.store import DatabaseInUse, deliver_callback, owner_pid

    payload = _callback_payload(args)
    with _reader(args.db, "callback") as reader:
        found = reader.find_callback(args.callback_id)
        if found is None:
            raise CliError(f"unknown callback id {args.callback_id!r}: no callback in {args.db} has it")
        arn, _, op = found
        ex = reader.execution(arn, with_history=False)
    if op["Status"] != "STARTED" or ex.status != "RUNNING":
        state = op["Status"] if op["Status"] != "STARTED" else f"closed (execution {ex.status})"
        raise CliError(f"callback {args.callback_id} is already {state}; it takes no more answers")
    owner = owner_pid(args.db)
    if owner is not None:
        return _post_to_owner(args, payload, owner)
    functions, problems = _resolve_handlers([ex])
    printer = _Printer()
    printer.main_arn = arn
    try:
        engine = LocalEngine(db=args.db, skip_time=True, functions=functions, listeners=[printer])
    except DatabaseInUse as exc:  # an engine started meanwhile
        return _post_to_owner(args, payload, exc.owner_pid)
    try:
        outcome = deliver_callback(engine, args.action, args.callback_id, payload)
        if outcome != "ok":
            raise CliError(f"callback {args.callback_id}: {outcome.removeprefix('error: ')}")
        print(f"callback {args.callback_id}: {args.action} recorded for {ex.function_name} / {ex.name}")
        if arn in problems:
            _err(f"the execution cannot continue here: {problems[arn]}; it stays RUNNING and continues when "
                 "its handler can be imported (`durable-sync resume`)")
            return EXIT_OK
        if args.skip_time:
            result = engine.wait(arn)
        else:
            engine.advance(0)  # fire what is already due; time does not move beyond now
            result = engine.get_execution(arn)
        _summary(engine, arn, args.db, result)
        if result.status == "RUNNING":
            _report_waiting(engine, arn, args.db)
        elif result.status == "SUCCEEDED":
            print(result.raw_result)
    finally:
        engine.close()
    return EXIT_OK


# -- serve: the Lambda API over HTTP (durable_sync.local.http) ------------------------------------------
_FUNCTION_NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def add_serve_parser(sub: Any) -> argparse.ArgumentParser:
    from .local.http import DEFAULT_HOST, DEFAULT_INVOKE_TIMEOUT, DEFAULT_PORT

    p = sub.add_parser(
        "serve", help="serve the Lambda API (durable operations + Invoke) over HTTP for boto3 and the AWS CLI",
        description="Serve the Lambda REST API for durable executions on the embedded engine. Point boto3 or the "
                    "AWS CLI at it with AWS_ENDPOINT_URL_LAMBDA=http://HOST:PORT (or --endpoint-url).")
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
    p.set_defaults(func=cmd_serve)
    return p


def _load_functions(specs: list[str]) -> dict[str, Callable]:
    """``serve -f [NAME=]FILE[:HANDLER]``: the functions to serve, by name."""
    from .local.http import named_function

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
    from .local import LocalEngine
    from .local.http import make_server

    functions = _load_functions(args.function)
    # --skip-time: waits, retries and polling take no time, but a callback's timeouts keep real time (a client
    # always has the configured time to answer).
    engine = LocalEngine(db=args.db, skip_time=args.skip_time, functions=functions,
                         real_time_callbacks=args.skip_time)
    try:
        try:
            server = make_server(engine, args.host, args.port, functions=functions,
                                 invoke_timeout=args.invoke_timeout)
        except OSError as exc:
            raise CliError(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}") from None
        os.environ.update(engine.foreign.environment())  # boto3 in the served handlers reaches this server
        if args.host not in ("127.0.0.1", "localhost", "::1"):
            print(f"durable-sync: warning: listening on {args.host} with no authentication", file=sys.stderr)
        names = ", ".join(sorted(functions)) or "none (add --function NAME=FILE:HANDLER)"
        print(f"durable-sync: Lambda API on {server.url} (db {args.db}, "
              f"{'virtual' if args.skip_time else 'real'} time)\n"
              f"  functions: {names}\n"
              f"  export AWS_ENDPOINT_URL_LAMBDA={server.url}   # boto3 and the AWS CLI then use it", file=sys.stderr,
              flush=True)
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, _raise_interrupt)
        try:
            server.serve_forever(poll_interval=0.2)
        except KeyboardInterrupt:
            print("durable-sync: stopping", file=sys.stderr)
        finally:
            server.close()
    finally:
        engine.close()
    return 0


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


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
    hist.add_argument("arn", metavar="ARN", help="execution ARN (or its name, when unique)")
    db_option(hist)
    hist.add_argument("--json", action="store_true", help="the raw history events, as boto3 returns them")
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
    from .errors import DurableError
    from .local.service import ServiceError
    from .local.store import StoreError

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (CliError, StoreError) as exc:
        _err(f"durable-sync: error: {exc}")
    except ServiceError as exc:
        _err(f"durable-sync: error: {exc.message}")
    except DurableError as exc:
        _err(f"durable-sync: error: {type(exc).__name__}: {exc}")
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `durable-sync history ... | head`
        try:
            sys.stdout = open(os.devnull, "w")
        except OSError:
            pass
        return EXIT_OK
    return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
