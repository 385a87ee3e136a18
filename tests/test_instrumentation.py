"""The plugin core without an SDK run: the start / end rules on recorded operation states, error
isolation, registration (instances, factories, DURABLE_SYNC_PLUGINS entry points, official-SDK
plugins), and checkpoint-response delivery."""
from __future__ import annotations

import logging
import sys
import textwrap

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import durable_sync as ds
from durable_sync.instrumentation import registry, rules
from durable_sync.instrumentation.dispatch import Instrumentation

ARN = "arn:aws:lambda:us-east-1:000000000000:function:f:$LATEST/durable-execution/n/exec1"
EXEC = {"Id": "exec1", "Type": "EXECUTION", "Status": "STARTED", "StartTimestamp": 1_700_000_000_000,
        "ExecutionDetails": {"InputPayload": "{}"}}


class Recorder(ds.InstrumentationPlugin):
    """Records (hook, info) of every hook."""

    def __init__(self, calls=None):
        self.calls = [] if calls is None else calls

    def on_invocation_start(self, info):
        self.calls.append(("invocation_start", info))

    def on_invocation_end(self, info):
        self.calls.append(("invocation_end", info))

    def on_operation_start(self, info):
        self.calls.append(("operation_start", info))

    def on_operation_end(self, info):
        self.calls.append(("operation_end", info))

    def on_operation_change(self, info):
        self.calls.append(("operation_change", info))

    def on_user_function_start(self, info):
        self.calls.append(("user_function_start", info))

    def on_user_function_end(self, info):
        self.calls.append(("user_function_end", info))


def _open(plugins, operations, updated=()):
    sources = registry.explicit_sources(plugins)
    return Instrumentation.open(sources, ARN, "req-1", [EXEC, *operations], updated)


def _step(status, **extra):
    return {"Id": "op1", "Type": "STEP", "SubType": "Step", "Name": "s", "Status": status,
            "StartTimestamp": 1_700_000_001_000, "StepDetails": {"Attempt": 1}, **extra}


# --------------------------------------------------------------------------- rules


@pytest.mark.parametrize("record,initial,updated,fired,expected", [
    (None, None, False, False, rules.LIVE_START),
    ({"Status": "STARTED"}, "STARTED", False, False, rules.REPLAYED_START),
    ({"Status": "PENDING"}, "PENDING", True, False, rules.REPLAYED_START),
    ({"Status": "SUCCEEDED"}, "SUCCEEDED", False, False, rules.NOTHING),  # completed in an earlier invocation
    ({"Status": "SUCCEEDED"}, "SUCCEEDED", True, False, rules.END),  # completed while suspended
    ({"Status": "SUCCEEDED"}, "STARTED", False, False, rules.END),  # completed by a response in this invocation
    ({"Status": "SUCCEEDED"}, "STARTED", False, True, rules.NOTHING),  # already reported here
])
def test_begin_rule(record, initial, updated, fired, expected):
    assert rules.on_begin(record, initial, updated, fired) == expected


_NON_TERMINAL = st.sampled_from(["STARTED", "PENDING", "READY"])
_ANY_STATUS = st.sampled_from(["STARTED", "PENDING", "READY", "SUCCEEDED", "FAILED", "TIMED_OUT"])
_INVOCATION = st.fixed_dictionaries({
    "external": st.none() | _ANY_STATUS,  # a change while suspended (reported in UpdatedOperationIds)
    "reached": st.booleans(),  # the code reaches the operation in this invocation
    "live": st.lists(_ANY_STATUS, max_size=3),  # changes this invocation checkpoints
    "response": st.none() | _ANY_STATUS,  # a change the service reports in a checkpoint response
})


