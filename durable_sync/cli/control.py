"""``resume``, ``pause``, ``delete`` and ``callback``: requests to the engine that owns the database.

When an engine in another process owns the database (a ``run`` or ``serve`` in progress), the
request goes through the database's inbox to that engine; otherwise an engine is opened here.
"""
from __future__ import annotations

import argparse
import json
import shlex
import time
from typing import Any, Callable, Optional

from .common import (EXIT_FAILED, EXIT_OK, CliError, err, find_execution, open_reader, parse_json, resolve_handlers,
                     title)
from .progress import EventPrinter
from .run import report_waiting, settle, summary


def run_onward(engine: Any, executions: list, problems: dict[str, str], db: str) -> int:
    """``resume``: settle each execution on ``engine`` (one line on stdout each); EXIT_FAILED when one
    could not be resumed (its handler cannot be imported)."""
    try:
        for ex in executions:
            if ex.arn in problems:
                continue
            err(f"resuming {ex.function_name} / {ex.name}")
            result = settle(engine, ex.arn)
            line = f"{ex.name}: {result.status}"
            if result.status == "SUCCEEDED":
                line += f" {result.raw_result}"
            elif result.error:
                line += f" {result.error.get('ErrorType')}: {result.error.get('ErrorMessage')}"
            print(line)
            if result.status == "RUNNING":
                report_waiting(engine, ex.arn, db)
    except KeyboardInterrupt:
        err(f"interrupted; run `durable-sync resume --db {db}` again to continue")
        raise
    return EXIT_FAILED if problems else EXIT_OK

def cmd_resume(args: argparse.Namespace) -> int:
    from ..local import LocalEngine

    if args.ref is not None:
        return _resume_one(args)
    if args.reason is not None:
        raise CliError("--reason goes with REF: `durable-sync resume REF --reason TEXT` ends that execution's pause")
    with open_reader(args.db, "resume") as reader:
        unfinished = reader.executions(status="RUNNING")
    if not unfinished:
        err(f"nothing to resume: no unfinished executions in {args.db}")
        return EXIT_OK
    functions, problems = resolve_handlers(unfinished)
    for ex in unfinished:
        if ex.arn in problems:
            err(f"cannot resume {ex.name} ({ex.arn}): {problems[ex.arn]}")
    printer = EventPrinter(prefix_all=len(unfinished) > 1)
    engine = LocalEngine(db=args.db, skip_time=args.skip_time, functions=functions, listeners=[printer])
    try:
        return run_onward(engine, unfinished, problems, args.db)
    finally:
        engine.close()

def _control_target(args: argparse.Namespace, what: str) -> tuple[Any, Optional[str], list]:
    """The execution REF names, its pause status (PAUSING / PAUSED / None), and the other unfinished ones."""
    with open_reader(args.db, what) as reader:
        ex = find_execution(reader, args.ref)
        pause = reader.pause_statuses([ex]).get(ex.arn)
        others = [o for o in reader.executions(status="RUNNING") if o.arn != ex.arn]
    return ex, pause, others

def _check_reason(reason: Optional[str]) -> None:
    from ..local.control import MAX_REASON_CHARS

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
            err(f"interrupted; the {what} was taken back, nothing was sent")
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
    from ..local.sqlite_store import DatabaseInUse, Reader, owner_pid

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
    return CliError(f"{kind} {title(ex)}: {outcome.removeprefix('error: ')}")

def cmd_pause(args: argparse.Namespace) -> int:
    from ..local import LocalEngine
    from ..local.sqlite_store import Reader

    _check_reason(args.reason)
    ex, pause, _ = _control_target(args, "pause")
    ref = shlex.quote(args.ref)
    if ex.status != "RUNNING":
        raise CliError(f"execution {title(ex)} already ended ({ex.status}); only a running execution can be paused")
    if pause is not None:
        raise CliError(f"execution {title(ex)} is {pause} already; `durable-sync resume {ref} --db {args.db}` "
                       "ends the pause")
    printer = EventPrinter()
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
        err(f"pause recorded{by}: the invocation in flight ends at its next checkpoint, then the execution is "
             "PAUSED (`durable-sync list` shows it)")
    elif state == "PAUSED":
        err(f"paused{by}: waits, retries and callbacks go on completing, but the engine does not invoke it "
             "until it is resumed")
    if state in ("PAUSING", "PAUSED"):
        err(f"  resume it with `durable-sync resume {ref} --db {args.db}`")
    return EXIT_OK

