"""The HTTP façade (`durable-sync serve`) driven by unmodified boto3.

Every test runs a server on 127.0.0.1 with an ephemeral port, on a thread, over a
virtual-time engine (waits and retries take no real time); handlers talk back to
the server over HTTP through boto3, as on Lambda. Real time is only spent on HTTP
round trips and on polling, always bounded by a timeout.

Every successful response is checked against the botocore output shape (required
members, types, timestamps as epoch-second numbers, no unmodeled keys) by an
``after-call`` hook on the client, so a response botocore would silently accept
but the model does not describe fails the test.
"""
from __future__ import annotations

import base64
import datetime as dt
import functools
import http.client
import itertools
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import quote, urlsplit

import boto3
import botocore
import pytest

import durable_sync as ds
from durable_sync import aws
from durable_sync.aws import BotoCheckpointClient, make_boto_client
from durable_sync.cli import build_parser, load_handler
from durable_sync.errors import CheckpointError
from durable_sync.local import LocalEngine
from durable_sync.cli import cmd_serve
from durable_sync.local.http import make_server, service_model
from helpers import durable_sync_serve, wait_until

REPO = Path(__file__).resolve().parents[1]
POLL_TIMEOUT = 20.0


# -- strict response checks -----------------------------------------------------------------------
def check_shape(value, shape, path="response"):
    """Raw rest-json ``value`` against the output ``shape``."""
    t = shape.type_name
    if t == "structure":
        assert isinstance(value, dict), f"{path}: expected an object, got {value!r:.80}"
        unknown = set(value) - set(shape.members)
        assert not unknown, f"{path}: members not in the model: {sorted(unknown)}"
        for name in shape.required_members:
            assert name in value, f"{path}: required member {name} missing"
        for name, v in value.items():
            check_shape(v, shape.members[name], f"{path}.{name}")
    elif t == "list":
        assert isinstance(value, list), f"{path}: expected a list"
        for i, v in enumerate(value):
            check_shape(v, shape.member, f"{path}[{i}]")
    elif t == "string":
        assert isinstance(value, str), f"{path}: expected a string, got {value!r:.80}"
        if shape.metadata.get("enum"):
            assert value in shape.metadata["enum"], f"{path}: {value!r} not in the enum"
    elif t in ("integer", "long"):
        assert isinstance(value, int) and not isinstance(value, bool), f"{path}: expected an integer"
    elif t == "boolean":
        assert isinstance(value, bool), f"{path}: expected a boolean"
    elif t == "timestamp":
        # rest-json without a timestampFormat trait: epoch seconds as a JSON number
        assert shape.serialization.get("timestampFormat") in (None, "unixTimestamp")
        assert isinstance(value, (int, float)) and not isinstance(value, bool), f"{path}: timestamp {value!r}"
        assert 1e9 < value < 1e10, f"{path}: {value} is not epoch seconds"
    elif t == "blob":
        base64.b64decode(value, validate=True)


def strict_client(url):
    client = boto3.client("lambda", endpoint_url=url, region_name="us-east-1", aws_access_key_id="x",
                          aws_secret_access_key="x")
    checked = []

    def after_call(http_response, parsed, model, **_):
        assert http_response.headers.get("x-amzn-RequestId"), "every answer carries a request id"
        if http_response.status_code >= 300:
            assert http_response.headers.get("X-Amzn-ErrorType"), "errors carry X-Amzn-ErrorType"
            body = json.loads(http_response.content)
            assert set(body) == {"Type", "message"} and body["message"]
            return
        shape = model.output_shape
        if shape.serialization.get("payload"):
            return  # Invoke: a raw payload; its header members are checked by the tests
        check_shape(json.loads(http_response.content), shape, model.name)
        checked.append(model.name)

    client.meta.events.register("after-call.lambda", after_call)
    client.checked = checked
    return client


# -- handlers -------------------------------------------------------------------------------------
ORDERS = load_handler(str(REPO / "examples" / "order_workflow.py"))


@ds.durable_handler
def approval(event, ctx):
    ctx.step("prepare", lambda s: "prepared")
    callback = ctx.create_callback(name="approve")
    answer = callback.result()
    return {"request": event.get("request"), "answer": answer}


@ds.durable_handler
def boom(event, ctx):
    def explode(step_ctx):
        raise ValueError("bad order")
    ctx.step("explode", explode, config=ds.StepConfig(retry_strategy=ds.RetryPresets.none()))


BODY_RUNS: dict = {}


@ds.durable_handler
def many_steps(event, ctx):
    tag = event["tag"]

    def body(i):
        def run(step_ctx):
            key = (tag, i)
            BODY_RUNS[key] = BODY_RUNS.get(key, 0) + 1
            return i * i
        return run

    total = 0
    for i in range(6):
        total += ctx.step(f"square-{i}", body(i))
    ctx.wait(30, name="pause")
    with ctx.child("tail") as c:
        total += c.step("tail-1", body(100))
        total += c.step("tail-2", body(101))
    return {"total": total}


#: Operations of newer botocore ``lambda`` models (1.44.8 has them, 1.43.11 does not). The server routes
#: what the installed model has, so their HTTP tests run only there; tests/test_engine_lifecycle.py
#: covers the engine side with any botocore.
LIFECYCLE_OPERATIONS = ("DeleteDurableExecution", "PauseDurableExecution", "ResumeDurableExecution")
MODEL_HAS_LIFECYCLE = set(LIFECYCLE_OPERATIONS) <= set(service_model().operation_names)
needs_lifecycle_operations = pytest.mark.skipif(
    not MODEL_HAS_LIFECYCLE,
    reason=f"the 'lambda' model of the installed botocore {botocore.__version__} has no "
           f"{'/'.join(LIFECYCLE_OPERATIONS)} (newer botocore releases add them); the engine side is "
           "tested in tests/test_engine_lifecycle.py")

