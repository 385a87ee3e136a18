"""LocalEngine: runs durable handlers on one machine, as the service would.

It owns executions (state in memory, journaled by a store), a timer heap for
every delay, and the invoke loop: one invocation in flight per execution, one
re-invocation per completion. With ``skip_time=True`` the clock is virtual and
the caller drives it (start/advance/run/wait return when the engine is idle);
otherwise a scheduler thread fires timers in real time.
"""
from __future__ import annotations

import heapq
import itertools
import json
import secrets
import threading
import time
import uuid
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
import logging
from typing import Any, Callable, Optional

from .. import wire
from ..errors import CheckpointError
from . import history as h
from .clock import RealClock, VirtualClock
from .service import (CALLBACK_TIMEOUT, CONFLICT, INVALID, NOT_FOUND, Execution, ServiceError, Timer, apply_batch,
                      public_op, visible_operations)
from .isolation import handler_reference, load_handler_ref, run_in_child
from .store import open_store

SERVICE_ERROR = "ServiceException"  # the modeled 5xx of the Lambda API
_log = logging.getLogger("durable_sync.engine")
TIMER_RETRY_MS = 1000  # a timer whose completion failed (e.g. the disk) is tried again after this
MAX_INVOCATION_ATTEMPTS = 3  # an invocation that errors is retried, then the execution fails
DEFAULT_EXECUTION_TIMEOUT = 366 * 24 * 3600
_RUNNING, _TERMINAL_EXEC = "RUNNING", frozenset({"SUCCEEDED", "FAILED", "TIMED_OUT", "STOPPED"})
_ERROR_OBJECT_KEYS = ("ErrorType", "ErrorMessage", "ErrorData", "StackTrace")
# Pause / resume (PauseDurableExecution, ResumeDurableExecution). A paused execution stays RUNNING in its
# lifecycle (``ex.status``: waits, retries, callbacks and its timeout go on); the pause in force is kept on
# its EXECUTION operation record under _PAUSE_KEY (engine-private, persisted with the record) and reported
# as the service's PAUSING / PAUSED status.
_PAUSING, _PAUSED = "PAUSING", "PAUSED"
_PAUSE_KEY = "_pause"  # {"Status", "RequestedMs", "TimeoutPaused", "Reason", "PausedMs"?, "Interrupted"?}
_EXTENSION_KEY = "_timeout_extension_ms"  # the execution timeout moved on by time spent paused
_CONTROL_EVENTS = frozenset({"ExecutionPaused", "ExecutionResumed"})
_CLIENT_TOKEN_TTL_MS = 15 * 60 * 1000  # a repeated pause / resume with the same ClientToken is a no-op this long
MAX_REASON_CHARS = 1024  # PauseReason / ResumeReason
# How a chained invoke ends when its target execution ends: operation status, history event.
_INVOKE_END = {"FAILED": (wire.FAILED, "ChainedInvokeFailed"), "TIMED_OUT": (wire.TIMED_OUT, "ChainedInvokeTimedOut"),
               "STOPPED": (wire.STOPPED, "ChainedInvokeStopped")}


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


class LocalLambdaContext:
    """The ``lambda_context`` the engine passes; carries the in-process client."""

    def __init__(self, client: Any, function_name: str, deadline_ms: int, clock: Any):
        self.durable_client = client
        self.function_name = function_name
        self.aws_request_id = str(uuid.uuid4())
        self.invoked_function_arn = f"arn:aws:lambda:us-east-1:000000000000:function:{function_name}"
        self._deadline_ms = deadline_ms
        self._clock = clock

    def get_remaining_time_in_millis(self) -> int:
        return max(0, self._deadline_ms - self._clock.now_ms())


class InProcessClient:
    """The checkpoint client handlers use when the engine runs them in this process."""

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


def _function_name(handler: Any) -> str:
    raw = getattr(handler, "__name__", None) or type(handler).__name__
    return "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in raw)[:64] or "handler"


