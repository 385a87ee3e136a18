"""Per-step overhead of sequential steps: the SQLite store against the in-memory store.

    python benchmarks/sqlite_steps.py                # 2,000 steps, median of 5 runs
    python benchmarks/sqlite_steps.py --steps 5000 --runs 7 --synchronous FULL

Each run is one execution of a handler making ``--steps`` sequential no-op steps on a fresh
``LocalEngine(skip_time=True)``; the figure is wall time / steps, the median of the runs. Both
stores are measured in the same process, alternately, so the ratio compares like with like.
Target: at most 100 µs per step on SQLite (WAL, synchronous=NORMAL, one commit per checkpoint).
"""
from __future__ import annotations

import argparse
import gc
import os
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
from durable_sync.local.sqlite_store import SqliteStore  # noqa: E402

TARGET_US = 100.0


def _noop(step: ds.StepContext) -> int:
    return 1


@ds.durable_handler
def sequential(event: dict, ctx: ds.DurableContext) -> int:
    total = 0
    for i in range(event["steps"]):
        total += ctx.step(f"s{i}", _noop)
    return total


def one_run(db: object, steps: int) -> tuple[float, float]:
    """(wall, CPU) seconds for one execution of ``steps`` sequential steps (engine start/close excluded)."""
    engine = LocalEngine(db=db, skip_time=True)
    try:
        gc.collect()
        gc.disable()
        c0, t0 = time.process_time(), time.perf_counter()
        result = engine.run(sequential, {"steps": steps})
        elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
        gc.enable()
        assert result.status == "SUCCEEDED" and result.result == steps, result
        return elapsed, cpu
    finally:
        gc.enable()
        engine.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--synchronous", default="NORMAL", help="SQLite synchronous setting (default NORMAL)")
    args = parser.parse_args(argv)

    one_run(":memory:", 200)  # warm up imports and caches
    memory, sqlite = [], []
    with tempfile.TemporaryDirectory(prefix="durable-bench-") as tmp:
        for k in range(args.runs):
            memory.append(one_run(":memory:", args.steps))
            store = SqliteStore(os.path.join(tmp, f"bench-{k}.db"), synchronous=args.synchronous)
            sqlite.append(one_run(store, args.steps))
    def per_step(runs: list, i: int, how: Any = statistics.median) -> float:
        return how([r[i] for r in runs]) / args.steps * 1e6

    mem_us, sql_us = per_step(memory, 0), per_step(sqlite, 0)
    print(f"sequential steps: {args.steps} per run, median of {args.runs} runs (Python {sys.version.split()[0]}, "
          f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f})")
    print(f"  in-memory store : {mem_us:8.1f} µs/step   (min {per_step(memory, 0, min):.1f}, "
          f"CPU {per_step(memory, 1):.1f})")
    print(f"  SQLite store    : {sql_us:8.1f} µs/step   (min {per_step(sqlite, 0, min):.1f}, "
          f"CPU {per_step(sqlite, 1):.1f}; WAL, synchronous={args.synchronous.upper()})")
    print(f"  ratio sqlite/mem: {sql_us / mem_us:8.2f} x     (SQLite adds {sql_us - mem_us:.1f} µs/step)")
    verdict = "PASS" if sql_us <= TARGET_US else "FAIL"
    print(f"  target <= {TARGET_US:.0f} µs/step on SQLite: {verdict}")
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    raise SystemExit(main())
