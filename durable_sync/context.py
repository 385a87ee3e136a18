"""DurableContext: the durable API user code calls -- a thin façade over the operation layer.

Each method hands its arguments to one module of ``durable_sync.operations`` together
with the context's ``OperationScope``, which numbers the operation, guards it, finds
and checks its record and checkpoints it (see ``operations/scope.py``).
"""
from __future__ import annotations

import functools
from typing import Any, Callable, Optional

from .config import ChildConfig, ParallelBranch, StepConfig
from .errors import DurableOperationError
from .logs import USER_LOGGER, DurableLogger
from .operations import batch as _batch
from .operations import callback as _callback
from .operations import child as _child
from .operations import concurrently as _concurrently
from .operations import condition as _condition
from .operations import invoke as _invoke
from .operations import step as _step
from .operations import wait as _wait
from .operations.calls import either
from .operations.scope import OperationScope
from .operations.step import StepContext
from .state import Runtime

__all__ = ["DurableContext", "StepContext", "durable_step", "durable_with_child_context", "durable_parallel_branch",
           "durable_wait_for_callback", "DurableOperationError", "WaitForCallbackContext",
           "WaitForConditionCheckContext"]

# What a wait_for_callback submitter and a wait_for_condition check receive: a StepContext
# (logger, attempt, ...). The official SDK's names for them, for annotations.
WaitForCallbackContext = StepContext
WaitForConditionCheckContext = StepContext


class DurableContext:
    """The durable API handed to a handler and to every child context."""

    def __init__(self, scope: OperationScope):
        self._scope = scope
        self._logger: Optional[DurableLogger] = None
        self.result: Any = None  # the checkpointed result of a `with ctx.child()` block

    @classmethod
    def root(cls, runtime: Runtime) -> "DurableContext":
        """The handler's context for one invocation."""
        return cls(OperationScope.root(runtime))

    # -- small accessors -------------------------------------------------------
    @property
    def execution_arn(self) -> str:
        return self._scope.arn

    @property
    def context_id(self) -> Optional[str]:
        return self._scope.context_id

    def is_replaying(self) -> bool:
        """True while the code walks through operations that completed in earlier invocations."""
        return self._scope.is_replaying()

    @property
    def logger(self) -> DurableLogger:
        if self._logger is None:
            scope = self._scope
            self._logger = DurableLogger(USER_LOGGER, {
                "execution_arn": scope.arn, "operation_id": scope.context_id, "operation_name": scope.name},
                replaying=scope.is_replaying)
        return self._logger

    # -- operations --------------------------------------------------------------
    # Every method also takes the official SDK's keyword names where they differ from ours
    # (``step(func=...)``, ``map(inputs=..., func=...)``, ``parallel(functions=...)``,
    # ``run_in_child_context(func=...)``); the others are the same names.
    def step(self, fn_or_name: Any = None, fn: Any = None, name: Optional[str] = None,
             config: Optional[StepConfig] = None, *, func: Any = None) -> Any:
        """Run ``fn(step_ctx)`` once (with retries) and checkpoint its result.

        Call as ``step(fn, name=None, config=None)`` or ``step("name", fn, config)``.
        """
        return _step.step(self._scope, either(fn_or_name, func, "fn", "func", "step"), fn, name, config)

    def wait(self, duration: Any, name: Optional[str] = None) -> None:
        """Pause the execution durably for ``duration`` (Duration, timedelta or seconds)."""
        _wait.wait(self._scope, duration, name)

    def child(self, name: Optional[str] = None, config: Optional[ChildConfig] = None) -> _child.ChildBlock:
        """``with ctx.child("name") as c:`` groups operations in a child context."""
        return _child.ChildBlock(self._scope, name, config)

    def run_in_child_context(self, fn: Optional[Callable[["DurableContext"], Any]] = None, name: Optional[str] = None,
                             config: Optional[ChildConfig] = None, *, func: Any = None) -> Any:
        """Run ``fn(child_ctx)`` as a child context; a completed child returns its stored result."""
        return _child.run_in_child_context(self._scope, either(fn, func, "fn", "func", "run_in_child_context"),
                                           name, config)

    def parallel(self, branches: Any = None, name: Optional[str] = None, config: Any = None, *,
                 functions: Any = None) -> Any:
        """Run ``branches`` (callables ``fn(ctx)`` or ``ParallelBranch``) on a thread pool; returns a BatchResult.

        ``branches`` is a list (or other sequence, in a fixed order); a branch without a
        ParallelBranch name is named ``parallel-branch-<index>``.
        """
        return _batch.run_parallel(self._scope, either(branches, functions, "branches", "functions", "parallel"),
                                   name, config)

    def map(self, items: Any = None, fn: Optional[Callable[..., Any]] = None, name: Optional[str] = None,
            config: Any = None, *, inputs: Any = None, func: Any = None) -> Any:
        """Run ``fn(ctx, item, index, items)`` for every item on a thread pool; returns a BatchResult.

        ``items`` is a list (or other sequence, in a fixed order: never a set or a generator);
        an item without an ``item_namer`` name is named ``map-item-<index>``.
        """
        return _batch.run_map(self._scope, either(items, inputs, "items", "inputs", "map"),
                              either(fn, func, "fn", "func", "map"), name, config)

    def concurrently(self, name: Optional[str] = None, max_concurrency: Optional[int] = None) -> Any:
        """``with ctx.concurrently("name") as group:`` -- ``group.step(...)`` / ``group.child(...)`` /
        ``group.run_in_child_context(...)`` start units on a thread pool and return DurableFutures;
        leaving the block waits for every unit (durable_sync.operations.concurrently)."""
        return _concurrently.ConcurrentGroup(self._scope, name, max_concurrency)

    def create_callback(self, name: Optional[str] = None, config: Any = None) -> Any:
        """A ``Callback``: give ``.callback_id`` to the outside system; ``.result()`` waits durably."""
        return _callback.create_callback(self._scope, name, config)

    def wait_for_callback(self, submitter: Callable[[str, Any], Any], name: Optional[str] = None,
                          config: Any = None) -> Any:
        """Create a callback, run ``submitter(callback_id, step_ctx)`` as a step, return the answer."""
        return _callback.wait_for_callback(self._scope, submitter, name, config)

    def wait_for_condition(self, check: Callable[[Any, Any], Any], config: Any, name: Optional[str] = None) -> Any:
        """Poll ``check(state, check_ctx)`` until ``config.wait_strategy`` stops; returns the final state."""
        return _condition.wait_for_condition(self._scope, check, config, name)

    def invoke(self, function_name: str, payload: Any = None, name: Optional[str] = None, config: Any = None) -> Any:
        """Chained invoke of ``function_name`` with ``payload``; returns the target's result."""
        return _invoke.invoke(self._scope, function_name, payload, name, config)


