"""Running one invocation of an execution's handler, as Lambda would, and acting on how it ended.

An invocation gets an envelope (ARN, a fresh checkpoint token, every visible operation) and a
``lambda_context`` carrying the checkpoint client; it runs in this process, or in a child process with
``isolation="process"`` (``isolation.run_in_child``). Its output (SUCCEEDED / FAILED / PENDING) or its
error then completes the execution, queues a retry, or leaves it waiting for its timers. One invocation
is in flight per execution at a time.
"""
from __future__ import annotations

import functools
import sys
import uuid
from typing import TYPE_CHECKING, Any, Callable, Optional

from .. import wire
from ..events import SERVICE_COMPLETIONS
from ..errors import CheckpointError
from . import control
from . import history as h
from .handlers import load as load_handler
from .isolation import run_in_child
from .commit import Change, commit, completion
from .service import (EXECUTED_VERSION, RUNNING, TIMER_STATES, Execution, ServiceError, changed_operations, page,
                      visible_operations)

if TYPE_CHECKING:
    from .engine import LocalEngine

MAX_INVOCATION_ATTEMPTS = 3  # an invocation that errors is retried, then the execution fails


class InvocationFailed(Exception):
    """Raised by a handler that runs outside this interpreter (a Node.js process) with the error object the
    invocation ended with, as Lambda reports it (e.g. ``Runtime.ExitError`` when the process died)."""

    def __init__(self, error_object: dict):
        super().__init__(f"{error_object.get('ErrorType')}: {error_object.get('ErrorMessage')}")
        self.error_object = error_object


class LocalLambdaContext:
    """The ``lambda_context`` the engine passes: the members of Lambda's Python context object, and the
    in-process checkpoint client (``durable_client``) durable_sync handlers use."""

    memory_limit_in_mb = "128"
    function_version = EXECUTED_VERSION
    client_context = None
    identity = None
    tenant_id = None

    def __init__(self, client: Any, function_name: str, deadline_ms: int, clock: Any,
                 endpoint_url: Optional[str] = None, request_id: Optional[str] = None):
        self.durable_client = client
        self.endpoint_url = endpoint_url  # the Lambda API serving the engine (durable-sync serve), else None
        self.function_name = function_name
        self.aws_request_id = request_id or str(uuid.uuid4())
        self._deadline_ms = deadline_ms
        self._clock = clock

    @property
    def invoked_function_arn(self) -> str:
        return wire.function_arn(self.function_name)

    @property
    def log_group_name(self) -> str:
        return f"/aws/lambda/{self.function_name}"

    @property
    def log_stream_name(self) -> str:
        return f"local/{self.aws_request_id}"

    def get_remaining_time_in_millis(self) -> int:
        return max(0, self._deadline_ms - self._clock.now_ms())

    @staticmethod
    def log(message: str) -> None:
        sys.stdout.write(str(message))


class InProcessClient:
    """The checkpoint client handlers use when the engine runs them in this process.

    It calls the engine through its attributes (``engine.checkpoint``), so a test that replaces
    the method on an engine instance sees every call.
    """

    def __init__(self, engine: "LocalEngine"):
        self._engine = engine

    def checkpoint(self, arn: str, token: str, updates: list, client_token: str) -> dict:
        try:
            return self._engine.checkpoint(arn, token, updates, client_token, trusted=True)
        except ServiceError as exc:
            raise checkpoint_error(exc) from exc

    def get_state(self, arn: str, token: str, marker: str) -> dict:
        try:
            return self._engine.get_state(arn, token, marker)
        except ServiceError as exc:
            raise checkpoint_error(exc) from exc


def checkpoint_error(exc: ServiceError) -> CheckpointError:
    """The service's answer as the SDK's boto3 client classifies it: a 5xx or a stale token is retryable
    (the invocation is retried and replays), any other 4xx fails the execution."""
    retryable = exc.status >= 500 or "invalid checkpoint token" in exc.message.lower()
    return CheckpointError(f"{exc.code}: {exc.message}", retryable=retryable, error_type=exc.code)


