"""`python -m benchmarks.node` keeps working (one run of each figure)."""
from __future__ import annotations

from benchmarks import node as bench


def test_the_node_benchmark_runs(js_sdk, capsys):
    assert bench.main(["--runs", "1"]) == 0
    out = capsys.readouterr().out
    for figure in ("node start", "load (check a module)", "cold invocation", "warm invocation",
                   "first invocation cold", "both invocations warm"):
        assert figure in out
