"""BotoCheckpointClient: request shapes, tenacity retries with a stable ClientToken, error classes.

botocore's Stubber answers the calls (no network); it checks every request against
``expected_params`` and every canned response against the model's output shape.
Back-off sleeps are recorded, never slept.
"""
from __future__ import annotations

import datetime as dt
import json
import threading
import time

import boto3
import pytest
from botocore.exceptions import ConnectionClosedError, EndpointConnectionError, ReadTimeoutError
from botocore.stub import Stubber

import durable_sync as ds
from durable_sync import aws
from durable_sync.aws import BotoCheckpointClient
from durable_sync.errors import CheckpointError

ARN = "arn:aws:lambda:us-east-1:123456789012:function:orders:$LATEST/durable-execution/n1/e1"
TOKEN = "dG9rZW4tMQ=="
UPDATE = {"Id": "c4ca4238a0b923820dcc509a6f75849b", "Type": "STEP", "SubType": "Step", "Action": "START",
          "Name": "fetch"}
NOW = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)


@pytest.fixture
def lam():
    return boto3.client("lambda", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")


@pytest.fixture
def stub(lam):
    with Stubber(lam) as stubber:
        yield stubber
        stubber.assert_no_pending_responses()


class Sleeps(list):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def sleeps():
    return Sleeps()


def client_for(lam, sleeps, **kwargs) -> BotoCheckpointClient:
    kwargs.setdefault("initial_backoff", 0.1)
    kwargs.setdefault("max_backoff", 2.0)
    return BotoCheckpointClient(lam, sleep=sleeps, **kwargs)


def checkpoint_params(client_token="ct-1", updates=None):
    return {"DurableExecutionArn": ARN, "CheckpointToken": TOKEN, "Updates": updates or [UPDATE],
            "ClientToken": client_token}


def ok_response(token="dG9rZW4tMg=="):
    return {"CheckpointToken": token, "NewExecutionState": {"Operations": [
        {"Id": UPDATE["Id"], "Type": "STEP", "SubType": "Step", "Name": "fetch", "Status": "STARTED",
         "StartTimestamp": NOW, "StepDetails": {"Attempt": 1}}]}}


# -- request and response shapes ---------------------------------------------------------------
def test_checkpoint_sends_the_modeled_request_and_returns_token_and_state(lam, stub, sleeps):
    stub.add_response("checkpoint_durable_execution", ok_response(), checkpoint_params())
    out = client_for(lam, sleeps).checkpoint(ARN, TOKEN, [UPDATE], "ct-1")
    assert out["CheckpointToken"] == "dG9rZW4tMg=="
    assert "ResponseMetadata" not in out
    op = out["NewExecutionState"]["Operations"][0]
    assert op["StartTimestamp"] == NOW  # botocore hands datetimes through; the SDK accepts them
    assert ds.wire.to_epoch_ms(op["StartTimestamp"]) == int(NOW.timestamp() * 1000)
    assert sleeps == []


def test_none_members_are_dropped_before_botocore_sees_them(lam, stub, sleeps):
    update = {**UPDATE, "Payload": None, "ParentId": None, "StepOptions": {"NextAttemptDelaySeconds": 3},
              "Error": None}
    expected = {k: v for k, v in update.items() if v is not None}
    stub.add_response("checkpoint_durable_execution", ok_response(), checkpoint_params(updates=[expected]))
    client_for(lam, sleeps).checkpoint(ARN, TOKEN, [update], "ct-1")


def test_a_response_without_a_token_means_the_execution_is_complete(lam, stub, sleeps):
    stub.add_response("checkpoint_durable_execution", {"NewExecutionState": {}}, checkpoint_params())
    out = client_for(lam, sleeps).checkpoint(ARN, TOKEN, [UPDATE], "ct-1")
    assert "CheckpointToken" not in out and out["NewExecutionState"] == {}


def test_get_state_pages_with_marker_and_max_items_1000(lam, stub, sleeps):
    stub.add_response("get_durable_execution_state",
                      {"Operations": [{"Id": "a", "Type": "STEP", "Status": "SUCCEEDED", "StartTimestamp": NOW}],
                       "NextMarker": "m2"},
                      {"DurableExecutionArn": ARN, "CheckpointToken": TOKEN, "Marker": "m1", "MaxItems": 1000})
    out = client_for(lam, sleeps).get_state(ARN, TOKEN, "m1")
    assert out == {"Operations": [{"Id": "a", "Type": "STEP", "Status": "SUCCEEDED", "StartTimestamp": NOW}],
                   "NextMarker": "m2"}


# -- retries ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("code,status", [("TooManyRequestsException", 429), ("ThrottlingException", 400),
                                         ("ServiceException", 500), ("InternalFailure", 503)])