needs_callbacks = pytest.mark.skipif(not hasattr(ds.DurableContext, "create_callback"),
                                     reason="DurableContext.create_callback is not implemented yet")


# -- fixtures -------------------------------------------------------------------------------------
@pytest.fixture
def server(engine):
    srv = make_server(engine, "127.0.0.1", 0, functions={"orders": ORDERS, "approval": approval, "boom": boom,
                                                          "many": many_steps},
                      invoke_timeout=POLL_TIMEOUT).start()  # a broken test fails in seconds, not hangs
    yield srv
    srv.close()


@pytest.fixture
def lam(server):
    return strict_client(server.url)


poll = functools.partial(wait_until, timeout=POLL_TIMEOUT, interval=0.02)  # asks the server every 20 ms


def order(order_id):
    return {"order_id": order_id, "items": [{"sku": "apple", "qty": 3}, {"sku": "pear", "qty": 2}]}


def callback_id_of(lam, arn):
    def find():
        for event in lam.get_durable_execution_history(DurableExecutionArn=arn)["Events"]:
            if event["EventType"] == "CallbackStarted":
                return event["CallbackStartedDetails"]["CallbackId"]
        return None
    return poll(find, "CallbackStarted")


# -- Invoke and reads -------------------------------------------------------------------------------
def test_invoke_request_response_runs_the_example_over_http(server, lam):
    response = lam.invoke(FunctionName="orders", Payload=json.dumps(order("rr-1")), DurableExecutionName="rr-1")
    assert response["StatusCode"] == 200
    assert "FunctionError" not in response
    result = json.loads(response["Payload"].read())
    assert result == {"order_id": "rr-1", "reservation": "res-rr-1",
                      "receipt": {"auth": "auth-rr-1", "amount": 3.0}, "status": "charged"}
    arn = response["DurableExecutionArn"]
    assert arn.startswith("arn:aws:lambda:us-east-1:000000000000:function:orders:$LATEST/durable-execution/rr-1/")
    assert response["ExecutedVersion"] == "$LATEST"
    # the handler's SDK checkpointed through this server, not in-process
    assert server.requests["CheckpointDurableExecution"] >= 5


def test_event_invoke_answers_202_then_poll_get_durable_execution(server, lam):
    response = lam.invoke(FunctionName="orders", InvocationType="Event", Payload=json.dumps(order("ev-1")))
    assert response["StatusCode"] == 202
    assert response["Payload"].read() == b""
    arn = response["DurableExecutionArn"]
    execution = poll(lambda: (e := lam.get_durable_execution(DurableExecutionArn=arn))["Status"] != "RUNNING"
                     and e, "the execution to finish")
    assert execution["Status"] == "SUCCEEDED"
    assert json.loads(execution["Result"])["reservation"] == "res-ev-1"
    assert json.loads(execution["InputPayload"]) == order("ev-1")
    assert execution["FunctionArn"] == "arn:aws:lambda:us-east-1:000000000000:function:orders:$LATEST"
    assert execution["DurableExecutionName"] == arn.split("/")[-2]
    assert isinstance(execution["StartTimestamp"], dt.datetime)
    # virtual time: the 1 s retry and the 2 s wait passed on the engine's clock
    assert (execution["EndTimestamp"] - execution["StartTimestamp"]).total_seconds() >= 3
    assert "GetDurableExecution" in lam.checked


def test_invoke_accepts_function_arns_and_is_idempotent_by_execution_name(lam):
    fn_arn = "arn:aws:lambda:us-east-1:000000000000:function:orders:$LATEST"
    first = lam.invoke(FunctionName=fn_arn, Payload=json.dumps(order("id-1")), DurableExecutionName="same")
    again = lam.invoke(FunctionName="orders", Payload=json.dumps(order("id-1")), DurableExecutionName="same")
    assert again["DurableExecutionArn"] == first["DurableExecutionArn"]
    assert json.loads(again["Payload"].read())["order_id"] == "id-1"
    with pytest.raises(lam.exceptions.DurableExecutionAlreadyStartedException):
        lam.invoke(FunctionName="orders", Payload=json.dumps(order("other")), DurableExecutionName="same")


def test_a_failed_execution_answers_with_function_error(lam):
    response = lam.invoke(FunctionName="boom", Payload=b"{}")
    assert response["StatusCode"] == 200
    assert response["FunctionError"] == "Unhandled"
    payload = json.loads(response["Payload"].read())
    assert payload["errorType"] == "StepError" or payload["errorType"] == "ValueError"
    assert "bad order" in payload["errorMessage"]
    execution = lam.get_durable_execution(DurableExecutionArn=response["DurableExecutionArn"])
    assert execution["Status"] == "FAILED" and "bad order" in execution["Error"]["ErrorMessage"]


def test_unknown_functions_and_executions_raise_resource_not_found(lam):
    with pytest.raises(lam.exceptions.ResourceNotFoundException, match="Function not found"):
        lam.invoke(FunctionName="nope", Payload=b"{}")
    missing = "arn:aws:lambda:us-east-1:000000000000:function:orders:$LATEST/durable-execution/x/y"
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.get_durable_execution(DurableExecutionArn=missing)
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.list_durable_executions_by_function(FunctionName="nope")


