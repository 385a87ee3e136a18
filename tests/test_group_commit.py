"""Group commit through the whole SDK: concurrent units share checkpoint calls even when the
service answers at once (the in-memory engine never releases the GIL).

The gathering bound is raised to seconds here, so batching depends only on the runner
accounting (pool units, owner waits, step bodies): a thread wrongly counted as running
makes a gathering end by its bound, which ``gather_timeouts`` records and these tests
reject. No test measures time.
"""
from __future__ import annotations

import threading

import pytest

import durable_sync as ds
from durable_sync import handler as handler_module
from durable_sync.checkpoint import Flusher

WAIT = 10  # seconds: a bound for events that should come at once


@pytest.fixture
def flushers(monkeypatch):
    """Every Flusher the SDK builds in this test, and a long gathering bound."""
    monkeypatch.setattr("durable_sync.checkpoint.GATHER_SECONDS", 2.0)
    made: list[Flusher] = []

    class Recording(Flusher):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            made.append(self)

    monkeypatch.setattr(handler_module, "Flusher", Recording)
    return made


@pytest.fixture
def counted(engine):
    """Counts the engine's checkpoint calls and updates."""
    stats = {"calls": 0, "updates": 0}
    real = engine.checkpoint

    def checkpoint(arn, token, updates, client_token=None, **kw):
        stats["calls"] += 1
        stats["updates"] += len(updates)
        return real(arn, token, updates, client_token, **kw)

    engine.checkpoint = checkpoint
    return stats


def settled(flushers):
    """Every invocation's flusher ended with only the handler's thread counted, and no gathering hit its bound."""
    assert flushers
    for f in flushers:
        assert f._runners == 1, "a thread was left counted as running durable code"
        assert f.gather_timeouts == 0, "a gathering waited for a thread that was not running durable code"


def test_map_items_share_checkpoint_calls_on_the_in_memory_engine(engine, counted, flushers):
    @ds.durable_handler
    def handler(event, ctx):
        result = ctx.map(list(range(200)), lambda c, item, i, items: c.step(lambda _s: item * 2, name="double"),
                         name="map", config=ds.MapConfig(max_concurrency=10))
        return sum(result.get_results())

    res = engine.run(handler)
    assert res.status == "SUCCEEDED" and res.result == sum(i * 2 for i in range(200))
    # 4 updates per item; one call per item and awaited update without group commit: 2.0 per call
    assert counted["updates"] / counted["calls"] >= 5
    settled(flushers)


def test_parallel_branches_share_checkpoint_calls(engine, counted, flushers):
    @ds.durable_handler
    def handler(event, ctx):
        branches = [lambda c, i=i: c.step(lambda _s: i, name="work") for i in range(40)]
        return sum(ctx.parallel(branches, name="par", config=ds.ParallelConfig(max_concurrency=8)).get_results())

    res = engine.run(handler)
    assert res.status == "SUCCEEDED" and res.result == sum(range(40))
    assert counted["updates"] / counted["calls"] >= 5
    settled(flushers)


def test_a_step_body_blocked_on_another_unit_does_not_hold_a_gathering(engine, flushers):
    """Branch 0's step body waits until branch 1 has checkpointed twice: if bodies counted as running
    durable code, branch 1's checkpoints would wait for branch 0 until the gathering bound."""
    released = threading.Event()

    def waiting_branch(c):
        return c.step(lambda _s: released.wait(WAIT), name="wait-for-sibling")

    def releasing_branch(c):
        c.step(lambda _s: 1, name="first")
        c.step(lambda _s: released.set() or 2, name="release")
        return c.step(lambda _s: 3, name="after")

    @ds.durable_handler
    def handler(event, ctx):
        return ctx.parallel([waiting_branch, releasing_branch], name="par").get_results()

    res = engine.run(handler)
    assert res.status == "SUCCEEDED" and res.result == [True, 3]
    settled(flushers)


def test_an_owner_waiting_on_a_unit_does_not_hold_a_gathering(engine, flushers):
    """The concurrently block's own thread waits for a unit's result: it is not running durable code."""

    @ds.durable_handler
    def handler(event, ctx):
        with ctx.concurrently("g", max_concurrency=4) as group:
            futures = [group.step(f"s{i}", lambda _s, i=i: i) for i in range(12)]
            first = futures[0].result()
            inner = group.run_in_child_context(lambda c: c.step("inner", lambda _s: 100) + 1, name="kid")
            total = first + inner.result()
        return total + sum(f.result() for f in futures)

    res = engine.run(handler)
    assert res.status == "SUCCEEDED" and res.result == 0 + 101 + sum(range(12))
    settled(flushers)


def test_nested_maps_keep_the_accounting_balanced(engine, flushers):
    @ds.durable_handler
    def handler(event, ctx):
        def outer(c, item, i, items):
            inner = c.map([item, item + 1], lambda cc, x, j, xs: cc.step(lambda _s: x, name="x"), name="inner",
                          config=ds.MapConfig(max_concurrency=2))
            return sum(inner.get_results())

        return sum(ctx.map(list(range(6)), outer, name="outer", config=ds.MapConfig(max_concurrency=3)).get_results())

    res = engine.run(handler)
    assert res.status == "SUCCEEDED" and res.result == sum(2 * i + 1 for i in range(6))
    settled(flushers)
