"""One read model of an execution: its operations, their attempts, waits and children, and its invocations.

Everything is built from what the service (or the local engine) records, in the boto3 shapes of
``GetDurableExecutionState`` (operation records) and ``GetDurableExecutionHistory`` (events), so
the same model serves an execution run by the local engine, one kept in a ``durable-sync``
database and one fetched from AWS. The text tree, the HTML timeline, the CLI and the testing
toolkit's ``TestResult`` all read executions through it.
"""
from __future__ import annotations

import datetime as _dt
import json
from dataclasses import dataclass, field
from typing import Any, Iterator, Optional, Sequence

from .. import wire
from ..events import TERMINAL_EXECUTION_EVENTS
from ..serdes import SerDesContext, decode_plain_json, deserialize_value
from .tree import operation_line, render_tree, to_ms

__all__ = [
    "Operation", "StepOperation", "StepAttempt", "WaitOperation", "ContextOperation", "CallbackOperation",
    "InvokeOperation", "OperationNotFoundError", "Status", "Execution", "Invocation", "build_operation",
    "build_tree", "read_execution", "kind_word", "unnamed_label", "operation_label",
]

EXECUTION_TERMINAL = wire.EXECUTION_TERMINAL
BRANCH_SUBTYPES = frozenset({wire.SubType.MAP_ITERATION, wire.SubType.PARALLEL_BRANCH})

_KIND = {  # SubType (or Type) -> the word a user knows
    "Step": "step", "Wait": "wait", "Callback": "callback", "ChainedInvoke": "invoke",
    "RunInChildContext": "child", "Map": "map", "MapIteration": "map item", "Parallel": "parallel",
    "ParallelBranch": "branch", "WaitForCallback": "wait_for_callback", "WaitForCondition": "wait_for_condition",
    "STEP": "step", "WAIT": "wait", "CONTEXT": "child", "CALLBACK": "callback", "CHAINED_INVOKE": "invoke",
}


def kind_word(sub_type_or_type: Optional[str]) -> str:
    """The word a user knows for an operation's SubType (or Type): ``step``, ``map item``, ``wait_for_condition``..."""
    return _KIND.get(sub_type_or_type or "", str(sub_type_or_type or "operation").lower())


def _ts(value: Any) -> Optional[_dt.datetime]:
    if value is None or isinstance(value, _dt.datetime):
        return value
    ms = to_ms(value)
    return None if ms is None else wire.ms_to_datetime(ms)


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


# --------------------------------------------------------------------------- operations


@dataclass(frozen=True, kw_only=True)
class Operation:
    """One durable operation, read back."""

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
    display_name: str = ""  # the name, or a readable label for an unnamed operation ("score-all[3]", "step #2")

    def __post_init__(self) -> None:
        object.__setattr__(self, "status", Status(self.status, self))
        if not self.display_name:
            object.__setattr__(self, "display_name", self.name or f"({self.kind})")

    # -- common ----------------------------------------------------------------------
    @property
    def kind(self) -> str:
        """The word a user knows: ``step``, ``wait``, ``map``, ``map item``, ``wait_for_condition``, ..."""
        return kind_word(self.sub_type or self.type)

    @property
    def elapsed(self) -> Optional[_dt.timedelta]:
        """``end_time - start_time`` (None while the operation runs)."""
        if self.start_time is None or self.end_time is None:
            return None
        return self.end_time - self.start_time

    @property
    def start_ms(self) -> Optional[int]:
        return to_ms(self.start_time)

    @property
    def end_ms(self) -> Optional[int]:
        return to_ms(self.end_time)

    @property
    def duration_ms(self) -> Optional[int]:
        """Milliseconds from start to end (None while the operation runs)."""
        start, end = self.start_ms, self.end_ms
        return None if start is None or end is None else end - start

    @property
    def details(self) -> dict:
        """The operation's ``<Type>Details`` object (wire shape)."""
        return self.raw.get(wire.DETAILS_KEY.get(self.type, ""), None) or {}

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

    def _decode_from_outside(self, serdes: Any, kind: str) -> Any:
        """Payloads that come from outside the function (callback answers, invoke results) are plain
        JSON only, never the rich-object format, unless the caller names a serdes."""
        if serdes is not None:
            return Operation.decode_result(self, serdes)
        return decode_plain_json(self.result_payload, f"the result of {kind} {self.display_name}")

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
        """One line: name, kind, status and the essentials (the same cells as its line in the tree)."""
        return operation_line(self, results=True)

    def walk(self) -> Iterator["Operation"]:
        """This operation and every descendant, depth first, in the order the code asked for them."""
        yield self
        for child in self.children:
            yield from child.walk()


