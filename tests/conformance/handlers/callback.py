"""Handlers of the ``callback`` suite (4-x)."""
from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass

import durable_sync as ds


def _timeout(seconds: int) -> ds.CallbackConfig:
    return ds.CallbackConfig(timeout=ds.Duration.from_seconds(seconds))


# 4-1: create a callback named after the input and wait for its result
@ds.durable_handler
def handler_4_1(event, ctx):
    callback = ctx.create_callback(name=event)
    return callback.result()


# 4-2: a callback with an explicit name
@ds.durable_handler
def handler_4_2(event, ctx):
    callback = ctx.create_callback(name="approval")
    return callback.result()


# 4-3: a 5 s timeout, nobody answers
@ds.durable_handler
def handler_4_3(event, ctx):
    callback = ctx.create_callback(name=event, config=_timeout(5))
    return callback.result()


# 4-4: a 5 s heartbeat timeout, no heartbeat
@ds.durable_handler
def handler_4_4(event, ctx):
    config = ds.CallbackConfig(heartbeat_timeout=ds.Duration.from_seconds(5))
    return ctx.create_callback(name=event, config=config).result()


# 4-5: a 10 s heartbeat timeout kept alive by a heartbeat, then success
@ds.durable_handler
def handler_4_5(event, ctx):
    config = ds.CallbackConfig(heartbeat_timeout=ds.Duration.from_seconds(10))
    return ctx.create_callback(name=event, config=config).result()


# 4-6: the outside reports failure; not caught
@ds.durable_handler
def handler_4_6(event, ctx):
    return ctx.create_callback(name=event).result()


def _step_between(step_ctx):
    return "step done"


# 4-7: callback, then a step, then wait for the callback (failure)
@ds.durable_handler
def handler_4_7(event, ctx):
    callback = ctx.create_callback(name=event)
    ctx.step(_step_between)
    return callback.result()


# 4-8: callback with a 5 s timeout, a step, then wait for the callback (times out)
@ds.durable_handler
def handler_4_8(event, ctx):
    callback = ctx.create_callback(name=event, config=_timeout(5))
    ctx.step(_step_between)
    return callback.result()


# 4-9: callback, a 5 s wait, then the callback's result (answered during the wait)
@ds.durable_handler
def handler_4_9(event, ctx):
    callback = ctx.create_callback(name=event)
    ctx.wait(ds.Duration.from_seconds(5))
    return callback.result()


# 4-10: as 4-9, but the outside reports failure during the wait
@ds.durable_handler
def handler_4_10(event, ctx):
    callback = ctx.create_callback(name=event)
    ctx.wait(ds.Duration.from_seconds(5))
    return callback.result()


# 4-11: a 3 s callback timeout fires during a 6 s wait
@ds.durable_handler
def handler_4_11(event, ctx):
    callback = ctx.create_callback(name=event, config=_timeout(3))
    ctx.wait(ds.Duration.from_seconds(6))
    return callback.result()


# 4-12: callback result, then a 2 s wait, then return the result
@ds.durable_handler
def handler_4_12(event, ctx):
    value = ctx.create_callback(name=event).result()
    ctx.wait(ds.Duration.from_seconds(2))
    return value


# 4-13: the callback failure is caught, then a 2 s wait
@ds.durable_handler
def handler_4_13(event, ctx):
    callback = ctx.create_callback(name=event)
    try:
        message = callback.result()
    except ds.CallbackError as exc:
        message = f"callback failed: {exc.error_message}"
    ctx.wait(ds.Duration.from_seconds(2))
    return message


# 4-14: the callback timeout is caught, then a 2 s wait
@ds.durable_handler
def handler_4_14(event, ctx):
    callback = ctx.create_callback(name=event, config=_timeout(3))
    try:
        message = callback.result()
    except ds.CallbackTimeoutError as exc:
        message = f"callback timed out: {exc.error_type}"
    ctx.wait(ds.Duration.from_seconds(2))
    return message


# 4-15: a custom deserializer turns the JSON payload into a typed object with a datetime
@dataclass(frozen=True)
class Received:
    id: str
    message: str
    timestamp: dt.datetime


class ReceivedSerDes:
    def serialize(self, value, ctx):
        return json.dumps({"id": value.id, "message": value.message, "timestamp": value.timestamp.isoformat()})

    def deserialize(self, text, ctx):
        data = json.loads(text)
        stamp = dt.datetime.fromisoformat(data["timestamp"].replace("Z", "+00:00"))
        return Received(id=data["id"], message=data["message"], timestamp=stamp)


@ds.durable_handler
def handler_4_15(event, ctx):
    received = ctx.create_callback(name=event, config=ds.CallbackConfig(serdes=ReceivedSerDes())).result()
    return {
        "received": {
            "id": received.id,
            "message": received.message,
            "timestamp": int(received.timestamp.timestamp()),
        }
    }


# 4-16: a custom deserializer turns the payload into a number
class NumberSerDes:
    def serialize(self, value, ctx):
        return json.dumps(value)

    def deserialize(self, text, ctx):
        return int(json.loads(text))


@ds.durable_handler
def handler_4_16(event, ctx):
    count = ctx.create_callback(name=event, config=ds.CallbackConfig(serdes=NumberSerDes())).result()
    return {"count": count, "doubled": count * 2}


# 4-17: callback A then its result, then callback B then its result
@ds.durable_handler
def handler_4_17(event, ctx):
    a = ctx.create_callback(name=event[0]).result()
    b = ctx.create_callback(name=event[1]).result()
    return [a, b]


# 4-18: create A and B, then wait for A, then for B
@ds.durable_handler
def handler_4_18(event, ctx):
    callback_a = ctx.create_callback(name=event[0])
    callback_b = ctx.create_callback(name=event[1])
    a = callback_a.result()
    b = callback_b.result()
    return [a, b]


# 4-19: create A and B, then wait for B, then for A
@ds.durable_handler
def handler_4_19(event, ctx):
    callback_a = ctx.create_callback(name=event[0])
    callback_b = ctx.create_callback(name=event[1])
    b = callback_b.result()
    a = callback_a.result()
    return [a, b]


HANDLERS = {
    "4-1": handler_4_1,
    "4-2": handler_4_2,
    "4-3": handler_4_3,
    "4-4": handler_4_4,
    "4-5": handler_4_5,
    "4-6": handler_4_6,
    "4-7": handler_4_7,
    "4-8": handler_4_8,
    "4-9": handler_4_9,
    "4-10": handler_4_10,
    "4-11": handler_4_11,
    "4-12": handler_4_12,
    "4-13": handler_4_13,
    "4-14": handler_4_14,
    "4-15": handler_4_15,
    "4-16": handler_4_16,
    "4-17": handler_4_17,
    "4-18": handler_4_18,
    "4-19": handler_4_19,
}
