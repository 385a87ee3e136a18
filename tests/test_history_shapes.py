"""Every history event the engine records has the shape botocore's ``lambda`` model gives it.

One run produces every event type of the model's ``EventType`` enum; each event is then walked against
the model: no member the model lacks, every required member present, each value of its member's type
(timestamps as datetimes, as boto3 returns them), and every optional member the service sends present
too, except the few that exist only under a condition (``CONDITIONAL``), each of which must show up at
least once. A member added to the model fails this test until the engine sends it (or it is listed).
"""
from __future__ import annotations

import pytest

import durable_sync as ds
from durable_sync import wire
from durable_sync.local import LocalEngine
from helpers import boto_shape_problems, lambda_model

MODEL = lambda_model()

#: Optional members that only appear under a condition: (details shape, member) -> the condition.
CONDITIONAL = {
    ("InvocationCompletedDetails", "Error"): "the invocation failed",
    ("ChainedInvokeStartedDetails", "TenantId"): "the invoke names a tenant",
    ("ChainedInvokeStartedDetails", "DurableExecutionArn"): "the target is a durable function",
    ("CallbackStartedDetails", "Timeout"): "the callback has a timeout",
    ("CallbackStartedDetails", "HeartbeatTimeout"): "the callback has a heartbeat timeout",
    ("RetryDetails", "NextAttemptDelaySeconds"): "the step is retried",
    ("WaitCancelledDetails", "Error"): "the cancel gave an error",
    ("ExecutionPausedDetails", "Reason"): "the pause gave a reason",
    ("ExecutionResumedDetails", "Reason"): "the resume gave a reason",
}
#: Members inside ErrorObject / payload wrappers are the user's data: checked for type, not presence.
DATA_SHAPES = frozenset({"ErrorObject"})


def _missing_optional(event, problems):
    """Optional members the service sends that this event lacks (CONDITIONAL ones excepted)."""
    details_key = f"{event['EventType']}Details"

    def walk(value, shape, path):
        if shape.type_name != "structure" or shape.name in DATA_SHAPES or not isinstance(value, dict):
            return
        for key, member in shape.members.items():
            if key in value:
                walk(value[key], member, f"{path}.{key}")
            elif (shape.name, key) not in CONDITIONAL:
                problems.append(f"{path}.{key}: the model has it, the engine does not send it")

    if details_key in event:
        walk(event[details_key], MODEL.shape_for("Event").members[details_key], f"{event['EventType']}.{details_key}")


# -- one run that records every event type --------------------------------------------------------------------
@ds.durable_handler
def target(event, ctx):
    if event == "fail":
        raise ValueError("target failed")
    if event == "slow":
        ctx.wait(3600)
    return {"echo": event}


@ds.durable_handler
def forever(event, ctx):
    ctx.create_callback(name="never answered").result()


@ds.durable_handler
def times_out(event, ctx):
    ctx.wait(1)
    ctx.invoke("forever", "x", name="invoke-forever")


@ds.durable_handler
def everything(event, ctx):
    def flaky(step_ctx):
        if step_ctx.attempt < 2:
            raise RuntimeError("first attempt fails")
        return "ok"

    ctx.step(flaky, name="flaky", config=ds.StepConfig(retry_strategy=ds.RetryPolicy(
        max_attempts=3, initial_delay=1, backoff_rate=1.0, jitter="none")))
    try:
        ctx.step(lambda s: (_ for _ in ()).throw(KeyError("nope")), name="fails",
                 config=ds.StepConfig(retry_strategy=ds.RetryPresets.none()))
    except ds.StepError:
        pass
    with ctx.child("block") as child:
        child.step(lambda s: 1, name="inner")
    try:
        ctx.run_in_child_context(lambda c: (_ for _ in ()).throw(ValueError("child fails")), name="bad-child")
    except ds.ChildContextError:
        pass
    ctx.wait(5, name="pause")
    ok = ctx.create_callback(name="answered", config=ds.CallbackConfig(timeout=600, heartbeat_timeout=300))
    no = ctx.create_callback(name="refused")
    late = ctx.create_callback(name="late", config=ds.CallbackConfig(timeout=30))
    results = [ok.result()]
    for cb in (no, late):
        try:
            cb.result()
        except ds.CallbackError as exc:
            results.append(type(exc).__name__)
    results.append(ctx.invoke("target", "hi", name="invoke-ok", config=ds.InvokeConfig(tenant_id="tenant-1")))
    for payload in ("fail", "slow"):
        try:
            ctx.invoke("target", payload, name=f"invoke-{payload}")
        except ds.InvokeError as exc:
            results.append(str(exc)[:40])
    return results


