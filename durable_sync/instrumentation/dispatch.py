"""One invocation's plugins: builds the info objects, applies the start / end rules, isolates failures.

The SDK creates an :class:`Instrumentation` only when some plugin is registered (otherwise
``Runtime.instrumentation`` is None and no info object is ever built) and calls it at a few
points: the invocation's start and end, an operation's begin (live or replay), the terminal
checkpoint of an operation, around each run of user code, and after each checkpoint response.

Hooks run in registration order, except ``on_invocation_end`` and ``on_user_function_end``, which
run in reverse (plugins nest like context managers: one that makes its span current in a start
hook restores the previous one in the end hook, in the right order).

A hook that raises is logged (once per plugin and hook in an invocation, with its traceback)
and ignored: the other plugins' hooks still run and the execution's outcome never changes.
No hook runs while the SDK holds one of its locks: checkpoint responses are queued by the
flusher and delivered to ``on_operation_change`` by the next thread that passes a delivery
point (after a checkpoint, and at the invocation's end, before ``on_invocation_end``).
"""
from __future__ import annotations

import logging
import threading
from collections import deque
from types import MappingProxyType
from typing import Any, Callable, Iterable, Optional, Sequence

from .. import wire
from . import rules
from .api import (HOOKS, InstrumentationPlugin, InvocationEndInfo, InvocationStartInfo, OperationChangeInfo,
                  OperationEndInfo, OperationInfo, OperationStartInfo, UserFunctionEndInfo, UserFunctionStartInfo,
                  now, operation_info, timestamp)
from .registry import Source, configured_sources

log = logging.getLogger("durable_sync.plugins")


def open_invocation(sources: Sequence[Source], arn: str, lambda_context: Any, operations: list[dict[str, Any]],
                    event: dict[str, Any], flusher: Any) -> Optional["Instrumentation"]:
    """The instrumentation of the invocation starting now (None, and nothing built, without plugins):
    the handler's ``plugins=`` sources and the process's / ``DURABLE_SYNC_PLUGINS``'s. Subscribes to the
    flusher's checkpoint responses when a plugin wants them and reports the invocation's start."""
    configured = configured_sources()
    if not sources and not configured:
        return None
    instr = Instrumentation.open([*sources, *configured], arn, getattr(lambda_context, "aws_request_id", None),
                                 operations, event.get("UpdatedOperationIds"))
    if instr is not None:
        if instr.wants_changes:
            flusher.on_response = instr.checkpoint_response
        instr.invocation_start()
    return instr

#: End hooks paired with a start hook on the same thread run in reverse registration order.
_UNWINDING = ("on_invocation_end", "on_user_function_end")

_ACTION_STATUS = {wire.SUCCEED: wire.SUCCEEDED, wire.FAIL: wire.FAILED, wire.CANCEL: wire.CANCELLED}


def _overrides(plugin: Any, hook: str) -> Optional[Any]:
    """The bound hook of ``plugin`` when it does something (not the base class's no-op)."""
    method = getattr(type(plugin), hook, None)
    if method is None or method is getattr(InstrumentationPlugin, hook):
        return None
    return getattr(plugin, hook)


def _infos(records: Iterable[dict[str, Any]], arn: str) -> dict[str, OperationInfo]:
    return {op["Id"]: operation_info(op, execution_arn=arn) for op in records}


