"""The instrumentation plugin API: the hook base class and the info objects the hooks receive.

A plugin subclasses :class:`InstrumentationPlugin` and overrides the hooks it needs; the
others do nothing. Every info object is a frozen dataclass whose fields hold plain wire
values: ``operation_type`` / ``status`` / ``sub_type`` are the service's tokens (``"STEP"``,
``"SUCCEEDED"``, ``"Step"``), ``result`` is the checkpointed payload text, ``error`` is a wire
ErrorObject dict (``ErrorType``, ``ErrorMessage``, ...), times are timezone-aware datetimes.
"""
from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional

from .. import wire

ErrorObject = dict  # a wire ErrorObject: {"ErrorType", "ErrorMessage", "ErrorData"?, "StackTrace"?}


@dataclass(frozen=True, kw_only=True)
class OperationInfo:
    """One operation as the service records it (unset fields are ``None``)."""

    operation_id: str
    operation_type: str  # STEP, WAIT, CONTEXT, CALLBACK, CHAINED_INVOKE (EXECUTION in operation maps)
    sub_type: Optional[str] = None  # wire SubType: Step, Wait, RunInChildContext, Map, MapIteration, ...
    name: Optional[str] = None
    parent_id: Optional[str] = None
    start_time: Optional[_dt.datetime] = None
    end_time: Optional[_dt.datetime] = None
    is_replayed: bool = False
    status: Optional[str] = None  # wire status: STARTED, PENDING, READY, SUCCEEDED, FAILED, ...
    result: Optional[str] = None  # the checkpointed payload text
    error: Optional[ErrorObject] = None
    attempt: Optional[int] = None  # 1-based, steps (and wait_for_condition checks)
    #: The execution the operation belongs to (not in the official SDK): a plugin instance shared by
    #: invocations that run at the same time (the local engine runs many) tells them apart with it.
    execution_arn: Optional[str] = None


@dataclass(frozen=True, kw_only=True)
class OperationStartInfo(OperationInfo):
    """An operation starts: live (``is_replayed=False``, once in its life) or seen unfinished on replay."""


@dataclass(frozen=True, kw_only=True)
class OperationEndInfo(OperationInfo):
    """An operation reached a terminal status (reported once, in the first invocation that sees it)."""


@dataclass(frozen=True, kw_only=True)
class UserFunctionStartInfo(OperationInfo):
    """User code of an operation starts: a step attempt, a child context / branch / map item body, a check.

    ``is_replay_children`` is set for context operations: True when the body runs again to replay
    the children of a context that already completed; ``None`` for other operation types.
    """

    is_replay_children: Optional[bool] = None


@dataclass(frozen=True, kw_only=True)
class UserFunctionEndInfo(OperationInfo):
    """User code of an operation returned (``outcome="SUCCEEDED"``) or raised (``"FAILED"``, with ``error``);
    ``"INCOMPLETE"`` when the execution suspended inside it (a wait in a child context's body).
    ``start_time`` is when it started, ``end_time`` when it ended."""

    is_replay_children: Optional[bool] = None
    outcome: str = "SUCCEEDED"


@dataclass(frozen=True, kw_only=True)
class OperationChangeInfo:
    """After a checkpoint response (or, at an invocation's start, the changes made while it was suspended).

    ``updated_operations``: the operations the response changed; ``operations``: every operation of
    the execution, as a read-only mapping that is exact during the call (it is not copied per
    checkpoint; ``dict(info.operations)`` keeps a snapshot).
    """

    execution_arn: str
    updated_operations: dict[str, OperationInfo] = field(default_factory=dict)
    operations: Mapping[str, OperationInfo] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class InvocationStartInfo:
    """Before user code runs. ``operations`` is the state the invocation starts with;
    ``updated_operations`` those that changed while the execution was suspended."""

    request_id: Optional[str]
    execution_arn: str
    is_first_invocation: bool
    execution_start_time: Optional[_dt.datetime] = None
    operations: dict[str, OperationInfo] = field(default_factory=dict)
    updated_operations: dict[str, OperationInfo] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class InvocationEndInfo:
    """After the invocation's outcome is final: ``status`` SUCCEEDED / FAILED / PENDING, ``error`` when FAILED."""

    request_id: Optional[str]
    execution_arn: str
    is_first_invocation: bool
    execution_start_time: Optional[_dt.datetime] = None
    operations: dict[str, OperationInfo] = field(default_factory=dict)
    status: str = "PENDING"
    error: Optional[ErrorObject] = None


