"""DurableContext: the operations user code calls, and the one replay path they share.

Every operation goes through ``DurableContext._begin``: it numbers the operation
inside its context (ids never depend on thread scheduling), refuses durable
calls made inside a step body, finds the operation's record from earlier
invocations and checks that the code still asks for the same thing. Then the
operation either returns its recorded outcome (replay) or runs and checkpoints.
"""
from __future__ import annotations

import threading
from typing import Any, Callable, Optional

from . import wire
from .config import ChildConfig, StepConfig, StepSemantics, checked_delay
from .errors import (ChildContextError, DurableOperationError, NestedOperationError, NonDeterminismError,
                     SerDesError, StepError, StepInterruptedError, SuspendExecution, error_object)
from .logs import USER_LOGGER, DurableLogger
from .serdes import SerDesContext, deserialize_value, serialize_value

_DEFAULT_STEP_CONFIG = StepConfig()
_DEFAULT_CHILD_CONFIG = ChildConfig()


class Runtime:
    """What all contexts of one invocation share: state, flusher, thread-local step marker."""

    def __init__(self, arn: str, state: Any, flusher: Any, serdes: Any = None):
        self.arn = arn
        self.state = state
        self.flusher = flusher
        self.serdes = serdes
        self.local = threading.local()
        self.suspended = False  # a SuspendExecution was raised in this invocation
        # Testing hook (durable_sync.testing): ``hook(request, record) -> bool`` sees every operation the code
        # asks for (request: Id, ParentId, Position, Type, SubType, Name); True ends the invocation there.
        self.operation_hook: Optional[Callable[[dict, Optional[dict]], bool]] = None

    def suspend(self, reason: str) -> "SuspendExecution":
        self.suspended = True
        return SuspendExecution(reason)


def callable_name(fn: Any) -> Optional[str]:
    """The Name an operation gets from its function: decorated name, else __name__; lambdas get none."""
    name = getattr(fn, "__durable_name__", None)
    if name:
        return name
    name = getattr(fn, "__name__", None)
    if not name or name == "<lambda>":
        return None
    return name


def next_step_attempt(rt: Runtime, op: dict, details: dict, error_cls: type, what: str) -> tuple[int, bool]:
    """The attempt to run for a STEP record that did not succeed: ``(attempt, send_start)``.

    A FAILED record raises its error as ``error_cls``; a retry not yet due (PENDING) suspends;
    READY is the next attempt (START it); STARTED is an attempt whose invocation ended (run it
    again without a new START). Shared by steps and wait_for_condition polls.
    """
    status = op["Status"]
    if status == wire.FAILED:
        raise error_cls.from_error_object(details.get("Error"))
    if status == wire.PENDING:
        raise rt.suspend(f"{what} waits for its next attempt")
    recorded = int(details.get("Attempt") or 1)
    if status == wire.READY:
        return recorded + 1, True
    if status == wire.STARTED:
        return recorded, False
    raise _validation(f"{what} has unexpected status {status!r} in the execution state")


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


def run_body(rt: Runtime, label: str, fn: Callable[..., Any], *args: Any) -> Any:
    """Call a step-like body (a step, a wait_for_condition check) on this thread.

    Durable operations inside it are refused (``rt.local.step``), and the thread does not count
    as running durable code meanwhile: a body may block on I/O, and batching must not wait for it.
    """
    local = rt.local
    local.step = label
    rt.flusher.activity(-1)
    try:
        return fn(*args)
    finally:
        local.step = None
        rt.flusher.activity(1)


