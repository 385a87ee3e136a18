"""The JavaScript SDK's own testing package against the engine: CloudDurableTestRunner, pointed at the
engine's Lambda API instead of AWS, runs a JS test (js/order.test.mjs) of a step / wait / callback workflow."""
from __future__ import annotations

import os
import shutil
import subprocess

from durable_sync.local import LocalEngine
from durable_sync.local.http import start_server

from .support import js

HERE = os.path.dirname(os.path.abspath(__file__))


def test_the_js_testing_packages_cloud_runner_passes_against_the_engine(js_sdk):
    engine = LocalEngine(db=":memory:", skip_time=True, real_time_callbacks=True)  # as `serve --skip-time`
    try:
        with start_server(engine, functions={"order-flow": js("order.mjs")}) as running:
            env = {**os.environ, "AWS_ENDPOINT_URL_LAMBDA": running.url, "AWS_REGION": "us-east-1",
                   "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "ORDER_FUNCTION": "order-flow"}
            env.pop("AWS_PROFILE", None)
            done = subprocess.run([shutil.which("node"), "--test", os.path.join(HERE, "js", "order.test.mjs")],
                                  cwd=HERE, env=env, capture_output=True, text=True, timeout=120)
        [execution] = engine.list_executions(function_name="order-flow")
    finally:
        engine.close()
    assert done.returncode == 0, done.stdout + done.stderr
    assert "# pass 1" in done.stdout and "# fail 0" in done.stdout
    assert execution["Status"] == "SUCCEEDED"
