"""``ctx.invoke()``: chained invoke of another (durable) function.

CHAINED_INVOKE START (Payload, ChainedInvokeOptions{FunctionName, TenantId?}) is
awaited, then the invocation suspends until the service completes the operation
with the target's result (SUCCEEDED) or error (FAILED / TIMED_OUT / STOPPED, raised
as InvokeError carrying the target's ErrorType and ErrorMessage).

The payload is the target's input event and the result comes from another
function: both are plain JSON by default (the result is never decoded with the
pickling serdes); ``InvokeConfig(serdes_payload=..., serdes_result=...)`` overrides.
"""
from __future__ import annotations

import json
from typing import Any, Optional

from .. import wire
from ..config import InvokeConfig, expect
from ..errors import InvokeError, SerDesError, ValidationError
from ..serdes import decode_plain_json, deserialize_value, serialize_value
from .scope import AWAIT, OperationScope

__all__ = ["invoke"]

_DEFAULT_CONFIG = InvokeConfig()
_MAX_FUNCTION_NAME = 256


def _encode_payload(value: Any, label: str) -> str:
    try:
        return json.dumps(value, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise SerDesError(
            f"the payload of invoke {label} is not JSON data ({exc}): the target receives it as its input event. "
            "Pass JSON data (dict/list/str/number/bool/None), or InvokeConfig(serdes_payload=...)") from exc


def _outcome(scope: OperationScope, op: dict, label: str, cfg: InvokeConfig) -> Any:
    """Result of a completed invoke, its InvokeError, or suspension while it runs."""
    status = op.get("Status")
    details = op.get("ChainedInvokeDetails") or {}
    if status == wire.SUCCEEDED:
        text = details.get("Result")
        if cfg.serdes_result is not None:
            return deserialize_value(cfg.serdes_result, text, scope.serdes_ctx(op["Id"]))
        return decode_plain_json(text, f"the result of invoke {label}")
    if status in wire.TERMINAL:
        raise InvokeError.from_error_object(details.get("Error") or {
            "ErrorType": "InvokeError", "ErrorMessage": f"invoke {label} ended {status}"})
    raise scope.suspend(f"invoke {label} waits for its target")


def invoke(scope: OperationScope, function_name: str, payload: Any = None, name: Optional[str] = None,
           config: Optional[InvokeConfig] = None) -> Any:
    """Invoke ``function_name`` with ``payload``; returns the target's result."""
    if not isinstance(function_name, str) or not function_name or len(function_name) > _MAX_FUNCTION_NAME:
        raise ValidationError(f"invoke needs a function name or ARN (1 to {_MAX_FUNCTION_NAME} characters), "
                              f"got {function_name!r}")
    cfg = expect(config, InvokeConfig, "invoke", _DEFAULT_CONFIG)  # InvokeConfig checked its tenant_id
    op = scope.begin(wire.CHAINED_INVOKE, wire.SubType.CHAINED_INVOKE, name, f"ctx.invoke({function_name!r})")
    label = f"{name!r} ({function_name})" if name else repr(function_name)
    if op.record is not None:
        return _outcome(scope, op.record, label, cfg)
    if cfg.serdes_payload is not None:
        text = serialize_value(cfg.serdes_payload, payload, scope.serdes_ctx(op.id))
    else:
        text = _encode_payload(payload, label)
    options = {"FunctionName": function_name}
    if cfg.tenant_id is not None:
        options["TenantId"] = cfg.tenant_id
    scope.checkpoint(op, wire.START, AWAIT, Payload=text, ChainedInvokeOptions=options)
    record = scope.record(op)
    if record is not None and record.get("Status") in wire.TERMINAL:
        return _outcome(scope, record, label, cfg)  # the service already answered (checkpoint response)
    raise scope.suspend(f"invoke {label} started")
