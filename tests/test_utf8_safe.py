"""Text UTF-8 cannot encode (lone surrogates, as ``os.fsdecode`` makes from a bad file name).

Error messages and custom-serdes payloads holding such characters are checkpointed with them
replaced by U+FFFD: the step fails with a normal StepError (not a CheckpointError that fails the
execution), on the in-memory engine, on the SQLite engine and through the boto3 client. JSON data
written by the default serdes keeps them exactly (as ``\\udcff`` escapes).
"""
from __future__ import annotations

import os

import boto3
import pytest
from botocore.stub import Stubber

import durable_sync as ds
from durable_sync.aws import BotoCheckpointClient
from durable_sync.errors import error_object, utf8_safe
from durable_sync.local import LocalEngine

BAD_NAME = os.fsdecode(b"report-\xff\xfe.csv")  # 'report-\udcff\udcfe.csv'
CLEAN_NAME = "report-\ufffd\ufffd.csv"
NO_RETRY = ds.StepConfig(retry_strategy=ds.RetryPresets.none())


@pytest.fixture(params=["memory", "sqlite"])
def any_engine(request, tmp_path):
    eng = LocalEngine(db=":memory:" if request.param == "memory" else str(tmp_path / "x.db"), skip_time=True)
    yield eng
    eng.close()


def open_report(step_ctx):
    raise FileNotFoundError(f"cannot open {BAD_NAME}")


def test_utf8_safe_replaces_only_what_utf8_cannot_encode():
    assert utf8_safe(BAD_NAME) == CLEAN_NAME
    for fine in ("plain", "héllo ✓ 日本", "\U0001F600"):
        assert utf8_safe(fine) is fine
    assert utf8_safe("\ud83d\ude00") == "\ufffd\ufffd"  # a surrogate pair held as two code points
    err = error_object(ValueError(BAD_NAME))
    assert err["ErrorMessage"] == CLEAN_NAME
    assert all(line.encode("utf-8") for line in err["StackTrace"])


def test_a_step_failing_with_a_bad_file_name_is_a_normal_step_error(any_engine):
    @ds.durable_handler
    def handler(event, ctx):
        try:
            ctx.step(open_report, name="open", config=NO_RETRY)
        except ds.StepError as exc:
            first = exc.error_message
        ctx.wait(1, name="again")  # a second invocation replays the failed step
        try:
            ctx.step(open_report, name="open-2", config=NO_RETRY)
        except ds.StepError as exc:
            return [first, exc.error_message, exc.error_type]

    res = any_engine.run(handler)
    assert res.status == "SUCCEEDED", res.error
    assert res.result == [f"cannot open {CLEAN_NAME}"] * 2 + ["FileNotFoundError"]
    [op] = [o for o in any_engine.operations(res.arn) if o.get("Name") == "open"]
    assert op["Status"] == "FAILED" and op["StepDetails"]["Error"]["ErrorMessage"] == f"cannot open {CLEAN_NAME}"


def test_replay_raises_the_same_cleaned_message(any_engine):
    @ds.durable_handler
    def handler(event, ctx):
        messages = []
        try:
            ctx.step(open_report, name="open", config=NO_RETRY)
        except ds.StepError as exc:
            messages.append(exc.error_message)
        ctx.wait(1, name="w")
        return messages  # the second invocation replays "open" from its checkpoint

    res = any_engine.run(handler)
    assert res.status == "SUCCEEDED", res.error
    assert res.result == [f"cannot open {CLEAN_NAME}"]


def test_an_uncaught_error_with_a_bad_file_name_fails_the_execution_with_that_error(any_engine):
    @ds.durable_handler
    def handler(event, ctx):
        raise OSError(f"cannot read {BAD_NAME}")

    res = any_engine.run(handler)
    assert res.status == "FAILED"
    assert res.error["ErrorType"] == "OSError" and res.error["ErrorMessage"] == f"cannot read {CLEAN_NAME}"


def test_json_data_keeps_lone_surrogates_exactly(any_engine):
    @ds.durable_handler
    def handler(event, ctx):
        name = ctx.step(lambda s: BAD_NAME, name="name")
        ctx.wait(1)
        return [name == BAD_NAME, ctx.step(lambda s: {"file": BAD_NAME}, name="again")["file"] == BAD_NAME]

    res = any_engine.run(handler)
    assert res.status == "SUCCEEDED", res.error
    assert res.result == [True, True]


def test_a_custom_serdes_payload_is_cleaned_and_first_run_and_replay_agree(any_engine):
    config = ds.StepConfig(serdes=ds.serdes.PassThroughSerDes())

    @ds.durable_handler
    def handler(event, ctx):
        seen = ctx.step(lambda s: BAD_NAME, name="raw", config=config)
        ctx.wait(1)
        return seen  # the second invocation's value: decoded from the checkpoint

    res = any_engine.run(handler)
    assert res.status == "SUCCEEDED", res.error
    assert res.result == CLEAN_NAME
    [op] = [o for o in any_engine.operations(res.arn) if o.get("Name") == "raw"]
    assert op["StepDetails"]["Result"] == CLEAN_NAME


def test_the_boto3_client_sends_cleaned_text():
    lam = boto3.client("lambda", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    arn = "arn:aws:lambda:us-east-1:123456789012:function:f:$LATEST/durable-execution/n/e"
    update = {"Id": "a1", "Type": "STEP", "SubType": "Step", "Action": "FAIL", "Name": "open",
              "Error": {"ErrorType": "OSError", "ErrorMessage": f"cannot open {BAD_NAME}",
                        "StackTrace": [f'  File "{BAD_NAME}", line 1']}}
    retry = {"Id": "a2", "Type": "STEP", "SubType": "Step", "Action": "SUCCEED", "Payload": BAD_NAME}
    expected = [{**update, "Error": {"ErrorType": "OSError", "ErrorMessage": f"cannot open {CLEAN_NAME}",
                                     "StackTrace": [f'  File "{CLEAN_NAME}", line 1']}},
                {**retry, "Payload": CLEAN_NAME}]
    with Stubber(lam) as stub:
        stub.add_response("checkpoint_durable_execution", {"CheckpointToken": "t2", "NewExecutionState": {}},
                          {"DurableExecutionArn": arn, "CheckpointToken": "t1", "Updates": expected,
                           "ClientToken": "ct"})
        out = BotoCheckpointClient(lam, sleep=lambda s: None).checkpoint(arn, "t1", [update, retry], "ct")
        stub.assert_no_pending_responses()
    assert out["CheckpointToken"] == "t2"
