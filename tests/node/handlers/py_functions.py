"""Python durable functions the JavaScript ones invoke (and that invoke them): tests/node/test_features.py."""
import durable_sync as ds


@ds.durable_handler
def double(event, ctx):
    return ctx.step(lambda step_ctx: {"n": event["n"] * 2}, name="double")


@ds.durable_handler
def calls_node(event, ctx):
    greeted = ctx.invoke("js-greet", {"name": event["name"]}, name="ask-node")
    return ctx.step(lambda step_ctx: {"fromNode": greeted, "length": len(greeted["greeting"])}, name="measure")