def _run_everything(engine):
    engine.register_function("target", target)
    arn = engine.start(everything, {})
    for _ in range(3):  # the first invocations: retry, then up to the callbacks
        engine.advance(5)
    callbacks = {e["Name"]: e["CallbackStartedDetails"]["CallbackId"]
                 for e in engine.history(arn) if e["EventType"] == "CallbackStarted"}
    engine.send_callback_heartbeat(callbacks["answered"])
    engine.send_callback_success(callbacks["answered"], '"yes"')
    engine.send_callback_failure(callbacks["refused"], {"ErrorType": "No", "ErrorMessage": "refused"})
    engine.advance(30)  # "late" times out
    engine.pause(arn, "look", client_token="p")
    engine.resume_execution(arn, "go on")
    slow = [x["DurableExecutionArn"] for x in engine.list_executions(function_name="target")
            if x["Status"] == "RUNNING"]
    for child in slow:
        engine.stop(child, {"ErrorType": "Stopped", "ErrorMessage": "by the test"})
    return arn


@pytest.fixture(scope="module")
def histories():
    engine = LocalEngine(db=":memory:", skip_time=True)
    try:
        main = _run_everything(engine)
        out = {"main": engine.history(main)}
        # The remaining execution-level endings, and a wait cancelled by its handler.
        failing = engine.start(lambda event, lc: {"Status": "FAILED", "Error": {"ErrorType": "E"}}, {})
        out["failed"] = engine.history(failing)
        timing_out = engine.start(target, "slow", execution_timeout=60)
        engine.advance(60)
        out["timed_out"] = engine.history(timing_out)

        def cancels(event, lambda_context):
            token = event["CheckpointToken"]
            arn = event["DurableExecutionArn"]
            wait = {"Id": "w", "Type": "WAIT", "SubType": "Wait", "WaitOptions": {"WaitSeconds": 9}}
            token = engine.checkpoint(arn, token, [{**wait, "Action": "START"}])["CheckpointToken"]
            engine.checkpoint(arn, token, [{**wait, "Action": "CANCEL", "Error": {"ErrorType": "Cancelled"}}])
            raise SystemExit(3)  # an invocation that dies: InvocationCompleted with an Error

        out["cancelled"] = engine.history(engine.start(cancels, {}))
        stopped = [x for x in engine.list_executions(function_name="target") if x["Status"] == "STOPPED"]
        out["stopped"] = engine.history(stopped[0]["DurableExecutionArn"])
        # A target that times out: its execution (started first, with a short timeout) is the one the invoke
        # attaches to, as after a restart.
        engine.register_function("forever", forever)
        caller = engine.start(times_out, {})
        name = f"invoke-{caller.rsplit('/', 1)[-1]}-{wire.operation_id(None, 2)}"
        engine.start(forever, "x", name=name, execution_timeout=30, function_name="forever")
        engine.advance(1)
        engine.advance(30)
        out["invoke_timed_out"] = engine.history(caller)
        targets = {x["DurableExecutionArn"] for x in engine.list_executions(function_name="target")}
        yield out, targets
    finally:
        engine.close()


def test_every_event_type_of_the_model_is_recorded(histories):
    histories, _ = histories
    seen = {e["EventType"] for events in histories.values() for e in events}
    assert set(MODEL.shape_for("EventType").enum) - seen == set()


def test_every_event_matches_its_botocore_shape_and_sends_every_member(histories):
    histories, _ = histories
    problems, present = [], set()
    event_shape = MODEL.shape_for("Event")
    for label, events in histories.items():
        assert [e["EventId"] for e in events] == list(range(1, len(events) + 1)), label
        for event in events:
            problems += boto_shape_problems(event, event_shape, f"{label}#{event['EventId']}", present)
            assert f"{event['EventType']}Details" in event, event
            assert [k for k in event if k.endswith("Details")] == [f"{event['EventType']}Details"], event
            _missing_optional(event, problems)
    assert problems == []
    assert set(CONDITIONAL) - present == set(), "each conditional member must show up under its condition"


def test_a_chained_invoke_started_event_names_the_targets_execution(histories):
    histories, targets = histories
    events = histories["main"]
    started = {e["Name"]: e["ChainedInvokeStartedDetails"] for e in events if e["EventType"] == "ChainedInvokeStarted"}
    assert started["invoke-ok"]["ExecutedVersion"] == "$LATEST"
    assert started["invoke-ok"]["FunctionName"] == "target"
    arn = started["invoke-ok"]["DurableExecutionArn"]
    assert ":function:target:$LATEST/durable-execution/" in arn
    announced = {d["DurableExecutionArn"] for d in started.values()}
    assert announced <= targets and len(announced) == len(started)  # the executions that ran, one each
