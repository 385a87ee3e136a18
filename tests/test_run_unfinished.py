"""Unfinished executions found in a database: ``LocalEngine.run_unfinished()`` and ``durable-sync serve``,
which starts its HTTP server before it runs them (handlers that reach the engine over HTTP need its URL)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import boto3

import durable_sync as ds
from durable_sync.local import LocalEngine
from helpers import durable_sync_serve

REPO = Path(__file__).resolve().parents[1]
DEADLINE = 30.0


@ds.durable_handler
def one_wait(event, ctx: ds.DurableContext):
    ctx.wait(60, name="nap")
    return "woke"


def test_run_unfinished_runs_every_execution_left_alone_then_nothing_more(tmp_path):
    db = str(tmp_path / "d.db")
    with LocalEngine(db=db, skip_time=True) as engine:
        first = engine.start(one_wait, None, name="first")
        second = engine.start(one_wait, None, name="second")
        engine.stop(engine.start(one_wait, None, name="stopped"))
    with LocalEngine(db=db, skip_time=True, resume_unfinished=False, functions={"one_wait": one_wait}) as engine:
        assert engine.snapshot(first).pending_timers == ()  # left alone: nothing armed
        assert engine.run_unfinished() == [first, second]  # oldest first; the ended one is not among them
        assert [t.kind for t in engine.snapshot(first).pending_timers] == ["wait", "execution_timeout"]
        assert engine.run_unfinished() == []  # already running onward
        assert engine.wait(first).result == "woke" and engine.wait(second).result == "woke"
        assert engine.snapshot(first).invocations == 2  # no invocation was needed to resume it


# -- durable-sync serve ----------------------------------------------------------------------------------
# A Lambda handler that reaches the engine only over HTTP, through boto3, as a Node.js handler does: it
# checkpoints one step through the served endpoint and returns the execution's outcome.
OVER_HTTP = textwrap.dedent('''
    import json
    import os

    import boto3


    def handler(event, context):
        if os.environ.get("CRASH_MID_INVOCATION"):
            os._exit(9)  # the process dies during the invocation: the execution stays unfinished
        url = context.endpoint_url
        if url is None:
            raise RuntimeError("no endpoint: this handler reaches the engine over HTTP only")
        lam = boto3.client("lambda", endpoint_url=url, region_name="us-east-1", aws_access_key_id="x",
                           aws_secret_access_key="x")
        step = {"Id": "reach", "Type": "STEP", "Name": "reach"}
        lam.checkpoint_durable_execution(
            DurableExecutionArn=event["DurableExecutionArn"], CheckpointToken=event["CheckpointToken"],
            Updates=[{**step, "Action": "START"}, {**step, "Action": "SUCCEED", "Payload": json.dumps(url)}])
        return {"Status": "SUCCEEDED", "Result": json.dumps({"reached": url})}
''')


def _crashed_execution(tmp_path: Path, env: dict) -> str:
    """A database holding one execution of over_http.handler whose invocation died with its process."""
    setup = textwrap.dedent(f'''
        from durable_sync.local import LocalEngine
        from durable_sync.local.handlers import load

        handler = load({str(tmp_path / "over_http.py")!r} + ":handler")
        engine = LocalEngine(db={str(tmp_path / "d.db")!r}, skip_time=True)
        engine.start(handler, {{"order": 7}}, name="cut-short", function_name="over_http")
        raise SystemExit("the invocation should have ended this process")
    ''')
    crashed = subprocess.run([sys.executable, "-c", setup], env={**env, "CRASH_MID_INVOCATION": "1"},
                             capture_output=True, text=True, timeout=DEADLINE, cwd=tmp_path)
    assert crashed.returncode == 9, crashed.stderr
    return str(tmp_path / "d.db")


def test_serve_runs_unfinished_executions_once_it_serves(tmp_path):
    """An execution whose invocation was cut short resumes under serve, and its handler, which needs the
    served endpoint, finds it: the server runs before the execution is invoked again."""
    (tmp_path / "over_http.py").write_text(OVER_HTTP)
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    db = _crashed_execution(tmp_path, env)
    with durable_sync_serve("--skip-time", "--db", db, "-f", f"over_http={tmp_path / 'over_http.py'}:handler",
                            cwd=tmp_path, timeout=DEADLINE) as (url, stderr):
        lam = boto3.client("lambda", endpoint_url=url, region_name="us-east-1", aws_access_key_id="x",
                           aws_secret_access_key="x")
        [listed] = lam.list_durable_executions_by_function(FunctionName="over_http")["DurableExecutions"]
        arn, deadline = listed["DurableExecutionArn"], time.monotonic() + DEADLINE
        while time.monotonic() < deadline:
            execution = lam.get_durable_execution(DurableExecutionArn=arn)
            if execution["Status"] != "RUNNING":
                break
            time.sleep(0.05)  # polls the outcome over HTTP; no durable wait is involved
        assert execution["Status"] == "SUCCEEDED", execution.get("Error")
        assert json.loads(execution["Result"]) == {"reached": url}
        events = lam.get_durable_execution_history(DurableExecutionArn=arn)["Events"]
        completed = [e for e in events if e["EventType"] == "InvocationCompleted"]
        assert len(completed) == 1 and "Error" not in completed[0]["InvocationCompletedDetails"]  # first try
        [step] = [e for e in events if e["EventType"] == "StepSucceeded"]
        assert json.loads(step["StepSucceededDetails"]["Result"]["Payload"]) == url
    assert any("resuming 1 unfinished execution" in line for line in stderr), "".join(stderr)
