"""durable_sync.pool.UnitPool on its own: what its owners (map/parallel, concurrently) rely on."""
from __future__ import annotations

import threading

import pytest

from durable_sync.pool import OK, UnitPool


def test_run_here_joins_its_workers_even_when_the_calling_threads_work_raises():
    caller = threading.get_ident()
    release = threading.Event()
    counts = {"entered": 0, "left": 0}

    def run(task):
        if threading.get_ident() != caller:
            release.wait(10)  # the other worker is still busy when the caller's work fails
        return OK, task

    def on_outcome(task, kind, value):
        if threading.get_ident() == caller:
            release.set()
            raise KeyboardInterrupt("the owner's bookkeeping failed")

    def activity(delta):
        counts["entered" if delta < 0 else "left"] += 1

    pool = UnitPool(run, on_outcome, max_slots=2, max_threads=2, label="durable-test-pool", activity=activity)
    with pytest.raises(KeyboardInterrupt):
        pool.run_here([1, 2], threads=2)
    assert not [t for t in threading.enumerate() if t.name.startswith("durable-test-pool")]
    assert counts["entered"] == counts["left"]  # every thread's running count was given back
