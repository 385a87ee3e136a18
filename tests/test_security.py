"""Deserialization safety on every decoding path of the SDK (see SECURITY.md).

Two kinds of payload reach the SDK's decoders:

- payloads the function itself checkpointed (step, child context, map / parallel and branch
  results, wait_for_condition state, wait_for_callback's context result): decoded with the
  safe jsonpickle allow-list. A payload carrying callables, reducers, types, modules, repr or a
  class outside the allow-list is refused with ``SerDesError`` -- the execution fails, nothing
  runs;
- payloads from outside the function (the input event, callback results, chained-invoke
  results, the execution's own result as the engine reports it): plain JSON only, so the same
  attack arrives as the plain dict it is.

The attacks would run code if jsonpickle decoded them (a control test proves the canaries are
live): a module-level canary function that records its call, ``os.system("touch ...")`` of a
marker file, a class whose ``__setstate__`` calls the canary, a module that writes a marker
when imported. Every path is fed every attack, bare and nested inside dicts, lists, tuples,
sets, dict keys and an allowed dataclass. Plus a hypothesis property over arbitrary JSON trees
with ``py/*`` tags and random class paths injected.
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess  # noqa: F401  (a loaded class outside the allow-list, for the attacks)
import sys
import tempfile
import time
from pathlib import Path

import boto3
import jsonpickle
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import durable_sync as ds
from durable_sync import wire
from durable_sync.errors import SerDesError
from durable_sync.local import LocalEngine
from durable_sync.local.http import make_server
from durable_sync.serdes import SerDesContext, decode_plain_json, deserialize_value
from helpers import rewrite_operation

MOD = __name__
CANARY: list = []
MARKER_DIR = Path(tempfile.mkdtemp(prefix="ds-security-"))  # removed when the module's tests end
MARKER = MARKER_DIR / "pwned"
UNIMPORTED = "ds_security_unimported"  # a module on sys.path that writes a marker when imported
SLOW = os.environ.get("DURABLE_SLOW") == "1"
CTX = SerDesContext("op", "arn:aws:lambda:us-east-1:000000000000:function:f:$LATEST/durable-execution/n/x")


def canary(*args):
    """An attack that reaches this function has executed code."""
    CANARY.append(args)
    return "pwned"


class NotAllowed:
    """Not a dataclass, enum or named tuple, not registered: must never be rebuilt."""

    def __setstate__(self, state):
        canary("__setstate__", state)


@dataclasses.dataclass
class Box:
    """An allowed class: a container an attack can hide in."""

    value: object = None


@pytest.fixture(scope="module", autouse=True)
def _unimported_module():
    MARKER_DIR.mkdir(parents=True, exist_ok=True)
    (MARKER_DIR / f"{UNIMPORTED}.py").write_text(
        f"import pathlib\npathlib.Path({str(MARKER)!r}).write_text('imported')\n"
        "import dataclasses\n@dataclasses.dataclass\nclass Evil:\n    x: int = 0\n")
    sys.path.insert(0, str(MARKER_DIR))
    yield
    sys.path.remove(str(MARKER_DIR))
    sys.modules.pop(UNIMPORTED, None)
    shutil.rmtree(MARKER_DIR, ignore_errors=True)


@pytest.fixture(autouse=True)
def _nothing_ran():
    CANARY.clear()
    MARKER.unlink(missing_ok=True)
    yield
    assert CANARY == [], f"a payload executed code: {CANARY}"
    assert not MARKER.exists(), "a payload ran a command or imported a module"
    assert UNIMPORTED not in sys.modules, "a payload imported a module"


# -- the attacks -----------------------------------------------------------------------------------
def _base_attacks() -> dict[str, object]:
    touch = f"touch {MARKER}"
    return {
        "reduce-canary": {"py/reduce": [{"py/function": f"{MOD}.canary"}, {"py/tuple": ["reduce"]}]},
        "reduce-os-system": {"py/reduce": [{"py/function": "os.system"}, {"py/tuple": [touch]}]},
        "reduce-type-popen": {"py/reduce": [{"py/type": "subprocess.Popen"}, {"py/tuple": [["touch", str(MARKER)]]}]},
        "function": {"py/function": f"{MOD}.canary"},
        "repr": {"py/repr": f"os/os.system({touch!r})"},
        "type": {"py/type": "subprocess.Popen"},
        "mod": {"py/mod": "os"},
        "object-popen": {"py/object": "subprocess.Popen", "py/newargs": {"py/tuple": [["touch", str(MARKER)]]}},
        "object-not-allowed": {"py/object": f"{MOD}.NotAllowed", "py/state": {"x": 1}},
        "object-unimported-module": {"py/object": f"{UNIMPORTED}.Evil", "x": 1},
        "object-function": {"py/object": f"{MOD}.canary"},
        "newobj": {"py/object": f"{MOD}.Box", "py/newobj": [1]},
        "initargs": {"py/object": "datetime.date", "py/initargs": [2020, 1, 1]},
        "iterator": {"py/iterator": [1, 2]},
    }


def _wrapped(attack: object) -> dict[str, object]:
    return {
        "bare": attack,
        "in-dict": {"order": {"id": 7, "note": attack}},
        "in-list": [1, "two", [attack]],
        "in-tuple": {"py/tuple": [1, attack]},
        "in-set": {"py/set": [attack]},
        "in-dataclass": {"py/object": f"{MOD}.Box", "value": attack},
        "in-key": {"json://" + json.dumps(attack): 1},
    }


ATTACKS: dict[str, str] = {f"{name}/{where}": json.dumps(tree)
                           for name, attack in _base_attacks().items()
                           for where, tree in _wrapped(attack).items()}
SAMPLE = [ATTACKS[k] for k in ("reduce-canary/bare", "reduce-os-system/in-dict", "object-not-allowed/in-list",
                               "function/in-tuple", "repr/in-dataclass", "object-unimported-module/bare",
                               "type/in-key", "mod/in-set")]


def test_the_canaries_are_live_when_jsonpickle_decodes_unchecked():
    """The control: without durable_sync's checks these payloads run code, so refusing them matters."""
    jsonpickle.decode(ATTACKS["reduce-canary/bare"], keys=True)
    assert CANARY == [("reduce",)]
    jsonpickle.decode(ATTACKS["object-not-allowed/bare"], keys=True)
    assert CANARY[-1][0] == "__setstate__"
    CANARY.clear()
    jsonpickle.decode(ATTACKS["reduce-os-system/in-dict"], keys=True)
    assert MARKER.exists()
    MARKER.unlink()


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_every_attack_is_refused_by_the_sdk_decoder(name):
    with pytest.raises(SerDesError):
        deserialize_value(None, ATTACKS[name], CTX)
    assert decode_plain_json(ATTACKS[name], "outside payload") == json.loads(ATTACKS[name])


