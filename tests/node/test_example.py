"""examples/node/step_example.mjs runs as its header says (durable-sync serve -f, invoked through the API)."""
from __future__ import annotations

import json
import os
import shutil
import tempfile

import pytest

from .support import event_types, history, invoke, served

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.fixture
def example(js_sdk):
    """The example, copied next to this folder's node_modules (where the test run installed the SDK)."""
    work = tempfile.mkdtemp(prefix="tmp-example-", dir=HERE)
    try:
        yield shutil.copy(os.path.join(REPO, "examples", "node", "step_example.mjs"), work)
    finally:
        shutil.rmtree(work)


def test_the_step_example_retries_then_processes_the_order(example):
    with served({"user-orders": f"{example}:handler"}) as (engine, client):
        arn, result, error = invoke(client, "user-orders", {"userId": "u-7"})
        events = history(client, arn)
    assert (error, result) == (None, {"user": "User u-7", "receipt": "charge-u-7-80"})
    fetch = [e for e in events if e.get("Name") == "fetch-user-data" and e["EventType"].startswith("Step")]
    assert [e["EventType"] for e in fetch] == ["StepStarted", "StepFailed", "StepStarted", "StepSucceeded"]
    assert fetch[1]["StepFailedDetails"]["RetryDetails"] == {"CurrentAttempt": 1, "NextAttemptDelaySeconds": 1}
    assert json.loads(fetch[3]["StepSucceededDetails"]["Result"]["Payload"])["plan"] == "pro"
    assert [e.get("Name") for e in events if e["EventType"] == "ContextSucceeded"] == ["process-order"]
    assert event_types(events).count("WaitSucceeded") == 1
