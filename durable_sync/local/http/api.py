"""LambdaApi: the durable-execution operations of the Lambda API (and Invoke) over a LocalEngine.

HTTP-free: ``call(name, params) -> output`` takes the operation's input dict as ``protocol``
parsed it and returns its output dict. It uses only the engine's public API.

With a virtual-time engine (``skip_time=True``) the API drives the clock: after each request that
changes an execution (Invoke, callback answers, stop) it advances virtual time until every
execution is done or waits on the outside.
"""
from __future__ import annotations

import datetime as dt
import functools
import json
import threading
import time
from typing import Any, Callable, Optional

from ... import wire
from ...errors import ValidationError
from ...errors import CONFLICT, INVALID, NOT_FOUND, ServiceError
from .protocol import (ALREADY_STARTED, BAD_CONTENT, DEFAULT_PAGE, TOO_LARGE, ApiError, event_types, utf8,
                       reported_status)

MAX_SYNC_PAYLOAD_BYTES = 6 * 1024 * 1024  # Invoke RequestResponse (Lambda: 6 MB)
MAX_ASYNC_PAYLOAD_BYTES = 1024 * 1024  # Invoke Event (Lambda: 1 MB)
DEFAULT_INVOKE_TIMEOUT = float(wire.MAX_INVOCATION_SECONDS)  # a synchronous invoke waits at most as long as Lambda runs one
REGION = wire.LOCAL_REGION


def named_function(name: str, handler: Callable) -> Callable:
    """``handler`` served as the Lambda function ``name``.

    The engine names executions and ARNs after it, and the handler receives the
    invocation envelope as Lambda's runtime delivers it: decoded from JSON text
    (epoch-millisecond timestamps, fresh objects it shares with nobody).
    """
    if getattr(handler, "__durable_served__", None) == name:
        return handler

    @functools.wraps(handler)
    def function(event: Any, lambda_context: Any = None) -> Any:
        return handler(json.loads(json.dumps(event)), lambda_context)

    function.__durable_function_name__ = name  # type: ignore[attr-defined]
    function.__durable_served__ = name  # type: ignore[attr-defined]
    return function


def function_name(value: str) -> str:
    """The bare function name of a name, partial ARN or ARN, with or without a qualifier."""
    name = wire.function_name_of(value)
    if name is None:
        raise ApiError(INVALID, f"{value!r} is not a function name or ARN")
    return name


def _arn_parts(arn: str) -> wire.ExecutionArn:
    """The parts of an execution ARN of this engine (each fits ``wire.parse_execution_arn``)."""
    parts = wire.parse_execution_arn(arn)
    if parts is None:
        raise ApiError(NOT_FOUND, f"no durable execution {arn!r}", 404)
    return parts


def _offset(marker: Optional[str]) -> int:
    if marker is None or marker == "":
        return 0
    if not marker.isdigit():
        raise ApiError(INVALID, f"Marker {marker!r} was not returned by this server; pass the NextMarker of the "
                       "previous page")
    return int(marker)


def _page(items: list, marker: Optional[str], max_items: Optional[int]) -> tuple[list, Optional[str]]:
    start = _offset(marker)
    size = max_items or DEFAULT_PAGE
    page = items[start:start + size]
    return page, (str(start + size) if start + size < len(items) else None)


