"""A workflow that calls another durable function: ``ctx.invoke`` (chained invoke).

Run it:  durable-sync run examples/invoke_workflow.py --input '{"customer": "c-42", "amount": 120}' --skip-time --db :memory:

``handler`` (the caller) checks a payment request, then invokes ``fraud-check``, a second durable
function, by name. The target runs as its own durable execution (its own steps, a wait, its own
history); the caller is suspended meanwhile — no process waits — and resumes with the target's
result, or an ``InvokeError`` when the target fails. An amount above 10 000 is refused by the
target, so the caller takes its "rejected" path:

    durable-sync run examples/invoke_workflow.py --input '{"customer": "c-42", "amount": 25000}' --skip-time --db :memory:

How the engine finds the target: on AWS, ``ctx.invoke("fraud-check", ...)`` calls the Lambda function
of that name (or ARN; use a qualified name such as ``fraud-check:live``). Locally, the functions the
engine can invoke are registered by name: ``durable-sync run`` registers the ``FUNCTIONS`` dict of the
handler's file, ``LocalEngine(functions={...})`` / ``engine.register_function(name, handler)`` do the
same in code, and ``DurableTestRunner(handler, functions={...})`` in tests.
"""
from __future__ import annotations

import durable_sync as ds

FRAUD_LIMIT = 10_000


# -- the target: a durable function of its own ------------------------------------------------------------
@ds.durable_step
def score_customer(step: ds.StepContext, customer: str, amount: float) -> int:
    score = (sum(map(ord, customer)) + int(amount)) % 100
    step.logger.info("customer %s scored %d for %s", customer, score, amount)
    return score


@ds.durable_handler
def fraud_check(event: dict, ctx: ds.DurableContext) -> dict:
    if event["amount"] > FRAUD_LIMIT:
        raise PermissionError(f"amount {event['amount']} is above the automatic limit of {FRAUD_LIMIT}")
    score = ctx.step(score_customer(event["customer"], event["amount"]))
    ctx.wait(ds.Duration.from_seconds(3), name="rate-limit")  # the target can wait too: the caller waits with it
    verdict = ctx.step("verdict", lambda s: "review" if score > 90 else "ok")
    return {"score": score, "verdict": verdict}


# -- the caller ----------------------------------------------------------------------------------------------------
@ds.durable_step
def validate(step: ds.StepContext, event: dict) -> dict:
    customer, amount = event.get("customer"), event.get("amount")
    if not customer or not isinstance(amount, (int, float)) or amount <= 0:
        raise ValueError(f"a payment needs a customer and a positive amount, got {event!r}")
    return {"customer": customer, "amount": amount}


@ds.durable_handler
def handler(event: dict, ctx: ds.DurableContext) -> dict:
    payment = ctx.step(validate(event))
    try:
        check = ctx.invoke("fraud-check", payment, name="fraud-check")
    except ds.InvokeError as exc:  # the target failed: its error type and message come along
        ctx.logger.warning("fraud check refused %s: %s", payment["customer"], exc.error_message)
        return {**payment, "status": "rejected", "reason": f"{exc.error_type}: {exc.error_message}"}
    if check["verdict"] != "ok":
        return {**payment, "status": "held for review", "score": check["score"]}
    receipt = ctx.step("charge", lambda s: f"charge-{payment['customer']}-{payment['amount']}")
    return {**payment, "status": "charged", "score": check["score"], "receipt": receipt}


# The functions `ctx.invoke` can call by name when this file runs with `durable-sync run`.
FUNCTIONS = {"fraud-check": fraud_check}
