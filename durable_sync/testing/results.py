"""What a test looks at: ``TestResult`` and small views of the execution's operations.

Everything here is built from what the engine records (``operations`` and the
``history`` events, boto3 shapes), so the same views work for an execution run
by the local engine and, through ``TestResult.from_records``, for records fetched
from AWS.
"""
from __future__ import annotations

import datetime as _dt
import json
from dataclasses import dataclass, field
from typing import Any, Iterator, Optional, Sequence

from .. import wire
from ..serdes import SerDesContext, decode_plain_json, deserialize_value

__all__ = [
    "TestResult", "Operation", "StepOperation", "StepAttempt", "WaitOperation", "ContextOperation",
    "CallbackOperation", "InvokeOperation", "OperationNotFoundError", "render_tree",
]


class OperationNotFoundError(AssertionError, LookupError):
    """A lookup such as ``result.get_step("x")`` found nothing; the message lists what exists.

    It is an ``AssertionError`` (pytest reports it as a failed expectation, with the
    operation tree) and a ``LookupError`` (``except LookupError`` works too).
    """


class Status(str):
    """A status string that remembers what it belongs to.

    It compares, hashes and prints as the plain string (``result.status == "SUCCEEDED"``);
    the pytest plugin uses ``owner`` to show the operation tree when such a comparison
    fails.
    """

    owner: Any

    def __new__(cls, value: str, owner: Any = None) -> "Status":
        obj = super().__new__(cls, value)
        obj.owner = owner
        return obj

    def __repr__(self) -> str:
        return str.__repr__(str(self))

    def __reduce__(self) -> Any:
        return (str, (str(self),))


# --------------------------------------------------------------------------- operation views


@dataclass(frozen=True, kw_only=True)
class Operation:
    """One durable operation as a test sees it."""

    id: str
    type: str
    sub_type: Optional[str]
    name: Optional[str]
    status: str
    parent_id: Optional[str]
    start_time: Optional[_dt.datetime]
    end_time: Optional[_dt.datetime]
    raw: dict = field(repr=False, compare=False)
    events: tuple = field(default=(), repr=False, compare=False)
    arn: str = field(default="", repr=False, compare=False)
    position: Optional[int] = None  # operation n (1-based) of its context; map/parallel branch index (0-based)

    def __post_init__(self) -> None:
        object.__setattr__(self, "status", Status(self.status, self))

    # -- common ----------------------------------------------------------------------
    @property
    def elapsed(self) -> Optional[_dt.timedelta]:
        """``end_time - start_time`` (None while the operation runs)."""
        if self.start_time is None or self.end_time is None:
            return None
        return self.end_time - self.start_time

    @property
    def details(self) -> dict:
        """The operation's ``<Type>Details`` object (wire shape)."""
        return self.raw.get(_DETAILS_KEY.get(self.type, ""), None) or {}

    @property
    def result_payload(self) -> Optional[str]:
        """The checkpointed result text, undecoded."""
        return self.details.get("Result")

    @property
    def result(self) -> Any:
        """The decoded result (default serdes; use ``decode_result(serdes)`` for a custom one)."""
        return self.decode_result()

    def decode_result(self, serdes: Any = None) -> Any:
        return deserialize_value(serdes, self.result_payload, SerDesContext(self.id, self.arn))

    @property
    def error(self) -> Optional[dict]:
        """The wire ErrorObject (``ErrorType``, ``ErrorMessage``, ...) or None."""
        return self.details.get("Error")

    @property
    def error_type(self) -> Optional[str]:
        return (self.error or {}).get("ErrorType")

    @property
    def error_message(self) -> Optional[str]:
        return (self.error or {}).get("ErrorMessage")

    @property
    def children(self) -> tuple["Operation", ...]:
        return ()

    def label(self) -> str:
        """One line: type, name, status and the essentials."""
        plain = not self.sub_type or self.sub_type == wire.SubType.RUN_IN_CHILD_CONTEXT \
            or self.sub_type.upper() == self.type.replace("_", "")
        kind = self.type if plain else f"{self.type}/{self.sub_type}"
        if self.name is not None:
            name = repr(self.name)
        elif self.sub_type in (wire.SubType.MAP_ITERATION, wire.SubType.PARALLEL_BRANCH) and self.position is not None:
            name = f"<branch {self.position}>"
        else:
            name = f"<#{self.position}>" if self.position is not None else f"<{self.id[:8]}>"
        parts = [f"{kind} {name} {self.status}"]
        parts.extend(self._extra_label())
        if self.error is not None:
            parts.append(f"error {self.error_type}: {_clip(self.error_message or '', 120)}")
        elif self.result_payload not in (None, ""):
            parts.append(f"-> {_clip(self.result_payload, 80)}")
        return ", ".join(parts)

    def _extra_label(self) -> list[str]:
        return []

    def walk(self) -> Iterator["Operation"]:
        """This operation and every descendant, depth first, in start order."""
        yield self
        for child in self.children:
            yield from child.walk()


