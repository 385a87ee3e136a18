"""Replay testing: re-run new code against a recorded execution, and "always replay" mode.

Both use the SDK's testing hook: ``lambda_context.durable_operation_hook(request, record)``
is called for every operation the code asks for (before the SDK's own determinism
check); returning True ends the invocation there (it returns PENDING).

* :func:`replay` feeds a recorded execution to a handler through an in-memory client
  and reports every difference between what the record holds and what the code now
  asks for: changed (renamed / reordered / other type), added, removed operations,
  and completed operations executed again.
* :func:`always_replay` wraps a handler so that every invocation may start at most one
  new operation: the invocation is then cut short and re-invoked with the state so
  far, so every completed operation is replayed at least once and non-determinism
  hidden by a long first invocation shows up. A new operation that was let through but
  could not start (a ``concurrently`` unit queued behind a suspended one) does not count
  in later invocations, so every correct handler finishes.
"""
from __future__ import annotations

import functools
import itertools
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

from .. import wire
from ..errors import DurableError, NonDeterminismError
from ..inspection.history import operations_from_history
from ..serdes import decode_plain_json

__all__ = ["replay", "ReplayResult", "always_replay", "operations_from_history", "recorded_operations"]

_TERMINAL_EXECUTION = wire.EXECUTION_TERMINAL
_BRANCH_SUBTYPES = frozenset({wire.SubType.MAP_ITERATION, wire.SubType.PARALLEL_BRANCH})
MAX_REPLAY_ROUNDS = 10_000


class _LambdaContext:
    """The ``lambda_context`` a wrapped handler gets: our client and hook, the rest delegated."""

    def __init__(self, inner: Any, client: Any, hook: Callable[[dict, Optional[dict]], bool]):
        self._inner = inner
        self.durable_client = client
        self.durable_operation_hook = hook

    def get_remaining_time_in_millis(self) -> int:
        inner = getattr(self._inner, "get_remaining_time_in_millis", None)
        return inner() if inner is not None else wire.MAX_INVOCATION_SECONDS * 1000

    def __getattr__(self, name: str) -> Any:
        if self._inner is None:
            raise AttributeError(name)
        return getattr(self._inner, name)


# --------------------------------------------------------------------------- always replay


class _TokenTracker:
    """Passes calls to the engine's client and remembers the newest checkpoint token."""

    def __init__(self, client: Any, token: str):
        self._client = client
        self.token = token

    def checkpoint(self, arn: str, token: str, updates: list, client_token: str) -> dict:
        response = self._client.checkpoint(arn, token, updates, client_token)
        if response.get("CheckpointToken"):
            self.token = response["CheckpointToken"]
        return response

    def get_state(self, arn: str, token: str, marker: Any) -> dict:
        return self._client.get_state(arn, token, marker)


class _OneNewOperation:
    """The hook of always-replay mode: the second new operation of an invocation ends it.

    ``stalled``: new operations an earlier invocation let through that never started (a
    ``concurrently`` unit queued behind a suspended one): they do not count, or such a unit,
    asked for first on every replay, would use up each invocation's one new operation and the
    others would never run.
    """

    def __init__(self, stalled: frozenset = frozenset()) -> None:
        self._lock = threading.Lock()
        self._stalled = stalled
        self.allowed: list[str] = []  # ids of the new operations let through
        self.cut = False

    def __call__(self, request: dict, record: Optional[dict]) -> bool:
        if record is not None or request["Id"] in self._stalled:
            return False
        with self._lock:
            if self.allowed:
                self.cut = True
                return True
            self.allowed.append(request["Id"])
        return False


def always_replay(handler: Callable[[Any, Any], dict]) -> Callable[[Any, Any], dict]:
    """Wrap a durable Lambda handler so each invocation starts at most one new operation.

    When the code asks for a second new operation the invocation ends (PENDING) and the
    wrapper invokes the handler again at once with the execution's current state, all
    inside the one invocation the engine sees. Every operation is thereby replayed
    right after it completes.
    """

    @functools.wraps(handler)
    def wrapper(event: Any, lambda_context: Any = None) -> dict:
        client = getattr(lambda_context, "durable_client", None)
        if client is None or not isinstance(event, dict):
            return handler(event, lambda_context)
        arn = event["DurableExecutionArn"]
        tracker = _TokenTracker(client, event["CheckpointToken"])
        envelope = event
        stalled: set = set()
        for _ in range(MAX_REPLAY_ROUNDS):
            gate = _OneNewOperation(frozenset(stalled))
            output = handler(envelope, _LambdaContext(lambda_context, tracker, gate))
            if not gate.cut or not isinstance(output, dict) or output.get("Status") != "PENDING":
                return output
            operations = _all_operations(tracker, arn)
            recorded = {op["Id"] for op in operations}
            stalled.update(op_id for op_id in gate.allowed if op_id not in recorded)
            envelope = {"DurableExecutionArn": arn, "CheckpointToken": tracker.token,
                        "InitialExecutionState": {"Operations": operations}}
        raise DurableError(f"always_replay: the handler was still starting new operations after "
                           f"{MAX_REPLAY_ROUNDS} re-invocations")

    wrapper.__durable_always_replay__ = True  # type: ignore[attr-defined]
    return wrapper


