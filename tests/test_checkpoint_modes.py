"""How many checkpoint round trips an execution pays, in CheckpointMode.AWAITED and PIPELINED (SPEC §3).

An update is persisted before anything could act on it (the next step body, an at-most-once
START, a wait, a callback, an invoke, the end of the invocation), and no sooner: a step's
SUCCEED rides with the next awaited update. In PIPELINED mode an at-least-once step's SUCCEED
is awaited by nothing but the next awaited point or the end of the invocation.

Call counts of sequential handlers are deterministic once the flusher's background thread does
not send by itself (``quiet_background``: it would only send earlier, in more calls, never later).
"""
from __future__ import annotations

import threading

import pytest

import durable_sync as ds
from durable_sync import wire

from helpers import events, refuse_checkpoints_naming

AMO = ds.StepConfig(step_semantics=ds.StepSemantics.AT_MOST_ONCE_PER_RETRY)
PIPELINED = ds.CheckpointMode.PIPELINED


@pytest.fixture(autouse=True)
def quiet_background(monkeypatch):
    """Queued updates leave only with an awaited update or the end of the invocation."""
    monkeypatch.setattr("durable_sync.checkpoint.ASYNC_LINGER_SECONDS", 3600.0)


@pytest.fixture
def calls(engine):
    """The update lists of every checkpoint call the engine receives."""
    seen: list[list[dict]] = []
    real = engine.checkpoint

    def counting(arn, token, updates, client_token=None, **kw):
        seen.append(list(updates))
        return real(arn, token, updates, client_token, **kw)

    engine.checkpoint = counting
    return seen


def steps(ctx, n, config=None, start=0):
    return [ctx.step(f"s{i}", lambda s, i=i: i, config=config) for i in range(start, start + n)]


def actions(batch):
    return [(u.get("Name"), u["Action"]) for u in batch]


def run(engine, handler, expected):
    result = engine.run(handler, {})
    assert result.status == "SUCCEEDED", result.error
    assert result.result == expected
    return result


# ============================================================================= AWAITED (the default)


def test_at_least_once_steps_cost_one_call_each(engine, calls):
    @ds.durable_handler
    def handler(event, ctx):
        return steps(ctx, 50)

    run(engine, handler, list(range(50)))
    assert len(calls) == 50
    # step i's SUCCEED, sent before step i + 1's body runs, with step i + 1's START (which would otherwise
    # wait through that body unsaved); the first START rides with the first SUCCEED, the last SUCCEED at the end
    assert [actions(c) for c in calls] == [
        [*([("s0", "START")] if i == 0 else []), (f"s{i}", "SUCCEED"), *([(f"s{i + 1}", "START")] if i < 49 else [])]
        for i in range(50)]


@pytest.mark.parametrize("position", [0, 2])
def test_a_long_step_body_is_recorded_as_started_while_it_runs(engine, monkeypatch, position):
    """An at-least-once START does not wait for the SUCCEED: the first step of an invocation is sent by the
    background thread once it lingered, a later one rides with the previous step's SUCCEED."""
    monkeypatch.setattr("durable_sync.checkpoint.ASYNC_LINGER_SECONDS", 0.002)
    started = threading.Event()

    def listener(arn, event):
        if event["EventType"] == "StepStarted" and event.get("Name") == "long":
            started.set()

    engine.add_listener(listener)

    @ds.durable_handler
    def handler(event, ctx):
        steps(ctx, position)
        return ctx.step("long", lambda s: started.wait(30))  # True: recorded while the body ran

    run(engine, handler, True)


def test_at_most_once_steps_take_one_call_each_plus_one(engine, calls):
    @ds.durable_handler
    def handler(event, ctx):
        return steps(ctx, 50, AMO)

    run(engine, handler, list(range(50)))
    assert len(calls) == 51  # not 100: each START carries the previous step's SUCCEED
    assert actions(calls[0]) == [("s0", "START")]
    assert all(actions(calls[i]) == [(f"s{i - 1}", "SUCCEED"), (f"s{i}", "START")] for i in range(1, 50))
    assert actions(calls[50]) == [("s49", "SUCCEED")]


def test_steps_around_a_wait_across_two_invocations(engine, calls):
    @ds.durable_handler
    def handler(event, ctx):
        first = steps(ctx, 10)
        ctx.wait(1, name="pause")
        return first + steps(ctx, 10, start=10)

    run(engine, handler, list(range(20)))
    assert len(calls) == 20  # 9 + the wait's START (carrying s9's SUCCEED), then 9 + the end
    assert actions(calls[9])[-2:] == [("s9", "SUCCEED"), ("pause", "START")]


def test_a_map_branch_saves_its_step_and_itself_in_one_call(engine, calls):
    @ds.durable_handler
    def handler(event, ctx):
        batch = ctx.map(list(range(5)), lambda c, item, i, items: c.step("double", lambda s: item * 2),
                        name="map", config=ds.MapConfig(max_concurrency=1))
        return batch.get_results()

    run(engine, handler, [0, 2, 4, 6, 8])
    # one call per item: each before the next item's step body, the last one at the end
    assert len(calls) == 5
    succeeded = [[u["SubType"] for u in c if u["Action"] == "SUCCEED"] for c in calls]
    assert succeeded[1:4] == [["Step", "MapIteration"]] * 3  # the step and its branch, together
    assert succeeded[-1] == ["Step", "MapIteration", "Map"]


# ============================================================================= PIPELINED


