"""Official-SDK handlers move to durable_sync by changing their imports, and executions move between the SDKs.

``migration_handlers.py`` is official-SDK code (every operation kind, the official keyword names,
decorators and configs). ``migrated()`` builds the same module with only its import block replaced
by durable_sync's. Then:

- the migrated handlers give on the engine the results the official SDK's own local runner gives
  for the original ones;
- the original handlers hosted by the engine and the migrated ones record the same operations (ids,
  parents, types, subtypes, names -- map items ``map-item-<i>``, branches ``parallel-branch-<i>``);
- an execution started by one SDK and, after its first invocations (it waits for a callback), resumed
  by the other replays without NonDeterminismError and ends with the same result, in both directions;
  with values the two write differently (dicts, tuples, batch results) too: durable_sync reads the
  official format, and writes it when its handler has ``serdes=ds.serdes.ExtendedTypeSerDes()``.
"""
from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import durable_sync as ds
from durable_sync.local import LocalEngine

sdk = pytest.importorskip("aws_durable_execution_sdk_python")
testing = pytest.importorskip("aws_durable_execution_sdk_python_testing")

from aws_durable_execution_sdk_python_testing import DurableFunctionTestRunner  # noqa: E402

from . import migration_handlers as OFFICIAL  # noqa: E402

SOURCE = Path(OFFICIAL.__file__).read_text(encoding="utf-8")
BEGIN, END = "# -- imports: the only lines", "# -- end of imports"
OUR_IMPORTS = '''# -- imports: the only lines that change when the handlers move to durable_sync -------------------------------
from durable_sync import (BatchResult, DurableContext, StepContext, StepError,
                          durable_execution, durable_parallel_branch, durable_step,
                          durable_wait_for_callback, durable_with_child_context)
from durable_sync import (CallbackConfig, ChildConfig, CompletionConfig, Duration,
                          InvokeConfig, JitterStrategy, MapConfig, ParallelBranch,
                          ParallelConfig, StepConfig, StepSemantics,
                          WaitForCallbackConfig)
from durable_sync import RetryStrategyConfig, create_retry_strategy
from durable_sync.serdes import JsonSerDes
from durable_sync import WaitForCallbackContext, WaitForConditionCheckContext
from durable_sync import (WaitForConditionConfig, WaitStrategyConfig,
                          create_wait_strategy)
'''
DEADLINE = 90  # real seconds the official runner may take to show a callback


def migrated() -> types.ModuleType:
    """migration_handlers.py with its import block swapped for durable_sync's, nothing else changed."""
    start, end = SOURCE.index(BEGIN), SOURCE.index(END)
    text = SOURCE[:start] + OUR_IMPORTS + SOURCE[end:]
    assert text.replace(OUR_IMPORTS, "") == SOURCE.replace(SOURCE[start:end], "")
    name = "migrated_handlers"
    module = sys.modules[name] = types.ModuleType(name)
    exec(compile(text, f"{name}.py", "exec"), module.__dict__)  # noqa: S102 - test code
    assert "aws_durable_execution_sdk_python" not in repr(vars(module).get("durable_execution"))
    return module


OURS = migrated()


def _reset():
    OFFICIAL.ATTEMPTS.clear()
    OURS.ATTEMPTS.clear()


def _engine(handlers) -> LocalEngine:
    return LocalEngine(db=":memory:", skip_time=True, functions=dict(handlers.FUNCTIONS))


def _answer(engine, arn, name, text):
    """Answer the open callback ``name`` of ``arn`` (the execution waits for it; virtual time stands still
    until ``engine.wait``, so its timeout does not fire)."""
    assert engine.get_execution(arn).status == "RUNNING"
    ids = [e["CallbackStartedDetails"]["CallbackId"] for e in engine.history(arn)
           if e["EventType"] == "CallbackStarted" and e.get("Name") == name]
    assert len(ids) == 1, (name, ids)
    engine.send_callback_success(ids[0], text)


def _run_approvals(engine, handlers):
    arn = engine.start(handlers.approvals, {"order_id": "o-3"})
    for name, answer in handlers.APPROVAL_ANSWERS:
        _answer(engine, arn, name, answer)
    return engine.wait(arn)