def test_throttling_and_5xx_are_retried_with_the_same_client_token(lam, stub, sleeps, code, status):
    for _ in range(2):
        stub.add_client_error("checkpoint_durable_execution", code, "slow down", status,
                              expected_params=checkpoint_params("ct-same"))
    stub.add_response("checkpoint_durable_execution", ok_response(), checkpoint_params("ct-same"))
    out = client_for(lam, sleeps).checkpoint(ARN, TOKEN, [UPDATE], "ct-same")
    assert out["CheckpointToken"] == "dG9rZW4tMg=="
    assert len(sleeps) == 2
    # exponential with full jitter: attempt n waits uniform(0, min(max, 0.1 * 2**(n-1)))
    assert 0 <= sleeps[0] <= 0.1 and 0 <= sleeps[1] <= 0.2


def test_attempts_are_bounded_then_the_invocation_is_retried(lam, stub, sleeps):
    for _ in range(4):
        stub.add_client_error("checkpoint_durable_execution", "ServiceException", "boom", 500,
                              expected_params=checkpoint_params())
    client = client_for(lam, sleeps, max_attempts=4, max_backoff=0.3)
    with pytest.raises(CheckpointError) as info:
        client.checkpoint(ARN, TOKEN, [UPDATE], "ct-1")
    err = info.value
    assert err.retryable is True  # Lambda retries the invocation
    assert err.error_type == "ServiceException"
    assert "4 time(s)" in str(err) and "boom" in str(err)
    assert len(sleeps) == 3 and all(0 <= s <= 0.3 for s in sleeps)
    # a fifth call would hit the Stubber with nothing queued; assert_no_pending_responses checks all 4 ran


def test_connection_failures_and_lost_responses_are_retried_with_the_same_tokens(sleeps):
    calls = []

    class Flaky:
        def checkpoint_durable_execution(self, **params):
            calls.append(params)
            if len(calls) == 1:
                raise EndpointConnectionError(endpoint_url="http://x")
            if len(calls) == 2:
                raise ConnectionClosedError(endpoint_url="http://x")  # the service may have applied it
            if len(calls) == 3:
                raise ReadTimeoutError(endpoint_url="http://x")
            return {"CheckpointToken": "t2", "NewExecutionState": {"Operations": []}, "ResponseMetadata": {}}

    out = BotoCheckpointClient(Flaky(), sleep=sleeps).checkpoint(ARN, TOKEN, [UPDATE], "ct-9")
    assert out == {"CheckpointToken": "t2", "NewExecutionState": {"Operations": []}}
    assert len(calls) == 4 and len(sleeps) == 3
    assert all(c == calls[0] for c in calls)
    assert calls[0]["ClientToken"] == "ct-9" and calls[0]["CheckpointToken"] == TOKEN


# -- classification ----------------------------------------------------------------------------
@pytest.mark.parametrize("message", ["Invalid checkpoint token", "INVALID CHECKPOINT TOKEN: stale",
                                     "The request has an invalid Checkpoint Token for this execution"])
def test_a_stale_token_is_retryable_without_in_process_retries(lam, stub, sleeps, message):
    stub.add_client_error("checkpoint_durable_execution", "InvalidParameterValueException", message, 400,
                          expected_params=checkpoint_params())
    with pytest.raises(CheckpointError) as info:
        client_for(lam, sleeps).checkpoint(ARN, TOKEN, [UPDATE], "ct-1")
    assert info.value.retryable is True
    assert sleeps == []  # the same token would be refused again; Lambda re-invokes instead


