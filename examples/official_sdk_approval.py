"""An order that needs an approval, written with the official AWS SDK (aws-durable-execution-sdk-python).

Nothing here imports durable_sync: it is the handler you deploy to Lambda. The durable_sync engine runs
it unchanged (docs/official-sdk.md): in a test, with `durable-sync run`, or behind `durable-sync serve`
for boto3 and the AWS CLI.

Run it (virtual time: the payment retry's 30 s back-off takes none):

    durable-sync run examples/official_sdk_approval.py --input '{"order_id": "o-1", "amount": 40}' --skip-time --db :memory:

Over the auto-approval limit, with nobody to answer, the 24 h approval timeout passes at once too:

    durable-sync run examples/official_sdk_approval.py --input '{"order_id": "o-2", "amount": 250}' --skip-time --db :memory:

Answer the approval yourself: serve it (with --skip-time, waits and retries take no time but the
callback's timeout keeps real time) and drive it with the AWS CLI or boto3:

    durable-sync serve --skip-time --db :memory: -f approval=examples/official_sdk_approval.py:handler
    export AWS_ENDPOINT_URL_LAMBDA=http://127.0.0.1:9014 AWS_REGION=us-east-1
    aws lambda invoke --function-name approval --invocation-type Event --durable-execution-name o-3 \\
        --cli-binary-format raw-in-base64-out --payload '{"order_id": "o-3", "amount": 250}' /dev/stdout
    aws lambda get-durable-execution-history --durable-execution-arn ARN      # CallbackStarted: the id
    aws lambda send-durable-execution-callback-success --callback-id ID \\
        --cli-binary-format raw-in-base64-out --result '{"approved": true, "by": "ops"}'
    aws lambda get-durable-execution --durable-execution-arn ARN              # SUCCEEDED, the receipt
"""
from __future__ import annotations

import json

from aws_durable_execution_sdk_python import (CallbackTimeoutError, DurableContext, StepContext, durable_execution,
                                              durable_step)
from aws_durable_execution_sdk_python.config import CallbackConfig, Duration, JitterStrategy, StepConfig, StepSemantics
from aws_durable_execution_sdk_python.retries import RetryStrategyConfig, create_retry_strategy

AUTO_APPROVE_LIMIT = 100
PAYMENT_RETRIES = create_retry_strategy(RetryStrategyConfig(
    max_attempts=3, initial_delay=Duration.from_seconds(30), jitter_strategy=JitterStrategy.NONE))


@durable_step
def check_order(step: StepContext, event: dict) -> dict:
    amount = event.get("amount")
    if not isinstance(amount, (int, float)) or amount <= 0:
        raise ValueError(f"an order needs a positive amount, got {amount!r}")
    return {"order_id": event.get("order_id", "o-unknown"), "amount": amount}


@durable_step
def charge(step: StepContext, order: dict) -> dict:
    """The payment provider is flaky on the first try; the retry strategy waits 30 s and tries again."""
    if step.attempt == 1:
        raise ConnectionError("payment provider unavailable")
    return {"charged": order["amount"], "attempts": step.attempt}


@durable_execution
def handler(event: dict, context: DurableContext) -> dict:
    order = context.step(check_order(event), name="check order")
    approval = {"approved": True, "by": "auto"}
    if order["amount"] > AUTO_APPROVE_LIMIT:
        callback = context.create_callback(name="approval",
                                           config=CallbackConfig(timeout=Duration.from_hours(24)))
        context.step(lambda step: step.logger.info("approval requested: %s", callback.callback_id),
                     name="request approval", config=StepConfig(step_semantics=StepSemantics.AT_MOST_ONCE_PER_RETRY))
        try:
            approval = callback.result()
        except CallbackTimeoutError:
            return {"order_id": order["order_id"], "status": "expired"}
        if isinstance(approval, str):  # with no serdes, the official SDK hands back the raw JSON text
            approval = json.loads(approval)
        if not approval.get("approved"):
            return {"order_id": order["order_id"], "status": "rejected"}
        context.wait(Duration.from_hours(1), name="cool-down")
    payment = context.step(charge(order), name="charge", config=StepConfig(retry_strategy=PAYMENT_RETRIES))
    return {"order_id": order["order_id"], "status": "paid", "approved_by": approval.get("by"), **payment}