def _all_operations(client: _TokenTracker, arn: str) -> list:
    ops: list = []
    marker = None
    seen = set()
    while True:
        page = client.get_state(arn, client.token, marker)
        ops.extend(page.get("Operations") or [])
        marker = page.get("NextMarker")
        if not marker or marker in seen:
            return ops
        seen.add(marker)


# --------------------------------------------------------------------------- recorded executions


def recorded_operations(recorded: Any, engine: Any = None) -> tuple[list[dict], Optional[str], Optional[str]]:
    """(operations, arn, execution status) of a recorded execution in any accepted form.

    Accepted: a TestResult; a list of operation records; a list of history events; a
    ``GetDurableExecutionState`` response (``{"Operations": [...]}``); a
    ``GetDurableExecutionHistory`` response (``{"Events": [...]}``); an execution ARN of
    ``engine``.
    """
    from .results import TestResult

    if isinstance(recorded, TestResult):
        return list(recorded.operations), recorded.arn or None, str(recorded.status)
    if isinstance(recorded, str):
        if engine is None:
            raise TypeError("an execution ARN needs the engine that ran it: use runner.replay(arn)")
        execution = engine.get_execution(recorded)
        return engine.operations(recorded), recorded, execution.status
    if isinstance(recorded, dict):
        if "Events" in recorded:
            recorded = recorded["Events"]
        elif "Operations" in recorded:
            recorded = recorded["Operations"]
        else:
            raise TypeError("a dict must be a GetDurableExecutionState ({'Operations': ...}) or "
                            "GetDurableExecutionHistory ({'Events': ...}) response")
    if isinstance(recorded, (list, tuple)):
        items = list(recorded)
        if items and all(isinstance(x, dict) and "EventType" in x for x in items):
            ops = operations_from_history(items)
        elif all(isinstance(x, dict) and "Id" in x and "Type" in x for x in items):
            ops = items
        else:
            raise TypeError("a list must hold either operation records (Id, Type, Status, ...) or history "
                            "events (EventType, ...)")
        exec_op = next((op for op in ops if op.get("Type") == wire.EXECUTION), None)
        status = None
        if exec_op is not None:
            status = "RUNNING" if exec_op.get("Status") in (None, wire.STARTED) else exec_op["Status"]
        return ops, None, status
    raise TypeError(f"cannot replay a {type(recorded).__name__}: pass a TestResult, operation records, history "
                    "events or an execution ARN")


def _visible(ops: Sequence[dict]) -> list[dict]:
    """Hide children of contexts completed without ReplayChildren, as the service does."""
    by_id = {op["Id"]: op for op in ops}
    hidden: set = set()

    def is_hidden(op: dict) -> bool:
        parent_id = op.get("ParentId")
        while parent_id is not None:
            if parent_id in hidden:
                return True
            parent = by_id.get(parent_id)
            if parent is None:
                return False
            if parent.get("Status") in wire.TERMINAL and not (parent.get("ContextDetails") or {}).get("ReplayChildren"):
                return True
            parent_id = parent.get("ParentId")
        return False

    out = []
    for op in ops:
        if is_hidden(op):
            hidden.add(op["Id"])
        else:
            out.append(op)
    return out


# --------------------------------------------------------------------------- replay check


@dataclass(frozen=True)
class ReplayResult:
    """How a replay ended when it found no difference."""

    status: str  # SUCCEEDED | FAILED | PENDING (the handler's output)
    result: Any = None
    error: Optional[dict] = None
    output: dict = field(default_factory=dict, repr=False)
    visited: tuple = field(default=(), repr=False)  # ids of recorded operations the code replayed
    new_operations: tuple = field(default=(), repr=False)  # requests for operations past the record


