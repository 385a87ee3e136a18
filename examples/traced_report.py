"""Observability: a small instrumentation plugin, and OpenTelemetry traces of every invocation.

Run it:  durable-sync run examples/traced_report.py --input '{"report": "weekly", "regions": ["eu", "us", "ap"]}' --trace spans.jsonl

`SlowSteps` is a plugin written against `ds.InstrumentationPlugin`: it logs every step attempt
that failed or took longer than a threshold. `OtelPlugin()` writes the execution's spans to
OpenTelemetry's global tracer provider (on Lambda: the ADOT layer's); `--trace FILE` writes them
to FILE as OTLP-JSON lines as well. The first attempt of `fetch_rows` fails (a flaky source) and
is retried durably after 1 s, so the execution takes two invocations and one trace.
"""
from __future__ import annotations

import logging

import durable_sync as ds
from durable_sync.otel import OtelPlugin

log = logging.getLogger("traced_report")


class SlowSteps(ds.InstrumentationPlugin):
    """Logs step attempts that failed or ran longer than ``threshold`` seconds."""

    def __init__(self, threshold: float = 1.0):
        self.threshold = threshold

    def on_user_function_end(self, info: ds.UserFunctionEndInfo) -> None:
        if info.operation_type != "STEP":
            return
        seconds = (info.end_time - info.start_time).total_seconds()
        if info.outcome == "FAILED" or seconds > self.threshold:
            error = (info.error or {}).get("ErrorMessage", "")
            log.warning("step %s attempt %s %s after %.3f s %s", info.name, info.attempt, info.outcome, seconds, error)


class SourceUnavailable(Exception):
    """A transient error of the (simulated) data source."""


@ds.durable_step
def fetch_rows(step: ds.StepContext, region: str) -> list:
    if step.attempt == 1 and region == "eu":
        raise SourceUnavailable(f"the {region} source timed out")
    step.logger.info("fetched %s", region)
    return [{"region": region, "sales": 100 * (len(region) + step.attempt)}]


def region_rows(ctx: ds.DurableContext, region: str, index: int, regions: list) -> list:
    return ctx.step(fetch_rows(region), config=ds.StepConfig(
        retry_strategy=ds.RetryPolicy(max_attempts=3, initial_delay=1, jitter="none")))


@ds.durable_handler(plugins=[SlowSteps(threshold=0.5), OtelPlugin()])
def handler(event: dict, ctx: ds.DurableContext) -> dict:
    ctx.logger.info("building the %s report", event["report"])
    batches = ctx.map(event["regions"], region_rows, name="fetch",
                      config=ds.MapConfig(max_concurrency=2, item_namer=lambda region, i: f"region-{region}"))
    with ctx.child("render") as render:
        rows = [row for batch in batches.get_results() for row in batch]
        total = render.step(lambda s: sum(r["sales"] for r in rows), name="total")
        render.result = total
    return {"report": event["report"], "rows": len(rows), "total": total}