class InstrumentationPlugin:
    """Base class of instrumentation plugins: every hook does nothing; override the ones you need.

    Register plugins with ``@ds.durable_handler(plugins=[...])``: an instance is used by every
    invocation; a factory (a zero-argument callable such as the plugin class) is called once per
    invocation. A hook that raises is logged and ignored: it never changes the execution's
    outcome and never stops the other plugins' hooks. Hooks about an operation or its user code
    run on the thread doing that work, so a plugin that keeps state across hooks of parallel
    branches guards it with a lock.
    """

    def on_invocation_start(self, info: InvocationStartInfo) -> None:
        """Before user code runs."""

    def on_invocation_end(self, info: InvocationEndInfo) -> None:
        """After the invocation's outcome is final (also when it ends PENDING)."""

    def on_operation_start(self, info: OperationStartInfo) -> None:
        """An operation starts (live), or is found unfinished while replaying (``info.is_replayed``)."""

    def on_operation_end(self, info: OperationEndInfo) -> None:
        """An operation reached a terminal status."""

    def on_operation_change(self, info: OperationChangeInfo) -> None:
        """A checkpoint response changed operations (or they changed while the execution was suspended)."""

    def on_user_function_start(self, info: UserFunctionStartInfo) -> None:
        """User code of an operation is about to run, on the thread that runs it."""

    def on_user_function_end(self, info: UserFunctionEndInfo) -> None:
        """User code of an operation returned or raised, on the thread that ran it."""


HOOKS = ("on_invocation_start", "on_invocation_end", "on_operation_start", "on_operation_end",
         "on_operation_change", "on_user_function_start", "on_user_function_end")


# --------------------------------------------------------------------------- from wire records



def timestamp(value: Any) -> Optional[_dt.datetime]:
    """A wire timestamp (epoch milliseconds in the envelope, a datetime from boto3) as an aware datetime."""
    if value is None:
        return None
    if isinstance(value, _dt.datetime):
        return value if value.tzinfo is not None else value.replace(tzinfo=_dt.timezone.utc)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return _dt.datetime.fromtimestamp(value / 1000.0, _dt.timezone.utc)
    if isinstance(value, str):
        try:
            return timestamp(float(value))
        except ValueError:
            try:
                return timestamp(_dt.datetime.fromisoformat(value.replace("Z", "+00:00")))
            except ValueError:
                return None
    return None


def record_fields(record: dict[str, Any]) -> dict[str, Any]:
    """The OperationInfo fields of one wire operation record (without ``is_replayed``)."""
    op_type = record.get("Type")
    details = record.get(wire.DETAILS_KEY.get(op_type, ""), None) or {}
    error = details.get("Error")
    attempt = details.get("Attempt") if op_type == "STEP" else None
    return {
        "operation_id": record["Id"],
        "operation_type": op_type,
        "sub_type": record.get("SubType"),
        "name": record.get("Name"),
        "parent_id": record.get("ParentId"),
        "start_time": timestamp(record.get("StartTimestamp")),
        "end_time": timestamp(record.get("EndTimestamp")),
        "status": record.get("Status"),
        "result": details.get("Result"),
        "error": dict(error) if isinstance(error, dict) else None,
        "attempt": int(attempt) if isinstance(attempt, (int, float)) and not isinstance(attempt, bool) else None,
    }


def operation_info(record: dict[str, Any], is_replayed: bool = False, cls: type = OperationInfo,
                   execution_arn: Optional[str] = None, **overrides: Any) -> Any:
    """An info object (``cls``) for one wire operation record; ``overrides`` replace fields."""
    fields = record_fields(record)
    fields["is_replayed"] = is_replayed
    fields["execution_arn"] = execution_arn
    fields.update(overrides)
    return cls(**fields)


def now() -> _dt.datetime:
    return _dt.datetime.now(_dt.timezone.utc)
