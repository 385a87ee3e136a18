"""Instrumentation plugins in real executions on the local engine: which hooks fire, on which thread,
with which infos; plugins that raise change nothing; no plugin costs nothing."""
from __future__ import annotations

import threading

import pytest

import durable_sync as ds
from durable_sync import wire
from durable_sync.instrumentation import dispatch, registry
from durable_sync.local import LocalEngine

RETRY_ONCE = ds.StepConfig(retry_strategy=ds.RetryPolicy(max_attempts=2, initial_delay=1, backoff_rate=1.0,
                                                         jitter="none"))
ALL_HOOKS = ("on_invocation_start", "on_invocation_end", "on_operation_start", "on_operation_end",
             "on_operation_change", "on_user_function_start", "on_user_function_end")


class Log(ds.InstrumentationPlugin):
    """Records (hook, info, thread id) of every hook; thread-safe."""

    def __init__(self):
        self.calls: list[tuple[str, object, int]] = []
        self._lock = threading.Lock()

    def of(self, hook):
        return [info for h, info, _ in self.calls if h == hook]


for _hook in ALL_HOOKS:
    def _record(self, info, _hook=_hook):
        with self._lock:
            self.calls.append((_hook, info, threading.get_ident()))
    setattr(Log, _hook, _record)


class Faulty(ds.InstrumentationPlugin):
    """Raises from every hook."""


for _hook in ALL_HOOKS:
    def _raise(self, info, _hook=_hook):
        raise RuntimeError(f"{_hook} is broken")
    setattr(Faulty, _hook, _raise)


def _workflow(plugins, threads=None):
    """Every kind of operation, over several invocations; ``threads`` collects (label, thread id) of user code."""
    threads = threads if threads is not None else []

    def flaky(step_ctx):
        threads.append(("flaky", threading.get_ident()))
        if step_ctx.attempt == 1:
            raise ConnectionError("first attempt fails")
        return "ok"

    def item(ctx, value, index, items):
        threads.append((f"item-{index}", threading.get_ident()))
        if value == 2:
            raise ValueError("bad item")
        return ctx.step(lambda s: value, name=f"item-step-{index}")

    def check(state, check_ctx):
        return state + 1

    def workflow(event, ctx):
        a = ctx.step(flaky, name="flaky", config=RETRY_ONCE)
        ctx.wait(1, name="pause")
        with ctx.child("block") as block:
            threads.append(("block", threading.get_ident()))
            block.step(lambda s: 1, name="in-block")
        child = ctx.run_in_child_context(lambda c: c.step(lambda s: "c", name="in-child"), name="child")
        mapped = ctx.map([1, 2, 3], item, name="items",  # one at a time: the history's order is fixed
                         config=ds.MapConfig(max_concurrency=1,
                                             completion_config=ds.CompletionConfig.all_completed()))
        with ctx.concurrently("group") as group:
            future = group.step(lambda s: "g", name="unit")
        polled = ctx.wait_for_condition(check, ds.WaitForConditionConfig(
            wait_strategy=lambda state, attempt: (ds.WaitForConditionDecision.stop_polling() if state >= 2
                                                  else ds.WaitForConditionDecision.continue_waiting(1)),
            initial_state=0), name="poll")
        answer = ctx.create_callback(name="approval").result()
        return {"a": a, "child": child, "mapped": mapped.get_results(), "unit": future.result(), "polled": polled,
                "answer": answer}

    return ds.durable_handler(workflow, plugins=plugins)


def _comparable(value, exec_id=None):
    """A history event without what differs between two runs: times, ids of the execution and callbacks."""
    if isinstance(value, dict):
        return {k: _comparable(v) for k, v in value.items()
                if "Timestamp" not in k and k not in ("CallbackId", "RequestId")
                and not (k == "Id" and value.get("EventType", "").startswith(("Execution", "Invocation")))}
    if isinstance(value, list):
        return [_comparable(v) for v in value]
    return value


def _run(handler, answer='"yes"'):
    engine = LocalEngine(db=":memory:", skip_time=True)
    try:
        arn = engine.start(handler, None, name="plugins")
        engine.wait(arn)
        [cb] = [op for op in engine.operations(arn) if op["Type"] == "CALLBACK"]
        engine.send_callback_success(cb["CallbackDetails"]["CallbackId"], answer)
        result = engine.get_execution(arn)
        history = [_comparable(e) for e in engine.history(arn)]
        return arn, result, history, engine.operations(arn)
    finally:
        engine.close()


