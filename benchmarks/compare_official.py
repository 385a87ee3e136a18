"""durable_sync vs the official AWS SDK's local runner, same workflows, same process.

    pip install aws-durable-execution-sdk-python-testing   # not a project dependency
    python benchmarks/compare_official.py [--repeat 5] [--quick] [--sqlite]

Workflows (step bodies shared with benchmarks/workloads.py, so both SDKs run the
same user code): sequential steps (1,000 by default) and a map of 1,000 items x 1
step at max_concurrency 10. The official side is
``aws_durable_execution_sdk_python_testing.runner.DurableFunctionTestRunner``
(skip_time=True, in-memory store) running an ``@durable_execution`` handler; the
durable_sync side is ``LocalEngine(db=":memory:", skip_time=True)``. Runs
alternate (official, ours, official, ...) and medians are compared per unit
(per step / per item), so a smaller official n (``--official-steps``) still
gives a fair per-step ratio. ``--sqlite`` adds the same pair on each side's SQLite store
(durable_sync's only when durable_sync/local/store/sqlite.py exists).
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Optional

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import workloads as wl  # noqa: E402
from benchmarks.run import CheckpointCounter, machine_info  # noqa: E402
from durable_sync.local import LocalEngine  # noqa: E402

DEFAULT_JSON = ROOT / "benchmarks" / "results" / "official.json"
TARGET_SEQUENTIAL_X = 40.0
TARGET_MAP_X = 10.0
INSTALL_HINT = """\
The official SDK's testing package is not installed in this interpreter ({python}).
It is not a dependency of durable_sync; to run this comparison install it, e.g. in a separate venv:

    python3 -m venv /tmp/official-venv
    /tmp/official-venv/bin/pip install aws-durable-execution-sdk-python-testing jsonpickle tenacity
    /tmp/official-venv/bin/python benchmarks/compare_official.py

(or `pip install aws-durable-execution-sdk-python-testing` into this Python). It brings
aws-durable-execution-sdk-python; jsonpickle and tenacity are durable_sync's own runtime deps."""


def official_available() -> bool:
    return importlib.util.find_spec("aws_durable_execution_sdk_python_testing") is not None


# -- the official side -------------------------------------------------------------------------------
class Official:
    def __init__(self) -> None:
        from aws_durable_execution_sdk_python.config import MapConfig
        from aws_durable_execution_sdk_python.execution import durable_execution
        from aws_durable_execution_sdk_python_testing.runner import DurableFunctionTestRunner

        self.MapConfig = MapConfig
        self.durable_execution = durable_execution
        self.Runner = DurableFunctionTestRunner

    def sequential(self, n: int) -> Callable:
        @self.durable_execution
        def sequential_steps(event: Any, ctx: Any) -> int:
            return wl.sequential_body(ctx, n)
        return sequential_steps

    def map(self, n: int, concurrency: int = 10) -> Callable:
        config = self.MapConfig(max_concurrency=concurrency)

        @self.durable_execution
        def map_items(event: Any, ctx: Any) -> int:
            result = ctx.map(list(range(n)), wl.map_item, name="map", config=config)
            return sum(result.get_results())
        return map_items

    def run(self, handler: Callable, expected: Any, store: str) -> dict:
        tmp = None
        kwargs: dict[str, Any] = {}
        if store == "sqlite":
            from aws_durable_execution_sdk_python_testing.stores.sqlite import SQLiteExecutionStore

            tmp = tempfile.mkdtemp(prefix="official-bench-")
            kwargs["store"] = SQLiteExecutionStore.create_and_initialize(os.path.join(tmp, "official.db"))
        runner = self.Runner(handler=handler, **kwargs)
        calls = {"calls": 0, "updates": 0}
        client = runner._service_client  # noqa: SLF001 - the object the SDK's checkpoints go through
        inner = client.checkpoint

        def checkpoint(*a: Any, **kw: Any) -> Any:  # the SDK calls it with keywords
            updates = kw["updates"] if "updates" in kw else a[2]
            calls["calls"] += 1
            calls["updates"] += len(updates)
            return inner(*a, **kw)

        client.checkpoint = checkpoint
        try:
            t0 = time.perf_counter()
            res = runner.run(input="{}", execution_timeout=3600)
            elapsed = time.perf_counter() - t0
        finally:
            runner.close()
            if tmp:
                shutil.rmtree(tmp, ignore_errors=True)
        status = getattr(res.status, "value", res.status)
        value = json.loads(res.result) if isinstance(res.result, str) else res.result
        if status != "SUCCEEDED" or value != expected:
            raise RuntimeError(f"official run: status {status}, result {res.result!r:.80}, error {res.error}")
        return {"s": elapsed, **calls}


