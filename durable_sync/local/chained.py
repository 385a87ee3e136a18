"""Chained invoke: an execution's CHAINED_INVOKE operation calling another registered function.

Once the operation's START is recorded, an ``invoke`` timer (due at once) starts the target outside
every lock. A durable target runs as an execution of its own and settles the caller's operation when it
ends (``LocalEngine._complete`` follows the link); a plain ``(event, context)`` function runs inline and
settles it with its return value or error.
"""
from __future__ import annotations

import json
import uuid
from typing import TYPE_CHECKING, Any, Callable, Optional

from .. import wire
from . import foreign, scheduler
from . import history as h
from .commit import commit, service_change
from .runner import LocalLambdaContext
from .service import RUNNING, Execution, ServiceError

if TYPE_CHECKING:
    from .engine import LocalEngine

# How a chained invoke ends when its target execution ends (its history event: durable_sync.events).
_INVOKE_END = {"FAILED": wire.FAILED, "TIMED_OUT": wire.TIMED_OUT, "STOPPED": wire.STOPPED}


def resolve_function(engine: "LocalEngine", function_name: str) -> tuple[str, Optional[Callable]]:
    """The registered name and handler for a FunctionName (a name, name:qualifier or function ARN)."""
    with engine._lock:
        if function_name in engine._functions:
            return function_name, engine._functions[function_name]
        name = wire.function_name_of(function_name) or function_name
        return name, engine._functions.get(name)


def child_name(ex: Execution, op_id: str) -> str:
    """The name of the execution a chained invoke starts: one per caller and operation, so that a restarted
    engine attaches to it instead of starting it twice."""
    return f"invoke-{ex.exec_op_id}-{op_id}"


def invoke_target(engine: "LocalEngine", function_name: str, ex: Execution, op_id: str) -> tuple:
    """When a CHAINED_INVOKE START is applied: (the ARN its durable target will run as, that execution's
    id), or (None, None) when the function is unknown or not durable. The ChainedInvokeStarted event
    announces the ARN; ``launch_invoke`` starts the target with that id."""
    name, target = resolve_function(engine, function_name)
    if target is None or not foreign.is_durable(target):
        return None, None
    with engine._lock:
        existing = engine._by_name.get((name, child_name(ex, op_id)))  # started before: attached to
    if existing is not None:
        return existing, wire.parse_execution_arn(existing).execution_id
    execution_id = uuid.uuid4().hex
    return wire.execution_arn(name, child_name(ex, op_id), execution_id), execution_id


def launch_invoke(engine: "LocalEngine", ex: Execution, op_id: str) -> None:
    """Start a chained invoke's target (called without locks, once the START is recorded).

    A durable target (``foreign.is_durable``: durable_sync's or the official SDK's) runs as its own
    execution (``child_name``), with the id its ChainedInvokeStarted event announced; it completes the
    operation when it ends. A plain ``(event, context) -> value``
    function runs directly. An unknown function fails the operation at once.
    """
    with ex.lock:
        op = ex.ops.get(op_id)
        if ex.status != RUNNING or op is None or op["Type"] != wire.CHAINED_INVOKE or op["Status"] != wire.STARTED:
            return
        spec = dict(op.get("_invoke") or {})
    function_name = spec.get("FunctionName") or ""
    name, target = resolve_function(engine, function_name)
    if target is None:
        with engine._lock:
            known = ", ".join(sorted(engine._functions)) or "none"
        settle_invoke(engine, ex.arn, op_id, "FAILED", error={
            "ErrorType": "ResourceNotFoundException",
            "ErrorMessage": f"Function not found: {function_name!r} is not registered with the local engine "
                            f"(registered: {known}); pass LocalEngine(functions={{name: handler}}) or call "
                            "engine.register_function(name, handler)"})
        scheduler.after_change(engine)
        return
    from ..serdes import decode_plain_json
    from ..errors import SerDesError
    try:
        event = decode_plain_json(spec.get("Payload"), f"the payload of the chained invoke of {function_name!r}")
    except SerDesError as exc:
        settle_invoke(engine, ex.arn, op_id, "FAILED", error={"ErrorType": "InvalidRequestContentException",
                                                              "ErrorMessage": str(exc)})
        scheduler.after_change(engine)
        return
    if foreign.is_durable(target):
        start_durable_target(engine, ex, op_id, name, target, event, spec.get("ExecutionId"))
    else:
        run_plain_target(engine, ex, op_id, name, target, event)
    scheduler.after_change(engine)


