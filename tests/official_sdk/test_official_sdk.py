"""Handlers written with the official AWS Python SDK run on the engine as on the service.

Each handler of ``handlers.py`` (steps of both semantics with retries, waits, child contexts, map,
parallel, callbacks answered with SendDurableExecutionCallbackSuccess, wait_for_condition, chained
invoke, a result over the invocation output limit) runs:

- on the official SDK's own local runner (``DurableFunctionTestRunner``), the reference for results;
- on the engine in process (the SDK gets, through its invocation input, a boto3-like client the
  engine answers), in a child process (the same over the isolation pipe), behind ``start_server``
  (a real boto3 client for the server), and under ``durable-sync serve --skip-time`` driven through
  boto3, as a user would.

Results must be equal everywhere; the engine's histories must have botocore's shapes, and conformance
requirements written with the official SDK must match (``conformance_handlers.py``). All in virtual
time: a 2-hour wait takes none.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import boto3
import pytest
from botocore.config import Config

from durable_sync.local import LocalEngine

from helpers import boto_shape_problems, durable_sync_serve

sdk = pytest.importorskip("aws_durable_execution_sdk_python")
testing = pytest.importorskip("aws_durable_execution_sdk_python_testing")

from aws_durable_execution_sdk_python.lambda_service import LambdaClient  # noqa: E402
from aws_durable_execution_sdk_python_testing import DurableFunctionTestRunner  # noqa: E402

from . import handlers as H  # noqa: E402
from .conformance_handlers import HANDLERS as CONFORMANCE  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
HANDLERS_FILE = Path(H.__file__).resolve()
EXAMPLE = REPO / "examples" / "official_sdk_approval.py"
DEADLINE = 90  # real seconds any wait for the serve process may take before the test fails
CASES = {"steps": {"a": 1}, "waits_and_children": {}, "map_and_parallel": {"items": [1, 2, 3]},
         "condition": {}, "invoker": {"n": 4}, "large": {}}
ANSWERS = ['"approved"', '{"by": "ops"}']  # the callbacks handler's two answers, in order


def _value(name, text):
    value = json.loads(text)
    return len(value) if name == "large" else value  # 6 MiB strings compare by length in failure messages


# -- the reference: the official SDK's local runner --------------------------------------------------------
@pytest.fixture(scope="module")
def reference():
    """name -> the result the official SDK's own runner gives."""
    out = {}
    for name, payload in CASES.items():
        with DurableFunctionTestRunner(H.FUNCTIONS[name], poll_interval=0.01) as runner:
            runner.register_durable_function("invoked", H.invoked)
            result = runner.run(input=json.dumps(payload), execution_timeout=3600 * 24)
            assert result.status.value == "SUCCEEDED", (name, result.error)
            out[name] = _value(name, result.result)
    with DurableFunctionTestRunner(H.callbacks, poll_interval=0.01) as runner:
        arn = runner.run_async(input="{}", execution_timeout=3600)
        for answer, name in zip(ANSWERS, ("approval", "confirmation create callback id")):
            runner.send_callback_success(runner.wait_for_callback(arn, name=name, timeout=DEADLINE),
                                         answer.encode())
        result = runner.wait_for_result(arn, timeout=DEADLINE)
        assert result.status.value == "SUCCEEDED", result.error
        out["callbacks"] = json.loads(result.result)
    return out


def _check_history(events):
    assert [e["EventId"] for e in events] == list(range(1, len(events) + 1))
    problems = [p for i, e in enumerate(events) for p in boto_shape_problems(e, path=f"event {i + 1}")]
    assert problems == []
    types = [e["EventType"] for e in events]
    assert types[0] == "ExecutionStarted" and "ExecutionSucceeded" in types
    # The end is last, but for the InvocationCompleted of an invocation that ended it at a checkpoint.
    assert set(types[types.index("ExecutionSucceeded") + 1:]) <= {"InvocationCompleted"}