class _ReplayClient:
    """An in-memory service that holds the record and takes checkpoints of new operations only."""

    def __init__(self, recorded: dict[str, dict], allow_new: bool):
        self._recorded = recorded
        self._allow_new = allow_new
        self._lock = threading.Lock()
        self._tokens = itertools.count(1)
        self._new: dict[str, dict] = {}
        self.problems: list[str] = []

    def checkpoint(self, arn: str, token: str, updates: list, client_token: str) -> dict:
        changed = []
        with self._lock:
            for u in updates:
                op_id, kind, action = u.get("Id"), u.get("Type"), u.get("Action")
                if kind == wire.EXECUTION:
                    continue
                rec = self._recorded.get(op_id)
                if rec is not None and rec.get("Status") in wire.TERMINAL:
                    problem = (f"the code executed the completed operation {_describe(rec)} again "
                               f"({kind} {action}); a completed operation must replay from its record")
                    self.problems.append(problem)
                    raise NonDeterminismError(problem)
                if rec is None and op_id not in self._new and not self._allow_new:
                    problem = f"the code checkpointed {kind} {action} for an operation that is not in the record"
                    self.problems.append(problem)
                    raise NonDeterminismError(problem)
                op = self._new.get(op_id) or (dict(rec) if rec is not None else {
                    "Id": op_id, "Type": kind, "SubType": u.get("SubType"), "Name": u.get("Name"),
                    "ParentId": u.get("ParentId"), "Status": wire.STARTED})
                if kind == wire.CALLBACK and action == wire.START:
                    op["CallbackDetails"] = {"CallbackId": f"replay-callback-{op_id[:16]}"}
                    changed.append(dict(op))
                op["Status"] = {wire.SUCCEED: wire.SUCCEEDED, wire.FAIL: wire.FAILED, wire.RETRY: wire.PENDING,
                                wire.CANCEL: wire.CANCELLED}.get(action, wire.STARTED)
                self._new[op_id] = op
        return {"CheckpointToken": f"replay-{next(self._tokens)}", "NewExecutionState": {"Operations": changed}}

    def get_state(self, arn: str, token: str, marker: Any) -> dict:
        return {"Operations": []}


class _ReplayHook:
    """Records what the code asks for and compares it with the record."""

    def __init__(self, recorded: dict[str, dict], allow_new: bool):
        self._recorded = recorded
        self._allow_new = allow_new
        self._lock = threading.Lock()
        self.requests: list[dict] = []
        self.visited: set = set()
        self.changed: list[tuple[dict, dict]] = []
        self.added: list[dict] = []

    def __call__(self, request: dict, record: Optional[dict]) -> bool:
        with self._lock:
            self.requests.append(request)
            rec = self._recorded.get(request["Id"])
            if rec is None:
                if not self._allow_new:
                    self.added.append(request)
                    return True  # stop before new code runs past a finished record
                return False
            self.visited.add(request["Id"])
            if (rec.get("Type"), rec.get("SubType"), rec.get("Name")) != (
                    request["Type"], request["SubType"], request["Name"]):
                self.changed.append((request, rec))
            return False


