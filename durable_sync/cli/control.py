"""``resume``, ``pause``, ``stop``, ``delete`` and ``callback``: requests to the engine that owns the database.

When an engine in another process owns the database (a ``run`` or ``serve`` in progress), the
request goes through the database's inbox to that engine; otherwise an engine is opened here.
"""
from __future__ import annotations

import argparse
import json
import shlex
import time
from typing import Any, Callable, Optional

from .common import (EXIT_FAILED, EXIT_OK, CliError, db_option, err, find_execution, open_reader, parse_json,
                     resolve_handlers, title, user_logs, verbose_options)
from .progress import EventPrinter
from .run import interrupted_hint, interrupts_as_keyboard, report_waiting, settle, summary


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
        err(interrupted_hint(db, executions[0].name if len(executions) == 1 else None))
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
    printer = EventPrinter(db=args.db, prefix_all=len(unfinished) > 1)
    with interrupts_as_keyboard(), user_logs(args):
        engine = LocalEngine(db=args.db, skip_time=args.skip_time, functions=functions, listeners=[printer])
        try:
            if not args.skip_time:
                printer.clock = engine.clock
            return run_onward(engine, unfinished, problems, args.db)
        finally:
            engine.close()


def _control_target(args: argparse.Namespace, what: str) -> tuple[Any, Optional[str]]:
    """The execution REF names and its pause status (PAUSING / PAUSED / None)."""
    with open_reader(args.db, what) as reader:
        ex = find_execution(reader, args.ref)
        pause = reader.pause_statuses([ex]).get(ex.arn)
    return ex, pause


def _quiet_engine(db: str, printer: Any = None, functions: Optional[dict] = None, skip_time: bool = True) -> Any:
    """An engine opened only to apply a request: it runs nothing else (unfinished executions stay as they are)."""
    from ..local import LocalEngine

    return LocalEngine(db=db, skip_time=skip_time, functions=functions, listeners=[printer] if printer else None,
                       resume_unfinished=False)


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
    """Have ``kind`` (pause / resume / delete / stop) applied to ``ex``: posted to the database's inbox, then taken
    by the engine that owns the database (waiting for it, up to --wait seconds), or else by the engine
    ``open_engine()`` starts here, which applies what was posted before it runs anything.

    Returns (outcome, the owner's pid or None, the engine started here or None: the caller closes it).
    """
    from ..local.store import DatabaseInUse, Reader, owner_pid

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
    from ..local.store import Reader

    _check_reason(args.reason)
    ex, pause = _control_target(args, "pause")
    ref = shlex.quote(args.ref)
    if ex.status != "RUNNING":
        raise CliError(f"execution {title(ex)} already ended ({ex.status}); only a running execution can be paused")
    if pause is not None:
        raise CliError(f"execution {title(ex)} is {pause} already; `durable-sync resume {ref} --db {args.db}` "
                       "ends the pause")
    outcome, owner, engine = _request(args, "pause", ex, args.reason, lambda: _quiet_engine(args.db))
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
    """``resume REF``: end the pause of that execution if it is paused, then run it (only it) onward."""
    from ..local.store import owner_pid

    _check_reason(args.reason)
    ex, pause = _control_target(args, "resume")
    if ex.status != "RUNNING":
        raise CliError(f"execution {title(ex)} already ended ({ex.status}); there is nothing to resume "
                       f"(`durable-sync history {shlex.quote(args.ref)} --db {args.db}` shows it)")
    functions, problems = resolve_handlers([ex])
    printer = EventPrinter(db=args.db)
    printer.main_arn = ex.arn

    def open_engine() -> Any:
        return _quiet_engine(args.db, printer, functions, args.skip_time)

    owner = owner_pid(args.db)
    if pause is None:
        if owner is not None:
            raise CliError(f"execution {title(ex)} is not paused, and the engine in process {owner} that owns "
                           f"{args.db} runs it; there is nothing to resume here")
        if args.reason is not None:
            err(f"execution {title(ex)} is not paused: --reason is not recorded")
    with interrupts_as_keyboard(), user_logs(args):
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
            if not args.skip_time:
                printer.clock = engine.clock
            if ex.arn in problems:
                err(f"cannot run {ex.name} onward ({ex.arn}): {problems[ex.arn]}")
            elif pause is None:  # wake it: the engine attaches to the execution of that function, name and input
                engine.start(functions[ex.function_name], input=json.loads(ex.input_payload or "null"), name=ex.name,
                             function_name=ex.function_name)
            return run_onward(engine, [ex], problems, args.db)
        finally:
            engine.close()


