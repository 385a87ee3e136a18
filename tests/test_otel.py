"""durable_sync.otel with the OpenTelemetry SDK's in-memory exporter, over a multi-invocation execution
on the local engine: steps with retries, a wait, a child context, a map with a failed item, a callback."""
from __future__ import annotations

import logging
import shutil

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

import durable_sync as ds
from durable_sync import otel
from durable_sync.local import LocalEngine

RETRY_TWICE = ds.StepConfig(retry_strategy=ds.RetryPolicy(max_attempts=3, initial_delay=1, backoff_rate=1.0,
                                                          jitter="none"))


class Tracing:
    """A tracer provider writing to memory, and the records of durable_sync's user logger."""

    def __init__(self):
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider()
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.records: list[logging.LogRecord] = []

    def spans(self):
        return list(self.exporter.get_finished_spans())


@pytest.fixture
def tracing():
    t = Tracing()
    logger = logging.getLogger("durable_sync.user")

    class Keep(logging.Handler):
        def emit(self, record):
            t.records.append(record)

    handler = Keep(logging.INFO)
    level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    yield t
    logger.removeHandler(handler)
    logger.setLevel(level)
    t.provider.shutdown()


def make_workflow(provider):
    def flaky(step_ctx):
        step_ctx.logger.info("flaky attempt %s", step_ctx.attempt)
        if step_ctx.attempt < 3:
            raise ConnectionError(f"attempt {step_ctx.attempt} lost the connection")
        return "ok"

    def item(ctx, value, index, items):
        if value == 2:
            raise ValueError("item 2 is bad")
        return ctx.step(lambda s: value * 10, name=f"times-ten-{value}")

    @ds.durable_handler(plugins=[otel.OtelPlugin(provider)])
    def workflow(event, ctx):
        ctx.logger.info("workflow starts")
        flaky_result = ctx.step(flaky, name="flaky", config=RETRY_TWICE)
        ctx.wait(2, name="pause")
        with ctx.child("group") as group:
            group.step(lambda s: s.logger.info("inside the child") or 1, name="inner")
        mapped = ctx.map([1, 2, 3], item, name="items",
                         config=ds.MapConfig(completion_config=ds.CompletionConfig.all_completed()))
        callback = ctx.create_callback(name="approval")
        answer = callback.result()
        return {"flaky": flaky_result, "mapped": mapped.get_results(), "answer": answer}

    return workflow


def _callback_id(engine, arn):
    [cb] = [op for op in engine.operations(arn) if op["Type"] == "CALLBACK"]
    return cb["CallbackDetails"]["CallbackId"]


def _run_to_callback(engine, handler):
    result = engine.run(handler, {"order": 1}, name="traced")
    assert result.status == "RUNNING"  # waits for the approval
    return result.arn


def _tree(spans):
    return {s.context.span_id: s for s in spans}


