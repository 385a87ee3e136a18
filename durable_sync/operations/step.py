"""``ctx.step``: run a body once per attempt, retry durably, checkpoint the result.

A STEP (SubType Step). Live: START (awaited only for at-most-once steps), the body
runs on the caller's thread (``OperationScope.run_step_body``), then SUCCEED with the
serialized result, or the retry strategy decides RETRY (with NextAttemptDelaySeconds;
the invocation suspends) or FAIL (``StepError``). SUCCEED and FAIL are not awaited: they
are saved before anything could act on them (SPEC §3), and a SUCCEED in
``CheckpointMode.PIPELINED`` (per handler, or ``StepConfig.checkpoint_mode``) only with the
next awaited update or at the end of the invocation. Replay: SUCCEEDED returns the
stored result, FAILED raises ``StepError``, a retry not yet due suspends, READY runs
the next attempt, STARTED re-runs the attempt whose invocation ended (an at-most-once
step fails with ``StepInterruptedError`` instead).
"""
from __future__ import annotations

from typing import Any, Callable, Optional

from .. import wire
from ..config import CheckpointMode, StepConfig, StepSemantics, expect
from ..errors import StepError, StepInterruptedError, ValidationError, error_object
from ..logs import USER_LOGGER, DurableLogger
from ..serdes import as_replayed, deserialize_value, serialize_value
from .scope import AWAIT, DEFER, QUEUE, Op, OperationScope, callable_name, raised_as_itself, recorded_error

__all__ = ["StepContext", "step", "parse_step_call", "run_step", "next_step_attempt", "bad_callable"]

_DEFAULT_CONFIG = StepConfig()


class StepContext:
    """What a step body receives: its logger, attempt (1-based), operation id and name."""

    __slots__ = ("operation_id", "name", "attempt", "_arn", "_logger")

    def __init__(self, operation_id: str, name: Optional[str], attempt: int, arn: str):
        self.operation_id = operation_id
        self.name = name
        self.attempt = attempt
        self._arn = arn
        self._logger: Optional[DurableLogger] = None

    @property
    def logger(self) -> DurableLogger:
        if self._logger is None:
            self._logger = DurableLogger(USER_LOGGER, {
                "execution_arn": self._arn, "operation_id": self.operation_id,
                "operation_name": self.name, "attempt": self.attempt})
        return self._logger


def bad_callable(op: str, value: Any) -> ValidationError:
    return ValidationError(f"{op} needs a callable, got {type(value).__name__}: pass a function or lambda "
                           "taking the context argument")


def parse_step_call(fn_or_name: Any, fn: Any, name: Optional[str],
                    config: Optional[StepConfig]) -> tuple[Optional[str], Callable[..., Any], StepConfig]:
    """``step(fn, name=None, config=None)`` or ``step("name", fn, config)`` -> (name, fn, config)."""
    if isinstance(fn_or_name, str):
        if fn is None or not callable(fn):
            raise bad_callable("step", fn)
        if name is not None and not isinstance(name, str) and config is None:
            name, config = None, name  # step("name", fn, config): the config is the third positional argument
        if name is not None and name != fn_or_name:
            raise ValidationError(f"step got two names: {fn_or_name!r} and name={name!r}")
        name = fn_or_name
    else:
        if not callable(fn_or_name):
            raise bad_callable("step", fn_or_name)
        if fn is not None:
            if isinstance(fn, StepConfig) and config is None:
                config = fn
            else:
                raise ValidationError("step(fn, ...) takes name= and config= as keywords")
        fn = fn_or_name
        if name is None:
            name = callable_name(fn)
    return name, fn, expect(config, StepConfig, "step", _DEFAULT_CONFIG)


def step(scope: OperationScope, fn_or_name: Any, fn: Any = None, name: Optional[str] = None,
         config: Optional[StepConfig] = None) -> Any:
    """``ctx.step``: begin the operation, then run (or replay) it."""
    name, fn, cfg = parse_step_call(fn_or_name, fn, name, config)
    op = scope.begin(wire.STEP, wire.SubType.STEP, name, f"ctx.step({name!r})")
    return run_step(scope, op, fn, cfg)