def invoke(engine: "LocalEngine", ex: Execution) -> bool:
    """One invocation of ``ex``'s handler; False if one is already in flight or nothing is needed."""
    handler = engine._functions.get(ex.function_name) or import_handler(engine, ex)
    with ex.lock:
        if ex.invoking or ex.status != RUNNING or not ex.needs_invoke:
            return False
        if control.pause_of(ex) is not None:  # stays needing an invocation: resume_execution() re-queues it
            return False
        if handler is None:  # stays RUNNING, still needing an invocation: see missing_handlers()
            return False
        ex.invoking = True
        ex.needs_invoke = False
        envelope = invocation_envelope(ex, ex.new_token(new_invocation=True))
    start = engine.clock.now_ms()
    request_id = str(uuid.uuid4())  # the invocation's: its lambda context's and its InvocationCompleted event's
    output, failure = None, None
    try:
        client = engine._client if engine.client_factory is None else engine.client_factory()
        lambda_ctx = LocalLambdaContext(client, ex.function_name, start + wire.MAX_INVOCATION_SECONDS * 1000, engine.clock,
                                        engine.foreign.endpoint_url, request_id)
        own_process = getattr(handler, "__durable_own_process__", False)  # a Node.js handler (node_runtime)
        if own_process:  # its process reaches the engine over HTTP, as on Lambda
            lambda_ctx.environment = engine.foreign.process_environment(engine)
        if engine.isolation == "process" and not own_process:
            output, failure = run_in_child(engine, handler, envelope, ex.function_name, request_id=request_id)
        else:
            try:
                output = engine.foreign.call(handler, envelope, lambda_ctx, functools.partial(_serve_call, engine))
            except InvocationFailed as exc:
                failure = exc.error_object
            except Exception as exc:  # noqa: BLE001 - an invocation error, as Lambda reports it
                failure = {"ErrorType": type(exc).__name__, "ErrorMessage": str(exc)}
            except BaseException as exc:  # noqa: BLE001 - sys.exit() & co.: on Lambda the runtime process exits
                failure = {"ErrorType": "Runtime.ExitError",
                           "ErrorMessage": f"the handler raised {type(exc).__name__}: {exc}"}
                if isinstance(exc, KeyboardInterrupt):  # the user stops the engine: record, then let it through
                    with ex.lock:
                        ex.invoking = False
                        invocation_done(engine, ex, start, output, failure, request_id)
                    raise
    except BaseException:  # the engine's own failure (or Ctrl-C): the invocation is not in flight any more
        with ex.lock:
            ex.invoking = False
        raise
    with ex.lock:
        ex.invoking = False
        invocation_done(engine, ex, start, output, failure, request_id)
    with engine._cond:
        engine._cond.notify_all()
    return True


def _serve_call(engine: "LocalEngine", method: str, *args: Any) -> dict:
    """A foreign handler's call of the service API, answered by the engine (``foreign.EngineLambdaClient``)."""
    return {"checkpoint": engine.checkpoint, "get_state": engine.get_state}[method](*args)


def invocation_envelope(ex: Execution, token: str) -> dict:
    """Called with ex.lock: the event of a new invocation, as the service sends it: the first page of
    the visible operations (the handler fetches the rest with GetDurableExecutionState from NextMarker),
    and the ids of the operations the service changed since the handler last saw them (a wait that
    fired, a callback answered, a retry come due, an invoke ended)."""
    ops, more = page(visible_operations(ex))
    initial: dict[str, Any] = {"Operations": ops}
    if more is not None:
        initial["NextMarker"] = str(more)
    updated = [op["Id"] for op in changed_operations(ex, list(ex.service_changed))]
    ex.service_changed.clear()
    return {"DurableExecutionArn": ex.arn, "CheckpointToken": token, "InitialExecutionState": initial,
            "UpdatedOperationIds": updated}


def import_handler(engine: "LocalEngine", ex: Execution) -> Optional[Callable]:
    """The handler of an execution loaded from the database that nobody registered: from its handler_ref."""
    if ex.handler_ref:
        try:
            handler = load_handler(ex.handler_ref)
        except (Exception, SystemExit) as exc:  # noqa: BLE001 - reported by missing_handlers()
            reason = f"its handler {ex.handler_ref} could not be imported ({type(exc).__name__}: {exc})"
        else:
            with engine._lock:
                engine._missing.pop(ex.arn, None)
                return engine._functions.setdefault(ex.function_name, handler)
    else:
        reason = "no handler is registered and the execution records no importable handler reference"
    with engine._lock:
        engine._missing[ex.arn] = (f"function {ex.function_name!r}: {reason}; register it with "
                                   f"LocalEngine(functions={{{ex.function_name!r}: handler}}) or register_function()")
    return None


