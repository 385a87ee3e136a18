"""Handlers of the ``plugin`` suite (10-x): instrumentation plugins written against ds.InstrumentationPlugin.

Each plugin prints one JSON object per line to stdout (``{"plugin": ..., "hook": ...}``), stamped
with the execution ARN it received in ``on_invocation_start`` (``durableExecutionArn``); the
harness reads those lines as log records. Plugins are registered as per-invocation factories
(``plugins=[lambda: ...]``), except where a requirement says otherwise.
"""
from __future__ import annotations

import json
from typing import Any, Optional

import durable_sync as ds

NO_RETRY = ds.StepConfig(retry_strategy=ds.RetryPresets.none())
TWO_ATTEMPTS = ds.StepConfig(retry_strategy=ds.RetryPolicy(max_attempts=2, initial_delay=1, backoff_rate=1.0,
                                                           jitter="none"))


class Emitter(ds.InstrumentationPlugin):
    """Prints JSON records for the hooks a subclass implements; ``types`` filters operation hooks."""

    def __init__(self, label: str = "CONFPLUGIN", types: Optional[set] = None, subtypes: Optional[set] = None):
        self.label = label
        self.types = types
        self.subtypes = subtypes
        self.arn: Optional[str] = None

    def emit(self, hook: str, **fields: Any) -> None:
        print(json.dumps({"plugin": self.label, "hook": hook, **fields, "durableExecutionArn": self.arn}), flush=True)

    def wanted(self, info: ds.OperationInfo) -> bool:
        return ((self.types is None or info.operation_type in self.types)
                and (self.subtypes is None or info.sub_type in self.subtypes))

    def on_invocation_start(self, info: ds.InvocationStartInfo) -> None:
        self.arn = info.execution_arn


class InvocationHooks(Emitter):
    def on_invocation_start(self, info):
        super().on_invocation_start(info)
        self.emit("invocation-start", first=info.is_first_invocation)

    def on_invocation_end(self, info):
        self.emit("invocation-end", status=info.status)


class OperationHooks(Emitter):
    """operation-start / operation-end with the fields a requirement asks for."""

    def __init__(self, start_fields=("op",), end_fields=("op", "status"), **kw: Any):
        super().__init__(**kw)
        self.start_fields, self.end_fields = start_fields, end_fields

    @staticmethod
    def fields(info: ds.OperationInfo, names) -> dict[str, Any]:
        error = (info.error or {}).get("ErrorMessage")
        values = {"op": info.operation_id, "type": (info.operation_type or "").upper(), "status": info.status,
                  "parent": info.parent_id or "NONE", "replay": info.is_replayed,
                  "result": info.result if info.result is not None else "NONE",
                  "error": error if error is not None else "NONE"}
        return {name: values[name] for name in names}

    def on_operation_start(self, info):
        if self.start_fields and self.wanted(info):
            self.emit("operation-start", **self.fields(info, self.start_fields))

    def on_operation_end(self, info):
        if self.end_fields and self.wanted(info):
            self.emit("operation-end", **self.fields(info, self.end_fields))


class AttemptHooks(OperationHooks):
    """attempt-start / attempt-end around each step attempt (and operation-end when asked)."""

    def __init__(self, **kw: Any):
        super().__init__(start_fields=(), end_fields=kw.pop("end_fields", ()), types={"STEP"}, **kw)

    def on_user_function_start(self, info):
        if self.wanted(info):
            self.emit("attempt-start", n=info.attempt, op=info.operation_id)

    def on_user_function_end(self, info):
        if self.wanted(info):
            self.emit("attempt-end", n=info.attempt, outcome=info.outcome, op=info.operation_id)


@ds.durable_step
def greet(step_ctx, name):
    step_ctx.logger.info(f"Greeting step running for: {name}")
    return f"Hello, {name}!"


def unreliable(step_ctx):
    """Fails on its first attempt, succeeds on the second."""
    if step_ctx.attempt == 1:
        raise RuntimeError("first attempt fails")
    return "Operation succeeded"


def always_fails(step_ctx):
    raise RuntimeError("boom")


# 10-1: invocation hooks around a single step
@ds.durable_handler(plugins=[lambda: InvocationHooks()])
def handler_10_1(event, ctx):
    return ctx.step(greet(event))


# 10-2: operation hooks of a step
@ds.durable_handler(plugins=[lambda: OperationHooks(types={"STEP"})])
def handler_10_2(event, ctx):
    return ctx.step(greet(event))


# 10-3: attempt hooks under retry
@ds.durable_handler(plugins=[lambda: AttemptHooks()])
def handler_10_3(event, ctx):
    return ctx.step(unreliable, config=TWO_ATTEMPTS)


# 10-4: a plugin that logs and raises from every hook
class Faulty(Emitter):
    def __init__(self):
        super().__init__(label="CONFPLUGIN-FAULTY", types={"STEP"})

    def fail(self, hook: str, info: Any = None) -> None:
        if info is None or self.wanted(info):
            self.emit(hook)
            raise RuntimeError(f"{hook} always fails")

    def on_invocation_start(self, info):
        super().on_invocation_start(info)
        self.fail("invocation-start")

    def on_invocation_end(self, info):
        self.fail("invocation-end")

    def on_operation_start(self, info):
        self.fail("operation-start", info)

    def on_operation_end(self, info):
        self.fail("operation-end", info)

    def on_user_function_start(self, info):
        self.fail("attempt-start", info)

    def on_user_function_end(self, info):
        self.fail("attempt-end", info)


