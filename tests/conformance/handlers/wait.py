"""Handlers of the ``wait`` suite (2-x)."""
from __future__ import annotations

import durable_sync as ds


# 2-1: wait basic
@ds.durable_handler
def handler_2_1(event, ctx):
    ctx.wait(ds.Duration.from_seconds(2))


# 2-2: wait with a name
@ds.durable_handler
def handler_2_2(event, ctx):
    ctx.wait(ds.Duration.from_seconds(2), name="custom_wait_name")


# 2-3: two sequential waits
@ds.durable_handler
def handler_2_3(event, ctx):
    ctx.wait(ds.Duration.from_seconds(2), name="wait-1")
    ctx.wait(ds.Duration.from_seconds(2), name="wait-2")
    return {"completedWaits": 2}


# 2-4: minutes are converted to seconds
@ds.durable_handler
def handler_2_4(event, ctx):
    ctx.wait(ds.Duration.from_minutes(1))


# 2-5: hours are converted to seconds
@ds.durable_handler
def handler_2_5(event, ctx):
    ctx.wait(ds.Duration.from_hours(1))


HANDLERS = {
    "2-1": handler_2_1,
    "2-2": handler_2_2,
    "2-3": handler_2_3,
    "2-4": handler_2_4,
    "2-5": handler_2_5,
}