def test_plugins_that_raise_from_every_hook_change_no_outcome(caplog):
    _, plain, plain_history, _ = _run(_workflow(None))
    log = Log()
    _, faulty, faulty_history, _ = _run(_workflow([Faulty(), lambda: Faulty(), log]))
    assert plain.status == faulty.status == "SUCCEEDED"
    assert plain.result == faulty.result == {"a": "ok", "child": "c", "mapped": [1, 3], "unit": "g", "polled": 2,
                                             "answer": "yes"}
    assert plain_history == faulty_history
    assert len(log.calls) > 40  # the plugin after the faulty ones saw everything
    assert any("is broken" in (r.exc_text or "") or r.exc_info for r in caplog.records)


def test_hooks_report_every_operation_once_with_its_tree():
    log = Log()
    threads = []
    arn, result, _, operations = _run(_workflow([log], threads))
    assert result.status == "SUCCEEDED"
    recorded = {op["Id"]: op for op in operations if op["Type"] != wire.EXECUTION}
    ends = log.of("on_operation_end")
    assert sorted(i.operation_id for i in ends) == sorted(recorded)  # exactly one end each
    for info in ends:
        op = recorded[info.operation_id]
        assert (info.operation_type, info.sub_type, info.name, info.parent_id, info.status) == (
            op["Type"], op["SubType"], op.get("Name"), op.get("ParentId"), op["Status"])
        assert info.execution_arn == arn
    live = [i.operation_id for i in log.of("on_operation_start") if not i.is_replayed]
    assert sorted(live) == sorted(recorded)  # one live start each
    invocations = log.of("on_invocation_start")
    assert [i.is_first_invocation for i in invocations] == [True] + [False] * (len(invocations) - 1)
    assert [i.status for i in log.of("on_invocation_end")] == ["PENDING"] * (len(invocations) - 1) + ["SUCCEEDED"]
    # the wait that fired and the answered callback are reported as changed while suspended
    updated = {i.name for inv in invocations for i in inv.updated_operations.values()}
    assert {"pause", "approval"} <= updated
    changes = log.of("on_operation_change")
    assert all(set(c.updated_operations) <= set(c.operations) for c in changes)
    assert {i.name for c in changes for i in c.updated_operations.values()} >= {"flaky", "pause", "approval"}


def test_user_function_hooks_wrap_each_run_of_user_code_on_its_thread():
    log = Log()
    threads = []
    _run(_workflow([log], threads))
    starts = [(info, tid) for h, info, tid in log.calls if h == "on_user_function_start"]
    ends = [(info, tid) for h, info, tid in log.calls if h == "on_user_function_end"]
    flaky = [(i.attempt, i.outcome) for i, _ in ends if i.name == "flaky"]
    assert flaky == [(1, "FAILED"), (2, "SUCCEEDED")]
    failed_flaky = next(i for i, _ in ends if i.name == "flaky")
    assert failed_flaky.error["ErrorType"] == "ConnectionError" and failed_flaky.start_time <= failed_flaky.end_time
    by_subtype = {}
    for info, _ in starts:
        by_subtype.setdefault(info.sub_type, []).append(info)
    assert {"Step", "RunInChildContext", "MapIteration", "WaitForCondition"} <= set(by_subtype)
    assert [i.attempt for i in by_subtype["WaitForCondition"]] == [1, 2]
    items = [i for i, _ in ends if i.sub_type == "MapIteration"]
    assert sorted(i.outcome for i in items) == ["FAILED", "SUCCEEDED", "SUCCEEDED"]
    start_tid = {i.operation_id: tid for i, tid in starts}
    assert all(start_tid[i.operation_id] == tid for i, tid in ends)  # start and end on one thread
    # the with-block's body ran live once (is_replay_children False) and replayed later (True)
    block = [i for i, _ in starts if i.name == "block"]
    assert block[0].is_replay_children is False and any(i.is_replay_children for i in block[1:])
    block_end = [i for i, _ in ends if i.name == "block"]
    assert "INCOMPLETE" not in {i.outcome for i in block_end}


def test_branch_hooks_run_on_the_branch_thread():
    log = Log()
    ran_on = {}
    barrier = threading.Barrier(3, timeout=10)

    def branch(i):
        def body(ctx):
            ran_on[i] = threading.get_ident()
            barrier.wait()  # all three run at once, on three threads
            return ctx.step(lambda s: i, name=f"step-{i}")
        return ds.ParallelBranch(body, name=f"branch-{i}")

    @ds.durable_handler(plugins=[log])
    def fan_out(event, ctx):
        return ctx.parallel([branch(i) for i in range(3)], name="fan",
                            config=ds.ParallelConfig(max_concurrency=3)).get_results()

    engine = LocalEngine(db=":memory:", skip_time=True)
    try:
        assert engine.run(fan_out, None).result == [0, 1, 2]
    finally:
        engine.close()
    assert len(set(ran_on.values())) == 3
    for hook in ("on_user_function_start", "on_user_function_end"):
        on = {info.name: tid for h, info, tid in log.calls if h == hook and info.sub_type == "ParallelBranch"}
        assert on == {f"branch-{i}": ran_on[i] for i in range(3)}
        steps = {info.name: tid for h, info, tid in log.calls if h == hook and info.sub_type == "Step"}
        assert steps == {f"step-{i}": ran_on[i] for i in range(3)}
    starts = {info.name: tid for h, info, tid in log.calls if h == "on_operation_start"}
    assert {f"step-{i}": ran_on[i] for i in range(3)}.items() <= starts.items()


