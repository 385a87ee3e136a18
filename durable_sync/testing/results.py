"""What a test looks at: ``TestResult``, built on the read model of an execution (``durable_sync.inspection``).

Everything here comes from what the engine records (``operations`` and the ``history``
events, boto3 shapes), so the same views work for an execution run by the local engine
and, through ``TestResult.from_records``, for records fetched from AWS.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

from ..inspection.model import (CallbackOperation, ContextOperation, Execution, InvokeOperation, Lookups, Operation,
                                OperationNotFoundError, Status, StepAttempt, StepOperation, WaitOperation, indent,
                                read_execution)
from ..inspection.tracebacks import format_trace
from ..inspection.tree import clip, render_tree
from ..serdes import decode_plain_json

__all__ = [
    "TestResult", "Operation", "StepOperation", "StepAttempt", "WaitOperation", "ContextOperation",
    "CallbackOperation", "InvokeOperation", "OperationNotFoundError", "render_tree",
]


# --------------------------------------------------------------------------- TestResult


@dataclass(frozen=True, eq=False)
class TestResult(Lookups):
    """Where an execution stands, with its operations and history.

    ``status`` is ``RUNNING``, ``SUCCEEDED``, ``FAILED``, ``TIMED_OUT`` or ``STOPPED``;
    ``result`` the decoded result; ``error`` the wire ErrorObject dict or None;
    ``history`` the events (boto3 shape); ``operations`` the raw operation records
    (boto3 shape, the EXECUTION operation included); ``execution`` the read model
    (``durable_sync.inspection.Execution``) they make.
    """

    __test__ = False  # not a pytest test class

    arn: str
    status: str
    result: Any = None
    error: Optional[dict] = None
    history: list = field(default_factory=list)
    operations: list = field(default_factory=list)
    raw_result: Optional[str] = None
    execution: Execution = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "status", Status(self.status, self))
        info = {"DurableExecutionArn": self.arn, "Status": str(self.status), "Error": self.error,
                "Result": self.raw_result}
        object.__setattr__(self, "execution", read_execution(info, self.operations, self.history))

    @classmethod
    def from_records(cls, operations: Sequence[dict], history: Sequence[dict] = (), arn: str = "",
                     status: Optional[str] = None) -> "TestResult":
        """A TestResult from operation records and history events (e.g. fetched with boto3)."""
        model = read_execution({"DurableExecutionArn": arn, "Status": status}, operations, history)
        raw = model.result_payload if model.status == "SUCCEEDED" else None
        result = decode_plain_json(raw, "the execution result") if raw else None
        return cls(arn=arn, status=model.status, result=result, error=model.error, history=list(history),
                   operations=list(operations), raw_result=raw)

    # -- views -------------------------------------------------------------------------
    @property
    def operation_tree(self) -> list[Operation]:
        """Top-level operations (children nested in ``ContextOperation.children``)."""
        return list(self.execution.roots)

    def _lookup_roots(self) -> Sequence[Operation]:
        return self.execution.roots

    def _lookup_where(self) -> str:
        return f"the execution ({self.status})"

    @property
    def succeeded(self) -> bool:
        return self.status == "SUCCEEDED"

    @property
    def error_type(self) -> Optional[str]:
        return (self.error or {}).get("ErrorType")

    @property
    def error_message(self) -> Optional[str]:
        return (self.error or {}).get("ErrorMessage")

    @property
    def input(self) -> Any:
        """The execution's input, decoded."""
        payload = self.execution.input_payload
        return decode_plain_json(payload, "the execution input") if payload else None

    def events(self, event_type: Optional[str] = None, name: Optional[str] = None) -> list[dict]:
        """History events, optionally only those of ``event_type`` and/or of the operation ``name``."""
        return [e for e in self.history if (event_type is None or e.get("EventType") == event_type)
                and (name is None or e.get("Name") == name)]

    @property
    def invocation_count(self) -> int:
        return len(self.execution.invocations)

    # -- rendering ---------------------------------------------------------------------
    def summary(self) -> str:
        head = f"execution {self.status}"
        if self.status == "SUCCEEDED":
            head += f", result {clip(json.dumps(self.result, default=repr), 200)}"
        elif self.error:
            head += f", error {self.error_type}: {clip(self.error_message or '', 300)}"
        return head

    def tree(self) -> str:
        """The execution and its operations as an indented tree (the one tree of ``durable_sync.inspection``)."""
        return self.summary() + "\n" + indent(render_tree(self.execution.roots, results=True), 2)

    def describe(self) -> str:
        """The tree, plus the error's stack trace (library frames folded) when the execution failed."""
        text = self.tree()
        trace = format_trace((self.error or {}).get("StackTrace"))
        if trace:
            text += "\nerror stack trace:\n" + indent(trace, 2)
        return text

    def __str__(self) -> str:
        return self.tree()

    def __repr__(self) -> str:
        extra = f"result={self.result!r}" if self.status == "SUCCEEDED" else f"error={self.error!r}"
        return f"TestResult(status={str(self.status)!r}, {clip(extra, 200)}, operations={len(self.operations)})"

    # -- assertions --------------------------------------------------------------------
    def assert_succeeded(self) -> "TestResult":
        """Raise AssertionError (with the operation tree and the error) unless SUCCEEDED."""
        __tracebackhide__ = True  # pytest: show the test's line and this message, not the toolkit's frames
        if self.status != "SUCCEEDED":
            raise AssertionError(f"expected the execution to succeed, but it is {self.status}\n{self.describe()}")
        return self

    def assert_failed(self, error_type: Optional[str] = None, message: Optional[str] = None) -> "TestResult":
        """Raise AssertionError unless FAILED (with ``error_type``, and ``message`` in the error message)."""
        __tracebackhide__ = True
        problems = []
        if self.status != "FAILED":
            problems.append(f"expected the execution to fail, but it is {self.status}")
        else:
            if error_type is not None and self.error_type != error_type:
                problems.append(f"expected error type {error_type!r}, got {self.error_type!r}")
            if message is not None and message not in (self.error_message or ""):
                problems.append(f"expected {message!r} in the error message, got {self.error_message!r}")
        if problems:
            raise AssertionError("; ".join(problems) + "\n" + self.describe())
        return self

    def assert_status(self, status: str) -> "TestResult":
        __tracebackhide__ = True
        if self.status != status:
            raise AssertionError(f"expected the execution to be {status}, but it is {self.status}\n{self.describe()}")
        return self


def explain(value: Any) -> Optional[str]:
    """Context for a failed assertion involving a TestResult, an operation view or their status."""
    owner = value.owner if isinstance(value, Status) else value
    if isinstance(owner, TestResult):
        return owner.tree()
    if isinstance(owner, Operation):
        lines = [f"operation {owner.label()}"]
        if isinstance(owner, StepOperation) and owner.attempts:
            for a in owner.attempts:
                err = f", {a.error.get('ErrorType')}: {clip(a.error.get('ErrorMessage') or '', 100)}" \
                    if a.error else ""
                delay = f", retry in {a.retry_delay} s" if a.retry_delay is not None else ""
                lines.append(f"  attempt {a.number}: {a.outcome} at {a.ended_at or a.started_at}{err}{delay}")
        if owner.children:
            lines.append(indent(render_tree(owner.children, results=True), 2))
        return "\n".join(lines)
    return None
