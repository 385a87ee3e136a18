"""What a Node.js handler costs on the local engine: ``python -m benchmarks.node [--runs N]``.

- ``node start``: a bare ``node -e 0`` (the floor of any cold start on this machine);
- ``load``: loading and checking a handler module (``handlers.load("...mjs:handler")``, once per function);
- ``cold invocation`` / ``warm invocation``: one call of a plain handler, in a new Node process each time vs.
  in the process the previous call left warm (as Lambda reuses a sandbox);
- ``execution``: a JavaScript SDK handler doing step, wait, step (two invocations) under the engine's
  Lambda API, driven by boto3: its first invocation in a new process (the SDK and the AWS SDK for
  JavaScript load), or both in a warm one.

Needs Node.js and the JavaScript SDK installed in tests/node (``npm ci`` there). Figures are medians; the
ratio column compares with ``node start`` measured in the same run.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

HANDLERS = ROOT / "tests" / "node" / "handlers"


def _context() -> object:
    """The engine's Lambda context for a call that never reaches the engine."""
    from durable_sync.local.clock import RealClock
    from durable_sync.local.runner import LocalLambdaContext

    clock = RealClock()
    ctx = LocalLambdaContext(None, "bench", clock.now_ms() + 900_000, clock)
    ctx.environment = {"AWS_ENDPOINT_URL_LAMBDA": "http://127.0.0.1:9"}
    return ctx


def _median(fn: Callable[[], None], runs: int) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.node", description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=7, help="runs per figure (default 7)")
    args = parser.parse_args(argv)
    node = shutil.which("node")
    if node is None or not (ROOT / "tests" / "node" / "node_modules" / "@aws" / "durable-execution-sdk-js").is_dir():
        print("needs `node` on PATH and the JavaScript SDK in tests/node (cd tests/node && npm ci)", file=sys.stderr)
        return 2
    os.environ.setdefault("AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED", "true")

    import boto3

    from durable_sync.local import LocalEngine
    from durable_sync.local.handlers import load
    from durable_sync.local.http import start_server

    rows: list[tuple[str, float]] = []
    rows.append(("node start (node -e 0)", _median(lambda: subprocess.run([node, "-e", "0"], check=True), args.runs)))
    counter_ref = f"{HANDLERS / 'context_echo.mjs'}:counter"
    rows.append(("load (check a module)", _median(lambda: load(counter_ref), args.runs)))

    counter = load(counter_ref)

    def cold() -> None:
        counter.release()
        counter({}, _context())

    rows.append(("cold invocation", _median(cold, args.runs)))
    counter({}, _context())
    rows.append(("warm invocation", _median(lambda: counter({}, _context()), args.runs)))
    counter.release()

    greet = load(f"{HANDLERS / 'step_wait.mjs'}:handler")
    engine = LocalEngine(db=":memory:", skip_time=True, functions={"greet": greet})
    try:
        with start_server(engine) as running:
            client = boto3.client("lambda", endpoint_url=running.url, region_name="us-east-1",
                                  aws_access_key_id="bench", aws_secret_access_key="bench")

            def execution() -> None:
                response = client.invoke(FunctionName="greet", Payload=json.dumps({"name": "bench"}))
                if response.get("FunctionError"):
                    raise RuntimeError(response["Payload"].read())

            def cold_execution() -> None:
                greet.release()
                execution()

            rows.append(("execution, step/wait/step, first invocation cold", _median(cold_execution, args.runs)))
            rows.append(("execution, step/wait/step, both invocations warm", _median(execution, args.runs)))
    finally:
        engine.close()

    floor = rows[0][1]
    print(f"{'figure':<50} {'median':>10} {'x node start':>13}")
    for label, seconds in rows:
        print(f"{label:<50} {seconds * 1000:>8.1f}ms {seconds / floor:>12.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