def test_one_trace_whose_tree_mirrors_the_operations(tracing):
    handler = make_workflow(tracing.provider)
    engine = LocalEngine(db=":memory:", skip_time=True)
    try:
        arn = _run_to_callback(engine, handler)
        engine.send_callback_success(_callback_id(engine, arn), '"approved"')
        result = engine.get_execution(arn)
        operations = engine.operations(arn)
        invocations = [e for e in engine.history(arn) if e["EventType"] == "InvocationCompleted"]
    finally:
        engine.close()
    assert result.status == "SUCCEEDED" and result.result == {"flaky": "ok", "mapped": [10, 30], "answer": "approved"}
    spans = tracing.spans()
    trace_id = otel.trace_id_of(arn)
    assert {s.context.trace_id for s in spans} == {trace_id}
    assert len({s.context.span_id for s in spans}) == len(spans)  # nothing written twice
    by_id = _tree(spans)

    [execution] = [s for s in spans if s.parent is None]
    assert execution.context.span_id == otel.execution_span_id(arn) and execution.name == "durable execution"
    invocation_spans = [s for s in spans if s.name == "invocation"]
    assert len(invocations) == len(invocation_spans) >= 4  # retry, retry, wait, callback
    assert all(s.parent.span_id == execution.context.span_id for s in invocation_spans)

    # one span per operation, parented like the operations
    op_spans = {s.attributes["durable.operation.id"]: s for s in spans
                if "durable.operation.id" in s.attributes and "attempt" not in s.name}
    recorded = {op["Id"]: op for op in operations if op["Type"] != "EXECUTION"}
    assert set(op_spans) == set(recorded)
    for op_id, op in recorded.items():
        span = op_spans[op_id]
        assert span.context.span_id == otel.operation_span_id(arn, op_id)
        parent = op.get("ParentId")
        assert span.parent.span_id == (otel.operation_span_id(arn, parent) if parent else execution.context.span_id)
        assert span.attributes["durable.operation.status"] == op["Status"]
    names = {s.attributes.get("durable.operation.name"): s for s in op_spans.values()}
    assert names["pause"].end_time - names["pause"].start_time == 2_000_000_000  # the wait's two seconds
    [failed_item] = [s for s in op_spans.values() if s.status.status_code is StatusCode.ERROR]
    assert failed_item.attributes["durable.operation.subtype"] == "MapIteration"
    assert by_id[failed_item.parent.span_id].attributes["durable.operation.name"] == "items"
    assert names["approval"].attributes["durable.operation.type"] == "CALLBACK"

    # attempt spans: three of the flaky step, two failed with an exception event
    flaky_id = names["flaky"].attributes["durable.operation.id"]
    attempts = sorted((s for s in spans if s.name.startswith("flaky attempt")), key=lambda s: s.start_time)
    assert [s.attributes["durable.operation.attempt"] for s in attempts] == [1, 2, 3]
    assert [s.context.span_id for s in attempts] == [otel.attempt_span_id(arn, flaky_id, n) for n in (1, 2, 3)]
    assert all(s.parent.span_id == names["flaky"].context.span_id for s in attempts)
    assert [s.status.status_code for s in attempts] == [StatusCode.ERROR, StatusCode.ERROR, StatusCode.UNSET]
    events = [e for s in attempts[:2] for e in s.events]
    assert [e.name for e in events] == ["exception", "exception"]
    assert events[0].attributes["exception.type"] == "ConnectionError"
    assert events[0].attributes["exception.message"] == "attempt 1 lost the connection"

    # log records carry the ids of the span current where they were written
    hex_trace = format(trace_id, "032x")
    inside = [r for r in tracing.records if r.getMessage() == "inside the child"]
    [inner_attempt] = [s for s in spans if s.name == "inner attempt 1"]
    assert [(r.trace_id, r.span_id) for r in inside] == [(hex_trace, format(inner_attempt.context.span_id, "016x"))]
    flaky_logs = [r for r in tracing.records if r.getMessage().startswith("flaky attempt")]
    assert [r.span_id for r in flaky_logs] == [format(s.context.span_id, "016x") for s in attempts]
    [first] = [r for r in tracing.records if r.getMessage() == "workflow starts"]
    assert first.trace_id == hex_trace
    assert first.span_id == format(min(invocation_spans, key=lambda s: s.start_time).context.span_id, "016x")


def test_the_same_span_ids_when_run_again_from_its_checkpoints(tracing, tmp_path):
    """Fork the execution's database while it waits for its callback; both copies finish the same way."""
    handler = make_workflow(tracing.provider)
    first_db, second_db = tmp_path / "a.db", tmp_path / "b.db"
    engine = LocalEngine(db=str(first_db), skip_time=True, functions={"workflow": handler})
    arn = _run_to_callback(engine, handler)
    callback_id = _callback_id(engine, arn)
    engine.close()
    shutil.copy(first_db, second_db)
    before = {s.context.span_id for s in tracing.spans()}

    finished = []
    for db in (first_db, second_db):
        tracing.exporter.clear()
        engine = LocalEngine(db=str(db), skip_time=True, functions={"workflow": handler})
        try:
            engine.send_callback_success(callback_id, '"approved"')
            assert engine.get_execution(arn).status == "SUCCEEDED"
        finally:
            engine.close()
        finished.append(sorted((s.name, s.context.trace_id, s.context.span_id, s.parent.span_id if s.parent else None)
                               for s in tracing.spans()))
    assert finished[0] == finished[1]
    assert {"durable execution", "invocation"} <= {name for name, *_ in finished[0]}
    assert not before & {span_id for _, _, span_id, _ in finished[0]}  # nothing of the first part again


