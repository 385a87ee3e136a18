"""Non-determinism at every point of an execution's life.

One execution of a workflow (steps, a wait, a child block, a run_in_child_context, a callback,
a map, a polled condition) is recorded. Then every prefix of its history -- the state as the
service held it after 1, 2, ... k events -- is replayed against:

- the unchanged code: every prefix replays cleanly (no NonDeterminismError, by the testing
  toolkit's ``replay`` check and by the SDK itself);
- mutated code (renamed, reordered, removed, added operations, a changed type, a change inside a
  map branch): a prefix that holds the operation where the code first diverges is reported with
  NonDeterminismError naming that operation (and what the code asks for instead); a prefix that
  ends before it replays cleanly, because nothing recorded contradicts the code yet.

Each prefix is checked twice: by ``durable_sync.testing.replay`` (which also reports removed
operations) and by feeding the prefix's operations straight to the handler as an invocation
envelope, where the SDK's own check must fail the invocation with NonDeterminismError.
"""
from __future__ import annotations

import json

import pytest

import durable_sync as ds
from durable_sync.errors import NonDeterminismError
from durable_sync.testing import DurableTestRunner, operations_from_history, replay


def _value(v):
    return lambda s: v


def _poll(state, attempt):
    return ds.WaitForConditionDecision.stop_polling() if state >= 2 else \
        ds.WaitForConditionDecision.continue_waiting(3)


def make_workflow(variant: str = "original"):
    """The workflow; ``variant`` names the mutation (see MUTATIONS)."""

    def branch(c, item, index, items):
        name = f"m-{index}"
        if variant == "branch-rename" and index == 1:
            name = "m-1-renamed"
        return c.step(name, _value(item * 10))

    @ds.durable_handler
    def workflow(event, ctx):
        if variant != "remove-first":
            ctx.step("a", _value(1))
        ctx.step("b-renamed" if variant == "rename" else "b", _value(2))
        if variant == "add":
            ctx.step("extra", _value(0))
        if variant == "wait-to-step":
            ctx.step("pause", _value(0))
        else:
            ctx.wait(5, name="pause")
        with ctx.child("group") as c:
            order = ("d", "c") if variant == "reorder" else ("c", "d")
            for name in order:
                c.step(name, _value(name))
        ctx.run_in_child_context(lambda c: c.step("inner", _value(3)), name="sub")
        callback = ctx.create_callback(name="cb")
        ctx.map([1, 2], branch, name="m")
        answer = callback.result()
        state = ctx.wait_for_condition(lambda s, c: s + 1, ds.WaitForConditionConfig(
            wait_strategy=_poll, initial_state=0), name="poll")
        if variant != "remove-last":
            ctx.step("e", _value(4))
        return {"answer": answer, "state": state}

    return workflow


# variant -> (recorded operation where the code first diverges, what the code asks for there or None)
MUTATIONS = {
    "rename": ("b", "b-renamed"),
    "reorder": ("c", "d"),
    "remove-first": ("a", "b"),
    "add": ("pause", "extra"),
    "wait-to-step": ("pause", "pause"),
    "branch-rename": ("m-1", "m-1-renamed"),
    "remove-last": ("e", None),  # only the replay check sees it: the code never asks for anything there
}


@pytest.fixture(scope="module")
def history():
    runner = DurableTestRunner(make_workflow())
    try:
        runner.start({})
        runner.send_callback_success(runner.wait_for_callback("cb"), {"ok": True})
        result = runner.wait()
        assert result.status == "SUCCEEDED", result.error
        return list(result.history)
    finally:
        runner.close()


class _Client:
    def __init__(self):
        self.n = 0

    def checkpoint(self, arn, token, updates, client_token):
        self.n += 1
        ops = [{"Id": u["Id"], "Type": "CALLBACK", "SubType": u.get("SubType"), "Name": u.get("Name"),
                "ParentId": u.get("ParentId"), "Status": "STARTED", "CallbackDetails": {"CallbackId": f"c{self.n}"}}
               for u in updates if u["Type"] == "CALLBACK" and u["Action"] == "START"]
        return {"CheckpointToken": f"t{self.n}", "NewExecutionState": {"Operations": ops}}

    def get_state(self, arn, token, marker):
        return {"Operations": []}


class _Context:
    def __init__(self):
        self.durable_client = _Client()


def _sdk_replay(handler, events):
    """The prefix's operations as an invocation envelope: what the SDK itself says."""
    ops = operations_from_history(events)
    exec_op = next(op for op in ops if op["Type"] == "EXECUTION")
    arn = f"arn:aws:lambda:us-east-1:000000000000:function:w:$LATEST/durable-execution/n/{exec_op['Id']}"
    envelope = {"DurableExecutionArn": arn, "CheckpointToken": "t0",
                "InitialExecutionState": {"Operations": json.loads(json.dumps(ops, default=str))}}
    return handler(envelope, _Context())


def _prefixes(history):
    return [history[:k] for k in range(1, len(history) + 1)]


def test_unchanged_code_replays_every_prefix_cleanly(history):
    handler = make_workflow()
    assert len(history) > 30
    statuses = set()
    for events in _prefixes(history):
        result = replay(events, handler)  # raises NonDeterminismError on any difference
        statuses.add(result.status)
        output = _sdk_replay(handler, events)
        assert output["Status"] in ("PENDING", "SUCCEEDED"), (len(events), output)
    assert statuses == {"PENDING", "SUCCEEDED"}


@pytest.mark.parametrize("variant", sorted(MUTATIONS))
def test_every_prefix_reports_the_mutation_once_the_record_reaches_it(history, variant):
    recorded_name, asked = MUTATIONS[variant]
    handler = make_workflow(variant)
    detected = clean = 0
    for events in _prefixes(history):
        names = {op.get("Name") for op in operations_from_history(events)}
        reached = recorded_name in names
        where = f"{variant}, prefix of {len(events)} events ending {events[-1]['EventType']} {events[-1].get('Name')}"
        if reached:
            with pytest.raises(NonDeterminismError) as info:
                replay(events, handler)
            message = str(info.value)
            assert repr(recorded_name) in message, (where, message)
            if asked is not None:
                assert repr(asked) in message, (where, message)
            else:
                assert "never reached" in message, (where, message)
            detected += 1
            if asked is not None:  # the SDK's own check, without the testing toolkit
                output = _sdk_replay(handler, events)
                assert output["Status"] == "FAILED", (where, output)
                error = output["Error"]
                assert error["ErrorType"] == "NonDeterminismError", (where, error)
                assert repr(recorded_name) in error["ErrorMessage"] and repr(asked) in error["ErrorMessage"], \
                    (where, error)
        else:
            replay(events, handler)  # nothing recorded contradicts the code yet
            output = _sdk_replay(handler, events)
            assert output["Status"] in ("PENDING", "SUCCEEDED"), (where, output)
            clean += 1
    assert detected > 0
    if variant not in ("remove-first", "rename"):
        assert clean > 1  # prefixes before the divergence replay cleanly