def next_step_attempt(scope: OperationScope, op: Op, error_cls: type, what: str) -> tuple[int, bool]:
    """The attempt to run for a STEP record that did not succeed: ``(attempt, send_start)``.

    A FAILED record raises its error as ``error_cls``; a retry not yet due (PENDING) suspends;
    READY is the next attempt (START it); STARTED is an attempt whose invocation ended (run it
    again without a new START). Shared by steps and wait_for_condition polls.
    """
    status = op.status
    details = op.details("StepDetails")
    if status == wire.FAILED:
        raise recorded_error(error_cls, details.get("Error"))
    if status == wire.PENDING:
        raise scope.suspend(f"{what} waits for its next attempt")
    recorded = int(details.get("Attempt") or 1)
    if status == wire.READY:
        return recorded + 1, True
    if status == wire.STARTED:
        return recorded, False
    raise ValidationError(f"{what} has unexpected status {status!r} in the execution state")


def run_step(scope: OperationScope, op: Op, fn: Callable[..., Any], cfg: StepConfig) -> Any:
    """Replay the step ``op`` from its record, or run its next attempt and checkpoint the outcome."""
    at_most_once = cfg.step_semantics is StepSemantics.AT_MOST_ONCE_PER_RETRY
    rt = scope.rt
    serdes = cfg.serdes or rt.serdes
    attempt, send_start = 1, True
    if op.record is not None:
        if op.record["Status"] == wire.SUCCEEDED:
            return deserialize_value(serdes, op.details("StepDetails").get("Result"), scope.serdes_ctx(op.id, op.name))
        attempt, send_start = next_step_attempt(scope, op, StepError, f"step {op.label}")
        if not send_start and at_most_once:
            interrupted = StepInterruptedError(
                f"step {op.label} (attempt {attempt}) started but did not finish: the invocation "
                "running it ended (crash or timeout); at-most-once steps are not re-run blindly",
                error_type="StepInterruptedError")
            return _failed(scope, op, cfg, interrupted, attempt)
    if send_start:
        scope.checkpoint(op, wire.START, AWAIT if at_most_once else QUEUE)
    step_ctx = StepContext(op.id, op.name, attempt, rt.arn)
    sctx = scope.serdes_ctx(op.id, op.name)
    try:
        value = scope.run_step_body(op, fn, step_ctx, attempt=attempt)
        payload = serialize_value(serdes, value, sctx)
    except Exception as exc:  # noqa: BLE001 - the retry strategy decides (programming errors: no retry)
        if raised_as_itself(exc):
            scope.checkpoint(op, wire.FAIL, DEFER, Error=error_object(exc))
            raise
        return _failed(scope, op, cfg, exc, attempt)
    # Saved before anything could act on the result (the next step body, ...), not before returning;
    # in PIPELINED mode it only rides with the next awaited update or the end of the invocation.
    mode = cfg.checkpoint_mode or rt.checkpoint_mode
    pipelined = mode is CheckpointMode.PIPELINED and not at_most_once
    scope.checkpoint(op, wire.SUCCEED, QUEUE if pipelined else DEFER, Payload=payload)  # too large: SerDesError
    return as_replayed(serdes, value, payload, sctx)


def _failed(scope: OperationScope, op: Op, cfg: StepConfig, exc: Exception, attempt: int) -> Any:
    from ..retry import resolve_retry_strategy  # only when a step fails (cold start)

    err = error_object(exc)
    try:
        decision = resolve_retry_strategy(cfg.retry_strategy)(exc, attempt)
    except Exception as broken:  # noqa: BLE001 - the step fails for good, with the strategy's error
        err = error_object(broken)
        err["ErrorMessage"] = (f"the retry strategy of step {op.label!r} raised {err['ErrorType']}: "
                               f"{err['ErrorMessage']} (deciding about attempt {attempt}, which failed with "
                               f"{type(exc).__name__})")[:8192]
        scope.checkpoint(op, wire.FAIL, DEFER, Error=err)
        raise StepError.from_error_object(err) from broken
    if decision.should_retry:
        scope.checkpoint(op, wire.RETRY, AWAIT, Error=err,
                         StepOptions={"NextAttemptDelaySeconds": decision.delay_seconds})
        raise scope.suspend(f"step {op.label} retries in {decision.delay_seconds} s") from None
    scope.checkpoint(op, wire.FAIL, DEFER, Error=err)
    raise StepError.from_error_object(err) from exc