def test_history_pages_with_marker_and_max_items(engine, lam):
    arn = lam.invoke(FunctionName="orders", Payload=json.dumps(order("h-1")))["DurableExecutionArn"]
    expected = engine.history(arn)
    assert len(expected) > 8
    pages, marker = [], None
    while True:
        kwargs = {"Marker": marker} if marker else {}
        page = lam.get_durable_execution_history(DurableExecutionArn=arn, MaxItems=3, **kwargs)
        assert len(page["Events"]) <= 3
        pages.append(page["Events"])
        marker = page.get("NextMarker")
        if not marker:
            break
    assert len(pages) == -(-len(expected) // 3)
    events = [e for p in pages for e in p]
    assert [e["EventId"] for e in events] == list(range(1, len(expected) + 1))
    assert [e["EventType"] for e in events] == [e["EventType"] for e in expected]
    for got, want in zip(events, expected):  # same content; timestamps equal as instants
        assert got == want
    # botocore's paginator follows NextMarker too
    paginated = [e for p in lam.get_paginator("get_durable_execution_history").paginate(
        DurableExecutionArn=arn, PaginationConfig={"PageSize": 4}) for e in p["Events"]]
    assert [e["EventId"] for e in paginated] == [e["EventId"] for e in events]
    reverse = lam.get_durable_execution_history(DurableExecutionArn=arn, ReverseOrder=True, MaxItems=2)
    assert [e["EventId"] for e in reverse["Events"]] == [len(expected), len(expected) - 1]
    assert reverse["Events"][0]["EventType"] == "ExecutionSucceeded"
    lean = lam.get_durable_execution_history(DurableExecutionArn=arn, IncludeExecutionData=False)["Events"]
    assert "Payload" not in lean[0]["ExecutionStartedDetails"]["Input"]
    assert "Payload" in events[0]["ExecutionStartedDetails"]["Input"]


def test_list_executions_by_function_with_filters_and_paging(lam):
    arns = [lam.invoke(FunctionName="orders", Payload=json.dumps(order(f"l-{i}")), DurableExecutionName=f"l-{i}")
            ["DurableExecutionArn"] for i in range(3)]
    failed = lam.invoke(FunctionName="boom", Payload=b"{}")["DurableExecutionArn"]
    listed = lam.list_durable_executions_by_function(FunctionName="orders")["DurableExecutions"]
    assert [e["DurableExecutionArn"] for e in listed] == arns
    assert {e["Status"] for e in listed} == {"SUCCEEDED"}
    assert all(e["FunctionArn"].endswith(":function:orders:$LATEST") for e in listed)
    named = lam.list_durable_executions_by_function(FunctionName="orders", DurableExecutionName="l-1")
    assert [e["DurableExecutionArn"] for e in named["DurableExecutions"]] == [arns[1]]
    first = lam.list_durable_executions_by_function(FunctionName="orders", MaxItems=2)
    assert len(first["DurableExecutions"]) == 2 and first["NextMarker"]
    rest = lam.list_durable_executions_by_function(FunctionName="orders", MaxItems=2, Marker=first["NextMarker"])
    assert [e["DurableExecutionArn"] for e in rest["DurableExecutions"]] == arns[2:] and "NextMarker" not in rest
    newest = lam.list_durable_executions_by_function(FunctionName="orders", ReverseOrder=True)
    assert [e["DurableExecutionArn"] for e in newest["DurableExecutions"]] == arns[::-1]
    by_status = lam.list_durable_executions_by_function(FunctionName="boom", Statuses=["FAILED", "STOPPED"])
    assert [e["DurableExecutionArn"] for e in by_status["DurableExecutions"]] == [failed]
    assert lam.list_durable_executions_by_function(FunctionName="boom", Statuses=["RUNNING"])[
        "DurableExecutions"] == []
    started = listed[0]["StartTimestamp"]
    later = lam.list_durable_executions_by_function(FunctionName="orders",
                                                    StartedAfter=started + dt.timedelta(days=1))
    assert later["DurableExecutions"] == []
    earlier = lam.list_durable_executions_by_function(FunctionName="orders",
                                                      StartedBefore=started + dt.timedelta(days=1))
    assert len(earlier["DurableExecutions"]) == 3
    paged = [e for p in lam.get_paginator("list_durable_executions_by_function").paginate(
        FunctionName="arn:aws:lambda:us-east-1:000000000000:function:orders", PaginationConfig={"PageSize": 1})
        for e in p["DurableExecutions"]]
    assert [e["DurableExecutionArn"] for e in paged] == arns
    assert "ListDurableExecutionsByFunction" in lam.checked


@ds.durable_handler
def quick(event, ctx):
    first = ctx.step("first", lambda s: event["n"] + 1)
    with ctx.child("pair") as c:
        second = c.step("second", lambda s: first * 10)
    return {"first": first, "second": second}


def test_a_real_time_engine_serves_too():
    """Without skip_time the engine's scheduler runs invocations; Invoke waits on the engine (no waits here)."""
    eng = LocalEngine(db=":memory:", skip_time=False)
    srv = make_server(eng, "127.0.0.1", 0, functions={"quick": quick}, invoke_timeout=POLL_TIMEOUT).start()
    try:
        lam = strict_client(srv.url)
        response = lam.invoke(FunctionName="quick", Payload=b'{"n": 4}')
        assert json.loads(response["Payload"].read()) == {"first": 5, "second": 50}
        arn = lam.invoke(FunctionName="quick", InvocationType="Event", Payload=b'{"n": 1}')["DurableExecutionArn"]
        execution = poll(lambda: (e := lam.get_durable_execution(DurableExecutionArn=arn))["Status"] != "RUNNING"
                         and e, "the execution to finish")
        assert json.loads(execution["Result"]) == {"first": 2, "second": 20}
        assert srv.requests["CheckpointDurableExecution"] >= 2
    finally:
        srv.close()
        eng.close()


# -- callbacks and stop -------------------------------------------------------------------------------
@needs_callbacks
def test_callback_success_resumes_the_execution(lam):
    arn = lam.invoke(FunctionName="approval", InvocationType="Event",
                     Payload=json.dumps({"request": "r-1"}))["DurableExecutionArn"]
    callback_id = callback_id_of(lam, arn)
    assert lam.get_durable_execution(DurableExecutionArn=arn)["Status"] == "RUNNING"
    lam.send_durable_execution_callback_heartbeat(CallbackId=callback_id)
    lam.send_durable_execution_callback_success(CallbackId=callback_id, Result=json.dumps({"ok": True}).encode())
    execution = poll(lambda: (e := lam.get_durable_execution(DurableExecutionArn=arn))["Status"] != "RUNNING"
                     and e, "the callback to resume the execution")
    assert execution["Status"] == "SUCCEEDED"
    assert json.loads(execution["Result"]) == {"request": "r-1", "answer": {"ok": True}}
    types = [e["EventType"] for e in lam.get_durable_execution_history(DurableExecutionArn=arn)["Events"]]
    assert "CallbackSucceeded" in types
    with pytest.raises((lam.exceptions.CallbackTimeoutException, lam.exceptions.InvalidParameterValueException),
                       match="already"):
        lam.send_durable_execution_callback_success(CallbackId=callback_id, Result=b"1")


@needs_callbacks
def test_callback_failure_fails_the_execution(lam):
    arn = lam.invoke(FunctionName="approval", InvocationType="Event", Payload=b"{}")["DurableExecutionArn"]
    callback_id = callback_id_of(lam, arn)
    lam.send_durable_execution_callback_failure(
        CallbackId=callback_id, Error={"ErrorType": "Rejected", "ErrorMessage": "manager said no"})
    execution = poll(lambda: (e := lam.get_durable_execution(DurableExecutionArn=arn))["Status"] != "RUNNING"
                     and e, "the failure to end the execution")
    assert execution["Status"] == "FAILED"
    assert execution["Error"]["ErrorType"] == "Rejected"
    assert execution["Error"]["ErrorMessage"] == "manager said no"


@needs_callbacks
def test_a_synchronous_invoke_waits_for_the_callback_answered_meanwhile(lam, server):
    other = strict_client(server.url)
    answer = {}

    def answer_it():
        arn = poll(lambda: [e["DurableExecutionArn"] for e in other.list_durable_executions_by_function(
            FunctionName="approval", DurableExecutionName="sync-cb")["DurableExecutions"]], "the execution")[0]
        other.send_durable_execution_callback_success(CallbackId=callback_id_of(other, arn), Result=b'"yes"')
        answer["arn"] = arn

    helper = threading.Thread(target=answer_it)
    helper.start()
    response = lam.invoke(FunctionName="approval", Payload=b'{"request": "sync"}', DurableExecutionName="sync-cb")
    helper.join(POLL_TIMEOUT)
    assert json.loads(response["Payload"].read()) == {"request": "sync", "answer": "yes"}
    assert response["DurableExecutionArn"] == answer["arn"]


@needs_callbacks
def test_a_synchronous_invoke_gives_up_after_the_invoke_timeout(engine):
    srv = make_server(engine, "127.0.0.1", 0, functions={"approval": approval}, invoke_timeout=0.3).start()
    try:
        lam = strict_client(srv.url)
        response = lam.invoke(FunctionName="approval", Payload=b"{}")
        assert response["FunctionError"] == "Unhandled"
        payload = json.loads(response["Payload"].read())
        assert payload["errorType"] == "DurableExecution.StillRunning"
        arn = response["DurableExecutionArn"]
        assert arn in payload["errorMessage"]
        assert lam.get_durable_execution(DurableExecutionArn=arn)["Status"] == "RUNNING"
    finally:
        srv.close()


@needs_callbacks
def test_stop_durable_execution(lam):
    arn = lam.invoke(FunctionName="approval", InvocationType="Event", Payload=b"{}")["DurableExecutionArn"]
    callback_id_of(lam, arn)
    stopped = lam.stop_durable_execution(DurableExecutionArn=arn, Error={"ErrorType": "Cancelled",
                                                                         "ErrorMessage": "by the operator"})
    assert isinstance(stopped["StopTimestamp"], dt.datetime)
    execution = lam.get_durable_execution(DurableExecutionArn=arn)
    assert execution["Status"] == "STOPPED" and execution["EndTimestamp"] >= execution["StartTimestamp"]
    with pytest.raises(lam.exceptions.InvalidParameterValueException):
        lam.stop_durable_execution(DurableExecutionArn=arn)


# -- the SDK's own calls ---------------------------------------------------------------------------------
@needs_callbacks
def test_a_stale_checkpoint_token_is_refused(lam, server):
    arn = lam.invoke(FunctionName="approval", InvocationType="Event", Payload=b"{}")["DurableExecutionArn"]
    callback_id_of(lam, arn)
    with pytest.raises(lam.exceptions.InvalidParameterValueException, match="(?i)invalid checkpoint token"):
        lam.checkpoint_durable_execution(DurableExecutionArn=arn, CheckpointToken="c3RhbGU=", Updates=[])
    with pytest.raises(lam.exceptions.InvalidParameterValueException, match="(?i)invalid checkpoint token"):
        lam.get_durable_execution_state(DurableExecutionArn=arn, CheckpointToken="c3RhbGU=")
    client = BotoCheckpointClient(make_boto_client(endpoint_url=server.url, region_name="us-east-1",
                                                   aws_access_key_id="x", aws_secret_access_key="x"))
    with pytest.raises(CheckpointError) as info:
        client.checkpoint(arn, "c3RhbGU=", [], "ct-1")
    assert info.value.retryable is True  # Lambda would retry the invocation
    assert lam.get_durable_execution(DurableExecutionArn=arn)["Status"] == "RUNNING"


def test_the_default_client_reaches_the_server_through_aws_endpoint_url_lambda(engine, server, monkeypatch):
    """A lambda_context without durable_client: the SDK builds its boto3 client from the environment."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_LAMBDA", server.url)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "x")
    aws.reset_default_client()
    engine.client_factory = lambda: None
    try:
        lam = strict_client(server.url)
        before = server.requests["CheckpointDurableExecution"]
        response = lam.invoke(FunctionName="orders", Payload=json.dumps(order("env-1")))
        assert json.loads(response["Payload"].read())["status"] == "charged"
        assert server.requests["CheckpointDurableExecution"] - before >= 5
        assert aws.default_client().boto_client.meta.endpoint_url == server.url
    finally:
        aws.reset_default_client()


# -- fault injection -----------------------------------------------------------------------------------------
class FaultProxy(ThreadingHTTPServer):
    """Forwards to the server; fails checkpoint calls by a fixed schedule.

    ok: forward. 429 / throttle: TooManyRequestsException / ThrottlingException without
    forwarding. 500 / 503: ServiceException without forwarding. drop: forward (the server
    applies the checkpoint), then close the connection without answering.
    """

    daemon_threads = True

    def __init__(self, upstream: str, schedule: list[str]):
        super().__init__(("127.0.0.1", 0), _ProxyHandler)
        self.upstream = urlsplit(upstream)
        self.schedule = itertools.cycle(schedule)
        self.lock = threading.Lock()
        self.actions: list[str] = []
        self.forwarded_tokens: list[str] = []

    @property
    def url(self):
        return f"http://127.0.0.1:{self.server_address[1]}"


class _ProxyHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):
        self._proxy()

    do_POST = do_GET

    def _proxy(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        action = "ok"
        if self.path.endswith("/checkpoint"):
            with self.server.lock:
                action = next(self.server.schedule)
                self.server.actions.append(action)
        errors = {"429": (429, "TooManyRequestsException"), "throttle": (400, "ThrottlingException"),
                  "500": (500, "ServiceException"), "503": (503, "ServiceException")}
        if action in errors:
            status, code = errors[action]
            self._reply(status, {"X-Amzn-ErrorType": code, "Content-Type": "application/json"},
                        json.dumps({"Type": "Service", "message": f"injected {action}"}).encode())
            return
        up = http.client.HTTPConnection(self.server.upstream.hostname, self.server.upstream.port, timeout=30)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
        up.request(self.command, self.path, body=body, headers=headers)
        response = up.getresponse()
        data = response.read()
        up.close()
        if self.path.endswith("/checkpoint"):
            with self.server.lock:
                self.server.forwarded_tokens.append(json.loads(body).get("ClientToken"))
        if action == "drop":
            self.close_connection = True  # the server applied it; the answer is lost
            return
        self._reply(response.status, {k: v for k, v in response.getheaders()
                                      if k.lower() not in ("content-length", "connection", "server", "date")}, data)

    def _reply(self, status, headers, data):
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def test_throttling_5xx_and_lost_responses_neither_lose_nor_repeat_updates(engine, server, lam):
    schedule = ["ok", "429", "drop", "ok", "500", "503", "ok", "drop", "throttle", "ok", "drop", "drop", "ok"]
    proxy = FaultProxy(server.url, schedule)
    thread = threading.Thread(target=proxy.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    client = BotoCheckpointClient(make_boto_client(endpoint_url=proxy.url, region_name="us-east-1",
                                                   aws_access_key_id="x", aws_secret_access_key="x"),
                                  max_attempts=5, initial_backoff=0.001, max_backoff=0.01)
    engine.client_factory = lambda: client
    try:
        results = []
        for n in range(3):
            response = lam.invoke(FunctionName="many", Payload=json.dumps({"tag": f"f{n}"}))
            assert "FunctionError" not in response, response["Payload"].read()
            results.append((response["DurableExecutionArn"], json.loads(response["Payload"].read())))
    finally:
        proxy.shutdown()
        proxy.server_close()
    expected_total = sum(i * i for i in [0, 1, 2, 3, 4, 5, 100, 101])
    for n, (arn, result) in enumerate(results):
        assert result == {"total": expected_total}
        # every step body ran exactly once: no invocation was lost to a checkpoint error
        assert all(BODY_RUNS[(f"f{n}", i)] == 1 for i in [0, 1, 2, 3, 4, 5, 100, 101])
        history = engine.history(arn)
        per_op = {}
        for event in history:
            per_op.setdefault((event["Id"], event["EventType"]), []).append(event["EventId"])
        duplicates = {k: v for k, v in per_op.items() if len(v) > 1 and k[1] != "InvocationCompleted"}
        assert duplicates == {}, f"updates applied twice: {duplicates}"
        started = sum(1 for e in history if e["EventType"] == "StepStarted")
        succeeded = sum(1 for e in history if e["EventType"] == "StepSucceeded")
        assert started == succeeded == 8
        assert not [e for e in history if e["EventType"] == "InvocationCompleted"
                    and "Error" in e["InvocationCompletedDetails"]]
    faults = [a for a in proxy.actions if a != "ok"]
    assert proxy.actions.count("drop") >= 3 and len(faults) >= 8
    # dropped answers were re-sent with the same ClientToken and answered from the idempotency record
    assert len(proxy.forwarded_tokens) > len(set(proxy.forwarded_tokens))


# -- malformed requests ------------------------------------------------------------------------------------
def raw(server, method, path, body=b"", headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    conn.request(method, path, body=body, headers=headers or {})
    response = conn.getresponse()
    data = response.read()
    conn.close()
    return response.status, response.getheader("X-Amzn-ErrorType"), json.loads(data) if data else None


def test_malformed_requests_get_4xx_with_a_clear_message_and_the_server_keeps_serving(server, lam):
    arn = lam.invoke(FunctionName="orders", Payload=json.dumps(order("m-1")))["DurableExecutionArn"]
    enc = quote(arn, safe="")
    cases = [
        ("POST", f"/2025-12-01/durable-executions/{enc}/checkpoint", b"{not json", 400,
         "InvalidRequestContentException", "Could not parse request body into json"),
        ("POST", f"/2025-12-01/durable-executions/{enc}/checkpoint", b"[1, 2]", 400,
         "InvalidRequestContentException", "must be a JSON object"),
        ("POST", f"/2025-12-01/durable-executions/{enc}/checkpoint", b'{"Updates": []}', 400,
         "InvalidParameterValueException", "'CheckpointToken' failed to satisfy constraint: Member must not be null"),
        ("POST", f"/2025-12-01/durable-executions/{enc}/checkpoint",
         json.dumps({"CheckpointToken": "dA==", "Updates": "nope"}).encode(), 400,
         "InvalidParameterValueException", "at 'Updates' failed to satisfy constraint: Member must be a list"),
        ("POST", f"/2025-12-01/durable-executions/{enc}/checkpoint",
         json.dumps({"CheckpointToken": "dA==", "Updates": [{"Id": "a", "Type": "NOPE", "Action": 7}]}).encode(),
         400, "InvalidParameterValueException", "Updates[0].Type"),
        ("GET", f"/2025-12-01/durable-executions/{enc}/history?MaxItems=many", b"", 400,
         "InvalidParameterValueException", "'MaxItems' failed to satisfy constraint: Member must be an integer"),
        ("GET", f"/2025-12-01/durable-executions/{enc}/history?MaxItems=5000", b"", 400,
         "InvalidParameterValueException", "less than or equal to 1000"),
        ("GET", f"/2025-12-01/durable-executions/{enc}/history?Marker=bogus", b"", 400,
         "InvalidParameterValueException", "Marker"),
        ("GET", "/2025-12-01/functions/orders/durable-executions?Statuses=BOGUS", b"", 400,
         "InvalidParameterValueException", "enum value set"),
        ("GET", "/2025-12-01/functions/orders/durable-executions?StartedAfter=yesterday", b"", 400,
         "InvalidParameterValueException", "timestamp"),
        ("GET", "/2025-12-01/no-such-thing", b"", 404, "ResourceNotFoundException", "no Lambda operation"),
        ("PUT", f"/2025-12-01/durable-executions/{enc}", b"", 405, "InvalidRequestContentException", "GET"),
        ("POST", "/2015-03-31/functions/orders/invocations", b"{oops", 400, "InvalidRequestContentException",
         "Could not parse request body into json"),
        ("POST", "/2015-03-31/functions/orders/invocations", b"{}", 400, "InvalidParameterValueException",
         "InvocationType"),
        ("POST", "/2025-12-01/durable-execution-callbacks/unknown-id/succeed", b'"x"', (400, 404),
         ("ResourceNotFoundException", "InvalidParameterValueException"), "unknown callback id"),
    ]
    for method, path, body, status, code, needle in cases:
        headers = {"X-Amz-Invocation-Type": "Sometimes"} if code == "InvalidParameterValueException" and \
            "invocations" in path else {}
        got_status, got_code, payload = raw(server, method, path, body, headers)
        assert got_status in (status if isinstance(status, tuple) else (status,)), (method, path, payload)
        assert got_code in (code if isinstance(code, tuple) else (code,)), (method, path, payload)
        assert needle in payload["message"], (path, payload["message"])
        assert payload["Type"] == "User"
    # wrong types through boto3 raise the modeled exception
    with pytest.raises(lam.exceptions.InvalidParameterValueException, match="enum value set"):
        lam.list_durable_executions_by_function(FunctionName="orders", Statuses=["BOGUS"])
    with pytest.raises(lam.exceptions.InvalidParameterValueException, match="DurableExecutionName"):
        lam.invoke(FunctionName="orders", Payload=b"{}", DurableExecutionName="has spaces")
    # still serving
    assert lam.get_durable_execution(DurableExecutionArn=arn)["Status"] == "SUCCEEDED"


def test_oversized_bodies_get_413_and_the_server_keeps_serving(engine):
    srv = make_server(engine, "127.0.0.1", 0, functions={"orders": ORDERS}, max_body_bytes=64 * 1024,
                      invoke_timeout=POLL_TIMEOUT).start()
    try:
        lam = strict_client(srv.url)
        with pytest.raises(lam.exceptions.ClientError) as info:
            lam.invoke(FunctionName="orders", Payload=json.dumps({"blob": "x" * 100_000}).encode())
        error = info.value.response
        assert error["Error"]["Code"] == "RequestTooLargeException"
        assert isinstance(info.value, lam.exceptions.RequestTooLargeException)  # a modeled exception
        assert error["ResponseMetadata"]["HTTPStatusCode"] == 413
        assert "exceeds this server's limit" in error["Error"]["Message"]
        status, code, _ = raw(srv, "POST", "/2015-03-31/functions/orders/invocations", b"x",
                              {"Content-Length": str(10 ** 9)})
        assert (status, code) == (413, "RequestTooLargeException")
        response = lam.invoke(FunctionName="orders", Payload=json.dumps(order("after-413")))
        assert json.loads(response["Payload"].read())["order_id"] == "after-413"
    finally:
        srv.close()


def test_invoke_payload_limits_follow_lambda(server, lam):
    with pytest.raises(lam.exceptions.RequestTooLargeException):
        lam.invoke(FunctionName="orders", InvocationType="Event",
                   Payload=json.dumps({"blob": "x" * (1024 * 1024)}).encode())


def test_every_durable_operation_of_the_model_is_routed(server):
    """The router is built from the botocore model: every durable operation has a handler."""
    model = service_model()
    durable = [n for n in model.operation_names if "DurableExecution" in n]
    assert len(durable) >= 9  # 9 in botocore 1.43; 1.44 adds delete, pause and resume
    for name in durable + ["Invoke"]:
        assert hasattr(server.api, f"op_{name}"), f"{name} is in the installed botocore's model but not served"
    routed = {route.name for route in server.router.routes}
    assert routed == set(durable) | {"Invoke"}
    assert set(LIFECYCLE_OPERATIONS) <= routed or not MODEL_HAS_LIFECYCLE


# -- delete, pause, resume (newer models) ------------------------------------------------------------------
@needs_lifecycle_operations
def test_delete_durable_execution(lam, server):
    arn = lam.invoke(FunctionName="orders", Payload=json.dumps(order("del-1")))["DurableExecutionArn"]
    assert lam.get_durable_execution(DurableExecutionArn=arn)["Status"] == "SUCCEEDED"
    deleted = lam.delete_durable_execution(DurableExecutionArn=arn)
    assert deleted["ResponseMetadata"]["HTTPStatusCode"] == 202
    assert isinstance(deleted["DeletionRequestTimestamp"], dt.datetime)
    assert "DeleteDurableExecution" in lam.checked
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.get_durable_execution(DurableExecutionArn=arn)
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.get_durable_execution_history(DurableExecutionArn=arn)
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.delete_durable_execution(DurableExecutionArn=arn)
    assert arn not in [e["DurableExecutionArn"] for e in
                       lam.list_durable_executions_by_function(FunctionName="orders")["DurableExecutions"]]
    # the same name starts a new execution
    again = lam.invoke(FunctionName="orders", Payload=json.dumps(order("del-1")), DurableExecutionName="del-1")
    assert again["DurableExecutionArn"] != arn and "FunctionError" not in again


@needs_lifecycle_operations
@needs_callbacks
def test_only_ended_executions_are_deleted(lam):
    arn = lam.invoke(FunctionName="approval", InvocationType="Event", Payload=b"{}")["DurableExecutionArn"]
    callback_id_of(lam, arn)
    with pytest.raises(lam.exceptions.ResourceConflictException) as info:
        lam.delete_durable_execution(DurableExecutionArn=arn)
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 409
    assert "RUNNING" in info.value.response["Error"]["Message"]
    lam.stop_durable_execution(DurableExecutionArn=arn)
    lam.delete_durable_execution(DurableExecutionArn=arn)
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.get_durable_execution(DurableExecutionArn=arn)


@needs_lifecycle_operations
@needs_callbacks
def test_pause_and_resume_durable_execution(lam):
    arn = lam.invoke(FunctionName="approval", InvocationType="Event",
                     Payload=json.dumps({"request": "r-1"}))["DurableExecutionArn"]
    callback_id = callback_id_of(lam, arn)
    paused = lam.pause_durable_execution(DurableExecutionArn=arn, Reason="deploying", ClientToken="pause-1")
    assert paused["ResponseMetadata"]["HTTPStatusCode"] == 202
    lam.pause_durable_execution(DurableExecutionArn=arn, Reason="deploying", ClientToken="pause-1")  # a repeat
    with pytest.raises(lam.exceptions.ResourceConflictException):
        lam.pause_durable_execution(DurableExecutionArn=arn)  # a new request: it is paused already
    execution = lam.get_durable_execution(DurableExecutionArn=arn)
    assert execution["Status"] == "PAUSED"
    details = execution["PauseDetails"]
    assert details["Reason"] == "deploying" and details["ExecutionTimeoutPaused"] is True
    assert isinstance(details["PauseRequestTimestamp"], dt.datetime)
    assert execution["ExpectedExecutionTimeoutTimestamp"] > execution["StartTimestamp"]
    lean = lam.get_durable_execution(DurableExecutionArn=arn, IncludeExecutionData=False)
    assert lean["ExecutionDataIncluded"] is False and "InputPayload" not in lean
    assert "Reason" not in lean["PauseDetails"]
    listed = lam.list_durable_executions_by_function(FunctionName="approval", Statuses=["PAUSED"])
    assert [e["DurableExecutionArn"] for e in listed["DurableExecutions"]] == [arn]
    assert lam.list_durable_executions_by_function(FunctionName="approval", Statuses=["RUNNING"])[
        "DurableExecutions"] == []
    # callbacks are still answered while paused; the function is not invoked
    lam.send_durable_execution_callback_success(CallbackId=callback_id, Result=json.dumps("approved").encode())
    assert lam.get_durable_execution(DurableExecutionArn=arn)["Status"] == "PAUSED"
    events = lam.get_durable_execution_history(DurableExecutionArn=arn)["Events"]
    assert [e["EventType"] for e in events][-2:] == ["ExecutionPaused", "CallbackSucceeded"]
    assert events[-2]["ExecutionPausedDetails"]["Reason"] == {"Payload": "deploying", "Truncated": False}
    lean_events = lam.get_durable_execution_history(DurableExecutionArn=arn, IncludeExecutionData=False)["Events"]
    assert "Payload" not in lean_events[-2]["ExecutionPausedDetails"]["Reason"]
    lam.resume_durable_execution(DurableExecutionArn=arn, Reason="deployed")
    execution = poll(lambda: (e := lam.get_durable_execution(DurableExecutionArn=arn))["Status"] == "SUCCEEDED"
                     and e, "the resumed execution to finish")
    assert json.loads(execution["Result"]) == {"request": "r-1", "answer": "approved"}
    assert "PauseDetails" not in execution and "ExpectedExecutionTimeoutTimestamp" not in execution
    types = [e["EventType"] for e in lam.get_durable_execution_history(DurableExecutionArn=arn)["Events"]]
    assert types[types.index("CallbackSucceeded") + 1] == "ExecutionResumed"
    for call in (lam.pause_durable_execution, lam.resume_durable_execution):
        with pytest.raises(lam.exceptions.ResourceConflictException):
            call(DurableExecutionArn=arn)  # it ended
    missing = "arn:aws:lambda:us-east-1:000000000000:function:approval:$LATEST/durable-execution/x/y"
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.resume_durable_execution(DurableExecutionArn=missing)
    assert {"PauseDurableExecution", "ResumeDurableExecution", "GetDurableExecution"} <= set(lam.checked)


@pytest.mark.skipif(MODEL_HAS_LIFECYCLE, reason="the installed botocore's 'lambda' model has delete, pause and "
                                                "resume: test_delete_* and test_pause_* cover them")
def test_models_without_delete_pause_resume_do_not_route_them(server):
    enc = quote("arn:aws:lambda:us-east-1:000000000000:function:orders:$LATEST/durable-execution/a/b", safe="")
    assert raw(server, "DELETE", f"/2025-12-01/durable-executions/{enc}")[:2] == (405, "InvalidRequestContentException")
    for action in ("pause", "resume"):
        assert raw(server, "POST", f"/2025-12-01/durable-executions/{enc}/{action}", b"{}")[:2] == \
            (404, "ResourceNotFoundException")


@needs_callbacks
def test_a_paused_execution_reads_as_the_installed_model_can_say_it(engine, lam):
    """Paused through the engine: PAUSED where the model has that status, RUNNING (not over) elsewhere."""
    arn = lam.invoke(FunctionName="approval", InvocationType="Event", Payload=b"{}")["DurableExecutionArn"]
    callback_id_of(lam, arn)
    engine.pause(arn)
    expected = "PAUSED" if "PAUSED" in service_model().shape_for("ExecutionStatus").enum else "RUNNING"
    assert lam.get_durable_execution(DurableExecutionArn=arn)["Status"] == expected  # strict: in the enum
    listed = lam.list_durable_executions_by_function(FunctionName="approval")["DurableExecutions"]
    assert [e["Status"] for e in listed if e["DurableExecutionArn"] == arn] == [expected]
    assert lam.get_durable_execution_history(DurableExecutionArn=arn)["Events"]
    engine.resume_execution(arn)
    assert lam.get_durable_execution(DurableExecutionArn=arn)["Status"] == "RUNNING"


# -- the CLI ------------------------------------------------------------------------------------------------
def test_serve_is_a_cli_subcommand():
    args = build_parser().parse_args(["serve", "--port", "0", "--skip-time", "--db", ":memory:",
                                      "--function", "orders=examples/order_workflow.py:handler"])
    assert args.func is cmd_serve
    assert args.host == "127.0.0.1" and args.port == 0 and args.skip_time
    assert args.function == ["orders=examples/order_workflow.py:handler"]


def test_durable_sync_serve_end_to_end(tmp_path):
    with durable_sync_serve("--skip-time", "--db", tmp_path / "serve.db", "--function",
                            f"shop={REPO / 'examples' / 'order_workflow.py'}:handler", cwd=tmp_path,
                            timeout=POLL_TIMEOUT) as (url, _):
        lam = strict_client(url)
        response = lam.invoke(FunctionName="shop", Payload=json.dumps(order("cli-1")))
        assert json.loads(response["Payload"].read())["receipt"] == {"auth": "auth-cli-1", "amount": 3.0}
        listed = lam.list_durable_executions_by_function(FunctionName="shop")["DurableExecutions"]
        assert [e["Status"] for e in listed] == ["SUCCEEDED"]


def test_requests_from_web_pages_are_refused(server):
    # A page in a browser can POST text/plain to loopback without CORS pre-flight; serve has no
    # authentication, so anything carrying an Origin header is refused before it is read.
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.request("POST", "/2015-03-31/functions/orders/invocations", body=b"{}",
                     headers={"Origin": "http://evil.example", "Content-Type": "text/plain"})
        response = conn.getresponse()
        body = json.loads(response.read())
    finally:
        conn.close()
    assert response.status == 403
    assert response.getheader("X-Amzn-ErrorType") == "InvalidRequestContentException"
    assert "Origin" in body["message"]
    assert server.requests.get("Invoke", 0) == 0