@pytest.mark.parametrize("code,status", [("InvalidParameterValueException", 400),
                                         ("ResourceNotFoundException", 404), ("AccessDeniedException", 403)])
def test_other_4xx_fail_the_execution_with_the_service_message(lam, stub, sleeps, code, status):
    message = "operation c4ca: invalid state transition, SUCCEED is not allowed when the operation is not started"
    stub.add_client_error("checkpoint_durable_execution", code, message, status,
                          expected_params=checkpoint_params())
    with pytest.raises(CheckpointError) as info:
        client_for(lam, sleeps).checkpoint(ARN, TOKEN, [UPDATE], "ct-1")
    assert info.value.retryable is False
    assert info.value.error_type == code
    assert message in str(info.value)
    assert sleeps == []


def test_get_state_errors_are_classified_too(lam, stub, sleeps):
    params = {"DurableExecutionArn": ARN, "CheckpointToken": TOKEN, "Marker": "m", "MaxItems": 1000}
    stub.add_client_error("get_durable_execution_state", "TooManyRequestsException", "x", 429,
                          expected_params=params)
    stub.add_client_error("get_durable_execution_state", "InvalidParameterValueException",
                          "Invalid checkpoint token", 400, expected_params=params)
    with pytest.raises(CheckpointError) as info:
        client_for(lam, sleeps).get_state(ARN, TOKEN, "m")
    assert info.value.retryable is True and len(sleeps) == 1


# -- client-side validation --------------------------------------------------------------------------
def test_too_many_updates_fail_before_sending(lam, stub, sleeps):
    updates = [{**UPDATE, "Id": f"id-{i}"} for i in range(251)]
    with pytest.raises(CheckpointError, match="at most 250 updates") as info:
        client_for(lam, sleeps).checkpoint(ARN, TOKEN, updates, "ct-1")
    assert info.value.retryable is False


def test_an_oversized_request_fails_before_sending_with_a_clear_message(lam, stub, sleeps):
    big = "x" * (3 * 1024 * 1024 + 512 * 1024)
    updates = [{**UPDATE, "Id": "a", "Action": "SUCCEED", "Payload": big},
               {**UPDATE, "Id": "b", "Action": "SUCCEED", "Payload": big}]
    with pytest.raises(CheckpointError, match="bytes the service accepts") as info:
        client_for(lam, sleeps).checkpoint(ARN, TOKEN, updates, "ct-1")
    assert info.value.retryable is False


def test_a_single_maximal_payload_is_still_sent(lam, stub, sleeps):
    update = {**UPDATE, "Action": "SUCCEED", "Payload": "y" * ds.wire.MAX_PAYLOAD_BYTES}
    stub.add_response("checkpoint_durable_execution", ok_response(), checkpoint_params(updates=[update]))
    client_for(lam, sleeps).checkpoint(ARN, TOKEN, [update], "ct-1")


def test_a_bad_update_fails_before_sending(lam, stub, sleeps):
    with pytest.raises(CheckpointError, match="operation id") as info:
        client_for(lam, sleeps).checkpoint(ARN, TOKEN, [{**UPDATE, "Id": "bad id!"}], "ct-1")
    assert info.value.retryable is False


# -- the default client ----------------------------------------------------------------------------
@pytest.fixture
def fresh_default(monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "x")
    aws.reset_default_client()
    yield
    aws.reset_default_client()


def test_default_client_disables_botocore_retries_and_honours_the_lambda_endpoint_env(monkeypatch, fresh_default):
    monkeypatch.setenv("AWS_ENDPOINT_URL_LAMBDA", "http://127.0.0.1:9999")
    client = aws.default_client()
    assert client.boto_client.meta.endpoint_url == "http://127.0.0.1:9999"
    assert client.boto_client.meta.config.retries["total_max_attempts"] == 1
    assert client.boto_client.meta.region_name == "us-east-1"


