"""Human approval: ask a person to approve an expense and wait durably for the answer, or a timeout.

Run it with nobody answering (virtual time: the 24 h timeout passes at once, the timeout path runs):

    durable-sync run examples/human_approval.py --input '{"expense_id": "e-1", "amount": 420}' --skip-time --db :memory:

Answer it yourself: run it in real time (default database durable.db), and from another shell in the
same directory answer with the callback id it prints (the execution is suspended meanwhile):

    durable-sync run examples/human_approval.py --input '{"expense_id": "e-1", "amount": 420}'
    durable-sync callback succeed CALLBACK_ID '{"approved": true}'
    durable-sync callback succeed CALLBACK_ID '{"approved": false, "reason": "over budget"}'

The answer is decoded as plain JSON (it comes from outside the function), never unpickled.
"""
from __future__ import annotations

import sys

import durable_sync as ds

APPROVAL_TIMEOUT = ds.Duration.from_hours(24)
AUTO_APPROVE_LIMIT = 100


@ds.durable_step
def check_expense(step: ds.StepContext, event: dict) -> dict:
    amount = event.get("amount")
    if not isinstance(amount, (int, float)) or amount <= 0:
        raise ValueError(f"an expense needs a positive amount, got {amount!r}")
    return {"expense_id": event.get("expense_id", "e-unknown"), "amount": amount}


@ds.durable_step
def ask_approver(step: ds.StepContext, expense: dict, callback_id: str) -> str:
    """Send the request to the approver (here: print it). A step, so it is sent once, not on every replay."""
    step.logger.info("approval of %s requested; callback id %s", expense["expense_id"], callback_id)
    print(f"Expense {expense['expense_id']} ({expense['amount']}) needs an approval. Answer with:\n"
          f"  durable-sync callback succeed {callback_id} '{{\"approved\": true}}'\n"
          f"  durable-sync callback fail {callback_id} '{{\"ErrorType\": \"Rejected\", \"ErrorMessage\": \"why\"}}'",
          file=sys.stderr, flush=True)
    return "sent"


@ds.durable_step
def pay(step: ds.StepContext, expense: dict) -> str:
    return f"payment-{expense['expense_id']}"


@ds.durable_handler
def handler(event: dict, ctx: ds.DurableContext) -> dict:
    expense = ctx.step(check_expense(event))
    if expense["amount"] <= AUTO_APPROVE_LIMIT:
        return {**expense, "status": "paid", "payment": ctx.step(pay(expense)), "approved_by": "policy"}

    approval = ctx.create_callback("approval", config=ds.CallbackConfig(timeout=APPROVAL_TIMEOUT))
    ctx.step(ask_approver(expense, approval.callback_id))
    try:
        answer = approval.result()  # suspends the execution until someone answers (or the timeout)
    except ds.CallbackTimeoutError:
        ctx.logger.warning("nobody answered the approval of %s in time", expense["expense_id"])
        return {**expense, "status": "expired"}
    except ds.CallbackError as exc:  # the approver answered with `callback fail`
        return {**expense, "status": "rejected", "reason": exc.error_message or exc.error_type}

    if not isinstance(answer, dict) or answer.get("approved") is not True:
        reason = answer.get("reason") if isinstance(answer, dict) else None
        return {**expense, "status": "rejected", "reason": reason or "not approved"}
    return {**expense, "status": "paid", "payment": ctx.step(pay(expense)), "approved_by": "approver"}
