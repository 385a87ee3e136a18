"""map / parallel / concurrently without max_concurrency: every branch may be in flight at once.

Threads start at ``pool.INITIAL_THREADS`` and grow to ``pool.DEFAULT_MAX_THREADS`` once a
checkpoint call is slow (``checkpoint.SLOW_CALL_SECONDS``): against a far-away service the
threads mostly wait on round trips, and more branches in flight share each one. The tests pin
what counts as slow (0 s: every call; an hour: none) so nothing depends on timing.
"""
from __future__ import annotations

import threading

import pytest

import durable_sync as ds
from durable_sync import pool

from helpers import Overlap

BRANCHES = 30
TIMEOUT = 30  # seconds; a bound for a barrier that should open at once
assert pool.INITIAL_THREADS < BRANCHES <= pool.DEFAULT_MAX_THREADS


def slow_calls(monkeypatch, slow: bool) -> None:
    monkeypatch.setattr("durable_sync.checkpoint.SLOW_CALL_SECONDS", 0.0 if slow else 3600.0)


def pool_threads_alive() -> int:
    return sum(1 for t in threading.enumerate() if t.name.startswith(("durable-map", "durable-parallel",
                                                                      "durable-concurrently")))


def branch_body(barrier, overlap, threads=None):
    """Checkpoint once, then meet every other branch (or just count how many meet, and the pool threads alive)."""
    def body(c):
        c.step("first", lambda s: 1)

        def meet(s):
            if threads is not None:
                threads.append(pool_threads_alive())
            with overlap:
                if barrier is not None:
                    barrier.wait(TIMEOUT)  # opens only when every branch is in flight at once
            return 1
        return c.step("meet", meet)
    return body


def run_all(kind, body):
    @ds.durable_handler
    def handler(event, ctx):
        if kind == "map":
            return ctx.map(list(range(BRANCHES)), lambda c, item, i, items: body(c), name="all").success_count
        if kind == "parallel":
            return ctx.parallel([body] * BRANCHES, name="all").success_count
        with ctx.concurrently("all") as group:
            futures = [group.run_in_child_context(body, name=f"unit-{i}") for i in range(BRANCHES)]
        return sum(1 for f in futures if f.result() == 1)
    return handler


@pytest.mark.parametrize("kind", ["map", "parallel", "concurrently"])
def test_against_a_slow_service_every_branch_is_in_flight_at_once(engine, monkeypatch, kind):
    slow_calls(monkeypatch, True)
    baseline = threading.active_count()
    overlap = Overlap()
    result = engine.run(run_all(kind, branch_body(threading.Barrier(BRANCHES), overlap)))
    assert result.status == "SUCCEEDED", result.error
    assert result.result == BRANCHES
    assert overlap.max == BRANCHES
    assert threading.active_count() == baseline  # every grown thread was joined


@pytest.mark.parametrize("kind", ["map", "parallel", "concurrently"])
def test_against_a_fast_service_the_threads_do_not_grow(engine, monkeypatch, kind):
    slow_calls(monkeypatch, False)
    alive: list = []
    result = engine.run(run_all(kind, branch_body(None, Overlap(), alive)))
    assert result.status == "SUCCEEDED", result.error
    assert result.result == BRANCHES
    assert len(alive) == BRANCHES and max(alive) <= pool.INITIAL_THREADS  # pool threads alive at any time


def test_max_concurrency_is_never_exceeded_by_growth(engine, monkeypatch):
    slow_calls(monkeypatch, True)
    overlap = Overlap()

    @ds.durable_handler
    def handler(event, ctx):
        return ctx.map(list(range(BRANCHES)), lambda c, item, i, items: branch_body(None, overlap)(c), name="four",
                       config=ds.MapConfig(max_concurrency=4)).success_count

    result = engine.run(handler)
    assert result.result == BRANCHES
    assert overlap.max <= 4
