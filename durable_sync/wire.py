"""The public wire shapes of the durable execution service.

Names and limits of the Lambda durable execution API (botocore model ``lambda``),
operation ids, and the client-side validation of updates. The SDK and the local
engine both use this module; it is the only SDK module the engine imports.
"""
from __future__ import annotations

import datetime as _dt
import json
import re
from typing import Any

from .errors import ValidationError, utf8_safe, utf8_safe_error

try:  # hashlib.blake2b itself, without hashlib's import of OpenSSL (~4 MB of memory at cold start)
    from _blake2 import blake2b as _blake2b
except ImportError:  # pragma: no cover - other Python implementations
    from hashlib import blake2b as _blake2b

# Operation types, actions, statuses, sub-types.
EXECUTION, CONTEXT, STEP, WAIT, CALLBACK, CHAINED_INVOKE = (
    "EXECUTION", "CONTEXT", "STEP", "WAIT", "CALLBACK", "CHAINED_INVOKE")
START, SUCCEED, FAIL, RETRY, CANCEL = "START", "SUCCEED", "FAIL", "RETRY", "CANCEL"
STARTED, PENDING, READY, SUCCEEDED, FAILED, CANCELLED, TIMED_OUT, STOPPED = (
    "STARTED", "PENDING", "READY", "SUCCEEDED", "FAILED", "CANCELLED", "TIMED_OUT", "STOPPED")
TYPES = frozenset({EXECUTION, CONTEXT, STEP, WAIT, CALLBACK, CHAINED_INVOKE})
ACTIONS = frozenset({START, SUCCEED, FAIL, RETRY, CANCEL})
STATUSES = frozenset({STARTED, PENDING, READY, SUCCEEDED, FAILED, CANCELLED, TIMED_OUT, STOPPED})
TERMINAL = frozenset({SUCCEEDED, FAILED, CANCELLED, TIMED_OUT, STOPPED})


class SubType:
    STEP = "Step"
    WAIT = "Wait"
    CALLBACK = "Callback"
    CHAINED_INVOKE = "ChainedInvoke"
    RUN_IN_CHILD_CONTEXT = "RunInChildContext"
    MAP = "Map"
    MAP_ITERATION = "MapIteration"
    PARALLEL = "Parallel"
    PARALLEL_BRANCH = "ParallelBranch"
    WAIT_FOR_CALLBACK = "WaitForCallback"
    WAIT_FOR_CONDITION = "WaitForCondition"


# Limits of the service, checked before sending.
MAX_ID_LEN = 64
MAX_NAME_LEN = 256
MAX_PAYLOAD_BYTES = 6 * 1024 * 1024
MAX_BATCH_UPDATES = 250
MAX_BATCH_BYTES = 750 * 1000
MAX_CALLBACK_RESULT_BYTES = 256 * 1024
MAX_CONTEXT_RESULT_BYTES = 256 * 1024
MAX_EXECUTION_RESULT_BYTES = 6 * 1024 * 1024 - 50
MAX_DELAY_SECONDS = 366 * 24 * 3600

_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
_NAME_RE = re.compile(r"[ -~]{1,256}")


def operation_id(parent_id: str | None, counter: int) -> str:
    """Id of the ``counter``-th (1-based) operation of a context; same as the official SDK."""
    raw = f"{parent_id}-{counter}" if parent_id else str(counter)
    return _blake2b(raw.encode()).hexdigest()[:64]


def branch_id(parent_id: str, index: int) -> str:
    """Id of map/parallel branch ``index`` (0-based) of the batch context ``parent_id``."""
    return _blake2b(f"{parent_id}-{index}".encode()).hexdigest()[:64]


def validate_name(name: str | None) -> str | None:
    if name is None:
        return None
    if not isinstance(name, str):
        raise ValidationError(f"an operation name must be a str, got {type(name).__name__}")
    if _NAME_RE.fullmatch(name) is None:
        shown = name if len(name) <= 60 else name[:57] + "..."
        raise ValidationError(
            f"operation name {shown!r} is invalid: names are 1 to {MAX_NAME_LEN} printable ASCII "
            f"characters (got {len(name)} characters); shorten it or drop non-ASCII characters"
        )
    return name


def validate_update(update: dict[str, Any], shape_checked: bool = False) -> int:
    """Check one update against the service's limits; returns its approximate size in bytes.

    Text UTF-8 cannot carry (lone surrogates) in ``Payload`` and ``Error`` is replaced in
    ``update`` itself (``errors.utf8_safe``), so every store and the service accept it.

    ``shape_checked``: the caller built the update from a derived id, a known Type/Action and an
    already validated name (DurableContext does), so only the payload size is left to check.
    """
    op_id = update.get("Id")
    if not shape_checked:
        if not isinstance(op_id, str) or _ID_RE.fullmatch(op_id) is None:
            raise ValidationError(f"operation id {op_id!r} must be 1-64 characters of [A-Za-z0-9_-]")
        if update.get("Type") not in TYPES:
            raise ValidationError(f"operation {op_id}: unknown Type {update.get('Type')!r}")
        if update.get("Action") not in ACTIONS:
            raise ValidationError(f"operation {op_id}: unknown Action {update.get('Action')!r}")
        validate_name(update.get("Name"))
    size = 200 + len(update.get("Name") or "")
    payload = update.get("Payload")
    if isinstance(payload, str):  # other types are the service rules' to refuse, with their message
        if payload.isascii():
            nbytes = len(payload)
        else:
            payload = update["Payload"] = utf8_safe(payload)
            nbytes = len(payload.encode("utf-8"))
        if nbytes > MAX_PAYLOAD_BYTES:
            raise ValidationError(
                f"operation {op_id} ({update.get('Name') or update['Type']}): payload of {nbytes} bytes "
                f"exceeds the service limit of {MAX_PAYLOAD_BYTES} bytes; return a smaller value "
                "(store large data elsewhere and return a reference)"
            )
        size += nbytes
    err = update.get("Error")
    if isinstance(err, dict):
        err = update["Error"] = utf8_safe_error(err)
        size += len(json.dumps(err))
    return size


def to_epoch_ms(value: Any) -> int | None:
    """Epoch milliseconds from an int (already ms), a float/ISO string, or a datetime."""
    if value is None:
        return None
    if isinstance(value, _dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=_dt.timezone.utc)
        return int(value.timestamp() * 1000)
    if isinstance(value, (int, float)):
        return int(value)
    if isinstance(value, str):
        return to_epoch_ms(_dt.datetime.fromisoformat(value.replace("Z", "+00:00")))
    raise ValidationError(f"unsupported timestamp {value!r}")


def ms_to_datetime(ms: int) -> _dt.datetime:
    return _dt.datetime.fromtimestamp(ms / 1000, tz=_dt.timezone.utc)