@settings(max_examples=300, deadline=None)
@given(st.lists(_INVOCATION, min_size=1, max_size=6))
def test_one_live_start_and_one_end_in_the_first_invocation_that_sees_it_terminal(invocations):
    """Simulate one operation over many invocations; the dispatcher must fire exactly one live start
    (when it is created) and exactly one end, in the first invocation that sees it terminal."""
    record = None
    seen_terminal_in = None  # index of the first invocation that saw the operation terminal
    starts, ends = [], []
    for index, inv in enumerate(invocations):
        updated = ()
        if record is not None and inv["external"] is not None and not rules.is_terminal(record["Status"]):
            record = _step(inv["external"])
            updated = ("op1",)
        calls = []
        instr = _open([Recorder(calls)], [record] if record is not None else [], updated)
        instr.invocation_start()
        if record is not None and rules.is_terminal(record["Status"]) and "op1" in updated:
            seen_terminal_in = index if seen_terminal_in is None else seen_terminal_in
        if inv["reached"] or record is None and inv["live"]:
            instr.begin("op1", "STEP", "Step", "s", None, record)
            if record is None:
                record = _step("STARTED")
            for status in inv["live"]:
                if rules.is_terminal(record["Status"]):
                    break
                record = _step(status)
                if rules.is_terminal(status):
                    seen_terminal_in = index if seen_terminal_in is None else seen_terminal_in
                    instr.ended({"Id": "op1", "Type": "STEP", "SubType": "Step", "Action": "SUCCEED"}, record)
        if record is not None and inv["response"] is not None and not rules.is_terminal(record["Status"]):
            record = _step(inv["response"])
            instr.checkpoint_response([record])
            if rules.is_terminal(record["Status"]):
                seen_terminal_in = index if seen_terminal_in is None else seen_terminal_in
        instr.invocation_end({"Status": "PENDING"}, [EXEC] + ([record] if record is not None else []))
        starts += [(index, i.is_replayed) for h, i in calls if h == "operation_start"]
        ends += [index for h, i in calls if h == "operation_end"]
    live = [i for i, replayed in starts if not replayed]
    assert len(live) == (0 if record is None else 1)
    assert ends == ([] if seen_terminal_in is None else [seen_terminal_in])


# --------------------------------------------------------------------------- infos


def test_invocation_infos_carry_the_state_and_the_updated_operations():
    wait = {"Id": "w1", "Type": "WAIT", "SubType": "Wait", "Status": "SUCCEEDED", "StartTimestamp": 1_700_000_001_000,
            "EndTimestamp": 1_700_000_003_000}
    rec = Recorder()
    instr = _open([rec], [wait], updated=["w1"])
    instr.invocation_start()
    (_, start), (_, change) = rec.calls
    assert start.is_first_invocation is False and start.request_id == "req-1"
    assert start.execution_start_time.timestamp() == 1_700_000_000
    assert set(start.operations) == {"exec1", "w1"} and set(start.updated_operations) == {"w1"}
    assert start.updated_operations["w1"].status == "SUCCEEDED"
    assert start.updated_operations["w1"].end_time.timestamp() == 1_700_000_003
    assert set(change.updated_operations) == {"w1"} and set(change.updated_operations) <= set(change.operations)
    instr.begin("w1", "WAIT", "Wait", None, None, wait)
    instr.invocation_end({"Status": "FAILED", "Error": {"ErrorType": "E", "ErrorMessage": "m"}}, [EXEC, wait])
    hooks = [h for h, _ in rec.calls]
    assert hooks == ["invocation_start", "operation_change", "operation_end", "invocation_end"]
    end = rec.calls[-1][1]
    assert (end.status, end.error, end.is_first_invocation) == ("FAILED", {"ErrorType": "E", "ErrorMessage": "m"},
                                                                False)


def test_first_invocation_and_live_end_built_from_the_update():
    rec = Recorder()
    instr = _open([rec], [])
    instr.invocation_start()
    assert rec.calls[0][1].is_first_invocation is True
    instr.begin("op1", "STEP", "Step", "s", "parent", None)
    start = rec.calls[-1][1]
    assert (start.is_replayed, start.status, start.attempt, start.parent_id) == (False, "STARTED", 1, "parent")
    token = instr.user_function_start("op1", "STEP", "Step", "s", "parent", None, attempt=1)
    instr.user_function_end(token, {"ErrorType": "ValueError", "ErrorMessage": "boom"})
    uf_end = rec.calls[-1][1]
    assert (uf_end.outcome, uf_end.error["ErrorMessage"], uf_end.attempt) == ("FAILED", "boom", 1)
    assert uf_end.start_time <= uf_end.end_time and uf_end.is_replay_children is None
    # The service's response did not carry the record: the end info comes from the update.
    instr.ended({"Id": "op1", "Type": "STEP", "SubType": "Step", "Name": "s", "ParentId": "parent",
                 "Action": "FAIL", "Error": {"ErrorType": "ValueError", "ErrorMessage": "boom"}}, None)
    end = rec.calls[-1][1]
    assert isinstance(end, ds.OperationEndInfo)
    assert (end.status, end.error["ErrorMessage"], end.result, end.start_time) == ("FAILED", "boom", None,
                                                                                  start.start_time)
    assert end.attempt == 1  # from the last run of the body


