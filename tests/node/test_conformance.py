"""Conformance requirements of the service, run with handlers written with the JavaScript SDK.

The requirement files (../shared/conformance) come from the JavaScript SDK's own conformance suite;
each case here is one requirement with its handler in handlers/conformance/. The engine runs in this
process in virtual time (the SDK's client reaches it through the loopback Lambda API the engine starts
for foreign handlers); results and histories are
checked with the same matching rules as the Python suite (tests/conformance/harness.py); a few run on
the SQLite store too. Log
expectations are not checked: a Node handler's logs go to the engine's stderr.
"""
from __future__ import annotations

import os
import uuid

import pytest

from conformance import harness
from durable_sync.local import LocalEngine

from .support import js

CASES = {
    "step/1-1": "step.mjs:r1_1", "step/1-2": "step.mjs:r1_2", "step/1-3": "step.mjs:r1_3",
    "step/1-6": "step.mjs:r1_6", "step/1-10": "step.mjs:r1_10", "step/1-11": "step.mjs:r1_11",
    "step/1-12": "step.mjs:r1_12", "step/1-15": "step.mjs:r1_15", "step/1-16": "step.mjs:r1_16",
    "step/1-17": "step.mjs:r1_17", "step/1-18": "step.mjs:r1_18", "step/1-19": "step.mjs:r1_19",
    "step/1-20": "step.mjs:r1_20",
    "wait/2-1": "wait.mjs:r2_1", "wait/2-3": "wait.mjs:r2_3", "wait/2-5": "wait.mjs:r2_5",
    "child/3-1": "child.mjs:r3_1", "child/3-4": "child.mjs:r3_4", "child/3-6": "child.mjs:r3_6",
    "child/3-7": "child.mjs:r3_7", "child/3-10": "child.mjs:r3_10", "child/3-11": "child.mjs:r3_11",
    "child/3-12": "child.mjs:r3_12",
    "callback/4-1": "callback.mjs:r4_1", "callback/4-3": "callback.mjs:r4_3", "callback/4-4": "callback.mjs:r4_4",
    "callback/4-5": "callback.mjs:r4_5", "callback/4-6": "callback.mjs:r4_6", "callback/4-9": "callback.mjs:r4_9",
    "callback/4-12": "callback.mjs:r4_12", "callback/4-17": "callback.mjs:r4_17",
    "wait_for_condition/6-1": "wait_for_condition.mjs:r6_1", "wait_for_condition/6-2": "wait_for_condition.mjs:r6_2",
    "wait_for_condition/6-6": "wait_for_condition.mjs:r6_6", "wait_for_condition/6-7": "wait_for_condition.mjs:r6_7",
    "wait_for_condition/6-11": "wait_for_condition.mjs:r6_11",
    "parallel/8-1": "parallel.mjs:r8_1", "parallel/8-3": "parallel.mjs:r8_3", "parallel/8-6": "parallel.mjs:r8_6",
    "parallel/8-8": "parallel.mjs:r8_8", "parallel/8-12": "parallel.mjs:r8_12", "parallel/8-14": "parallel.mjs:r8_14",
}


def _requirement(test_id: str) -> harness.Requirement:
    suite, rid = test_id.split("/")
    path = harness.conformance_dir() / suite / f"{rid}.yaml"
    if not path.is_file():
        pytest.skip(f"conformance requirement {path} not found (set {harness.CONFORMANCE_ENV})")
    return harness.Requirement(suite, rid, path)


#: Also run on the SQLite store: a retry, a crash, a callback during a wait, a suspended parallel branch.
ON_SQLITE = ("step/1-11", "step/1-18", "child/3-12", "callback/4-9", "wait_for_condition/6-1", "parallel/8-14")


PARAMS = [pytest.param(test_id, ":memory:", id=test_id) for test_id in sorted(CASES, key=harness._natural_key)] + \
    [pytest.param(test_id, "sqlite", id=f"{test_id}-sqlite") for test_id in ON_SQLITE]


@pytest.mark.parametrize("test_id, db", PARAMS)
def test_requirement(js_sdk, test_id, db, tmp_path, monkeypatch):
    req = _requirement(test_id)
    data = req.load()
    data.pop("ExpectedLogs", None)
    rng, seed = harness.make_rng()
    bindings = harness.bind_variables(data.get("Variables"), rng)
    file, export = CASES[test_id].split(":")
    handler = js(os.path.join("conformance", file), export)
    monkeypatch.setenv("DURABLE_CONFORMANCE_STATE_DIR", str(tmp_path))
    engine = LocalEngine(db=db if db == ":memory:" else str(tmp_path / "durable.db"), skip_time=True)
    try:
        name = f"js-{req.suite}-{req.rid}-{uuid.uuid4().hex[:8]}".replace("_", "-")
        outcome = harness.run_requirement(data, handler, engine, name=name, bindings=bindings)
    finally:
        engine.close()
    outcome.notes.append(f"{harness.SEED_ENV}={seed}")
    harness.check_outcome(data, outcome, bindings)
