"""durable_sync benchmarks: one entry point, a table, PASS/FAIL checks and a JSON file.

    python -m benchmarks                  # full run (~1-2 min on 2 cores)
    python -m benchmarks --quick          # fewer runs (< 20 s)
    python benchmarks/run.py --repeat 7 --json /tmp/bench.json
    python -m benchmarks --profile 3000   # cProfile of 3,000 in-memory steps, top 15 by tottime
    python -m benchmarks --rtt-ms 0,5,20 [--against PATH]   # checkpoint round trips (benchmarks/rtt.py)

Every workload runs on ``LocalEngine(skip_time=True)`` with the in-memory store
(``db=":memory:"``) and the SQLite store (``db=<temp file>``); a fresh engine per
run, the figure is the median of the runs. Figures are also given as ratios
against baselines measured in the same process: the same step bodies called in a
plain loop ("x baseline") and the in-memory store ("sqlite/mem").
"""
from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `python benchmarks/run.py` from anywhere
    sys.path.insert(0, str(ROOT))

from benchmarks import workloads as wl  # noqa: E402
from durable_sync.local import LocalEngine  # noqa: E402

DEFAULT_JSON = ROOT / "benchmarks" / "results" / "latest.json"
MEMORY_STEPS = 10_000
MB = 1024 * 1024

# Targets of issue 8.
TARGET_SEQ_MEMORY_US = 30.0
TARGET_SEQ_SQLITE_US = 60.0
TARGET_REPLAY_S = 0.5
TARGET_LINEARITY = 12.0
TARGET_MAP_UPDATES_PER_CALL = 5.0
TARGET_MAP_US_PER_ITEM = 100.0
TARGET_PEAK_MB = 100.0


# -- stores ---------------------------------------------------------------------------------------------
@dataclass
class Store:
    key: str                # "memory" | "sqlite"
    available: bool
    note: str = ""

    def open(self) -> tuple[str, Callable[[], None]]:
        """A db argument for LocalEngine and a cleanup function."""
        if self.key == "memory":
            return ":memory:", lambda: None
        tmp = tempfile.mkdtemp(prefix="durable-bench-")
        return os.path.join(tmp, "bench.db"), lambda: shutil.rmtree(tmp, ignore_errors=True)


def detect_stores(wanted: list[str]) -> list[Store]:
    stores = []
    for key in wanted:
        if key == "memory":
            stores.append(Store("memory", True))
        elif key == "sqlite":
            if importlib.util.find_spec("durable_sync.local.store") is None:
                stores.append(Store("sqlite", False, "durable_sync/local/store/sqlite.py does not exist yet, so "
                                    "LocalEngine(db=path) would silently use memory: SQLite rows skipped"))
                continue
            store = Store("sqlite", True)
            db, cleanup = store.open()
            try:
                engine = LocalEngine(db=db, skip_time=True)
                cls = type(engine._store).__name__  # noqa: SLF001 - make sure we measure what we label
                engine.close()
            except Exception as exc:  # noqa: BLE001
                store.available, store.note = False, f"LocalEngine(db=path) failed: {type(exc).__name__}: {exc}"
            else:
                if cls == "MemoryStore":
                    store.available, store.note = False, "LocalEngine(db=path) fell back to MemoryStore: skipped"
                else:
                    store.note = f"store class {cls}"
            finally:
                cleanup()
            stores.append(store)
        else:
            raise SystemExit(f"unknown store {key!r} (memory, sqlite)")
    return stores


# -- measuring ------------------------------------------------------------------------------------------
class CheckpointCounter:
    """Wraps ``engine.checkpoint`` (what the in-process client calls) to count calls and updates."""

    def __init__(self, engine: LocalEngine):
        self.calls = 0
        self.updates = 0
        inner = engine.checkpoint

        def checkpoint(arn: str, token: str, updates: list, client_token: Optional[str] = None, **kw) -> dict:
            self.calls += 1
            self.updates += len(updates)
            return inner(arn, token, updates, client_token, **kw)

        engine.checkpoint = checkpoint  # type: ignore[method-assign]