@dataclass(frozen=True)
class StepAttempt:
    """One attempt of a step, from the history: when it ran and how it ended."""

    number: int
    started_at: Optional[_dt.datetime] = None
    ended_at: Optional[_dt.datetime] = None
    outcome: str = "STARTED"  # STARTED | SUCCEEDED | FAILED
    error: Optional[dict] = None
    retry_delay: Optional[int] = None  # seconds until the next attempt, when one was scheduled


@dataclass(frozen=True, kw_only=True)
class StepOperation(Operation):
    """A step (also wait_for_condition, which is a STEP underneath)."""

    attempt: int = 1  # the latest attempt's number (1-based)
    attempts: tuple[StepAttempt, ...] = ()
    next_attempt_time: Optional[_dt.datetime] = None

    @property
    def retry_delays(self) -> list[int]:
        """The back-off (seconds) scheduled after each failed attempt, in order."""
        return [a.retry_delay for a in self.attempts if a.retry_delay is not None]

    def _extra_label(self) -> list[str]:
        n = self.attempt
        out = [f"{n} attempt{'s' if n != 1 else ''}"]
        if self.retry_delays:
            out.append("back-off " + "/".join(f"{d}s" for d in self.retry_delays))
        return out


@dataclass(frozen=True, kw_only=True)
class WaitOperation(Operation):
    wait_seconds: Optional[int] = None
    scheduled_end_time: Optional[_dt.datetime] = None

    def _extra_label(self) -> list[str]:
        return [f"{self.wait_seconds}s"] if self.wait_seconds is not None else []


@dataclass(frozen=True, kw_only=True)
class CallbackOperation(Operation):
    callback_id: Optional[str] = None

    def decode_result(self, serdes: Any = None) -> Any:
        """Callback payloads come from outside: plain JSON unless a serdes is given."""
        if serdes is not None:
            return super().decode_result(serdes)
        return decode_plain_json(self.result_payload, f"the result of callback {self.name or self.id}")


@dataclass(frozen=True, kw_only=True)
class InvokeOperation(Operation):
    function_name: Optional[str] = None

    def decode_result(self, serdes: Any = None) -> Any:
        if serdes is not None:
            return super().decode_result(serdes)
        return decode_plain_json(self.result_payload, f"the result of invoke {self.name or self.id}")


class _Lookups:
    """``get_step`` / ``get_context`` / ... over a set of operations (shared by TestResult and contexts)."""

    def _lookup_roots(self) -> Sequence[Operation]:
        raise NotImplementedError

    def _lookup_where(self) -> str:
        raise NotImplementedError

    def all_operations(self) -> list[Operation]:
        """Every operation below this point, depth first, in start order."""
        return [op for root in self._lookup_roots() for op in root.walk()]

    def find_operations(self, name: Optional[str] = None, type: Optional[str] = None,
                        sub_type: Optional[str] = None) -> list[Operation]:
        """All operations matching ``name`` / ``type`` (``"STEP"``, ``"WAIT"``, ...) / ``sub_type``."""
        out = []
        for op in self.all_operations():
            if name is not None and op.name != name:
                continue
            if type is not None and op.type != type.upper():
                continue
            if sub_type is not None and op.sub_type != sub_type:
                continue
            out.append(op)
        return out

    def get_operation(self, name: str, type: Optional[str] = None) -> Operation:
        """The first operation named ``name`` (of ``type`` if given); OperationNotFoundError if none."""
        found = self.find_operations(name=name, type=type)
        if found:
            return found[0]
        raise self._not_found(name, type)

    def get_step(self, name: str) -> StepOperation:
        return self.get_operation(name, wire.STEP)  # type: ignore[return-value]

    def get_wait(self, name: str) -> WaitOperation:
        return self.get_operation(name, wire.WAIT)  # type: ignore[return-value]

    def get_context(self, name: str) -> "ContextOperation":
        return self.get_operation(name, wire.CONTEXT)  # type: ignore[return-value]

    def get_invoke(self, name: str) -> InvokeOperation:
        return self.get_operation(name, wire.CHAINED_INVOKE)  # type: ignore[return-value]

    def get_callback(self, name: str) -> CallbackOperation:
        """The callback named ``name``; for ``wait_for_callback(name=...)``, the callback inside it."""
        found = self.find_operations(name=name, type=wire.CALLBACK)
        if found:
            return found[0]  # type: ignore[return-value]
        for ctx in self.find_operations(name=name, type=wire.CONTEXT):
            inner = [op for op in ctx.walk() if op.type == wire.CALLBACK]
            if inner:
                return inner[0]  # type: ignore[return-value]
        raise self._not_found(name, wire.CALLBACK)

    def _not_found(self, name: str, type: Optional[str]) -> OperationNotFoundError:
        kind = {wire.STEP: "step", wire.WAIT: "wait", wire.CONTEXT: "child context", wire.CALLBACK: "callback",
                wire.CHAINED_INVOKE: "chained invoke"}.get(type or "", "operation")
        ops = self.all_operations()
        same_type = sorted({repr(op.name) for op in ops if op.name is not None and (type is None or op.type == type)})
        lines = [f"no {kind} named {name!r} in {self._lookup_where()}"]
        if same_type:
            lines.append(f"{kind}s that exist: {', '.join(same_type)}")
        others = [op for op in ops if op.name == name]
        if others:
            lines.append("operations with that name but another type: " + ", ".join(op.label() for op in others))
        lines.append("operation tree:")
        lines.append(_indent(render_tree(self._lookup_roots()) or "(no operations)", 2))
        return OperationNotFoundError("\n".join(lines))


