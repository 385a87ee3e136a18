"""The callback and polling examples: through the CLI as their docstrings say, and answered from a test."""
from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from durable_sync import cli
from durable_sync.local import LocalEngine

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
APPROVAL = EXAMPLES / "human_approval.py"
POLL_JOB = EXAMPLES / "poll_job.py"


def run_cli(capsys, path: Path, event: dict) -> tuple[int, str, str]:
    code = cli.main(["run", str(path), "--input", json.dumps(event), "--skip-time", "--db", ":memory:"])
    out, err = capsys.readouterr()
    return code, out, err


def test_unanswered_approval_takes_the_timeout_path(capsys):
    started = time.monotonic()
    code, out, err = run_cli(capsys, APPROVAL, {"expense_id": "e-1", "amount": 420})
    assert time.monotonic() - started < 10  # the 24 h timeout is virtual
    assert code == 0, err
    assert json.loads(out.strip().splitlines()[-1]) == {"expense_id": "e-1", "amount": 420, "status": "expired"}
    shown = out + err
    assert "durable-sync callback succeed " in shown  # the id is shown with the command to answer it
    assert "CallbackTimedOut" in shown


def test_small_expenses_need_no_approval(capsys):
    code, out, err = run_cli(capsys, APPROVAL, {"expense_id": "e-2", "amount": 42})
    assert code == 0, err
    assert json.loads(out.strip().splitlines()[-1])["approved_by"] == "policy"


def _approval_id(engine, arn):
    [op] = [op for op in engine.operations(arn) if op["Type"] == "CALLBACK"]
    return op["CallbackDetails"]["CallbackId"]


@pytest.mark.parametrize("answer, expected", [
    ('{"approved": true}', {"status": "paid", "payment": "payment-e-3", "approved_by": "approver"}),
    ('{"approved": false, "reason": "over budget"}', {"status": "rejected", "reason": "over budget"}),
])
def test_an_approver_answers(answer, expected):
    handler = cli.load_handler(str(APPROVAL))
    with LocalEngine(db=":memory:", skip_time=True) as engine:
        arn = engine.start(handler, {"expense_id": "e-3", "amount": 500})
        engine.advance(3600)  # an hour later, still waiting
        assert engine.get_execution(arn).status == "RUNNING"
        engine.send_callback_success(_approval_id(engine, arn), answer)
        result = engine.get_execution(arn)
    assert result.status == "SUCCEEDED"
    assert result.result == {"expense_id": "e-3", "amount": 500, **expected}


def test_an_approver_rejects_with_a_failure():
    handler = cli.load_handler(str(APPROVAL))
    with LocalEngine(db=":memory:", skip_time=True) as engine:
        arn = engine.start(handler, {"expense_id": "e-4", "amount": 500})
        engine.send_callback_failure(_approval_id(engine, arn), {"ErrorType": "Rejected", "ErrorMessage": "no receipt"})
        assert engine.get_execution(arn).result["reason"] == "no receipt"


def test_poll_job_polls_until_the_job_is_done(capsys):
    code, out, err = run_cli(capsys, POLL_JOB, {"dataset": "sales-2025"})
    assert code == 0, err
    assert json.loads(out.strip().splitlines()[-1]) == {
        "job_id": "job-sales-2025", "status": "SUCCEEDED", "polls": 3, "rows": 1000,
        "location": "s3://results/job-sales-2025.csv"}


def test_poll_job_backs_off_between_polls():
    handler = cli.load_handler(str(POLL_JOB))
    with LocalEngine(db=":memory:", skip_time=True) as engine:
        result = engine.run(handler, {"dataset": "d"})
        delays = [e["StepSucceededDetails"]["RetryDetails"]["NextAttemptDelaySeconds"]
                  for e in engine.history(result.arn)
                  if e["EventType"] == "StepSucceeded" and e.get("SubType") == "WaitForCondition"
                  and "NextAttemptDelaySeconds" in e["StepSucceededDetails"].get("RetryDetails", {})]
    assert result.result["status"] == "SUCCEEDED"
    assert delays == [5, 10]