# -- SDK-internal payloads, replayed from state ---------------------------------------------------------
class RecordingClient:
    """A minimal service for replays: accepts checkpoints, issues callback ids."""

    def __init__(self):
        self.updates = []
        self.n = 0

    def checkpoint(self, arn, token, updates, client_token):
        self.updates.extend(updates)
        self.n += 1
        ops = [{"Id": u["Id"], "Type": "CALLBACK", "SubType": u.get("SubType"), "Name": u.get("Name"),
                "ParentId": u.get("ParentId"), "Status": "STARTED", "CallbackDetails": {"CallbackId": f"cb-{self.n}"}}
               for u in updates if u["Type"] == "CALLBACK" and u["Action"] == "START"]
        return {"CheckpointToken": f"t{self.n}", "NewExecutionState": {"Operations": ops}}

    def get_state(self, arn, token, marker):
        return {"Operations": []}


class LambdaContext:
    def __init__(self, client):
        self.durable_client = client


@ds.durable_handler
def step_path(event, ctx):
    value = ctx.step("fetch", lambda s: {"plain": 1})
    ctx.wait(10, name="pause")
    return value


@ds.durable_handler
def child_path(event, ctx):
    value = ctx.run_in_child_context(lambda c: c.step("inner", lambda s: [1, 2]), name="kid")
    ctx.wait(10, name="pause")
    return value