def invocation_done(engine: "LocalEngine", ex: Execution, start: int, output: Any, failure: Optional[dict],
                    request_id: str) -> None:
    """Called with ex.lock: record InvocationCompleted (``request_id``: the invocation's, as its lambda context
    has it) and act on the handler's output."""
    status = output.get("Status") if isinstance(output, dict) else None
    if failure is None and status not in ("SUCCEEDED", "FAILED", "PENDING"):
        failure = {"ErrorType": "Runtime.InvalidOutput",
                   "ErrorMessage": f"the handler returned {output!r:.200}; a durable handler returns "
                                   "{'Status': 'SUCCEEDED'|'FAILED'|'PENDING', ...}: is it decorated (durable_sync's "
                                   "@durable_handler, the official SDK's @durable_execution; in JavaScript, "
                                   "withDurableExecution)?"}
    now = engine.clock.now_ms()
    details: dict[str, Any] = {"StartTimestamp": start, "EndTimestamp": now, "RequestId": request_id}
    if failure is not None:
        details["Error"] = h.error(failure)
    exec_op = ex.ops[ex.exec_op_id]
    # One change: the InvocationCompleted event and what the output does (complete, retry, nothing).
    change = Change(events=[h.execution_event("InvocationCompleted", exec_op, now, details)])
    pause = control.pause_of(ex)
    interrupted = pause is not None and (failure is not None or pause.get("Interrupted"))
    if ex.status != RUNNING or interrupted:
        pass  # stopped or timed out while it ran; or the pause interrupted it (its checkpoint was refused), or
        # it failed while PAUSING: no retry is counted, resume_execution() invokes again
    elif failure is not None:
        failures = ex.invocation_failures + 1
        change.fields["invocation_failures"] = failures
        if failures >= MAX_INVOCATION_ATTEMPTS:
            change.merge(completion(ex, "FAILED", now, error={**failure, "ErrorMessage":
                         f"the invocation failed {failures} times; last error: {failure.get('ErrorMessage')}"}))
        else:
            change.ready = True
    else:
        if ex.invocation_failures:
            change.fields["invocation_failures"] = 0
        if status == "SUCCEEDED":  # (a result too large for the output ended the execution at its checkpoint)
            result = output.get("Result")
            change.merge(completion(ex, "SUCCEEDED", now, result=result if result is not None else "null"))
        elif status == "FAILED":
            change.merge(completion(ex, "FAILED", now, error=output.get("Error") or {"ErrorType": "Unknown"}))
        elif not ex.needs_invoke and not has_pending_work(ex):
            change.merge(completion(ex, "FAILED", now, error={
                "ErrorType": "Runtime.NothingPending",
                "ErrorMessage": "the handler returned PENDING but no wait, retry, callback or invoke is pending, "
                                "so nothing could ever resume it"}))
    try:
        commit(engine, ex, change)
    except ServiceError as exc:
        engine._invocation_unrecorded(ex, exc)  # nothing applied: invoked again later (or raised, virtual time)
        return
    engine._invocation_recorded(ex)
    if interrupted and ex.status == RUNNING:
        ex.needs_invoke = True
    if pause is not None and pause["Status"] == control.PAUSING and ex.status == RUNNING:
        control.pause_takes_effect(engine, ex, pause)  # it ended without another checkpoint, or was interrupted


# -- what a loaded execution needs ---------------------------------------------------------------------
#: What can still wake an execution: an operation a timer acts on (a wait, a retry not due yet, a callback,
#: a chained invoke), or a retry that is due (READY).
_PENDING_STATES = frozenset(TIMER_STATES.values()) | {(wire.STEP, wire.READY)}


def has_pending_work(ex: Execution) -> bool:
    """Whether some operation (a wait, a retry, a callback, a chained invoke) can still wake ``ex``."""
    return any((op["Type"], op["Status"]) in _PENDING_STATES for op in ex.ops.values())


def recall_changes(ex: Execution) -> None:
    """An execution loaded from the store: what the service changed since its last invocation ended (a
    completion recorded after it, a retry come due), so the next envelope lists it in UpdatedOperationIds."""
    changed = [op["Id"] for op in ex.ops.values() if op["Type"] == wire.STEP and op["Status"] == wire.READY]
    for event in reversed(ex.events):
        if event["EventType"] == "InvocationCompleted":
            break
        if event["EventType"] in SERVICE_COMPLETIONS:
            changed.append(event["Id"])
    for op_id in reversed(changed):
        ex.service_changed[op_id] = None


def needs_invocation(ex: Execution) -> bool:
    """Whether an execution loaded from the database needs an invocation now (else its timers wake it).

    Yes when the last invocation did not finish (a crash), failed, or left nothing pending; when a
    retry is due (READY); or when a completion may have arrived while the last invocation ran (it
    did not see it). Conservative: an unneeded invocation only replays.
    """
    events = [e for e in ex.events if e["EventType"] not in control.CONTROL_EVENTS]  # pauses change nothing here
    last = events[-1] if events else None
    if last is None or last["EventType"] != "InvocationCompleted":
        return True
    details = last.get("InvocationCompletedDetails") or {}
    if details.get("Error") or not has_pending_work(ex):
        return True
    if any(op["Type"] == wire.STEP and op["Status"] == wire.READY for op in ex.ops.values()):
        return True
    started = details.get("StartTimestamp", 0)
    for event in reversed(events[:-1]):
        if event["EventType"] == "InvocationCompleted" or event["EventTimestamp"] < started:
            return False
        if event["EventType"] in SERVICE_COMPLETIONS:
            return True
    return False