class LambdaApi:
    """The operations, over a LocalEngine; HTTP-free (``call(name, params) -> output``)."""

    def __init__(self, engine: Any, functions: Optional[dict] = None, invoke_timeout: float = DEFAULT_INVOKE_TIMEOUT):
        self.engine = engine
        self.invoke_timeout = invoke_timeout
        self._functions: dict[str, Callable] = {}
        self._drive_lock = threading.RLock()
        self._changed = threading.Condition()
        self._generation = 0
        self._closed = False
        for name, handler in (functions or {}).items():
            self.register(name, handler)

    def register(self, name: str, handler: Callable) -> Callable:
        wrapper = named_function(name, handler)
        self._functions[name] = wrapper
        self.engine.register_function(name, wrapper)
        return wrapper

    def close(self) -> None:
        self._closed = True
        self._notify()

    def call(self, name: str, params: dict) -> dict:
        method = getattr(self, f"op_{name}", None)
        if method is None:
            raise ApiError(BAD_CONTENT, f"{name} is in the Lambda model but not implemented by this server")
        try:
            return method(params)
        except ServiceError as exc:
            raise ApiError(exc.code, exc.message, exc.status) from None
        except ValidationError as exc:
            raise ApiError(INVALID, str(exc)) from None

    # -- virtual time ---------------------------------------------------------------------
    def _notify(self) -> None:
        with self._changed:
            self._generation += 1
            self._changed.notify_all()

    def _drive(self) -> None:
        """Virtual time: advance until every execution is done or waits on the outside."""
        if not self.engine.skip_time:
            return
        with self._drive_lock:
            for item in self.engine.list_executions(status="RUNNING"):
                self.engine.wait(item["DurableExecutionArn"])
        self._notify()

    def _mutate(self, fn: Callable, *args: Any) -> Any:
        if not self.engine.skip_time:
            result = fn(*args)
            self._notify()
            return result
        with self._drive_lock:
            result = fn(*args)
            self._drive()
        return result

    def _await_outcome(self, arn: str) -> Any:
        if not self.engine.skip_time:
            return self.engine.wait(arn, self.invoke_timeout)
        deadline = time.monotonic() + self.invoke_timeout
        while True:
            with self._changed:
                generation = self._generation
            result = self.engine.get_execution(arn)
            remaining = deadline - time.monotonic()
            if result.status != "RUNNING" or remaining <= 0 or self._closed:
                return result
            with self._changed:
                if self._generation == generation:
                    self._changed.wait(min(remaining, 1.0))

    # -- lookups ------------------------------------------------------------------------------
    def _function(self, value: str) -> tuple[str, Callable]:
        name = function_name(value)
        handler = self._functions.get(name)
        if handler is None:
            registered = self.engine.functions.get(name)  # registered on the engine directly
            if registered is not None:
                handler = self.register(name, registered)
        if handler is None:
            known = ", ".join(sorted(self._functions)) or "none"
            raise ApiError(NOT_FOUND, f"Function not found: {wire.function_arn(name)} "
                           f"(functions served here: {known})", 404)
        return name, handler

    def _execution_op(self, arn: str) -> dict:
        for op in self.engine.operations(arn):
            if op.get("Type") == "EXECUTION":
                return op
        raise ApiError(NOT_FOUND, f"no durable execution {arn!r}", 404)

    # -- Invoke -------------------------------------------------------------------------------
    def op_Invoke(self, p: dict) -> dict:
        name, handler = self._function(p["FunctionName"])
        invocation_type = p.get("InvocationType") or "RequestResponse"
        payload = p.get("Payload") or b""
        limit = MAX_ASYNC_PAYLOAD_BYTES if invocation_type == "Event" else MAX_SYNC_PAYLOAD_BYTES
        if len(payload) > limit:
            raise ApiError(TOO_LARGE, f"Request must be smaller than {limit} bytes for the InvokeFunction operation",
                           413)
        if payload.strip():
            try:
                event = json.loads(payload.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise ApiError(BAD_CONTENT, f"Could not parse request body into json: {exc}") from None
        else:
            event = {}  # Lambda passes {} when there is no payload
        if invocation_type == "DryRun":
            return {"StatusCode": 204}
        try:
            if invocation_type == "Event" and self.engine.skip_time:
                with self._drive_lock:
                    arn = self.engine.start(handler, input=event, name=p.get("DurableExecutionName"))
                threading.Thread(target=self._drive, name="durable-http-drive", daemon=True).start()
            else:
                arn = self._mutate(lambda: self.engine.start(handler, input=event,
                                                             name=p.get("DurableExecutionName")))
        except ServiceError as exc:
            if exc.code == CONFLICT:
                raise ApiError(ALREADY_STARTED, f"{exc.message}; use another DurableExecutionName or the same "
                               "payload", 409) from None
            raise
        if invocation_type == "Event":
            return {"StatusCode": 202, "DurableExecutionArn": arn}
        result = self._await_outcome(arn)
        out = {"StatusCode": 200, "DurableExecutionArn": arn, "ExecutedVersion": wire.LATEST}
        if result.status == "SUCCEEDED":
            out["Payload"] = (result.raw_result if result.raw_result is not None else "null").encode("utf-8")
        elif result.status == "RUNNING":
            out["FunctionError"] = "Unhandled"
            out["Payload"] = json.dumps({
                "errorType": "DurableExecution.StillRunning",
                "errorMessage": f"the durable execution is still RUNNING after {self.invoke_timeout:g} s; poll "
                                f"GetDurableExecution for {arn}"}).encode("utf-8")
        else:
            err = result.error or {}
            body = {"errorType": err.get("ErrorType") or f"Execution.{result.status}",
                    "errorMessage": err.get("ErrorMessage") or f"the durable execution ended {result.status}"}
            if err.get("StackTrace"):
                body["stackTrace"] = err["StackTrace"]
            out["FunctionError"] = "Unhandled"
            out["Payload"] = json.dumps(body).encode("utf-8")
        return out

    # -- executions ---------------------------------------------------------------------------
    def op_GetDurableExecution(self, p: dict) -> dict:
        arn = p["DurableExecutionArn"]
        result = self.engine.get_execution(arn)
        op = self._execution_op(arn)
        parts = _arn_parts(arn)
        with_data = p.get("IncludeExecutionData") is not False  # newer models: default true
        out = {"DurableExecutionArn": arn, "DurableExecutionName": parts.name, "FunctionArn": parts.function_arn,
               "Status": reported_status(getattr(result, "pause_status", None) or result.status),
               "StartTimestamp": op.get("StartTimestamp"), "EndTimestamp": op.get("EndTimestamp"),
               "Version": parts.qualifier or wire.LATEST, "ExecutionDataIncluded": with_data,
               "ExpectedExecutionTimeoutTimestamp": getattr(result, "timeout_at", None)}
        pause_details = getattr(result, "pause_details", None)
        if pause_details:  # members the model lacks are dropped when rendered
            out["PauseDetails"] = pause_details if with_data else {k: v for k, v in pause_details.items()
                                                                   if k != "Reason"}
        if with_data:
            out["InputPayload"] = (op.get("ExecutionDetails") or {}).get("InputPayload")
            if result.status == "SUCCEEDED":
                out["Result"] = result.raw_result if result.raw_result is not None else "null"
            elif result.error:
                out["Error"] = result.error
        return out

    def op_GetDurableExecutionHistory(self, p: dict) -> dict:
        events = self.engine.history(p["DurableExecutionArn"])
        known = event_types()
        if known:  # a model without pause / resume cannot describe their events: leave them out
            events = [e for e in events if e["EventType"] in known]
        if p.get("IncludeExecutionData") is False:
            events = [_without_data(e) for e in events]
        if p.get("ReverseOrder"):
            events = events[::-1]
        page, marker = _page(events, p.get("Marker"), p.get("MaxItems"))
        return {"Events": page, "NextMarker": marker}

    def op_ListDurableExecutionsByFunction(self, p: dict) -> dict:
        name = function_name(p["FunctionName"])
        if name not in self._functions and name not in self.engine.functions and \
                not self.engine.list_executions(function_name=name, limit=1):
            raise ApiError(NOT_FOUND, f"Function not found: {wire.function_arn(name)}", 404)
        statuses = set(p.get("Statuses") or ())
        if "RUNNING" in statuses and reported_status("PAUSED") == "RUNNING":  # a model without PAUSED
            statuses |= {"PAUSING", "PAUSED"}
        start, size = _offset(p.get("Marker")), p.get("MaxItems") or DEFAULT_PAGE
        items = self.engine.list_executions(function_name=name, name=p.get("DurableExecutionName"),
                                            status=statuses or None, started_after=p.get("StartedAfter"),
                                            started_before=p.get("StartedBefore"), reverse=bool(p.get("ReverseOrder")),
                                            offset=start, limit=size + 1)
        page = [{**item, "Status": reported_status(item["Status"])} for item in items[:size]]
        return {"DurableExecutions": page, "NextMarker": str(start + size) if len(items) > size else None}

    def op_StopDurableExecution(self, p: dict) -> dict:
        arn = p["DurableExecutionArn"]
        self._mutate(self.engine.stop, arn, p.get("Error"))
        return {"StopTimestamp": self._execution_op(arn).get("EndTimestamp") or dt.datetime.now(dt.timezone.utc)}

    # Delete, pause and resume: operations of newer botocore models (routed only where the model has them).
    def op_DeleteDurableExecution(self, p: dict) -> dict:
        deleted = self.engine.delete(p["DurableExecutionArn"])  # ends nothing, starts nothing: no drive
        self._notify()
        return {"DeletionRequestTimestamp": deleted}

    def op_PauseDurableExecution(self, p: dict) -> dict:
        # Not under the drive lock: an invocation in flight (the drive's) is what makes it PAUSING.
        timeout_paused = p.get("ExecutionTimeoutPaused")
        self.engine.pause(p["DurableExecutionArn"], p.get("Reason"),
                          execution_timeout_paused=True if timeout_paused is None else timeout_paused,
                          client_token=p.get("ClientToken"))
        self._notify()
        return {}

    def op_ResumeDurableExecution(self, p: dict) -> dict:
        arn = p["DurableExecutionArn"]
        self._mutate(lambda: self.engine.resume_execution(arn, p.get("Reason"), client_token=p.get("ClientToken")))
        return {}

    # -- the SDK's calls ----------------------------------------------------------------------
    def op_CheckpointDurableExecution(self, p: dict) -> dict:
        # Never takes the drive lock: it is called from inside running invocations.
        response = self.engine.checkpoint(p["DurableExecutionArn"], p["CheckpointToken"], p.get("Updates") or [],
                                          p.get("ClientToken"))
        self._notify()
        return response

    def op_GetDurableExecutionState(self, p: dict) -> dict:
        _offset(p.get("Marker"))
        return self.engine.get_state(p["DurableExecutionArn"], p["CheckpointToken"], p.get("Marker"),
                                     p.get("MaxItems") or DEFAULT_PAGE)

    # -- callbacks ------------------------------------------------------------------------------
    def op_SendDurableExecutionCallbackSuccess(self, p: dict) -> dict:
        result = p.get("Result")
        text = utf8(result) if result else None
        self._mutate(self.engine.send_callback_success, p["CallbackId"], text)
        return {}

    def op_SendDurableExecutionCallbackFailure(self, p: dict) -> dict:
        self._mutate(self.engine.send_callback_failure, p["CallbackId"], p.get("Error"))
        return {}

    def op_SendDurableExecutionCallbackHeartbeat(self, p: dict) -> dict:
        self._mutate(self.engine.send_callback_heartbeat, p["CallbackId"])
        return {}


def _without_data(event: dict) -> dict:
    """An event without its Input / Result payloads (IncludeExecutionData=false)."""
    out = dict(event)
    for key, details in event.items():
        if key.endswith("Details") and isinstance(details, dict):
            details = dict(details)
            for field in ("Input", "Result", "Reason"):  # Reason: ExecutionPaused / ExecutionResumed
                if isinstance(details.get(field), dict):
                    details[field] = {k: v for k, v in details[field].items() if k != "Payload"}
            out[key] = details
    return out
