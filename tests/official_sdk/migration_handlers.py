"""Handlers written for the official AWS Python SDK, as its users write them -- every operation kind,
called with the official SDK's keyword names, decorators and configs.

``tests/official_sdk/test_migration.py`` runs this file twice: as it is (on the official SDK's local runner
and on the engine), and with ONLY the import block below swapped for durable_sync's (``durable_sync``
takes the official names), and checks that the results -- and the operations each records (ids,
types, names) -- are the same. Steps are named explicitly or by a decorator: the name durable_sync
gives a plain function's step is a documented difference (docs/migrating.md).
"""
from __future__ import annotations

# -- imports: the only lines that change when the handlers move to durable_sync -------------------------------
from aws_durable_execution_sdk_python import (BatchResult, DurableContext, StepContext, StepError,
                                              durable_execution, durable_parallel_branch, durable_step,
                                              durable_wait_for_callback, durable_with_child_context)
from aws_durable_execution_sdk_python.config import (CallbackConfig, ChildConfig, CompletionConfig, Duration,
                                                     InvokeConfig, JitterStrategy, MapConfig, ParallelBranch,
                                                     ParallelConfig, StepConfig, StepSemantics,
                                                     WaitForCallbackConfig)
from aws_durable_execution_sdk_python.retries import RetryStrategyConfig, create_retry_strategy
from aws_durable_execution_sdk_python.serdes import JsonSerDes
from aws_durable_execution_sdk_python.types import WaitForCallbackContext, WaitForConditionCheckContext
from aws_durable_execution_sdk_python.waits import (WaitForConditionConfig, WaitStrategyConfig,
                                                    create_wait_strategy)
# -- end of imports ---------------------------------------------------------------------------------------------

RETRY_THREE_TIMES = StepConfig(retry_strategy=create_retry_strategy(RetryStrategyConfig(
    max_attempts=3, initial_delay=Duration.from_seconds(5), max_delay=Duration.from_minutes(1), backoff_rate=2,
    jitter_strategy=JitterStrategy.NONE, retryable_error_types=[ConnectionError])))
ATTEMPTS: dict[str, int] = {}
HANDOFF_RUNS: list = []


@durable_step
def price(step_context: StepContext, sku: str, quantity: int) -> int:
    step_context.logger.info("pricing %s", sku)
    return {"apple": 3, "pear": 5, "plum": 7}[sku] * quantity


@durable_step
def reserve(step_context: StepContext, order_id: str) -> str:
    key = f"reserve-{order_id}"
    ATTEMPTS[key] = ATTEMPTS.get(key, 0) + 1
    if step_context.attempt < 3:
        raise ConnectionError(f"inventory busy (attempt {step_context.attempt})")
    return f"R-{order_id}"


def out_of_stock(step_context: StepContext) -> str:
    raise LookupError("pear is out of stock")


@durable_execution
def order(event: dict, context: DurableContext) -> dict:
    """Steps: decorated, keyword form, retried, at-most-once, a failure caught as StepError; a wait."""
    total = context.step(price("apple", event["quantity"]))
    reservation = context.step(func=reserve(event["order_id"]), name="reserve", config=RETRY_THREE_TIMES)
    charged = context.step(func=lambda step_context: total + 1, name="charge",
                           config=StepConfig(step_semantics=StepSemantics.AT_MOST_ONCE_PER_RETRY))
    try:
        context.step(func=out_of_stock, name="pear", config=StepConfig(
            retry_strategy=create_retry_strategy(RetryStrategyConfig(max_attempts=1))))
        failure = None
    except StepError as error:
        failure = [type(error).__name__, error.message]
    context.wait(duration=Duration.from_minutes(10), name="cool-down")
    return {"total": total, "reservation": reservation, "charged": charged, "failure": failure}


def quote(context: DurableContext, sku: str, index: int, skus: list) -> dict:
    amount = context.step(price(sku, index + 1))
    return {"sku": sku, "amount": amount, "of": len(skus)}


def flaky_quote(context: DurableContext, sku: str, index: int, skus: list) -> int:
    if sku == "kiwi":
        raise KeyError(sku)
    return context.step(price(sku, 1))


