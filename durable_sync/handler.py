"""``@durable_handler``: turns a blocking ``fn(event, ctx)`` into a Lambda handler.

It reads the durable invocation envelope, builds the replay state, runs the user
function with a root ``DurableContext`` and answers SUCCEEDED / FAILED / PENDING
exactly as the service expects.
"""
from __future__ import annotations

import functools
import json
from typing import Any, Callable, Optional

from . import wire
from .checkpoint import AWAIT, CheckpointClient, Flusher, read_pages
from .config import CheckpointMode, check_checkpoint_mode
from .context import DurableContext
from .errors import (CheckpointError, DurableError, ExecutionEnvelopeError, SerDesError, SuspendExecution,
                     ValidationError, error_object)
from .instrumentation.dispatch import open_invocation
from .instrumentation.registry import explicit_sources
from .serdes import decode_plain_json
from .state import ExecutionState, Runtime


def durable_handler(fn: Optional[Callable[[Any, DurableContext], Any]] = None, *,
                    client: Optional[CheckpointClient] = None, serdes: Any = None, plugins: Any = None,
                    checkpoint_mode: Optional[CheckpointMode] = None) -> Any:
    """Decorate ``fn(event, ctx)``; the result is a Lambda handler ``(event, lambda_context) -> dict``.
    ``plugins``: instrumentation plugins (instances or per-invocation factories; docs/observability.md).
    ``checkpoint_mode=CheckpointMode.PIPELINED``: the handler's at-least-once steps do not wait
    for their results to be saved (SPEC §3; docs/performance.md says what a crash costs then).
    """
    check_checkpoint_mode("durable_handler", "checkpoint_mode", checkpoint_mode)
    if fn is None:
        return lambda f: durable_handler(f, client=client, serdes=serdes, plugins=plugins,
                                         checkpoint_mode=checkpoint_mode)
    sources = explicit_sources(plugins)  # checked now: a wrong entry fails at import, not per invocation

    @functools.wraps(fn)
    def lambda_handler(event: Any, lambda_context: Any = None) -> dict[str, Any]:
        return run_invocation(fn, event, lambda_context, client, serdes, sources, checkpoint_mode)

    lambda_handler.__durable_function__ = fn  # type: ignore[attr-defined]
    return lambda_handler


def _resolve_client(client: Optional[CheckpointClient], lambda_context: Any) -> CheckpointClient:
    if client is not None:
        return client
    local = getattr(lambda_context, "durable_client", None)
    if local is not None:
        return local
    from .aws import default_client  # boto3 only when running against AWS
    return default_client()


def _parse_envelope(event: Any) -> tuple[str, str, list[dict[str, Any]], Optional[str]]:
    if not isinstance(event, dict) or "DurableExecutionArn" not in event:
        raise ExecutionEnvelopeError(
            "this handler was invoked without a durable execution envelope (DurableExecutionArn, "
            "CheckpointToken, InitialExecutionState). Enable durable execution on the Lambda function, or run "
            "it locally with `durable-sync run FILE` / durable_sync.local.LocalEngine.")
    arn, token = event.get("DurableExecutionArn"), event.get("CheckpointToken")
    if not isinstance(arn, str) or not arn:
        raise ExecutionEnvelopeError("DurableExecutionArn must be a non-empty string")
    if not isinstance(token, str) or not token:
        raise ExecutionEnvelopeError("CheckpointToken must be a non-empty string")
    initial = event.get("InitialExecutionState") or {}
    if not isinstance(initial, dict):
        raise ExecutionEnvelopeError("InitialExecutionState must be an object")
    ops = _checked_operations(initial.get("Operations"), "InitialExecutionState.Operations")
    return arn, token, ops, initial.get("NextMarker")


def _checked_operations(ops: Any, where: str) -> list[dict[str, Any]]:
    """Operations from the envelope or a GetDurableExecutionState page, refusing shapes we do not know."""
    ops = ops or []
    if not isinstance(ops, list) or not all(isinstance(o, dict) and isinstance(o.get("Id"), str) for o in ops):
        raise ExecutionEnvelopeError(f"{where} must be a list of operations with an Id")
    for op in ops:
        if op.get("Type") not in wire.TYPES or op.get("Status") not in wire.STATUSES:
            raise ExecutionEnvelopeError(
                f"operation {op.get('Id')} in the execution state has unknown Type {op.get('Type')!r} or Status "
                f"{op.get('Status')!r}; upgrade durable_sync to a version that knows them")
    return ops