@ds.durable_handler(plugins=[Faulty])
def handler_10_4(event, ctx):
    return ctx.step(greet(event))


# 10-5: two plugins (A a factory, B one shared instance)
@ds.durable_handler(plugins=[lambda: InvocationHooks(label="CONFPLUGIN-A"), InvocationHooks(label="CONFPLUGIN-B")])
def handler_10_5(event, ctx):
    return ctx.step(greet(event))


# 10-6: the first-invocation flag across a replay
@ds.durable_handler(plugins=[lambda: InvocationHooks()])
def handler_10_6(event, ctx):
    ctx.wait(ds.Duration.from_seconds(2))


# 10-7: the invocation-end hook sees FAILED
@ds.durable_handler(plugins=[lambda: InvocationHooks()])
def handler_10_7(event, ctx):
    return ctx.step(always_fails, config=NO_RETRY)


# 10-8: operation-change reports the updated step and the full map
class ChangeHooks(Emitter):
    def on_operation_change(self, info):
        for op_id, op in info.updated_operations.items():
            if op.operation_type == "STEP":
                self.emit("operation-change", op=op_id, status=op.status, in_full_map=op_id in info.operations)


@ds.durable_handler(plugins=[lambda: ChangeHooks()])
def handler_10_8(event, ctx):
    return ctx.step(greet(event))


# 10-9: a wait completed while the execution was suspended is reported as updated on the next invocation
class UpdatedOnInvoke(Emitter):
    def on_invocation_start(self, info):
        super().on_invocation_start(info)
        for op_id, op in info.updated_operations.items():
            if op.operation_type == "WAIT":
                self.emit("updated-on-invoke", op=op_id, status=op.status, first=info.is_first_invocation)


@ds.durable_handler(plugins=[lambda: UpdatedOnInvoke()])
def handler_10_9(event, ctx):
    ctx.wait(ds.Duration.from_seconds(2))


# 10-10: operation hooks of a wait
@ds.durable_handler(plugins=[lambda: OperationHooks(start_fields=("op", "type"), end_fields=("op", "type", "status"),
                                                    types={"WAIT"})])
def handler_10_10(event, ctx):
    ctx.wait(ds.Duration.from_seconds(2))


# 10-11: operation-end reports the parent of a step in a child context
def greet_in_child(name):
    def child(child_ctx):
        return child_ctx.step(greet(name))
    return child


@ds.durable_handler(plugins=[lambda: OperationHooks(start_fields=(), end_fields=("op", "parent", "status"))])
def handler_10_11(event, ctx):
    return ctx.run_in_child_context(greet_in_child(event))


# 10-12: user-function hooks of parallel branches
class BranchHooks(Emitter):
    def __init__(self):
        super().__init__(subtypes={"ParallelBranch"})

    def on_user_function_start(self, info):
        if self.wanted(info):
            self.emit("fn-start", op=info.operation_id, parent=info.parent_id or "NONE")

    def on_user_function_end(self, info):
        if self.wanted(info):
            self.emit("fn-end", op=info.operation_id, parent=info.parent_id or "NONE", outcome=info.outcome)


@ds.durable_handler(plugins=[lambda: BranchHooks()])
def handler_10_12(event, ctx):
    branches = [lambda c: "task-1", lambda c: "task-2"]
    return ctx.parallel(branches, name="parallel", config=ds.ParallelConfig(max_concurrency=1)).get_results()


# 10-13: the replay flag of operation-start
def step_a(step_ctx):
    return "a"


@ds.durable_handler(plugins=[lambda: OperationHooks(start_fields=("op", "replay"), types={"STEP"})])
def handler_10_13(event, ctx):
    ctx.step(step_a)
    return ctx.step(unreliable, config=TWO_ATTEMPTS)


# 10-14: operation-end carries the result or the error
@ds.durable_handler(plugins=[lambda: OperationHooks(start_fields=(), end_fields=("op", "status", "result", "error"),
                                                    types={"STEP"})])
def handler_10_14(event, ctx):
    ctx.step(lambda step_ctx: "task-a", name="step-a")
    return ctx.step(always_fails, name="step-b", config=NO_RETRY)


# 10-15: attempt hooks until retries are exhausted
@ds.durable_handler(plugins=[lambda: AttemptHooks(end_fields=("op", "status"))])
def handler_10_15(event, ctx):
    return ctx.step(always_fails, config=TWO_ATTEMPTS)


HANDLERS = {
    "10-1": handler_10_1, "10-2": handler_10_2, "10-3": handler_10_3, "10-4": handler_10_4, "10-5": handler_10_5,
    "10-6": handler_10_6, "10-7": handler_10_7, "10-8": handler_10_8, "10-9": handler_10_9,
    "10-10": handler_10_10, "10-11": handler_10_11, "10-12": handler_10_12, "10-13": handler_10_13,
    "10-14": handler_10_14, "10-15": handler_10_15,
}
