"""``durable-sync list`` and ``history``: reading executions back from the database."""
from __future__ import annotations

import argparse
import json
import shutil
import time
from typing import Any

from ..inspection import format_duration, format_trace, read_execution, render_html, render_tree
from .common import _STATUSES, EXIT_OK, CliError, db_option, err, find_execution, json_default, open_reader, when


def cmd_list(args: argparse.Namespace) -> int:
    status = args.status.upper() if args.status else None
    if status and status not in _STATUSES:
        raise CliError(f"--status must be one of {', '.join(_STATUSES)}, got {args.status!r}")
    with open_reader(args.db, "list") as reader:
        rows = reader.executions(function_name=args.function, name=args.name, status=status)
        counts = reader.counts([r.arn for r in rows]) if rows else {}
        paused = reader.pause_statuses(rows)  # RUNNING, held by PauseDurableExecution
    if args.json:  # ListDurableExecutionsByFunction's response, as boto3 returns it (a paused one is PAUSED)
        from ..local.snapshot import list_item

        print(json.dumps({"DurableExecutions": [
            list_item(r.arn, r.name, r.function_name, paused.get(r.arn, r.status), r.start_ms, r.end_ms)
            for r in rows]}, default=json_default, indent=2))
        return EXIT_OK
    if not rows:
        err(f"no executions{' match' if (args.function or args.name or status) else ''} in {args.db}")
        return EXIT_OK
    table = [("NAME", "FUNCTION", "STATUS", "STARTED", "DURATION", "OPS", "ARN")]
    for r in rows:
        shown = f"{r.status} ({paused[r.arn]})" if r.arn in paused else r.status
        table.append((r.name, r.function_name, shown, when(r.start_ms),
                      format_duration(r.end_ms - r.start_ms) if r.end_ms else "-", str(counts.get(r.arn, 0)), r.arn))
    for line in _fit(table, shutil.get_terminal_size((120, 24)).columns):
        print(line)
    return EXIT_OK


def _fit(table: list[tuple[str, ...]], width: int) -> list[str]:
    """The table's lines within ``width`` columns: the ARN column goes first, then long names are clipped,
    then (a very narrow terminal) the lines themselves."""
    columns = list(zip(*table))
    if sum(max(map(len, c)) + 2 for c in columns) > width:
        columns = columns[:-1]  # the ARN: `durable-sync list --json` has it
    widths = [max(map(len, c)) for c in columns]
    over = sum(w + 2 for w in widths) - 2 - width
    for i in (0, 1):  # NAME, then FUNCTION, down to 8 characters
        if over > 0:
            cut = min(over, max(0, widths[i] - 8))
            widths[i] -= cut
            over -= cut
    lines = []
    for row in zip(*columns):
        cells = [cell if len(cell) <= w else cell[: w - 1] + "…" for cell, w in zip(row, widths)]
        line = "  ".join(cell.ljust(w) for cell, w in zip(cells, widths)).rstrip()
        lines.append(line if len(line) <= width else line[: width - 1] + "…")
    return lines


def _print_execution(model: Any, all_attempts: bool) -> None:
    """The execution's headline, its operation tree, its result or error; then the stack traces of what
    failed (each failed operation; with ``all_attempts``, each failed attempt), the user's frames shown."""
    n = len(model.invocations)
    took = (f"took {format_duration(model.duration_ms)}" if model.duration_ms is not None else
            f"running for {format_duration(int(time.time() * 1000) - model.start_ms)}" if model.start_ms else "")
    print(f"{model.function_name} / {model.name}  {model.status}  {took}, {n} invocation{'s' if n != 1 else ''}")
    print(f"  {model.arn}")
    print(render_tree(model.roots))
    if model.status == "SUCCEEDED":
        print(f"result {model.result_payload}")
    elif model.error:
        print(f"error {model.error_type}: {model.error_message}")
    failures: list[tuple[str, dict]] = []
    for op in model.all_operations():
        attempts = [a for a in getattr(op, "attempts", ()) if a.outcome == "FAILED" and a.error]
        if all_attempts and attempts:
            failures += [(f"{op.display_name} attempt {a.number}", a.error) for a in attempts]
        elif op.error and str(op.status) in ("FAILED", "TIMED_OUT", "STOPPED"):
            failures.append((op.display_name, op.error))
    if model.error:
        failures.append(("execution", model.error))
    shown: set = set()
    for title, error in failures:
        trace = tuple(error.get("StackTrace") or ())
        if title == "execution" and trace in shown:
            continue  # the execution failed with the error of an operation shown above
        shown.add(trace)
        print(f"\n{title}: {error.get('ErrorType')}: {error.get('ErrorMessage')}")
        print(format_trace(trace, indent="  ") or "  (no stack trace recorded)")


