"""durable_sync.inspection: the read model, the text tree, the HTML timeline (parsed, and rendered in
headless Chromium), `durable-sync history --html`, and the live progress line of `durable-sync run`."""
from __future__ import annotations

import datetime as dt
import io
import json
import os
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser

import pytest

import durable_sync as ds
from durable_sync import cli, inspection, views
from durable_sync.cli import progress as cli_progress
from durable_sync.local import LocalEngine

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples")
ORDER = {"order_id": "o-1", "items": [{"sku": "apple", "qty": 3}]}
_calls: dict = {}


@ds.durable_handler
def showcase(event, ctx):
    """Every kind of operation: steps (one retried twice, one failing), waits, a map, a child, a callback."""
    ctx.step("fetch-user", lambda s: {"id": 7})

    def flaky(step):
        _calls["n"] = _calls.get("n", 0) + 1
        if step.attempt < 3:
            raise ConnectionError("upstream 503")
        return "ok"

    ctx.step("call-api", flaky, config=ds.StepConfig(
        retry_strategy=ds.RetryPolicy(max_attempts=5, initial_delay=2, jitter="none")))
    ctx.wait(5, name="cool-down")
    scores = ctx.map([1, 2, 3], lambda c, item, i, items: c.step(f"score-{item}", lambda s: item * 10),
                     name="score-all")
    with ctx.child("billing") as billing:
        billing.step("charge", lambda s: 42)
        billing.wait(3, name="settle")
    try:
        ctx.step("notify", _fail, config=ds.StepConfig(retry_strategy=ds.RetryPresets.none()))
    except ds.StepError:
        pass
    if event.get("approval"):
        callback = ctx.create_callback("approval", config=ds.CallbackConfig(timeout=7200))
        return callback.result()
    return {"scores": scores.get_results()}


def _fail(step):
    raise ValueError("smtp <refused> & \"quoted\"")  # markup in messages must be escaped


@pytest.fixture
def finished(engine):
    result = engine.run(showcase, input={})
    assert result.status == "SUCCEEDED", result.error
    return result, engine.operations(result.arn), engine.history(result.arn)


# ---------------------------------------------------------------------------------------- text tree
def test_render_tree_shows_nesting_status_attempts_and_durations(finished):
    _, ops, history = finished
    tree = inspection.render_tree(ops, history)
    lines = tree.splitlines()
    assert len(lines) == len(ops) - 1  # one line per operation, the EXECUTION excluded
    by_name = {re.sub(r"^[\s│├└─]+", "", line).split()[0]: line for line in lines}
    assert by_name["call-api"].startswith("├─ call-api")
    assert re.search(r"step\s+SUCCEEDED\s+3 attempts \(2 failed\)\s+back-off 2 s, 4 s\s+6 s$", by_name["call-api"])
    assert re.search(r"wait\s+SUCCEEDED\s+5 s$", by_name["cool-down"])
    assert "│  ├─ score-all[0]" in tree and "│  │  └─ score-1" in tree  # children under their parents
    assert by_name["charge"].startswith("│  ├─ charge")
    assert "└─ notify" in by_name["notify"] and "FAILED" in by_name["notify"]
    assert 'ValueError: smtp <refused> & "quoted"' in by_name["notify"]


def test_render_tree_of_the_order_example_without_history():
    sys.path.insert(0, EXAMPLES)
    try:
        import order_workflow
    finally:
        sys.path.remove(EXAMPLES)
    with LocalEngine(db=":memory:", skip_time=True) as eng:
        result = eng.run(order_workflow.handler, input=ORDER)
        tree = inspection.render_tree(eng.operations(result.arn))
    assert "├─ reserve" in tree and "2 attempts" in tree  # without a history: the latest attempt number
    assert "└─ payment" in tree and "   ├─ authorize" in tree and "   └─ capture" in tree
    assert inspection.render_tree([]) == "(no operations)"


