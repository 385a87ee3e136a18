"""Per-step overhead of sequential steps: the SQLite store against the in-memory store.

    python benchmarks/sqlite_steps.py                # 2,000 steps, median of 5 runs
    python benchmarks/sqlite_steps.py --steps 5000 --runs 7 --synchronous FULL
    python benchmarks/sqlite_steps.py --profile      # + cProfile of one SQLite run, and one commit's phases

Each run is one execution of a handler making ``--steps`` sequential no-op steps on a fresh
``LocalEngine(skip_time=True)``; the figure is wall time / steps, the median of the runs. Both
stores are measured in the same process, alternately, so the ratio compares like with like.
Target: at most 100 µs per step on SQLite (WAL, synchronous=NORMAL, one commit per checkpoint).

Besides the wall time, each line shows where it goes: CPU time per step (all threads of the
process), the time spent inside the store's ``commit`` per step (SQLite: the commit and
what builds it), and voluntary context switches per step. A sequential step needs no thread
hand-off, so more than a few hundredths of a switch per step means some thread is woken per step
(each hand-off costs tens of µs on a small VM). The machine's own load skews all of it: compare
runs made at the same time, and look at the minimum as well as the median.
"""
from __future__ import annotations

import argparse
import gc
import os
import resource
import statistics
import sys
import tempfile
import time
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import durable_sync as ds  # noqa: E402
from durable_sync.local import LocalEngine  # noqa: E402
from durable_sync.local.store import SqliteStore  # noqa: E402

TARGET_US = 100.0
_STEP_SHAPE = ["BEGIN IMMEDIATE", "INSERT INTO operations", "INSERT INTO events", "COMMIT"]


def _noop(step: ds.StepContext) -> int:
    return 1


@ds.durable_handler
def sequential(event: dict, ctx: ds.DurableContext) -> int:
    total = 0
    for i in range(event["steps"]):
        total += ctx.step(f"s{i}", _noop)
    return total


class _Timed:
    """Wraps a store's commit to add up the time spent in it."""

    def __init__(self, store: Any):
        self.ns = 0
        self._save = store.commit
        store.commit = self

    def __call__(self, ex: Any, change: Any) -> None:
        t0 = time.perf_counter_ns()
        try:
            self._save(ex, change)
        finally:
            self.ns += time.perf_counter_ns() - t0


def one_run(db: object, steps: int) -> tuple[float, float, float, float]:
    """(wall s, CPU s, s in commit, voluntary context switches) for one execution of ``steps``
    sequential steps (engine start/close excluded)."""
    engine = LocalEngine(db=db, skip_time=True)
    timed = _Timed(engine._store)
    try:
        gc.collect()
        gc.disable()
        switches = resource.getrusage(resource.RUSAGE_SELF).ru_nvcsw
        timed.ns = 0
        c0, t0 = time.process_time(), time.perf_counter()
        result = engine.run(sequential, {"steps": steps})
        elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
        switches = resource.getrusage(resource.RUSAGE_SELF).ru_nvcsw - switches
        gc.enable()
        assert result.status == "SUCCEEDED" and result.result == steps, result
        return elapsed, cpu, timed.ns / 1e9, switches
    finally:
        gc.enable()
        engine.close()


def profile(tmp: str, steps: int, synchronous: str, top: int = 25) -> None:
    """cProfile of one SQLite run (by own time), then the phases of one commit, timed without the profiler."""
    import cProfile
    import pstats

    store = SqliteStore(os.path.join(tmp, "profile.db"), synchronous=synchronous)
    engine = LocalEngine(db=store, skip_time=True)
    prof = cProfile.Profile()
    try:
        prof.enable()
        engine.run(sequential, {"steps": steps})
        prof.disable()
    finally:
        engine.close()
    print(f"\ncProfile of one SQLite run ({steps} steps), top {top} by own time:")
    pstats.Stats(prof, stream=sys.stdout).sort_stats("tottime").print_stats(top)

    phases: dict[str, list[int]] = {}

    class Probe:  # times each statement of the store's transaction
        def __init__(self, conn: Any):
            self._conn = conn
            self.marks: list[tuple[str, int]] = []

        def execute(self, sql: str, *args: Any) -> Any:
            t0 = time.perf_counter_ns()
            try:
                return self._conn.execute(sql, *args)
            finally:
                self.marks.append((" ".join(sql.split()[:3]), time.perf_counter_ns() - t0))

        def __getattr__(self, name: str) -> Any:
            return getattr(self._conn, name)

    store = SqliteStore(os.path.join(tmp, "phases.db"), synchronous=synchronous)
    probe = store._conn = Probe(store._conn)
    save = store.commit

    def timed_save(ex: Any, change: Any) -> None:
        probe.marks = []
        t0 = time.perf_counter_ns()
        save(ex, change)
        total = time.perf_counter_ns() - t0
        if [name for name, _ in probe.marks] == _STEP_SHAPE:  # a sequential step's commit
            for name, ns in probe.marks:
                phases.setdefault(name, []).append(ns)
            phases.setdefault("Python (the rest)", []).append(total - sum(ns for _, ns in probe.marks))
            phases.setdefault("store commit, total", []).append(total)

    store.commit = timed_save
    engine = LocalEngine(db=store, skip_time=True)
    try:
        engine.run(sequential, {"steps": steps})
    finally:
        engine.close()
    print(f"One commit of a sequential step, by phase (medians over {len(phases.get('BEGIN IMMEDIATE', []))} "
          "commits; the probe itself adds ~0.3 µs per statement):")
    for name, values in phases.items():
        print(f"  {name:28s} {statistics.median(values) / 1000:7.1f} µs")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--synchronous", default="NORMAL", help="SQLite synchronous setting (default NORMAL)")
    parser.add_argument("--profile", action="store_true", help="also profile one SQLite run")
    args = parser.parse_args(argv)

    one_run(":memory:", 200)  # warm up imports and caches
    memory, sqlite = [], []
    with tempfile.TemporaryDirectory(prefix="durable-bench-") as tmp:
        for k in range(args.runs):
            memory.append(one_run(":memory:", args.steps))
            store = SqliteStore(os.path.join(tmp, f"bench-{k}.db"), synchronous=args.synchronous)
            sqlite.append(one_run(store, args.steps))
        if args.profile:
            profile(tmp, args.steps, args.synchronous)

    def per_step(runs: list, i: int, how: Any = statistics.median, scale: float = 1e6) -> float:
        return how([r[i] for r in runs]) / args.steps * scale

    def line(runs: list) -> str:
        return (f"{per_step(runs, 0):8.1f} µs/step   (min {per_step(runs, 0, min):.1f}, CPU {per_step(runs, 1):.1f}, "
                f"in store {per_step(runs, 2):.1f}, {per_step(runs, 3, scale=1):.2f} switches/step)")

    mem_us, sql_us = per_step(memory, 0), per_step(sqlite, 0)
    print(f"sequential steps: {args.steps} per run, median of {args.runs} runs (Python {sys.version.split()[0]}, "
          f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f})")
    print(f"  in-memory store : {line(memory)}")
    print(f"  SQLite store    : {line(sqlite)}; WAL, synchronous={args.synchronous.upper()}")
    print(f"  ratio sqlite/mem: {sql_us / mem_us:8.2f} x     (SQLite adds {sql_us - mem_us:.1f} µs/step)")
    verdict = "PASS" if sql_us <= TARGET_US else "FAIL"
    print(f"  target <= {TARGET_US:.0f} µs/step on SQLite: {verdict}")
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    raise SystemExit(main())