def durable_step(fn: Callable[..., Any]) -> Callable[..., Callable[[StepContext], Any]]:
    """``f(step_ctx, *args)`` becomes ``f(*args) -> step callable`` named after ``f``."""

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

    @functools.wraps(fn)
    def bind(*args: Any, **kwargs: Any) -> Callable[[DurableContext], Any]:
        def call(child_ctx: DurableContext) -> Any:
            return fn(child_ctx, *args, **kwargs)
        call.__durable_name__ = fn.__name__
        call.__name__ = fn.__name__
        return call
    return bind


def durable_parallel_branch(name: Optional[str] = None) -> Callable[[Callable[..., Any]], Callable[..., ParallelBranch]]:
    """``@durable_parallel_branch(name=None)``: ``f(ctx, *args)`` becomes ``f(*args) -> ParallelBranch``.

    The branch is named ``name`` (None: ``parallel-branch-<index>``, as the official SDK does).
    """

    def decorate(fn: Callable[..., Any]) -> Callable[..., ParallelBranch]:
        @functools.wraps(fn)
        def bind(*args: Any, **kwargs: Any) -> ParallelBranch:
            def call(ctx: DurableContext) -> Any:
                return fn(ctx, *args, **kwargs)
            return ParallelBranch(call, name)
        return bind
    return decorate


def durable_wait_for_callback(fn: Callable[..., Any]) -> Callable[..., Callable[[str, Any], Any]]:
    """``f(callback_id, ctx, *args)`` becomes ``f(*args) -> submitter`` for ``wait_for_callback``, named after ``f``."""

    @functools.wraps(fn)
    def bind(*args: Any, **kwargs: Any) -> Callable[[str, Any], Any]:
        def call(callback_id: str, ctx: Any) -> Any:
            return fn(callback_id, ctx, *args, **kwargs)
        call.__durable_name__ = fn.__name__
        call.__name__ = fn.__name__
        return call
    return bind
