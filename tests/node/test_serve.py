"""JavaScript handlers under the engine's Lambda API, driven by boto3 as on AWS."""
from __future__ import annotations

import os
import subprocess
import sys

from .support import HANDLERS, event_types, history, invoke, js, lambda_client, served

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_step_wait_step_succeeds_with_the_services_history(js_sdk):
    with served({"greet": js("step_wait.mjs")}) as (engine, client):
        arn, result, error = invoke(client, "greet", {"name": "bob"})
        events = history(client, arn)
    assert error is None
    assert result == {"first": "hello bob", "second": "HELLO BOB"}
    assert event_types(events) == [
        "ExecutionStarted", "StepStarted", "StepSucceeded", "WaitStarted", "InvocationCompleted",
        "WaitSucceeded", "StepStarted", "StepSucceeded", "InvocationCompleted", "ExecutionSucceeded"]
    steps = [e for e in events if e["EventType"] == "StepSucceeded"]
    assert [(e["Name"], e["StepSucceededDetails"]["Result"]["Payload"]) for e in steps] == [
        ("first", '"hello bob"'), ("second", '"HELLO BOB"')]
    wait = next(e for e in events if e["EventType"] == "WaitStarted")
    assert wait["WaitStartedDetails"]["Duration"] == 2


def test_functions_registered_by_reference_after_the_engine_started(js_sdk):
    with served({}) as (engine, client):
        engine.register_function("doubler", f"{HANDLERS}/commonjs.cjs:handler")
        arn, result, error = invoke(client, "doubler", {"n": 21})
    assert (error, result) == (None, {"n": 42})


def test_durable_sync_serve_runs_a_javascript_function(js_sdk, tmp_path):
    env = {**os.environ, "PYTHONPATH": REPO + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "durable_sync.cli", "serve", "--port", "0", "--skip-time", "--db",
         str(tmp_path / "serve.db"), "-f", f"greet={HANDLERS}/step_wait.mjs:handler"],
        stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env, cwd=tmp_path)
    try:
        assert proc.stderr is not None
        banner = [proc.stderr.readline() for _ in range(3)]
        url = banner[0].split("Lambda API on ", 1)[1].split()[0]
        assert "functions: greet" in banner[1]
        arn, result, error = invoke(lambda_client(url), "greet", {"name": "cli"})
        assert (error, result) == (None, {"first": "hello cli", "second": "HELLO CLI"})
    finally:
        proc.terminate()
        assert proc.wait(timeout=30) == 0


def test_serve_refuses_a_javascript_function_that_cannot_load(js_sdk, tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "durable_sync.cli", "serve", "--port", "0", "--db", ":memory:",
         "-f", f"greet={HANDLERS}/step_wait.mjs:handlr"],
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": REPO + os.pathsep + os.environ.get("PYTHONPATH", "")})
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].endswith(
        'step_wait.mjs does not export "handlr"; functions it exports: handler')


def test_a_typescript_build_output_runs(js_sdk):
    # tsc's CommonJS output (handlers/ts_build/lib/handler.js, from src.ts), in a "type": "commonjs" package
    with served({"priced": f"{HANDLERS}/ts_build/lib/handler.js:handler"}) as (engine, client):
        arn, result, error = invoke(client, "priced", {"orderId": "o-3", "quantity": 4})
        events = history(client, arn)
    assert (error, result) == (None, {"orderId": "o-3", "total": 50})
    assert "WaitSucceeded" in event_types(events)