def one_run(w: wl.Workload, store: Store) -> dict:
    handler = w.make()
    db, cleanup = store.open()
    engine = LocalEngine(db=db, skip_time=True)
    try:
        counter = CheckpointCounter(engine)
        gc.collect()
        c0 = time.process_time()
        t0 = time.perf_counter()
        if w.suspends:
            arn = engine.start(handler, {})
            t1 = time.perf_counter()
            res = engine.wait(arn)
        else:
            res = engine.run(handler, {})
            t1 = None
        t2 = time.perf_counter()
        cpu = time.process_time() - c0
        if res.status != "SUCCEEDED" or res.result != w.expected:
            raise RuntimeError(f"{w.key} on {store.key}: status {res.status}, result {res.result!r:.80} "
                               f"(expected {w.expected!r}), error {res.error}")
        invocations = sum(1 for e in engine.history(res.arn) if e["EventType"] == "InvocationCompleted")
        return {"total_s": t2 - t0, "cpu_s": cpu,
                "first_s": (t1 - t0) if t1 else None, "replay_s": (t2 - t1) if t1 else None,
                "calls": counter.calls, "updates": counter.updates, "invocations": invocations}
    finally:
        engine.close()
        cleanup()


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def time_baseline(fn: Callable[[], Any], tries: int = 3) -> float:
    """Best of ``tries`` runs of the plain-Python baseline (it is short: a noise spike must not pick it)."""
    best = float("inf")
    for _ in range(tries):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def calibrate() -> float:
    """A fixed pure-Python loop (~40 ms): printed at start and end to show how steady the machine was."""
    t = time.perf_counter()
    s = 0
    for i in range(1_000_000):
        s += i
    return time.perf_counter() - t


def warm_up(store: Store) -> None:
    """Import lazily-loaded modules and fill caches once per store, unmeasured."""
    small = [wl.Workload("warm_seq", "", 200, "step", lambda: wl.make_sequential(200), wl.sequential_expected(200),
                         lambda: None),
             wl.Workload("warm_wait", "", 200, "step", lambda: wl.make_steps_then_wait(200),
                         wl.sequential_expected(200), lambda: None, suspends=True)]
    if wl.has_map():
        small.append(wl.Workload("warm_map", "", 50, "item", lambda: wl.make_map(50), wl.map_expected(50),
                                 lambda: None))
    if wl.has_parallel():
        small.append(wl.Workload("warm_par", "", 10, "branch", lambda: wl.make_parallel(10), wl.parallel_expected(10),
                                 lambda: None))
    for w in small:
        try:
            one_run(w, store)
        except Exception:  # noqa: BLE001 - the measured run reports it
            pass


def measure(group: list[wl.Workload], stores: list[Store], repeats: dict[str, int]) -> list[dict]:
    """Measure a group of workloads (e.g. 1k and 10k steps) in rounds.

    Each round runs every workload of the group on every store, back to back, each run preceded by
    its baseline. Ratios are taken inside a round (run / the baseline timed just before it, sqlite /
    memory, 10k / 1k) and their median is reported, so a load spike on a shared machine moves both
    sides of a ratio together; ``repeats[key]`` rounds include workload ``key``.
    """
    runs: dict[tuple[str, str], list[dict]] = {(w.key, s.key): [] for w in group for s in stores}
    for rnd in range(max(repeats[w.key] for w in group)):
        for w in group:
            if rnd >= repeats[w.key]:
                continue
            for store in stores:
                baseline = time_baseline(w.baseline)
                r = one_run(w, store)
                r["baseline_s"] = baseline
                runs[(w.key, store.key)].append(r)
    rows = []
    for w in group:
        mem_runs = runs.get((w.key, "memory"))
        for store in stores:
            rs = runs[(w.key, store.key)]
            vs_mem = mem_runs is not None and store.key != "memory"
            total = median([r["total_s"] for r in rs])
            calls = median([r["calls"] for r in rs])
            updates = median([r["updates"] for r in rs])
            baseline = median([r["baseline_s"] for r in rs])
            row = {
                "workload": w.key, "group": w.group, "title": w.title, "store": store.key, "n": w.n, "unit": w.unit,
                "median_s": total, "min_s": min(r["total_s"] for r in rs), "samples_s": [r["total_s"] for r in rs],
                "us_per_unit": total / w.n * 1e6,
                "cpu_s": median([r["cpu_s"] for r in rs]),
                "cpu_us_per_unit": median([r["cpu_s"] for r in rs]) / w.n * 1e6,
                "baseline_s": baseline, "baseline_ns_per_unit": baseline / w.n * 1e9,
                "x_baseline": median([r["total_s"] / r["baseline_s"] for r in rs]),
                "x_memory": median([a["total_s"] / b["total_s"] for a, b in zip(rs, mem_runs)]) if vs_mem else None,
                "checkpoint_calls": calls, "updates": updates,
                "updates_per_call": (updates / calls) if calls else None,
                "invocations": median([r["invocations"] for r in rs]),
            }
            if w.suspends:
                first = median([r["first_s"] for r in rs])
                replay = median([r["replay_s"] for r in rs])
                row.update({
                    "first_invocation_s": first, "replay_invocation_s": replay,
                    "replay_samples_s": [r["replay_s"] for r in rs],
                    "replay_us_per_step": replay / w.n * 1e6,
                    "replay_x_baseline": median([r["replay_s"] / r["baseline_s"] for r in rs]),
                    "replay_x_memory": (median([a["replay_s"] / b["replay_s"] for a, b in zip(rs, mem_runs)])
                                        if vs_mem else None),
                    "replay_over_first": median([r["replay_s"] / r["first_s"] for r in rs])})
            rows.append(row)
    return rows


