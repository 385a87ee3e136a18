"""The console with many executions: how long the list takes to show, in a real browser and on the server.

    python -m benchmarks.console [--executions 10000] [--loads 7] [--json PATH]

Builds a SQLite database of ``--executions`` executions (1 % of them RUNNING, waiting for a callback;
the rest SUCCEEDED) and a baseline database of 10, serves each as ``durable-sync serve --skip-time``
does (the console mounted), and measures, each figure the median of ``--loads`` runs:

- the list's JSON (``GET /console/api/executions``, first page of 50; a name search, which reads every
  execution; the RUNNING filter), on the server;
- in headless Chromium (Debian's chromium + chromium-driver, as the browser tests): the first contentful
  paint of ``/console/`` and the moment its rows are on the page (``console:list-rendered``, from the
  start of the navigation);
- the execution page of one execution of 500 steps (``console:execution-rendered``).

The ratio "x baseline" compares the large database with the 10-execution one, measured in the same run.
The target: the list's rows on the page in under 1 s with 10,000 executions. Without a browser, only the
server figures are printed.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any, Callable, Optional
from urllib.parse import quote

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import durable_sync as ds  # noqa: E402
from durable_sync.console import mount  # noqa: E402
from durable_sync.local import LocalEngine  # noqa: E402
from durable_sync.local.http import make_server  # noqa: E402

TARGET_LIST_MS = 1000.0
BASELINE_EXECUTIONS = 10
WIDE_STEPS = 500


@ds.durable_handler
def echo(event: Any, ctx: ds.DurableContext) -> Any:
    return ctx.step("echo", lambda _: event)


@ds.durable_handler
def approval(event: Any, ctx: ds.DurableContext) -> Any:
    ctx.step("prepare", lambda _: event)
    return ctx.create_callback("approval").result()


@ds.durable_handler
def wide(event: Any, ctx: ds.DurableContext) -> int:
    return sum(ctx.step(f"part-{i}", lambda _, i=i: i) for i in range(WIDE_STEPS))


FUNCTIONS = {"echo": echo, "approval": approval, "wide": wide}


def build(db: str, executions: int) -> tuple[float, str]:
    """Fill ``db``; returns (seconds it took, the ARN of the wide execution)."""
    started = time.perf_counter()
    engine = LocalEngine(db=db, skip_time=True)
    try:
        for i in range(executions):
            if i % 100 == 99:
                engine.start(approval, {"order": i}, name=f"order-{i:05d}", function_name="approval")
            else:
                engine.start(echo, {"order": i}, name=f"order-{i:05d}", function_name="echo")
        wide_arn = engine.start(wide, None, name="wide", function_name="wide")
    finally:
        engine.close()
    return time.perf_counter() - started, wide_arn


def _median_ms(fn: Callable[[], Any], runs: int) -> float:
    samples = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1000)
    return statistics.median(samples)


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=60) as response:
        return response.read()


def _browser_ms(driver: Any, url: str, mark: str, loads: int) -> tuple[float, float]:
    """Medians of (first contentful paint, ``mark``) in ms from navigation start, over ``loads`` fresh loads."""
    from selenium.webdriver.support.ui import WebDriverWait

    paints, marks = [], []
    for _ in range(loads):
        driver.get("about:blank")
        driver.get(url)
        WebDriverWait(driver, 60, poll_frequency=0.02).until(
            lambda d: d.execute_script(f"return performance.getEntriesByName({mark!r}).length > 0"))
        fcp, at = driver.execute_script(
            "const p = performance.getEntriesByName('first-contentful-paint')[0];"
            f"return [p ? p.startTime : null, performance.getEntriesByName({mark!r})[0].startTime];")
        if fcp is not None:
            paints.append(fcp)
        marks.append(at)
    return (statistics.median(paints) if paints else float("nan")), statistics.median(marks)


def measure(db: str, wide_arn: str, loads: int, driver: Any) -> dict:
    opened = time.perf_counter()
    engine = LocalEngine(db=db, skip_time=True, real_time_callbacks=True)
    open_s = time.perf_counter() - opened
    server = make_server(engine, "127.0.0.1", 0, functions=FUNCTIONS)
    mount(server)
    server.start()
    try:
        base = f"{server.url}/console/"
        out: dict = {"engine_open_s": open_s,
                     "api_list_ms": _median_ms(lambda: _get(base + "api/executions"), loads),
                     "api_search_ms": _median_ms(lambda: _get(base + "api/executions?name=order-0999"), loads),
                     "api_running_ms": _median_ms(lambda: _get(base + "api/executions?status=RUNNING"), loads),
                     "api_wide_execution_ms": _median_ms(
                         lambda: _get(base + "api/execution?arn=" + quote(wide_arn, safe="")), loads)}
        if driver is not None:
            out["list_fcp_ms"], out["list_rows_ms"] = _browser_ms(driver, base, "console:list-rendered", loads)
            out["wide_fcp_ms"], out["wide_rendered_ms"] = _browser_ms(
                driver, base + "execution?arn=" + quote(wide_arn, safe=""), "console:execution-rendered", loads)
        return out
    finally:
        server.close()
        engine.close()


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--executions", type=int, default=10_000)
    parser.add_argument("--loads", type=int, default=7, help="runs per figure (median)")
    parser.add_argument("--json", default=None, metavar="PATH", help="also write the figures as JSON")
    args = parser.parse_args(argv)

    sys.path.insert(0, str(ROOT / "tests" / "console"))
    import chromium  # tests/console/chromium.py: the browser the browser tests use

    driver = profile = None
    try:
        driver, profile = chromium.start()
    except chromium.NoBrowser as exc:
        print(f"no browser, server figures only: {exc}", file=sys.stderr)
    tmp = tempfile.mkdtemp(prefix="durable-bench-console-")
    results: dict = {}
    try:
        for label, count in (("baseline", BASELINE_EXECUTIONS), ("large", args.executions)):
            db = os.path.join(tmp, f"{label}.db")
            print(f"building {count:,} executions ({label}) ...", file=sys.stderr, flush=True)
            build_s, wide_arn = build(db, count)
            results[label] = {"executions": count, "build_s": build_s, **measure(db, wide_arn, args.loads, driver)}
    finally:
        if driver is not None:
            chromium.stop(driver, profile)
        shutil.rmtree(tmp, ignore_errors=True)

    base, large = results["baseline"], results["large"]
    rows = [("engine opens the database", "engine_open_s", "s"),
            ("GET api/executions (first 50)", "api_list_ms", "ms"),
            ("GET api/executions?name=... (search)", "api_search_ms", "ms"),
            ("GET api/executions?status=RUNNING", "api_running_ms", "ms"),
            ("GET api/execution (500 steps)", "api_wide_execution_ms", "ms"),
            ("list: first contentful paint", "list_fcp_ms", "ms"),
            ("list: rows on the page", "list_rows_ms", "ms"),
            ("execution page (500 steps) rendered", "wide_rendered_ms", "ms")]
    print(f"\nconsole with {large['executions']:,} executions (baseline {base['executions']}), "
          f"median of {args.loads}:")
    print(f"  {'':40} {'large':>10} {'baseline':>10} {'x baseline':>10}")
    for text, key, unit in rows:
        if key not in large:
            continue
        ratio = large[key] / base[key] if base[key] else float("nan")
        print(f"  {text:40} {large[key]:>8.1f}{unit:>2} {base[key]:>8.1f}{unit:>2} {ratio:>10.2f}")
    verdict = 0
    if "list_rows_ms" in large:
        ok = large["list_rows_ms"] < TARGET_LIST_MS
        print(f"{'PASS' if ok else 'FAIL'}: the list's rows are on the page in {large['list_rows_ms']:.0f} ms with "
              f"{large['executions']:,} executions (target < {TARGET_LIST_MS:.0f} ms)")
        verdict = 0 if ok else 1
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return verdict


if __name__ == "__main__":
    raise SystemExit(main())