def cmd_history(args: argparse.Namespace) -> int:
    with open_reader(args.db, "history") as reader:
        ex = find_execution(reader, args.ref)
        operations, events = reader.operations(ex.arn), reader.history(ex.arn)
    model = read_execution(ex, operations, events)
    if args.json:
        print(json.dumps(events, default=json_default, indent=2))
    else:
        _print_execution(model, args.traceback)
    if args.html:
        _write_timeline(ex, operations, events, args.html)
    return EXIT_OK


def _write_timeline(ex: Any, operations: list, events: list, path: str) -> None:
    """``history --html PATH``: the execution as a self-contained HTML timeline."""
    page = render_html(ex, operations, events, now=None if ex.end_ms else int(time.time() * 1000))
    try:
        with open(path, "w", encoding="utf-8") as out:
            out.write(page)
    except OSError as exc:
        raise CliError(f"cannot write the timeline to {path}: {exc.strerror or exc}") from None
    err(f"timeline written to {path} ({len(operations) - 1} operations); open it in a browser")


# -- the parsers --------------------------------------------------------------------------------------------------
def add_parsers(sub: Any) -> None:
    lst = sub.add_parser(
        "list", help="list the executions in the database",
        description="The executions in the database, oldest first: name, function, status, start (local time, with "
                    "its zone), duration, operations and ARN (the ARN column is left out when the terminal is too "
                    "narrow). --json prints ListDurableExecutionsByFunction's response as boto3 returns it "
                    "({\"DurableExecutions\": [...]}, timestamps in ISO 8601 with their offset).",
        epilog="examples:\n  durable-sync list\n  durable-sync list --status running --function order_workflow\n"
               "  durable-sync list --json",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    db_option(lst)
    lst.add_argument("--function", default=None, help="only this function")
    lst.add_argument("--status", default=None, help=f"only this status ({', '.join(_STATUSES)})")
    lst.add_argument("--name", default=None, help="only this execution name")
    lst.add_argument("--json", action="store_true", help="JSON, as ListDurableExecutionsByFunction returns it")
    lst.set_defaults(func=cmd_list)

    hist = sub.add_parser(
        "history", help="an execution's operations as a tree (or its raw events)",
        description="The operations of one execution as a tree: name, kind, status, attempts, back-offs, duration "
                    "and error; then its result, or its error with the stack trace (your frames, library frames "
                    "folded). --traceback adds the stack trace of every failed attempt; --json prints the raw "
                    "history events; --html writes a self-contained timeline page.",
        epilog="examples:\n  durable-sync history order-7\n  durable-sync history order-7 --traceback\n"
               "  durable-sync history order-7 --html timeline.html",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    hist.add_argument("ref", metavar="REF", help="the execution: its ARN, or its name when unique")
    db_option(hist)
    hist.add_argument("--json", action="store_true", help="the raw history events, as boto3 returns them")
    hist.add_argument("--traceback", action="store_true",
                      help="the stack trace of every failed attempt (a failed execution shows its own anyway)")
    hist.add_argument("--html", metavar="PATH", default=None,
                      help="also write a self-contained HTML timeline of the execution to PATH")
    hist.set_defaults(func=cmd_history)