class DurableContext:
    """The durable API handed to a handler and to every child context."""

    def __init__(self, runtime: Runtime, context_id: Optional[str] = None, name: Optional[str] = None):
        self._rt = runtime
        self._id = context_id
        self._name = name
        self._counter = 0
        self._lock = threading.Lock()
        self._logger: Optional[DurableLogger] = None
        self._closed_reason: Optional[str] = None  # set while a concurrently() block owns this context
        self.result: Any = None  # the checkpointed result of a `with ctx.child()` block

    # -- small accessors -------------------------------------------------------
    @property
    def execution_arn(self) -> str:
        return self._rt.arn

    @property
    def context_id(self) -> Optional[str]:
        return self._id

    def is_replaying(self) -> bool:
        """True while the code walks through operations that completed in earlier invocations."""
        return self._rt.state.replaying

    @property
    def logger(self) -> DurableLogger:
        if self._logger is None:
            state = self._rt.state
            self._logger = DurableLogger(USER_LOGGER, {
                "execution_arn": self._rt.arn, "operation_id": self._id, "operation_name": self._name},
                replaying=lambda: state.replaying)
        return self._logger

    # -- the shared replay path ---------------------------------------------------
    def _begin(self, op_type: str, subtype: str, name: Optional[str], what: str) -> tuple[str, Optional[dict]]:
        """Allocate the next operation id and find its record; checks nesting and determinism."""
        rt = self._rt
        in_step = getattr(rt.local, "step", None)
        if in_step is not None:
            raise NestedOperationError(
                f"{what} was called inside the body of step {in_step!r}. A step is one atomic operation "
                "and cannot run durable operations (steps, waits, child contexts, ...). Group operations "
                "in a child context with ctx.child() -- `with ctx.child('name') as c:` -- or "
                "ctx.run_in_child_context(fn) instead.")
        if self._closed_reason is not None:
            raise NestedOperationError(self._closed_reason)
        if name is not None:
            wire.validate_name(name)
        with self._lock:
            self._counter += 1
            n = self._counter
        op_id = wire.operation_id(self._id, n)
        op = rt.state.get(op_id)
        hook = rt.operation_hook
        cut = hook is not None and hook({"Id": op_id, "ParentId": self._id, "Position": n, "Type": op_type,
                                          "SubType": subtype, "Name": name}, op)
        if op is None:
            rt.state.replaying = False
            if cut:
                raise rt.suspend(f"{what}: invocation ended by the operation hook")
            return op_id, None
        if op.get("Type") != op_type or op.get("SubType") != subtype or op.get("Name") != name:
            raise NonDeterminismError(
                f"non-deterministic replay at operation #{n} of "
                f"{'context ' + repr(self._name or self._id) if self._id else 'the handler'} (id {op_id}): "
                f"the code now asks for {op_type}/{subtype} named {name!r}, but the execution recorded "
                f"{op.get('Type')}/{op.get('SubType')} named {op.get('Name')!r}. Durable code must call the "
                "same operations in the same order on every invocation; keep the old code path for running "
                "executions or start a new execution.")
        if cut:
            raise rt.suspend(f"{what}: invocation ended by the operation hook")
        if op.get("Status") not in wire.TERMINAL:
            if op_type != wire.CONTEXT:
                rt.state.replaying = False
        else:
            rt.state.visit(op_id)
        return op_id, op

    def _checkpoint(self, op_id: str, op_type: str, subtype: str, name: Optional[str], action: str,
                    wait: bool, **fields: Any) -> None:
        update = {"Id": op_id, "Type": op_type, "SubType": subtype, "Action": action}
        if self._id is not None:
            update["ParentId"] = self._id
        if name is not None:
            update["Name"] = name
        update.update(fields)
        self._rt.flusher.enqueue(update, wait, shape_checked=True)

    def _serdes_ctx(self, op_id: str, name: Optional[str] = None) -> SerDesContext:
        return SerDesContext(op_id, self._rt.arn, name)

    # -- step -------------------------------------------------------------------
    def step(self, fn_or_name: Any, fn: Any = None, name: Optional[str] = None,
             config: Optional[StepConfig] = None) -> Any:
        """Run ``fn(step_ctx)`` once (with retries) and checkpoint its result.

        Call as ``step(fn, name=None, config=None)`` or ``step("name", fn, config)``.
        """
        if isinstance(fn_or_name, str):
            if fn is None or not callable(fn):
                raise _bad_callable("step", fn)
            if name is not None and name != fn_or_name:
                raise _validation(f"step got two names: {fn_or_name!r} and name={name!r}")
            name = fn_or_name
        else:
            if not callable(fn_or_name):
                raise _bad_callable("step", fn_or_name)
            if fn is not None:
                if isinstance(fn, StepConfig) and config is None:
                    config = fn
                else:
                    raise _validation("step(fn, ...) takes name= and config= as keywords")
            fn = fn_or_name
            if name is None:
                name = callable_name(fn)
        cfg = config or _DEFAULT_STEP_CONFIG
        op_id, op = self._begin(wire.STEP, wire.SubType.STEP, name, f"ctx.step({name!r})")
        return self._run_step(op_id, op, name, fn, cfg)

    def _run_step(self, op_id: str, op: Optional[dict], name: Optional[str], fn: Callable, cfg: StepConfig) -> Any:
        rt = self._rt
        at_most_once = cfg.step_semantics is StepSemantics.AT_MOST_ONCE_PER_RETRY
        attempt, send_start = 1, True
        if op is not None:
            details = op.get("StepDetails") or {}
            if op["Status"] == wire.SUCCEEDED:
                return deserialize_value(cfg.serdes or rt.serdes, details.get("Result"), self._serdes_ctx(op_id))
            attempt, send_start = next_step_attempt(rt, op, details, StepError, f"step {name or op_id}")
            if not send_start and at_most_once:
                interrupted = StepInterruptedError(
                    f"step {name or op_id} (attempt {attempt}) started but did not finish: the invocation "
                    "running it ended (crash or timeout); at-most-once steps are not re-run blindly",
                    error_type="StepInterruptedError")
                return self._step_failed(op_id, name, cfg, interrupted, attempt)
        if send_start:
            self._checkpoint(op_id, wire.STEP, wire.SubType.STEP, name, wire.START, wait=at_most_once)
        step_ctx = StepContext(op_id, name, attempt, rt.arn)
        try:
            result = run_body(rt, name or op_id, fn, step_ctx)
        except NestedOperationError as exc:
            # A programming error, not a transient failure: never retried, raised as itself.
            self._checkpoint(op_id, wire.STEP, wire.SubType.STEP, name, wire.FAIL, wait=True,
                             Error=error_object(exc))
            raise
        except Exception as exc:  # noqa: BLE001 - the retry strategy decides
            return self._step_failed(op_id, name, cfg, exc, attempt)
        serdes = cfg.serdes or rt.serdes
        sctx = self._serdes_ctx(op_id, name)
        try:
            payload = serialize_value(serdes, result, sctx)
        except SerDesError as exc:
            self._checkpoint(op_id, wire.STEP, wire.SubType.STEP, name, wire.FAIL, wait=True,
                             Error=error_object(exc))
            raise
        self._checkpoint(op_id, wire.STEP, wire.SubType.STEP, name, wire.SUCCEED, wait=True, Payload=payload)
        return deserialize_value(serdes, payload, sctx)

    def _step_failed(self, op_id: str, name: Optional[str], cfg: StepConfig, exc: Exception, attempt: int) -> Any:
        from .retry import resolve_retry_strategy

        decision = resolve_retry_strategy(cfg.retry_strategy)(exc, attempt)
        err = error_object(exc)
        if decision.should_retry:
            self._checkpoint(op_id, wire.STEP, wire.SubType.STEP, name, wire.RETRY, wait=True, Error=err,
                             StepOptions={"NextAttemptDelaySeconds": decision.delay_seconds})
            raise self._rt.suspend(f"step {name or op_id} retries in {decision.delay_seconds} s") from None
        self._checkpoint(op_id, wire.STEP, wire.SubType.STEP, name, wire.FAIL, wait=True, Error=err)
        raise StepError.from_error_object(err) from exc

    # -- wait ---------------------------------------------------------------------
    def wait(self, duration: Any, name: Optional[str] = None) -> None:
        """Pause the execution durably for ``duration`` (Duration, timedelta or seconds)."""
        seconds = checked_delay(duration, "wait duration")
        op_id, op = self._begin(wire.WAIT, wire.SubType.WAIT, name, f"ctx.wait({name or seconds!r})")
        if op is not None:
            if op["Status"] in wire.TERMINAL:
                return None
            raise self._rt.suspend(f"wait {name or op_id} has not elapsed")
        self._checkpoint(op_id, wire.WAIT, wire.SubType.WAIT, name, wire.START, wait=True,
                         WaitOptions={"WaitSeconds": seconds})
        raise self._rt.suspend(f"wait {name or op_id} started ({seconds} s)")

    # -- child contexts -----------------------------------------------------------------
    def child(self, name: Optional[str] = None, config: Optional[ChildConfig] = None) -> "ChildBlock":
        """``with ctx.child("name") as c:`` groups operations in a child context."""
        return ChildBlock(self, name, config or _DEFAULT_CHILD_CONFIG)

    def run_in_child_context(self, fn: Callable[["DurableContext"], Any], name: Optional[str] = None,
                             config: Optional[ChildConfig] = None) -> Any:
        """Run ``fn(child_ctx)`` as a child context; a completed child returns its stored result."""
        if not callable(fn):
            raise _bad_callable("run_in_child_context", fn)
        if name is None:
            name = callable_name(fn)
        return self._run_child(fn, name, config or _DEFAULT_CHILD_CONFIG, wire.SubType.RUN_IN_CHILD_CONTEXT)

    def _run_child(self, fn: Callable[["DurableContext"], Any], name: Optional[str], cfg: Any, subtype: str,
                   op_id: Optional[str] = None, op: Optional[dict] = None) -> Any:
        """The child-context protocol shared by run_in_child_context, map/parallel branches and friends."""
        rt = self._rt
        if op_id is None:
            op_id, op = self._begin(wire.CONTEXT, subtype, name, f"child context {name!r}")
        serdes = getattr(cfg, "serdes", None) or rt.serdes
        sctx = self._serdes_ctx(op_id, name)
        if op is not None:
            status = op["Status"]
            details = op.get("ContextDetails") or {}
            if status == wire.SUCCEEDED and not details.get("ReplayChildren"):
                return deserialize_value(serdes, details.get("Result"), sctx)
            if status == wire.FAILED:
                raise ChildContextError.from_error_object(details.get("Error"))
        else:
            self._checkpoint(op_id, wire.CONTEXT, subtype, name, wire.START, wait=False)
        completed = op is not None and op["Status"] in wire.TERMINAL
        child = DurableContext(rt, op_id, name)
        try:
            result = fn(child)
        except (SuspendExecution, NonDeterminismError):
            raise  # changed code is not the context's outcome: never recorded, never wrapped
        except Exception as exc:  # noqa: BLE001 - recorded as the context's failure
            err = error_object(exc)
            if not completed:
                self._checkpoint(op_id, wire.CONTEXT, subtype, name, wire.FAIL, wait=True, Error=err)
            raise ChildContextError.from_error_object(err) from exc
        payload = serialize_value(serdes, result, sctx)
        if not completed:
            if _utf8_len(payload) > wire.MAX_CONTEXT_RESULT_BYTES:
                self._checkpoint(op_id, wire.CONTEXT, subtype, name, wire.SUCCEED, wait=True, Payload="",
                                 ContextOptions={"ReplayChildren": True})
            else:
                self._checkpoint(op_id, wire.CONTEXT, subtype, name, wire.SUCCEED, wait=True, Payload=payload)
        return deserialize_value(serdes, payload, sctx)

    # -- map / parallel (durable_sync.batch) -------------------------------------------------
    def parallel(self, branches: Any, name: Optional[str] = None, config: Any = None) -> Any:
        """Run ``branches`` (callables ``fn(ctx)`` or ``ParallelBranch``) on a thread pool; returns a BatchResult."""
        from .batch import run_parallel
        return run_parallel(self, branches, name, config)

    def map(self, items: Any, fn: Callable[..., Any], name: Optional[str] = None, config: Any = None) -> Any:
        """Run ``fn(ctx, item, index, items)`` for every item on a thread pool; returns a BatchResult."""
        from .batch import run_map
        return run_map(self, items, fn, name, config)

    def concurrently(self, name: Optional[str] = None, max_concurrency: Optional[int] = None) -> Any:
        """``with ctx.concurrently("name") as group:`` -- ``group.step(...)`` / ``group.child(...)`` /
        ``group.run_in_child_context(...)`` start units on a thread pool and return DurableFutures;
        leaving the block waits for every unit (durable_sync.concurrently)."""
        from .concurrently import ConcurrentGroup
        return ConcurrentGroup(self, name, max_concurrency)

    # -- callbacks, polling, chained invoke (durable_sync.callbacks / condition / invoke) ----
    def create_callback(self, name: Optional[str] = None, config: Any = None) -> Any:
        """A ``Callback``: give ``.callback_id`` to the outside system; ``.result()`` waits durably."""
        from .callbacks import create_callback
        return create_callback(self, name, config)

    def wait_for_callback(self, submitter: Callable[[str, Any], Any], name: Optional[str] = None,
                          config: Any = None) -> Any:
        """Create a callback, run ``submitter(callback_id, step_ctx)`` as a step, return the answer."""
        from .callbacks import wait_for_callback
        return wait_for_callback(self, submitter, name, config)

    def wait_for_condition(self, check: Callable[[Any, Any], Any], config: Any, name: Optional[str] = None) -> Any:
        """Poll ``check(state, check_ctx)`` until ``config.wait_strategy`` stops; returns the final state."""
        from .condition import wait_for_condition
        return wait_for_condition(self, check, config, name)

    def invoke(self, function_name: str, payload: Any = None, name: Optional[str] = None, config: Any = None) -> Any:
        """Chained invoke of ``function_name`` with ``payload``; returns the target's result."""
        from .invoke import invoke
        return invoke(self, function_name, payload, name, config)


