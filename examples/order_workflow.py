"""Order processing: validate, reserve stock, cool down, then charge inside a child context.

Run it:  durable-sync run examples/order_workflow.py --input '{"order_id": "o-1", "items": [{"sku": "apple", "qty": 3}]}'

The reservation step fails on its first attempt (a flaky inventory service) and is
retried durably after 1 s; the wait suspends the execution for 2 s; the payment
steps run inside `with ctx.child("payment")`.
"""
from __future__ import annotations

import durable_sync as ds

PRICES = {"apple": 0.5, "pear": 0.75, "melon": 3.0}
_inventory_calls: dict[str, int] = {}


class InventoryUnavailable(Exception):
    """A transient error from the (simulated) inventory service."""


@ds.durable_step
def validate(step: ds.StepContext, order: dict) -> dict:
    items = order.get("items") or []
    if not items:
        raise ValueError("an order needs at least one item")
    unknown = [i["sku"] for i in items if i["sku"] not in PRICES]
    if unknown:
        raise ValueError(f"unknown items: {unknown}")
    total = round(sum(PRICES[i["sku"]] * i["qty"] for i in items), 2)
    step.logger.info("order %s is valid, total %.2f", order["order_id"], total)
    return {"order_id": order["order_id"], "total": total}


@ds.durable_step
def reserve(step: ds.StepContext, order_id: str) -> str:
    calls = _inventory_calls[order_id] = _inventory_calls.get(order_id, 0) + 1
    if calls == 1:
        raise InventoryUnavailable("inventory service timed out")
    return f"res-{order_id}"


RETRY_RESERVE = ds.StepConfig(retry_strategy=ds.RetryPolicy(max_attempts=3, initial_delay=1, jitter="none"))


@ds.durable_handler
def handler(event: dict, ctx: ds.DurableContext) -> dict:
    order = ctx.step(validate(event))
    reservation = ctx.step(reserve(order["order_id"]), config=RETRY_RESERVE)
    ctx.wait(ds.Duration.from_seconds(2), name="cool-down")
    with ctx.child("payment") as pay:
        auth = pay.step("authorize", lambda s: f"auth-{order['order_id']}")
        receipt = pay.step("capture", lambda s: {"auth": auth, "amount": order["total"]})
        pay.result = receipt
    return {"order_id": order["order_id"], "reservation": reservation, "receipt": receipt, "status": "charged"}