def _answer_callbacks(engine, arn):
    """Answer the callbacks handler's callbacks as they open, in order (SendDurableExecutionCallbackSuccess)."""
    for answer in ANSWERS:
        open_ids = [e["CallbackStartedDetails"]["CallbackId"] for e in engine.history(arn)
                    if e["EventType"] == "CallbackStarted"]
        engine.send_callback_success(open_ids[-1], answer)


# -- in process -------------------------------------------------------------------------------------------------
def test_official_sdk_handlers_run_in_process_with_the_official_runners_results(reference):
    engine = LocalEngine(db=":memory:", skip_time=True, functions=dict(H.FUNCTIONS))
    try:
        for name, payload in CASES.items():
            result = engine.run(H.FUNCTIONS[name], payload)
            assert result.status == "SUCCEEDED", (name, result.error)
            assert _value(name, result.raw_result) == reference[name], name
            _check_history(engine.history(result.arn))
        arn = engine.start(H.callbacks, {})
        _answer_callbacks(engine, arn)
        result = engine.get_execution(arn)
        assert (result.status, result.result) == ("SUCCEEDED", reference["callbacks"])
        _check_history(engine.history(arn))
    finally:
        engine.close()
    # The handlers never used the SDK's process-wide boto3 client: each invocation got its engine's.
    assert LambdaClient._cached_boto_client is None


def test_a_served_engine_hands_official_sdk_handlers_a_boto3_client_for_its_url(reference):
    """Behind start_server (what serve runs), checkpoints go over HTTP through boto3, as on Lambda."""
    from durable_sync.local.http import start_server

    engine = LocalEngine(db=":memory:", skip_time=True)
    running = start_server(engine)
    try:
        result = engine.run(H.steps, CASES["steps"])
        assert result.result == reference["steps"]
        assert running.server.requests["CheckpointDurableExecution"] > 0
        seen = []  # any handler finds the served endpoint on its lambda context

        def raw(event, lambda_context):
            seen.append(lambda_context.endpoint_url)
            return {"Status": "SUCCEEDED", "Result": "1"}

        engine.run(raw, {})
        running.stop()
        engine.run(raw, {})
        assert seen == [running.url, None]
    finally:
        running.stop()
        engine.close()


def test_the_official_sdks_behaviour_on_the_engine(reference):
    """What the official SDK relies on: an at-most-once START comes back in the checkpoint answer (no
    second START), retries take their back-off in virtual time, a large result ends the execution at its
    EXECUTION checkpoint, and a chained invoke runs its target as an execution of its own."""
    engine = LocalEngine(db=":memory:", skip_time=True, functions=dict(H.FUNCTIONS))
    try:
        steps = engine.run(H.steps, CASES["steps"])
        history = engine.history(steps.arn)
        starts = [e["Name"] for e in history if e["EventType"] == "StepStarted"]
        assert starts.count("at-most-once") == 1 and starts.count("flaky") == 3
        retries = [e["StepFailedDetails"]["RetryDetails"] for e in history
                   if e["EventType"] == "StepFailed" and e["Name"] == "flaky"]
        assert retries == [{"CurrentAttempt": 1, "NextAttemptDelaySeconds": 2},
                           {"CurrentAttempt": 2, "NextAttemptDelaySeconds": 2}]

        large = engine.run(H.large, {})
        assert len(json.loads(large.raw_result)) == H.LARGE_RESULT_CHARS
        types = [e["EventType"] for e in engine.history(large.arn)]
        assert types[-2:] == ["ExecutionSucceeded", "InvocationCompleted"]  # ended at its checkpoint

        invoker = engine.run(H.invoker, {"n": 4})
        [started] = [e for e in engine.history(invoker.arn) if e["EventType"] == "ChainedInvokeStarted"]
        target = started["ChainedInvokeStartedDetails"]["DurableExecutionArn"]
        assert engine.get_execution(target).result == {"doubled": 8}
        assert engine.get_execution(invoker.arn).result == reference["invoker"]
    finally:
        engine.close()