class Instrumentation:
    """The plugins of one invocation and what they have been told."""

    def __init__(self, plugins: Sequence[Any], start_info: InvocationStartInfo, initial: dict[str, Optional[str]],
                 updated_ids: frozenset):
        self.arn = start_info.execution_arn
        self._start_info = start_info
        self._hooks = {hook: [(p, m) for p in plugins for m in [_overrides(p, hook)] if m is not None]
                       for hook in HOOKS}
        for hook in _UNWINDING:  # plugins nest like context managers: the last one started ends first
            self._hooks[hook].reverse()
        #: Whether an operation's begin / terminal checkpoint matters to some plugin.
        self.wants_operations = bool(self._hooks["on_operation_start"] or self._hooks["on_operation_end"])
        #: Whether runs of user code matter to some plugin.
        self.wants_user_functions = bool(self._hooks["on_user_function_start"] or self._hooks["on_user_function_end"])
        #: Whether checkpoint responses matter to some plugin (the flusher reports them only then).
        self.wants_changes = bool(self._hooks["on_operation_change"])
        self._initial = initial  # id -> status when the invocation started
        self._updated = updated_ids
        self._lock = threading.Lock()  # guards _fired, _live_start and _logged; never held while a hook runs
        self._fired: set[str] = set()  # operations whose end this invocation reported
        self._live_start: dict[str, Any] = {}  # id -> when its live start was reported
        self._attempts: dict[str, int] = {}  # id -> the attempt of its last run of user code
        self._logged: set[tuple[int, str]] = set()
        self._pending: deque[list[dict[str, Any]]] = deque()  # checkpoint responses not yet delivered
        self._deliver = threading.Lock()
        self._map: dict[str, OperationInfo] = dict(start_info.operations)
        #: What on_operation_change gets as ``operations``: a read-only view of the full map, not a copy per
        #: checkpoint (that would make an invocation of n checkpoints O(n^2)).
        self._view = MappingProxyType(self._map)

    # -- building ----------------------------------------------------------------------------
    @classmethod
    def open(cls, sources: Sequence[Source], arn: str, request_id: Optional[str], operations: list[dict[str, Any]],
             updated_ids: Iterable[str]) -> Optional["Instrumentation"]:
        """The invocation's instrumentation, or None when no source gives a plugin."""
        all_infos = _infos(operations, arn)
        updated = frozenset(updated_ids or ())
        execution = next((op for op in operations if op.get("Type") == wire.EXECUTION), None)
        info = InvocationStartInfo(
            request_id=request_id, execution_arn=arn,
            is_first_invocation=not any(op.get("Type") != wire.EXECUTION for op in operations),
            execution_start_time=timestamp((execution or {}).get("StartTimestamp")),
            operations=all_infos,
            updated_operations={op_id: all_infos[op_id] for op_id in all_infos if op_id in updated})
        plugins = [p for p in (s.create(info) for s in sources) if p is not None]
        if not plugins:
            return None
        return cls(plugins, info, {op["Id"]: op.get("Status") for op in operations}, updated)

    # -- calling -----------------------------------------------------------------------------
    def _call(self, hook: str, info: Any) -> None:
        for plugin, method in self._hooks[hook]:
            try:
                method(info)
            except Exception:  # noqa: BLE001 - a plugin never changes the execution's outcome
                key = (id(plugin), hook)
                with self._lock:
                    first = key not in self._logged
                    self._logged.add(key)
                if first:
                    log.exception("instrumentation plugin %s.%s raised; ignored (further errors of this hook in "
                                  "this invocation are logged at DEBUG)", type(plugin).__qualname__, hook)
                else:
                    log.debug("instrumentation plugin %s.%s raised again; ignored", type(plugin).__qualname__,
                              hook, exc_info=True)

    def _claim_end(self, op_id: str) -> bool:
        with self._lock:
            if op_id in self._fired:
                return False
            self._fired.add(op_id)
            return True

    # -- the invocation ----------------------------------------------------------------------
    def invocation_start(self) -> None:
        """Before user code runs; then the changes made while the execution was suspended, if any."""
        info = self._start_info
        self._call("on_invocation_start", info)
        if info.updated_operations and self.wants_changes:
            self._call("on_operation_change", OperationChangeInfo(
                execution_arn=self.arn, updated_operations=dict(info.updated_operations), operations=self._view))

    def run_invocation(self, run: Callable[[], dict[str, Any]],
                       operations: Callable[[], list[dict[str, Any]]]) -> dict[str, Any]:
        """``run()`` (the invocation, to its output), then ``invocation_end``; an invocation that raises
        (an error Lambda retries) ends FAILED with that error, and the exception goes on."""
        try:
            output = run()
        except BaseException as exc:
            from ..errors import error_object
            self.invocation_end({"Status": wire.FAILED, "Error": error_object(exc)}, operations())
            raise
        self.invocation_end(output, operations())
        return output

    def invocation_end(self, output: dict[str, Any], operations: list[dict[str, Any]]) -> None:
        """After the outcome is final: deliver pending changes, report the ends still owed, then the end."""
        self.deliver_changes(wait=True)
        if self._hooks["on_operation_end"]:
            by_id = {op["Id"]: op for op in operations}
            for op_id in rules.ends_owed(self._initial, operations, self._updated, self._fired):
                if self._claim_end(op_id):
                    record = by_id[op_id]
                    replayed = rules.is_terminal(self._initial.get(op_id))
                    self._call("on_operation_end", operation_info(record, replayed, OperationEndInfo, self.arn))
        start = self._start_info
        self._call("on_invocation_end", InvocationEndInfo(
            request_id=start.request_id, execution_arn=self.arn, is_first_invocation=start.is_first_invocation,
            execution_start_time=start.execution_start_time, operations=_infos(operations, self.arn),
            status=str(output.get("Status")), error=output.get("Error")))

    # -- operations --------------------------------------------------------------------------
    def begin(self, op_id: str, op_type: str, sub_type: Optional[str], name: Optional[str],
              parent_id: Optional[str], record: Optional[dict[str, Any]]) -> None:
        """The code reached an operation; ``record`` is what the service has (None: a new operation)."""
        if not self.wants_operations:
            return
        action = rules.on_begin(record, self._initial.get(op_id), op_id in self._updated, op_id in self._fired)
        if action == rules.LIVE_START:
            started = now()
            with self._lock:
                self._live_start[op_id] = started
            if self._hooks["on_operation_start"]:
                self._call("on_operation_start", OperationStartInfo(
                    operation_id=op_id, operation_type=op_type, sub_type=sub_type, name=name, parent_id=parent_id,
                    start_time=started, status=wire.STARTED, attempt=1 if op_type == wire.STEP else None,
                    execution_arn=self.arn))
        elif action == rules.REPLAYED_START:
            if self._hooks["on_operation_start"]:
                self._call("on_operation_start", operation_info(record, True, OperationStartInfo, self.arn))
        elif action == rules.END and self._claim_end(op_id):
            self._call("on_operation_end", operation_info(record, True, OperationEndInfo, self.arn))

    def ended(self, update: dict[str, Any], record: Optional[dict[str, Any]]) -> None:
        """The terminal checkpoint ``update`` (SUCCEED / FAIL) of an operation is persisted; ``record`` is
        the service's record now (taken when terminal, else the info is built from the update)."""
        if not self._hooks["on_operation_end"] or update.get("Action") not in _ACTION_STATUS:
            return
        op_id = update["Id"]
        if not self._claim_end(op_id):
            return
        if record is not None and rules.is_terminal(record.get("Status")):
            info = operation_info(record, False, OperationEndInfo, self.arn)
        else:
            with self._lock:
                started = self._live_start.get(op_id)
                attempt = self._attempts.get(op_id)
            if started is None and record is not None:
                started = timestamp(record.get("StartTimestamp"))
            error = update.get("Error")
            info = OperationEndInfo(
                operation_id=op_id, operation_type=update.get("Type"), sub_type=update.get("SubType"),
                name=update.get("Name"), parent_id=update.get("ParentId"), start_time=started, end_time=now(),
                status=_ACTION_STATUS.get(update.get("Action"), update.get("Action")),
                result=update.get("Payload"), error=dict(error) if isinstance(error, dict) else None,
                attempt=attempt if update.get("Type") == wire.STEP else None, execution_arn=self.arn)
        self._call("on_operation_end", info)

    # -- user code ---------------------------------------------------------------------------
    def user_function_start(self, op_id: str, op_type: str, sub_type: Optional[str], name: Optional[str],
                            parent_id: Optional[str], record: Optional[dict[str, Any]],
                            attempt: Optional[int] = None) -> Optional[UserFunctionStartInfo]:
        """User code of an operation is about to run on this thread; returns the token for ``user_function_end``."""
        if not self.wants_user_functions:
            return None
        if attempt is not None:
            with self._lock:
                self._attempts[op_id] = attempt
        status = record.get("Status") if record is not None else wire.STARTED
        replay_children = rules.is_terminal(status) if op_type == wire.CONTEXT else None
        info = UserFunctionStartInfo(
            operation_id=op_id, operation_type=op_type, sub_type=sub_type, name=name, parent_id=parent_id,
            start_time=now(), is_replayed=record is not None, status=status, attempt=attempt,
            is_replay_children=replay_children, execution_arn=self.arn)
        self._call("on_user_function_start", info)
        return info

    def user_function_end(self, start: Optional[UserFunctionStartInfo], error: Optional[dict[str, Any]],
                          outcome: Optional[str] = None) -> None:
        """User code returned (``error`` None) or raised (``error`` its wire ErrorObject), on its thread;
        ``outcome="INCOMPLETE"`` when the execution suspended inside it."""
        if start is None:
            return
        self._call("on_user_function_end", UserFunctionEndInfo(
            operation_id=start.operation_id, operation_type=start.operation_type, sub_type=start.sub_type,
            name=start.name, parent_id=start.parent_id, start_time=start.start_time, end_time=now(),
            is_replayed=start.is_replayed, status=start.status, attempt=start.attempt,
            is_replay_children=start.is_replay_children, error=error, execution_arn=self.arn,
            outcome=outcome or (wire.FAILED if error is not None else wire.SUCCEEDED)))

    # -- checkpoint responses ----------------------------------------------------------------
    def checkpoint_response(self, operations: list[dict[str, Any]]) -> None:
        """Called by the flusher (under its lock) with the operations a checkpoint response carries."""
        if operations:
            self._pending.append(operations)

    def deliver_changes(self, wait: bool = False) -> None:
        """Report queued checkpoint responses to ``on_operation_change``, in order; one thread at a time
        (another thread that finds delivery in progress leaves its responses to it)."""
        if not self._pending or not self.wants_changes:
            return
        if not self._deliver.acquire(blocking=wait):
            return
        try:
            while self._pending:
                records = self._pending.popleft()
                updated = _infos(records, self.arn)
                self._map.update(updated)  # only here, under _deliver: the view is steady during the hooks
                self._call("on_operation_change", OperationChangeInfo(
                    execution_arn=self.arn, updated_operations=updated, operations=self._view))
        finally:
            self._deliver.release()