def test_context_user_function_reports_replay_children():
    ctx = {"Id": "c1", "Type": "CONTEXT", "SubType": "RunInChildContext", "Status": "SUCCEEDED",
           "ContextDetails": {"ReplayChildren": True}}
    rec = Recorder()
    instr = _open([rec], [ctx])
    token = instr.user_function_start("c1", "CONTEXT", "RunInChildContext", None, None, ctx)
    assert token.is_replay_children is True and token.is_replayed is True
    token = instr.user_function_start("c2", "CONTEXT", "RunInChildContext", None, None, None)
    assert token.is_replay_children is False and token.is_replayed is False


# --------------------------------------------------------------------------- isolation


class Faulty(ds.InstrumentationPlugin):
    pass


for _hook in ("on_invocation_start", "on_invocation_end", "on_operation_start", "on_operation_end",
              "on_operation_change", "on_user_function_start", "on_user_function_end"):
    def _raise(self, info, _hook=_hook):
        raise RuntimeError(f"{_hook} is broken")
    setattr(Faulty, _hook, _raise)


def _drive(instr):
    instr.invocation_start()
    for _ in range(2):
        instr.begin("op1", "STEP", "Step", "s", None, None)
        token = instr.user_function_start("op1", "STEP", "Step", "s", None, None, attempt=1)
        instr.user_function_end(token, None)
    instr.ended({"Id": "op1", "Type": "STEP", "SubType": "Step", "Action": "SUCCEED", "Payload": "1"}, None)
    instr.checkpoint_response([_step("SUCCEEDED")])
    instr.checkpoint_response([_step("SUCCEEDED")])
    instr.invocation_end({"Status": "SUCCEEDED", "Result": "1"}, [EXEC, _step("SUCCEEDED")])


def test_a_raising_plugin_is_logged_once_per_hook_and_the_others_still_run(caplog):
    before, after = Recorder(), Recorder()
    instr = _open([before, Faulty(), after], [])
    with caplog.at_level(logging.DEBUG, logger="durable_sync.plugins"):
        _drive(instr)
    assert [h for h, _ in before.calls] == [h for h, _ in after.calls]
    assert len(after.calls) == 11  # start, 2x(op start, uf start, uf end), op end, 2 changes, end
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert sorted(r.getMessage().split()[2] for r in errors) == sorted(
        f"Faulty.{h}" for h in ("on_invocation_start", "on_invocation_end", "on_operation_start", "on_operation_end",
                                "on_operation_change", "on_user_function_start", "on_user_function_end"))
    assert all(r.exc_info for r in errors)
    assert sum(r.levelno == logging.DEBUG for r in caplog.records) == 4  # the repeats of four hooks


def test_no_plugin_means_no_instrumentation():
    assert Instrumentation.open([], ARN, None, [EXEC], ()) is None


# --------------------------------------------------------------------------- registration


def test_instances_are_shared_and_factories_called_per_invocation():
    made = []

    class PerInvocation(Recorder):
        def __init__(self):
            super().__init__()
            made.append(self)

    shared = Recorder()
    sources = registry.explicit_sources([shared, PerInvocation])
    for _ in range(2):
        Instrumentation.open(sources, ARN, None, [EXEC], ()).invocation_start()
    assert len(shared.calls) == 2
    assert len(made) == 2 and all(len(p.calls) == 1 for p in made)