def test_chained_invokes_cross_between_the_two_sdks():
    """A durable_sync handler invokes an official-SDK function and the other way round: each target runs
    as a durable execution of its own."""
    import durable_sync as ds

    @ds.durable_handler
    def ours(event, ctx):
        return ctx.invoke("official", {"n": event["n"]}, name="to-official")

    @ds.durable_handler
    def doubler(event, ctx):
        return {"doubled": ctx.step(lambda s: event["n"] * 2, name="double")}

    engine = LocalEngine(db=":memory:", skip_time=True, functions={"official": H.invoked, "invoked": doubler})
    try:
        assert engine.run(ours, {"n": 5}).result == {"doubled": 10}
        result = engine.run(H.invoker, {"n": 2})  # the official invoker calls "invoked": durable_sync's here
        assert result.result == {"first": {"doubled": 4}, "after": 5}
        statuses = {x["FunctionName"]: x["Status"] for x in engine.list_executions()}
        assert statuses == {"ours": "SUCCEEDED", "official": "SUCCEEDED", "invoker": "SUCCEEDED",
                            "invoked": "SUCCEEDED"}
    finally:
        engine.close()


def test_two_engines_in_one_process_each_serve_their_own_executions():
    """The official SDK caches one boto3 client per process; each engine still gets its own checkpoints
    (each invocation gets its engine's client)."""
    first = LocalEngine(db=":memory:", skip_time=True)
    second = LocalEngine(db=":memory:", skip_time=True)
    try:
        a = first.start(H.waits_and_children, {})
        b = second.start(H.waits_and_children, {})
        for engine, arn in ((first, a), (second, b)):
            assert engine.get_execution(arn).status == "RUNNING"  # at its 2-hour wait
            assert [x["DurableExecutionArn"] for x in engine.list_executions()] == [arn]
        second.advance(3 * 3600)
        assert second.get_execution(b).result == {"inner": 103}
        assert first.get_execution(a).status == "RUNNING"  # the other engine's clock did not move it
        assert first.wait(a).result == {"inner": 103}
    finally:
        first.close()
        second.close()


def test_an_official_sdk_handler_in_a_child_process_reaches_the_engine_over_the_isolation_pipe(reference):
    engine = LocalEngine(db=":memory:", skip_time=True, isolation="process")
    try:
        result = engine.run(H.steps, CASES["steps"])
        assert result.status == "SUCCEEDED", result.error
        assert result.result == reference["steps"]
    finally:
        engine.close()


@pytest.mark.parametrize("key", sorted(CONFORMANCE), ids=lambda k: f"{k[0]}/{k[1]}")
def test_official_sdk_handlers_meet_the_conformance_requirements(key):
    from conformance import harness

    path = harness.conformance_dir() / key[0] / f"{key[1]}.yaml"
    if not path.is_file():
        pytest.skip(f"conformance requirements not found at {harness.conformance_dir()}")
    data = harness.load_requirement(path)
    bindings = harness.bind_variables(data.get("Variables"), harness.make_rng()[0])
    engine = LocalEngine(db=":memory:", skip_time=True)
    try:
        outcome = harness.run_requirement(data, CONFORMANCE[key], engine, name=f"official-{key[0]}-{key[1]}"
                                          .replace("_", "-"), bindings=bindings)
    finally:
        engine.close()
    harness.check_outcome(data, outcome, bindings)


# -- durable-sync serve, through boto3 -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """``durable-sync serve --skip-time`` with every handler of handlers.py, and a boto3 client for it."""
    cwd = tmp_path_factory.mktemp("serve")
    functions = [arg for name in H.FUNCTIONS for arg in ("-f", f"{name}={HANDLERS_FILE}:{name}")]
    functions += ["-f", f"approval={EXAMPLE}:handler"]
    with durable_sync_serve("--skip-time", "--db", cwd / "serve.db", *functions, cwd=cwd, timeout=DEADLINE) as (url, _):
        yield boto3.client("lambda", endpoint_url=url, region_name="us-east-1", aws_access_key_id="x",
                           aws_secret_access_key="x", config=Config(retries={"max_attempts": 0}, read_timeout=DEADLINE))