def _identity(engine, arn):
    """The operations an execution recorded, as the replay identity check sees them."""
    return sorted((op["Id"], op.get("ParentId") or "", op["Type"], op.get("SubType") or "", op.get("Name") or "")
                  for op in engine.operations(arn) if op["Type"] != "EXECUTION")


# -- the reference: the official SDK's own local runner ---------------------------------------------------------
@pytest.fixture(scope="module")
def reference():
    out = {}
    for name, payload in OFFICIAL.CASES.items():
        _reset()
        with DurableFunctionTestRunner(OFFICIAL.FUNCTIONS[name], poll_interval=0.01) as runner:
            runner.register_durable_function("invoice", OFFICIAL.invoice)
            result = runner.run(input=json.dumps(payload), execution_timeout=3600 * 24)
            assert result.status.value == "SUCCEEDED", (name, result.error)
            out[name] = json.loads(result.result)
    for name, answers in (("approvals", OFFICIAL.APPROVAL_ANSWERS), ("handoff", [("gate", '{"extra": 100}')]),
                          ("rich_handoff", [("gate", '{"extra": 100}')])):
        with DurableFunctionTestRunner(OFFICIAL.FUNCTIONS[name], poll_interval=0.01) as runner:
            arn = runner.run_async(input=json.dumps({"order_id": "o-3"}), execution_timeout=3600 * 24)
            for callback, answer in answers:
                runner.send_callback_success(runner.wait_for_callback(arn, name=callback, timeout=DEADLINE),
                                             answer.encode())
            result = runner.wait_for_result(arn, timeout=DEADLINE)
            assert result.status.value == "SUCCEEDED", (name, result.error)
            out[name] = json.loads(result.result)
    return out


def test_the_handler_module_is_official_sdk_code():
    assert OFFICIAL.durable_execution.__module__.startswith("aws_durable_execution_sdk_python")
    assert OURS.durable_execution.__module__.startswith("durable_sync")


def test_official_handlers_moved_by_their_imports_give_the_official_results(reference):
    engine = _engine(OURS)
    try:
        for name, payload in OFFICIAL.CASES.items():
            _reset()
            result = engine.run(OURS.FUNCTIONS[name], payload)
            assert result.status == "SUCCEEDED", (name, result.error)
            assert result.result == reference[name], name
        approvals = _run_approvals(engine, OURS)
        assert (approvals.status, approvals.result) == ("SUCCEEDED", reference["approvals"]), approvals.error
    finally:
        engine.close()
    assert reference["order"]["reservation"] == "R-o-1" and reference["fan_out"]["tolerant"][:2] == [3, 1]


def test_both_sdks_record_the_same_operations(reference):
    """Same ids, parents, types, subtypes and names: what makes an execution replayable by the other SDK."""
    recorded = {}
    for handlers in (OFFICIAL, OURS):
        engine = _engine(handlers)
        try:
            runs = {}
            for name, payload in OFFICIAL.CASES.items():
                _reset()
                result = engine.run(handlers.FUNCTIONS[name], payload)
                assert (result.status, result.result) == ("SUCCEEDED", reference[name]), (handlers, name, result.error)
                runs[name] = _identity(engine, result.arn)
            runs["approvals"] = _identity(engine, _run_approvals(engine, handlers).arn)
            recorded[handlers.__name__] = runs
        finally:
            engine.close()
    official, ours = recorded.values()
    for name in official:
        assert ours[name] == official[name], name
    names = {op[4] for run in official.values() for op in run}
    assert {"map-item-0", "map-item-2", "parallel-branch-1", "parallel-branch-3", "quote-pear"} <= names


@pytest.mark.parametrize("first, second", [(OFFICIAL, OURS), (OURS, OFFICIAL)],
                         ids=["official-then-durable_sync", "durable_sync-then-official"])