@pytest.mark.parametrize("bad", [42, "otel", [Recorder()]])
def test_an_entry_that_is_not_a_plugin_is_refused_at_registration(bad):
    with pytest.raises(ds.ValidationError, match=r"plugins\[0\] is .* not an instrumentation plugin"):
        registry.explicit_sources([bad])


def test_plugins_must_be_a_list():
    with pytest.raises(ds.ValidationError, match="plugins= takes a list"):
        registry.explicit_sources(Recorder())


def test_a_factory_that_raises_or_returns_junk_is_skipped_for_that_invocation(caplog):
    def broken():
        raise OSError("no exporter")

    rec = Recorder()
    with caplog.at_level(logging.ERROR, logger="durable_sync.plugins"):
        instr = Instrumentation.open(registry.explicit_sources([broken, lambda: 42, rec]), ARN, None, [EXEC], ())
        instr.invocation_start()
    assert len(rec.calls) == 1
    messages = [r.getMessage() for r in caplog.records]
    assert any("plugins[0]" in m and "raised" in m for m in messages)
    assert any("plugins[1]" in m and "returned a builtins.int" in m for m in messages)


def test_unset_variable_never_looks_at_entry_points(monkeypatch):
    from importlib import metadata

    monkeypatch.delenv(registry.ENV_VAR, raising=False)
    monkeypatch.setattr(metadata, "entry_points", lambda **kw: pytest.fail("entry points were listed"))
    assert registry.configured_sources() == []
    assert registry.configured_sources({registry.ENV_VAR: "  "}) == []


@pytest.fixture
def plugin_distribution(tmp_path, monkeypatch):
    """An installed distribution with two entry points in group durable_sync.plugins."""
    package = tmp_path / "acme_plugins.py"
    package.write_text(textwrap.dedent("""
        import durable_sync as ds
        CALLS = []

        class Acme(ds.InstrumentationPlugin):
            def on_invocation_start(self, info):
                CALLS.append(info.execution_arn)
    """))
    dist = tmp_path / "acme_plugins-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-plugins\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[durable_sync.plugins]\nacme = acme_plugins:Acme\nbroken = acme_plugins:Missing\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    registry._configured.clear()
    yield
    registry._configured.clear()
    sys.modules.pop("acme_plugins", None)


def test_entry_points_named_by_the_variable_are_loaded_once(plugin_distribution, caplog):
    env = {registry.ENV_VAR: "acme, nope, broken"}
    with caplog.at_level(logging.ERROR, logger="durable_sync.plugins"):
        sources = registry.configured_sources(env)
    assert registry.configured_sources(env) is sources  # cached: loaded at cold start only
    assert len(sources) == 1
    Instrumentation.open(sources, ARN, None, [EXEC], ()).invocation_start()
    import acme_plugins
    assert acme_plugins.CALLS == [ARN]
    messages = " ".join(r.getMessage() for r in caplog.records)
    assert "'nope'" in messages and "installed: acme, broken" in messages
    assert "'broken'" in messages


# --------------------------------------------------------------------------- official SDK plugins


def test_official_plugins_and_factories_receive_official_infos():
    from aws_durable_execution_sdk_python import lambda_service as ls
    from aws_durable_execution_sdk_python import plugin as official

    seen = []

    class OfficialPlugin(official.DurableInstrumentationPlugin):
        def __init__(self, start):
            self.start = start

        def on_invocation_start(self, info):
            seen.append(("start", info is self.start, info))

        def on_operation_end(self, info):
            seen.append(("op_end", info))

        def on_user_function_end(self, info):
            seen.append(("uf_end", info))

        def on_invocation_end(self, info):
            seen.append(("end", info))

    class Factory:
        def create_plugin(self, info):
            return OfficialPlugin(info)

    instance = OfficialPlugin(None)
    step = _step("STARTED")
    instr = _open([Factory(), instance], [step])
    instr.invocation_start()
    token = instr.user_function_start("op1", "STEP", "Step", "s", None, step, attempt=2)
    instr.user_function_end(token, {"ErrorType": "E", "ErrorMessage": "boom", "StackTrace": ["a"]})
    instr.ended({"Id": "op1", "Type": "STEP", "Action": "SUCCEED"}, _step("SUCCEEDED", StepDetails={
        "Attempt": 2, "Result": '"ok"'}))
    instr.invocation_end({"Status": "SUCCEEDED", "Result": "1"}, [EXEC])
    kinds = [s[0] for s in seen]
    assert kinds == ["start", "start", "uf_end", "uf_end", "op_end", "op_end", "end", "end"]
    assert seen[0][1] is True  # the factory's plugin gets the very info create_plugin got
    start = seen[0][2]
    assert isinstance(start, official.InvocationStartInfo) and start.operations["op1"].status is ls.OperationStatus.STARTED
    uf_end = seen[2][1]
    assert isinstance(uf_end, official.UserFunctionEndInfo)
    assert uf_end.outcome is official.UserFunctionOutcome.FAILED and uf_end.error.message == "boom"
    assert uf_end.attempt == 2 and uf_end.error.stack_trace == ["a"]
    op_end = seen[4][1]
    assert op_end.operation_type is official.OperationType.STEP and op_end.result == '"ok"'
    assert seen[6][1].status is official.InvocationStatus.SUCCEEDED


