"""The Node.js runtime: the bootstrap, the Lambda context, and clear errors for what cannot run."""
from __future__ import annotations

import os
import uuid

import pytest

from durable_sync.local.handlers import HandlerLoadError, load
from durable_sync.local.clock import RealClock
from durable_sync.local.runner import InvocationFailed, LocalLambdaContext

from .support import HANDLERS, js

ENDPOINT = "http://127.0.0.1:9"  # never contacted by these handlers


ENGINE_ENV = {"AWS_ENDPOINT_URL_LAMBDA": ENDPOINT, "AWS_REGION": "us-east-1", "AWS_DEFAULT_REGION": "us-east-1"}


def FakeLambdaContext(remaining_ms: int = 900_000, environment: dict = ENGINE_ENV) -> LocalLambdaContext:
    """The engine's Lambda context for a function "orders", with the environment foreign.Host gives."""
    clock = RealClock()
    ctx = LocalLambdaContext(None, "orders", clock.now_ms() + remaining_ms, clock)
    ctx.environment = dict(environment)
    return ctx


def test_the_handler_gets_the_event_a_lambda_context_and_the_engines_endpoint(js_sdk):
    ctx = FakeLambdaContext(remaining_ms=600_000)
    out = js("context_echo.mjs")({"order": 7, "items": ["a", None]}, ctx)
    assert out["event"] == {"order": 7, "items": ["a", None]}
    assert out["functionName"] == "orders"
    assert out["functionVersion"] == "$LATEST"
    assert out["invokedFunctionArn"] == "arn:aws:lambda:us-east-1:000000000000:function:orders"
    assert out["awsRequestId"] == ctx.aws_request_id
    assert out["memoryLimitInMB"] == "128"
    assert out["logGroupName"] == "/aws/lambda/orders"
    assert 590_000 < out["remaining"] <= 600_000
    assert out["env"] == {"AWS_ENDPOINT_URL_LAMBDA": ENDPOINT, "AWS_ENDPOINT_URL": ENDPOINT,
                          "AWS_REGION": "us-east-1", "AWS_LAMBDA_FUNCTION_NAME": "orders",
                          "DURABLE_SYNC_ANSWER_FD": None}


def test_an_invocation_without_the_engines_endpoint_is_refused(js_sdk):
    with pytest.raises(InvocationFailed) as raised:
        js("context_echo.mjs")({}, FakeLambdaContext(environment={}))
    assert raised.value.error_object["ErrorType"] == "Runtime.NoEndpoint"


def test_callback_style_commonjs_and_nested_exports(js_sdk):
    assert js("context_echo.mjs", "callbackStyle")({"n": 21}, FakeLambdaContext()) == {"doubled": 42}
    assert js("context_echo.mjs", "nested.inner.handler")({}, FakeLambdaContext()) == "nested"
    assert js("commonjs.cjs").export == "handler"


def test_a_thrown_error_is_the_invocations_error_as_lambda_reports_it(js_sdk):
    with pytest.raises(InvocationFailed) as raised:
        js("context_echo.mjs", "throws")({}, FakeLambdaContext())
    error = raised.value.error_object
    assert (error["ErrorType"], error["ErrorMessage"]) == ("ValidationError", "bad order")
    assert any("context_echo.mjs" in line for line in error["StackTrace"])


def test_what_the_handler_prints_goes_to_stderr_never_into_the_answer(js_sdk, capfd):
    assert js("context_echo.mjs", "prints")({}, FakeLambdaContext()) == "answer"
    out, err = capfd.readouterr()
    assert "to stdout" not in out
    assert "to stdout" in err and "to stderr" in err


def test_a_handler_running_past_the_deadline_is_killed(js_sdk):
    with pytest.raises(InvocationFailed) as raised:
        js("context_echo.mjs", "hangs")({}, FakeLambdaContext(remaining_ms=1000))
    assert raised.value.error_object["ErrorType"] == "Sandbox.Timedout"


@pytest.mark.parametrize("export, how", [("exits", "exited with status 7"), ("killed", "was killed by signal SIGKILL"),
                                         ("uncaught", "exited with status 1"), ("rejection", "exited with status 1")])
def test_a_process_that_ends_without_answering_is_runtime_exit_error(js_sdk, export, how):
    with pytest.raises(InvocationFailed) as raised:
        js("crash_now.mjs", export)({}, FakeLambdaContext())
    error = raised.value.error_object
    assert error["ErrorType"] == "Runtime.ExitError"
    assert f"the Node.js process {how} before answering" in error["ErrorMessage"]


# -- errors at registration: one line naming the problem ------------------------------------------------
def test_no_node_on_path_is_a_one_line_error(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(HandlerLoadError) as raised:
        load(os.path.join(HANDLERS, "step_wait.mjs"))
    assert str(raised.value).startswith("no `node` on PATH: install Node.js 18 or later")
    assert "\n" not in str(raised.value)


@pytest.mark.parametrize("file, export, expected", [
    ("broken_syntax.mjs", "handler", "broken_syntax.mjs: SyntaxError: Unexpected end of input (at /"),
    ("missing_package.mjs", "handler", "Cannot find package 'durable-sync-no-such-package'"),
    ("throws_at_load.cjs", "handler", "configuration missing: TABLE_NAME"),
    ("step_wait.mjs", "handlr", 'does not export "handlr"; functions it exports: handler'),
    ("context_echo.mjs", "notAFunction", 'exports a number as "notAFunction"'),
    ("no_such_file.mjs", "handler", "does not exist"),
])
def test_a_module_that_cannot_run_is_refused_at_registration(js_sdk, file, export, expected):
    with pytest.raises(HandlerLoadError) as raised:
        load(f"{os.path.join(HANDLERS, file)}:{export}")
    message = str(raised.value)
    assert expected in message
    assert file in message
    assert "\n" not in message


# -- warm processes ---------------------------------------------------------------------------------
def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_a_process_that_answered_runs_the_next_invocation_as_on_a_warm_lambda(js_sdk):
    counter = js("context_echo.mjs", "counter")
    try:
        first = counter({}, FakeLambdaContext())
        second = counter({}, FakeLambdaContext())
        other = FakeLambdaContext(environment={**ENGINE_ENV, "AWS_ENDPOINT_URL_LAMBDA": "http://127.0.0.1:10"})
        elsewhere = counter({}, other)
    finally:
        counter.release()
    assert (first["calls"], second["calls"], second["pid"]) == (1, 2, first["pid"])
    assert elsewhere["calls"] == 1 and elsewhere["pid"] != first["pid"]
    assert not _alive(first["pid"]) and not _alive(elsewhere["pid"])


def test_a_crashed_process_is_never_reused(js_sdk):
    counter, crashes = js("context_echo.mjs", "counter"), js("context_echo.mjs", "crashes")
    try:
        before = counter({}, FakeLambdaContext())
        with pytest.raises(InvocationFailed):
            crashes({}, FakeLambdaContext())
        with pytest.raises(InvocationFailed):
            crashes({}, FakeLambdaContext())
        after = counter({}, FakeLambdaContext())
    finally:
        counter.release()
        crashes.release()
    assert after == {"calls": 2, "pid": before["pid"]}  # each handler has its own processes
    assert crashes._warm == []


def test_closing_the_engine_ends_its_functions_warm_processes(js_sdk):
    from .support import invoke, served

    handler = js("step_wait.mjs")
    with served({"greet": handler}) as (engine, client):
        invoke(client, "greet", {"name": "x"})
        pids = [p.proc.pid for p in handler._warm]
        assert len(pids) == 1 and _alive(pids[0])
    assert handler._warm == [] and not _alive(pids[0])
