"""Reading an execution back: one model, shown as a text tree or an HTML timeline.

Everything starts from what the service or the local engine records — operation records
and history events in the boto3 shapes — so it works for the local engine, a
``durable-sync`` database and records fetched from AWS::

    from durable_sync import inspection
    ops, events = engine.operations(arn), engine.history(arn)
    print(inspection.render_tree(ops, events))
    Path("run.html").write_text(inspection.render_html(engine.get_execution(arn), ops, events))

``read_execution(info, ops, events)`` gives the model itself: the execution (status, result,
error, invocations) and its operation tree (attempts, back-offs, waits, children, durations).
The CLI, the HTML timeline and the testing toolkit's ``TestResult`` are built on it.
"""
from typing import Any

from .history import operations_from_history
from .model import (CallbackOperation, ContextOperation, Execution, Invocation, InvokeOperation, Operation,
                    OperationNotFoundError, StepAttempt, StepOperation, WaitOperation, build_tree, read_execution)
from .timeline import render_html
from .tracebacks import format_trace, parse_trace
from .tree import format_duration, format_time
from .tree import render_tree as _render_views



def render_tree(operations: Any, history: Any = (), *, max_lines: int = 2000, results: bool = False) -> str:
    """The operations as an indented tree, one aligned line each: name, kind, status, attempts, back-offs,
    duration, error (and, with ``results=True``, each succeeded operation's result, clipped).

    ``operations``: operation views (``build_tree(...)``, ``read_execution(...).roots``,
    ``TestResult.operation_tree``), or the boto3-shaped records (``engine.operations(arn)``), nested
    with their ``history`` (without one, a step shows only its latest attempt number).
    """
    roots = list(operations or ())
    if roots and isinstance(roots[0], dict):
        roots = build_tree(roots, history)
    return _render_views(roots, max_lines=max_lines, results=results)


__all__ = [
    "read_execution", "build_tree", "Execution", "Invocation", "Operation", "StepOperation", "StepAttempt",
    "WaitOperation", "ContextOperation", "CallbackOperation", "InvokeOperation", "OperationNotFoundError",
    "render_tree", "render_html", "format_duration", "format_time", "format_trace", "parse_trace",
    "operations_from_history",
]
