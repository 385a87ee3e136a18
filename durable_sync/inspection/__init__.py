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
from .history import operations_from_history
from .model import (CallbackOperation, ContextOperation, Execution, Invocation, InvokeOperation, Operation,
                    OperationNotFoundError, StepAttempt, StepOperation, WaitOperation, build_tree, read_execution)
from .timeline import render_html
from .tracebacks import format_trace, parse_trace
from .tree import format_duration, format_time, render_tree

__all__ = [
    "read_execution", "build_tree", "Execution", "Invocation", "Operation", "StepOperation", "StepAttempt",
    "WaitOperation", "ContextOperation", "CallbackOperation", "InvokeOperation", "OperationNotFoundError",
    "render_tree", "render_html", "format_duration", "format_time", "format_trace", "parse_trace",
    "operations_from_history",
]