def _load_operations(client: CheckpointClient, arn: str, token: str, ops: list, marker: Optional[str]) -> list:
    """The envelope's operations and those of the pages after it."""
    if not marker:
        return ops
    return ops + _checked_operations(read_pages(client, arn, token, marker), "GetDurableExecutionState Operations")


def _user_input(state: ExecutionState) -> Any:
    op = state.execution_op
    payload = ((op or {}).get("ExecutionDetails") or {}).get("InputPayload")
    if payload is None or payload == "":
        return {}
    return decode_plain_json(payload, "the execution input")


def _failed(exc: BaseException) -> dict[str, Any]:
    return {"Status": "FAILED", "Error": error_object(exc)}


def run_invocation(fn: Callable[[Any, DurableContext], Any], event: Any, lambda_context: Any,
                   client: Optional[CheckpointClient], serdes: Any, plugins: Any = (),
                   checkpoint_mode: Optional[CheckpointMode] = None) -> dict[str, Any]:
    """One invocation of a durable function, from envelope to output (reported to ``plugins``)."""
    arn, token, ops, marker = _parse_envelope(event)
    client = _resolve_client(client, lambda_context)
    ops = _load_operations(client, arn, token, ops, marker)
    state = ExecutionState(arn, ops)
    flusher = Flusher(client, arn, token, state)
    runtime = Runtime(arn, state, flusher, serdes, context_factory=DurableContext, checkpoint_mode=checkpoint_mode)
    runtime.operation_hook = getattr(lambda_context, "durable_operation_hook", None)
    instr = runtime.instrumentation = open_invocation(plugins, arn, lambda_context, ops, event, flusher)
    if instr is not None:
        return instr.run_invocation(lambda: _outcome(fn, runtime), state.operations)
    return _outcome(fn, runtime)


def _outcome(fn: Callable[[Any, DurableContext], Any], runtime: Runtime) -> dict[str, Any]:
    """Run the user function and persist everything: the invocation's output."""
    state, flusher = runtime.state, runtime.flusher
    try:
        try:
            user_event = _user_input(state)
            result = fn(user_event, DurableContext.root(runtime))
        except SuspendExecution:
            output: dict[str, Any] = {"Status": "PENDING"}
        except Exception as exc:  # noqa: BLE001 - the execution fails with this error
            output = _failed(exc)
        else:
            output = _succeeded(result, runtime)
        if runtime.suspended and output["Status"] != "PENDING":
            output = _failed(DurableError(
                "the handler caught durable_sync's SuspendExecution (e.g. with `except BaseException`) and "
                "went on; the execution would be wrong. Re-raise BaseException subclasses you do not handle."))
        flusher.drain()
    except CheckpointError:
        pass  # handled below from flusher.error
    finally:
        flusher.close()
    if flusher.error is not None:
        err = flusher.error
        if isinstance(err, CheckpointError) and err.retryable:
            raise err  # Lambda retries the invocation
        return _failed(err)
    return output


def _succeeded(result: Any, runtime: Runtime) -> dict[str, Any]:
    try:
        text = json.dumps(result)
    except (TypeError, ValueError) as exc:
        return _failed(SerDesError(
            f"the handler returned a {type(result).__name__}, which is not JSON: a Lambda result must be JSON "
            f"data ({exc}). Return a dict/list/str/number, or convert the value first."))
    nbytes = len(text.encode("utf-8"))
    if nbytes > wire.MAX_EXECUTION_RESULT_BYTES:
        exec_op = runtime.state.execution_op
        op_id = exec_op["Id"] if exec_op else runtime.arn.rsplit("/", 1)[-1]
        try:
            runtime.flusher.enqueue({"Id": op_id, "Type": wire.EXECUTION, "Action": wire.SUCCEED, "Payload": text},
                                    AWAIT)
        except ValidationError as exc:  # over the service's payload limit: fail the execution, do not crash
            return _failed(exc)
        return {"Status": "SUCCEEDED", "Result": ""}
    return {"Status": "SUCCEEDED", "Result": text}