def _resume_one(args: argparse.Namespace) -> int:
    """``resume REF``: end the pause of that execution if it is paused, then run it onward."""
    from ..local import LocalEngine
    from ..local.sqlite_store import owner_pid

    _check_reason(args.reason)
    ex, pause, others = _control_target(args, "resume")
    if ex.status != "RUNNING":
        raise CliError(f"execution {title(ex)} already ended ({ex.status}); there is nothing to resume "
                       f"(`durable-sync history {shlex.quote(args.ref)} --db {args.db}` shows it)")
    functions, problems = resolve_handlers([ex])
    printer = EventPrinter(others={o.arn for o in others})
    printer.main_arn = ex.arn

    def open_engine() -> Any:
        return LocalEngine(db=args.db, skip_time=args.skip_time, functions=functions, listeners=[printer])

    owner = owner_pid(args.db)
    if pause is None:
        if owner is not None:
            raise CliError(f"execution {title(ex)} is not paused, and the engine in process {owner} that owns "
                           f"{args.db} runs it; there is nothing to resume here")
        if args.reason is not None:
            err(f"execution {title(ex)} is not paused: --reason is not recorded")
    if others and owner is None:  # the engine started here runs them too
        shown = ", ".join(title(o) for o in others[:3]) + (", ..." if len(others) > 3 else "")
        err(f"the engine also resumes {len(others)} other unfinished execution{'s' if len(others) > 1 else ''} "
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
            err(f"cannot run {ex.name} onward ({ex.arn}): {problems[ex.arn]}")
        return run_onward(engine, [ex], problems, args.db)
    finally:
        engine.close()

def cmd_delete(args: argparse.Namespace) -> int:
    from ..local import LocalEngine

    ex, pause, _ = _control_target(args, "delete")
    ref = shlex.quote(args.ref)
    if ex.status == "RUNNING":
        state = f"RUNNING ({pause})" if pause else "RUNNING"
        todo = (f"resume it (`durable-sync resume {ref} --db {args.db}`) and let it finish" if pause else
                f"let it finish (`durable-sync resume {ref} --db {args.db}`)")
        raise CliError(f"execution {title(ex)} is {state}; only an ended execution (SUCCEEDED, FAILED, STOPPED or "
                       f"TIMED_OUT) can be deleted: {todo}, or stop it (StopDurableExecution), then delete it")
    printer = EventPrinter(prefix_all=True)
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
            parse_json(args.payload, "the callback result")
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
    from ..local.sqlite_store import Reader

    with Reader(args.db) as reader:
        row = reader.post_callback(args.action, args.callback_id, payload)
        outcome = _await_owner(reader, row, owner, args.wait, args.db, "answer")
    if outcome != "ok":
        raise CliError(f"callback {args.callback_id}: {outcome.removeprefix('error: ')}")
    print(f"callback {args.callback_id}: {args.action} delivered to the engine running in process {owner}")
    return EXIT_OK

def cmd_callback(args: argparse.Namespace) -> int:
    from ..local import LocalEngine
    from ..local.sqlite_store import DatabaseInUse, deliver_callback, owner_pid

    payload = _callback_payload(args)
    with open_reader(args.db, "callback") as reader:
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
    functions, problems = resolve_handlers([ex])
    printer = EventPrinter()
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
            err(f"the execution cannot continue here: {problems[arn]}; it stays RUNNING and continues when "
                 "its handler can be imported (`durable-sync resume`)")
            return EXIT_OK
        if args.skip_time:
            result = engine.wait(arn)
        else:
            engine.advance(0)  # fire what is already due; time does not move beyond now
            result = engine.get_execution(arn)
        summary(engine, arn, args.db, result)
        if result.status == "RUNNING":
            report_waiting(engine, arn, args.db)
        elif result.status == "SUCCEEDED":
            print(result.raw_result)
    finally:
        engine.close()
    return EXIT_OK