def test_pipelined_steps_are_saved_by_the_end_of_the_invocation(engine, calls):
    @ds.durable_handler(checkpoint_mode=PIPELINED)
    def handler(event, ctx):
        return steps(ctx, 50)

    result = run(engine, handler, list(range(50)))
    assert len(calls) == 1 and len(calls[0]) == 100
    assert actions(calls[0]) == [(f"s{i}", a) for i in range(50) for a in ("START", "SUCCEED")]
    assert [e["Name"] for e in events(engine, result.arn, "StepSucceeded")] == [f"s{i}" for i in range(50)]


def test_pipelined_per_step_in_an_awaited_handler(engine, calls):
    @ds.durable_handler
    def handler(event, ctx):
        return steps(ctx, 20, ds.StepConfig(checkpoint_mode=PIPELINED))

    run(engine, handler, list(range(20)))
    assert len(calls) == 1


def test_an_awaited_step_in_a_pipelined_handler(engine, calls):
    @ds.durable_handler(checkpoint_mode=PIPELINED)
    def handler(event, ctx):
        return steps(ctx, 10, ds.StepConfig(checkpoint_mode=ds.CheckpointMode.AWAITED))

    run(engine, handler, list(range(10)))
    assert len(calls) == 10


@pytest.mark.parametrize("what", ["at-most-once step", "wait", "callback", "invoke"])
def test_pipelined_updates_are_saved_before_anything_that_needs_the_service(engine, calls, what):
    engine.register_function("target", lambda event, context: {"ok": True})

    @ds.durable_handler(checkpoint_mode=PIPELINED)
    def handler(event, ctx):
        out = steps(ctx, 5)
        if what == "at-most-once step":
            out.append(ctx.step("amo", lambda s: 5, config=AMO))
        elif what == "wait":
            ctx.wait(1, name="pause")
        elif what == "callback":
            ctx.create_callback(name="cb")
        else:
            ctx.invoke("target", {}, name="call")
        return out

    arn = engine.start(handler, {})
    # the first call is the one that needed the service; it carries every pipelined step before it
    assert [u["Action"] for u in calls[0]] == ["START", "SUCCEED"] * 5 + ["START"]
    assert calls[0][-1]["Type"] in (wire.STEP, wire.WAIT, wire.CALLBACK, wire.CHAINED_INVOKE)
    engine.close()
    assert arn


def test_at_most_once_steps_stay_awaited_in_a_pipelined_handler(engine, calls):
    @ds.durable_handler(checkpoint_mode=PIPELINED)
    def handler(event, ctx):
        return steps(ctx, 10, AMO)

    run(engine, handler, list(range(10)))
    assert len(calls) == 11


def test_unsaved_pipelined_updates_never_exceed_one_batch(engine, calls):
    @ds.durable_handler(checkpoint_mode=PIPELINED)
    def handler(event, ctx):
        return sum(steps(ctx, 300))

    run(engine, handler, sum(range(300)))
    assert [len(c) for c in calls] == [250, 250, 100]
    assert max(len(c) for c in calls) <= wire.MAX_BATCH_UPDATES


def test_a_refused_pipelined_checkpoint_fails_the_execution_clearly(engine, calls):
    refuse_checkpoints_naming(engine, "s3")
    ran = []

    @ds.durable_handler(checkpoint_mode=PIPELINED)
    def handler(event, ctx):
        out = steps(ctx, 5)
        out.append(ctx.step("after", lambda s: ran.append("after") or 5, config=AMO))
        return out

    result = engine.run(handler, {})
    assert result.status == "FAILED"
    assert "InvalidParameterValueException" in result.error["ErrorMessage"]
    assert ran == []  # the failure surfaced before the at-most-once body could run
    assert not [e for e in events(engine, result.arn, "StepSucceeded")]  # nothing of the refused batch


def test_checkpoint_mode_is_validated(engine):
    with pytest.raises(ds.ValidationError, match="CheckpointMode"):
        ds.durable_handler(checkpoint_mode="PIPELINED")(lambda event, ctx: None)
    with pytest.raises(ds.ValidationError, match="CheckpointMode.PIPELINED, not the string"):
        ds.StepConfig(checkpoint_mode="pipelined")


def test_an_invocation_that_fails_still_saves_its_pipelined_steps(engine, calls):
    @ds.durable_handler(checkpoint_mode=PIPELINED)
    def handler(event, ctx):
        steps(ctx, 5)
        raise RuntimeError("after five steps")

    result = engine.run(handler, {})
    assert result.status == "FAILED" and "after five steps" in result.error["ErrorMessage"]
    assert [e["Name"] for e in events(engine, result.arn, "StepSucceeded")] == [f"s{i}" for i in range(5)]
    assert len(calls) == 1  # saved before the invocation returned its failure


class EndsSeen(ds.InstrumentationPlugin):
    def __init__(self):
        self.ends = []

    def on_operation_end(self, info):
        self.ends.append((info.name, info.status, info.end_time is not None))


def test_with_plugins_an_end_is_awaited_so_the_hook_sees_the_record(engine, calls):
    plugin = EndsSeen()

    @ds.durable_handler(plugins=[plugin])
    def handler(event, ctx):
        return steps(ctx, 5, AMO)

    run(engine, handler, list(range(5)))
    assert len(calls) == 10  # each at-most-once step: its START, then its SUCCEED
    assert plugin.ends == [(f"s{i}", "SUCCEEDED", True) for i in range(5)]


def test_with_plugins_pipelined_steps_still_ride_along(engine, calls):
    plugin = EndsSeen()

    @ds.durable_handler(plugins=[plugin], checkpoint_mode=PIPELINED)
    def handler(event, ctx):
        return steps(ctx, 5)

    run(engine, handler, list(range(5)))
    assert len(calls) == 1
    assert [name for name, _, _ in plugin.ends] == [f"s{i}" for i in range(5)]