@dataclass(frozen=True, kw_only=True)
class ContextOperation(Operation, _Lookups):
    """A child context (also map/parallel and their branches, wait_for_callback): has children."""

    child_ops: tuple[Operation, ...] = field(default=(), repr=False)

    @property
    def children(self) -> tuple[Operation, ...]:
        return self.child_ops

    @property
    def replay_children(self) -> bool:
        return bool(self.details.get("ReplayChildren"))

    def _lookup_roots(self) -> Sequence[Operation]:
        return self.child_ops

    def _lookup_where(self) -> str:
        return f"child context {self.name or self.id!r}"

    def tree(self) -> str:
        return render_tree([self])


_DETAILS_KEY = {wire.STEP: "StepDetails", wire.WAIT: "WaitDetails", wire.CONTEXT: "ContextDetails",
                wire.CALLBACK: "CallbackDetails", wire.CHAINED_INVOKE: "ChainedInvokeDetails",
                wire.EXECUTION: "ExecutionDetails"}


def _ts(value: Any) -> Optional[_dt.datetime]:
    if value is None or isinstance(value, _dt.datetime):
        return value
    return wire.ms_to_datetime(wire.to_epoch_ms(value))


def _step_attempts(events: Sequence[dict]) -> tuple[StepAttempt, ...]:
    attempts: list[dict] = []
    for event in events:
        kind = event.get("EventType")
        if kind == "StepStarted":
            attempts.append({"number": len(attempts) + 1, "started_at": _ts(event.get("EventTimestamp"))})
            continue
        if kind not in ("StepSucceeded", "StepFailed"):
            continue
        details = event.get(f"{kind}Details") or {}
        retry = details.get("RetryDetails") or {}
        number = int(retry.get("CurrentAttempt") or (attempts[-1]["number"] if attempts else 1))
        while len(attempts) < number:
            attempts.append({"number": len(attempts) + 1})
        current = attempts[number - 1]
        current["ended_at"] = _ts(event.get("EventTimestamp"))
        current["outcome"] = "SUCCEEDED" if kind == "StepSucceeded" else "FAILED"
        if kind == "StepFailed":
            current["error"] = (details.get("Error") or {}).get("Payload")
        if retry.get("NextAttemptDelaySeconds") is not None:
            current["retry_delay"] = int(retry["NextAttemptDelaySeconds"])
    return tuple(StepAttempt(**a) for a in attempts)


