"""Handlers of the ``wait_for_condition`` suite (6-x)."""
from __future__ import annotations

import durable_sync as ds

CONTINUE_DELAY = ds.Duration.from_seconds(1)


def until(predicate):
    """A wait strategy that keeps polling (1 s apart) until ``predicate(state)`` holds."""

    def strategy(state, attempt):
        if predicate(state):
            return ds.WaitForConditionDecision.stop_polling()
        return ds.WaitForConditionDecision.continue_waiting(CONTINUE_DELAY)

    return strategy


def increment(state, check_ctx):
    return state + 1


# 6-1: an incrementing counter from 0 until it reaches the input threshold
@ds.durable_handler
def handler_6_1(event, ctx):
    config = ds.WaitForConditionConfig(wait_strategy=until(lambda s: s >= event), initial_state=0)
    return ctx.wait_for_condition(increment, config)


# 6-2: the condition already holds on the first check
@ds.durable_handler
def handler_6_2(event, ctx):
    config = ds.WaitForConditionConfig(wait_strategy=until(lambda s: s >= 5), initial_state=5)
    return ctx.wait_for_condition(lambda state, check_ctx: state, config)


# 6-3: an explicit name recorded on every poll
@ds.durable_handler
def handler_6_3(event, ctx):
    config = ds.WaitForConditionConfig(wait_strategy=until(lambda s: s >= 2), initial_state=0)
    return ctx.wait_for_condition(increment, config, name="poll-status")


# 6-4: a non-zero initial state threaded through the polls
@ds.durable_handler
def handler_6_4(event, ctx):
    config = ds.WaitForConditionConfig(wait_strategy=until(lambda s: s >= event), initial_state=5)
    return ctx.wait_for_condition(increment, config)


# 6-5: a fixed 2 s delay between polls (create_wait_strategy, no back-off, no jitter)
@ds.durable_handler
def handler_6_5(event, ctx):
    strategy = ds.create_wait_strategy(
        lambda state: state < event, initial_delay=2, max_delay=2, backoff_rate=1.0, jitter="none"
    )
    config = ds.WaitForConditionConfig(wait_strategy=strategy, initial_state=0)
    return ctx.wait_for_condition(increment, config)


# 6-6: the condition never holds; the strategy's 3 attempts run out
@ds.durable_handler
def handler_6_6(event, ctx):
    strategy = ds.create_wait_strategy(
        lambda state: True, max_attempts=3, initial_delay=1, max_delay=1, backoff_rate=1.0, jitter="none"
    )
    config = ds.WaitForConditionConfig(wait_strategy=strategy, initial_state=event)
    return ctx.wait_for_condition(increment, config)


def _raising_check(state, check_ctx):
    raise RuntimeError("check failed")


# 6-7: the check raises; not caught
@ds.durable_handler
def handler_6_7(event, ctx):
    config = ds.WaitForConditionConfig(wait_strategy=until(lambda s: True), initial_state=0)
    return ctx.wait_for_condition(_raising_check, config)


# 6-8: the check raises; the handler recovers
@ds.durable_handler
def handler_6_8(event, ctx):
    config = ds.WaitForConditionConfig(wait_strategy=until(lambda s: True), initial_state=0)
    try:
        return ctx.wait_for_condition(_raising_check, config)
    except ds.WaitForConditionError:
        return "recovered"


# 6-9: a structured state {status, attempts}
def _advance_job(state, check_ctx):
    attempts = state["attempts"] + 1
    return {"status": "DONE" if attempts >= 2 else "PENDING", "attempts": attempts}


@ds.durable_handler
def handler_6_9(event, ctx):
    config = ds.WaitForConditionConfig(
        wait_strategy=until(lambda s: s["status"] != "PENDING"),
        initial_state={"status": "PENDING", "attempts": 0},
    )
    return ctx.wait_for_condition(_advance_job, config)


# 6-10: the check returns None and polling stops at once
@ds.durable_handler
def handler_6_10(event, ctx):
    config = ds.WaitForConditionConfig(wait_strategy=until(lambda s: True))
    return ctx.wait_for_condition(lambda state, check_ctx: None, config)


# 6-11: a custom serdes for the state
class PrefixedStateSerDes:
    PREFIX = "state:"

    def serialize(self, value, ctx):
        return self.PREFIX + value

    def deserialize(self, text, ctx):
        if not text.startswith(self.PREFIX):
            raise ValueError(f"not an encoded state: {text!r}")
        return text[len(self.PREFIX):]


@ds.durable_handler
def handler_6_11(event, ctx):
    config = ds.WaitForConditionConfig(
        wait_strategy=until(lambda s: len(s) >= 2), initial_state="", serdes=PrefixedStateSerDes()
    )
    return ctx.wait_for_condition(lambda state, check_ctx: state + "x", config)


# 6-12: the final state feeds a step
@ds.durable_handler
def handler_6_12(event, ctx):
    config = ds.WaitForConditionConfig(wait_strategy=until(lambda s: s >= event), initial_state=0)
    reached = ctx.wait_for_condition(increment, config)
    return ctx.step(lambda step_ctx: reached * 10)


# 6-13: two wait_for_condition operations; the first result seeds the second
@ds.durable_handler
def handler_6_13(event, ctx):
    first = ctx.wait_for_condition(
        increment, ds.WaitForConditionConfig(wait_strategy=until(lambda s: s >= 2), initial_state=0)
    )
    return ctx.wait_for_condition(
        increment, ds.WaitForConditionConfig(wait_strategy=until(lambda s: s >= 4), initial_state=first)
    )


HANDLERS = {
    "6-1": handler_6_1,
    "6-2": handler_6_2,
    "6-3": handler_6_3,
    "6-4": handler_6_4,
    "6-5": handler_6_5,
    "6-6": handler_6_6,
    "6-7": handler_6_7,
    "6-8": handler_6_8,
    "6-9": handler_6_9,
    "6-10": handler_6_10,
    "6-11": handler_6_11,
    "6-12": handler_6_12,
    "6-13": handler_6_13,
}