def test_a_body_cut_by_a_suspension_ends_incomplete():
    log = Log()

    @ds.durable_handler(plugins=[log])
    def waits_in_child(event, ctx):
        with ctx.child("outer") as c:
            c.wait(1, name="inner-wait")
        return "done"

    engine = LocalEngine(db=":memory:", skip_time=True)
    try:
        assert engine.run(waits_in_child, None).status == "SUCCEEDED"
    finally:
        engine.close()
    outcomes = [i.outcome for i in log.of("on_user_function_end")]
    assert outcomes == ["INCOMPLETE", "SUCCEEDED"]


def test_without_plugins_no_instrumentation_is_built(monkeypatch):
    monkeypatch.delenv(registry.ENV_VAR, raising=False)
    monkeypatch.setattr(dispatch.Instrumentation, "open", classmethod(
        lambda cls, *a, **k: pytest.fail("instrumentation built without plugins")))
    _, result, _, _ = _run(_workflow(None))
    assert result.status == "SUCCEEDED"


def test_plugins_named_by_the_environment_join_the_handler(monkeypatch, tmp_path):
    import sys
    import textwrap

    (tmp_path / "env_plugin.py").write_text(textwrap.dedent("""
        import durable_sync as ds
        SEEN = []

        class EnvPlugin(ds.InstrumentationPlugin):
            def on_operation_end(self, info):
                SEEN.append(info.name)
    """))
    dist = tmp_path / "env_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: env-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[durable_sync.plugins]\nenvplugin = env_plugin:EnvPlugin\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv(registry.ENV_VAR, "envplugin")
    registry._configured.clear()
    try:
        @ds.durable_handler
        def plain(event, ctx):
            return ctx.step(lambda s: 1, name="counted")

        engine = LocalEngine(db=":memory:", skip_time=True)
        try:
            assert engine.run(plain, None).status == "SUCCEEDED"
        finally:
            engine.close()
        import env_plugin
        assert env_plugin.SEEN == ["counted"]
    finally:
        registry._configured.clear()
        sys.modules.pop("env_plugin", None)


def test_an_official_sdk_plugin_factory_runs_unchanged():
    from aws_durable_execution_sdk_python.plugin import DurableInstrumentationPlugin

    seen = []

    class OfficialStyle(DurableInstrumentationPlugin):
        def on_operation_end(self, info):
            seen.append((info.name, info.operation_type.value, info.status.value))

        def on_invocation_end(self, info):
            seen.append(("end", info.status.value))

    class Factory:
        def create_plugin(self, info):
            return OfficialStyle()

    @ds.durable_handler(plugins=[Factory()])
    def handler(event, ctx):
        return ctx.step(lambda s: 1, name="one")

    engine = LocalEngine(db=":memory:", skip_time=True)
    try:
        assert engine.run(handler, None).status == "SUCCEEDED"
    finally:
        engine.close()
    assert seen == [("one", "STEP", "SUCCEEDED"), ("end", "SUCCEEDED")]


def test_plugins_argument_is_checked_when_decorating():
    with pytest.raises(ds.ValidationError, match=r"plugins\[1\]"):
        @ds.durable_handler(plugins=[Log(), 3])
        def handler(event, ctx):
            return None


def test_flat_branches_are_no_operations_of_their_own():
    log = Log()

    @ds.durable_handler(plugins=[log])
    def flat(event, ctx):
        config = ds.ParallelConfig(max_concurrency=1, nesting_type=ds.NestingType.FLAT)
        return ctx.parallel([lambda c: c.step(lambda s: 1, name="a"), lambda c: c.step(lambda s: 2, name="b")],
                            name="flat", config=config).get_results()

    engine = LocalEngine(db=":memory:", skip_time=True)
    try:
        assert engine.run(flat, None).result == [1, 2]
    finally:
        engine.close()
    runs = [(i.sub_type, i.name) for i in log.of("on_user_function_start")]
    assert runs == [("Step", "a"), ("Step", "b")]
    assert sorted(i.name for i in log.of("on_operation_end")) == ["a", "b", "flat"]