@ds.durable_handler
def map_path(event, ctx):
    result = ctx.map([1, 2, 3], lambda c, item, i, items: c.step(f"double-{i}", lambda s: item * 2), name="m")
    ctx.wait(10, name="pause")
    return result.get_results()


@ds.durable_handler
def parallel_path(event, ctx):
    result = ctx.parallel([lambda c: c.step("a", lambda s: "a"), lambda c: c.step("b", lambda s: "b")], name="p")
    ctx.wait(10, name="pause")
    return result.get_results()


def _poll(state, attempt):
    if state >= 2:
        return ds.WaitForConditionDecision.stop_polling()
    return ds.WaitForConditionDecision.continue_waiting(5)


@ds.durable_handler
def condition_path(event, ctx):
    value = ctx.wait_for_condition(lambda state, c: state + 1, ds.WaitForConditionConfig(
        wait_strategy=_poll, initial_state=0), name="poll")
    ctx.wait(10, name="pause")
    return value


@ds.durable_handler
def wait_for_callback_path(event, ctx):
    value = ctx.wait_for_callback(lambda callback_id, s: None, name="approval")
    ctx.wait(10, name="pause")
    return value


def _recorded(handler, answer_callback: bool = False, advance: int = 0) -> tuple[str, list[dict]]:
    """Run ``handler`` on the engine until it waits; its operations (all of them, hidden children too)."""
    engine = LocalEngine(db=":memory:", skip_time=True)
    try:
        arn = engine.start(handler, {})
        if answer_callback:
            [cb] = [op for op in engine.operations(arn) if op["Type"] == "CALLBACK"]
            engine.send_callback_success(cb["CallbackDetails"]["CallbackId"], '{"ok": true}')
        if advance:
            engine.advance(advance)
        assert engine.get_execution(arn).status == "RUNNING"
        return arn, engine.operations(arn)
    finally:
        engine.close()


def _by(ops: list[dict], **match) -> dict:
    [op] = [op for op in ops if all(op.get(k) == v for k, v in match.items())]
    return op


def _tamper_step(ops, text):
    _by(ops, Type="STEP", Name="fetch")["StepDetails"]["Result"] = text
    return ops


def _tamper_child(ops, text):
    _by(ops, Type="CONTEXT", Name="kid")["ContextDetails"]["Result"] = text
    return ops


def _tamper_batch(name):
    def tamper(ops, text):
        _by(ops, Type="CONTEXT", Name=name)["ContextDetails"]["Result"] = text
        return ops
    return tamper


def _tamper_branch(ops, text):
    """The map had not completed: its branches replay from their own results."""
    batch = _by(ops, Type="CONTEXT", Name="m")
    batch["Status"] = "STARTED"
    batch.pop("ContextDetails", None)
    batch.pop("EndTimestamp", None)
    branch = [op for op in ops if op.get("ParentId") == batch["Id"] and op.get("SubType") == "MapIteration"][1]
    branch["ContextDetails"]["Result"] = text
    return [op for op in ops if op["Type"] != "WAIT"]


def _tamper_condition_ready(ops, text):
    op = _by(ops, Type="STEP", Name="poll")
    op["Status"] = "READY"  # the poll is due: the SDK decodes the state the last poll returned
    op["StepDetails"]["Result"] = text
    return ops


def _tamper_condition_done(ops, text):
    op = _by(ops, Type="STEP", Name="poll")
    op["StepDetails"]["Result"] = text
    return ops