def test_default_client_is_created_once_and_shared_across_threads(monkeypatch, fresh_default):
    created = []
    real_init = BotoCheckpointClient.__init__

    def slow_init(self, *args, **kwargs):
        created.append(1)
        time.sleep(0.05)  # widen the race window
        real_init(self, *args, **kwargs)

    monkeypatch.setattr(BotoCheckpointClient, "__init__", slow_init)
    results, barrier = [], threading.Barrier(8)

    def get():
        barrier.wait()
        results.append(aws.default_client())

    threads = [threading.Thread(target=get) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(created) == 1
    assert all(r is results[0] for r in results)
    assert aws.default_client() is results[0]  # reused by the next (warm) invocation


# -- through the handler ---------------------------------------------------------------------------
def envelope():
    exec_id = ARN.rsplit("/", 1)[-1]
    return {"DurableExecutionArn": ARN, "CheckpointToken": TOKEN, "InitialExecutionState": {"Operations": [
        {"Id": exec_id, "Type": "EXECUTION", "Status": "STARTED", "StartTimestamp": 1767322800000,
         "ExecutionDetails": {"InputPayload": json.dumps({"x": 1})}}]}}


@ds.durable_handler
def one_step(event, ctx):
    return ctx.step("double", lambda s: event["x"] * 2, config=ds.StepConfig(
        retry_strategy=ds.RetryPresets.none(), step_semantics=ds.StepSemantics.AT_MOST_ONCE_PER_RETRY))


class NoClientContext:
    """A Lambda context without ``durable_client``: the handler must use aws.default_client()."""

    function_name = "orders"


def test_the_handler_uses_the_default_client_and_reraises_a_retryable_error(lam, stub, sleeps, monkeypatch):
    stub.add_client_error("checkpoint_durable_execution", "InvalidParameterValueException",
                          "Invalid checkpoint token", 400)
    monkeypatch.setattr(aws, "default_client", lambda: client_for(lam, sleeps))
    with pytest.raises(CheckpointError) as info:
        one_step(envelope(), NoClientContext())
    assert info.value.retryable is True  # Lambda retries the invocation


def test_the_handler_fails_the_execution_on_a_non_retryable_error(lam, stub, sleeps, monkeypatch):
    stub.add_client_error("checkpoint_durable_execution", "InvalidParameterValueException",
                          "operation x: Type 'STEP' is inconsistent with the recorded 'WAIT'", 400)
    monkeypatch.setattr(aws, "default_client", lambda: client_for(lam, sleeps))
    out = one_step(envelope(), NoClientContext())
    assert out["Status"] == "FAILED"
    assert out["Error"]["ErrorType"] == "CheckpointError"
    assert "inconsistent with the recorded" in out["Error"]["ErrorMessage"]


# -- the SAM template ------------------------------------------------------------------------------
def test_the_sam_template_deploys_the_example_as_a_durable_function():
    from pathlib import Path

    import yaml

    from durable_sync.cli import load_handler

    class CfnLoader(yaml.SafeLoader):
        pass

    CfnLoader.add_multi_constructor("!", lambda loader, tag, node: (tag, loader.construct_scalar(node)))
    repo = Path(__file__).resolve().parents[1]
    template = yaml.load((repo / "examples" / "template.yaml").read_text(), Loader=CfnLoader)
    assert template["Transform"] == "AWS::Serverless-2016-10-31"
    props = template["Resources"]["OrderWorkflowFunction"]["Properties"]
    assert set(props["DurableConfig"]) == {"ExecutionTimeout", "RetentionPeriodInDays"}
    assert props["AutoPublishAlias"]  # durable functions are invoked by qualified ARN
    assert props["Runtime"] in ("python3.13", "python3.14")
    module, attr = props["Handler"].rsplit(".", 1)
    code_root = (repo / "examples" / props["CodeUri"]).resolve()
    assert (code_root / "requirements.txt").is_file() and (code_root / "durable_sync").is_dir()
    handler = load_handler(f"{code_root / (module + '.py')}:{attr}")
    assert hasattr(handler, "__durable_function__")
    actions = props["Policies"][0]["Statement"][0]["Action"]
    assert {"lambda:CheckpointDurableExecution", "lambda:GetDurableExecutionState"} <= set(actions)