def test_an_execution_started_by_one_sdk_is_finished_by_the_other(reference, first, second):
    engine = LocalEngine(db=":memory:", skip_time=True)
    try:
        first.HANDOFF_RUNS.clear()
        second.HANDOFF_RUNS.clear()
        arn = engine.start(first.handoff, {"order_id": "o-3"}, name="handoff-1", function_name="handoff")
        assert engine.wait(arn).status == "RUNNING"  # waits for the gate callback (it has no timeout)
        assert first.HANDOFF_RUNS and not second.HANDOFF_RUNS
        done_before = {op.get("Name") for op in engine.operations(arn)}
        assert {"price", "inner", "amounts", "map-item-0", "map-item-2", "gate"} <= done_before
        assert "more" not in done_before
        engine.register_function("handoff", second.handoff)  # a new deployment, with the other SDK
        _answer(engine, arn, "gate", '{"extra": 100}')
        result = engine.wait(arn)
        assert result.status == "SUCCEEDED", result.error
        assert result.result == reference["handoff"]
        history = engine.history(arn)
        assert not [e for e in history if e["EventType"] == "InvocationCompleted"
                    and (e.get("InvocationCompletedDetails") or {}).get("Error")]
        assert second.HANDOFF_RUNS  # the other SDK replayed the execution and finished it
        done_after = {op.get("Name") for op in engine.operations(arn)}
        assert {"more", "history-backoff", "parallel-branch-1", "last"} <= done_after
    finally:
        engine.close()


def _official_format(handler):
    """The one-line change for executions that go from durable_sync to the official SDK: its value format."""
    return ds.durable_handler(handler.__durable_function__, serdes=ds.serdes.ExtendedTypeSerDes())


@pytest.mark.parametrize("direction", ["official-then-durable_sync", "durable_sync-then-official"])
def test_executions_with_dicts_tuples_and_batch_results_move_between_the_sdks(reference, direction):
    """Values the SDKs write differently: durable_sync reads the official SDK's format by default; going the
    other way it writes that format when its handler says so (serdes=ds.serdes.ExtendedTypeSerDes())."""
    first, second = ((OFFICIAL.rich_handoff, OURS.rich_handoff) if direction.startswith("official")
                     else (_official_format(OURS.rich_handoff), OFFICIAL.rich_handoff))
    engine = LocalEngine(db=":memory:", skip_time=True)
    try:
        arn = engine.start(first, {"order_id": "o-3"}, name="rich-1", function_name="rich")
        assert engine.wait(arn).status == "RUNNING"
        stored = {op.get("Name"): op for op in engine.operations(arn)}
        assert stored["early"]["Status"] == "SUCCEEDED" and stored["side"]["Status"] == "SUCCEEDED"
        assert json.loads(stored["early"]["ContextDetails"]["Result"])["t"] == "br"  # the official format
        engine.register_function("rich", second)
        _answer(engine, arn, "gate", '{"extra": 100}')
        result = engine.wait(arn)
        assert result.status == "SUCCEEDED", result.error
        assert result.result == reference["rich_handoff"]
    finally:
        engine.close()


# -- the value format ---------------------------------------------------------------------------------------------
_leaves = (st.none() | st.booleans() | st.integers(-2**60, 2**60) | st.floats(allow_nan=False)
           | st.text(max_size=8) | st.binary(max_size=8) | st.uuids() | st.decimals(allow_nan=False, allow_infinity=False)
           | st.datetimes() | st.dates())
_values = st.recursive(_leaves, lambda inner: st.lists(inner, max_size=4) | st.tuples(inner, inner)
                       | st.dictionaries(st.text(max_size=5), inner, max_size=4), max_leaves=12)


@settings(max_examples=300, deadline=None)
@given(value=_values)
def test_extended_type_serdes_writes_and_reads_the_official_format(value):
    from aws_durable_execution_sdk_python.serdes import ExtendedTypeSerDes as Official

    official, ours = Official(), ds.serdes.ExtendedTypeSerDes()
    text = official.serialize(value, None)
    assert ours.serialize(value) == text
    assert ours.deserialize(text) == value == official.deserialize(ours.serialize(value), None)
    assert ds.serdes.DEFAULT_SERDES.deserialize(text) == value  # the default reads it too


@settings(max_examples=200, deadline=None)
@given(value=st.dictionaries(st.sampled_from(["t", "v", "x", "py/t"]), _values, max_size=3))
def test_a_plain_dict_with_t_and_v_keys_round_trips_through_the_default_serdes(value):
    default = ds.serdes.DEFAULT_SERDES
    assert default.deserialize(default.serialize(value)) == value
