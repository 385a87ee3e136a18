"""Cold start: ``import durable_sync`` loads no heavy dependency until it is needed.

jsonpickle only for non-JSON values, tenacity only for tenacity strategies, boto3/botocore only
on the AWS path, sqlite3 only with the local engine, importlib.metadata (entry points) only when
plugins are looked up, hashlib's OpenSSL never (operation ids use blake2b directly), decimal and
uuid when such a value is met, retry policies when named or when a step fails. Checked in a
fresh interpreter, so what earlier tests imported does not matter. Timings are measured with
``python -X importtime -c 'import durable_sync'``, not here.
"""
from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import durable_sync

ROOT = pathlib.Path(durable_sync.__file__).parent.parent
LAZY = ["jsonpickle", "tenacity", "boto3", "botocore", "sqlite3", "importlib.metadata", "hashlib", "yaml",
        "decimal", "uuid", "durable_sync.retry", "durable_sync.local", "durable_sync.testing"]


def loaded_after(code: str) -> list[str]:
    script = f"import json, sys\n{code}\nprint(json.dumps([m for m in {LAZY!r} if m in sys.modules]))"
    out = subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, text=True, cwd=ROOT)
    return json.loads(out.stdout)


def test_import_durable_sync_loads_none_of_the_heavy_dependencies():
    assert loaded_after("import durable_sync") == []


def test_plain_json_steps_and_policies_stay_light():
    code = """
import durable_sync as ds
from durable_sync.serdes import DEFAULT_SERDES as S
S.deserialize(S.serialize({"a": [1, "x", None]}, None), None)
ds.StepConfig(retry_strategy=ds.RetryPolicy(max_attempts=2))
ds.retry.resolve_retry_strategy(ds.RetryPresets.default())(ValueError(), 1)
"""
    assert loaded_after(code) == ["durable_sync.retry"]  # named, so loaded; tenacity still not


def test_each_dependency_is_loaded_where_it_is_needed():
    assert "jsonpickle" in loaded_after(
        "from durable_sync.serdes import DEFAULT_SERDES as S\nS.serialize((1, 2), None)")
    assert "tenacity" in loaded_after(
        "import tenacity\nimport durable_sync as ds\nds.retry.resolve_retry_strategy(tenacity.stop_after_attempt(2))")
