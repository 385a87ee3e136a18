"""The benchmark workloads: durable handlers, their expected results, and same-process baselines.

Each workload is a durable handler plus a *baseline*: the same step bodies called
directly in a plain Python loop (no durability at all). The runner reports every
durable figure as a ratio against that baseline, measured in the same process.

The step bodies are deliberately trivial (return a small int), so the figures are
the SDK's + engine's own cost per operation, not the user's.

Step bodies and map item functions take the same arguments in durable_sync and in
the official AWS SDK (``fn(step_ctx)``, ``fn(ctx, item, index, items)``), so
``compare_official.py`` reuses them for both.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Callable, Optional

import durable_sync as ds


# -- bodies shared by every flavour (durable_sync, official SDK, baseline) -------------------
def map_item(ctx: Any, item: int, index: int, items: Any) -> int:
    """One map item: one named step."""
    return ctx.step(lambda _s: item * 2, name="double")


def parallel_branch(i: int, ctx: Any) -> int:
    """One parallel branch: one named step."""
    return ctx.step(lambda _s: i + 1, name="work")


def sequential_body(ctx: Any, n: int) -> int:
    total = 0
    for i in range(n):
        total += ctx.step(lambda _s, i=i: i + 1, name="add")
    return total


def sequential_expected(n: int) -> int:
    return n * (n + 1) // 2


# -- baselines: the same bodies, called directly ------------------------------------------------
def baseline_sequential(n: int) -> int:
    """The step bodies of ``sequential`` called in a loop (closure creation included, as in the handler)."""
    total = 0
    for i in range(n):
        total += (lambda _s, i=i: i + 1)(None)
    return total


def baseline_map(n: int) -> int:
    total = 0
    for item in range(n):
        total += (lambda _s: item * 2)(None)
    return total


def baseline_parallel(n: int) -> int:
    total = 0
    for i in range(n):
        total += (lambda _s: i + 1)(None)
    return total


# -- durable_sync handlers ------------------------------------------------------------------------
def make_sequential(n: int) -> Callable:
    @ds.durable_handler
    def sequential_steps(event: Any, ctx: ds.DurableContext) -> int:
        return sequential_body(ctx, n)
    return sequential_steps


def make_steps_then_wait(n: int) -> Callable:
    """n steps, then a 1 s wait: the first invocation suspends, the second replays the n steps."""
    @ds.durable_handler
    def steps_then_wait(event: Any, ctx: ds.DurableContext) -> int:
        total = sequential_body(ctx, n)
        ctx.wait(1, name="pause")
        return total
    return steps_then_wait


def has_otel() -> bool:
    import importlib.util
    return importlib.util.find_spec("opentelemetry.sdk") is not None


def make_sequential_otel(n: int) -> Callable:
    """``make_sequential`` traced by ``durable_sync.otel.OtelPlugin`` on an SDK tracer provider whose
    exporter drops the spans (SimpleSpanProcessor): the cost of building and ending them."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

    from durable_sync.otel import OtelPlugin

    class Drop(SpanExporter):
        def export(self, spans: Any) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(Drop()))

    @ds.durable_handler(plugins=[OtelPlugin(provider)])
    def sequential_steps_otel(event: Any, ctx: ds.DurableContext) -> int:
        return sequential_body(ctx, n)
    return sequential_steps_otel


def has_map() -> bool:
    return hasattr(ds.DurableContext, "map")


def has_parallel() -> bool:
    return hasattr(ds.DurableContext, "parallel")


def make_map(n: int, concurrency: int = 10) -> Callable:
    @ds.durable_handler
    def map_items(event: Any, ctx: ds.DurableContext) -> int:
        result = ctx.map(list(range(n)), map_item, name="map",
                         config=ds.MapConfig(max_concurrency=concurrency))
        return sum(result.get_results())
    return map_items


def map_expected(n: int) -> int:
    return n * (n - 1)


def make_parallel(n: int, concurrency: Optional[int] = None) -> Callable:
    branches = [functools.partial(parallel_branch, i) for i in range(n)]

    @ds.durable_handler
    def parallel_branches(event: Any, ctx: ds.DurableContext) -> int:
        config = ds.ParallelConfig(max_concurrency=concurrency) if concurrency else None
        result = ctx.parallel(branches, name="parallel", config=config)
        return sum(result.get_results())
    return parallel_branches


def parallel_expected(n: int) -> int:
    return n * (n + 1) // 2


@dataclass(frozen=True)
class Workload:
    """One row of the benchmark table."""

    key: str                 # stable id used in the JSON
    title: str               # human label
    n: int                   # units (steps / items / branches)
    unit: str                # "step", "item", "branch"
    make: Callable[[], Callable]
    expected: Any
    baseline: Callable[[], Any]
    suspends: bool = False   # True: start() runs invocation 1, wait() runs the replay
    available: Callable[[], bool] = lambda: True
    missing_note: str = ""
    group: str = ""          # workloads of one group are measured in the same rounds, alternating


def all_workloads() -> list[Workload]:
    small, large = 1_000, 10_000
    map_n, par_n = 1_000, 100
    return [
        Workload("sequential_1k", f"sequential steps ({small:,})", small, "step",
                 lambda: make_sequential(small), sequential_expected(small), lambda: baseline_sequential(small),
                 group="sequential"),
        Workload("sequential_10k", f"sequential steps ({large:,})", large, "step",
                 lambda: make_sequential(large), sequential_expected(large), lambda: baseline_sequential(large),
                 group="sequential"),
        Workload("sequential_1k_otel", f"sequential steps ({small:,}) + OtelPlugin", small, "step",
                 lambda: make_sequential_otel(small), sequential_expected(small), lambda: baseline_sequential(small),
                 group="sequential", available=has_otel,
                 missing_note="opentelemetry-sdk is not installed (extra [otel]): OtelPlugin workload skipped"),
        Workload("wait_1k", f"{small:,} steps + wait (2 invocations)", small, "step",
                 lambda: make_steps_then_wait(small), sequential_expected(small),
                 lambda: baseline_sequential(small), suspends=True, group="wait"),
        Workload("wait_10k", f"{large:,} steps + wait (2 invocations)", large, "step",
                 lambda: make_steps_then_wait(large), sequential_expected(large),
                 lambda: baseline_sequential(large), suspends=True, group="wait"),
        Workload("map_1k", f"map {map_n:,} items x 1 step, concurrency 10", map_n, "item",
                 lambda: make_map(map_n, 10), map_expected(map_n), lambda: baseline_map(map_n),
                 available=has_map, group="map",
                 missing_note="ctx.map is not available yet (durable_sync/batch.py); map workload skipped"),
        Workload("parallel_100", f"parallel {par_n} branches x 1 step", par_n, "branch",
                 lambda: make_parallel(par_n), parallel_expected(par_n), lambda: baseline_parallel(par_n),
                 available=has_parallel, group="parallel",
                 missing_note="ctx.parallel is not available yet (durable_sync/batch.py); parallel workload skipped"),
    ]
