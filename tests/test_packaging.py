"""What gets installed and deployed: the distribution, its package data, the Lambda artifact, .gitignore."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_the_distribution_name_is_ours_and_the_import_name_stays():
    setup_py = (ROOT / "setup.py").read_text(encoding="utf-8")
    assert 'name="lambda-durable-sync"' in setup_py  # `durable-sync` on the package index is someone else's
    assert '"console_scripts": ["durable-sync=durable_sync.cli:main"]' in setup_py
    assert '"pytest11": ["durable_sync=durable_sync.testing.plugin"]' in setup_py


def test_no_doc_tells_users_to_pip_install_a_name_we_do_not_own():
    docs = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    for doc in docs:
        for line in doc.read_text(encoding="utf-8").splitlines():
            for command in line.split("pip install")[1:]:
                words = re.split(r"&&|\|\||[;|#]", command)[0].split()
                names = [w for i, w in enumerate(words) if not w.startswith("-")
                         and (i == 0 or words[i - 1] not in ("-r", "-e", "-c", "--requirement", "--editable"))]
                assert not {"durable-sync", "durable_sync", "lambda-durable-sync"} & set(names), f"{doc.name}: {line}"


@pytest.mark.skipif(not Path("/usr/bin/make").exists() and not any(
    (Path(p) / "make").exists() for p in os.environ.get("PATH", "").split(os.pathsep)), reason="no make on PATH")
def test_the_lambda_artifact_holds_only_what_the_function_imports(tmp_path):
    artifact = tmp_path / "artifact"
    artifact.mkdir()
    built = subprocess.run(["make", "--no-print-directory", "build-OrderWorkflowFunction", f"ARTIFACTS_DIR={artifact}",
                            "PIP_INSTALL=true"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert built.returncode == 0, built.stderr
    files = {str(p.relative_to(artifact)) for p in artifact.rglob("*") if p.is_file()}
    assert "examples/order_workflow.py" in files and "durable_sync/__init__.py" in files
    assert not {f for f in files if f.startswith(("tests/", "docs/", "benchmarks/", "durable_sync/local/",
                                                   "durable_sync/testing/", "durable_sync/cli",
                                                   "durable_sync/inspection/", "durable_sync/console/"))
                or "__pycache__" in f}
    # the handler runs from the artifact alone: one invocation (it ends PENDING at the flaky reservation's retry)
    probe = textwrap.dedent('''
        import json, sys
        import examples.order_workflow as flow

        class Client:  # the service's side of CheckpointDurableExecution, as little as the SDK needs
            def checkpoint(self, arn, token, updates, client_token):
                return {"CheckpointToken": token + "+", "NewExecutionState": {"Operations": []}}

            def get_state(self, arn, token, marker):
                return {"Operations": []}

        class LambdaContext:
            durable_client = Client()

            def get_remaining_time_in_millis(self):
                return 60_000

        order = {"order_id": "o-1", "items": [{"sku": "apple", "qty": 3}]}
        envelope = {"DurableExecutionArn": "arn:aws:lambda:us-east-1:1:function:f:1/durable-execution/n/i",
                    "CheckpointToken": "t", "InitialExecutionState": {"Operations": [
                        {"Id": "i", "Type": "EXECUTION", "Status": "STARTED",
                         "ExecutionDetails": {"InputPayload": json.dumps(order)}}]}}
        output = flow.handler(envelope, LambdaContext())
        loaded = sorted({getattr(m, "__file__", None) or "" for n, m in sys.modules.items()
                         if n == "durable_sync" or n.startswith("durable_sync.")})
        print(json.dumps([output["Status"], loaded]))
    ''')
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    ran = subprocess.run([sys.executable, "-c", probe], cwd=artifact, env=env, capture_output=True, text=True,
                         timeout=60)
    assert ran.returncode == 0, ran.stderr
    status, loaded = json.loads(ran.stdout.strip().splitlines()[-1])
    assert status == "PENDING"
    assert loaded and all(path.startswith(str(artifact)) for path in loaded), loaded


def test_gitignore_covers_what_the_readme_commands_create(tmp_path):
    order = str(ROOT / "examples" / "order_workflow.py")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    for args in (["run", order, "--input", '{"order_id": "o-1", "items": [{"sku": "apple", "qty": 3}]}', "--skip-time",
                  "--name", "o-1"], ["history", "o-1", "--html", "timeline.html"]):
        done = subprocess.run([sys.executable, "-m", "durable_sync.cli", *args], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
    created = sorted(p.name for p in tmp_path.iterdir())
    assert "durable.db" in created and "timeline.html" in created
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    (tmp_path / ".gitignore").write_text((ROOT / ".gitignore").read_text())
    status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=tmp_path,
                            capture_output=True, text=True, check=True).stdout.split("\n")
    assert [line for line in status if line and not line.endswith(".gitignore")] == []