class ChildBlock:
    """The context manager behind ``with ctx.child(name) as c:``.

    The block's body always runs, on replay too (its children replay from their
    own checkpoints), so it completes with ReplayChildren=true. Exceptions raised
    in the body propagate unchanged.
    """

    def __init__(self, parent: DurableContext, name: Optional[str], cfg: ChildConfig):
        self._parent = parent
        self._name = name
        self._cfg = cfg
        self._op_id: Optional[str] = None
        self._completed = False
        self._ctx: Optional[DurableContext] = None

    def __enter__(self) -> DurableContext:
        parent = self._parent
        op_id, op = parent._begin(wire.CONTEXT, wire.SubType.RUN_IN_CHILD_CONTEXT, self._name,
                                  f"ctx.child({self._name!r})")
        self._op_id = op_id
        if op is None:
            parent._checkpoint(op_id, wire.CONTEXT, wire.SubType.RUN_IN_CHILD_CONTEXT, self._name, wire.START,
                               wait=False)
        else:
            self._completed = op["Status"] in wire.TERMINAL
            details = op.get("ContextDetails") or {}
            if self._completed and not details.get("ReplayChildren"):
                # Completed without its children (not written by a `with` block): the body cannot replay.
                if op["Status"] == wire.FAILED:
                    raise ChildContextError.from_error_object(details.get("Error"))
                raise NonDeterminismError(
                    f"child context {self._name!r} ({op_id}) was recorded by run_in_child_context, "
                    "but the code now opens it with `with ctx.child()`")
        self._ctx = DurableContext(parent._rt, op_id, self._name)
        return self._ctx

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> bool:
        if self._completed or (exc_type is not None and (not issubclass(exc_type, Exception)
                                                         or issubclass(exc_type, NonDeterminismError))):
            return False  # replayed block, suspension / interpreter exit, or changed code: nothing to record
        parent, op_id = self._parent, self._op_id
        if exc is None:
            payload = serialize_value(self._cfg.serdes or parent._rt.serdes, self._ctx.result,
                                      parent._serdes_ctx(op_id))
            if _utf8_len(payload) > wire.MAX_CONTEXT_RESULT_BYTES:
                payload = ""
            parent._checkpoint(op_id, wire.CONTEXT, wire.SubType.RUN_IN_CHILD_CONTEXT, self._name, wire.SUCCEED,
                               wait=True, Payload=payload, ContextOptions={"ReplayChildren": True})
        else:
            parent._checkpoint(op_id, wire.CONTEXT, wire.SubType.RUN_IN_CHILD_CONTEXT, self._name, wire.FAIL,
                               wait=True, Error=error_object(exc), ContextOptions={"ReplayChildren": True})
        return False


