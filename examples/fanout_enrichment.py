"""Fan-out enrichment: enrich every record in parallel, with durable retries and a failure tolerance.

Run it:
  durable-sync run examples/fanout_enrichment.py --skip-time --db :memory: \\
      --input '{"records": [{"id": 1, "email": "ada@example.com"}, {"id": 2, "email": "alan@example.org"},
                            {"id": 3, "email": "not-an-email"}, {"id": 4, "email": "grace@example.net"}]}'

Each record becomes one map iteration (a child context named ``enrich-<id>``) running two
steps: a lookup in a (simulated) flaky profile service, which fails on its first attempt
for every other record and is retried durably after 1 s (the invocation suspends and the
engine re-invokes it: the records already enriched are not looked up again), and a scoring
step. A record with an invalid email fails for good. At most 4 records are enriched at a
time, and up to 25 % of the records may fail before the whole fan-out gives up; the result
lists what was enriched and what failed.
"""
from __future__ import annotations

import durable_sync as ds


class ProfileServiceUnavailable(Exception):
    """A transient error from the (simulated) profile service."""


class InvalidRecord(Exception):
    """A record that no retry can fix."""


@ds.durable_step
def lookup_profile(step: ds.StepContext, record: dict) -> dict:
    email = record.get("email") or ""
    if "@" not in email:
        raise InvalidRecord(f"record {record.get('id')}: {email!r} is not an email address")
    if record["id"] % 2 == 0 and step.attempt == 1:  # the service drops every other first call
        raise ProfileServiceUnavailable("profile service timed out")
    step.logger.info("looked up record %s on attempt %d", record["id"], step.attempt)
    user, domain = email.split("@", 1)
    return {"name": user.title(), "company": domain.split(".")[0].title()}


@ds.durable_step
def score(step: ds.StepContext, profile: dict) -> int:
    return len(profile["name"]) * 10 + len(profile["company"])


LOOKUP = ds.StepConfig(retry_strategy=ds.RetryPolicy(
    max_attempts=3, initial_delay=1, backoff_rate=2.0, jitter="none",
    retryable_error_types=[ProfileServiceUnavailable]))


def enrich(ctx: ds.DurableContext, record: dict, index: int, records: list) -> dict:
    profile = ctx.step(lookup_profile(record), config=LOOKUP)
    return {**record, **profile, "score": ctx.step(score(profile))}


FANOUT = ds.MapConfig(
    max_concurrency=4,
    completion_config=ds.CompletionConfig(tolerated_failure_percentage=25),
    item_namer=lambda record, index: f"enrich-{record.get('id', index)}",
)


@ds.durable_handler
def handler(event: dict, ctx: ds.DurableContext) -> dict:
    records = (event or {}).get("records") or []
    batch = ctx.map(records, enrich, name="enrich-records", config=FANOUT)
    return {
        "enriched": batch.get_results(),
        "failed": [{"id": records[item.index].get("id"), "error": item.error.error_message}
                   for item in batch.failed()],
        "completion": batch.completion_reason.value,
        "status": batch.status.value,
    }