# --------------------------------------------------------------------------- changes


def test_checkpoint_responses_are_delivered_in_order_with_the_full_map():
    seen = []

    class Snapshots(ds.InstrumentationPlugin):
        def on_operation_change(self, info):
            seen.append((info, dict(info.operations)))  # the map is exact during the call

    rec = Recorder()
    instr = _open([rec, Snapshots()], [])
    a = _step("STARTED")
    b = {**_step("SUCCEEDED"), "Id": "op2"}
    instr.checkpoint_response([a])
    instr.checkpoint_response([b, _step("SUCCEEDED")])
    instr.checkpoint_response([])  # a response without operations is no change
    instr.deliver_changes()
    changes = [i for h, i in rec.calls if h == "operation_change"]
    assert [sorted(c.updated_operations) for c in changes] == [["op1"], ["op1", "op2"]]
    (_, first), (_, second) = seen
    assert first["op1"].status == "STARTED" and "op2" not in first
    assert second["op1"].status == "SUCCEEDED" and second["op2"].status == "SUCCEEDED"
    assert all(set(c.updated_operations) <= set(c.operations) for c in changes)
    assert "exec1" in first
    with pytest.raises(TypeError):
        changes[0].operations["x"] = None  # read-only


def test_process_plugins_join_every_handler_until_removed(monkeypatch):
    monkeypatch.delenv(registry.ENV_VAR, raising=False)
    rec = Recorder()
    remove = registry.add_process_plugin(rec)
    try:
        sources = registry.configured_sources()
        assert len(sources) == 1
        Instrumentation.open(sources, ARN, None, [EXEC], ()).invocation_start()
        assert [h for h, _ in rec.calls] == ["invocation_start"]
    finally:
        remove()
    assert registry.configured_sources() == []


def test_paired_end_hooks_unwind_in_reverse_order():
    calls = []

    class Labelled(Recorder):
        def __init__(self, label):
            super().__init__([])
            self.label = label

    first, second = Labelled("A"), Labelled("B")
    for plugin in (first, second):
        plugin.calls = type("Sink", (list,), {"append": lambda self, item, p=plugin: calls.append((item[0], p.label))})()
    instr = _open([first, second], [])
    instr.invocation_start()
    instr.begin("op1", "STEP", "Step", "s", None, None)
    token = instr.user_function_start("op1", "STEP", "Step", "s", None, None, attempt=1)
    instr.user_function_end(token, None)
    instr.ended({"Id": "op1", "Type": "STEP", "Action": "SUCCEED"}, None)
    instr.invocation_end({"Status": "SUCCEEDED"}, [EXEC])
    assert calls == [("invocation_start", "A"), ("invocation_start", "B"),
                     ("operation_start", "A"), ("operation_start", "B"),
                     ("user_function_start", "A"), ("user_function_start", "B"),
                     ("user_function_end", "B"), ("user_function_end", "A"),
                     ("operation_end", "A"), ("operation_end", "B"),
                     ("invocation_end", "B"), ("invocation_end", "A")]
