"""Node.js handler tests: the JavaScript SDK (@aws/durable-execution-sdk-js) on the engine.

The SDK comes from npm, pinned by package.json / package-lock.json in this folder. ``.ci/run`` installs
it (``npm ci``); when it is missing and npm is there, the first test that needs it installs it. Tests
are skipped, with the reason, only where Node.js or npm is not installed.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from typing import Iterator

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
SDK_DIR = os.path.join(HERE, "node_modules", "@aws", "durable-execution-sdk-js")


def _install_sdk() -> None:
    if os.path.isdir(SDK_DIR):
        return
    if shutil.which("node") is None:
        pytest.skip("Node.js is not installed (no `node` on PATH): the JavaScript handler tests need Node 18+")
    npm = shutil.which("npm")
    if npm is None:
        pytest.skip("npm is not installed: the JavaScript handler tests install @aws/durable-execution-sdk-js "
                    "with it (`npm ci` in tests/node)")
    done = subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=HERE,
                          capture_output=True, text=True)
    if done.returncode != 0 or not os.path.isdir(SDK_DIR):
        pytest.fail(f"`npm ci` in {HERE} failed:\n{done.stderr[-2000:]}")


@pytest.fixture(scope="session")
def js_sdk() -> str:
    """The folder where the JavaScript SDK is installed (node_modules of tests/node)."""
    _install_sdk()
    return HERE


@pytest.fixture(autouse=True)
def _node_processes(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # The AWS SDK for JavaScript warns on every start under Node < 22; the tests run on Node 20 too.
    monkeypatch.setenv("AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED", "true")
    yield
    from .support import LOADED

    while LOADED:  # no Node process outlives its test
        LOADED.pop().release()
