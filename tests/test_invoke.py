"""``ctx.invoke``: chained invoke of local functions on ``LocalEngine(db=":memory:", skip_time=True)``."""
from __future__ import annotations

import json

import pytest

import durable_sync as ds
from durable_sync.local import LocalEngine

RUNS: list = []


@ds.durable_handler
def price_order(event, ctx):
    RUNS.append(("price_order", event))
    ctx.wait(30, name="rate-limit")
    total = ctx.step("total", lambda s: sum(event["items"]))
    return {"total": total, "currency": "EUR"}


@ds.durable_handler
def reject_order(event, ctx):
    ctx.step("check", lambda s: "checked")
    raise PermissionError(f"order {event['id']} is blocked")


def plain_tax(event, context):
    RUNS.append(("plain_tax", event, context.function_name))
    return {"tax": round(event["amount"] * 0.2, 2)}


def plain_malicious(event, context):
    return {"py/reduce": [{"py/function": "os.system"}, {"py/tuple": ["echo pwned"]}]}


@pytest.fixture
def engine():
    eng = LocalEngine(db=":memory:", skip_time=True,
                      functions={"price-order": price_order, "reject-order": reject_order, "tax": plain_tax})
    RUNS.clear()
    yield eng
    eng.close()


def events(engine, arn, *types_):
    return [e for e in engine.history(arn) if not types_ or e["EventType"] in types_]


@ds.durable_handler
def checkout(event, ctx):
    priced = ctx.invoke("price-order", {"items": event["items"]}, name="price")
    tax = ctx.invoke("tax", {"amount": priced["total"]}, name="tax")
    return {"priced": priced, "tax": tax}


def test_invoke_of_a_durable_target_runs_it_as_its_own_execution(engine):
    arn = engine.start(checkout, {"items": [10, 20]})
    assert engine.get_execution(arn).status == "RUNNING"  # the target waits 30 s
    [child] = [e for e in engine.list_executions() if e["FunctionName"] == "price-order"]
    assert child["Status"] == "RUNNING"
    engine.advance(30)
    result = engine.get_execution(arn)
    assert result.status == "SUCCEEDED"
    assert result.result == {"priced": {"total": 30, "currency": "EUR"}, "tax": {"tax": 6.0}}
    assert engine.get_execution(child["DurableExecutionArn"]).result == {"total": 30, "currency": "EUR"}
    assert RUNS[-1] == ("plain_tax", {"amount": 30}, "tax")
    # the target's input is the payload, as JSON
    [first] = [e for e in engine.history(child["DurableExecutionArn"]) if e["EventType"] == "ExecutionStarted"]
    assert json.loads(first["ExecutionStartedDetails"]["Input"]["Payload"]) == {"items": [10, 20]}

    history = [(e["EventType"], e.get("Name")) for e in engine.history(arn)]
    assert history == [
        ("ExecutionStarted", None), ("ChainedInvokeStarted", "price"), ("InvocationCompleted", None),
        ("ChainedInvokeSucceeded", "price"), ("ChainedInvokeStarted", "tax"), ("InvocationCompleted", None),
        ("ChainedInvokeSucceeded", "tax"), ("InvocationCompleted", None), ("ExecutionSucceeded", None)]
    [started] = events(engine, arn, "ChainedInvokeStarted")[:1]
    assert started["SubType"] == "ChainedInvoke"
    assert started["ChainedInvokeStartedDetails"]["FunctionName"] == "price-order"
    [done] = events(engine, arn, "ChainedInvokeSucceeded")[:1]
    assert json.loads(done["ChainedInvokeSucceededDetails"]["Result"]["Payload"]) == {"total": 30, "currency": "EUR"}
    assert len([r for r in RUNS if r[0] == "price_order"]) == 2  # the target's own two invocations only


@ds.durable_handler
def call_rejecting(event, ctx):
    try:
        return ctx.invoke("reject-order", {"id": 7})
    except ds.InvokeError as exc:
        ctx.wait(1)  # replay the failed invoke: same InvokeError
        return {"class": type(exc).__name__, "type": exc.error_type, "message": exc.error_message}


def test_a_failing_target_raises_invoke_error_with_its_error(engine):
    result = engine.run(call_rejecting)
    assert result.status == "SUCCEEDED"
    assert result.result == {"class": "InvokeError", "type": "PermissionError", "message": "order 7 is blocked"}
    [failed] = events(engine, result.arn, "ChainedInvokeFailed")
    assert failed["ChainedInvokeFailedDetails"]["Error"]["Payload"]["ErrorType"] == "PermissionError"


def test_an_uncaught_invoke_error_fails_the_caller(engine):
    @ds.durable_handler
    def caller(event, ctx):
        return ctx.invoke("reject-order", {"id": 1})

    result = engine.run(caller)
    assert result.status == "FAILED"
    assert result.error["ErrorType"] == "PermissionError"
    assert result.error["ErrorMessage"] == "order 1 is blocked"