def _poll(what, fetch):
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        value = fetch()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"{what} did not happen within {DEADLINE} s")


def _history(client, arn):
    events, marker = [], None
    while True:
        page = client.get_durable_execution_history(DurableExecutionArn=arn, **({"Marker": marker} if marker else {}))
        events += page["Events"]
        marker = page.get("NextMarker")
        if not marker:
            return events


def test_official_sdk_handlers_under_serve_through_boto3(served, reference):
    for name, payload in CASES.items():
        response = served.invoke(FunctionName=name, Payload=json.dumps(payload))
        body = response["Payload"].read()
        assert "FunctionError" not in response, (name, body[:500])
        assert _value(name, body) == reference[name], name
        _check_history(_history(served, response["DurableExecutionArn"]))


def test_callbacks_answered_over_http_under_serve_skip_time(served, reference):
    """--skip-time skips waits, never a callback's timeout: the 10-minute timeout of the approval keeps real
    time, so the client answering it over HTTP always finds it open."""
    arn = served.invoke(FunctionName="callbacks", InvocationType="Event", Payload=b"{}")["DurableExecutionArn"]
    for count, answer in enumerate(ANSWERS, 1):
        started = _poll(f"callback {count}", lambda: [e for e in _history(served, arn)
                                                      if e["EventType"] == "CallbackStarted"][count - 1:])
        served.send_durable_execution_callback_success(CallbackId=started[0]["CallbackStartedDetails"]["CallbackId"],
                                                       Result=answer.encode())
    done = _poll("the execution's end", lambda: (lambda x: x if x["Status"] != "RUNNING" else None)(
        served.get_durable_execution(DurableExecutionArn=arn)))
    assert done["Status"] == "SUCCEEDED", done.get("Error")
    assert json.loads(done["Result"]) == reference["callbacks"]
    _check_history(_history(served, arn))


# -- the worked example of docs/official-sdk.md ------------------------------------------------------------------
def _load_example():
    from durable_sync.local.handlers import load

    return load(f"{EXAMPLE}:handler")


def test_the_worked_example_in_process():
    handler = _load_example()
    engine = LocalEngine(db=":memory:", skip_time=True)
    try:
        small = engine.run(handler, {"order_id": "o-1", "amount": 40})
        assert small.result == {"order_id": "o-1", "status": "paid", "approved_by": "auto", "charged": 40,
                                "attempts": 2}
        arn = engine.start(handler, {"order_id": "o-2", "amount": 250})
        [callback_id] = [e["CallbackStartedDetails"]["CallbackId"] for e in engine.history(arn)
                         if e["EventType"] == "CallbackStarted"]
        engine.send_callback_success(callback_id, json.dumps({"approved": True, "by": "ops"}))
        assert engine.wait(arn).result == {"order_id": "o-2", "status": "paid", "approved_by": "ops",  # cool-down
                                           "charged": 250, "attempts": 2}
        expired = engine.run(handler, {"order_id": "o-3", "amount": 250})  # nobody answers in 24 h
        assert expired.result == {"order_id": "o-3", "status": "expired"}
    finally:
        engine.close()


def test_the_worked_example_under_serve_answered_through_boto3(served):
    arn = served.invoke(FunctionName="approval", InvocationType="Event", DurableExecutionName="o-4",
                        Payload=json.dumps({"order_id": "o-4", "amount": 250}))["DurableExecutionArn"]
    started = _poll("the approval callback", lambda: [e for e in _history(served, arn)
                                                      if e["EventType"] == "CallbackStarted"])
    served.send_durable_execution_callback_success(CallbackId=started[0]["CallbackStartedDetails"]["CallbackId"],
                                                   Result=json.dumps({"approved": True, "by": "ops"}).encode())
    done = _poll("the execution's end", lambda: (lambda x: x if x["Status"] != "RUNNING" else None)(
        served.get_durable_execution(DurableExecutionArn=arn)))
    assert json.loads(done["Result"]) == {"order_id": "o-4", "status": "paid", "approved_by": "ops", "charged": 250,
                                          "attempts": 2}