def build_operation(op: dict, events: Sequence[dict], children: Sequence[Operation], arn: str = "",
                    position: Optional[int] = None) -> Operation:
    """A view of one wire operation record (``children`` only matters for contexts)."""
    common = dict(id=op["Id"], type=op.get("Type"), sub_type=op.get("SubType"), name=op.get("Name"),
                  status=op.get("Status") or "STARTED", parent_id=op.get("ParentId"),
                  start_time=_ts(op.get("StartTimestamp")), end_time=_ts(op.get("EndTimestamp")), raw=op,
                  events=tuple(events), arn=arn, position=position)
    kind = op.get("Type")
    if kind == wire.STEP:
        details = op.get("StepDetails") or {}
        attempts = _step_attempts(events)
        attempt = int(details.get("Attempt") or (attempts[-1].number if attempts else 1))
        return StepOperation(**common, attempt=attempt, attempts=attempts,
                             next_attempt_time=_ts(details.get("NextAttemptTimestamp")))
    if kind == wire.WAIT:
        details = op.get("WaitDetails") or {}
        seconds = None
        for event in events:
            if event.get("EventType") == "WaitStarted":
                seconds = (event.get("WaitStartedDetails") or {}).get("Duration")
        end = _ts(details.get("ScheduledEndTimestamp"))
        if seconds is None and end is not None and common["start_time"] is not None:
            seconds = round((end - common["start_time"]).total_seconds())
        return WaitOperation(**common, wait_seconds=seconds, scheduled_end_time=end)
    if kind == wire.CALLBACK:
        return CallbackOperation(**common, callback_id=(op.get("CallbackDetails") or {}).get("CallbackId"))
    if kind == wire.CHAINED_INVOKE:
        function_name = None
        for event in events:
            if event.get("EventType") == "ChainedInvokeStarted":
                function_name = (event.get("ChainedInvokeStartedDetails") or {}).get("FunctionName")
        return InvokeOperation(**common, function_name=function_name)
    if kind == wire.CONTEXT:
        return ContextOperation(**common, child_ops=tuple(children))
    return Operation(**common)


def build_tree(operations: Sequence[dict], history: Sequence[dict] = (), arn: str = "") -> list[Operation]:
    """Views of every non-EXECUTION operation, nested under their parents, in record order."""
    events_by_id: dict[str, list[dict]] = {}
    for event in history:
        if event.get("Id") is not None:
            events_by_id.setdefault(event["Id"], []).append(event)
    ops = [op for op in operations if op.get("Type") != wire.EXECUTION]
    known = {op["Id"] for op in ops}
    children_of: dict[Optional[str], list[dict]] = {}
    for op in ops:
        parent = op.get("ParentId")
        children_of.setdefault(parent if parent in known else None, []).append(op)

    positions: dict[str, int] = {}

    def in_code_order(parent_id: Optional[str], kids: list[dict]) -> list[dict]:
        # Ids are positional (operation n of a context; branch i of a map/parallel), so siblings
        # sort into the order the code asked for them, whatever order concurrent branches ran in.
        for n in range(0 if parent_id else 1, len(kids) + 2):
            positions[wire.operation_id(parent_id, n)] = n
        return sorted(kids, key=lambda op: positions.get(op["Id"], len(kids) + 2))

    def build(op: dict) -> Operation:
        kids = [build(child) for child in in_code_order(op["Id"], children_of.get(op["Id"], []))]
        return build_operation(op, events_by_id.get(op["Id"], ()), kids, arn, positions.get(op["Id"]))

    return [build(op) for op in in_code_order(None, children_of.get(None, []))]


def render_tree(roots: Sequence[Operation], max_lines: int = 400) -> str:
    """The operations as an indented tree, one line each."""
    lines: list[str] = []

    def add(op: Operation, prefix: str, last: bool) -> None:
        lines.append(f"{prefix}{'`-- ' if last else '|-- '}{op.label()}")
        kids = op.children
        for i, child in enumerate(kids):
            add(child, prefix + ("    " if last else "|   "), i == len(kids) - 1)

    for i, root in enumerate(roots):
        add(root, "", i == len(roots) - 1)
    if len(lines) > max_lines:
        lines = lines[:max_lines] + [f"... ({len(lines) - max_lines} more operations)"]
    return "\n".join(lines)


def _clip(text: str, limit: int) -> str:
    text = text.replace("\n", "\\n")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _indent(text: str, n: int) -> str:
    pad = " " * n
    return "\n".join(pad + line for line in text.splitlines())


# --------------------------------------------------------------------------- TestResult