def cmd_delete(args: argparse.Namespace) -> int:
    ex, pause = _control_target(args, "delete")
    ref = shlex.quote(args.ref)
    if ex.status == "RUNNING":
        state = f"RUNNING ({pause})" if pause else "RUNNING"
        todo = (f"resume it (`durable-sync resume {ref} --db {args.db}`) and let it finish" if pause else
                f"let it finish (`durable-sync resume {ref} --db {args.db}`)")
        raise CliError(f"execution {title(ex)} is {state}; only an ended execution (SUCCEEDED, FAILED, STOPPED or "
                       f"TIMED_OUT) can be deleted: {todo}, or stop it (`durable-sync stop {ref}`), then delete it")
    outcome, owner, engine = _request(args, "delete", ex, None, lambda: _quiet_engine(args.db))
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
    from ..local.store import Reader

    with Reader(args.db) as reader:
        row = reader.post_callback(args.action, args.callback_id, payload)
        outcome = _await_owner(reader, row, owner, args.wait, args.db, "answer")
    if outcome != "ok":
        raise CliError(f"callback {args.callback_id}: {outcome.removeprefix('error: ')}")
    print(f"callback {args.callback_id}: {args.action} delivered to the engine running in process {owner}")
    return EXIT_OK


def cmd_callback(args: argparse.Namespace) -> int:
    from ..local.store import DatabaseInUse, owner_pid

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
    printer = EventPrinter(db=args.db)
    printer.main_arn = arn
    try:
        engine = _quiet_engine(args.db, printer, functions)  # the answer wakes the execution it is for, only it
    except DatabaseInUse as exc:  # an engine started meanwhile
        return _post_to_owner(args, payload, exc.owner_pid)
    try:
        with user_logs(args):
            return _answer(args, engine, arn, ex, payload, problems)
    finally:
        engine.close()


def _answer(args: argparse.Namespace, engine: Any, arn: str, ex: Any, payload: Optional[str],
            problems: dict[str, str]) -> int:
    from ..local.store import deliver_callback

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
    return EXIT_OK


def cmd_stop(args: argparse.Namespace) -> int:
    """StopDurableExecution: end a running execution now, as STOPPED (its pending work is dropped)."""
    ex, _ = _control_target(args, "stop")
    if ex.status != "RUNNING":
        raise CliError(f"execution {title(ex)} already ended ({ex.status}); only a running execution can be stopped")
    error = json.dumps({"ErrorType": "ExecutionStopped", "ErrorMessage": args.reason}) if args.reason else None
    outcome, owner, engine = _request(args, "stop", ex, error, lambda: _quiet_engine(args.db))
    if engine is not None:
        engine.close()
    if outcome != "ok":
        raise _refused("stop", ex, outcome)
    by = f" by the engine running in process {owner}" if owner is not None else ""
    print(f"{ex.name}: STOPPED")
    err(f"stopped{by}; `durable-sync history {shlex.quote(args.ref)}` shows it, `durable-sync delete "
        f"{shlex.quote(args.ref)}` removes it")
    return EXIT_OK


# -- the parsers --------------------------------------------------------------------------------------------------
_REF_HELP = "the execution: its ARN, or its name when unique"
_ELSEWHERE = ("When an engine in another process owns the database (a `durable-sync run` or `serve` in progress), "
              "the request goes to it through the database's inbox.")


def _wait_option(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--wait", type=float, default=10.0, metavar="SECONDS",
                   help=f"seconds to wait for a running engine that owns the database to take the {what} (default 10)")


def _parser(sub: Any, name: str, help: str, description: str, examples: str) -> argparse.ArgumentParser:
    return sub.add_parser(name, help=help, description=description, epilog="examples:\n" + examples,
                          formatter_class=argparse.RawDescriptionHelpFormatter)