def durable_step(fn: Callable[..., Any]) -> Callable[..., Callable[[StepContext], Any]]:
    """``f(step_ctx, *args)`` becomes ``f(*args) -> step callable`` named after ``f``."""
    import functools

    @functools.wraps(fn)
    def bind(*args: Any, **kwargs: Any) -> Callable[[StepContext], Any]:
        def call(step_ctx: StepContext) -> Any:
            return fn(step_ctx, *args, **kwargs)
        call.__durable_name__ = fn.__name__
        call.__name__ = fn.__name__
        call.__durable_step__ = fn  # serialization errors recognise `ctx.step(f)` for `ctx.step(f(args))`
        return call
    return bind


def durable_with_child_context(fn: Callable[..., Any]) -> Callable[..., Callable[[DurableContext], Any]]:
    """``f(child_ctx, *args)`` becomes ``f(*args) -> child callable`` named after ``f``."""
    import functools

    @functools.wraps(fn)
    def bind(*args: Any, **kwargs: Any) -> Callable[[DurableContext], Any]:
        def call(child_ctx: DurableContext) -> Any:
            return fn(child_ctx, *args, **kwargs)
        call.__durable_name__ = fn.__name__
        call.__name__ = fn.__name__
        return call
    return bind


def _utf8_len(text: str) -> int:
    """Size of a payload on the wire (limits are in bytes, not characters)."""
    return len(text) if text.isascii() else len(text.encode("utf-8"))


def _validation(message: str) -> Exception:
    from .errors import ValidationError
    return ValidationError(message)


def _bad_callable(op: str, value: Any) -> Exception:
    return _validation(f"{op} needs a callable, got {type(value).__name__}: pass a function or lambda "
                       "taking the context argument")


__all__ = ["DurableContext", "StepContext", "ChildBlock", "durable_step", "durable_with_child_context",
           "DurableOperationError"]
