"""``ctx.wait_for_condition()``: poll a check durably until the wait strategy stops.

One STEP operation (SubType WaitForCondition) carries the whole poll loop. Each poll
is one invocation's work: START (again from READY, so the service records a
StepStarted per poll), run ``check(state, check_ctx)``, ask
``wait_strategy(new_state, attempt)``; then either RETRY with Payload=state and
NextAttemptDelaySeconds (the service records StepSucceeded with RetryDetails, and
re-invokes once the delay is over) and suspend, or SUCCEED with the final state.
An error in the check or the strategy (including ``create_wait_strategy`` running
out of attempts) is FAIL and raises WaitForConditionError; there is no retry of
check errors.
"""
from __future__ import annotations

from typing import Any, Callable, Optional

from .. import wire
from ..config import WaitForConditionConfig, WaitForConditionDecision, expect
from ..errors import ValidationError, WaitForConditionError, error_object
from ..serdes import as_replayed, deserialize_value, serialize_value
from .scope import AWAIT, DEFER, QUEUE, OperationScope, callable_name, raised_as_itself
from .step import StepContext, next_step_attempt

__all__ = ["wait_for_condition"]


def wait_for_condition(scope: OperationScope, check: Callable[[Any, Any], Any], config: WaitForConditionConfig,
                       name: Optional[str] = None) -> Any:
    """Poll ``check`` until ``config.wait_strategy`` says stop; returns the final state."""
    if not callable(check):
        raise ValidationError(f"wait_for_condition needs a callable check(state, check_ctx), got "
                              f"{type(check).__name__}")
    if config is None:
        raise ValidationError("wait_for_condition needs config=ds.WaitForConditionConfig(wait_strategy=..., "
                              "initial_state=...)")
    config = expect(config, WaitForConditionConfig, "wait_for_condition")
    if name is None:
        name = callable_name(check)
    op = scope.begin(wire.STEP, wire.SubType.WAIT_FOR_CONDITION, name, f"ctx.wait_for_condition({name!r})")
    serdes = config.serdes or scope.serdes
    sctx = scope.serdes_ctx(op.id, op.name)
    label = repr(name) if name else op.id
    attempt, state, send_start = 1, config.initial_state, True
    if op.record is not None:
        details = op.details("StepDetails")
        if op.status == wire.SUCCEEDED:
            return deserialize_value(serdes, details.get("Result"), sctx)
        attempt, send_start = next_step_attempt(scope, op, WaitForConditionError, f"wait_for_condition {label}")
        if "Result" in details and details["Result"] is not None:
            state = deserialize_value(serdes, details["Result"], sctx)  # the state the last poll returned
    if send_start:
        scope.checkpoint(op, wire.START, QUEUE)
    check_ctx = StepContext(op.id, name, attempt, scope.arn)
    try:
        new_state = scope.run_step_body(op, check, state, check_ctx, attempt=attempt)
        decision = config.wait_strategy(new_state, attempt)
        if not isinstance(decision, WaitForConditionDecision):
            raise ValidationError(
                f"the wait strategy of wait_for_condition {label} returned {type(decision).__name__}; it must "
                "return WaitForConditionDecision.continue_waiting(delay) or .stop_polling()")
        if decision.should_continue and not 1 <= decision.delay_seconds <= wire.MAX_DELAY_SECONDS:
            raise ValidationError(f"wait_for_condition {label}: delay {decision.delay_seconds!r} s is outside "
                                  "1 s .. 366 days; use WaitForConditionDecision.continue_waiting(delay)")
        payload = serialize_value(serdes, new_state, sctx)
    except Exception as exc:  # noqa: BLE001 - no retry of check errors: the operation fails
        err = error_object(exc)
        scope.checkpoint(op, wire.FAIL, DEFER, Error=err)
        if raised_as_itself(exc):
            raise
        raise WaitForConditionError.from_error_object(err) from exc
    if not decision.should_continue:
        scope.checkpoint(op, wire.SUCCEED, DEFER, Payload=payload)
        return as_replayed(serdes, new_state, payload, sctx)
    scope.checkpoint(op, wire.RETRY, AWAIT, Payload=payload,
                     StepOptions={"NextAttemptDelaySeconds": decision.delay_seconds})
    raise scope.suspend(f"wait_for_condition {label} polls again in {decision.delay_seconds} s")