class LocalEngine:
    """The embedded durable execution engine (see SPEC §4)."""

    def __init__(self, db: str = "durable.db", skip_time: bool = False, functions: Optional[dict] = None,
                 isolation: Optional[str] = None, clock: Any = None,
                 listeners: Optional[list[Callable[[str, dict], None]]] = None):
        if isolation not in (None, "process"):
            raise ValueError(f"isolation must be None or 'process', got {isolation!r}")
        self.skip_time = skip_time
        self.isolation = isolation
        self.clock = clock or (VirtualClock() if skip_time else RealClock())
        self._lock = threading.RLock()  # executions, timers, ready queue; never held while taking ex.lock
        self._cond = threading.Condition(self._lock)
        self._executions: dict[str, Execution] = {}
        self._by_name: dict[tuple[str, str], str] = {}
        self._callbacks: dict[str, tuple[str, str]] = {}
        # (function name, execution name) of a chained invoke's durable target -> (caller ARN, op id)
        self._invoke_links: dict[tuple[str, str], tuple[str, str]] = {}
        self._tls = threading.local()  # per-thread: a _drain loop is running
        self._functions: dict[str, Callable] = dict(functions or {})
        self._missing: dict[str, str] = {}  # ARN -> why its handler is unknown (adopted executions only)
        # (operation, ARN, ClientToken) -> (arguments, expiry ms) of recent pause / resume calls
        self._control_tokens: dict[tuple, tuple] = {}
        self._timers: list[Timer] = []
        self._timer_seq = itertools.count()
        self._ready: deque[str] = deque()
        self._client = InProcessClient(self)
        # Serve mode (durable_sync.local.http): returns the checkpoint client handlers get in their
        # lambda_context (None there: the SDK's boto3 default client); None here: the in-process client.
        self.client_factory: Optional[Callable[[], Any]] = None
        self._closed = False
        self._listeners: list[Callable[[str, dict], None]] = list(listeners or [])
        self._store = open_store(db)
        loaded = self._store.load_executions()
        if skip_time and clock is None and loaded:  # virtual time never runs backwards over stored history
            self.clock.advance_to(max((ex.events[-1]["EventTimestamp"] for ex in loaded if ex.events), default=0))
        for ex in loaded:
            self._adopt(ex)
        self._pool: Optional[ThreadPoolExecutor] = None
        self._scheduler: Optional[threading.Thread] = None
        if not skip_time:
            self._pool = ThreadPoolExecutor(max_workers=16, thread_name_prefix="durable-invoke")
            self._scheduler = threading.Thread(target=self._schedule_loop, name="durable-scheduler", daemon=True)
            self._scheduler.start()
        else:
            self._drain()
        attach = getattr(self._store, "attach", None)  # SQLite: callback answers posted by other processes
        if attach is not None:
            attach(self)

    # -- public API ---------------------------------------------------------------
    def add_listener(self, listener: Callable[[str, dict], None]) -> None:
        """Call ``listener(arn, event)`` for every history event as it is recorded (boto3 shape)."""
        self._listeners.append(listener)

    def _emit(self, ex: Execution, event: dict) -> None:
        if self._listeners:
            boto_event = h.to_boto(event)
            for listener in self._listeners:
                listener(ex.arn, boto_event)

    def register_function(self, name: str, handler: Callable) -> None:
        """Make ``handler`` invokable by name (chained invoke, CLI, HTTP)."""
        with self._lock:
            self._functions[name] = handler
            waiting = [self._executions[arn] for arn in self._missing if self._executions[arn].function_name == name]
            for ex in waiting:
                del self._missing[ex.arn]
        for ex in waiting:
            self._mark_ready(ex)
        if waiting:
            self._after_change()

    def missing_handlers(self) -> dict[str, str]:
        """ARN -> why an unfinished execution loaded from the database cannot be invoked (no handler)."""
        with self._lock:
            return {arn: why for arn, why in self._missing.items()
                    if self._executions[arn].status == _RUNNING and self._executions[arn].function_name
                    not in self._functions}

    def start(self, handler: Callable, input: Any = None, name: Optional[str] = None,
              execution_timeout: Optional[int] = None, *, function_name: Optional[str] = None) -> str:
        """Start an execution of ``handler`` with ``input`` (JSON value); returns its ARN.

        ``function_name`` names the function in the ARN (default: the handler's name); chained
        invoke passes the name the target was registered under.
        """
        fn_name = function_name or getattr(handler, "__durable_function_name__", None) or _function_name(handler)
        if name is not None:
            wire.validate_name(name)
        try:
            payload = json.dumps(input)
        except (TypeError, ValueError) as exc:
            raise ServiceError(INVALID, f"the execution input must be JSON data: {exc}") from None
        timeout = DEFAULT_EXECUTION_TIMEOUT if execution_timeout is None else int(execution_timeout)
        if not 1 <= timeout <= DEFAULT_EXECUTION_TIMEOUT:
            raise ServiceError(INVALID, f"execution_timeout must be 1..{DEFAULT_EXECUTION_TIMEOUT} seconds")
        with self._lock:
            self._functions.setdefault(fn_name, handler)
            if self._functions[fn_name] is not handler:
                self._functions[fn_name] = handler
            name = name or str(uuid.uuid4())
            existing = self._by_name.get((fn_name, name))
            if existing is not None:
                ex = self._executions[existing]
                if ex.input_payload != payload:
                    raise ServiceError(CONFLICT, f"execution {name!r} of {fn_name} already exists with another input")
                if ex.status == _RUNNING:
                    self._mark_ready(ex)
            else:
                exec_id = uuid.uuid4().hex
                arn = (f"arn:aws:lambda:us-east-1:000000000000:function:{fn_name}:$LATEST"
                       f"/durable-execution/{name}/{exec_id}")
                now = self.clock.now_ms()
                ex = Execution(arn=arn, function_name=fn_name, name=name, exec_op_id=exec_id, start_ms=now,
                               timeout_s=timeout, input_payload=payload)
                ex.handler_ref = handler_reference(handler)  # lets a restarted engine import it
                ex.on_event = self._emit
                ex.ops[exec_id] = {"Id": exec_id, "Type": wire.EXECUTION, "Status": wire.STARTED,
                                   "StartTimestamp": now, "ExecutionDetails": {"InputPayload": payload}}
                ex.add_event(h.execution_event("ExecutionStarted", ex.ops[exec_id], now, {
                    "Input": h.result(payload), "ExecutionTimeout": timeout}))
                try:  # disk first: an execution the store refused must not exist in memory either
                    self._store.create_execution(ex)
                except Exception as exc:  # noqa: BLE001 - disk full, read-only, I/O error
                    raise ServiceError(SERVICE_ERROR, f"the engine could not persist the new execution "
                                                      f"({type(exc).__name__}: {exc}); nothing was started",
                                       status=500) from exc
                self._executions[arn] = ex
                self._by_name[(fn_name, name)] = arn
                self._push_timer(now + timeout * 1000, "execution_timeout", arn)
                self._mark_ready(ex)
        self._after_change()
        return ex.arn

    def run(self, handler: Callable, input: Any = None, name: Optional[str] = None,
            execution_timeout: Optional[int] = None) -> ExecutionResult:
        """Start an execution and block until it is terminal (virtual time: until nothing can move it)."""
        return self.wait(self.start(handler, input, name, execution_timeout))

    def wait(self, arn: str, timeout: Optional[float] = None) -> ExecutionResult:
        """Until ``arn`` is terminal. Virtual time: fire due items in order; RUNNING when only the outside can help."""
        ex = self._get(arn)
        if self.skip_time:
            while True:
                self._drain()
                if ex.status != _RUNNING or self._pause_of(ex) is not None:
                    break  # ended, or paused: only resume_execution() moves it on
                timer = self._next_timer(skip_execution_timeouts=True)
                if timer is None:
                    break
                self._advance_to(timer.due_ms)
            return self.get_execution(arn)
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while ex.status == _RUNNING:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    break
                self._cond.wait(remaining if remaining is not None else 1.0)
        return self.get_execution(arn)

    def advance(self, seconds: float) -> None:
        """Virtual time: move the clock by exactly ``seconds``, firing every due item in time order."""
        if not self.skip_time:
            raise ServiceError(INVALID, "advance() needs LocalEngine(skip_time=True)")
        if seconds < 0:
            raise ServiceError(INVALID, "advance() takes a non-negative number of seconds")
        self._advance_to(self.clock.now_ms() + int(round(seconds * 1000)))

    def get_execution(self, arn: str) -> ExecutionResult:
        ex = self._get(arn)
        with ex.lock:
            value = None
            if ex.result is not None and ex.result != "":
                from ..serdes import decode_plain_json
                value = decode_plain_json(ex.result, "the execution result")
            pause = self._pause_of(ex)
            return ExecutionResult(ex.arn, ex.status, value, ex.error, ex.result,
                                   pause_status=pause["Status"] if pause else None,
                                   pause_details=_pause_details(pause) if pause else None,
                                   timeout_at=wire.ms_to_datetime(self._timeout_due(ex)) if ex.status == _RUNNING
                                   else None)

    def history(self, arn: str) -> list[dict]:
        """Events as boto3's get_durable_execution_history returns them."""
        ex = self._get(arn)
        with ex.lock:
            return [h.to_boto(e) for e in ex.events]

    def operations(self, arn: str) -> list[dict]:
        """Every operation of the execution (wire shape, timestamps as datetimes)."""
        ex = self._get(arn)
        with ex.lock:
            return [h.to_boto(public_op(op)) for op in ex.ops.values()]

    def list_executions(self, function_name: Optional[str] = None, name: Optional[str] = None,
                        status: Optional[str] = None) -> list[dict]:
        """Executions as ListDurableExecutionsByFunction lists them: ``Status`` is the service's status
        (PAUSING / PAUSED for a paused execution, which get_execution() reports as RUNNING with
        ``pause_status``); ``status`` filters on it."""
        with self._lock:
            items = list(self._executions.values())
        out = []
        for ex in items:
            if function_name and ex.function_name != function_name:
                continue
            if name and ex.name != name:
                continue
            pause = self._pause_of(ex)
            reported = pause["Status"] if pause else ex.status  # PAUSING / PAUSED, as the service lists them
            if status and reported != status:
                continue
            out.append({"DurableExecutionArn": ex.arn, "DurableExecutionName": ex.name,
                        "FunctionName": ex.function_name, "Status": reported,
                        "StartTimestamp": wire.ms_to_datetime(ex.start_ms),
                        **({"EndTimestamp": wire.ms_to_datetime(ex.end_ms)} if ex.end_ms else {})})
        return out

    def stop(self, arn: str, error: Optional[dict] = None) -> ExecutionResult:
        ex = self._get(arn)
        with ex.lock:
            if ex.status != _RUNNING:
                raise ServiceError(INVALID, f"execution {arn} is already {ex.status}")
            self._complete(ex, "STOPPED", error=error)
        self._after_change()
        return self.get_execution(arn)

    # -- pause, resume, delete -------------------------------------------------------
    def pause(self, arn: str, reason: Optional[str] = None, *, execution_timeout_paused: bool = True,
              client_token: Optional[str] = None) -> ExecutionResult:
        """PauseDurableExecution: no invocation of ``arn`` until resume_execution().

        Waits, retries, callbacks and chained invokes go on completing while it is paused; the
        invocation after the resume sees them. With no invocation in flight the execution is PAUSED at
        once (history: ``ExecutionPaused``); with one in flight it is PAUSING until that invocation's next
        checkpoint, which is refused as a stale token (nothing of it applied: the SDK ends the
        invocation and the resume replays it from the last checkpoint) and the execution is PAUSED. An
        invocation that ends without checkpointing again pauses it as it ends (or completes it, when it
        returned the execution's outcome). ``execution_timeout_paused`` (default True) holds the execution
        timeout while PAUSED and moves it on by the time spent paused, never past 366 days after the start.

        A repeat with the same ``client_token`` and arguments within 15 minutes does nothing and
        succeeds. Otherwise pausing an execution that is not RUNNING (pausing or paused already, or
        ended) raises ResourceConflictException; an unknown ARN, ResourceNotFoundException.
        """
        _check_reason(reason)
        timeout_paused = True if execution_timeout_paused is None else bool(execution_timeout_paused)
        ex = self._get(arn)
        key, args = ("pause", arn, client_token), (reason, timeout_paused)
        with ex.lock:
            if not self._repeated(key, args):
                if ex.status != _RUNNING:
                    raise ServiceError(CONFLICT, f"execution {arn} is {ex.status}; only a RUNNING execution can be "
                                                 "paused", status=409)
                current = self._pause_of(ex)
                if current is not None:
                    raise ServiceError(CONFLICT, f"execution {arn} is {current['Status']} already; resume it "
                                                 "first", status=409)
                pause = {"Status": _PAUSING, "RequestedMs": self.clock.now_ms(), "TimeoutPaused": timeout_paused,
                         "Reason": reason}
                if ex.invoking:  # PAUSED at its next checkpoint, or when it ends
                    self._save_exec_record(ex, {**ex.ops[ex.exec_op_id], _PAUSE_KEY: pause})
                else:
                    self._pause_takes_effect(ex, pause)
                self._remember(key, args)
        return self.get_execution(arn)

    def resume_execution(self, arn: str, reason: Optional[str] = None, *,
                         client_token: Optional[str] = None) -> ExecutionResult:
        """ResumeDurableExecution: end the pause of ``arn``.

        (Named so as not to be confused with resuming unfinished executions after a restart, which
        the engine does by itself.) A PAUSED execution is invoked again if the pause interrupted an
        invocation or an operation completed meanwhile, else it goes on waiting for its pending
        operations (history: ``ExecutionResumed``); a PAUSING one has its pause cancelled and its
        invocation goes on (no event: it never paused). Same ``client_token`` rule as pause(); resuming
        an execution that is not paused raises ResourceConflictException.
        """
        _check_reason(reason)
        ex = self._get(arn)
        key, args = ("resume", arn, client_token), (reason,)
        with ex.lock:
            if not self._repeated(key, args):
                pause = self._pause_of(ex)
                if pause is None:
                    raise ServiceError(CONFLICT, f"execution {arn} is {ex.status}, not PAUSED or PAUSING; only a "
                                                 "paused execution can be resumed", status=409)
                now = self.clock.now_ms()
                record = {k: v for k, v in ex.ops[ex.exec_op_id].items() if k != _PAUSE_KEY}
                event = None
                if pause["Status"] == _PAUSED:
                    if pause["TimeoutPaused"]:
                        record[_EXTENSION_KEY] = record.get(_EXTENSION_KEY, 0) + max(0, now - pause["PausedMs"])
                    details: dict[str, Any] = {"ResumeRequestTimestamp": now}
                    if reason is not None:
                        details["Reason"] = h.result(reason)
                    event = h.execution_event("ExecutionResumed", record, now, details)
                self._save_exec_record(ex, record, event)
                self._remember(key, args)
                if pause["Status"] == _PAUSED:
                    self._push_timer(self._timeout_due(ex), "execution_timeout", arn)
                    if ex.needs_invoke:
                        self._mark_ready(ex)
        self._after_change()
        return self.get_execution(arn)

    def delete(self, arn: str) -> Any:
        """DeleteDurableExecution: remove an ended execution with its operations, history, input and
        result, from memory and the database; returns when (the DeletionRequestTimestamp, a datetime).

        Only a SUCCEEDED, FAILED, STOPPED or TIMED_OUT execution can be deleted, and not while its last
        invocation is still running (a stop does not wait for it): otherwise ResourceConflictException.
        Afterwards the ARN is unknown (ResourceNotFoundException), its callback ids are unknown, and its
        name may be used again. Child executions started by its chained invokes are kept.
        """
        ex = self._get(arn)
        with ex.lock:
            if ex.status == _RUNNING:
                pause = self._pause_of(ex)
                raise ServiceError(CONFLICT, f"execution {arn} is {pause['Status'] if pause else _RUNNING}; only a "
                                             "SUCCEEDED, FAILED, STOPPED or TIMED_OUT execution can be deleted (stop "
                                             "it first)", status=409)
            if ex.invoking:
                raise ServiceError(CONFLICT, f"execution {arn} is {ex.status} but its last invocation is still "
                                             "running; delete it once that invocation has ended", status=409)
            now = self.clock.now_ms()
            delete = getattr(self._store, "delete_execution", None)
            if delete is not None:
                try:
                    delete(ex)
                except Exception as exc:  # noqa: BLE001 - disk full, read-only, I/O error: nothing was deleted
                    raise ServiceError(SERVICE_ERROR, f"the engine could not delete the execution from its database "
                                                      f"({type(exc).__name__}: {exc}); nothing was deleted, retry it",
                                       status=500) from exc
            with self._lock:
                self._executions.pop(arn, None)
                if self._by_name.get((ex.function_name, ex.name)) == arn:
                    del self._by_name[(ex.function_name, ex.name)]
                self._missing.pop(arn, None)
                for op in ex.ops.values():
                    callback_id = (op.get("CallbackDetails") or {}).get("CallbackId")
                    if callback_id and self._callbacks.get(callback_id, (None,))[0] == arn:
                        del self._callbacks[callback_id]
                for token_key in [k for k in self._control_tokens if k[1] == arn]:
                    del self._control_tokens[token_key]
        return wire.ms_to_datetime(now)

    # -- callbacks ------------------------------------------------------------------
    def send_callback_success(self, callback_id: str, result: Any = None) -> None:
        """SendDurableExecutionCallbackSuccess: ``result`` is the raw payload (str, bytes or None).

        The SDK decodes it as plain JSON (never unpickled) unless the callback has a custom serdes.
        """
        if isinstance(result, (bytes, bytearray)):
            try:
                result = bytes(result).decode("utf-8")
            except UnicodeDecodeError:
                raise ServiceError(INVALID, "a callback result must be UTF-8 text") from None
        if result is not None and not isinstance(result, str):
            raise ServiceError(INVALID, "a callback result is the raw payload: str, bytes or None")
        if result is not None and len(result.encode("utf-8")) > wire.MAX_CALLBACK_RESULT_BYTES:
            raise ServiceError(INVALID, f"callback result of {len(result.encode('utf-8'))} bytes exceeds the "
                                        f"limit of {wire.MAX_CALLBACK_RESULT_BYTES} bytes")
        self._complete_callback(callback_id, wire.SUCCEEDED, "CallbackSucceeded", result=result)

    def send_callback_failure(self, callback_id: str, error: Optional[dict] = None) -> None:
        """SendDurableExecutionCallbackFailure with a wire ErrorObject (ErrorType, ErrorMessage, ...)."""
        if error is not None and not isinstance(error, dict):
            raise ServiceError(INVALID, "a callback error is an ErrorObject dict (ErrorType, ErrorMessage, ...)")
        error = {k: v for k, v in (error or {}).items() if k in _ERROR_OBJECT_KEYS and v is not None}
        for key in ("ErrorType", "ErrorMessage", "ErrorData"):
            if key in error and not isinstance(error[key], str):
                raise ServiceError(INVALID, f"callback error {key} must be a string")
        if "StackTrace" in error and not (isinstance(error["StackTrace"], list)
                                          and all(isinstance(x, str) for x in error["StackTrace"])):
            raise ServiceError(INVALID, "callback error StackTrace must be a list of strings")
        if len(json.dumps(error).encode("utf-8")) > wire.MAX_CALLBACK_RESULT_BYTES:
            raise ServiceError(INVALID, f"callback error exceeds {wire.MAX_CALLBACK_RESULT_BYTES} bytes")
        self._complete_callback(callback_id, wire.FAILED, "CallbackFailed", error=error)

    def send_callback_heartbeat(self, callback_id: str) -> None:
        """SendDurableExecutionCallbackHeartbeat: restarts the callback's heartbeat timeout, if it has one."""
        ex, op = self._callback_op(callback_id)
        with ex.lock:
            op = ex.ops[op["Id"]]
            if op["Status"] != wire.STARTED or ex.status != _RUNNING:
                raise ServiceError(CALLBACK_TIMEOUT, f"callback {callback_id} is already {op['Status']}; "
                                                     "it takes no more heartbeats")
            timeout = op.get("_heartbeat_s")
            if timeout:
                due = self.clock.now_ms() + timeout * 1000
                new = {**op, "_heartbeat_due": due}
                ex.ops[op["Id"]] = new
                self._store.save_checkpoint(ex, {op["Id"]: new}, [])
                self._push_timer(due, "callback_heartbeat", ex.arn, op["Id"])

    # -- the service API the SDK calls --------------------------------------------------
    def checkpoint(self, arn: str, token: str, updates: list, client_token: Optional[str] = None,
                   trusted: bool = False) -> dict:
        """CheckpointDurableExecution. ``trusted``: from this process's SDK, which validated the updates."""
        ex = self._get(arn)
        with ex.lock:
            if client_token is not None:
                seen = ex.client_tokens.get(client_token)
                if seen is not None and seen[0] == token:
                    return seen[1]
            if ex.status != _RUNNING:
                raise ServiceError(INVALID, f"execution {arn} is {ex.status}; it takes no more checkpoints")
            if token != ex.token:
                raise ServiceError(INVALID, "Invalid checkpoint token: it is stale or belongs to another invocation")
            pause = self._pause_of(ex)
            if pause is not None:  # PAUSING: this is the invocation's next checkpoint, where the pause takes effect
                if pause["Status"] == _PAUSING:
                    self._pause_takes_effect(ex, {**pause, "Interrupted": True})
                ex.needs_invoke = True  # interrupted: resume_execution() invokes again, which replays
                ex.new_token()  # nothing from this invocation is accepted any more
                raise ServiceError(INVALID, "Invalid checkpoint token: the execution is paused (PauseDurableExecution); "
                                            "this invocation ends here and nothing of this checkpoint was applied. "
                                            "ResumeDurableExecution continues it from its last checkpoint")
            now = self.clock.now_ms()
            view, events, timers = apply_batch(ex, updates, now, self._new_callback_id, trusted)
            for event_id, event in enumerate(events, len(ex.events) + 1):
                event["EventId"] = event_id  # the number add_event gives it below
            try:  # disk first: memory (and listeners) see the change only once it is committed
                self._store.save_checkpoint(ex, view, events)
            except Exception as exc:  # noqa: BLE001 - disk full, read-only, I/O error: nothing was applied
                raise ServiceError(SERVICE_ERROR, f"the engine could not persist the checkpoint ({type(exc).__name__}: "
                                                  f"{exc}); nothing was applied, retry it", status=500) from exc
            ex.ops.update(view)
            for event in events:
                ex.add_event(event)
            new_token = ex.new_token()
            changed = list(ex.service_changed.values())
            ex.service_changed.clear()
            for op_id, op in view.items():
                if op["Type"] == wire.CALLBACK and "CallbackDetails" in op:
                    changed.append(public_op(op))
            response = {"CheckpointToken": new_token, "NewExecutionState": {"Operations": changed}}
            if client_token is not None:
                if len(ex.client_tokens) > 64:
                    ex.client_tokens.pop(next(iter(ex.client_tokens)))
                ex.client_tokens[client_token] = (token, response)
        if timers:
            with self._lock:
                for due, kind, op_id in timers:
                    self._push_timer(due, kind, arn, op_id)
                self._cond.notify_all()
        return response

    def get_state(self, arn: str, token: str, marker: Optional[str] = None, max_items: int = 1000) -> dict:
        ex = self._get(arn)
        with ex.lock:
            if token != ex.token:
                raise ServiceError(INVALID, "Invalid checkpoint token: it is stale or belongs to another invocation")
            ops = visible_operations(ex)
        start = int(marker or 0)
        page = ops[start:start + max_items]
        out = {"Operations": page}
        if start + max_items < len(ops):
            out["NextMarker"] = str(start + max_items)
        return out

    def close(self) -> None:
        """Stop background threads and close the store."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self._scheduler is not None:
            self._scheduler.join()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        self._store.close()

    def __enter__(self) -> "LocalEngine":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- internals: lookup, timers ----------------------------------------------------------
    def _get(self, arn: str) -> Execution:
        ex = self._executions.get(arn)
        if ex is None:
            raise ServiceError(NOT_FOUND, f"no durable execution {arn!r}", status=404)
        return ex

    def _adopt(self, ex: Execution) -> None:
        """Take over an execution loaded from the store (resume after a restart)."""
        ex.on_event = self._emit
        self._executions[ex.arn] = ex
        self._by_name[(ex.function_name, ex.name)] = ex.arn
        for op in ex.ops.values():
            cb = (op.get("CallbackDetails") or {}).get("CallbackId")
            if cb:
                self._callbacks[cb] = (ex.arn, op["Id"])
        if ex.status == _RUNNING:
            pause = self._pause_of(ex)
            if pause is not None and pause["Status"] == _PAUSING:  # its invocation ended with the process
                self._pause_takes_effect(ex, {**pause, "Interrupted": True})
            self._push_timer(self._timeout_due(ex), "execution_timeout", ex.arn)
            for op in ex.ops.values():
                self._rearm(ex, op)
            if _needs_invocation(ex):
                self._mark_ready(ex)

    def _rearm(self, ex: Execution, op: dict) -> None:
        status, kind = op["Status"], op["Type"]
        if kind == wire.WAIT and status == wire.STARTED:
            self._push_timer(op["WaitDetails"]["ScheduledEndTimestamp"], "wait", ex.arn, op["Id"])
        elif kind == wire.STEP and status == wire.PENDING:
            self._push_timer(op["StepDetails"]["NextAttemptTimestamp"], "retry", ex.arn, op["Id"])
        elif kind == wire.CALLBACK and status == wire.STARTED:
            if op.get("_timeout_due"):
                self._push_timer(op["_timeout_due"], "callback_timeout", ex.arn, op["Id"])
            if op.get("_heartbeat_due"):
                self._push_timer(op["_heartbeat_due"], "callback_heartbeat", ex.arn, op["Id"])
        elif kind == wire.CHAINED_INVOKE and status == wire.STARTED:
            self._push_timer(self.clock.now_ms(), "invoke", ex.arn, op["Id"])

    def _push_timer(self, due_ms: int, kind: str, arn: str, op_id: Optional[str] = None) -> None:
        with self._lock:
            heapq.heappush(self._timers, Timer(due_ms, next(self._timer_seq), kind, arn, op_id))

    def _next_timer(self, skip_execution_timeouts: bool = False) -> Optional[Timer]:
        with self._lock:
            while self._timers:
                t = self._timers[0]
                ex = self._executions.get(t.arn)
                if ex is None or ex.status != _RUNNING:
                    heapq.heappop(self._timers)
                    continue
                if skip_execution_timeouts and t.kind == "execution_timeout":
                    others = [x for x in self._timers if x.kind != "execution_timeout"
                              and self._executions.get(x.arn) is not None
                              and self._executions[x.arn].status == _RUNNING]
                    return min(others) if others else None
                return t
            return None

    def _advance_to(self, target_ms: int) -> None:
        """Virtual time: fire every timer due by ``target_ms`` in order, each with its re-invocation."""
        while True:
            self._drain()
            with self._lock:
                timer = self._timers[0] if self._timers else None
                if timer is None or timer.due_ms > target_ms:
                    break
                heapq.heappop(self._timers)
            self.clock.advance_to(timer.due_ms)
            self._fire(timer)
        self.clock.advance_to(target_ms)
        self._drain()

    def _fire(self, timer: Timer) -> None:
        ex = self._executions.get(timer.arn)
        if ex is None:
            return
        if timer.kind == "invoke":  # runs user code / starts an execution: never under ex.lock
            if self._pool is not None:
                try:
                    self._pool.submit(self._launch_invoke, ex, timer.op_id)
                except RuntimeError:
                    pass  # the engine is closing; a restart re-arms the invoke
            else:
                self._launch_invoke(ex, timer.op_id)
            return
        with ex.lock:
            if ex.status != _RUNNING:
                return
            now = self.clock.now_ms()
            if timer.kind == "execution_timeout":
                due = self._timeout_due(ex)
                if due > now:  # a pause holds the timeout, or moved it on: fire when it is due
                    self._push_timer(due, "execution_timeout", ex.arn)
                    return
                self._complete(ex, "TIMED_OUT", error={"ErrorType": "Execution.Timeout",
                               "ErrorMessage": f"the execution exceeded its timeout of {ex.timeout_s} s"})
                return
            op = ex.ops.get(timer.op_id)
            if op is None:
                return
            changed = self._complete_timer(ex, timer, op, now)
            if changed is None:
                return
            try:
                self._service_update(ex, changed)
            except Exception:
                self._push_timer(timer.due_ms, timer.kind, timer.arn, timer.op_id)  # not recorded: fire it again
                raise
        self._after_change()

    def _complete_timer(self, ex: Execution, timer: Timer, op: dict, now: int) -> Optional[dict]:
        kind, status = timer.kind, op["Status"]
        if kind == "wait" and status == wire.STARTED:
            new = {**op, "Status": wire.SUCCEEDED, "EndTimestamp": now}
            duration = (op["WaitDetails"]["ScheduledEndTimestamp"] - op["StartTimestamp"]) // 1000
            ex.add_event(h.op_event("WaitSucceeded", new, now, {"Duration": duration}))
            return new
        if kind == "retry" and status == wire.PENDING:
            return {**op, "Status": wire.READY}
        if kind in ("callback_timeout", "callback_heartbeat") and status == wire.STARTED:
            if kind == "callback_heartbeat" and op.get("_heartbeat_due") != timer.due_ms:
                return None  # a heartbeat moved the deadline
            error_type = "Callback.Timeout" if kind == "callback_timeout" else "Callback.Heartbeat"
            error = {"ErrorType": error_type, "ErrorMessage": "Callback timed out" if kind == "callback_timeout"
                     else "Callback timed out waiting for a heartbeat"}
            new = {**op, "Status": wire.TIMED_OUT, "EndTimestamp": now,
                   "CallbackDetails": {**op.get("CallbackDetails", {}), "Error": error}}
            ex.add_event(h.op_event("CallbackTimedOut", new, now, {"Error": h.error(error)}))
            return new
        return None

    # -- chained invoke ------------------------------------------------------------------------
    def _resolve_function(self, function_name: str) -> tuple[str, Optional[Callable]]:
        """The registered name and handler for a FunctionName (a name, name:qualifier or function ARN)."""
        with self._lock:
            if function_name in self._functions:
                return function_name, self._functions[function_name]
            parts = function_name.split(":")
            name = parts[parts.index("function") + 1] if "function" in parts[:-1] else parts[0]
            return name, self._functions.get(name)

    def _launch_invoke(self, ex: Execution, op_id: str) -> None:
        """Start a chained invoke's target (called without locks, once the START is recorded).

        A durable target (``@durable_handler``) runs as its own execution, named after the caller's
        execution and operation so that a restarted engine attaches to it instead of starting it
        twice; it completes the operation when it ends. A plain ``(event, context) -> value``
        function runs directly. An unknown function fails the operation at once.
        """
        with ex.lock:
            op = ex.ops.get(op_id)
            if ex.status != _RUNNING or op is None or op["Type"] != wire.CHAINED_INVOKE or op["Status"] != wire.STARTED:
                return
            spec = dict(op.get("_invoke") or {})
        function_name = spec.get("FunctionName") or ""
        name, target = self._resolve_function(function_name)
        if target is None:
            with self._lock:
                known = ", ".join(sorted(self._functions)) or "none"
            self._settle_invoke(ex.arn, op_id, "FAILED", error={
                "ErrorType": "ResourceNotFoundException",
                "ErrorMessage": f"Function not found: {function_name!r} is not registered with the local engine "
                                f"(registered: {known}); pass LocalEngine(functions={{name: handler}}) or call "
                                "engine.register_function(name, handler)"})
            self._after_change()
            return
        from ..serdes import decode_plain_json
        from ..errors import SerDesError
        try:
            event = decode_plain_json(spec.get("Payload"), f"the payload of the chained invoke of {function_name!r}")
        except SerDesError as exc:
            self._settle_invoke(ex.arn, op_id, "FAILED", error={"ErrorType": "InvalidRequestContentException",
                                                               "ErrorMessage": str(exc)})
            self._after_change()
            return
        if getattr(target, "__durable_function__", None) is not None:
            self._start_durable_target(ex, op_id, name, target, event)
        else:
            self._run_plain_target(ex, op_id, name, target, event)
        self._after_change()

    def _start_durable_target(self, ex: Execution, op_id: str, name: str, target: Callable, event: Any) -> None:
        child_name = f"invoke-{ex.exec_op_id}-{op_id}"
        key = (name, child_name)
        with self._lock:
            self._invoke_links[key] = (ex.arn, op_id)  # before start(): the target may end inside it
        try:
            child_arn = self.start(target, input=event, name=child_name, function_name=name)
        except ServiceError as exc:
            with self._lock:
                self._invoke_links.pop(key, None)
            self._settle_invoke(ex.arn, op_id, "FAILED", error={"ErrorType": exc.code, "ErrorMessage": exc.message})
            return
        child = self._executions.get(child_arn)
        if child is not None and child.status != _RUNNING:  # it ended already (e.g. before a restart)
            with self._lock:
                self._invoke_links.pop(key, None)
            with child.lock:
                status, result, error = child.status, child.result, child.error
            self._settle_invoke(ex.arn, op_id, status, result, error)

    def _run_plain_target(self, ex: Execution, op_id: str, name: str, target: Callable, event: Any) -> None:
        lambda_ctx = LocalLambdaContext(None, name, self.clock.now_ms() + 15 * 60 * 1000, self.clock)
        try:
            value = target(event, lambda_ctx)
        except Exception as exc:  # noqa: BLE001 - the target's failure, as Lambda reports it
            self._settle_invoke(ex.arn, op_id, "FAILED", error={"ErrorType": type(exc).__name__,
                                                               "ErrorMessage": str(exc)})
            return
        try:
            text = json.dumps(value)
        except (TypeError, ValueError) as exc:
            self._settle_invoke(ex.arn, op_id, "FAILED", error={
                "ErrorType": "Runtime.InvalidOutput",
                "ErrorMessage": f"function {name!r} returned a {type(value).__name__}, which is not JSON: {exc}"})
            return
        self._settle_invoke(ex.arn, op_id, "SUCCEEDED", result=text)

    def _settle_invoke(self, arn: str, op_id: str, status: str, result: Optional[str] = None,
                       error: Optional[dict] = None) -> None:
        """Complete a chained invoke with its target's outcome (idempotent: only a STARTED one)."""
        ex = self._executions.get(arn)
        if ex is None:
            return
        with ex.lock:
            op = ex.ops.get(op_id)
            if ex.status != _RUNNING or op is None or op["Type"] != wire.CHAINED_INVOKE or op["Status"] != wire.STARTED:
                return
            now = self.clock.now_ms()
            if status == "SUCCEEDED":
                text = "null" if result is None else result
                new = {**op, "Status": wire.SUCCEEDED, "EndTimestamp": now, "ChainedInvokeDetails": {"Result": text}}
                event = h.op_event("ChainedInvokeSucceeded", new, now, {"Result": h.result(text)})
            else:
                op_status, event_type = _INVOKE_END.get(status, (wire.FAILED, "ChainedInvokeFailed"))
                err = error or {"ErrorType": f"Execution.{status.title()}",
                                "ErrorMessage": f"the invoked execution ended {status}"}
                new = {**op, "Status": op_status, "EndTimestamp": now, "ChainedInvokeDetails": {"Error": err}}
                event = h.op_event(event_type, new, now, {"Error": h.error(err)})
            ex.add_event(event)
            self._service_update(ex, new)

    def _service_update(self, ex: Execution, new_op: dict) -> None:
        """Called with ex.lock, after the caller appended the change's history event (none when a retry
        becomes READY): record a service-side change and ask for a re-invocation. When the store cannot
        write it (disk full, read-only), memory is put back as it was and the error raised, so the change
        can be made again (a callback answer resent) instead of being neither applied nor accepted."""
        op_id = new_op["Id"]
        old = ex.ops.get(op_id)
        ex.ops[op_id] = new_op
        try:
            self._store.save_checkpoint(ex, {op_id: new_op}, ex.events[-1:] if ex.events else [])
        except Exception:
            if old is None:
                ex.ops.pop(op_id, None)
            else:
                ex.ops[op_id] = old
            if new_op["Status"] != wire.READY and ex.events and ex.events[-1].get("Id") == op_id:
                ex.events.pop()
            raise
        ex.service_changed[op_id] = public_op(new_op)
        self._mark_ready(ex)

    def _callback_op(self, callback_id: str) -> tuple[Execution, dict]:
        """The open callback ``callback_id``; the service's errors for unknown and closed ones."""
        ref = self._callbacks.get(callback_id) if isinstance(callback_id, str) else None
        ex = self._executions.get(ref[0]) if ref is not None else None
        op = ex.ops.get(ref[1]) if ex is not None else None
        if op is None:  # never issued (or issued by a checkpoint batch that was refused)
            raise ServiceError(INVALID, f"unknown callback id {callback_id!r}: no callback of this engine has it")
        if op["Status"] != wire.STARTED or ex.status != _RUNNING:
            state = op["Status"] if op["Status"] != wire.STARTED else f"closed (execution {ex.status})"
            raise ServiceError(CALLBACK_TIMEOUT, f"callback {callback_id} is already {state}; it takes no more "
                                                 "answers")
        return ex, op

    def _complete_callback(self, callback_id: str, status: str, event_type: str, result: Any = None,
                           error: Optional[dict] = None) -> None:
        ex, op = self._callback_op(callback_id)
        with ex.lock:
            op = ex.ops[op["Id"]]
            if op["Status"] != wire.STARTED or ex.status != _RUNNING:
                raise ServiceError(CALLBACK_TIMEOUT, f"callback {callback_id} is already {op['Status']}")
            now = self.clock.now_ms()
            details = dict(op.get("CallbackDetails") or {})
            if status == wire.SUCCEEDED:
                details["Result"] = result
                event_details = {"Result": h.result(result)}
            else:
                details["Error"] = error
                event_details = {"Error": h.error(error)}
            new = {**op, "Status": status, "EndTimestamp": now, "CallbackDetails": details}
            ex.add_event(h.op_event(event_type, new, now, event_details))
            self._service_update(ex, new)
        self._after_change()

    def _new_callback_id(self, ex: Execution, op_id: str) -> str:
        # 256 random bits; hex fits the service's CallbackId pattern [A-Za-z0-9+/]+={0,2}, a URL path
        # segment and a CLI argument (token_urlsafe may start with '-', which argparse takes for an option).
        callback_id = secrets.token_hex(32)
        self._callbacks[callback_id] = (ex.arn, op_id)
        return callback_id

    # -- internals: invocations -------------------------------------------------------------
    def _mark_ready(self, ex: Execution) -> None:
        ex.needs_invoke = True
        with self._lock:
            self._ready.append(ex.arn)
            self._cond.notify_all()

    def _after_change(self) -> None:
        if self.skip_time:
            self._drain()

    def _drain(self) -> None:
        """Virtual time: run every invocation and fire every item due now, until the engine is idle.

        Items due now are the starts of chained invokes (the clock does not move for them). Not
        re-entered on one thread: a call made from inside the loop (e.g. a completion sent from a
        step body, or a chained invoke starting its target) leaves the work to the running loop,
        so an execution is never invoked from inside its own invocation.
        """
        if not self.skip_time or getattr(self._tls, "draining", False):
            return
        self._tls.draining = True
        try:
            while True:
                timer = None
                with self._lock:
                    if self._ready:
                        arn = self._ready.popleft()
                    elif self._timers and self._timers[0].due_ms <= self.clock.now_ms():
                        timer = heapq.heappop(self._timers)
                    else:
                        return
                if timer is not None:
                    self._fire(timer)
                    continue
                ex = self._executions.get(arn)
                if ex is not None:
                    self._invoke(ex)
        finally:
            self._tls.draining = False

    def _schedule_loop(self) -> None:
        """Real time: fire timers when due and hand ready executions to the pool."""
        with self._cond:
            while not self._closed:
                while self._ready:
                    arn = self._ready.popleft()
                    ex = self._executions.get(arn)
                    if ex is not None and not ex.invoking:
                        self._pool.submit(self._invoke_until_idle, ex)
                timer = self._timers[0] if self._timers else None
                if timer is not None and timer.due_ms <= self.clock.now_ms():
                    heapq.heappop(self._timers)
                    self._cond.release()
                    try:
                        self._fire(timer)
                    except Exception:  # noqa: BLE001 - one bad timer must not stop every other one
                        _log.exception("timer %s of %s failed; retrying it", timer.kind, timer.arn)
                        self._push_timer(self.clock.now_ms() + TIMER_RETRY_MS, timer.kind, timer.arn, timer.op_id)
                    finally:
                        self._cond.acquire()
                    continue
                self.clock.wait(self._cond, timer.due_ms if timer else None)

    def _invoke_until_idle(self, ex: Execution) -> None:
        while ex.needs_invoke and ex.status == _RUNNING and not self._closed:
            if not self._invoke(ex):
                return
        with self._cond:
            self._cond.notify_all()

    def _invoke(self, ex: Execution) -> bool:
        """One invocation of ``ex``'s handler; False if one is already in flight or nothing is needed."""
        handler = self._functions.get(ex.function_name) or self._import_handler(ex)
        with ex.lock:
            if ex.invoking or ex.status != _RUNNING or not ex.needs_invoke:
                return False
            if self._pause_of(ex) is not None:  # stays needing an invocation: resume_execution() re-queues it
                return False
            if handler is None:  # stays RUNNING, still needing an invocation: see missing_handlers()
                return False
            ex.invoking = True
            ex.needs_invoke = False
            token = ex.new_token(new_invocation=True)
            ex.service_changed.clear()
            envelope = {"DurableExecutionArn": ex.arn, "CheckpointToken": token,
                        "InitialExecutionState": {"Operations": visible_operations(ex)}}
        start = self.clock.now_ms()
        client = self._client if self.client_factory is None else self.client_factory()
        lambda_ctx = LocalLambdaContext(client, ex.function_name, start + 15 * 60 * 1000, self.clock)
        output, failure = None, None
        if self.isolation == "process":
            output, failure = run_in_child(self, handler, envelope, ex.function_name)
        else:
            try:
                output = handler(envelope, lambda_ctx)
            except Exception as exc:  # noqa: BLE001 - an invocation error, as Lambda reports it
                failure = {"ErrorType": type(exc).__name__, "ErrorMessage": str(exc)}
            except BaseException as exc:  # noqa: BLE001 - sys.exit() & co.: on Lambda the runtime process exits
                failure = {"ErrorType": "Runtime.ExitError",
                           "ErrorMessage": f"the handler raised {type(exc).__name__}: {exc}"}
                if isinstance(exc, KeyboardInterrupt):  # the user stops the engine: record, then let it through
                    with ex.lock:
                        ex.invoking = False
                        self._invocation_done(ex, start, output, failure)
                    raise
        with ex.lock:
            ex.invoking = False
            self._invocation_done(ex, start, output, failure)
        with self._cond:
            self._cond.notify_all()
        return True

    def _import_handler(self, ex: Execution) -> Optional[Callable]:
        """The handler of an execution loaded from the database that nobody registered: from its handler_ref."""
        if ex.handler_ref:
            try:
                handler = load_handler_ref(ex.handler_ref)
            except (Exception, SystemExit) as exc:  # noqa: BLE001 - reported by missing_handlers()
                reason = f"its handler {ex.handler_ref} could not be imported ({type(exc).__name__}: {exc})"
            else:
                with self._lock:
                    self._missing.pop(ex.arn, None)
                    return self._functions.setdefault(ex.function_name, handler)
        else:
            reason = "no handler is registered and the execution records no importable handler reference"
        with self._lock:
            self._missing[ex.arn] = (f"function {ex.function_name!r}: {reason}; register it with "
                                     f"LocalEngine(functions={{{ex.function_name!r}: handler}}) or register_function()")
        return None

    def _invocation_done(self, ex: Execution, start: int, output: Any, failure: Optional[dict]) -> None:
        """Called with ex.lock: record InvocationCompleted and act on the handler's output."""
        status = output.get("Status") if isinstance(output, dict) else None
        if failure is None and status not in ("SUCCEEDED", "FAILED", "PENDING"):
            failure = {"ErrorType": "Runtime.InvalidOutput",
                       "ErrorMessage": f"the handler returned {output!r:.200}; a durable handler returns "
                                       "{'Status': 'SUCCEEDED'|'FAILED'|'PENDING', ...}"}
        details: dict[str, Any] = {"StartTimestamp": start, "EndTimestamp": self.clock.now_ms(),
                                   "RequestId": str(uuid.uuid4())}
        if failure is not None:
            details["Error"] = h.error(failure)
        exec_op = ex.ops[ex.exec_op_id]
        ex.add_event(h.execution_event("InvocationCompleted", exec_op, self.clock.now_ms(), details))
        try:
            self._store.save_checkpoint(ex, {}, ex.events[-1:])
        except Exception:  # noqa: BLE001 - e.g. disk full: the event is written with the next write. Raising here
            pass  # would leave the execution with no invocation in flight and none scheduled (wedged); a restart
            # before the next write only sees an unfinished invocation and invokes again, which replays.
        if ex.status != _RUNNING:
            return  # stopped or timed out while the invocation ran
        pause = self._pause_of(ex)
        if pause is not None and (failure is not None or pause.get("Interrupted")):
            # The pause interrupted it (its checkpoint was refused), or it failed while PAUSING: no retry
            # is counted; resume_execution() invokes again.
            ex.needs_invoke = True
            if pause["Status"] == _PAUSING:
                self._pause_takes_effect(ex, pause)
            return
        if failure is not None:
            ex.invocation_failures += 1
            if ex.invocation_failures >= MAX_INVOCATION_ATTEMPTS:
                self._complete(ex, "FAILED", error={**failure, "ErrorMessage":
                               f"the invocation failed {ex.invocation_failures} times; last error: "
                               f"{failure.get('ErrorMessage')}"})
            else:
                self._mark_ready(ex)
            return
        ex.invocation_failures = 0
        if status == "SUCCEEDED":
            result = output.get("Result")
            if result == "" and exec_op.get("_result") is not None:
                result = exec_op["_result"]
            self._complete(ex, "SUCCEEDED", result=result if result is not None else "null")
        elif status == "FAILED":
            self._complete(ex, "FAILED", error=output.get("Error") or {"ErrorType": "Unknown"})
        elif not ex.needs_invoke and not _has_pending_work(ex):
            self._complete(ex, "FAILED", error={
                "ErrorType": "Runtime.NothingPending",
                "ErrorMessage": "the handler returned PENDING but no wait, retry, callback or invoke is pending, "
                                "so nothing could ever resume it"})
        if pause is not None and pause["Status"] == _PAUSING and ex.status == _RUNNING:
            self._pause_takes_effect(ex, pause)  # it ended without another checkpoint

    # -- internals: pauses -----------------------------------------------------------------------
    def _pause_of(self, ex: Execution) -> Optional[dict]:
        """The pause in force on a RUNNING execution (its record: Status PAUSING or PAUSED), else None."""
        if ex.status != _RUNNING:
            return None
        record = ex.ops.get(ex.exec_op_id)
        return record.get(_PAUSE_KEY) if record is not None else None

    def _pause_takes_effect(self, ex: Execution, pause: dict) -> None:
        """Called with ex.lock: the execution is PAUSED from now (history: ExecutionPaused)."""
        now = self.clock.now_ms()
        pause = {**pause, "Status": _PAUSED, "PausedMs": now}
        details: dict[str, Any] = {"PauseRequestTimestamp": pause["RequestedMs"],
                                   "ExecutionTimeoutPaused": pause["TimeoutPaused"]}
        if pause.get("Reason") is not None:
            details["Reason"] = h.result(pause["Reason"])
        record = {**ex.ops[ex.exec_op_id], _PAUSE_KEY: pause}
        self._save_exec_record(ex, record, h.execution_event("ExecutionPaused", record, now, details))
        with self._cond:
            self._cond.notify_all()

    def _save_exec_record(self, ex: Execution, record: dict, event: Optional[dict] = None) -> None:
        """Called with ex.lock: replace the EXECUTION operation's record (and append ``event``); persisted."""
        ex.ops[ex.exec_op_id] = record
        if event is not None:
            ex.add_event(event)
        self._store.save_checkpoint(ex, {ex.exec_op_id: record}, ex.events[-1:] if event is not None else [])

    def _timeout_due(self, ex: Execution) -> int:
        """When the execution times out: its timeout, moved on by time spent paused with the timeout held;
        while so paused, 366 days after the start (the cap that holds in every case)."""
        cap = ex.start_ms + DEFAULT_EXECUTION_TIMEOUT * 1000
        record = ex.ops.get(ex.exec_op_id) or {}
        pause = record.get(_PAUSE_KEY)
        if pause is not None and pause["Status"] == _PAUSED and pause["TimeoutPaused"]:
            return cap
        return min(ex.start_ms + ex.timeout_s * 1000 + record.get(_EXTENSION_KEY, 0), cap)

    def _repeated(self, key: tuple, args: tuple) -> bool:
        """A pause / resume repeated with its ClientToken within 15 minutes (True: do nothing)."""
        if key[2] is None:
            return False
        with self._lock:
            seen = self._control_tokens.get(key)
        if seen is None or seen[1] <= self.clock.now_ms():
            return False
        if seen[0] != args:
            raise ServiceError(INVALID, f"ClientToken {key[2]!r} was used for another {key[0]} request of this "
                                        "execution within 15 minutes; use a new token")
        return True

    def _remember(self, key: tuple, args: tuple) -> None:
        if key[2] is None:
            return
        now = self.clock.now_ms()
        with self._lock:
            if len(self._control_tokens) >= 1024:
                for old in [k for k, (_, expiry) in self._control_tokens.items() if expiry <= now]:
                    del self._control_tokens[old]
                while len(self._control_tokens) >= 1024:
                    del self._control_tokens[next(iter(self._control_tokens))]
            self._control_tokens[key] = (args, now + _CLIENT_TOKEN_TTL_MS)

    def _complete(self, ex: Execution, status: str, result: Optional[str] = None,
                  error: Optional[dict] = None) -> None:
        """Called with ex.lock: end the execution with its terminal event."""
        now = self.clock.now_ms()
        ex.status, ex.end_ms, ex.result, ex.error = status, now, result, error
        exec_op = ex.ops[ex.exec_op_id]
        ex.ops[ex.exec_op_id] = {**exec_op, "Status": status, "EndTimestamp": now}
        if status == "SUCCEEDED":
            event = h.execution_event("ExecutionSucceeded", exec_op, now, {"Result": h.result(result)})
        elif status == "FAILED":
            event = h.execution_event("ExecutionFailed", exec_op, now, {"Error": h.error(error)})
        elif status == "TIMED_OUT":
            event = h.execution_event("ExecutionTimedOut", exec_op, now, {"Error": h.error(error)})
        else:
            event = h.execution_event("ExecutionStopped", exec_op, now, {"Error": h.error(error)} if error else {})
        ex.add_event(event)
        self._store.save_execution(ex, [event])
        with self._lock:
            link = self._invoke_links.pop((ex.function_name, ex.name), None)
        if link is not None:  # the target of a chained invoke: complete the caller's operation
            self._settle_invoke(link[0], link[1], status, result, error)
        with self._cond:
            self._cond.notify_all()