def paired_ratio(rows: list[dict], big: str, small: str, store: str) -> Optional[tuple[float, list[float]]]:
    """Median over rounds of total(big) / total(small), both measured in the same round."""
    b = next((r for r in rows if r["workload"] == big and r["store"] == store), None)
    s = next((r for r in rows if r["workload"] == small and r["store"] == store), None)
    if not b or not s:
        return None
    ratios = [x / y for x, y in zip(b["samples_s"], s["samples_s"])]
    return median(ratios), ratios


def otel_cost(rows: list[dict]) -> list[dict]:
    """Per store: a step's cost with OtelPlugin against the same steps without, from the same rounds."""
    out = []
    for plain in (r for r in rows if r["workload"] == "sequential_1k"):
        traced = next((r for r in rows if r["workload"] == "sequential_1k_otel" and r["store"] == plain["store"]), None)
        if traced is None:
            continue
        pairs = list(zip(traced["samples_s"], plain["samples_s"]))
        out.append({"store": plain["store"], "plain_us_per_step": plain["us_per_unit"],
                    "otel_us_per_step": traced["us_per_unit"],
                    "added_us_per_step": median([(t - p) / plain["n"] * 1e6 for t, p in pairs]),
                    "ratio": median([t / p for t, p in pairs])})
    return out


# -- memory (fresh subprocess per measurement, so the high-water marks are clean) ---------------------
def memory_probe(store_key: str, mode: str, n: int) -> dict:
    """Runs inside a fresh interpreter: n steps + a wait (suspend, then replay n steps), one execution."""
    import resource
    import tracemalloc

    store = Store(store_key, True)
    warm = LocalEngine(db=":memory:", skip_time=True)  # lazy imports out of the way
    warm.run(wl.make_steps_then_wait(10), {})
    warm.close()
    db, cleanup = store.open()
    handler = wl.make_steps_then_wait(n)
    engine = LocalEngine(db=db, skip_time=True)
    store_class = type(engine._store).__name__  # noqa: SLF001
    if store_key == "sqlite" and store_class == "MemoryStore":
        engine.close()
        cleanup()
        raise SystemExit("LocalEngine(db=path) fell back to MemoryStore in the memory probe")
    gc.collect()
    out: dict[str, Any] = {"store": store_key, "mode": mode, "n": n, "store_class": store_class}
    try:
        if mode == "tracemalloc":
            tracemalloc.start()
            res = engine.run(handler, {})
            current, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            out.update({"tracemalloc_peak_mb": peak / MB, "tracemalloc_retained_mb": current / MB})
        else:
            # Linux keeps ru_maxrss across fork+exec (the child starts with the parent's high-water mark),
            # so prefer /proc/self/status: VmRSS before the run, VmHWM (this image's peak RSS) after it.
            before, peak_after = _proc_status_kb("VmRSS"), None
            if before is not None:
                res = engine.run(handler, {})
                peak_after = _proc_status_kb("VmHWM")
                out.update({"rss_source": "/proc/self/status VmHWM - VmRSS before the run",
                            "rss_before_mb": before / 1024, "rss_peak_mb": peak_after / 1024,
                            "rss_delta_mb": (peak_after - before) / 1024})
            else:
                before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
                res = engine.run(handler, {})
                after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
                scale = 1024 * 1024 if sys.platform == "darwin" else 1024
                out.update({"rss_source": "resource.getrusage ru_maxrss delta",
                            "rss_before_mb": before / scale, "rss_peak_mb": after / scale,
                            "rss_delta_mb": (after - before) / scale})
        out["status"] = res.status
    finally:
        engine.close()
        cleanup()
    return out


