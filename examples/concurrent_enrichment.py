"""Concurrent enrichment: look a customer up in several services at once with ``ctx.concurrently()``.

Run it:
  durable-sync run examples/concurrent_enrichment.py --skip-time --db :memory: --input '{"user_id": 42}'

Inside ``with ctx.concurrently("enrich", max_concurrency=4) as group:`` three units run at
the same time:

* ``fetch_profile`` and ``fetch_orders`` are steps started on the group's thread pool;
  ``group.step`` returns a ``DurableFuture`` at once. The (simulated) orders service is
  busy on its first call, so that step is retried durably after 2 s: its RETRY is
  checkpointed and, once every unit has reached a checkpoint, the invocation suspends.
* ``with group.child("risk") as c:`` is a child context whose body runs inline, on the
  handler's thread, while the two steps run on the pool: it scores the customer and
  waits 5 s (durably) for a fraud check to settle.

Leaving the block waits for all three. On the next invocations the profile (already
checkpointed) is not fetched again; the orders step runs its second attempt and the risk
child resumes after its wait. Then the summary step runs once, with every result.
"""
from __future__ import annotations

import time

import durable_sync as ds


class OrdersServiceBusy(Exception):
    """A transient error from the (simulated) orders service."""


@ds.durable_step
def fetch_profile(step: ds.StepContext, user_id: int) -> dict:
    time.sleep(0.02)  # simulated network latency
    step.logger.info("fetched profile of user %s", user_id)
    return {"id": user_id, "name": f"Customer {user_id}", "tier": "gold" if user_id % 2 == 0 else "silver"}


@ds.durable_step
def fetch_orders(step: ds.StepContext, user_id: int) -> list:
    time.sleep(0.01)
    if step.attempt == 1:  # the orders service sheds load on the first call
        raise OrdersServiceBusy("orders service is busy, try again later")
    return [{"order": f"{user_id}-{n}", "amount": 10 * n + user_id % 10} for n in range(1, 4)]


ORDERS = ds.StepConfig(retry_strategy=ds.RetryPolicy(
    max_attempts=3, initial_delay=2, backoff_rate=2.0, jitter="none", retryable_error_types=[OrdersServiceBusy]))


@ds.durable_handler
def handler(event: dict, ctx: ds.DurableContext) -> dict:
    user_id = int((event or {}).get("user_id", 1))
    with ctx.concurrently("enrich", max_concurrency=4) as group:
        profile = group.step(fetch_profile(user_id))
        orders = group.step(fetch_orders(user_id), config=ORDERS)
        with group.child("risk") as c:  # runs here, inline, while the two steps run on the pool
            score = c.step("score", lambda s: (user_id * 37) % 100)
            c.wait(5, name="fraud-check-settles")
            c.result = {"score": score, "flagged": score > 80}
        risk = c.result
    # Every unit has finished here: the futures answer at once.
    total = sum(order["amount"] for order in orders.result())
    summary = ctx.step("send-summary", lambda s: f"{profile.result()['name']}: {len(orders.result())} orders, "
                                                 f"{total} total, risk {risk['score']}")
    return {"profile": profile.result(), "orders": orders.result(), "risk": risk, "summary": summary}