def _check_reason(reason: Any) -> None:
    if reason is not None and (not isinstance(reason, str) or len(reason) > MAX_REASON_CHARS):
        raise ServiceError(INVALID, f"a pause / resume reason is a string of at most {MAX_REASON_CHARS} characters")


def _pause_details(pause: dict) -> dict:
    """PauseDetails as boto3 returns them."""
    details = {"PauseRequestTimestamp": wire.ms_to_datetime(pause["RequestedMs"]),
               "ExecutionTimeoutPaused": pause["TimeoutPaused"]}
    if pause.get("Reason") is not None:
        details["Reason"] = pause["Reason"]
    return details


_PENDING_STATES = frozenset({(wire.WAIT, wire.STARTED), (wire.STEP, wire.PENDING), (wire.STEP, wire.READY),
                             (wire.CALLBACK, wire.STARTED), (wire.CHAINED_INVOKE, wire.STARTED)})


def _has_pending_work(ex: Execution) -> bool:
    return any((op["Type"], op["Status"]) in _PENDING_STATES for op in ex.ops.values())


_SERVICE_COMPLETIONS = frozenset({"WaitSucceeded", "CallbackSucceeded", "CallbackFailed", "CallbackTimedOut",
                                  "ChainedInvokeSucceeded", "ChainedInvokeFailed", "ChainedInvokeTimedOut",
                                  "ChainedInvokeStopped"})


def _needs_invocation(ex: Execution) -> bool:
    """Whether an execution loaded from the database needs an invocation now (else its timers wake it).

    Yes when the last invocation did not finish (a crash), failed, or left nothing pending; when a
    retry is due (READY); or when a completion may have arrived while the last invocation ran (it
    did not see it). Conservative: an unneeded invocation only replays.
    """
    events = [e for e in ex.events if e["EventType"] not in _CONTROL_EVENTS]  # pauses change nothing here
    last = events[-1] if events else None
    if last is None or last["EventType"] != "InvocationCompleted":
        return True
    details = last.get("InvocationCompletedDetails") or {}
    if details.get("Error") or not _has_pending_work(ex):
        return True
    if any(op["Type"] == wire.STEP and op["Status"] == wire.READY for op in ex.ops.values()):
        return True
    started = details.get("StartTimestamp", 0)
    for event in reversed(events[:-1]):
        if event["EventType"] == "InvocationCompleted" or event["EventTimestamp"] < started:
            return False
        if event["EventType"] in _SERVICE_COMPLETIONS:
            return True
    return False