def start_durable_target(engine: "LocalEngine", ex: Execution, op_id: str, name: str, target: Callable,
                         event: Any, execution_id: Optional[str] = None) -> None:
    """Start (or attach to) the execution of a durable target; settle at once if it has ended already."""
    key = (name, child_name(ex, op_id))
    with engine._lock:
        engine._invoke_links[key] = (ex.arn, op_id)  # before start(): the target may end inside it
    try:
        child_arn = engine.start(target, input=event, name=key[1], function_name=name, execution_id=execution_id)
    except ServiceError as exc:
        with engine._lock:
            engine._invoke_links.pop(key, None)
        settle_invoke(engine, ex.arn, op_id, "FAILED", error={"ErrorType": exc.code, "ErrorMessage": exc.message})
        return
    child = engine._executions.get(child_arn)
    if child is not None and child.status != RUNNING:  # it ended already (e.g. before a restart)
        with engine._lock:
            engine._invoke_links.pop(key, None)
        with child.lock:
            status, result, error = child.status, child.result, child.error
        settle_invoke(engine, ex.arn, op_id, status, result, error)


def run_plain_target(engine: "LocalEngine", ex: Execution, op_id: str, name: str, target: Callable,
                     event: Any) -> None:
    """Call a plain ``(event, context)`` function and settle the operation with what it returned or raised."""
    lambda_ctx = LocalLambdaContext(None, name, engine.clock.now_ms() + wire.MAX_INVOCATION_SECONDS * 1000, engine.clock)
    try:
        value = target(event, lambda_ctx)
    except Exception as exc:  # noqa: BLE001 - the target's failure, as Lambda reports it
        settle_invoke(engine, ex.arn, op_id, "FAILED", error={"ErrorType": type(exc).__name__,
                                                              "ErrorMessage": str(exc)})
        return
    try:
        text = json.dumps(value)
    except (TypeError, ValueError) as exc:
        settle_invoke(engine, ex.arn, op_id, "FAILED", error={
            "ErrorType": "Runtime.InvalidOutput",
            "ErrorMessage": f"function {name!r} returned a {type(value).__name__}, which is not JSON: {exc}"})
        return
    settle_invoke(engine, ex.arn, op_id, "SUCCEEDED", result=text)


def settle_invoke(engine: "LocalEngine", arn: str, op_id: str, status: str, result: Optional[str] = None,
                  error: Optional[dict] = None) -> None:
    """Complete a chained invoke with its target's outcome (idempotent: only a STARTED one)."""
    ex = engine._executions.get(arn)
    if ex is None:
        return
    with ex.lock:
        op = ex.ops.get(op_id)
        if ex.status != RUNNING or op is None or op["Type"] != wire.CHAINED_INVOKE or op["Status"] != wire.STARTED:
            return
        now = engine.clock.now_ms()
        if status == "SUCCEEDED":
            text = "null" if result is None else result
            new = {**op, "Status": wire.SUCCEEDED, "EndTimestamp": now, "ChainedInvokeDetails": {"Result": text}}
            event = h.change_event(new, now, {"Result": h.result(text)})
        else:
            op_status = _INVOKE_END.get(status, wire.FAILED)
            err = error or {"ErrorType": f"Execution.{status.title()}",
                            "ErrorMessage": f"the invoked execution ended {status}"}
            new = {**op, "Status": op_status, "EndTimestamp": now, "ChainedInvokeDetails": {"Error": err}}
            event = h.change_event(new, now, {"Error": h.error(err)})
        commit(engine, ex, service_change(new, event))