def replay(recorded: Any, handler: Callable[[Any, Any], dict], *, allow_new_operations: Optional[bool] = None,
           engine: Any = None) -> ReplayResult:
    """Replay ``handler`` against a recorded execution; raise NonDeterminismError on any difference.

    ``recorded``: a TestResult, operation records, history events, a state/history
    response dict, or an ARN of ``engine``. The handler is invoked once with the
    recorded operations as its state, through an in-memory client: completed operations
    must replay from the record; an operation the code asks for that the record holds
    with another type or name, a completed operation executed again, a recorded
    operation the code never reached (once the handler returned), and, when the record
    is a finished execution, any new operation, are reported with a per-context diff.

    ``allow_new_operations`` (default: only when the recorded execution had not finished)
    lets the code continue past the record, e.g. after a pending wait in another branch.
    """
    __tracebackhide__ = True  # pytest: the test's line and the diff, not the toolkit's frames
    handler = _lambda_handler(handler)
    ops, arn, status = recorded_operations(recorded, engine)
    if not any(op.get("Type") == wire.EXECUTION for op in ops):
        raise ValueError("the recorded execution has no EXECUTION operation (its input); pass all the operations "
                         "or the full history")
    finished = status in _TERMINAL_EXECUTION
    allow_new = (not finished) if allow_new_operations is None else allow_new_operations
    visible = _visible(ops)
    recorded_by_id = {op["Id"]: op for op in visible if op.get("Type") != wire.EXECUTION}
    exec_op = next(op for op in visible if op.get("Type") == wire.EXECUTION)
    arn = arn or ("arn:aws:lambda:us-east-1:000000000000:function:replay:$LATEST/durable-execution/replay/"
                  f"{exec_op['Id']}")
    client = _ReplayClient(recorded_by_id, allow_new)
    hook = _ReplayHook(recorded_by_id, allow_new)
    envelope = {"DurableExecutionArn": arn, "CheckpointToken": "replay-0",
                "InitialExecutionState": {"Operations": [_sdk_shape(op) for op in visible]}}
    try:
        output = handler(envelope, _LambdaContext(None, client, hook))
    except Exception as exc:  # noqa: BLE001 - e.g. a retryable CheckpointError the SDK re-raises
        output = {"Status": "FAILED", "Error": {"ErrorType": type(exc).__name__, "ErrorMessage": str(exc)}}
    out_status = output.get("Status") if isinstance(output, dict) else None
    error = output.get("Error") if isinstance(output, dict) else None

    problems: list[str] = []
    for request, rec in hook.changed:
        problems.append(f"{_where(request, recorded_by_id)}: the code asks for {_kind(request)} "
                        f"{request['Name']!r}, but the record has {_kind(rec)} {rec.get('Name')!r}"
                        f"{_hint(request, rec, recorded_by_id)}")
    for request in hook.added:
        problems.append(f"{_where(request, recorded_by_id)}: the code asks for {_kind(request)} "
                        f"{request['Name']!r}, which the record does not have (added operation; the recorded "
                        "execution had finished)")
    problems.extend(client.problems)
    if not problems and error and error.get("ErrorType") == "NonDeterminismError":
        problems.append(error.get("ErrorMessage") or "NonDeterminismError")
    removed: list[dict] = []
    if not problems and out_status in ("SUCCEEDED", "FAILED"):
        removed = _unvisited(recorded_by_id, hook.visited)
        for rec in removed:
            problems.append(f"{_where(rec, recorded_by_id)}: the record has {_kind(rec)} "
                            f"{rec.get('Name')!r}, which the code never reached (removed operation)")
    if problems:
        raise NonDeterminismError(_report(problems, recorded_by_id, hook, removed))
    result = None
    if out_status == "SUCCEEDED" and output.get("Result"):
        result = decode_plain_json(output["Result"], "the replayed result")
    return ReplayResult(status=out_status or "UNKNOWN", result=result, error=error, output=output,
                        visited=tuple(sorted(hook.visited)),
                        new_operations=tuple(r for r in hook.requests if r["Id"] not in recorded_by_id))


def _lambda_handler(handler: Callable) -> Callable:
    """A ``@durable_handler`` function as is; a plain ``fn(event, ctx)`` gets decorated."""
    if not callable(handler):
        raise TypeError(f"expected a durable handler function, got {type(handler).__name__}")
    if getattr(handler, "__durable_function__", None) is None:
        from ..handler import durable_handler
        return durable_handler(handler)
    return handler


def _sdk_shape(op: dict) -> dict:
    """The record as the SDK receives it in an envelope (private keys dropped)."""
    return {k: v for k, v in op.items() if not k.startswith("_")}


def _kind(op: dict) -> str:
    kind, sub = op.get("Type"), op.get("SubType")
    if not sub or sub == wire.SubType.RUN_IN_CHILD_CONTEXT or sub.upper() == (kind or "").replace("_", ""):
        return str(kind)
    return f"{kind}/{sub}"


def _describe(op: dict) -> str:
    return f"{_kind(op)} {op.get('Name')!r} ({op.get('Status')})"


def _positions(parent_id: Optional[str], limit: int) -> dict[str, str]:
    """Operation id -> '#n' for the first ``limit`` operations of a context.

    Map/parallel branch i has the id of operation #i (same hash): callers label
    branches with :func:`_label`.
    """
    first = 0 if parent_id is not None else 1  # branch 0 is "<parent>-0"
    return {wire.operation_id(parent_id, n): f"#{n}" for n in range(first, limit + 1)}


def _label(op: Optional[dict], pos: Optional[str]) -> Optional[str]:
    if op is not None and op.get("SubType") in _BRANCH_SUBTYPES and pos and pos.startswith("#"):
        return f"branch {pos[1:]}"
    return pos


def _context_label(parent_id: Optional[str], recorded: dict[str, dict]) -> str:
    if parent_id is None:
        return "the handler"
    parent = recorded.get(parent_id)
    name = parent.get("Name") if parent else None
    return f"context {name!r}" if name else f"context {parent_id[:12]}"