def test_incoming_trace_context_becomes_a_link_not_a_parent(tracing, monkeypatch):
    monkeypatch.setenv("_X_AMZN_TRACE_ID", "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1")
    monkeypatch.setenv("TRACEPARENT", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")

    @ds.durable_handler(plugins=[otel.OtelPlugin(tracing.provider)])
    def simple(event, ctx):
        return ctx.step(lambda s: 1, name="one")

    engine = LocalEngine(db=":memory:", skip_time=True)
    try:
        arn = engine.run(simple, None).arn
    finally:
        engine.close()
    [invocation] = [s for s in tracing.spans() if s.name == "invocation"]
    assert invocation.context.trace_id == otel.trace_id_of(arn)
    links = {(link.context.trace_id, link.context.span_id): link.attributes["durable.link.source"]
             for link in invocation.links}
    assert links == {(0x5759e988bd862e3fe1be46a994272793, 0x53995c3f42cd8ad8): "_X_AMZN_TRACE_ID",
                     (0x0af7651916cd43dd8448eb211c80319c, 0xb7ad6b7169203331): "TRACEPARENT"}


def test_the_span_active_when_the_invocation_starts_is_linked(tracing):
    @ds.durable_handler(plugins=[otel.OtelPlugin(tracing.provider)])
    def simple(event, ctx):
        return ctx.step(lambda s: 1, name="one")

    outer_tracer = tracing.provider.get_tracer("lambda-instrumentation")
    engine = LocalEngine(db=":memory:", skip_time=True)
    try:
        with outer_tracer.start_as_current_span("lambda handler") as outer:  # e.g. the ADOT layer's span
            arn = engine.run(simple, None).arn
    finally:
        engine.close()
    [invocation] = [s for s in tracing.spans() if s.name == "invocation"]
    assert invocation.context.trace_id == otel.trace_id_of(arn) != outer.get_span_context().trace_id
    assert [(link.context.span_id, link.attributes["durable.link.source"]) for link in invocation.links] == [
        (outer.get_span_context().span_id, "active-span")]
    ours = tracing.provider.get_tracer(otel.TRACER_NAME, ds.__version__)
    assert isinstance(ours.id_generator, otel.DeterministicIds)
    assert not isinstance(outer_tracer.id_generator, otel.DeterministicIds)  # other tracers keep theirs


def test_json_formatter_writes_the_ids(tracing):
    from durable_sync.logs import JsonFormatter
    import json

    @ds.durable_handler(plugins=[otel.OtelPlugin(tracing.provider)])
    def logs(event, ctx):
        return ctx.step(lambda s: s.logger.info("hello") or 1, name="one")

    engine = LocalEngine(db=":memory:", skip_time=True)
    try:
        arn = engine.run(logs, None).arn
    finally:
        engine.close()
    [record] = [r for r in tracing.records if r.getMessage() == "hello"]
    line = json.loads(JsonFormatter().format(record))
    assert line["trace_id"] == format(otel.trace_id_of(arn), "032x") and len(line["span_id"]) == 16


@pytest.mark.parametrize("text,expected", [
    ("Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=0",
     (0x5759e988bd862e3fe1be46a994272793, 0x53995c3f42cd8ad8, False)),
    ("Root=1-5759e988-bd862e3fe1be46a994272793", None),  # no parent: nothing to link to
    ("Root=2-zz;Parent=x", None),
    ("", None),
])
def test_xray_header(text, expected):
    ctx = otel._xray_context(text)
    assert (None if ctx is None else (ctx.trace_id, ctx.span_id, ctx.trace_flags.sampled)) == expected


def test_ids_are_stable_and_distinct():
    arn = "arn:aws:lambda:us-east-1:1:function:f:$LATEST/durable-execution/n/x"
    assert otel.trace_id_of(arn) == otel.trace_id_of(arn) != otel.trace_id_of(arn + "y")
    ids = {otel.execution_span_id(arn), otel.operation_span_id(arn, "a"), otel.operation_span_id(arn, "b"),
           otel.attempt_span_id(arn, "a", 1), otel.attempt_span_id(arn, "a", 2)}
    assert len(ids) == 5 and all(0 < i < 2**64 for i in ids)


def test_otlp_json_lines(tracing, tmp_path):
    import json

    path = tmp_path / "spans.jsonl"
    tracing.provider.add_span_processor(SimpleSpanProcessor(otel.OtlpJsonLinesExporter(path)))

    @ds.durable_handler(plugins=[otel.OtelPlugin(tracing.provider)])
    def failing(event, ctx):
        ctx.step(lambda s: 1, name="one")
        ctx.step(lambda s: 1 / 0, name="two", config=ds.StepConfig(retry_strategy=ds.RetryPresets.none()))

    engine = LocalEngine(db=":memory:", skip_time=True)
    try:
        arn = engine.run(failing, None).arn
    finally:
        engine.close()
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    spans = [s for line in lines for rs in line["resourceSpans"] for ss in rs["scopeSpans"] for s in ss["spans"]]
    assert {ss["scope"]["name"] for line in lines for rs in line["resourceSpans"] for ss in rs["scopeSpans"]} == {
        "durable_sync"}
    by_name = {s["name"]: s for s in spans}
    assert set(by_name) == {"invocation", "durable execution", "Step one", "Step two", "one attempt 1",
                            "two attempt 1"}
    two = by_name["Step two"]
    assert two["traceId"] == format(otel.trace_id_of(arn), "032x") and len(two["spanId"]) == 16
    assert two["parentSpanId"] == by_name["durable execution"]["spanId"] and "parentSpanId" not in by_name[
        "durable execution"]
    assert two["status"]["code"] == 2 and two["events"][0]["name"] == "exception"
    assert int(two["endTimeUnixNano"]) >= int(two["startTimeUnixNano"])
    attrs = {a["key"]: a["value"] for a in by_name["two attempt 1"]["attributes"]}
    assert attrs["durable.operation.attempt"] == {"intValue": "1"}
    assert attrs["durable.attempt.outcome"] == {"stringValue": "FAILED"}
    assert by_name["invocation"]["kind"] == 2  # SPAN_KIND_SERVER


def _load_example(name):
    import importlib.util
    import os

    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples", name)
    spec = importlib.util.spec_from_file_location(name[:-3], path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _spans_of(path):
    import json

    return [s for line in path.read_text().splitlines() for rs in json.loads(line)["resourceSpans"]
            for ss in rs["scopeSpans"] for s in ss["spans"]]


def test_trace_to_file_agrees_with_the_timeline(tmp_path, caplog):
    """The example, traced to a file: one span per operation of the timeline's model, same durations."""
    from durable_sync.inspection.model import read_execution

    example = _load_example("traced_report.py")
    path = tmp_path / "spans.jsonl"
    engine = LocalEngine(db=":memory:", skip_time=True)
    try:
        with caplog.at_level(logging.WARNING, logger="traced_report"), otel.trace_to_file(path):
            result = engine.run(example.handler, {"report": "weekly", "regions": ["eu", "us", "ap"]})
        execution = read_execution(result, engine.operations(result.arn), engine.history(result.arn))
    finally:
        engine.close()
    assert result.status == "SUCCEEDED" and result.result == {"report": "weekly", "rows": 3, "total": 1000}
    assert [r.getMessage().split(" after ")[0] for r in caplog.records] == ["step fetch_rows attempt 1 FAILED"]
    spans = _spans_of(path)
    ops = {s["spanId"]: s for s in spans if " attempt " not in s["name"] and s["name"] not in (
        "invocation", "durable execution")}
    timeline = execution.all_operations()
    assert len(ops) == len(timeline)
    for op in timeline:
        span = ops[format(otel.operation_span_id(result.arn, op.id), "016x")]
        duration_ms = (int(span["endTimeUnixNano"]) - int(span["startTimeUnixNano"])) // 1_000_000
        assert duration_ms == op.duration_ms, op.display_name
    assert len([s for s in spans if s["name"] == "invocation"]) == len(execution.invocations) == 2
    assert {s["traceId"] for s in spans} == {format(otel.trace_id_of(result.arn), "032x")}


def test_durable_sync_run_trace_writes_otlp_json_lines(tmp_path, capsys):
    import json
    import os

    from durable_sync import cli

    example = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples",
                           "traced_report.py")
    path = tmp_path / "spans.jsonl"
    code = cli.main(["run", example, "--input", json.dumps({"report": "weekly", "regions": ["eu", "us"]}),
                     "--skip-time", "--db", ":memory:", "--trace", str(path)])
    out, err = capsys.readouterr()
    assert code == cli.EXIT_OK, err
    assert json.loads(out.strip().splitlines()[-1]) == {"report": "weekly", "rows": 2, "total": 700}
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    [service] = {a["value"]["stringValue"] for line in lines for rs in line["resourceSpans"]
                 for a in rs["resource"]["attributes"] if a["key"] == "service.name"}
    assert service == "traced_report"  # the function name the run gives the handler
    names = [s["name"] for s in _spans_of(path)]
    assert names.count("durable execution") == 1 and names.count("invocation") == 2
    assert names.count("fetch_rows attempt 1") == 2 and names.count("fetch_rows attempt 2") == 1
    from durable_sync.instrumentation import registry
    assert registry.configured_sources({}) == []  # the run's tracer is gone with it


def test_run_trace_without_opentelemetry_is_a_usage_error(tmp_path, capsys, monkeypatch):
    import os
    import sys

    from durable_sync import cli

    monkeypatch.setitem(sys.modules, "durable_sync.otel", None)  # as if the [otel] extra were missing
    example = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples",
                           "order_workflow.py")
    code = cli.main(["run", example, "--skip-time", "--db", ":memory:", "--trace", str(tmp_path / "t.jsonl")])
    assert code == cli.EXIT_USAGE
    assert "pip install 'lambda-durable-sync[otel]'" in capsys.readouterr().err