def _tamper_wait_for_callback(ops, text):
    _by(ops, Type="CONTEXT", Name="approval")["ContextDetails"]["Result"] = text
    return ops


INTERNAL_PATHS = {
    "step-result": (step_path, {}, _tamper_step),
    "child-context-result": (child_path, {}, _tamper_child),
    "map-result": (map_path, {}, _tamper_batch("m")),
    "map-branch-result": (map_path, {}, _tamper_branch),
    "parallel-result": (parallel_path, {}, _tamper_batch("p")),
    "condition-state": (condition_path, {}, _tamper_condition_ready),
    "condition-final-state": (condition_path, {"advance": 5}, _tamper_condition_done),
    "wait-for-callback-result": (wait_for_callback_path, {"answer_callback": True}, _tamper_wait_for_callback),
}


def _replay(handler, arn: str, ops: list[dict]) -> dict:
    envelope = {"DurableExecutionArn": arn, "CheckpointToken": "t0", "InitialExecutionState": {"Operations": ops}}
    return handler(envelope, LambdaContext(RecordingClient()))


@pytest.mark.parametrize("path", sorted(INTERNAL_PATHS))
def test_sdk_internal_payloads_with_attacks_are_refused_on_replay(path):
    handler, how, tamper = INTERNAL_PATHS[path]
    arn, ops = _recorded(handler, **how)
    clean = _replay(handler, arn, json.loads(json.dumps(ops, default=str)))
    assert clean["Status"] == "PENDING", clean  # the untampered record replays fine
    for name, text in ATTACKS.items():
        tampered = tamper(json.loads(json.dumps(ops, default=str)), text)
        output = _replay(handler, arn, tampered)
        assert output["Status"] == "FAILED", (path, name, output)
        assert output["Error"]["ErrorType"] == "SerDesError", (path, name, output["Error"])
        assert "refuse" in output["Error"]["ErrorMessage"], (path, name, output["Error"])


def test_a_tampered_database_fails_the_execution_without_running_anything(tmp_path):
    """Someone wrote an attack into a step's record in the SQLite file; the engine resumes it."""
    db = str(tmp_path / "d.db")
    engine = LocalEngine(db=db, skip_time=True, functions={"step_path": step_path})
    arn = engine.start(step_path, {}, name="t")
    engine.close()
    rewrite_operation(db, "fetch", lambda op: op["StepDetails"].update(Result=ATTACKS["reduce-os-system/in-dataclass"]))
    engine = LocalEngine(db=db, skip_time=True, functions={"step_path": step_path})
    try:
        result = engine.wait(arn)
        assert result.status == "FAILED"
        assert result.error["ErrorType"] == "SerDesError"
    finally:
        engine.close()


# -- payloads from outside: plain data, on the first run and on replay --------------------------------
@ds.durable_handler
def echo_input(event, ctx):
    ctx.wait(1, name="pause")  # the input is decoded again on replay
    return {"type": type(event).__name__, "event": event}


@ds.durable_handler
def echo_callback(event, ctx):
    value = ctx.create_callback(name="cb").result()
    ctx.wait(1, name="pause")
    return {"type": type(value).__name__, "value": value}


@ds.durable_handler
def echo_wait_for_callback(event, ctx):
    value = ctx.wait_for_callback(lambda callback_id, s: None, name="approval")
    ctx.wait(1, name="pause")  # the context's checkpointed result is decoded on replay
    return {"type": type(value).__name__, "value": value}


@ds.durable_handler
def echo_step_of_outside_data(event, ctx):
    value = ctx.step("keep", lambda s: event)  # outside data checkpointed by the function
    ctx.wait(1, name="pause")
    return {"type": type(value).__name__, "value": value}


@ds.durable_handler
def echo_invoke(event, ctx):
    value = ctx.invoke(event["target"], {"text": event["text"]})
    ctx.wait(1, name="pause")
    return {"type": type(value).__name__, "value": value}


def plain_target(event, lambda_context=None):
    return json.loads(event["text"])