def _where(request: dict, recorded: dict[str, dict]) -> str:
    """"operation #2 of context 'x'" for a request (or a recorded operation)."""
    parent_id = request.get("ParentId")
    siblings = sum(1 for op in recorded.values() if op.get("ParentId") == parent_id)
    pos = _positions(parent_id, siblings + int(request.get("Position") or 0) + 8).get(request["Id"])
    pos = _label(request, pos)
    if pos is None:
        return f"operation {request['Id'][:12]} of {_context_label(parent_id, recorded)}"
    return f"{'operation ' if pos.startswith('#') else ''}{pos} of {_context_label(parent_id, recorded)}"


def _hint(request: dict, rec: dict, recorded: dict[str, dict]) -> str:
    same = [op for op in recorded.values() if op.get("ParentId") == request.get("ParentId")
            and op.get("Name") == request.get("Name") and op.get("Type") == request.get("Type")
            and op["Id"] != request["Id"]]
    if same and request.get("Name") is not None:
        return " (reordered? the record has that operation at another position)"
    if rec.get("Type") == request.get("Type") and rec.get("SubType") == request.get("SubType"):
        return " (renamed, or an operation added/removed before it)"
    return " (an operation added, removed or changed at this position)"


def _unvisited(recorded: dict[str, dict], visited: set) -> list[dict]:
    """Recorded operations the code never reached (branches count as reached with their parent)."""
    reached = set(visited)
    changed = True
    while changed:  # a context whose descendants were reached was reached too
        changed = False
        for op in recorded.values():
            parent = op.get("ParentId")
            if op["Id"] in reached and parent is not None and parent not in reached:
                reached.add(parent)
                changed = True
            if op["Id"] not in reached and op.get("SubType") in _BRANCH_SUBTYPES and parent in reached:
                reached.add(op["Id"])
                changed = True
    out = []
    for op in recorded.values():
        if op["Id"] in reached:
            continue
        parent = op.get("ParentId")
        if parent is not None and parent not in reached:
            continue  # report the outermost unreached operation only
        out.append(op)
    return out


def _report(problems: list[str], recorded: dict[str, dict], hook: _ReplayHook, removed: list[dict]) -> str:
    lines = ["replaying the recorded execution with the current code found differences:"]
    lines += [f"  - {p}" for p in problems]
    lines.append("")
    lines.append("recorded operations vs. what the code asked for, per context "
                 "('!' differs, '+' not in the record, '-' not reached):")
    contexts: dict[Optional[str], None] = {}
    for op in recorded.values():
        contexts.setdefault(op.get("ParentId"), None)
    for request in hook.requests:
        contexts.setdefault(request.get("ParentId"), None)
    removed_ids = {op["Id"] for op in removed}
    changed_ids = {request["Id"] for request, _ in hook.changed}
    for parent_id in contexts:
        recs = [op for op in recorded.values() if op.get("ParentId") == parent_id]
        asked = {}
        for request in hook.requests:
            if request.get("ParentId") == parent_id:
                asked.setdefault(request["Id"], request)
        positions = _positions(parent_id, len(recs) + len(asked) + 8)
        ids = list(dict.fromkeys([op["Id"] for op in recs] + list(asked)))
        ids.sort(key=lambda i: _position_key(positions.get(i)))  # '#n' (branches: n = index)
        rows = []
        for op_id in ids:
            rec, req = recorded.get(op_id), asked.get(op_id)
            left = f"{_kind(rec)} {rec.get('Name')!r} {rec.get('Status')}" if rec else "(none)"
            right = f"{_kind(req)} {req.get('Name')!r}" if req else (
                "(never reached)" if op_id in removed_ids else "(not reached)")
            mark = "!" if op_id in changed_ids else "+" if rec is None else "-" if op_id in removed_ids else " "
            rows.append((mark, _label(rec or req, positions.get(op_id)) or "?", left, right))
        if not rows:
            continue
        width = max(len(r[2]) for r in rows)
        lines.append(f"  {_context_label(parent_id, recorded)}:")
        lines.append(f"      {'':9} {'recorded'.ljust(width)}  | code now")
        for mark, pos, left, right in rows:
            lines.append(f"    {mark} {pos:<9} {left.ljust(width)}  | {right}")
    return "\n".join(lines)


def _position_key(pos: Optional[str]) -> tuple:
    if pos is None:
        return (2, 0)
    if pos.startswith("#"):
        return (0, int(pos[1:]))
    return (1, int(pos.split()[-1]))