def _proc_status_kb(field: str) -> Optional[int]:
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def measure_memory(store: Store, n: int, modes: tuple[str, ...] = ("tracemalloc", "rss")) -> dict:
    out: dict[str, Any] = {"store": store.key, "n": n, "workload": f"{n:,} steps + wait (replays {n:,} steps)"}
    for mode in modes:
        cmd = [sys.executable, str(Path(__file__).resolve()), "--memory-probe", store.key, "--probe-mode", mode,
               "--probe-n", str(n)]
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=str(ROOT), timeout=300)
        if proc.returncode != 0:
            out["error"] = proc.stderr.strip().splitlines()[-1:] or [f"exit {proc.returncode}"]
            continue
        out.update(json.loads(proc.stdout.strip().splitlines()[-1]))
    out.pop("mode", None)
    return out


# -- profile ------------------------------------------------------------------------------------------
def profile_sequential(n: int, top: int = 15) -> str:
    import cProfile
    import io
    import pstats

    handler = wl.make_sequential(n)
    engine = LocalEngine(db=":memory:", skip_time=True)
    engine.run(wl.make_sequential(50), {})  # warm
    prof = cProfile.Profile()
    prof.enable()
    res = engine.run(handler, {})
    prof.disable()
    engine.close()
    assert res.status == "SUCCEEDED", res
    buf = io.StringIO()
    stats = pstats.Stats(prof, stream=buf)
    stats.sort_stats("tottime").print_stats(top)
    return buf.getvalue()


# -- report ---------------------------------------------------------------------------------------------
def machine_info() -> dict:
    cpu = ""
    try:
        for line in open("/proc/cpuinfo", encoding="utf-8"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:
        affinity = os.cpu_count()
    commit = ""
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=str(ROOT), capture_output=True,
                                text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    dirty = ""
    try:
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "durable_sync"], cwd=str(ROOT),
                               capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    if dirty:
        commit += f" + {len(dirty.splitlines())} uncommitted file(s) in durable_sync/"
    return {"nproc": affinity, "cpu_count": os.cpu_count(), "cpu": cpu, "python": platform.python_version(),
            "implementation": platform.python_implementation(), "platform": platform.platform(),
            "commit": commit, "date": time.strftime("%Y-%m-%d %H:%M:%S %Z")}


def fmt_time(s: float) -> str:
    return f"{s * 1e3:9.1f} ms" if s < 10 else f"{s:9.2f} s "


def fmt_x(x: Optional[float]) -> str:
    return "-" if x is None else (f"{x:,.0f}x" if x >= 100 else f"{x:.2f}x")


def print_table(rows: list[dict]) -> None:
    head = (f"{'workload':44} {'store':7} {'median':>12} {'per unit':>15} {'cpu/unit':>8} {'x baseline':>11} "
            f"{'sqlite/mem':>10} {'ckpt calls':>10} {'upd/call':>8} {'inv':>4}")
    print(head)
    print("-" * len(head))
    for r in rows:
        print(f"{r['title']:44} {r['store']:7} {fmt_time(r['median_s']):>12} "
              f"{r['us_per_unit']:8.1f} us/{r['unit']:<4} {r['cpu_us_per_unit']:8.1f} {fmt_x(r['x_baseline']):>11} "
              f"{fmt_x(r['x_memory']):>10} "
              f"{r['checkpoint_calls']:>10,.0f} {r['updates_per_call'] or 0:>8.2f} {r['invocations']:>4.0f}")
        if "replay_invocation_s" in r:
            print(f"{'  - of which the replay invocation':44} {r['store']:7} {fmt_time(r['replay_invocation_s']):>12} "
                  f"{r['replay_us_per_step']:8.1f} us/step {'':8} {fmt_x(r['replay_x_baseline']):>11} "
                  f"{fmt_x(r['replay_x_memory']):>10}   (replay = {r['replay_over_first']:.2f}x the first invocation)")
    print()
    seen = set()
    for r in rows:
        if r["workload"] in seen:
            continue
        seen.add(r["workload"])
        print(f"baseline for {r['workload']:16} {r['baseline_s'] * 1e3:8.3f} ms = {r['baseline_ns_per_unit']:6.1f} "
              f"ns/{r['unit']} (the same bodies called directly in a loop)")


