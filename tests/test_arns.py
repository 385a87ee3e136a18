"""ARNs: one grammar (``durable_sync.wire``) for the engine that makes them and every reader that parses them."""
from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

import durable_sync as ds
from durable_sync import wire
from durable_sync.inspection import read_execution
from durable_sync.local import LocalEngine
from durable_sync.local.http import LambdaApi

FUNCTION_NAMES = st.from_regex(r"[A-Za-z0-9_-]{1,64}", fullmatch=True)
EXECUTION_NAMES = st.from_regex(r"[ -~]{1,256}", fullmatch=True)  # what the engine accepts (wire.validate_name)


@given(FUNCTION_NAMES, EXECUTION_NAMES, st.from_regex(r"[0-9a-f]{32}", fullmatch=True))
def test_an_execution_arn_parses_back_into_its_parts(function, name, execution_id):
    arn = wire.execution_arn(function, name, execution_id)
    assert wire.parse_execution_arn(arn) == wire.ExecutionArn(
        function_arn=f"arn:aws:lambda:us-east-1:000000000000:function:{function}:$LATEST", function_name=function,
        qualifier="$LATEST", name=name, execution_id=execution_id)
    assert wire.function_name_of(wire.parse_execution_arn(arn).function_arn) == function


def test_arns_of_the_service_parse_too():
    arn = "arn:aws:lambda:eu-west-1:123456789012:function:orders/durable-execution/o-1/8e2f"
    assert wire.parse_execution_arn(arn) == wire.ExecutionArn(
        "arn:aws:lambda:eu-west-1:123456789012:function:orders", "orders", None, "o-1", "8e2f")
    for value in ("orders", "orders:7", "123456789012:function:orders",
                  "arn:aws:lambda:eu-west-1:123456789012:function:orders:$LATEST"):
        assert wire.function_name_of(value) == "orders"
    assert wire.parse_execution_arn("arn:aws:lambda:eu-west-1:123456789012:function:orders") is None
    assert wire.parse_execution_arn(None) is None and wire.function_name_of("two words") is None


@ds.durable_handler
def echo(event, ctx):
    return ctx.step(lambda _: event, name="echo")


def test_the_engine_the_facade_and_the_read_model_agree_on_an_execution_arn():
    with LocalEngine(db=":memory:", skip_time=True, functions={"echo": echo}) as engine:
        api = LambdaApi(engine)  # the HTTP façade's operations, without HTTP
        arn = api.call("Invoke", {"FunctionName": "echo", "Payload": b"1",
                                  "DurableExecutionName": "e-1"})["DurableExecutionArn"]
        got = api.call("GetDurableExecution", {"DurableExecutionArn": arn})
        [listed] = api.call("ListDurableExecutionsByFunction",
                            {"FunctionName": wire.function_arn("echo")})["DurableExecutions"]
        parts = wire.parse_execution_arn(arn)
        assert (parts.function_name, parts.name) == ("echo", "e-1")
        assert got["FunctionArn"] == listed["FunctionArn"] == parts.function_arn == wire.function_arn("echo", "$LATEST")
        assert got["DurableExecutionName"] == "e-1" and got["Version"] == "$LATEST"
        [item] = engine.list_executions()
        assert (item["FunctionArn"], item["FunctionName"]) == (parts.function_arn, "echo")
        model = read_execution(engine.get_execution(arn), engine.operations(arn), engine.history(arn))
        assert (model.function_name, model.name) == ("echo", "e-1")  # an ExecutionResult has only the ARN
