"""What the console's buttons do: each action is one operation of the Lambda API the server serves.

The console hands every action to the server's ``LambdaApi`` (the same operation boto3 would call:
``StopDurableExecution``, ``SendDurableExecutionCallbackSuccess``, ``Invoke``, ...), which calls the
engine's public API (``stop``, ``send_callback_success``, ``pause``, ``start``, ...) as the CLI does,
and, on a virtual-time engine, runs the executions onward afterwards. A refusal is the service's own
error (its code and message), answered as is.
"""
from __future__ import annotations

import json
from typing import Any, Callable, Optional

from .guard import BAD_REQUEST, Refused

CALLBACK_ERROR_TYPE = "CallbackError"  # the ErrorType of a failure sent without one (as `durable-sync callback fail`)


def _text(body: dict, key: str, what: str, *, required: bool = True) -> Optional[str]:
    value = body.get(key)
    if value is None or value == "":
        if required:
            raise Refused(400, BAD_REQUEST, f"{what} is missing (JSON member {key!r}); nothing was changed")
        return None
    if not isinstance(value, str):
        raise Refused(400, BAD_REQUEST, f"{what} must be a string (JSON member {key!r}); nothing was changed")
    return value


def _execution_input(engine: Any, arn: str) -> tuple[str, str]:
    """(function name, input payload text) of execution ``arn``."""
    snapshot = engine.snapshot(arn)
    record = next((op for op in snapshot.operations if op.get("Type") == "EXECUTION"), {})
    return snapshot.function_name, (record.get("ExecutionDetails") or {}).get("InputPayload") or "null"


def _callback_result(body: dict) -> Optional[bytes]:
    text = _text(body, "payload", "the callback result", required=False)
    if text is None or not text.strip():
        return None  # a success without a result
    try:
        json.loads(text)
    except json.JSONDecodeError as exc:
        raise Refused(400, BAD_REQUEST, f"the callback result is not JSON ({exc.msg} at line {exc.lineno} column "
                                        f"{exc.colno}); nothing was sent") from None
    return text.encode("utf-8")


def perform(api: Any, engine: Any, action: str, body: Any) -> dict:
    """Run ``action`` with the page's JSON ``body``; returns ``{"message", ...}`` or raises (ApiError, Refused)."""
    if not isinstance(body, dict):
        raise Refused(400, BAD_REQUEST, "the request body must be a JSON object; nothing was changed")
    spec = ACTIONS.get(action)
    if spec is None:
        raise Refused(404, BAD_REQUEST, f"unknown action {action!r}: {', '.join(sorted(ACTIONS))}")
    return spec(api, engine, body)


def _stop(api: Any, engine: Any, body: dict) -> dict:
    arn = _text(body, "arn", "the execution ARN")
    api.call("StopDurableExecution", {"DurableExecutionArn": arn})
    return {"message": "stopped: the execution ended STOPPED", "arn": arn}


def _arn_and_reason(body: dict) -> tuple[str, dict]:
    """The execution ARN and the request parameters, with the optional reason (pause, resume)."""
    arn = _text(body, "arn", "the execution ARN")
    params = {"DurableExecutionArn": arn}
    reason = _text(body, "reason", "the reason", required=False)
    if reason:
        params["Reason"] = reason
    return arn, params


def _pause(api: Any, engine: Any, body: dict) -> dict:
    arn, params = _arn_and_reason(body)
    api.call("PauseDurableExecution", params)
    state = engine.get_execution(arn).pause_status or "RUNNING"
    return {"message": f"paused: {state}" + (" (PAUSED once the invocation in flight reaches a checkpoint)"
                                              if state == "PAUSING" else ""), "arn": arn}


def _resume(api: Any, engine: Any, body: dict) -> dict:
    arn, params = _arn_and_reason(body)
    api.call("ResumeDurableExecution", params)
    return {"message": "resumed", "arn": arn}


def _delete(api: Any, engine: Any, body: dict) -> dict:
    arn = _text(body, "arn", "the execution ARN")
    api.call("DeleteDurableExecution", {"DurableExecutionArn": arn})
    return {"message": "deleted, with its history", "arn": arn}


def _run_again(api: Any, engine: Any, body: dict) -> dict:
    arn = _text(body, "arn", "the execution ARN")
    function, payload = _execution_input(engine, arn)
    out = api.call("Invoke", {"FunctionName": function, "InvocationType": "Event", "Payload": payload.encode("utf-8")})
    return {"message": f"started a new execution of {function} with the same input",
            "arn": out["DurableExecutionArn"]}


def _callback_succeed(api: Any, engine: Any, body: dict) -> dict:
    callback_id = _text(body, "callback_id", "the callback id")
    params: dict = {"CallbackId": callback_id}
    result = _callback_result(body)
    if result is not None:
        params["Result"] = result
    api.call("SendDurableExecutionCallbackSuccess", params)
    return {"message": f"callback {callback_id}: success sent"}


def _callback_fail(api: Any, engine: Any, body: dict) -> dict:
    callback_id = _text(body, "callback_id", "the callback id")
    error = {"ErrorType": _text(body, "error_type", "the error type", required=False) or CALLBACK_ERROR_TYPE,
             "ErrorMessage": _text(body, "error_message", "the error message", required=False) or ""}
    api.call("SendDurableExecutionCallbackFailure", {"CallbackId": callback_id, "Error": error})
    return {"message": f"callback {callback_id}: failure sent ({error['ErrorType']})"}


def _callback_heartbeat(api: Any, engine: Any, body: dict) -> dict:
    callback_id = _text(body, "callback_id", "the callback id")
    api.call("SendDurableExecutionCallbackHeartbeat", {"CallbackId": callback_id})
    return {"message": f"callback {callback_id}: heartbeat sent"}


ACTIONS: dict[str, Callable[[Any, Any, dict], dict]] = {
    "stop": _stop, "pause": _pause, "resume": _resume, "delete": _delete, "run-again": _run_again,
    "callback-succeed": _callback_succeed, "callback-fail": _callback_fail, "callback-heartbeat": _callback_heartbeat,
}