@dataclass(frozen=True)
class StepAttempt:
    """One attempt of a step (or one check of wait_for_condition), from the history."""

    number: int
    started_at: Optional[_dt.datetime] = None
    ended_at: Optional[_dt.datetime] = None
    outcome: str = "STARTED"  # STARTED | SUCCEEDED | FAILED
    error: Optional[dict] = None
    retry_delay: Optional[int] = None  # seconds until the next attempt, when one was scheduled

    @property
    def duration_ms(self) -> Optional[int]:
        start, end = to_ms(self.started_at), to_ms(self.ended_at)
        return None if start is None or end is None else end - start


@dataclass(frozen=True, kw_only=True)
class StepOperation(Operation):
    """A step (also wait_for_condition, which is a STEP underneath)."""

    attempt: int = 1  # the latest attempt's number (1-based)
    attempts: tuple[StepAttempt, ...] = ()
    next_attempt_time: Optional[_dt.datetime] = None

    @property
    def polling(self) -> bool:
        """A wait_for_condition: its attempts are checks, a scheduled next attempt is the next poll."""
        return self.sub_type == wire.SubType.WAIT_FOR_CONDITION

    @property
    def retry_delays(self) -> list[int]:
        """The back-off (seconds) scheduled after each attempt that was followed by another, in order."""
        return [a.retry_delay for a in self.attempts if a.retry_delay is not None]

    @property
    def failed_attempts(self) -> int:
        return sum(1 for a in self.attempts if a.outcome == "FAILED")


@dataclass(frozen=True, kw_only=True)
class WaitOperation(Operation):
    wait_seconds: Optional[int] = None
    scheduled_end_time: Optional[_dt.datetime] = None


@dataclass(frozen=True, kw_only=True)
class CallbackOperation(Operation):
    callback_id: Optional[str] = None

    def decode_result(self, serdes: Any = None) -> Any:
        return self._decode_from_outside(serdes, "callback")


@dataclass(frozen=True, kw_only=True)
class InvokeOperation(Operation):
    function_name: Optional[str] = None

    def decode_result(self, serdes: Any = None) -> Any:
        return self._decode_from_outside(serdes, "invoke")


class Lookups:
    """``get_step`` / ``get_context`` / ... over a set of operations (an execution or a context)."""

    def _lookup_roots(self) -> Sequence[Operation]:
        raise NotImplementedError

    def _lookup_where(self) -> str:
        raise NotImplementedError

    def all_operations(self) -> list[Operation]:
        """Every operation below this point, depth first, in the order the code asked for them."""
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
        __tracebackhide__ = True  # pytest: show the test's line and this message, not the lookup's frames
        found = self.find_operations(name=name, type=type)
        if found:
            return found[0]
        raise self._not_found(name, type)

    def get_step(self, name: str) -> StepOperation:
        __tracebackhide__ = True
        return self.get_operation(name, wire.STEP)  # type: ignore[return-value]

    def get_wait(self, name: str) -> WaitOperation:
        __tracebackhide__ = True
        return self.get_operation(name, wire.WAIT)  # type: ignore[return-value]

    def get_context(self, name: str) -> "ContextOperation":
        __tracebackhide__ = True
        return self.get_operation(name, wire.CONTEXT)  # type: ignore[return-value]

    def get_invoke(self, name: str) -> InvokeOperation:
        __tracebackhide__ = True
        return self.get_operation(name, wire.CHAINED_INVOKE)  # type: ignore[return-value]

    def get_callback(self, name: str) -> CallbackOperation:
        """The callback named ``name``; for ``wait_for_callback(name=...)``, the callback inside it."""
        __tracebackhide__ = True
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
            lines.append("operations with that name but another type: " + "; ".join(op.label() for op in others))
        lines.append("operation tree:")
        lines.append(indent(render_tree(self._lookup_roots(), results=True), 2))
        return OperationNotFoundError("\n".join(lines))


