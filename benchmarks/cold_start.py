"""Cold start of ``import durable_sync``: import time, peak-memory growth, heavy modules loaded.

Each sample is a fresh interpreter: ``python -X importtime -c 'import durable_sync'`` (the
cumulative time of the ``durable_sync`` line), and the CPU time (``time.process_time``, less
disturbed by other load on the machine than wall time) and ``resource.getrusage`` ``ru_maxrss``
growth around the import. With ``--baseline DIR`` (another checkout, e.g. ``git archive REV durable_sync |
tar -x -C DIR``) both are measured in the same run, alternating, and the ratios are printed.

    python -m benchmarks.cold_start [--samples 21] [--baseline DIR]

Byte-code is compiled first (``compileall``) so that compiling is not counted, as on Lambda where
the package ships its ``__pycache__`` or the first cold start writes it.
"""
from __future__ import annotations

import argparse
import compileall
import json
import os
import pathlib
import re
import statistics
import subprocess
import sys
from typing import Optional

HEAVY = ["jsonpickle", "tenacity", "boto3", "botocore", "sqlite3", "importlib.metadata", "hashlib", "yaml"]
_PROBE = ("import resource, sys, json, time\n"
          "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
          "cpu = time.process_time()\n"
          "import durable_sync\n"
          "cpu = time.process_time() - cpu\n"
          "grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before\n"
          f"print(json.dumps([grown, cpu, [m for m in {HEAVY!r} if m in sys.modules]]))")


def _sample(root: pathlib.Path) -> tuple[float, float, float, list[str]]:
    env = {**os.environ, "PYTHONPATH": str(root)}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    err = subprocess.run([sys.executable, "-X", "importtime", "-c", "import durable_sync"], env=env, cwd=root,
                         capture_output=True, text=True, check=True).stderr
    match = re.search(r"\|\s*(\d+) \| durable_sync\n", err)
    if match is None:
        raise SystemExit(f"no importtime line for durable_sync from {root}")
    out = subprocess.run([sys.executable, "-c", _PROBE], env=env, cwd=root, capture_output=True, text=True,
                         check=True).stdout
    grown_kb, cpu, heavy = json.loads(out)
    return int(match.group(1)) / 1000, cpu * 1000, grown_kb / 1024, heavy


def measure(roots: list[pathlib.Path], samples: int) -> dict[pathlib.Path, dict]:
    for root in roots:
        compileall.compile_dir(str(root / "durable_sync"), quiet=1)
    got: dict[pathlib.Path, dict] = {root: {"ms": [], "cpu": [], "mb": [], "heavy": set()} for root in roots}
    for _ in range(samples):
        for root in roots:  # alternating, so load on the machine hits both alike
            ms, cpu, mb, heavy = _sample(root)
            got[root]["ms"].append(ms)
            got[root]["cpu"].append(cpu)
            got[root]["mb"].append(mb)
            got[root]["heavy"].update(heavy)
    return got


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.cold_start", description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=21, help="fresh interpreters per checkout (default 21)")
    parser.add_argument("--root", default=str(pathlib.Path(__file__).resolve().parent.parent),
                        help="checkout to measure (default: this one)")
    parser.add_argument("--baseline", default=None, help="another checkout to compare against, in the same run")
    args = parser.parse_args(argv)
    roots = [pathlib.Path(args.root).resolve()] + ([pathlib.Path(args.baseline).resolve()] if args.baseline else [])
    got = measure(roots, args.samples)
    print(f"{'checkout':32} {'importtime ms median/min':>25} {'CPU ms median/min':>18} {'ru_maxrss +MB':>14}  "
          "heavy modules loaded")
    for root, g in got.items():
        print(f"{str(root)[-32:]:32} {statistics.median(g['ms']):16.1f} / {min(g['ms']):6.1f} "
              f"{statistics.median(g['cpu']):9.1f} / {min(g['cpu']):6.1f} {statistics.median(g['mb']):14.2f}  "
              f"{', '.join(sorted(g['heavy'])) or '-'}")
    if args.baseline:
        new, old = got[roots[0]], got[roots[1]]
        ratio = {k: statistics.median(old[k]) / max(statistics.median(new[k]), 0.01) for k in ("ms", "cpu", "mb")}
        print(f"baseline / this (medians): import time {ratio['ms']:.2f}x, CPU {ratio['cpu']:.2f}x, "
              f"memory {ratio['mb']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