@durable_parallel_branch(name="fetch-customer")
def fetch_customer(context: DurableContext, customer_id: str) -> dict:
    return context.step(func=lambda step_context: {"id": customer_id, "tier": "gold"}, name="load-customer")


@durable_parallel_branch()
def fetch_history(context: DurableContext, customer_id: str) -> list:
    context.wait(Duration.from_seconds(30), name="history-backoff")
    return context.step(func=lambda step_context: [customer_id, "o-1", "o-2"], name="load-history")


@durable_execution
def fan_out(event: dict, context: DurableContext) -> dict:
    """map with inputs=/func=, default and item_namer names; a tolerated failure; parallel with functions=."""
    quotes: BatchResult = context.map(inputs=event["skus"], func=quote, name="quotes",
                                      config=MapConfig(max_concurrency=2))
    named = context.map(inputs=event["skus"], func=quote,
                        config=MapConfig(item_namer=lambda sku, index: f"quote-{sku}"))
    tolerant = context.map(inputs=event["skus"] + ["kiwi"], func=flaky_quote, name="tolerant",
                           config=MapConfig(completion_config=CompletionConfig(tolerated_failure_count=1)))
    both = context.parallel(functions=[
        fetch_customer(event["customer"]),
        fetch_history(event["customer"]),
        ParallelBranch(func=lambda ctx: ctx.step(func=lambda s: "named", name="in-named"), name="explicit"),
        lambda ctx: ctx.step(func=lambda s: "plain", name="in-plain"),
    ], name="profile", config=ParallelConfig(max_concurrency=2))
    return {"quotes": quotes.get_results(), "named": [q["amount"] for q in named.get_results()],
            "tolerant": [tolerant.success_count, tolerant.failure_count, tolerant.get_results()],
            "profile": both.get_results(), "all_ok": both.status.value}


@durable_with_child_context
def ship(context: DurableContext, order_id: str, carrier: str) -> str:
    label = context.step(func=lambda s: f"{carrier}:{order_id}", name="label")
    context.wait(Duration.from_hours(1), name="pickup")
    return context.run_in_child_context(func=lambda inner: inner.step(func=lambda s: label.upper(), name="seal"),
                                        name="sealing")


@durable_execution
def shipping(event: dict, context: DurableContext) -> dict:
    """Child contexts: a decorated one, the keyword form, a ChildConfig."""
    tracking = context.run_in_child_context(ship(event["order_id"], "ups"))
    summary = context.run_in_child_context(func=lambda child: {"tracking": tracking, "steps": 2},
                                           name="summary", config=ChildConfig())
    return summary


@durable_wait_for_callback
def ask_warehouse(callback_id: str, context: WaitForCallbackContext, order_id: str) -> None:
    context.logger.info("asking the warehouse about %s with %s", order_id, callback_id)


@durable_execution
def approvals(event: dict, context: DurableContext) -> dict:
    """A callback (decoded as JSON by its serdes) and a wait_for_callback with a decorated submitter."""
    approval = context.create_callback(name="manager", config=CallbackConfig(
        timeout=Duration.from_hours(24), heartbeat_timeout=Duration.from_hours(2), serdes=JsonSerDes()))
    decision = approval.result()
    stock = context.wait_for_callback(submitter=ask_warehouse(event["order_id"]), name="warehouse",
                                      config=WaitForCallbackConfig(timeout=Duration.from_hours(1),
                                                                   serdes=JsonSerDes()))
    return {"decision": decision, "stock": stock}


def check_shipment(state: dict, check_context: WaitForConditionCheckContext) -> dict:
    return {"polls": state["polls"] + 1, "delivered": state["polls"] + 1 >= 3}


@durable_execution
def tracking(event: dict, context: DurableContext) -> dict:
    """wait_for_condition with keyword arguments and create_wait_strategy(WaitStrategyConfig(...))."""
    return context.wait_for_condition(check=check_shipment, config=WaitForConditionConfig(
        wait_strategy=create_wait_strategy(WaitStrategyConfig(
            should_continue_polling=lambda state: not state["delivered"], initial_delay=Duration.from_minutes(5),
            backoff_rate=1, jitter_strategy=JitterStrategy.NONE)),
        initial_state={"polls": 0, "delivered": False}), name="until-delivered")