@dataclass(frozen=True, kw_only=True)
class ContextOperation(Operation, Lookups):
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
        return f"child context {self.display_name!r}"

    def tree(self) -> str:
        return render_tree([self], results=True)


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


#: The Name both SDKs give map item / parallel branch ``i`` that has none of its own (``map-item-3``).
DEFAULT_BRANCH_NAMES = {wire.SubType.MAP_ITERATION: "map-item-", wire.SubType.PARALLEL_BRANCH: "parallel-branch-"}


def operation_label(name: Optional[str], kind: str, sub_type: Optional[str], position: Optional[int],
                    parent_label: Optional[str]) -> str:
    """The name, or ``unnamed_label`` when there is none or it is a branch's default name (``m[3]``,
    not ``map-item-3``)."""
    if name and not (position is not None and name == f"{DEFAULT_BRANCH_NAMES.get(sub_type)}{position}"):
        return name
    return unnamed_label(kind, sub_type, position, parent_label)


def unnamed_label(kind: str, sub_type: Optional[str], position: Optional[int], parent_label: Optional[str]) -> str:
    """The label of an operation without a name: ``m[3]`` for item 3 of map ``m``, ``step #2`` for the
    second operation of its context, ``(step)`` when its position is unknown."""
    if sub_type in BRANCH_SUBTYPES and position is not None:
        return f"{parent_label or kind}[{position}]"
    if position is not None:
        return f"{kind} #{position}"
    return f"({kind})"


def build_operation(op: dict, events: Sequence[dict], children: Sequence[Operation], arn: str = "",
                    position: Optional[int] = None, display_name: str = "") -> Operation:
    """A view of one wire operation record (``children`` only matters for contexts)."""
    common = dict(id=op["Id"], type=op.get("Type"), sub_type=op.get("SubType"), name=op.get("Name"),
                  status=op.get("Status") or "STARTED", parent_id=op.get("ParentId"),
                  start_time=_ts(op.get("StartTimestamp")), end_time=_ts(op.get("EndTimestamp")), raw=op,
                  events=tuple(events), arn=arn, position=position, display_name=display_name)
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
    """Views of every non-EXECUTION operation, nested under their parents, in the order the code asked for them."""
    events_by_id: dict[str, list[dict]] = {}
    for event in history or ():
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

    def build(op: dict, parent_label: Optional[str]) -> Operation:
        position = positions.get(op["Id"])
        label = operation_label(op.get("Name"), kind_word(op.get("SubType") or op.get("Type")), op.get("SubType"),
                                position, parent_label)
        kids = [build(child, label) for child in in_code_order(op["Id"], children_of.get(op["Id"], []))]
        return build_operation(op, events_by_id.get(op["Id"], ()), kids, arn, position, label)

    return [build(op, None) for op in in_code_order(None, children_of.get(None, []))]


# --------------------------------------------------------------------------- the execution


@dataclass(frozen=True)
class Invocation:
    """One invocation of the handler (``InvocationCompleted``): when it ran, and its error if it crashed."""

    number: int
    start_ms: Optional[int]
    end_ms: Optional[int]
    error: Optional[dict] = None

    @property
    def duration_ms(self) -> Optional[int]:
        return None if self.start_ms is None or self.end_ms is None else max(0, self.end_ms - self.start_ms)


@dataclass(frozen=True)
class Execution(Lookups):
    """An execution read back: what it is, how it ended, its operation tree and its invocations."""

    arn: str
    name: str
    function_name: str
    status: str  # RUNNING SUCCEEDED FAILED TIMED_OUT STOPPED
    start_ms: Optional[int]
    end_ms: Optional[int]
    error: Optional[dict]
    result_payload: Optional[str]
    input_payload: Optional[str]
    invocations: tuple[Invocation, ...]
    roots: tuple[Operation, ...] = field(repr=False)
    operations: tuple = field(default=(), repr=False)  # the raw records (EXECUTION included)
    history: tuple = field(default=(), repr=False)  # the raw events

    @property
    def duration_ms(self) -> Optional[int]:
        return None if self.start_ms is None or self.end_ms is None else self.end_ms - self.start_ms

    @property
    def error_type(self) -> Optional[str]:
        return (self.error or {}).get("ErrorType")

    @property
    def error_message(self) -> Optional[str]:
        return (self.error or {}).get("ErrorMessage")

    def _lookup_roots(self) -> Sequence[Operation]:
        return self.roots

    def _lookup_where(self) -> str:
        return f"the execution ({self.status})"