def run_checks(rows: list[dict], memory: list[dict], stores: list[Store]) -> list[dict]:
    checks: list[dict] = []

    def add(name: str, ok: Optional[bool], detail: str) -> None:
        checks.append({"check": name, "result": "SKIP" if ok is None else ("PASS" if ok else "FAIL"), "detail": detail})

    def row(workload: str, store: str) -> Optional[dict]:
        return next((r for r in rows if r["workload"] == workload and r["store"] == store), None)

    for store in stores:
        s = store.key
        if not store.available:
            add(f"[{s}] all targets", None, store.note)
            continue
        target = TARGET_SEQ_MEMORY_US if s == "memory" else TARGET_SEQ_SQLITE_US
        seq = [r for r in (row("sequential_1k", s), row("sequential_10k", s)) if r]
        if seq:
            worst = max(r["us_per_unit"] for r in seq)
            add(f"[{s}] sequential steps <= {target:.0f} us/step", worst <= target,
                ", ".join(f"{r['n']:,} steps: {r['us_per_unit']:.1f} us/step wall, {r['cpu_us_per_unit']:.1f} cpu"
                          for r in seq))
        w10, w1 = row("wait_10k", s), row("wait_1k", s)
        if w10:
            add(f"[{s}] replay of 10,000 steps < {TARGET_REPLAY_S} s", w10["replay_invocation_s"] < TARGET_REPLAY_S,
                f"replay invocation {w10['replay_invocation_s']:.3f} s (first invocation "
                f"{w10['first_invocation_s']:.3f} s)")
        pr = paired_ratio(rows, "wait_10k", "wait_1k", s)
        if pr and w1 and w10:
            ratio = w10["median_s"] / w1["median_s"]
            add(f"[{s}] replay linear: total 10k / 1k <= {TARGET_LINEARITY:.0f}", ratio <= TARGET_LINEARITY,
                f"median {w10['median_s']:.3f} s / median {w1['median_s']:.3f} s = {ratio:.2f}; per round "
                f"{', '.join(f'{x:.1f}' for x in pr[1])}")
        m = row("map_1k", s)
        if m:
            add(f"[{s}] map 1,000 items >= {TARGET_MAP_UPDATES_PER_CALL:.0f} updates per checkpoint call",
                (m["updates_per_call"] or 0) >= TARGET_MAP_UPDATES_PER_CALL,
                f"{m['updates']:,.0f} updates in {m['checkpoint_calls']:,.0f} calls = {m['updates_per_call']:.2f}")
            add(f"[{s}] map 1,000 items <= {TARGET_MAP_US_PER_ITEM:.0f} us/item",
                m["us_per_unit"] <= TARGET_MAP_US_PER_ITEM,
                f"{m['us_per_unit']:.1f} us/item wall, {m['cpu_us_per_unit']:.1f} cpu")
        elif not wl.has_map():
            add(f"[{s}] map 1,000 items", None, "ctx.map not available yet")
        mem = next((x for x in memory if x["store"] == s), None)
        if mem and "error" in mem and "tracemalloc_peak_mb" not in mem:
            add(f"[{s}] peak memory for 10k ops < {TARGET_PEAK_MB:.0f} MB", None, f"probe failed: {mem['error']}")
        elif mem and "tracemalloc_peak_mb" in mem:
            rss = mem.get("rss_delta_mb")
            ok = mem["tracemalloc_peak_mb"] < TARGET_PEAK_MB and (rss is None or rss < TARGET_PEAK_MB)
            add(f"[{s}] peak memory for 10k ops < {TARGET_PEAK_MB:.0f} MB", ok,
                f"tracemalloc peak {mem['tracemalloc_peak_mb']:.1f} MB"
                + ("" if rss is None else f"; peak RSS growth {rss:.1f} MB"))
    return checks