@durable_execution
def invoice(event: dict, context: DurableContext) -> dict:
    amount = context.step(price(event["sku"], event["quantity"]))
    context.wait(Duration.from_seconds(15), name="render")
    return {"invoice": f"INV-{event['order_id']}", "amount": amount}


@durable_execution
def billing(event: dict, context: DurableContext) -> dict:
    """Chained invoke with keyword arguments."""
    bill = context.invoke(function_name="invoice", payload={"order_id": "o-9", "sku": "plum", "quantity": 2},
                          name="bill", config=InvokeConfig())
    return {"bill": bill, "paid": context.step(func=lambda s: bill["amount"] * 100, name="cents")}


def priced_after_approval(context: DurableContext, sku: str, index: int, skus: list) -> int:
    amount = context.step(price(sku, 1))
    if index == 1:  # this item waits for the outside: the map is in flight when the invocation ends
        gate = context.create_callback(name="gate", config=CallbackConfig(serdes=JsonSerDes()))
        amount += gate.result()["extra"]
    return amount


@durable_execution
def handoff(event: dict, context: DurableContext) -> dict:
    """Stops inside a map (item 1 waits for a callback) after named steps and a child context; the rest
    runs after the answer. test_migration.py starts it with one SDK and finishes it with the other."""
    HANDOFF_RUNS.append(event["order_id"])  # which module's code ran (each module has its own list)
    first = context.step(price("pear", 2))
    inner = context.run_in_child_context(func=lambda child: child.step(func=lambda s: first * 2, name="twice"),
                                         name="inner")
    amounts = context.map(inputs=["apple", "pear", "plum"], func=priced_after_approval, name="amounts")
    more = context.parallel(functions=[fetch_history("c-2"), lambda ctx: ctx.step(func=lambda s: 2, name="two")],
                            name="more")
    return {"first": first, "inner": inner, "amounts": amounts.get_results(), "more": more.get_results(),
            "last": context.step(func=lambda s: sum(amounts.get_results()), name="last")}


@durable_execution
def rich_handoff(event: dict, context: DurableContext) -> dict:
    """Like ``handoff``, with values the two SDKs write differently (dicts, tuples, batch results) completed
    before the invocation that waits for the callback ends."""
    customer = context.step(func=lambda s: {"id": event["order_id"], "tier": "gold"}, name="customer")
    pair = context.run_in_child_context(func=lambda child: ("box", child.step(price("plum", 3))), name="pair")
    early = context.map(inputs=["apple", "plum"], func=quote, name="early")
    side = context.parallel(functions=[fetch_customer("c-1"), lambda ctx: ctx.step(func=lambda s: [1, 2], name="ab")],
                            name="side")
    gate = context.create_callback(name="gate", config=CallbackConfig(serdes=JsonSerDes()))
    answer = gate.result()
    late = context.map(inputs=["pear"], func=quote)
    return {"customer": customer, "pair": list(pair), "early": early.get_results(), "side": side.get_results(),
            "reason": early.completion_reason.value, "answer": answer, "late": late.get_results()}


FUNCTIONS = {"order": order, "fan_out": fan_out, "shipping": shipping, "approvals": approvals,
             "tracking": tracking, "invoice": invoice, "billing": billing, "handoff": handoff,
             "rich_handoff": rich_handoff}
CASES = {"order": {"order_id": "o-1", "quantity": 4},
         "fan_out": {"skus": ["apple", "pear", "plum"], "customer": "c-7"},
         "shipping": {"order_id": "o-2"},
         "tracking": {},
         "billing": {}}
#: The callbacks of ``approvals`` in the order they open, by name, with the JSON each is answered with.
APPROVAL_ANSWERS = [("manager", '{"approved": true, "by": "ana"}'), ("warehouse create callback id", '{"boxes": 3}')]