def _get(obj: Any, *names: str) -> Any:
    """The first present attribute / key of ``names`` (dicts and objects alike)."""
    if obj is None:
        return None
    for name in names:
        value = obj.get(name) if isinstance(obj, dict) else getattr(obj, name, None)
        if value is not None:
            return value
    return None


def read_execution(info: Any, operations: Sequence[dict], history: Sequence[dict] = ()) -> Execution:
    """The read model of one execution.

    ``info`` is what else is known about it — an ``ExecutionResult``, a ``GetDurableExecution``
    response, a ``durable-sync`` database record, a snapshot, or None (then everything is derived
    from the EXECUTION operation and the history); ``operations`` and ``history`` are the
    boto3-shaped records and events.
    """
    operations = list(operations or ())
    history = list(history or ())
    exec_op = next((op for op in operations if op.get("Type") == wire.EXECUTION), None) or {}
    arn = _get(info, "arn", "DurableExecutionArn") or ""
    status = _get(info, "status", "Status") or exec_op.get("Status") or "RUNNING"
    name = _get(info, "name", "DurableExecutionName")
    function = _get(info, "function_name", "FunctionName")
    parts = wire.parse_execution_arn(arn)
    if parts is not None:
        name = name or parts.name
        function = function or parts.function_name
    start = to_ms(_get(info, "start_ms", "StartTimestamp")) or to_ms(exec_op.get("StartTimestamp"))
    end = to_ms(_get(info, "end_ms", "EndTimestamp")) or to_ms(exec_op.get("EndTimestamp"))
    error = _get(info, "error", "Error")
    result = _get(info, "raw_result", "Result")
    if result is None and info is not None and not isinstance(info, dict):
        value = getattr(info, "result", None)  # a database record keeps the JSON text; an ExecutionResult decodes it
        result = value if isinstance(value, str) or value is None else json.dumps(value, default=str)
    input_payload = (exec_op.get("ExecutionDetails") or {}).get("InputPayload")
    invocations: list[Invocation] = []
    for event in history:
        etype = event.get("EventType")
        stamp = to_ms(event.get("EventTimestamp"))
        if etype == "ExecutionStarted":
            start = start if start is not None else stamp
            if input_payload is None:
                input_payload = ((event.get("ExecutionStartedDetails") or {}).get("Input") or {}).get("Payload")
        elif etype in TERMINAL_EXECUTION_EVENTS:
            end = end if end is not None else stamp
            details = event.get(f"{etype}Details") or {}
            if etype == "ExecutionSucceeded" and result is None:
                result = (details.get("Result") or {}).get("Payload")
            elif etype != "ExecutionSucceeded" and error is None:
                error = (details.get("Error") or {}).get("Payload")
        elif etype == "InvocationCompleted":
            d = event.get("InvocationCompletedDetails") or {}
            invocations.append(Invocation(len(invocations) + 1, to_ms(d.get("StartTimestamp")) or stamp,
                                          to_ms(d.get("EndTimestamp")) or stamp, (d.get("Error") or {}).get("Payload")))
    status = str(status)
    if status == wire.STARTED:
        status = "RUNNING"
    if end is None and exec_op.get("Status") in EXECUTION_TERMINAL:
        end = to_ms(exec_op.get("EndTimestamp"))
    return Execution(arn=arn, name=name or "", function_name=function or "", status=status, start_ms=start,
                     end_ms=end if status != "RUNNING" else None, error=error or None,
                     result_payload=result if isinstance(result, str) or result is None else None,
                     input_payload=input_payload, invocations=tuple(invocations),
                     roots=tuple(build_tree(operations, history, arn)), operations=tuple(operations),
                     history=tuple(history))


def indent(text: str, n: int) -> str:
    pad = " " * n
    return "\n".join(pad + line for line in text.splitlines())
