"""The public wire shapes of the durable execution service.

Names and limits of the Lambda durable execution API (botocore model ``lambda``),
operation ids, and the client-side validation of updates. The SDK and the local
engine both use this module; it is the only SDK module the engine imports.
"""
from __future__ import annotations

import datetime as _dt
import json
import re
from typing import Any, NamedTuple, Optional

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
#: The member of an operation record that holds its type's details (results, errors, timestamps).
DETAILS_KEY = {STEP: "StepDetails", WAIT: "WaitDetails", CONTEXT: "ContextDetails", CALLBACK: "CallbackDetails",
               CHAINED_INVOKE: "ChainedInvokeDetails", EXECUTION: "ExecutionDetails"}
# An execution's status: RUNNING until it ends (a paused execution is RUNNING, reported as PAUSING / PAUSED).
RUNNING = "RUNNING"
EXECUTION_TERMINAL = frozenset({SUCCEEDED, FAILED, TIMED_OUT, STOPPED})
EXECUTION_STATUSES = (RUNNING, SUCCEEDED, FAILED, TIMED_OUT, STOPPED)


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
MAX_INVOCATION_SECONDS = 15 * 60  # the longest one Lambda invocation may run

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


# -- ARNs ---------------------------------------------------------------------------------------------
#: The region, account and version in the ARNs of the local engine's functions and executions.
LOCAL_REGION = "us-east-1"
LOCAL_ACCOUNT = "000000000000"
LATEST = "$LATEST"
_EXECUTION_ARN_RE = re.compile(r"^(?P<function_arn>arn:[^:/]+:lambda:[^:/]+:[^:/]+:function:(?P<function>[^:/]+)"
                               r"(?::(?P<qualifier>[^/]+))?)/durable-execution/(?P<name>.+)/(?P<id>[^/]+)$")
# Lambda's FunctionName: a name, a partial ARN (ACCOUNT:function:NAME) or an ARN, with an optional qualifier.
_FUNCTION_RE = re.compile(r"^(?:arn:[^:]*:lambda:)?(?:[a-z]{2}[a-z0-9-]*-\d:)?(?:\d{12}:)?(?:function:)?"
                          r"(?P<name>[A-Za-z0-9_.-]+)(?::(?P<qualifier>[A-Za-z0-9_$.-]+))?$")


class ExecutionArn(NamedTuple):
    """The parts of a durable execution's ARN
    (``arn:aws:lambda:REGION:ACCOUNT:function:NAME[:QUALIFIER]/durable-execution/EXECUTION/ID``)."""

    function_arn: str  # with its qualifier, as FunctionArn reports it
    function_name: str
    qualifier: Optional[str]
    name: str  # the execution's name (DurableExecutionName)
    execution_id: str


def function_arn(function_name: str, qualifier: Optional[str] = None, *, region: str = LOCAL_REGION,
                 account: str = LOCAL_ACCOUNT) -> str:
    """The ARN of a function (of the local engine by default), with ``qualifier`` if given."""
    return f"arn:aws:lambda:{region}:{account}:function:{function_name}" + (f":{qualifier}" if qualifier else "")


def execution_arn(function_name: str, name: str, execution_id: str, qualifier: str = LATEST) -> str:
    """The ARN of execution ``name`` (id ``execution_id``) of a local function."""
    return f"{function_arn(function_name, qualifier)}/durable-execution/{name}/{execution_id}"


def parse_execution_arn(arn: Any) -> Optional[ExecutionArn]:
    """The parts of a durable execution ARN (the service's or the local engine's); None for anything else."""
    m = _EXECUTION_ARN_RE.match(arn) if isinstance(arn, str) else None
    if m is None:
        return None
    return ExecutionArn(m["function_arn"], m["function"], m["qualifier"], m["name"], m["id"])


def function_name_of(value: Any) -> Optional[str]:
    """The bare function name in a function name, partial ARN or ARN (qualifier or not); None when ``value``
    is none of those."""
    m = _FUNCTION_RE.match(value) if isinstance(value, str) else None
    return m["name"] if m else None
