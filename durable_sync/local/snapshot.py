"""What the engine lets its readers see: plain frozen values, copied out under the engine's locks.

``LocalEngine.get_execution`` answers an ``ExecutionResult``; ``LocalEngine.snapshot`` an
``ExecutionSnapshot`` (the execution, its operations and history as boto3 shows them, its pending
timers and open callbacks, and whether an invocation is running or queued). The CLI, the HTTP façade
and the console read executions through these, never through the engine's own state.

``boto_operations`` and ``boto_history`` are the one way stored records become what boto3 returns;
the engine (``operations``, ``history``, ``snapshot``) and the store's ``Reader`` both use them.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Optional

from .. import wire
from .history import to_boto
from .service import public_op


def boto_operations(records: Iterable[dict]) -> list[dict]:
    """Operation records as boto3 returns operations: engine-private keys dropped, absent members omitted,
    timestamps as timezone-aware datetimes."""
    return [to_boto(public_op(op)) for op in records]


def boto_history(events: Iterable[dict]) -> list[dict]:
    """History events as boto3's ``get_durable_execution_history`` returns them."""
    return [to_boto(event) for event in events]


def list_item(arn: str, name: str, function_name: str, status: str, start_ms: int, end_ms: Optional[int]) -> dict:
    """One execution of the local engine as ``ListDurableExecutionsByFunction`` lists it (boto3 shape: datetimes,
    no EndTimestamp while it runs); ``status`` as the service reports it (PAUSING / PAUSED for a paused one)."""
    item = {"DurableExecutionArn": arn, "DurableExecutionName": name,
            "FunctionArn": wire.function_arn(function_name, wire.LATEST), "Status": status,
            "StartTimestamp": wire.ms_to_datetime(start_ms)}
    if end_ms:
        item["EndTimestamp"] = wire.ms_to_datetime(end_ms)
    return item


@dataclass(frozen=True)
class ExecutionResult:
    """Where an execution stands: status, decoded result, wire error."""

    arn: str
    status: str
    result: Any = None
    error: Optional[dict] = None
    raw_result: Optional[str] = None
    #: "PAUSING" or "PAUSED" while a pause is in force (``status`` stays RUNNING: the execution is not over).
    pause_status: Optional[str] = None
    #: The service's PauseDetails while paused: PauseRequestTimestamp, ExecutionTimeoutPaused, Reason (if given).
    pause_details: Optional[dict] = None
    #: When a RUNNING execution times out (ExpectedExecutionTimeoutTimestamp, pauses included); None once ended.
    timeout_at: Any = None


@dataclass(frozen=True)
class PendingTimer:
    """Something the engine will do by itself at ``due_ms`` (epoch milliseconds, the engine's clock).

    ``kind``: ``wait`` (a wait ends), ``retry`` (a step's next attempt is due), ``callback_timeout``,
    ``callback_heartbeat``, ``invoke`` (a chained invoke starts), ``reinvoke`` (an invocation whose end
    could not be stored is made again) or ``execution_timeout``.
    """

    kind: str
    due_ms: int
    operation_id: Optional[str] = None
    operation_name: Optional[str] = None  # the operation's Name, when it has one


@dataclass(frozen=True)
class OpenCallback:
    """A callback that waits for an answer (SendDurableExecutionCallbackSuccess / Failure)."""

    callback_id: str
    operation_id: str
    operation_name: Optional[str] = None


@dataclass(frozen=True)
class ExecutionSnapshot:
    """One execution as the engine holds it at one instant (``LocalEngine.snapshot(arn)``)."""

    arn: str
    function_name: str
    name: str
    execution: ExecutionResult
    start_ms: int
    end_ms: Optional[int]
    #: Every operation, the EXECUTION one included, in the wire shape boto3 returns (datetimes).
    operations: tuple
    #: The history, as GetDurableExecutionHistory returns it.
    history: tuple
    #: What the engine will do by itself for this execution, soonest first (the execution timeout included).
    pending_timers: tuple
    open_callbacks: tuple
    #: An invocation of the handler is running now.
    invocation_in_flight: bool
    #: An invocation is asked for (it runs when the engine gets to it, unless a pause holds it).
    invocation_queued: bool

    @property
    def status(self) -> str:
        return self.execution.status

    @property
    def invocations(self) -> int:
        """Invocations that ended so far."""
        return sum(1 for event in self.history if event["EventType"] == "InvocationCompleted")

    @property
    def waits_on_outside(self) -> bool:
        """Nothing inside the engine can move the execution any more: it ended, it is PAUSED (only a
        resume moves it), or it waits only for what the outside gives (a callback answer)."""
        if self.status != "RUNNING" or self.execution.pause_status == "PAUSED":
            return True
        if self.invocation_in_flight or self.invocation_queued:
            return False
        if any(op["Type"] == "CHAINED_INVOKE" and op["Status"] == "STARTED" for op in self.operations):
            return False  # the engine runs the target
        return not any(t.kind != "execution_timeout" for t in self.pending_timers)