# -- durable_sync side -----------------------------------------------------------------------------
def run_ours(handler: Callable, expected: Any, store: str) -> dict:
    tmp = None
    db = ":memory:"
    if store == "sqlite":
        tmp = tempfile.mkdtemp(prefix="durable-bench-")
        db = os.path.join(tmp, "bench.db")
    engine = LocalEngine(db=db, skip_time=True)
    try:
        counter = CheckpointCounter(engine)
        t0 = time.perf_counter()
        res = engine.run(handler, {})
        elapsed = time.perf_counter() - t0
    finally:
        engine.close()
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    if res.status != "SUCCEEDED" or res.result != expected:
        raise RuntimeError(f"durable_sync run: status {res.status}, result {res.result!r:.80}, error {res.error}")
    return {"s": elapsed, "calls": counter.calls, "updates": counter.updates}


def ours_sqlite_available() -> tuple[bool, str]:
    if importlib.util.find_spec("durable_sync.local.store") is None:
        return False, "durable_sync/local/store/sqlite.py does not exist yet"
    tmp = tempfile.mkdtemp(prefix="durable-bench-")
    try:
        engine = LocalEngine(db=os.path.join(tmp, "probe.db"), skip_time=True)
        cls = type(engine._store).__name__  # noqa: SLF001
        engine.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return (cls != "MemoryStore"), f"store class {cls}"


