"""The shipped example, run through the CLI exactly as its docstring says (virtual time, in-memory db)."""
from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from durable_sync import cli

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "order_workflow.py"


def run_cli(capsys, order: dict) -> tuple[int, str, str]:
    code = cli.main(["run", str(EXAMPLE), "--input", json.dumps(order), "--skip-time", "--db", ":memory:"])
    out, err = capsys.readouterr()
    return code, out, err


def test_order_workflow_succeeds(capsys):
    started = time.monotonic()
    code, out, err = run_cli(capsys, {"order_id": "o-1", "items": [{"sku": "apple", "qty": 3}]})
    assert time.monotonic() - started < 10  # the 1 s retry and the 2 s wait take virtual time only
    assert code == 0, err
    last = out.strip().splitlines()[-1]
    assert json.loads(last) == {
        "order_id": "o-1",
        "reservation": "res-o-1",
        "receipt": {"auth": "auth-o-1", "amount": 1.5},
        "status": "charged",
    }
    # the run shows its operations as they happen (stdout still ends with the result)
    shown = out + err
    assert "InventoryUnavailable" in shown
    assert "cool-down" in shown and "payment" in shown


def test_order_workflow_runs_again_from_scratch(capsys):
    """The simulated flaky inventory fails the first attempt of every fresh run."""
    for order_id in ("o-2", "o-2"):
        code, out, err = run_cli(capsys, {"order_id": order_id, "items": [{"sku": "pear", "qty": 2}]})
        assert code == 0, err
        assert json.loads(out.strip().splitlines()[-1])["receipt"] == {"auth": f"auth-{order_id}", "amount": 1.5}
        assert "InventoryUnavailable" in out + err


@pytest.mark.parametrize("order, message", [
    ({"order_id": "o-3", "items": [{"sku": "durian", "qty": 1}]}, "unknown items: ['durian']"),
    ({"order_id": "o-4", "items": []}, "an order needs at least one item"),
])
def test_order_workflow_bad_input_exits_non_zero(capsys, order, message):
    started = time.monotonic()
    code, out, err = run_cli(capsys, order)
    assert time.monotonic() - started < 10
    assert code != 0
    assert "FAILED" in out + err
    assert "ValueError" in out + err and message in out + err


def test_cli_refuses_bad_json_input(capsys):
    code = cli.main(["run", str(EXAMPLE), "--input", "{not json", "--skip-time", "--db", ":memory:"])
    _, err = capsys.readouterr()
    assert code == 2
    assert "--input is not valid JSON" in err


def test_order_workflow_history_on_the_engine():
    """The example's durable behaviour: one retry after 1 s, a 2 s wait, payment steps in a child context."""
    from durable_sync.local import LocalEngine

    handler = cli.load_handler(str(EXAMPLE))
    engine = LocalEngine(db=":memory:", skip_time=True)
    try:
        res = engine.run(handler, input={"order_id": "o-9", "items": [{"sku": "melon", "qty": 2}]})
        assert res.status == "SUCCEEDED", res.error
        assert res.result["receipt"] == {"auth": "auth-o-9", "amount": 6.0}
        history = engine.history(res.arn)
        retries = [e["StepFailedDetails"] for e in history if e["EventType"] == "StepFailed"]
        assert len(retries) == 1
        assert retries[0]["Error"]["Payload"]["ErrorType"] == "InventoryUnavailable"
        assert retries[0]["RetryDetails"] == {"CurrentAttempt": 1, "NextAttemptDelaySeconds": 1}
        [wait] = [e for e in history if e["EventType"] == "WaitStarted"]
        assert wait["Name"] == "cool-down" and wait["WaitStartedDetails"]["Duration"] == 2
        ops = {op.get("Name"): op for op in engine.operations(res.arn)}
        assert ops["validate"]["Status"] == ops["reserve"]["Status"] == "SUCCEEDED"
        assert ops["payment"]["ContextDetails"]["ReplayChildren"] is True
        assert ops["authorize"]["ParentId"] == ops["capture"]["ParentId"] == ops["payment"]["Id"]
        assert sum(e["EventType"] == "InvocationCompleted" for e in history) == 3  # start, retry, wait
    finally:
        engine.close()
