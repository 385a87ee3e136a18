"""Checkpoint round trips: durable_sync against a service that answers after a simulated latency.

    python -m benchmarks --rtt-ms 0,5,20                       # the code of this checkout
    python -m benchmarks --rtt-ms 0,5,20 --against /path/to/other/checkout --repeat 5

On AWS every ``CheckpointDurableExecution`` is a network round trip, so the number of calls a
caller has to wait for is what a durable function pays for. This suite runs small workloads on
``LocalEngine(db=":memory:", skip_time=True)`` whose checkpoint and state calls each sleep
``rtt`` milliseconds first, and reports per workload and RTT: checkpoint calls, updates per
call, state calls (``GetDurableExecutionState``) and wall time.

``--against PATH`` measures a second copy of the SDK (e.g. an older commit checked out with
``git worktree add --detach``) with the same workload code, in alternating runs, and reports the
speed-up of this checkout over it (median of the per-round ratios). Each copy runs in its own
persistent worker process (``PYTHONPATH=<checkout>``), so both are warmed up once and measured
turn by turn under the same machine load.

The workloads use only the public API, so they run against any version of the SDK; one that needs
a feature the other copy lacks (``CheckpointMode.PIPELINED``) is reported as not available there.
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Optional

HERE = Path(__file__).resolve()
ROOT = HERE.parent.parent
N_SEQ = 50

# --------------------------------------------------------------------------------------------------
# worker side: imports the SDK found on PYTHONPATH (the checkout under test)
# --------------------------------------------------------------------------------------------------


def _workloads(ds: Any) -> dict[str, tuple[str, Optional[Callable[[], Callable]], Any]]:
    """key -> (title, handler factory or None when this SDK lacks the feature, expected result)."""
    amo = ds.StepConfig(step_semantics=ds.StepSemantics.AT_MOST_ONCE_PER_RETRY)
    mode = getattr(ds, "CheckpointMode", None)

    def steps(ctx: Any, n: int, config: Any = None, start: int = 0) -> int:
        total = 0
        for i in range(start, start + n):
            total += ctx.step(lambda _s, i=i: i + 1, name="add", config=config)
        return total

    def seq_alo() -> Callable:
        @ds.durable_handler
        def handler(event: Any, ctx: Any) -> int:
            return steps(ctx, N_SEQ)
        return handler

    def seq_amo() -> Callable:
        @ds.durable_handler
        def handler(event: Any, ctx: Any) -> int:
            return steps(ctx, N_SEQ, amo)
        return handler

    def seq_pipelined() -> Callable:
        @ds.durable_handler(checkpoint_mode=mode.PIPELINED)
        def handler(event: Any, ctx: Any) -> int:
            return steps(ctx, N_SEQ)
        return handler

    def map_100() -> Callable:
        @ds.durable_handler
        def handler(event: Any, ctx: Any) -> int:
            result = ctx.map(list(range(100)), lambda c, item, index, items: c.step(lambda _s: item * 2, name="double"),
                             name="map", config=ds.MapConfig(max_concurrency=10))
            return sum(result.get_results())
        return handler

    def parallel_20x3() -> Callable:
        def branch(i: int) -> Callable:
            return lambda c: steps(c, 3, start=3 * i)

        @ds.durable_handler
        def handler(event: Any, ctx: Any) -> int:
            return sum(ctx.parallel([branch(i) for i in range(20)], name="parallel").get_results())
        return handler

    def wait_10_10() -> Callable:
        @ds.durable_handler
        def handler(event: Any, ctx: Any) -> int:
            first = steps(ctx, 10)
            ctx.wait(1, name="pause")
            return first + steps(ctx, 10, start=10)
        return handler

    try:
        import inspect
        pipelined_ok = mode is not None and "checkpoint_mode" in inspect.signature(ds.durable_handler).parameters
    except (TypeError, ValueError):
        pipelined_ok = False
    tri = lambda n: n * (n + 1) // 2  # noqa: E731 - sum of i + 1 for i in range(n)
    return {
        "seq_alo": (f"{N_SEQ} sequential steps (at-least-once)", seq_alo, tri(N_SEQ)),
        "seq_amo": (f"{N_SEQ} sequential steps (at-most-once)", seq_amo, tri(N_SEQ)),
        "seq_pipelined": (f"{N_SEQ} sequential steps, CheckpointMode.PIPELINED", seq_pipelined if pipelined_ok else None,
                          tri(N_SEQ)),
        "map_100": ("map of 100 items x 1 step, max_concurrency 10", map_100, 100 * 99),
        "parallel_20x3": ("parallel of 20 branches x 3 steps, default config", parallel_20x3, tri(60)),
        "wait_10_10": ("10 steps + wait + 10 steps (2 invocations)", wait_10_10, tri(20)),
    }


def _one_run(ds: Any, local: Any, factory: Callable[[], Callable], expected: Any, rtt_ms: float) -> dict:
    """One execution with every checkpoint / state call delayed by ``rtt_ms``; calls counted."""
    delay = rtt_ms / 1000.0
    engine = local.LocalEngine(db=":memory:", skip_time=True)
    counts = {"calls": 0, "updates": 0, "state_calls": 0}
    inner_checkpoint, inner_state = engine.checkpoint, engine.get_state

    def checkpoint(arn: str, token: str, updates: list, client_token: Optional[str] = None, **kw: Any) -> dict:
        if delay:
            time.sleep(delay)
        counts["calls"] += 1
        counts["updates"] += len(updates)
        return inner_checkpoint(arn, token, updates, client_token, **kw)

    def get_state(*args: Any, **kw: Any) -> dict:
        if delay:
            time.sleep(delay)
        counts["state_calls"] += 1
        return inner_state(*args, **kw)

    engine.checkpoint = checkpoint
    engine.get_state = get_state
    try:
        handler = factory()
        t0 = time.perf_counter()
        res = engine.run(handler, {})
        wall = time.perf_counter() - t0
        if res.status != "SUCCEEDED" or res.result != expected:
            raise RuntimeError(f"status {res.status}, result {res.result!r:.80} (expected {expected!r}), "
                               f"error {res.error}")
        invocations = sum(1 for e in engine.history(res.arn) if e["EventType"] == "InvocationCompleted")
    finally:
        engine.close()
    return {"wall_s": wall, "invocations": invocations, **counts}


def worker() -> int:
    """Answer one JSON request per stdin line: {"workload": key, "rtt_ms": x} -> one JSON line."""
    import durable_sync as ds
    from durable_sync import local

    workloads = _workloads(ds)
    print(json.dumps({"ready": True, "sdk": str(Path(ds.__file__).resolve().parent),
                      "workloads": {k: (f is not None) for k, (_, f, _) in workloads.items()}}), flush=True)
    for line in sys.stdin:
        req = json.loads(line)
        title, factory, expected = workloads[req["workload"]]
        if factory is None:
            out: dict = {"skipped": "not available in this version of the SDK"}
        else:
            try:
                out = _one_run(ds, local, factory, expected, req["rtt_ms"])
            except Exception as exc:  # noqa: BLE001 - reported by the parent
                out = {"error": f"{type(exc).__name__}: {exc}"}
        print(json.dumps(out), flush=True)
    return 0


# --------------------------------------------------------------------------------------------------
# parent side
# --------------------------------------------------------------------------------------------------
class Worker:
    """A persistent worker process running the SDK of one checkout."""

    def __init__(self, label: str, path: Path):
        self.label = label
        # One hash seed for both checkouts: dict layouts (and so timings) do not differ between the two
        # worker processes by chance.
        env = {"PYTHONHASHSEED": "0", **os.environ, "PYTHONPATH": str(path)}
        self.proc = subprocess.Popen([sys.executable, str(HERE), "--worker"], cwd=str(path), env=env,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
        hello = self._read()
        self.sdk, self.available = hello["sdk"], hello["workloads"]
        if Path(self.sdk).parent.resolve() != path.resolve():
            self.close()
            raise SystemExit(f"{label}: the worker imported durable_sync from {self.sdk}, not from {path}")

    def _read(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            raise SystemExit(f"{self.label}: the worker process ended (exit {self.proc.wait()})")
        return json.loads(line)

    def run(self, workload: str, rtt_ms: float) -> dict:
        self.proc.stdin.write(json.dumps({"workload": workload, "rtt_ms": rtt_ms}) + "\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        self.proc.wait(timeout=60)


def _commit(path: Path) -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=str(path), capture_output=True, text=True,
                             timeout=5).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "durable_sync"], cwd=str(path),
                               capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "?"
    return out + (" (+ uncommitted changes in durable_sync/)" if dirty else "")


def run_rtt(rtts: list[float], against: Optional[str], repeat: int, only: set[str], json_path: Optional[str],
            markdown: bool) -> int:
    import durable_sync as ds

    titles = {k: t for k, (t, _, _) in _workloads(ds).items()}
    keys = [k for k in titles if not only or k in only]
    head = Worker("this checkout", ROOT)
    workers = [head]
    if against:
        workers.append(Worker("--against", Path(against)))
    labels = {id(head): f"this checkout ({_commit(ROOT)})"}
    if against:
        labels[id(workers[1])] = f"--against {against} ({_commit(Path(against))})"
    print("RTT benchmark: LocalEngine(db=':memory:', skip_time=True); every checkpoint and state call sleeps "
          "RTT ms first")
    for w in workers:
        print(f"  {labels[id(w)]}: durable_sync from {w.sdk}")
    # Warm-up: every workload once per worker, unmeasured.
    for w in workers:
        for k in keys:
            w.run(k, 0)
    runs: dict[tuple[str, float, int], list[dict]] = {}
    started = time.perf_counter()
    for rtt in rtts:
        n = repeat * 10 if rtt == 0 else repeat  # RTT 0 runs take milliseconds: more of them, steadier medians
        for rnd in range(n):
            for k in keys:
                order = workers if rnd % 2 == 0 else list(reversed(workers))
                for w in order:
                    runs.setdefault((k, rtt, workers.index(w)), []).append(w.run(k, rtt))
    for w in workers:
        w.close()

    rows = []
    for k in keys:
        for rtt in rtts:
            row: dict[str, Any] = {"workload": k, "title": titles[k], "rtt_ms": rtt}
            for i, w in enumerate(workers):
                rs = runs[(k, rtt, i)]
                tag = "head" if i == 0 else "base"
                bad = [r for r in rs if "error" in r or "skipped" in r]
                if bad:
                    row[tag] = {"unavailable": bad[0].get("error") or bad[0].get("skipped")}
                    continue
                calls = statistics.median(r["calls"] for r in rs)
                updates = statistics.median(r["updates"] for r in rs)
                row[tag] = {"wall_s": statistics.median(r["wall_s"] for r in rs), "calls": calls,
                            "calls_min": min(r["calls"] for r in rs), "calls_max": max(r["calls"] for r in rs),
                            "updates_per_call": updates / calls if calls else None,
                            "state_calls": statistics.median(r["state_calls"] for r in rs),
                            "invocations": statistics.median(r["invocations"] for r in rs),
                            "samples_s": [r["wall_s"] for r in rs]}
            if "base" in row and "wall_s" in row["head"] and "wall_s" in row["base"]:
                ratios = [b["wall_s"] / h["wall_s"] for h, b in zip(runs[(k, rtt, 0)], runs[(k, rtt, 1)])]
                row["speedup"] = statistics.median(ratios)
            rows.append(row)
    # Pipelined against awaited sequential steps, same checkout, same rounds.
    for i, tag in enumerate(["head", "base"][:len(workers)]):
        for rtt in rtts:
            p, a = runs.get(("seq_pipelined", rtt, i)), runs.get(("seq_alo", rtt, i))
            if p and a and all("wall_s" in r for r in p + a):
                for row in rows:
                    if row["workload"] == "seq_pipelined" and row["rtt_ms"] == rtt:
                        row[tag]["vs_awaited"] = statistics.median(x["wall_s"] / y["wall_s"] for x, y in zip(a, p))

    _print(rows, workers, labels, markdown)
    print(f"\n{sum(len(v) for v in runs.values())} runs in {time.perf_counter() - started:.1f} s "
          f"(median of {repeat} runs per cell, {repeat * 10} at RTT 0; rounds alternate which checkout goes first)")
    if json_path:
        path = Path(json_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"command": "python -m benchmarks " + " ".join(sys.argv[1:]),
                                    "checkouts": [labels[id(w)] for w in workers], "rows": rows}, indent=2) + "\n",
                        encoding="utf-8")
        print(f"results written to {path}")
    return 0


def _cell(side: Optional[dict]) -> tuple[str, str, str]:
    if not side:
        return "", "", ""
    if "unavailable" in side:
        return "n/a", "", ""
    calls = f"{side['calls']:.0f}" if side["calls_min"] == side["calls_max"] else \
        f"{side['calls']:.0f} ({side['calls_min']}-{side['calls_max']})"
    return calls, f"{side['updates_per_call']:.1f}", f"{side['wall_s'] * 1e3:.1f} ms"


def _print(rows: list[dict], workers: list[Worker], labels: dict, markdown: bool) -> None:
    two = len(workers) > 1
    cols = ["workload", "RTT", "calls", "upd/call", "wall"]
    if two:
        cols += ["base calls", "base upd/call", "base wall", "speed-up"]
    cols.append("pipelined vs awaited")
    table = []
    for r in rows:
        line = [r["title"], f"{r['rtt_ms']:g} ms", *_cell(r.get("head"))]
        if two:
            line += [*_cell(r.get("base")), f"{r['speedup']:.2f}x" if "speedup" in r else ""]
        vs = (r.get("head") or {}).get("vs_awaited")
        line.append(f"{vs:.1f}x" if vs else "")
        table.append(line)
    print()
    for w in workers:
        print(f"{'base' if w is not workers[0] else 'this'}: {labels[id(w)]}")
    print()
    if markdown:
        print("| " + " | ".join(cols) + " |")
        print("|" + "|".join("---" if i == 0 else "---:" for i in range(len(cols))) + "|")
        for line in table:
            print("| " + " | ".join(line) + " |")
        return
    widths = [max(len(c), *(len(line[i]) for line in table)) for i, c in enumerate(cols)]
    print("  ".join(c.ljust(widths[i]) if i == 0 else c.rjust(widths[i]) for i, c in enumerate(cols)))
    print("-" * (sum(widths) + 2 * (len(cols) - 1)))
    for line in table:
        print("  ".join(v.ljust(widths[i]) if i == 0 else v.rjust(widths[i]) for i, v in enumerate(line)))


if __name__ == "__main__" and "--worker" in sys.argv:
    raise SystemExit(worker())