def add_parsers(sub: Any) -> None:
    res = _parser(
        sub, "resume", "run unfinished executions onward; with REF, only that one (ending its pause)",
        "Without REF: run every unfinished execution in the database onward (paused ones stay paused: the engine "
        "does not invoke them until they are resumed by name). With REF: resume that execution if it is paused "
        "(ResumeDurableExecution), then run it, and only it, onward. " + _ELSEWHERE,
        "  durable-sync resume --skip-time\n  durable-sync resume order-7 --reason 'fixed the card service'")
    res.add_argument("ref", metavar="REF", nargs="?", default=None, help=_REF_HELP + " (default: all unfinished ones)")
    db_option(res)
    res.add_argument("--skip-time", action="store_true", help="virtual time: fast-forward waits and retries")
    res.add_argument("--reason", default=None, metavar="TEXT",
                     help="with REF: why it is resumed (recorded in its history, ExecutionResumed)")
    _wait_option(res, "resume")
    verbose_options(res)
    res.set_defaults(func=cmd_resume)

    pause = _parser(
        sub, "pause", "pause an execution: no invocation until `durable-sync resume REF`",
        "PauseDurableExecution: the engine does not invoke the execution until it is resumed; its waits, retries "
        "and callbacks go on completing, and its execution timeout is held. PAUSED at once, or PAUSING while an "
        "invocation is in flight (PAUSED at its next checkpoint). Prints the resulting state. " + _ELSEWHERE,
        "  durable-sync pause order-7 --reason 'card service down'\n  durable-sync resume order-7")
    pause.add_argument("ref", metavar="REF", help=_REF_HELP)
    pause.add_argument("--reason", default=None, metavar="TEXT",
                       help="why it is paused (recorded in its history, ExecutionPaused)")
    db_option(pause)
    _wait_option(pause, "pause")
    pause.set_defaults(func=cmd_pause)

    stop = _parser(
        sub, "stop", "stop a running execution (it ends STOPPED)",
        "StopDurableExecution: end a running (or paused) execution now; it ends STOPPED and nothing of it runs "
        "again. " + _ELSEWHERE,
        "  durable-sync stop order-7 --reason 'duplicate order'\n  durable-sync delete order-7")
    stop.add_argument("ref", metavar="REF", help=_REF_HELP)
    stop.add_argument("--reason", default=None, metavar="TEXT", help="why (the error message the execution ends with)")
    db_option(stop)
    _wait_option(stop, "stop request")
    stop.set_defaults(func=cmd_stop)

    delete = _parser(
        sub, "delete", "delete an ended execution with its history",
        "DeleteDurableExecution: remove an ended execution (SUCCEEDED, FAILED, STOPPED or TIMED_OUT) with its "
        "operations, history, input and result; its name may be used again. A running (or paused) execution is "
        "refused: stop it first. " + _ELSEWHERE,
        "  durable-sync delete order-7")
    delete.add_argument("ref", metavar="REF", help=_REF_HELP)
    db_option(delete)
    _wait_option(delete, "delete")
    delete.set_defaults(func=cmd_delete)

    cb = _parser(
        sub, "callback", "answer a callback, then run its execution onward",
        "Answer a callback an execution waits for (SendDurableExecutionCallbackSuccess / Failure / Heartbeat), "
        "then run that execution onward (real time: what is due now; --skip-time: to its end). `durable-sync run` "
        "prints the id of each callback it waits for. " + _ELSEWHERE,
        "  durable-sync callback succeed CALLBACK_ID '{\"approved\": true}'\n"
        "  durable-sync callback fail CALLBACK_ID 'rejected by finance'\n"
        "  durable-sync callback heartbeat CALLBACK_ID")
    cb.add_argument("action", choices=("succeed", "fail", "heartbeat"), help="how to answer")
    cb.add_argument("callback_id", metavar="CALLBACK_ID", help="the callback's id")
    cb.add_argument("payload", metavar="PAYLOAD", nargs="?", default=None,
                    help="succeed: the result (JSON); fail: an ErrorObject (JSON) or a message")
    db_option(cb)
    cb.add_argument("--raw", action="store_true", help="succeed: send PAYLOAD as is, even if it is not JSON")
    cb.add_argument("--skip-time", action="store_true",
                    help="after answering, fast-forward the execution's waits and retries in virtual time")
    _wait_option(cb, "answer")
    verbose_options(cb)
    cb.set_defaults(func=cmd_callback)
