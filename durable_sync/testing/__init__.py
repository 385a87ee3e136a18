"""Testing toolkit for durable functions.

``DurableTestRunner`` runs a handler on a private in-memory ``LocalEngine`` with
virtual time and returns a :class:`TestResult` to assert on (status, result, error,
history, and the operation tree with ``get_step`` / ``get_context`` / ``get_wait`` /
``get_callback``). Callbacks can be answered from the test while the execution waits.
``replay`` checks that new code still replays a recorded execution;
``DurableTestRunner(handler, always_replay=True)`` replays after every operation.

The pytest plugin (entry point ``pytest11``; module ``durable_sync.testing.plugin``)
adds the ``durable_runner`` fixture and shows the operation tree when an assertion
about a TestResult fails. See docs/testing.md.
"""
from .replay_check import ReplayResult, always_replay, operations_from_history, replay
from .results import (CallbackOperation, ContextOperation, InvokeOperation, Operation, OperationNotFoundError,
                      StepAttempt, StepOperation, TestResult, WaitOperation, render_tree)
from .runner import DurableTestRunner

__all__ = [
    "DurableTestRunner", "TestResult", "Operation", "StepOperation", "StepAttempt", "WaitOperation",
    "ContextOperation", "CallbackOperation", "InvokeOperation", "OperationNotFoundError", "render_tree",
    "replay", "ReplayResult", "always_replay", "operations_from_history",
]