def test_format_duration():
    assert [inspection.format_duration(ms) for ms in (None, 0, 340, 1000, 1250, 12_500, 65_000, 3_600_000, 90_000_000,
                                                  200_000_000)] == \
        ["", "0 ms", "340 ms", "1 s", "1.25 s", "12.5 s", "1 min 5 s", "1 h", "25 h", "2 d 7 h"]


# ---------------------------------------------------------------------------------------- HTML, parsed
class Page(HTMLParser):
    """Rows, bars and visible text of a rendered timeline."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[dict] = []
        self.table_ids: list[str] = []
        self.text: list[str] = []
        self.tags: list[tuple[str, dict]] = []
        self._row = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append((tag, a))
        classes = (a.get("class") or "").split()
        if "op-row" in classes:
            self._row = {"id": a["data-op-id"], "name": a["data-op-name"], "status": a["data-status"], "bars": [],
                         "markers": []}
            self.rows.append(self._row)
        elif tag == "tr" and a.get("data-op-id"):
            self.table_ids.append(a["data-op-id"])
            self._row = None
        elif tag == "div" and "bar" in classes and self._row is not None:
            style = dict(part.split(":") for part in a["style"].split(";"))
            self._row["bars"].append((classes[1], float(style["left"].rstrip("%")), float(style["width"].rstrip("%")),
                                      a.get("title", "")))
        elif tag == "div" and "marker" in classes and self._row is not None:
            self._row["markers"].append(a.get("title", ""))

    def handle_data(self, data):
        if data.strip():
            self.text.append(data.strip())


def parse(page: str) -> Page:
    parser = Page()
    parser.feed(page)
    parser.close()
    return parser


def _own_name(op):
    """A name the code gave (not the default map-item-<i> / parallel-branch-<i> of an unnamed branch)."""
    return bool(op.get("Name")) and re.fullmatch(r"(map-item|parallel-branch)-\d+", op["Name"]) is None


def test_html_has_a_row_and_a_table_line_for_every_operation(finished):
    result, ops, history = finished
    page = inspection.render_html(result, ops, history)
    parsed = parse(page)
    expected = [op["Id"] for op in ops if op["Type"] != "EXECUTION"]
    assert sorted(r["id"] for r in parsed.rows) == sorted(expected)
    assert sorted(parsed.table_ids) == sorted(expected)
    names = {op.get("Name") for op in ops if _own_name(op)}
    assert names <= set(parsed.text)  # every named operation is visible text
    # unnamed map items (their Name is the default map-item-<i>) get a label: the map's name and the index
    assert "score-all[0]" in parsed.text and "map-item-0" not in parsed.text
    for row in parsed.rows:
        assert row["bars"], f"operation {row['name'] or row['id']} has no bar"
        for _, left, width, _ in row["bars"]:
            assert 0 <= left <= 100 and 0 <= width and left + width <= 100.001


def test_html_bars_are_placed_on_the_time_axis_and_colored_by_outcome(finished):
    result, ops, history = finished
    rows = {r["name"]: r for r in parse(inspection.render_html(result, ops, history)).rows}
    total = 14  # seconds: back-offs 2 + 4, the 5 s cool-down and the 3 s settle
    kinds = [b[0] for b in rows["call-api"]["bars"]]
    assert kinds == ["failed", "backoff", "failed", "backoff", "ok"]  # retries visible as segments
    backoff1, backoff2 = [b for b in rows["call-api"]["bars"] if b[0] == "backoff"]
    assert backoff1[1] == pytest.approx(0) and backoff1[2] == pytest.approx(2 / total * 100, abs=0.01)
    assert backoff2[1] == pytest.approx(2 / total * 100, abs=0.01) and backoff2[2] == pytest.approx(4 / total * 100,
                                                                                                     abs=0.01)
    assert "attempt 1: failed: ConnectionError: upstream 503" in rows["call-api"]["bars"][0][3]
    assert rows["call-api"]["markers"] == ["call-api: attempt 1", "call-api: attempt 2", "call-api: attempt 3"]
    wait = rows["cool-down"]["bars"][0]
    assert wait[0] == "waiting"
    assert wait[1] == pytest.approx(6 / total * 100, abs=0.01) and wait[2] == pytest.approx(5 / total * 100, abs=0.01)
    assert rows["billing"]["bars"][0][0] == "context"
    assert rows["notify"]["bars"][0][0] == "failed" and rows["notify"]["status"] == "FAILED"
    assert rows["fetch-user"]["bars"][0][0] == "ok"


def test_html_is_self_contained_and_escapes_user_text(finished):
    result, ops, history = finished
    page = inspection.render_html(result, ops, history)
    assert page.startswith("<!DOCTYPE html>")
    lowered = page.lower()
    assert "<script" not in lowered and "<link" not in lowered and "@import" not in lowered
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", lowered)
    assert "url(http" not in lowered
    assert "smtp &lt;refused&gt; &amp; &quot;quoted&quot;" in page
    assert "smtp <refused>" not in page
    texts = parse(page).text
    assert "succeeded" in texts and "failed attempt" in texts and "retry back-off" in texts  # the legend
    assert "SUCCEEDED" in texts and any("result" in t for t in texts)


def test_html_of_a_running_execution_shows_what_it_waits_for(engine):
    arn = engine.start(showcase, input={"approval": True})  # returns once the callback waits (2 h timeout)
    engine.advance(600)
    assert engine.get_execution(arn).status == "RUNNING"
    ops, history = engine.operations(arn), engine.history(arn)
    page = inspection.render_html(engine.get_execution(arn), ops, history, now=engine.clock.now_ms())
    parsed = parse(page)
    [callback] = [r for r in parsed.rows if r["name"] == "approval"]
    assert callback["status"] == "STARTED" and callback["bars"][0][0] == "waiting"
    assert callback["bars"][0][1] + callback["bars"][0][2] == pytest.approx(100, abs=0.01)  # until "now"
    assert "RUNNING" in parsed.text
    assert any(t.startswith("callback id ") for t in parsed.text)


def test_html_accepts_a_boto3_shaped_execution_or_nothing(finished):
    result, ops, history = finished
    described = {"DurableExecutionArn": result.arn, "DurableExecutionName": "order-7", "Status": "SUCCEEDED",
                 "StartTimestamp": ops[0]["StartTimestamp"], "EndTimestamp": ops[0]["EndTimestamp"],
                 "Result": '{"ok": true}'}
    texts = parse(inspection.render_html(described, ops, history)).text
    assert "showcase / order-7" in texts and 'result {"ok": true}' in texts
    bare = parse(inspection.render_html(None, ops, history))
    assert len(bare.rows) == len(ops) - 1
    assert "execution" in bare.text  # no ARN known: a plain heading
    named = parse(inspection.render_html({"DurableExecutionArn": result.arn}, ops, history))
    assert any(t.startswith("showcase /") for t in named.text)  # function and name from the ARN
    empty = parse(inspection.render_html(None, [], []))
    assert empty.rows == []


def test_each_failed_attempt_has_a_collapsible_stack_with_the_users_frames_open(finished):
    result, ops, history = finished
    page = inspection.render_html(result, ops, history)
    traces = re.findall(r'<details class="trace"><summary>(.*?)</summary>(.*?)</details>(?=<details class="trace"|</td>)',
                        page, flags=re.S)
    assert [title for title, _ in traces] == [
        "attempt 1: ConnectionError: upstream 503", "attempt 2: ConnectionError: upstream 503",
        "attempt 1: ValueError: smtp &lt;refused&gt; &amp; &quot;quoted&quot;"]
    for _, body in traces:
        folded = "".join(re.findall(r'<details class="lib">.*?</details>', body, flags=re.S))
        shown = re.sub(r'<details class="lib">.*?</details>', "", body, flags=re.S)
        assert f"File &quot;{__file__}&quot;" in shown  # the user's frame is open
        assert "durable_sync" not in shown and re.search(r"durable_sync/\w+(/\w+)?\.py", folded)  # the SDK's frames are folded
        assert "library frames (" in folded


def test_the_timeline_markup_is_a_template_file_shipped_with_the_package():
    import inspect as pyinspect
    from importlib import resources

    from durable_sync.inspection import timeline

    template = resources.files("durable_sync.inspection").joinpath("timeline.html").read_text(encoding="utf-8")
    assert "<!-- fragment: page -->" in template and ".bar.backoff" in template  # markup and CSS
    code = pyinspect.getsource(timeline)
    assert not re.search(r"<(div|tr|td|span|style|details|p)\b", code)  # no markup in Python strings
    setup_py = open(os.path.join(os.path.dirname(EXAMPLES), "setup.py"), encoding="utf-8").read()
    assert '"durable_sync.inspection": ["timeline.html"]' in setup_py


@ds.durable_handler
def unnamed(event, ctx):
    ctx.step(lambda s: 1)
    ctx.wait(1)
    ctx.map([10, 20], lambda c, item, i, items: c.step(lambda s: item))
    ctx.parallel([lambda c: 1, lambda c: 2], name="both")
    return "ok"


def test_unnamed_operations_get_readable_labels_never_hash_fragments(engine):
    result = engine.run(unnamed, input={})
    assert result.status == "SUCCEEDED", result.error
    ops, history = engine.operations(result.arn), engine.history(result.arn)
    tree = inspection.render_tree(ops, history)
    labels = [re.sub(r"^[\s│├└─]+", "", line).split("  ")[0] for line in tree.splitlines()]
    assert labels == ["step #1", "wait #2", "map #3", "map #3[0]", "step #1", "map #3[1]", "step #1", "both",
                      "both[0]", "both[1]"]
    ids = {op["Id"][:k] for op in ops if op["Type"] != "EXECUTION" for k in (6, 8, 12)}
    page = inspection.render_html(result, ops, history)
    visible = " ".join(parse(page).text)
    assert not any(fragment in tree or fragment in visible for fragment in ids)


def test_one_model_serves_the_tree_the_timeline_and_test_results(finished, engine):
    from durable_sync.testing import TestResult

    result, ops, history = finished
    model = inspection.read_execution(result, ops, history)
    assert (model.status, model.function_name, model.result_payload) == ("SUCCEEDED", "showcase", result.raw_result)
    assert len(model.invocations) == sum(1 for e in history if e["EventType"] == "InvocationCompleted")
    assert model.duration_ms == 14_000  # virtual time: back-offs 2 + 4 s, waits 5 + 3 s
    assert model.get_step("call-api").retry_delays == [2, 4]
    assert model.get_wait("cool-down").duration_ms == 5000
    same = inspection.read_execution(None, ops, history)  # derived from the records alone
    assert (same.status, same.start_ms, same.end_ms, same.result_payload) == (
        model.status, model.start_ms, model.end_ms, model.result_payload)
    tested = TestResult.from_records(ops, history, arn=result.arn)
    assert tested.execution == model
    assert tested.tree().split("\n", 1)[1] == "\n".join(
        "  " + line for line in inspection.render_tree(model.roots, results=True).splitlines())


def test_format_trace_folds_library_frames_and_keeps_the_users():
    from durable_sync.errors import error_object

    def users_code():
        return {"a": 1}["b"]

    try:
        engine_like = __import__("json").loads  # a library frame between the user's frames
        engine_like("[1]", object_hook=None, parse_int=lambda text: users_code())
    except KeyError as exc:
        stack = error_object(exc)["StackTrace"]
    text = inspection.format_trace(stack)
    lines = text.splitlines()
    assert lines[0] == "Traceback (most recent call last):" and lines[-1] == "KeyError: 'b'"
    assert any(line.startswith(f'  File "{__file__}"') and "in test_format_trace" in line for line in lines)
    assert any(f'File "{__file__}"' in line and "in users_code" in line for line in lines)
    assert any(line.strip().startswith("[") and "library frames folded" in line for line in lines)
    assert "json" not in "\n".join(line for line in lines if "folded" not in line)
    assert inspection.format_trace(None) == "" and inspection.format_trace([]) == ""


# ---------------------------------------------------------------------------------------- HTML in Chromium
def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def _chrome_args(tmp_path) -> list[str]:
    return ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--disable-dev-shm-usage", f"--user-data-dir={tmp_path / 'chrome-profile'}"]


@pytest.mark.skipif(_chromium() is None, reason="no Chromium/Chrome binary on PATH (apt-get install chromium); "
                                                 "the html.parser tests above check the same page without a browser")
def test_timeline_renders_in_headless_chromium(finished, tmp_path):
    result, ops, history = finished
    page_path = tmp_path / "timeline.html"
    page_path.write_text(inspection.render_html(result, ops, history), encoding="utf-8")
    browser = _chromium()
    dom = subprocess.run([browser, *_chrome_args(tmp_path), "--dump-dom", page_path.as_uri()],
                         capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    rendered = parse(dom.stdout)
    expected = {op["Id"] for op in ops if op["Type"] != "EXECUTION"}
    assert {r["id"] for r in rendered.rows} == expected  # every operation is on the page
    for op in ops:
        if _own_name(op):
            assert op["Name"] in rendered.text
    shot = tmp_path / "timeline.png"
    done = subprocess.run([browser, *_chrome_args(tmp_path), f"--screenshot={shot}", "--window-size=1200,800",
                           "--hide-scrollbars", page_path.as_uri()], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000  # a picture with content, not a blank page


# ---------------------------------------------------------------------------------------- the CLI
def test_history_html_writes_the_timeline(tmp_path, capsys):
    db = str(tmp_path / "durable.db")
    assert cli.main(["run", os.path.join(EXAMPLES, "order_workflow.py"), "--input", json.dumps(ORDER),
                     "--skip-time", "--db", db, "--name", "order-1"]) == 0
    capsys.readouterr()
    out_file = tmp_path / "out.html"
    assert cli.main(["history", "order-1", "--db", db, "--html", str(out_file)]) == 0
    out, err = capsys.readouterr()
    assert "reserve" in out  # the text tree is still printed
    assert f"timeline written to {out_file} (6 operations)" in err
    parsed = parse(out_file.read_text(encoding="utf-8"))
    assert [r["name"] for r in parsed.rows] == ["validate", "reserve", "cool-down", "payment", "authorize", "capture"]
    assert "order_workflow / order-1" in parsed.text


def test_history_html_to_an_unwritable_path_is_a_one_line_error(tmp_path, capsys):
    db = str(tmp_path / "durable.db")
    assert cli.main(["run", os.path.join(EXAMPLES, "order_workflow.py"), "--input", json.dumps(ORDER),
                     "--skip-time", "--db", db, "--name", "order-1"]) == 0
    capsys.readouterr()
    code = cli.main(["history", "order-1", "--db", db, "--html", str(tmp_path / "missing-dir" / "x.html")])
    err = capsys.readouterr().err
    assert code == cli.EXIT_USAGE
    assert err.startswith("durable-sync: error: cannot write the timeline to") and err.count("\n") == 1


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def _run_order(extra=()):
    return cli.main(["run", os.path.join(EXAMPLES, "order_workflow.py"), "--input", json.dumps(ORDER),
                     "--skip-time", "--db", ":memory:", *extra])


def test_run_without_a_terminal_prints_one_line_per_event(capsys):
    assert _run_order() == 0
    out, err = capsys.readouterr()
    lines = err.splitlines()
    assert re.fullmatch(r"execution order_workflow / [0-9a-f-]{36} started", lines[0])  # the run's name
    assert lines[1:7] == [
        "  StepSucceeded          validate",
        "  StepFailed             reserve attempt 1 failed (InventoryUnavailable: inventory service timed out), "
        "retry in 1 s",
        "  StepSucceeded          reserve",
        "  WaitStarted            cool-down (2 s)",
        "  WaitSucceeded          cool-down",
        "  StepSucceeded          authorize",
    ]
    assert "status SUCCEEDED" in lines
    assert "\r" not in err and "\x1b" not in err  # no terminal control codes in a log file or pipe
    assert json.loads(out.splitlines()[-1])["status"] == "charged"


def test_run_on_a_terminal_shows_a_status_line_and_only_notable_events(monkeypatch, capsys):
    tty = FakeTTY()
    monkeypatch.setattr(sys, "stderr", tty)
    monkeypatch.delenv("TERM", raising=False)
    assert _run_order() == 0
    assert sys.stderr is tty  # the wrapper is gone after the run
    err = tty.getvalue()
    out = capsys.readouterr().out
    assert json.loads(out.splitlines()[-1])["status"] == "charged"  # stdout is unchanged
    assert "\r\x1b[K" in err  # a status line was drawn and erased
    drawn = [part.split("\r")[0] for part in err.split("\r\x1b[K")[1:] if part.strip()]
    assert any(re.search(r"\d+ done · .*invocation", text) for text in drawn)
    assert "reserve attempt 1 failed (InventoryUnavailable: inventory service timed out), retry in 1 s" in err
    assert "StepSucceeded          validate" not in err  # routine events only move the status line
    # the summary is on clean lines: erased status first, no status text glued to it
    assert "\nstatus SUCCEEDED\n" in err.replace("\r\x1b[K", "\n")
    final = err.rsplit("\r\x1b[K", 1)[1]
    assert "done ·" not in final and "status SUCCEEDED" in final  # no status line left behind


def test_term_dumb_keeps_the_event_lines(monkeypatch, capsys):
    tty = FakeTTY()
    monkeypatch.setattr(sys, "stderr", tty)
    monkeypatch.setenv("TERM", "dumb")
    assert _run_order() == 0
    assert "StepSucceeded          validate" in tty.getvalue() and "\x1b[K" not in tty.getvalue()


class Clock:
    def __init__(self, ms: int):
        self.ms = ms

    def now_ms(self) -> int:
        return self.ms


def _event(etype, op_id="op1", name=None, when=None, **details):
    event = {"EventType": etype, "Id": op_id, "EventTimestamp": when or dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)}
    if name:
        event["Name"] = name
    event[f"{etype}Details"] = details
    return event


def test_live_progress_status_names_done_running_and_due_items(monkeypatch):
    t0 = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    stream = FakeTTY()
    lines: list = []
    printer = cli_progress.EventPrinter()
    progress = cli_progress.LiveProgress(stream, printer=printer, width=200)
    monkeypatch.setattr(cli_progress, "err", lines.append)
    progress.clock = Clock(int(t0.timestamp() * 1000))
    arn = "arn:aws:lambda:us-east-1:0:function:f:$LATEST/durable-execution/run-1/abc"
    progress(arn, _event("ExecutionStarted", "abc"))
    progress(arn, _event("StepStarted", "s1", "validate"))
    progress(arn, _event("StepSucceeded", "s1", "validate"))
    progress(arn, _event("StepStarted", "s2", "reserve"))
    progress(arn, _event("StepFailed", "s2", "reserve", RetryDetails={"CurrentAttempt": 1, "NextAttemptDelaySeconds": 4},
                         Error={"Payload": {"ErrorType": "X", "ErrorMessage": "down"}}))
    progress(arn, _event("WaitStarted", "w1", "cool-down", Duration=60,
                         ScheduledEndTimestamp=t0 + dt.timedelta(seconds=60)))
    progress(arn, _event("InvocationCompleted", "abc"))
    text = progress.status_text()
    assert text.startswith("1 done · next: reserve retry due ")
    assert "(in 4 s)" in text and "cool-down due " in text and "(in 1 min)" in text
    assert "1 invocation" in text
    assert lines == ["execution f / run-1 started",  # only what must stay on screen
                     "  StepFailed             reserve attempt 1 failed (X: down), retry in 4 s"]
    progress(arn, _event("StepStarted", "s2", "reserve"))
    assert "running reserve (attempt 2)" in progress.status_text()
    progress(arn, _event("CallbackStarted", "c1", "approval", CallbackId="cb-1"))
    assert lines[-1] == "  CallbackStarted        approval (callback id cb-1)"  # the id to answer with stays


def test_live_progress_redraws_at_most_a_few_times_a_second(monkeypatch):
    stream = FakeTTY()
    progress = cli_progress.LiveProgress(stream, interval=0.25, width=120)
    monkeypatch.setattr(sys, "stdout", FakeTTY())
    monkeypatch.setattr(sys, "stderr", stream)
    progress.start(Clock(0))
    try:
        for i in range(2000):  # a burst of events, as a long fan-out produces
            progress("arn:x", _event("StepStarted", f"s{i}", f"s{i}"))
            progress("arn:x", _event("StepSucceeded", f"s{i}", f"s{i}"))
        print("a line from the user's code")
    finally:
        progress.stop()
    out = stream.getvalue()
    assert out.count("\r\x1b[K") < 40  # not 4000 redraws
    assert sys.stdout.getvalue() == "a line from the user's code\n"
    assert sys.stderr is stream and not isinstance(sys.stdout, cli_progress._ClearingStream)


def test_output_while_the_status_line_is_shown_erases_it_first(monkeypatch):
    stream = FakeTTY()
    monkeypatch.setattr(sys, "stderr", stream)
    progress = cli_progress.LiveProgress(stream, width=120).start(Clock(0))
    try:
        progress("arn:x", _event("StepStarted", "s1", "long-step"))
        assert "0 done · running long-step · 0 invocations" in stream.getvalue()
        print("hello from a step", file=sys.stderr)
    finally:
        progress.stop()
    out = stream.getvalue()
    before, after = out.split("hello from a step\n")
    assert before.endswith("\r\x1b[K")  # the status line was erased before the user's line


def test_live_progress_counts_a_maps_items_instead_of_listing_them(monkeypatch):
    from durable_sync import wire

    lines: list = []
    monkeypatch.setattr(cli_progress, "err", lines.append)
    progress = cli_progress.LiveProgress(FakeTTY(), printer=cli_progress.EventPrinter(), width=300)
    arn = "arn:aws:lambda:us-east-1:0:function:f:$LATEST/durable-execution/run-1/abc"
    map_id = wire.operation_id(None, 1)
    progress(arn, _event("ExecutionStarted", "abc"))
    progress(arn, {**_event("ContextStarted", map_id, "scores"), "SubType": "Map"})
    for i in range(100):
        item = wire.branch_id(map_id, i)
        progress(arn, {**_event("ContextStarted", item), "SubType": "MapIteration", "ParentId": map_id})
        if i < 60:
            progress(arn, {**_event("ContextSucceeded", item), "SubType": "MapIteration", "ParentId": map_id})
    text = progress.status_text()
    assert "scores: 60 done, 40 running" in text and "scores[" not in text
    assert lines == ["execution f / run-1 started"]  # routine item events print nothing
    progress(arn, {**_event("ContextFailed", wire.branch_id(map_id, 70), Error={"Payload": {
        "ErrorType": "ValueError", "ErrorMessage": "bad item"}}), "SubType": "MapIteration", "ParentId": map_id})
    assert lines[-1] == "  ContextFailed          scores[70] (ValueError: bad item)"  # a failure stays, by its label


def test_durable_sync_views_is_the_same_functions_under_its_older_name():
    assert (views.render_tree, views.render_html, views.format_duration) == (
        inspection.render_tree, inspection.render_html, inspection.format_duration)