# -- main ----------------------------------------------------------------------------------------------
def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true",
                   help="2 runs per workload (4 for the 1k ones paired with a 10k one, 1 for the 10k ones), "
                        "peak memory by tracemalloc on the in-memory store only (under ~20 s)")
    p.add_argument("--repeat", type=int, default=None, help="runs per workload, median reported (default 5, quick 2)")
    p.add_argument("--json", default=str(DEFAULT_JSON), help=f"where to write results (default {DEFAULT_JSON})")
    p.add_argument("--stores", default="memory,sqlite", help="comma list of memory, sqlite")
    p.add_argument("--only", default="", help="comma list of workload keys, e.g. sequential_1k,map_1k")
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocesses")
    p.add_argument("--profile", type=int, nargs="?", const=3000, default=None, metavar="STEPS",
                   help="print a cProfile (top 15 by tottime) of STEPS in-memory sequential steps (default 3000)")
    p.add_argument("--strict", action="store_true", help="exit 1 when a check FAILs")
    p.add_argument("--rtt-ms", default=None, metavar="MS,MS,...",
                   help="instead of the suite above: the round-trip benchmark (benchmarks/rtt.py), every checkpoint "
                        "and state call delayed by each of these RTTs in turn, e.g. 0,5,20")
    p.add_argument("--against", default=None, metavar="PATH",
                   help="with --rtt-ms: also measure the SDK of this checkout (alternating runs) and report speed-ups")
    p.add_argument("--markdown", action="store_true", help="with --rtt-ms: print the table as Markdown")
    p.add_argument("--memory-probe", default=None, help=argparse.SUPPRESS)
    p.add_argument("--probe-mode", default="tracemalloc", help=argparse.SUPPRESS)
    p.add_argument("--probe-n", type=int, default=MEMORY_STEPS, help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.memory_probe:
        print(json.dumps(memory_probe(args.memory_probe, args.probe_mode, args.probe_n)))
        return 0

    if args.rtt_ms is not None:
        from benchmarks import rtt
        rtts = [float(x) for x in args.rtt_ms.split(",") if x.strip()]
        only = {k.strip() for k in args.only.split(",") if k.strip()}
        return rtt.run_rtt(rtts, args.against, args.repeat or (1 if args.quick else 5), only,
                           DEFAULT_JSON.with_name("rtt.json") if args.json == str(DEFAULT_JSON) else args.json,
                           args.markdown)

    repeat = args.repeat or (2 if args.quick else 5)
    started = time.perf_counter()
    info = machine_info()
    command = "python -m benchmarks " + " ".join(argv if argv is not None else sys.argv[1:])
    print(f"durable_sync benchmarks  |  {info['python']} {info['implementation']}, nproc={info['nproc']}, "
          f"{info['cpu'] or platform.machine()}, commit {info['commit'] or '?'}")
    print(f"LocalEngine(skip_time=True), fresh engine per run, median of {repeat} runs"
          + (" (1 run for the 10,000-step workloads)" if args.quick and args.repeat is None
             else f" ({repeat * 2} for the 1,000-step ones paired with a 10,000-step one)") + "\n")

    stores = detect_stores([s.strip() for s in args.stores.split(",") if s.strip()])
    notes = [f"{s.key}: {s.note}" for s in stores if s.note]
    only = {k.strip() for k in args.only.split(",") if k.strip()}
    selected = [w for w in wl.all_workloads() if not only or w.key in only]

    rows: list[dict] = []
    live = [s for s in stores if s.available]
    for store in live:
        warm_up(store)
    calib_start = calibrate()
    load_start = ", ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    groups: dict[str, list[wl.Workload]] = {}
    for w in selected:
        if not w.available():
            notes.append(w.missing_note)
            continue
        groups.setdefault(w.group or w.key, []).append(w)
    for group in groups.values():
        # Short workloads get twice the runs (cheap, and their medians anchor the 10k / 1k ratio).
        repeats = {w.key: (1 if (args.quick and args.repeat is None and w.n >= 10_000)
                           else repeat * 2 if (len(group) > 1 and w.n < 10_000) else repeat) for w in group}
        try:
            rows.extend(measure(group, live, repeats))
        except Exception as exc:  # noqa: BLE001 - one broken workload must not hide the others
            notes.append(f"{'/'.join(w.key for w in group)} failed: {type(exc).__name__}: {exc}")
    contended = [r for r in rows if r["workload"].startswith("sequential") and r["store"] == "memory"
                 and r["us_per_unit"] > 1.3 * r["cpu_us_per_unit"]]
    if contended:
        notes.append("single-threaded in-memory runs took >1.3x their CPU time (wall "
                     + ", ".join(f"{r['us_per_unit']:.1f}" for r in contended) + " vs cpu "
                     + ", ".join(f"{r['cpu_us_per_unit']:.1f}" for r in contended)
                     + " us/step): other processes competed for the CPUs; the cpu/unit column is the better "
                       "estimate of the SDK's own cost on this run (os.getloadavg at start: "
                     + f"{load_start})")
    calib_end = calibrate()
    drift = max(calib_start, calib_end) / min(calib_start, calib_end)
    notes.append(f"calibration loop {calib_start * 1e3:.1f} ms before, {calib_end * 1e3:.1f} ms after the runs"
                 + (" -- the machine's speed changed during the run (shared/loaded?): trust the ratios more than "
                    "the absolute figures" if drift > 1.3 else ""))

    memory: list[dict] = []
    if not args.no_memory:
        for store in stores:
            if not store.available:
                continue
            if args.quick and store.key != "memory":
                notes.append(f"--quick: peak memory measured on the in-memory store only (not {store.key})")
                continue
            memory.append(measure_memory(store, MEMORY_STEPS, ("tracemalloc",) if args.quick else
                                         ("tracemalloc", "rss")))

    print_table(rows)
    otel = otel_cost(rows)
    for o in otel:
        print(f"OtelPlugin  {o['store']:7} {o['otel_us_per_step']:.1f} us/step traced vs {o['plain_us_per_step']:.1f} "
              f"without: +{o['added_us_per_step']:.1f} us/step ({o['ratio']:.2f}x, median of paired rounds)")
    if memory:
        print()
        for m in memory:
            if "error" in m:
                print(f"peak memory  {m['store']:7} {m['workload']}: ERROR {m['error']}")
                continue
            parts = []
            if "tracemalloc_peak_mb" in m:
                parts.append(f"tracemalloc peak {m['tracemalloc_peak_mb']:.1f} MB (retained after the run "
                             f"{m['tracemalloc_retained_mb']:.1f} MB)")
            if "rss_delta_mb" in m:
                parts.append(f"peak RSS grew by {m['rss_delta_mb']:.1f} MB (from {m['rss_before_mb']:.1f} to "
                             f"{m['rss_peak_mb']:.1f} MB; {m['rss_source']})")
            print(f"peak memory  {m['store']:7} {m['workload']}: " + "; ".join(parts))
    if notes:
        print()
        for note in notes:
            print(f"note: {note}")

    checks = run_checks(rows, memory, stores)
    print()
    for c in checks:
        print(f"{c['result']}  {c['check']}  ({c['detail']})")

    elapsed = time.perf_counter() - started
    print(f"\n{len(rows)} rows in {elapsed:.1f} s")

    profile_text = None
    if args.profile:
        profile_text = profile_sequential(args.profile)
        print(f"\ncProfile of {args.profile:,} sequential steps, in-memory store, top 15 by tottime:\n")
        print(profile_text)

    out = {"command": command, "machine": info, "settings": {"repeat": repeat, "quick": args.quick,
                                                           "stores": [s.key for s in stores]},
           "stores": [{"store": s.key, "available": s.available, "note": s.note} for s in stores],
           "calibration_s": {"start": calib_start, "end": calib_end}, "loadavg_start": load_start,
           "results": rows, "otel": otel, "memory": memory, "checks": checks, "notes": notes,
           "elapsed_s": elapsed}
    if profile_text:
        out["profile"] = profile_text
    path = Path(args.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2, default=str) + "\n", encoding="utf-8")
    print(f"results written to {path}")
    if args.strict and any(c["result"] == "FAIL" for c in checks):
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