def summarize(samples: list[dict], n: int) -> dict:
    med = statistics.median(s["s"] for s in samples)
    calls = statistics.median(s["calls"] for s in samples)
    updates = statistics.median(s["updates"] for s in samples)
    return {"n": n, "median_s": med, "samples_s": [s["s"] for s in samples], "us_per_unit": med / n * 1e6,
            "checkpoint_calls": calls, "updates_per_call": updates / calls if calls else None}


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python benchmarks/compare_official.py",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--repeat", type=int, default=None, help="runs per side and workload (default 5, quick 2)")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--steps", type=int, default=1000, help="sequential steps for durable_sync (default 1000)")
    p.add_argument("--official-steps", type=int, default=None,
                   help="sequential steps for the official runner (default: same as --steps)")
    p.add_argument("--items", type=int, default=1000, help="map items for both sides (default 1000)")
    p.add_argument("--official-items", type=int, default=None, help="map items for the official runner")
    p.add_argument("--sqlite", action="store_true",
                   help="also compare the SQLite stores (official SQLiteExecutionStore vs LocalEngine(db=path))")
    p.add_argument("--sqlite-official-steps", type=int, default=200,
                   help="sequential steps / map items for the official SQLite store (default 200: it rewrites "
                        "the whole execution on every checkpoint, so its cost per step grows with n)")
    p.add_argument("--json", default=str(DEFAULT_JSON), help=f"where to write results (default {DEFAULT_JSON})")
    args = p.parse_args(argv)

    if not official_available():
        print(INSTALL_HINT.format(python=sys.executable))
        return 0

    logging.getLogger("aws_durable_execution_sdk_python").setLevel(logging.ERROR)
    logging.getLogger("aws_durable_execution_sdk_python_testing").setLevel(logging.ERROR)
    from importlib.metadata import version

    repeat = args.repeat or (2 if args.quick else 5)
    official = Official()
    info = machine_info()
    versions = {pkg: version(pkg) for pkg in ("aws-durable-execution-sdk-python",
                                              "aws-durable-execution-sdk-python-testing")}
    print(f"durable_sync vs official SDK  |  {info['python']}, nproc={info['nproc']}, {info['cpu']}, "
          f"commit {info['commit'] or '?'}")
    print("official: " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    print(f"median of {repeat} alternating runs per side; ratios compare cost per step / per item\n")

    notes: list[str] = []
    stores = ["memory"]
    ours_sqlite_ok = False
    if args.sqlite:
        stores.append("sqlite")
        ours_sqlite_ok, why = ours_sqlite_available()
        if not ours_sqlite_ok:
            notes.append(f"durable_sync SQLite side skipped: {why}")

    plan = []  # (key, title, store, official (handler, n, expected), ours (handler, n, expected) | None)
    for store in stores:
        seq_n = args.steps
        seq_off = args.official_steps or seq_n
        map_n = args.items
        map_off = args.official_items or map_n
        if store == "sqlite":
            seq_off = min(seq_off, args.sqlite_official_steps)
            map_off = min(map_off, args.sqlite_official_steps)
        ours_ok = store == "memory" or ours_sqlite_ok
        plan.append((f"sequential_{store}", "sequential steps", store,
                     (official.sequential(seq_off), seq_off, wl.sequential_expected(seq_off)),
                     (wl.make_sequential(seq_n), seq_n, wl.sequential_expected(seq_n)) if ours_ok else None))
        ours_map = None
        if ours_ok and wl.has_map():
            ours_map = (wl.make_map(map_n, 10), map_n, wl.map_expected(map_n))
        elif ours_ok and store == "memory":
            notes.append("ctx.map is not available in durable_sync yet (durable_sync/batch.py): map ratio skipped")
        plan.append((f"map_{store}", "map items x 1 step, concurrency 10", store,
                     (official.map(map_off, 10), map_off, wl.map_expected(map_off)), ours_map))

    # Warm both sides (imports, thread pools) once, unmeasured.
    official.run(official.sequential(20), wl.sequential_expected(20), "memory")
    run_ours(wl.make_sequential(20), wl.sequential_expected(20), "memory")

    rows = []
    for key, title, store, off, ours in plan:
        off_samples, our_samples = [], []
        error = None
        for _ in range(repeat):
            try:
                off_samples.append(official.run(off[0], off[2], store))
                if ours is not None:
                    our_samples.append(run_ours(ours[0], ours[2], store))
            except Exception as exc:  # noqa: BLE001
                error = f"{type(exc).__name__}: {exc}"
                break
        row: dict[str, Any] = {"workload": key, "title": title, "store": store}
        if error:
            row["error"] = error
            notes.append(f"{key}: {error}")
        if off_samples:
            row["official"] = summarize(off_samples, off[1])
        if our_samples:
            row["durable_sync"] = summarize(our_samples, ours[1])
        if "official" in row and "durable_sync" in row:
            row["speedup_x"] = row["official"]["us_per_unit"] / row["durable_sync"]["us_per_unit"]
            if row["official"]["n"] != row["durable_sync"]["n"]:
                notes.append(f"{key}: the official runner ran {row['official']['n']:,} and durable_sync "
                             f"{row['durable_sync']['n']:,} units; the ratio compares cost per unit")
        rows.append(row)

    unit = {"sequential": "step", "map": "item"}
    head = (f"{'workload':38} {'store':7} {'official':>24} {'durable_sync':>24} {'speed-up':>9}  "
            f"{'ckpt calls (off / ours)':>24}")
    print(head)
    print("-" * len(head))
    for r in rows:
        u = unit[r["workload"].split("_")[0]]

        def cell(side: str) -> str:
            s = r.get(side)
            return "-" if not s else f"{s['n']:>5,} {s['us_per_unit']:8.1f} us/{u}"

        calls = " / ".join("-" if side not in r else f"{r[side]['checkpoint_calls']:,.0f}"
                           for side in ("official", "durable_sync"))
        speed = f"{r['speedup_x']:.1f}x" if "speedup_x" in r else "-"
        print(f"{r['title']:38} {r['store']:7} {cell('official'):>24} {cell('durable_sync'):>24} {speed:>9}  "
              f"{calls:>24}")
    if notes:
        print()
        for note in notes:
            print(f"note: {note}")

    checks = []
    for key, target, label in (("sequential_memory", TARGET_SEQUENTIAL_X, "sequential steps"),
                               ("map_memory", TARGET_MAP_X, "map of 1,000 items")):
        r = next((x for x in rows if x["workload"] == key), None)
        if r is None or "speedup_x" not in r:
            checks.append({"check": f"{label}: >= {target:.0f}x faster than the official runner", "result": "SKIP",
                           "detail": (r or {}).get("error", "not measured")})
            continue
        checks.append({"check": f"{label}: >= {target:.0f}x faster than the official runner",
                       "result": "PASS" if r["speedup_x"] >= target else "FAIL",
                       "detail": f"{r['official']['us_per_unit']:.1f} vs {r['durable_sync']['us_per_unit']:.1f} "
                                 f"us per unit = {r['speedup_x']:.1f}x"})
    print()
    for c in checks:
        print(f"{c['result']}  {c['check']}  ({c['detail']})")

    out = {"command": "python benchmarks/compare_official.py " + " ".join(argv if argv is not None else sys.argv[1:]),
           "machine": info, "official_versions": versions, "repeat": repeat, "results": rows, "checks": checks,
           "notes": notes}
    path = Path(args.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2, default=str) + "\n", encoding="utf-8")
    print(f"\nresults written to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