@ds.durable_handler
def durable_target(event, ctx):
    return json.loads(event["text"])


def _callback_id(engine, arn, name):
    for op in engine.operations(arn):
        if op["Type"] == "CALLBACK" and (op.get("Name") or "").startswith(name) and op["Status"] == "STARTED":
            return op["CallbackDetails"]["CallbackId"]
    raise AssertionError(f"no open callback {name}")


def test_outside_payloads_arrive_as_plain_data_on_every_path():
    engine = LocalEngine(db=":memory:", skip_time=True,
                         functions={"plain-target": plain_target, "durable-target": durable_target})
    try:
        for name, text in ATTACKS.items():
            data = json.loads(text)
            # the input event
            result = engine.run(echo_input, data)
            assert result.result == {"type": type(data).__name__, "event": data}, name
            # a callback result, and wait_for_callback's checkpointed context result
            for handler, cb_name in ((echo_callback, "cb"), (echo_wait_for_callback, "approval")):
                arn = engine.start(handler, {})
                engine.send_callback_success(_callback_id(engine, arn, cb_name), text)
                result = engine.wait(arn)
                assert result.status == "SUCCEEDED", (name, result.error)
                assert result.result == {"type": type(data).__name__, "value": data}, name
            # outside data a step returned, replayed from its checkpoint
            result = engine.run(echo_step_of_outside_data, data)
            assert result.result == {"type": type(data).__name__, "value": data}, name
            # chained-invoke results from a plain and a durable target
            for target in ("plain-target", "durable-target"):
                result = engine.run(echo_invoke, {"target": target, "text": text})
                assert result.status == "SUCCEEDED", (name, target, result.error)
                assert result.result == {"type": type(data).__name__, "value": data}, (name, target)
    finally:
        engine.close()


def test_outside_payloads_from_state_are_never_unpickled():
    """A recorded CHAINED_INVOKE / CALLBACK result or InputPayload holding an attack replays as plain data."""

    @ds.durable_handler
    def both(event, ctx):
        invoked = ctx.invoke("plain-target", {"text": "{}"}, name="inv")
        answered = ctx.create_callback(name="cb").result()
        return {"event": event, "invoked": invoked, "answered": answered}

    arn = "arn:aws:lambda:us-east-1:000000000000:function:both:$LATEST/durable-execution/n/exec"
    for name, text in ATTACKS.items():
        ops = [{"Id": "exec", "Type": "EXECUTION", "Status": "STARTED", "ExecutionDetails": {"InputPayload": text}},
               {"Id": wire.operation_id(None, 1), "Type": "CHAINED_INVOKE", "SubType": "ChainedInvoke", "Name": "inv",
                "Status": "SUCCEEDED", "ChainedInvokeDetails": {"Result": text}},
               {"Id": wire.operation_id(None, 2), "Type": "CALLBACK", "SubType": "Callback", "Name": "cb",
                "Status": "SUCCEEDED", "CallbackDetails": {"CallbackId": "x", "Result": text}}]
        output = _replay(both, arn, ops)
        assert output["Status"] == "SUCCEEDED", (name, output)
        data = json.loads(text)
        assert json.loads(output["Result"]) == {"event": data, "invoked": data, "answered": data}, name


def test_outside_payloads_through_the_http_facade():
    engine = LocalEngine(db=":memory:", skip_time=True)
    server = make_server(engine, "127.0.0.1", 0, functions={"echo_input": echo_input,
                                                            "echo_callback": echo_callback},
                         invoke_timeout=20).start()
    lam = boto3.client("lambda", endpoint_url=server.url, region_name="us-east-1", aws_access_key_id="x",
                       aws_secret_access_key="x")
    try:
        for text in SAMPLE:
            data = json.loads(text)
            response = lam.invoke(FunctionName="echo_input", Payload=text.encode())
            assert json.loads(response["Payload"].read()) == {"type": type(data).__name__, "event": data}
            arn = lam.invoke(FunctionName="echo_callback", InvocationType="Event", Payload=b"{}")["DurableExecutionArn"]
            callback_id = _callback_id(engine, arn, "cb")
            lam.send_durable_execution_callback_success(CallbackId=callback_id, Result=text.encode())
            for _ in range(200):
                execution = lam.get_durable_execution(DurableExecutionArn=arn)
                if execution["Status"] != "RUNNING":
                    break
                time.sleep(0.02)
            assert execution["Status"] == "SUCCEEDED", execution
            assert json.loads(execution["Result"]) == {"type": type(data).__name__, "value": data}
    finally:
        server.close()
        engine.close()