def test_an_unknown_function_fails_at_once(engine):
    @ds.durable_handler
    def caller(event, ctx):
        return ctx.invoke("no-such-function", {"x": 1})

    before = engine.clock.now_ms()
    arn = engine.start(caller)
    result = engine.get_execution(arn)  # no advance, no wait: never a hang
    assert result.status == "FAILED"
    assert result.error["ErrorType"] == "ResourceNotFoundException"
    assert "no-such-function" in result.error["ErrorMessage"]
    assert "register_function" in result.error["ErrorMessage"]
    assert engine.clock.now_ms() == before
    assert [e["EventType"] for e in engine.history(arn)] == [
        "ExecutionStarted", "ChainedInvokeStarted", "InvocationCompleted", "ChainedInvokeFailed",
        "InvocationCompleted", "ExecutionFailed"]


def test_register_function_and_function_arns(engine):
    @ds.durable_handler
    def caller(event, ctx):
        a = ctx.invoke("late", 2)
        b = ctx.invoke("arn:aws:lambda:us-east-1:123456789012:function:late:$LATEST", 3)
        return [a, b]

    engine.register_function("late", lambda event, context: event * 10)
    assert engine.run(caller).result == [20, 30]


def test_invoke_results_are_decoded_as_plain_json_only(engine):
    engine.register_function("evil", plain_malicious)

    @ds.durable_handler
    def caller(event, ctx):
        value = ctx.invoke("evil", None)
        return {"type": type(value).__name__, "keys": sorted(value)}

    assert engine.run(caller).result == {"type": "dict", "keys": ["py/reduce"]}


def test_non_json_payload_fails_before_any_checkpoint(engine):
    @ds.durable_handler
    def caller(event, ctx):
        return ctx.invoke("tax", {1, 2, 3})

    result = engine.run(caller)
    assert result.status == "FAILED"
    assert result.error["ErrorType"] == "SerDesError"
    assert not events(engine, result.arn, "ChainedInvokeStarted")


def test_stopping_the_target_stops_the_invoke(engine):
    @ds.durable_handler
    def caller(event, ctx):
        try:
            return ctx.invoke("price-order", {"items": [1]})
        except ds.InvokeError as exc:
            return ["stopped", exc.error_type]

    arn = engine.start(caller)
    [child] = [e for e in engine.list_executions() if e["FunctionName"] == "price-order"]
    engine.stop(child["DurableExecutionArn"])
    assert engine.get_execution(arn).result[0] == "stopped"
    assert events(engine, arn, "ChainedInvokeStopped")


def test_invoke_with_tenant_and_custom_serdes(engine):
    class Upper:
        def serialize(self, value, ctx):
            return json.dumps(value.upper())

        def deserialize(self, text, ctx):
            return json.loads(text)["tax"] * 100

    engine.register_function("shout", lambda event, context: {"tax": len(event)})

    @ds.durable_handler
    def caller(event, ctx):
        return ctx.invoke("shout", "abc", config=ds.InvokeConfig(serdes_payload=Upper(), serdes_result=Upper(),
                                                                tenant_id="tenant-1"))

    result = engine.run(caller)
    assert result.result == 300
    [started] = events(engine, result.arn, "ChainedInvokeStarted")
    assert started["ChainedInvokeStartedDetails"]["TenantId"] == "tenant-1"
    assert started["ChainedInvokeStartedDetails"]["Input"]["Payload"] == '"ABC"'


@ds.durable_handler
def slow_target(event, ctx):
    RUNS.append(("slow_target", event))
    ctx.wait(100)
    return {"done": event}


@ds.durable_handler
def restart_caller(event, ctx):
    return ctx.invoke("slow", "x", name="slow-call")


@pytest.mark.parametrize("finish_before_restart", [False, True])
def test_an_invoke_survives_an_engine_restart(tmp_path, finish_before_restart):
    db = str(tmp_path / "durable.db")
    functions = {"slow": slow_target, "restart_caller": restart_caller}
    RUNS.clear()
    first = LocalEngine(db=db, skip_time=True, functions=functions)
    arn = first.start(restart_caller)
    assert first.get_execution(arn).status == "RUNNING"
    if finish_before_restart:  # the target ends, then the engine dies before the caller ran again
        [child] = [e for e in first.list_executions() if e["FunctionName"] == "slow"]
        first._invoke_links.clear()  # as if the link (memory only) was lost with the process
        first.advance(100)
        assert first.get_execution(child["DurableExecutionArn"]).status == "SUCCEEDED"
        assert first.get_execution(arn).status == "RUNNING"
    first.close()

    second = LocalEngine(db=db, skip_time=True, functions=functions)
    try:
        result = second.wait(arn)
        assert result.status == "SUCCEEDED"
        assert result.result == {"done": "x"}
        targets = [e for e in second.list_executions() if e["FunctionName"] == "slow"]
        assert len(targets) == 1  # attached to the same target execution, not started twice
        assert [r for r in RUNS if r[0] == "slow_target"][:1] == [("slow_target", "x")]
        assert len(events(second, arn, "ChainedInvokeSucceeded")) == 1
    finally:
        second.close()
