"""Replay checks: does changed code still replay a recorded execution?

``runner.replay(recorded, new_handler)`` feeds a recorded execution (a TestResult, its
operation records or its history events) to new code and raises NonDeterminismError
with a per-context diff when the code asks for other operations than the record holds.
``DurableTestRunner(handler, always_replay=True)`` replays after every operation, so
non-determinism that one long invocation would hide shows up in the test.
"""
from __future__ import annotations

import uuid

import pytest

import durable_sync as ds
from durable_sync.testing import operations_from_history, replay


def _value(v):
    return lambda s: v


@ds.durable_handler
def checkout_v1(event, ctx):
    reserved = ctx.step("reserve", _value("r-1"))
    charged = ctx.step("charge", _value("c-1"))
    with ctx.child("ship") as c:
        c.step("label", _value("l-1"))
        c.wait(60, name="pickup")
    return {"reserved": reserved, "charged": charged}


@ds.durable_handler
def checkout_reordered(event, ctx):
    charged = ctx.step("charge", _value("c-1"))  # swapped with "reserve"
    reserved = ctx.step("reserve", _value("r-1"))
    with ctx.child("ship") as c:
        c.step("label", _value("l-1"))
        c.wait(60, name="pickup")
    return {"reserved": reserved, "charged": charged}


@ds.durable_handler
def checkout_renamed_inner(event, ctx):
    reserved = ctx.step("reserve", _value("r-1"))
    charged = ctx.step("charge", _value("c-1"))
    with ctx.child("ship") as c:
        c.step("print-label", _value("l-1"))  # was "label"
        c.wait(60, name="pickup")
    return {"reserved": reserved, "charged": charged}


@ds.durable_handler
def checkout_without_shipping(event, ctx):
    reserved = ctx.step("reserve", _value("r-1"))
    charged = ctx.step("charge", _value("c-1"))
    return {"reserved": reserved, "charged": charged}  # the "ship" context is gone


@ds.durable_handler
def checkout_with_receipt(event, ctx):
    result = checkout_v1.__durable_function__(event, ctx)
    ctx.step("receipt", _value("x"))  # added after everything the record holds
    return result


@ds.durable_handler
def checkout_wait_instead_of_step(event, ctx):
    ctx.step("reserve", _value("r-1"))
    ctx.wait(5, name="charge")  # same name, other type
    return {}


@pytest.fixture
def recorded(durable_runner):
    result = durable_runner(checkout_v1).run({"order": 7})
    result.assert_succeeded()
    return result


def test_unchanged_code_replays_cleanly(recorded, durable_runner):
    outcome = durable_runner(checkout_v1).replay(recorded, checkout_v1)
    assert outcome.status == "SUCCEEDED"
    assert outcome.result == recorded.result
    assert len(outcome.visited) == len(recorded.operations) - 1  # every operation but EXECUTION
    assert outcome.new_operations == ()


def test_reordered_steps_are_caught(recorded):
    with pytest.raises(ds.NonDeterminismError) as info:
        replay(recorded, checkout_reordered)
    message = str(info.value)
    assert "operation #1 of the handler: the code asks for STEP 'charge', but the record has STEP 'reserve'" \
        in message
    assert "reordered?" in message
    # the diff shows both columns for the root context
    assert "recorded" in message and "code now" in message
    assert "! #1" in message


def test_renamed_operation_in_a_child_context_is_caught(recorded):
    with pytest.raises(ds.NonDeterminismError) as info:
        replay(recorded, checkout_renamed_inner)
    message = str(info.value)
    assert "operation #1 of context 'ship'" in message
    assert "'print-label'" in message and "'label'" in message
    assert "renamed" in message


def test_removed_operations_are_reported_when_the_handler_returns(recorded):
    with pytest.raises(ds.NonDeterminismError) as info:
        replay(recorded, checkout_without_shipping)
    message = str(info.value)
    assert "the record has CONTEXT 'ship', which the code never reached (removed operation)" in message
    assert "(never reached)" in message


def test_added_operation_after_a_finished_record_is_caught_before_it_runs(recorded):
    ran = []

    @ds.durable_handler
    def with_side_effect(event, ctx):
        checkout_v1.__durable_function__(event, ctx)
        ctx.step("refund", lambda s: ran.append("refund"))

    with pytest.raises(ds.NonDeterminismError) as info:
        replay(recorded, with_side_effect)
    assert "STEP 'refund', which the record does not have (added operation" in str(info.value)
    assert ran == []  # new code past a finished record never runs

    with pytest.raises(ds.NonDeterminismError, match="'receipt'"):
        replay(recorded, checkout_with_receipt)


def test_operation_of_another_type_is_caught(recorded):
    with pytest.raises(ds.NonDeterminismError, match="asks for WAIT 'charge', but the record has STEP 'charge'"):
        replay(recorded, checkout_wait_instead_of_step)


def test_replay_from_history_events_alone(recorded):
    """A history (e.g. from boto3 get_durable_execution_history) is enough to replay."""
    outcome = replay(recorded.history, checkout_v1)
    assert outcome.status == "SUCCEEDED" and outcome.result == recorded.result
    with pytest.raises(ds.NonDeterminismError, match="reordered"):
        replay({"Events": recorded.history}, checkout_reordered)
    rebuilt = {op["Id"]: op for op in operations_from_history(recorded.history)}
    assert {op["Id"] for op in recorded.operations} == set(rebuilt)
    assert rebuilt[recorded.get_step("charge").id]["StepDetails"]["Result"] == '"c-1"'


