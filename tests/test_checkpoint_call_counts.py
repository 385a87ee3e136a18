"""The in-memory engine's cost per sequential step, in Python function calls (deterministic, unlike
timings): answering a checkpoint with the operations its batch changed must stay cheap.

Figures (calls per step over 1,000 steps, Python 3.11; engine = calls of Python functions in
``durable_sync/local``): 212 in all and 33 in the engine before the checkpoint path's fast paths, 174 and 24
with them. The bounds leave room for small changes elsewhere.
"""
from __future__ import annotations

import cProfile
import os
import pstats

import durable_sync as ds
from durable_sync.local import LocalEngine

ENGINE_DIR = os.path.join("durable_sync", "local") + os.sep
MAX_CALLS_PER_STEP = 188
MAX_ENGINE_CALLS_PER_STEP = 25


def sequential(n: int):
    @ds.durable_handler
    def steps(event, ctx):
        return sum(ctx.step(lambda _s, i=i: i, name="add") for i in range(n))
    return steps


def calls(n: int) -> tuple[int, int]:
    """(all calls, calls of durable_sync/local functions) of one in-memory run of ``n`` steps."""
    engine = LocalEngine(db=":memory:", skip_time=True)
    try:
        handler = sequential(n)
        prof = cProfile.Profile()
        prof.enable()
        result = engine.run(handler, {})
        prof.disable()
    finally:
        engine.close()
    assert result.status == "SUCCEEDED" and result.result == n * (n - 1) // 2
    stats = pstats.Stats(prof).stats
    engine_calls = sum(nc for (path, _line, _fn), (_cc, nc, *_rest) in stats.items() if ENGINE_DIR in path)
    return sum(nc for (_cc, nc, *_rest) in stats.values()), engine_calls


def test_a_sequential_step_costs_a_bounded_number_of_calls():
    LocalEngine(db=":memory:", skip_time=True).run(sequential(3), {})  # lazy imports out of the way
    small, large = calls(200), calls(400)
    per_step = (large[0] - small[0]) / 200
    engine_per_step = (large[1] - small[1]) / 200
    assert engine_per_step <= MAX_ENGINE_CALLS_PER_STEP, engine_per_step
    assert per_step <= MAX_CALLS_PER_STEP, per_step