# -- a property: arbitrary JSON trees with injected tags ---------------------------------------------------
TAGS = ["py/object", "py/reduce", "py/function", "py/type", "py/mod", "py/repr", "py/tuple", "py/set", "py/b64",
        "py/id", "py/ref", "py/newargs", "py/newargsex", "py/newobj", "py/initargs", "py/state", "py/seq",
        "py/iterator", "py/bytes", "py/durable_sync.plain", "json://1", "json://{\"py/function\": \"os.system\"}"]
CLASS_PATHS = ["os.system", "posix.system", "subprocess.Popen", "builtins.eval", "builtins.exec", "builtins.object",
               "builtins.getattr", f"{MOD}.canary", f"{MOD}.NotAllowed", f"{MOD}.Box", f"{UNIMPORTED}.Evil",
               UNIMPORTED, "datetime.datetime", "decimal.Decimal", "uuid.UUID", "os/os.system", "os", "a.b.C",
               "__main__.x", "", "."]
_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False),
                     st.text(max_size=8), st.sampled_from(CLASS_PATHS))
_keys = st.one_of(st.sampled_from(TAGS), st.text(max_size=6))
TREES = st.recursive(_scalars, lambda kids: st.one_of(
    st.lists(kids, max_size=4),
    st.dictionaries(_keys, kids, max_size=4),
    st.fixed_dictionaries({"py/object": st.sampled_from(CLASS_PATHS)}, optional={"py/state": kids, "value": kids}),
    st.fixed_dictionaries({"py/reduce": st.lists(kids, max_size=3)}),
    st.builds(lambda tag, value: {tag: value}, st.sampled_from(TAGS), kids),
), max_leaves=20)

_SAFE_TYPES = (dict, list, tuple, set, frozenset, str, int, float, bool, type(None), bytes, Box)


def _only_safe(value, depth=0) -> bool:
    import datetime
    import decimal
    import enum
    import uuid

    if depth > 50:
        return True
    if isinstance(value, (datetime.date, datetime.time, datetime.timedelta, datetime.tzinfo, decimal.Decimal,
                          uuid.UUID, enum.Enum)):
        return True
    if not isinstance(value, _SAFE_TYPES):
        return False
    if isinstance(value, dict):
        return all(_only_safe(k, depth + 1) and _only_safe(v, depth + 1) for k, v in value.items())
    if isinstance(value, (list, tuple, set, frozenset)):
        return all(_only_safe(v, depth + 1) for v in value)
    if isinstance(value, Box):
        return _only_safe(value.value, depth + 1)
    return True


@settings(max_examples=2000 if SLOW else 300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow,
                                                                             HealthCheck.function_scoped_fixture])
@given(tree=TREES)
def test_arbitrary_tagged_trees_never_run_code(tree):
    text = json.dumps(tree)
    modules = set(sys.modules)
    try:
        value = deserialize_value(None, text, CTX)
    except SerDesError:
        pass
    else:
        assert _only_safe(value), (text, value)
    assert decode_plain_json(text, "outside payload") == json.loads(text)
    assert CANARY == [], text
    assert not MARKER.exists(), text
    new = {m for m in set(sys.modules) - modules if not m.startswith(("encodings.", "zoneinfo"))}
    assert not new, (text, new)