@dataclass(frozen=True, eq=False)
class TestResult(_Lookups):
    """Where an execution stands, with its operations and history.

    ``status`` is ``RUNNING``, ``SUCCEEDED``, ``FAILED``, ``TIMED_OUT`` or ``STOPPED``;
    ``result`` the decoded result; ``error`` the wire ErrorObject dict or None;
    ``history`` the events (boto3 shape); ``operations`` the raw operation records
    (boto3 shape, the EXECUTION operation included).
    """

    __test__ = False  # not a pytest test class

    arn: str
    status: str
    result: Any = None
    error: Optional[dict] = None
    history: list = field(default_factory=list)
    operations: list = field(default_factory=list)
    raw_result: Optional[str] = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "status", Status(self.status, self))
        object.__setattr__(self, "_roots", build_tree(self.operations, self.history, self.arn))

    @classmethod
    def from_records(cls, operations: Sequence[dict], history: Sequence[dict] = (), arn: str = "",
                     status: Optional[str] = None) -> "TestResult":
        """A TestResult from operation records and history events (e.g. fetched with boto3)."""
        exec_op = next((op for op in operations if op.get("Type") == wire.EXECUTION), None) or {}
        status = status or exec_op.get("Status") or "RUNNING"
        status = "RUNNING" if status == wire.STARTED else status
        result = error = raw = None
        for event in history:
            kind = event.get("EventType")
            if kind == "ExecutionSucceeded":
                raw = ((event.get("ExecutionSucceededDetails") or {}).get("Result") or {}).get("Payload")
                result = decode_plain_json(raw, "the execution result") if raw else None
            elif kind in ("ExecutionFailed", "ExecutionTimedOut", "ExecutionStopped"):
                error = ((event.get(f"{kind}Details") or {}).get("Error") or {}).get("Payload")
        return cls(arn=arn, status=status, result=result, error=error, history=list(history),
                   operations=list(operations), raw_result=raw)

    # -- views -------------------------------------------------------------------------
    @property
    def operation_tree(self) -> list[Operation]:
        """Top-level operations (children nested in ``ContextOperation.children``)."""
        return list(self._roots)  # type: ignore[attr-defined]

    def _lookup_roots(self) -> Sequence[Operation]:
        return self._roots  # type: ignore[attr-defined]

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
        exec_op = next((op for op in self.operations if op.get("Type") == wire.EXECUTION), None) or {}
        payload = (exec_op.get("ExecutionDetails") or {}).get("InputPayload")
        return decode_plain_json(payload, "the execution input") if payload else None

    def events(self, event_type: Optional[str] = None, name: Optional[str] = None) -> list[dict]:
        """History events, optionally only those of ``event_type`` and/or of the operation ``name``."""
        return [e for e in self.history if (event_type is None or e.get("EventType") == event_type)
                and (name is None or e.get("Name") == name)]

    @property
    def invocation_count(self) -> int:
        return len(self.events("InvocationCompleted"))

    # -- rendering ---------------------------------------------------------------------
    def summary(self) -> str:
        head = f"execution {self.status}"
        if self.status == "SUCCEEDED":
            head += f", result {_clip(json.dumps(self.result, default=repr), 200)}"
        elif self.error:
            head += f", error {self.error_type}: {_clip(self.error_message or '', 300)}"
        return head

    def tree(self) -> str:
        """The execution and its operations as an indented tree."""
        body = render_tree(self._roots)  # type: ignore[attr-defined]
        return self.summary() + ("\n" + _indent(body, 2) if body else "\n  (no operations)")

    def describe(self) -> str:
        """The tree, plus the error's stack trace when the execution failed."""
        text = self.tree()
        trace = (self.error or {}).get("StackTrace")
        if trace:
            text += "\nerror stack trace:\n" + _indent("\n".join(trace), 2)
        return text

    def __str__(self) -> str:
        return self.tree()

    def __repr__(self) -> str:
        extra = f"result={self.result!r}" if self.status == "SUCCEEDED" else f"error={self.error!r}"
        return f"TestResult(status={str(self.status)!r}, {_clip(extra, 200)}, operations={len(self.operations)})"

    # -- assertions --------------------------------------------------------------------
    def assert_succeeded(self) -> "TestResult":
        """Raise AssertionError (with the operation tree and the error) unless SUCCEEDED."""
        if self.status != "SUCCEEDED":
            raise AssertionError(f"expected the execution to succeed, but it is {self.status}\n{self.describe()}")
        return self

    def assert_failed(self, error_type: Optional[str] = None, message: Optional[str] = None) -> "TestResult":
        """Raise AssertionError unless FAILED (with ``error_type``, and ``message`` in the error message)."""
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
                err = f", {a.error.get('ErrorType')}: {_clip(a.error.get('ErrorMessage') or '', 100)}" \
                    if a.error else ""
                delay = f", retry in {a.retry_delay}s" if a.retry_delay is not None else ""
                lines.append(f"  attempt {a.number}: {a.outcome} at {a.ended_at or a.started_at}{err}{delay}")
        if owner.children:
            lines.append(_indent(render_tree(owner.children), 2))
        return "\n".join(lines)
    return None