def test_replay_of_an_execution_still_running(durable_runner):
    @ds.durable_handler
    def slow(event, ctx):
        ctx.step("a", _value(1))
        ctx.wait(3600, name="nap")
        return ctx.step("b", _value(2))

    runner = durable_runner(slow)
    runner.start()
    snapshot = runner.result()
    assert snapshot.status == "RUNNING"
    outcome = runner.replay(snapshot, slow)  # the code stops at the same pending wait
    assert outcome.status == "PENDING"

    @ds.durable_handler
    def slow_reordered(event, ctx):
        ctx.wait(3600, name="nap")
        ctx.step("a", _value(1))
        return ctx.step("b", _value(2))

    with pytest.raises(ds.NonDeterminismError, match="asks for WAIT 'nap', but the record has STEP 'a'"):
        runner.replay(snapshot, slow_reordered)

    @ds.durable_handler
    def slow_without_wait(event, ctx):
        ctx.step("a", _value(1))
        return ctx.step("b", _value(2))

    with pytest.raises(ds.NonDeterminismError, match="asks for STEP 'b', but the record has WAIT 'nap'"):
        runner.replay(snapshot, slow_without_wait)


def test_replay_of_a_failed_execution_and_of_run_in_child_context(durable_runner):
    def group(c):
        c.step("inner", _value(3))
        return "g"

    @ds.durable_handler
    def failing(event, ctx):
        ctx.run_in_child_context(group, name="group")
        ctx.step("explode", lambda s: 1 / 0, config=ds.StepConfig(retry_strategy=ds.RetryPresets.none()))

    runner = durable_runner(failing)
    result = runner.run()
    result.assert_failed(error_type="ZeroDivisionError")  # StepError keeps the original type
    outcome = runner.replay()  # default: the runner's current execution and handler
    assert outcome.status == "FAILED"
    assert outcome.error["ErrorType"] == "ZeroDivisionError"
    assert replay(result.history, failing).status == "FAILED"


# --------------------------------------------------------------------------- always replay

_counter = {"invocations": 0}


@ds.durable_handler
def names_a_step_with_a_uuid(event, ctx):
    order_id = uuid.uuid4().hex[:8]  # non-deterministic, outside a step
    ctx.step(f"charge-{order_id}", _value("ok"))
    ctx.step("notify", _value("sent"))
    return "done"


def test_always_replay_exposes_hidden_non_determinism(durable_runner):
    # One invocation runs both steps, so the bug stays hidden...
    assert durable_runner(names_a_step_with_a_uuid).run().status == "SUCCEEDED"
    # ...until every operation is replayed.
    result = durable_runner(names_a_step_with_a_uuid, always_replay=True).run()
    result.assert_failed(error_type="NonDeterminismError", message="charge-")


def test_always_replay_runs_deterministic_code_to_the_same_result(durable_runner):
    bodies = []

    def body(label):
        def run(step_ctx):
            bodies.append(label)
            return label
        return run

    calls = []

    @ds.durable_handler
    def workflow(event, ctx):
        calls.append(event)
        a = ctx.step("a", body("a"))
        with ctx.child("group") as c:
            b = c.step("b", body("b"))
            c.result = c.step("c", body("c"))
        d = ctx.run_in_child_context(lambda c: c.step("d", body("d")), name="sub")
        ctx.wait(5, name="pause")
        return [a, b, d]

    plain = durable_runner(workflow).run("plain")
    every = durable_runner(workflow, always_replay=True).run("every")
    assert plain.status == every.status == "SUCCEEDED"
    assert plain.result == every.result == ["a", "b", "d"]
    assert bodies == ["a", "b", "c", "d"] * 2  # each body ran once per execution
    assert [op.name for op in every.all_operations()] == [op.name for op in plain.all_operations()]
    # the engine sees 2 invocations (before and after the wait) in both modes; always-replay
    # re-invokes inside them, so every step's record was replayed at least once
    assert every.invocation_count == plain.invocation_count == 2
    # plain: the handler ran twice. always-replay: once per new operation (a, group, b, c, sub, d,
    # pause: the second new operation of a run ends it), plus the run after the wait
    assert calls.count("plain") == 2
    assert calls.count("every") == 8


@pytest.mark.skipif(not all(hasattr(ds.DurableContext, m) for m in ("map", "parallel", "create_callback")),
                    reason="map / parallel / create_callback are not implemented yet")
def test_batches_and_callbacks_replay_in_both_modes(durable_runner):
    @ds.durable_handler
    def fan_out(event, ctx):
        squares = ctx.map([1, 2, 3], lambda c, item, i, items: c.step(f"sq-{item}", _value(item * item)),
                          name="squares")
        pair = ctx.parallel([lambda c: c.step("x", _value("x")), lambda c: c.step("y", _value("y"))], name="pair")
        callback = ctx.create_callback("answer")
        return {"squares": squares.get_results(), "pair": pair.get_results(), "answer": callback.result()}

    results = []
    for always in (False, True):
        runner = durable_runner(fan_out, always_replay=always)
        runner.start()
        runner.send_callback_success(runner.wait_for_callback("answer"), 42)
        result = runner.wait()
        assert result.result == {"squares": [1, 4, 9], "pair": ["x", "y"], "answer": 42}
        assert replay(result, fan_out).result == result.result
        assert replay(result.history, fan_out).result == result.result
        results.append(result)
    assert [op.name for op in results[0].all_operations()] == [op.name for op in results[1].all_operations()]

    @ds.durable_handler
    def without_pair(event, ctx):
        ctx.map([1, 2, 3], lambda c, item, i, items: c.step(f"sq-{item}", _value(item * item)), name="squares")
        return {"answer": ctx.create_callback("answer").result()}

    with pytest.raises(ds.NonDeterminismError, match="asks for CALLBACK 'answer', but the record has "
                                                     "CONTEXT/Parallel 'pair'"):
        replay(results[0], without_pair)
