"""``durable-sync`` as a new user would try it: run, list, history, resume, callback, bad input."""
from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import durable_sync as ds
from durable_sync import cli
from durable_sync.local.store import Reader

ROOT = Path(__file__).resolve().parent.parent
ORDER = str(ROOT / "examples" / "order_workflow.py")
ORDER_INPUT = '{"order_id": "o-1", "items": [{"sku": "apple", "qty": 3}]}'
ORDER_RESULT = {"order_id": "o-1", "reservation": "res-o-1", "receipt": {"auth": "auth-o-1", "amount": 1.5},
                "status": "charged"}


def durable_sync(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    return subprocess.run([sys.executable, "-m", "durable_sync.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


def _listed(cwd: Path, *args: str) -> list[dict]:
    """``durable-sync list --json``: ListDurableExecutionsByFunction's response, its DurableExecutions."""
    listed = durable_sync("list", "--json", *args, cwd=cwd)
    assert listed.returncode == 0, listed.stderr
    return json.loads(listed.stdout)["DurableExecutions"]


def _function(entry: dict) -> str:
    return entry["FunctionArn"].split(":function:")[1].split(":")[0]


def _arn(cwd: Path, db: str = "durable.db") -> str:
    [entry] = _listed(cwd, "--db", db)
    return entry["DurableExecutionArn"]


def test_run_list_and_history_of_the_example(tmp_path):
    run = durable_sync("run", ORDER, "--input", ORDER_INPUT, "--skip-time", "--name", "o-1", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert [json.loads(line) for line in run.stdout.splitlines()] == [ORDER_RESULT]  # exactly one line: the result
    assert run.stderr.splitlines()[0] == "execution order_workflow / o-1 started"  # the run's name, first
    assert "StepFailed" in run.stderr and "attempt 1 failed (InventoryUnavailable" in run.stderr
    assert "WaitStarted            cool-down (2 s)" in run.stderr
    assert "status SUCCEEDED" in run.stderr and "operations 6, invocations 3" in run.stderr
    assert (tmp_path / "durable.db").exists()  # the default database, in the current directory

    listed = durable_sync("list", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    header, row = listed.stdout.strip().splitlines()
    assert header.split()[:3] == ["NAME", "FUNCTION", "STATUS"]
    assert "order_workflow" in row and "SUCCEEDED" in row

    arn = _arn(tmp_path)
    history = durable_sync("history", arn, cwd=tmp_path)
    assert history.returncode == 0, history.stderr
    text = history.stdout
    assert text.splitlines()[0].startswith("order_workflow / ") and "SUCCEEDED" in text.splitlines()[0]
    assert "3 invocations" in text.splitlines()[0]
    tree = {line.split()[1]: line for line in text.splitlines() if line.startswith(("├", "└", "│", " "))
            and len(line.split()) > 1}
    assert re.search(r"step +SUCCEEDED +2 attempts \(1 failed\) +back-off 1 s", tree["reserve"])
    assert re.search(r"wait +SUCCEEDED +2 s$", tree["cool-down"])
    assert re.search(r"child +SUCCEEDED", tree["payment"])
    nested = [line for line in text.splitlines() if "authorize" in line or "capture" in line]
    assert all(line.startswith(("   ", "│  ")) for line in nested) and len(nested) == 2  # children indented
    assert text.strip().splitlines()[-1] == "result " + json.dumps(ORDER_RESULT)

    raw = durable_sync("history", arn, "--json", cwd=tmp_path)
    events = json.loads(raw.stdout)
    assert events[0]["EventType"] == "ExecutionStarted" and events[-1]["EventType"] == "ExecutionSucceeded"
    assert [e["EventId"] for e in events] == list(range(1, len(events) + 1))
    assert "T" in events[0]["EventTimestamp"]  # ISO timestamps


def test_run_with_a_name_attaches_instead_of_starting_again(tmp_path):
    first = durable_sync("run", ORDER, "--input", ORDER_INPUT, "--name", "order-1", "--skip-time", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    again = durable_sync("run", ORDER, "--input", ORDER_INPUT, "--name", "order-1", "--skip-time", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "attaching to execution order-1 of order_workflow (succeeded)" in again.stderr
    assert json.loads(again.stdout.strip().splitlines()[-1]) == ORDER_RESULT
    assert len(_listed(tmp_path)) == 1
    other = durable_sync("run", ORDER, "--input", '{"order_id": "o-2", "items": []}', "--name", "order-1",
                         cwd=tmp_path)
    assert other.returncode == 2
    assert other.stderr.strip().count("\n") == 0 and "already exists" in other.stderr
    # history accepts the name too
    assert durable_sync("history", "order-1", cwd=tmp_path).stdout.startswith("order_workflow / order-1")


CRASHY = textwrap.dedent('''
    import os
    import durable_sync as ds

    HERE = os.path.dirname(os.path.abspath(__file__))


    def charge(step):
        if not os.path.exists(os.path.join(HERE, "crashed-once")):
            open(os.path.join(HERE, "crashed-once"), "w").close()
            os._exit(1)  # the whole CLI process dies in the middle of the step
        return "charged"


    @ds.durable_handler
    def handler(event, ctx):
        order = ctx.step("validate", lambda s: event["id"])
        ctx.wait(3600, name="settle")
        return {"order": order, "payment": ctx.step("charge", charge)}
''')


def test_rerunning_the_same_command_after_a_crash_finishes_the_work(tmp_path):
    (tmp_path / "crashy.py").write_text(CRASHY)
    args = ("run", "crashy.py", "--input", '{"id": 7}', "--name", "job-7", "--skip-time")
    crashed = durable_sync(*args, cwd=tmp_path)
    assert crashed.returncode == 1  # os._exit(1): no summary, no result
    with Reader(str(tmp_path / "durable.db")) as reader:
        [ex] = reader.executions()
        assert ex.status == "RUNNING"
    again = durable_sync(*args, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "resuming it" in again.stderr
    assert json.loads(again.stdout.strip().splitlines()[-1]) == {"order": 7, "payment": "charged"}
    assert [(e["DurableExecutionName"], e["Status"]) for e in _listed(tmp_path)] == [("job-7", "SUCCEEDED")]


def test_resume_runs_unfinished_executions_and_names_missing_functions(tmp_path):
    (tmp_path / "crashy.py").write_text(CRASHY)
    assert durable_sync("run", "crashy.py", "--input", '{"id": 1}', "--skip-time", cwd=tmp_path).returncode == 1
    resumed = durable_sync("resume", "--skip-time", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert 'SUCCEEDED {"order": 1, "payment": "charged"}' in resumed.stdout

    (tmp_path / "crashy_copy.py").write_text(CRASHY.replace('"crashed-once"', '"crashed-copy"'))
    assert durable_sync("run", "crashy_copy.py", "--input", '{"id": 2}', "--skip-time",
                        cwd=tmp_path).returncode == 1
    os.rename(tmp_path / "crashy_copy.py", tmp_path / "moved_away.py")
    missing = durable_sync("resume", "--skip-time", cwd=tmp_path)
    assert missing.returncode == 1  # it could not be resumed
    assert "function 'crashy_copy' is missing" in missing.stderr and "crashy_copy.py" in missing.stderr
    running = _listed(tmp_path, "--status", "running")
    assert [_function(e) for e in running] == ["crashy_copy"]  # still there, nothing lost

    os.rename(tmp_path / "moved_away.py", tmp_path / "crashy_copy.py")
    again = durable_sync("resume", "--skip-time", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert 'SUCCEEDED {"order": 2, "payment": "charged"}' in again.stdout
    nothing = durable_sync("resume", cwd=tmp_path)
    assert nothing.returncode == 0 and "nothing to resume" in nothing.stderr


def test_run_runs_only_its_own_execution_and_resume_runs_the_others(tmp_path):
    (tmp_path / "crashy.py").write_text(CRASHY)
    assert durable_sync("run", "crashy.py", "--input", '{"id": 1}', "--skip-time", cwd=tmp_path).returncode == 1
    run = durable_sync("run", ORDER, "--input", ORDER_INPUT, "--skip-time", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert "crashy" not in run.stderr  # the unfinished execution was left alone
    statuses = {_function(e): e["Status"] for e in _listed(tmp_path)}
    assert statuses == {"crashy": "RUNNING", "order_workflow": "SUCCEEDED"}
    resumed = durable_sync("resume", "--skip-time", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert {_function(e): e["Status"] for e in _listed(tmp_path)} == {"crashy": "SUCCEEDED",
                                                                       "order_workflow": "SUCCEEDED"}


CALLBACK_FLOW = textwrap.dedent('''
    import durable_sync as ds


    @ds.durable_handler
    def handler(event, ctx):
        cb = ctx.create_callback("approval")
        ctx.step("notify", lambda s: cb.callback_id)
        answer = cb.result()
        ctx.wait(60, name="cool-off")
        return {"answer": answer, "for": event}
''')


def _callback_id(run: subprocess.CompletedProcess) -> str:
    for line in run.stderr.splitlines():
        if "durable-sync callback succeed " in line:
            return line.split("durable-sync callback succeed ")[1].split()[0]
    raise AssertionError(run.stderr)


def test_callback_answered_from_the_cli_continues_the_execution(tmp_path):
    (tmp_path / "approval.py").write_text(CALLBACK_FLOW)
    run = durable_sync("run", "approval.py", "--input", '"e-1"', "--skip-time", cwd=tmp_path)
    assert run.returncode == 3, run.stderr  # waits for the outside
    assert run.stdout == "" and "status RUNNING" in run.stderr  # not SUCCEEDED: nothing on stdout
    callback_id = _callback_id(run)

    answered = durable_sync("callback", "succeed", callback_id, '{"approved": true}', cwd=tmp_path)
    assert answered.returncode == 0, answered.stderr
    assert f"callback {callback_id}: succeed recorded for approval" in answered.stdout
    assert "CallbackSucceeded" in answered.stderr
    assert "next: wait cool-off due in 1 min;" in answered.stderr  # no time skipped without --skip-time

    finished = durable_sync("resume", "--skip-time", cwd=tmp_path)
    assert finished.returncode == 0, finished.stderr
    assert '{"answer": {"approved": true}, "for": "e-1"}' in finished.stdout

    twice = durable_sync("callback", "succeed", callback_id, "1", cwd=tmp_path)
    assert twice.returncode == 2 and "already SUCCEEDED" in twice.stderr
    unknown = durable_sync("callback", "succeed", "feedbeef", "1", cwd=tmp_path)
    assert unknown.returncode == 2 and "unknown callback id 'feedbeef'" in unknown.stderr


def test_callback_fail_with_skip_time_runs_to_the_end(tmp_path):
    (tmp_path / "approval.py").write_text(CALLBACK_FLOW)
    run = durable_sync("run", "approval.py", "--input", '"e-2"', "--skip-time", cwd=tmp_path)
    callback_id = _callback_id(run)
    failed = durable_sync("callback", "fail", callback_id, '{"ErrorType": "Rejected", "ErrorMessage": "no"}',
                          "--skip-time", cwd=tmp_path)
    assert failed.returncode == 0, failed.stderr
    assert "status FAILED" in failed.stderr and "Rejected: no" in failed.stderr
    assert len(_listed(tmp_path, "--status", "FAILED")) == 1


def test_callback_reaches_an_engine_running_in_another_process(tmp_path):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    example = str(ROOT / "examples" / "human_approval.py")  # real time, 24 h callback timeout
    run = subprocess.Popen([sys.executable, "-m", "durable_sync.cli", "run", example, "--input",
                            '{"expense_id": "e-1", "amount": 420}'], cwd=tmp_path, env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        callback_id = None
        deadline = time.monotonic() + 30
        while callback_id is None and time.monotonic() < deadline:
            time.sleep(0.05)
            if not (tmp_path / "durable.db").exists():
                continue
            try:
                with Reader(str(tmp_path / "durable.db")) as reader:
                    for ex in reader.executions():
                        full = reader.execution(ex.arn)
                        for op in full.ops.values():
                            if op["Type"] == "CALLBACK" and op["Status"] == "STARTED":
                                callback_id = op["CallbackDetails"]["CallbackId"]
            except Exception:  # noqa: BLE001 - the schema may be being created
                continue
        assert callback_id, "the execution never created its callback"
        answered = durable_sync("callback", "succeed", callback_id, '{"approved": true}', cwd=tmp_path)
        assert answered.returncode == 0, answered.stderr
        assert "delivered to the engine running in process" in answered.stdout
        out, err = run.communicate(timeout=60)
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode == 0, err
    assert json.loads(out.strip().splitlines()[-1])["status"] == "paid"


# -- bad input: one line, non-zero, nothing lost -------------------------------------------------------------------
def _main(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _one_line_error(code: int, err: str) -> str:
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("durable-sync: error: "), err
    return lines[0]


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_corrupt_or_foreign_database_is_a_one_line_error(tmp_path, capsys):
    junk = tmp_path / "junk.db"
    junk.write_bytes(os.urandom(3000))
    digest = _digest(junk)
    for argv in (("list", "--db", str(junk)), ("run", ORDER, "--db", str(junk), "--skip-time"),
                 ("resume", "--db", str(junk)), ("history", "x", "--db", str(junk))):
        line = _one_line_error(*_main(capsys, *argv)[::2])
        assert "not a durable_sync database" in line
    assert _digest(junk) == digest

    foreign = tmp_path / "app.db"
    conn = sqlite3.connect(foreign)
    conn.execute("CREATE TABLE t (x)")
    conn.commit()
    conn.close()
    digest = _digest(foreign)
    line = _one_line_error(*_main(capsys, "run", ORDER, "--db", str(foreign), "--skip-time")[::2])
    assert "another application" in line
    assert _digest(foreign) == digest


def test_unknown_arn_bad_handler_file_and_bad_json(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = _main(capsys, "run", ORDER, "--input", ORDER_INPUT, "--skip-time")
    assert code == 0
    digest = _digest(tmp_path / "durable.db")

    assert "no execution 'arn:nope'" in _one_line_error(*_main(capsys, "history", "arn:nope")[::2])
    (tmp_path / "broken.py").write_text("import durable_sync as ds\ndef handler(:\n")
    assert "could not import broken.py: SyntaxError" in _one_line_error(*_main(capsys, "run", "broken.py")[::2])
    (tmp_path / "raises.py").write_text("raise RuntimeError('boom at import')\n")
    assert "RuntimeError: boom at import" in _one_line_error(*_main(capsys, "run", "raises.py")[::2])
    (tmp_path / "plain.py").write_text("def handler(event, context):\n    return 1\n")
    code, _, err = _main(capsys, "run", "plain.py", "--skip-time", "--db", ":memory:")  # any handler runs; not a
    assert code == 1 and "is it decorated" in err  # durable one: its output says so
    assert "does not exist" in _one_line_error(*_main(capsys, "run", "missing.py")[::2])
    assert "--input is not valid JSON" in _one_line_error(*_main(capsys, "run", ORDER, "--input", "{oops")[::2])
    assert "--status must be one of" in _one_line_error(*_main(capsys, "list", "--status", "DONE")[::2])
    assert "not valid JSON" in _one_line_error(*_main(capsys, "callback", "succeed", "abc", "{oops")[::2])
    assert "unknown callback id" in _one_line_error(*_main(capsys, "callback", "succeed", "abc", "1")[::2])
    assert "':memory:' keeps nothing" in _one_line_error(*_main(capsys, "list", "--db", ":memory:")[::2])
    assert "no durable_sync database at other.db" in _one_line_error(*_main(capsys, "list", "--db", "other.db")[::2])
    assert not (tmp_path / "other.db").exists()
    assert _digest(tmp_path / "durable.db") == digest  # nothing changed by any of these


def test_list_filters_and_empty_results(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "approval.py").write_text(CALLBACK_FLOW)
    assert _main(capsys, "run", "approval.py", "--input", "1", "--name", "a", "--skip-time")[0] == 3
    assert _main(capsys, "run", ORDER, "--input", ORDER_INPUT, "--name", "a", "--skip-time")[0] == 0
    code, out, _ = _main(capsys, "list", "--json", "--name", "a")
    assert sorted(_function(e) for e in json.loads(out)["DurableExecutions"]) == ["approval", "order_workflow"]
    code, out, _ = _main(capsys, "list", "--json", "--function", "approval")
    assert [e["Status"] for e in json.loads(out)["DurableExecutions"]] == ["RUNNING"]
    code, out, _ = _main(capsys, "list", "--status", "succeeded")
    assert "order_workflow" in out and "approval" not in out
    code, out, err = _main(capsys, "list", "--function", "nope")
    assert code == 0 and out == "" and "no executions match" in err
    # a name shared by two functions needs the ARN
    assert "2 executions are named 'a'" in _one_line_error(*_main(capsys, "history", "a")[::2])


def test_help_lists_the_commands(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for command in ("run", "list", "history", "resume", "pause", "delete", "callback"):
        assert command in out



@ds.durable_handler
def waits_an_hour(event, ctx):
    ctx.step("first", lambda s: 1)
    ctx.wait(3600, name="an-hour")
    return "done"


def test_list_shows_a_paused_execution_as_paused(tmp_path):
    from durable_sync.local import LocalEngine


    with LocalEngine(db=str(tmp_path / "durable.db")) as engine:  # real time: it stays in its wait
        arn = engine.start(waits_an_hour, {}, name="held")
        engine.pause(arn, reason="maintenance")
    assert [(e["DurableExecutionArn"], e["Status"]) for e in _listed(tmp_path)] == [(arn, "PAUSED")]
    table = durable_sync("list", cwd=tmp_path).stdout
    assert "RUNNING (PAUSED)" in table


# -- pause, resume REF, delete ------------------------------------------------------------------------------------
def test_pause_then_resume_ref_continues_it_to_the_end(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "approval.py").write_text(CALLBACK_FLOW)
    code, out, err = _main(capsys, "run", "approval.py", "--input", '"e-9"', "--name", "held", "--skip-time")
    assert code == 3, err
    callback_id = err.split("durable-sync callback succeed ")[1].split()[0]

    code, out, err = _main(capsys, "pause", "held", "--reason", "maintenance")
    assert code == 0, err
    assert out.strip() == "held: PAUSED"
    assert "durable-sync resume held --db durable.db" in err
    code, out, _ = _main(capsys, "list")
    assert "RUNNING (PAUSED)" in out
    assert "is PAUSED already" in _one_line_error(*_main(capsys, "pause", "held")[::2])

    # answered while paused: recorded, but the engine does not invoke it
    code, out, err = _main(capsys, "callback", "succeed", callback_id, '{"approved": true}')
    assert code == 0, err
    assert "paused: the engine does not invoke it until it is resumed" in err
    # resume without REF leaves a paused execution paused (real time: it returns, nothing moves it)
    for real_or_virtual in ((), ("--skip-time",)):
        code, out, err = _main(capsys, "resume", *real_or_virtual)
        assert code == 0, err
        assert out.strip() == "held: RUNNING"
        assert "paused: the engine does not invoke it until it is resumed" in err
    assert json.loads(_main(capsys, "list", "--json")[1])["DurableExecutions"][0]["Status"] == "PAUSED"
    assert "--reason goes with REF" in _one_line_error(*_main(capsys, "resume", "--reason", "x")[::2])

    code, out, err = _main(capsys, "resume", "held", "--skip-time", "--reason", "done")
    assert code == 0, err
    assert out.strip() == 'held: SUCCEEDED {"answer": {"approved": true}, "for": "e-9"}'
    [entry] = json.loads(_main(capsys, "list", "--json")[1])["DurableExecutions"]
    assert entry["Status"] == "SUCCEEDED"
    events = json.loads(_main(capsys, "history", "held", "--json")[1])
    paused = [e for e in events if e["EventType"] in ("ExecutionPaused", "ExecutionResumed")]
    assert [(e["EventType"], next(iter(v for k, v in e.items() if k.endswith("Details")))["Reason"]["Payload"])
            for e in paused] == [("ExecutionPaused", "maintenance"), ("ExecutionResumed", "done")]

    line = _one_line_error(*_main(capsys, "resume", "held")[::2])
    assert "already ended (SUCCEEDED); there is nothing to resume" in line
    line = _one_line_error(*_main(capsys, "pause", "held")[::2])
    assert "already ended (SUCCEEDED); only a running execution can be paused" in line


def test_resume_ref_of_an_execution_that_is_not_paused_runs_it_onward(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "crashy.py").write_text(CRASHY)
    assert durable_sync("run", "crashy.py", "--input", '{"id": 3}', "--name", "job-3", "--skip-time",
                        cwd=tmp_path).returncode == 1  # crashed in the middle: RUNNING, not paused
    code, out, err = _main(capsys, "resume", "job-3", "--skip-time")
    assert code == 0, err
    assert out.strip() == 'job-3: SUCCEEDED {"order": 3, "payment": "charged"}'


def test_delete_removes_an_ended_execution_and_refuses_a_running_one(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "approval.py").write_text(CALLBACK_FLOW)
    assert _main(capsys, "run", ORDER, "--input", ORDER_INPUT, "--name", "done", "--skip-time")[0] == 0
    assert _main(capsys, "run", "approval.py", "--input", "1", "--name", "waiting", "--skip-time")[0] == 3
    digest = _digest(tmp_path / "durable.db")

    line = _one_line_error(*_main(capsys, "delete", "waiting")[::2])
    assert "execution approval / waiting is RUNNING; only an ended execution" in line
    assert "let it finish (`durable-sync resume waiting --db durable.db`)" in line
    assert _main(capsys, "pause", "waiting")[0] == 0
    line = _one_line_error(*_main(capsys, "delete", "waiting")[::2])
    assert "is RUNNING (PAUSED)" in line and "resume it (`durable-sync resume waiting" in line
    assert "no execution 'nope' in durable.db" in _one_line_error(*_main(capsys, "pause", "nope")[::2])
    assert "no execution 'nope'" in _one_line_error(*_main(capsys, "delete", "nope")[::2])
    assert "no execution 'nope'" in _one_line_error(*_main(capsys, "resume", "nope")[::2])
    assert "':memory:' keeps nothing" in _one_line_error(*_main(capsys, "pause", "x", "--db", ":memory:")[::2])

    code, out, err = _main(capsys, "delete", "done")
    assert code == 0, err
    assert out.startswith("done: deleted (SUCCEEDED execution of order_workflow")
    listed = json.loads(_main(capsys, "list", "--json")[1])["DurableExecutions"]
    assert [e["DurableExecutionName"] for e in listed] == ["waiting"]
    assert "no execution 'done' in durable.db" in _one_line_error(*_main(capsys, "history", "done")[::2])
    assert "no execution 'done'" in _one_line_error(*_main(capsys, "delete", "done")[::2])
    # the name may be used again
    assert _main(capsys, "run", ORDER, "--input", ORDER_INPUT, "--name", "done", "--skip-time")[0] == 0
    assert digest != _digest(tmp_path / "durable.db")


def _poll(predicate, what: str, seconds: float = 15) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


def test_pause_resume_and_delete_reach_an_engine_running_in_another_process(tmp_path):
    from durable_sync.local import LocalEngine
    from durable_sync.local.service import ServiceError


    engine = LocalEngine(db=str(tmp_path / "durable.db"))  # real time: owns the database, polls its inbox
    try:
        arn = engine.start(waits_an_hour, {}, name="held")
        ex = engine._executions[arn]
        _poll(lambda: any(op["Type"] == "WAIT" for op in engine.operations(arn)) and not ex.invoking,
              "the execution never reached its wait")

        paused = durable_sync("pause", "held", "--reason", "maintenance", cwd=tmp_path)
        assert paused.returncode == 0, paused.stderr
        assert paused.stdout.strip() == "held: PAUSED"
        assert f"paused by the engine running in process {os.getpid()}" in paused.stderr
        assert engine.get_execution(arn).pause_status == "PAUSED"  # applied by the owner before the CLI returned
        assert engine.get_execution(arn).pause_details["Reason"] == "maintenance"

        refused = durable_sync("delete", "held", cwd=tmp_path)
        assert refused.returncode == 2 and "is RUNNING (PAUSED); only an ended execution" in refused.stderr

        resumed = durable_sync("resume", "held", "--reason", "done", cwd=tmp_path)
        assert resumed.returncode == 0, resumed.stderr
        assert f"held: resumed by the engine running in process {os.getpid()}" in resumed.stdout
        result = engine.get_execution(arn)
        assert (result.status, result.pause_status) == ("RUNNING", None)
        assert [e["EventType"] for e in engine.history(arn)][-2:] == ["ExecutionPaused", "ExecutionResumed"]

        stopped = durable_sync("stop", "held", "--reason", "duplicate", cwd=tmp_path)
        assert stopped.returncode == 0, stopped.stderr
        assert stopped.stdout.strip() == "held: STOPPED"
        assert f"stopped by the engine running in process {os.getpid()}" in stopped.stderr
        assert engine.get_execution(arn).status == "STOPPED"
        assert engine.get_execution(arn).error["ErrorMessage"] == "duplicate"
        deleted = durable_sync("delete", arn, cwd=tmp_path)
        assert deleted.returncode == 0, deleted.stderr
        assert f"held: deleted by the engine running in process {os.getpid()}" in deleted.stdout
        with pytest.raises(ServiceError, match="no durable execution"):
            engine.get_execution(arn)
    finally:
        engine.close()
    assert _listed(tmp_path) == []


# -- a newcomer's first bug, and what the CLI prints about failures --------------------------------------------------
NEWCOMER = textwrap.dedent('''
    import durable_sync as ds


    def lookup(step):
        prices = {"apple": 1}
        return prices["pear"]  # the newcomer's bug


    @ds.durable_handler
    def handler(event, ctx):
        return ctx.step("price", lookup)
''')


def test_a_newcomers_key_error_shows_the_failing_line_of_their_file(tmp_path):
    (tmp_path / "shop.py").write_text(NEWCOMER)
    run = durable_sync("run", "shop.py", "--skip-time", "--name", "first-try", cwd=tmp_path)
    assert run.returncode == 1 and run.stdout == ""  # FAILED: nothing on stdout, everything on stderr
    where = f'File "{tmp_path / "shop.py"}", line 7, in lookup'
    assert where in run.stderr and 'return prices["pear"]  # the newcomer\'s bug' in run.stderr
    assert "KeyError is usually a bug in the code, and it is retried like any error" in run.stderr
    assert "retryable_error_types" in run.stderr
    frames = [line for line in run.stderr.splitlines() if line.strip().startswith('File "')]
    assert frames and all("shop.py" in line for line in frames)  # the SDK's own frames are folded
    assert "library frames folded" in run.stderr
    assert "error      KeyError: 'pear'" in run.stderr
    assert "durable-sync history first-try --traceback" in run.stderr

    history = durable_sync("history", "first-try", cwd=tmp_path)
    assert history.returncode == 0 and where in history.stdout  # a failed execution shows its trace
    every = durable_sync("history", "first-try", "--traceback", cwd=tmp_path)
    attempts = re.findall(r"^price attempt (\d): KeyError: 'pear'$", every.stdout, flags=re.M)
    assert attempts == ["1", "2", "3", "4", "5", "6"] and every.stdout.count(where) == 6  # each attempt's trace


WAITS_FOR_APPROVAL = textwrap.dedent('''
    import durable_sync as ds


    @ds.durable_handler
    def handler(event, ctx):
        if event == "fail":
            raise ValueError("no such order")
        if event == "wait":
            return ctx.create_callback("approval").result()
        return {"ok": event}
''')


def test_run_outputs_and_exit_codes_as_spec_says(tmp_path):
    (tmp_path / "flow.py").write_text(WAITS_FOR_APPROVAL)
    outcomes = {}
    for event, code in (('"yes"', 0), ('"fail"', 1), ('"wait"', 3)):
        plain = durable_sync("run", "flow.py", "--input", event, "--skip-time", "--db", ":memory:", cwd=tmp_path)
        assert plain.returncode == code, plain.stderr
        assert plain.stdout == ('{"ok": "yes"}\n' if code == 0 else "")  # one line on SUCCEEDED, else nothing
        as_json = durable_sync("run", "flow.py", "--input", event, "--skip-time", "--db", ":memory:", "--json",
                               cwd=tmp_path)
        assert as_json.returncode == code
        [line] = as_json.stdout.splitlines()
        outcomes[event] = json.loads(line)
    assert outcomes['"yes"'].keys() == {"status", "arn", "name", "result"}
    assert outcomes['"yes"']["result"] == {"ok": "yes"}
    assert outcomes['"fail"']["status"] == "FAILED" and outcomes['"fail"']["error"]["ErrorType"] == "ValueError"
    assert outcomes['"wait"']["status"] == "RUNNING" and outcomes['"wait"'].keys() == {"status", "arn", "name",
                                                                                        "error"}
    assert all(o["arn"].split("/")[-2] == o["name"] for o in outcomes.values())


def test_input_from_a_file_or_stdin_like_the_aws_cli(tmp_path):
    (tmp_path / "flow.py").write_text(WAITS_FOR_APPROVAL)
    (tmp_path / "event.json").write_text('"from-a-file"')
    for form in ("file://event.json", "@event.json"):
        run = durable_sync("run", "flow.py", "--input", form, "--skip-time", "--db", ":memory:", cwd=tmp_path)
        assert run.returncode == 0 and json.loads(run.stdout) == {"ok": "from-a-file"}, run.stderr
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    piped = subprocess.run([sys.executable, "-m", "durable_sync.cli", "run", "flow.py", "--input", "-", "--skip-time",
                            "--db", ":memory:"], input='"from-stdin"', cwd=tmp_path, env=env, capture_output=True,
                           text=True, timeout=120)
    assert piped.returncode == 0 and json.loads(piped.stdout) == {"ok": "from-stdin"}, piped.stderr
    missing = durable_sync("run", "flow.py", "--input", "@nope.json", "--db", ":memory:", cwd=tmp_path)
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1 and "cannot read nope.json" in missing.stderr


def test_a_database_in_a_missing_directory_is_a_usage_error(tmp_path):
    for args in (("run", ORDER, "--input", ORDER_INPUT, "--skip-time"), ("serve", "--port", "0")):
        done = durable_sync(*args, "--db", "no/such/dir/x.db", cwd=tmp_path)
        assert done.returncode == 2, done.stderr
        assert done.stderr == ("durable-sync: error: --db no/such/dir/x.db: the directory no/such/dir does not exist "
                               "(create it, or pass another --db)\n")
    assert not (tmp_path / "no").exists()


CHATTY = textwrap.dedent('''
    import durable_sync as ds


    @ds.durable_handler
    def handler(event, ctx):
        def talk(step):
            for i in range(20000):
                print(f"line {i}")
            return "said it all"
        said = ctx.step("talk", talk)
        ctx.wait(1, name="pause")
        return said
''')


def test_a_closed_pipe_never_leaves_the_execution_unfinished(tmp_path):
    (tmp_path / "chatty.py").write_text(CHATTY)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    command = (f"{shlex.quote(sys.executable)} -m durable_sync.cli run chatty.py --skip-time --name talk | head -n 1;"
               " echo \"exit=${PIPESTATUS[0]}\"")
    done = subprocess.run(["bash", "-c", command], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert done.stdout.splitlines() == ["line 0", "exit=0"], done.stderr
    assert "Traceback" not in done.stderr and "BrokenPipeError" not in done.stderr
    assert [(e["DurableExecutionName"], e["Status"]) for e in _listed(tmp_path)] == [("talk", "SUCCEEDED")]


WAITS_AN_HOUR = textwrap.dedent('''
    import durable_sync as ds


    @ds.durable_handler
    def handler(event, ctx):
        ctx.step("prepare", lambda s: 1)
        ctx.wait(3600, name="an-hour")
        return "done"
''')


def _spawn(tmp_path: Path, *args: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    return subprocess.Popen([sys.executable, "-m", "durable_sync.cli", *args], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _stored_operation(tmp_path: Path, op_type: str) -> bool:
    if not (tmp_path / "durable.db").exists():
        return False
    try:
        with Reader(str(tmp_path / "durable.db")) as reader:
            return any(op["Type"] == op_type for ex in reader.executions()
                       for op in reader.execution(ex.arn).ops.values())
    except Exception:  # noqa: BLE001 - the schema may be being created
        return False


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_an_interrupted_run_names_the_command_that_continues_it(tmp_path, signum):
    (tmp_path / "slow.py").write_text(WAITS_AN_HOUR)
    run = _spawn(tmp_path, "run", "slow.py", "--name", "nightly")  # real time: it stays in its wait
    try:
        _poll(lambda: _stored_operation(tmp_path, "WAIT"), "the run never reached its wait", 30)
        run.send_signal(signum)
        out, err = run.communicate(timeout=60)
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode == 130, err
    assert out == ""
    assert ("interrupted; nothing is lost: continue with `durable-sync resume nightly` (add --skip-time to "
            "fast-forward)") in err
    resumed = durable_sync("resume", "nightly", "--skip-time", cwd=tmp_path)
    assert resumed.returncode == 0 and resumed.stdout.strip() == 'nightly: SUCCEEDED "done"', resumed.stderr


RETRIES_SLOWLY = textwrap.dedent('''
    import durable_sync as ds


    def flaky(step):
        if step.attempt == 1:
            raise ConnectionError("inventory service down")
        return "reserved"


    @ds.durable_handler
    def handler(event, ctx):
        policy = ds.RetryPolicy(max_attempts=3, initial_delay=600, jitter="none")
        return ctx.step("reserve", flaky, config=ds.StepConfig(retry_strategy=policy))
''')


def test_a_retry_in_real_time_says_when_and_how_not_to_wait(tmp_path):
    (tmp_path / "slow_retry.py").write_text(RETRIES_SLOWLY)
    run = _spawn(tmp_path, "run", "slow_retry.py", "--name", "r-1")
    try:
        lines: list[str] = []
        while not any("not waiting for it?" in line for line in lines):  # read stderr up to the hint
            line = run.stderr.readline()
            assert line, "".join(lines)
            lines.append(line)
        run.send_signal(signal.SIGINT)
        out, rest = run.communicate(timeout=60)
    finally:
        if run.poll() is None:
            run.kill()
    text = "".join(lines) + rest
    assert run.returncode == 130
    retry = next(line for line in lines if "attempt 1 failed" in line)
    assert "(ConnectionError: inventory service down), retry in 1 min, at " in retry  # the policy's max_delay
    assert re.search(r", at \d\d:\d\d:\d\d \w+$", retry.rstrip())  # the local time it is due, with its zone
    assert ("not waiting for it? run with --skip-time, or press Ctrl-C and continue with "
            "`durable-sync resume r-1 --skip-time` (nothing is lost)") in text
    assert "is usually a bug" not in text  # ConnectionError is not a programming error
    resumed = durable_sync("resume", "r-1", "--skip-time", cwd=tmp_path)
    assert resumed.stdout.strip() == 'r-1: SUCCEEDED "reserved"', resumed.stderr


UNCALLED_STEP = textwrap.dedent('''
    import threading
    import durable_sync as ds


    @ds.durable_step
    def reserve(step, order_id):
        return order_id


    @ds.durable_handler
    def handler(event, ctx):
        if event == "lock":
            return ctx.step("make-lock", lambda s: threading.Lock())
        return ctx.step(reserve)  # should be ctx.step(reserve(event))
''')


def test_serialization_errors_name_the_operation_and_give_the_right_advice(tmp_path):
    (tmp_path / "orders.py").write_text(UNCALLED_STEP)
    uncalled = durable_sync("run", "orders.py", "--input", '"o-1"', "--skip-time", "--db", ":memory:", cwd=tmp_path)
    assert uncalled.returncode == 1
    assert ("SerDesError: could not serialize the function value of operation 'reserve': the value is the "
            "@durable_step function reserve, not its result") in uncalled.stderr
    assert "call it: ctx.step(reserve(order_id))" in uncalled.stderr
    lock = durable_sync("run", "orders.py", "--input", '"lock"', "--skip-time", "--db", ":memory:", cwd=tmp_path)
    assert "of operation 'make-lock': a _thread.lock cannot be checkpointed" in lock.stderr
    assert "Return plain data" in lock.stderr and "ds.serdes.allow" not in lock.stderr


# -- stop, --version, -v ------------------------------------------------------------------------------------------
def test_stop_ends_a_running_execution(tmp_path):
    (tmp_path / "approval.py").write_text(CALLBACK_FLOW)
    assert durable_sync("run", "approval.py", "--input", "1", "--name", "w", "--skip-time",
                        cwd=tmp_path).returncode == 3
    stopped = durable_sync("stop", "w", "--reason", "not needed", cwd=tmp_path)
    assert stopped.returncode == 0, stopped.stderr
    assert stopped.stdout == "w: STOPPED\n"
    [entry] = _listed(tmp_path)
    assert entry["Status"] == "STOPPED"
    again = durable_sync("stop", "w", cwd=tmp_path)
    assert again.returncode == 2 and "already ended (STOPPED); only a running execution can be stopped" in again.stderr
    assert durable_sync("delete", "w", cwd=tmp_path).returncode == 0


def test_version():
    done = durable_sync("--version", cwd=ROOT)
    assert done.returncode == 0 and done.stdout.startswith(f"durable-sync {ds.__version__} (distribution "
                                                           "lambda-durable-sync, Python 3.")


LOGS = textwrap.dedent('''
    import durable_sync as ds


    @ds.durable_handler
    def handler(event, ctx):
        ctx.logger.info("order %s received", event)
        def work(step):
            step.logger.debug("details of attempt %d", step.attempt)
            return 1
        return ctx.step("work", work)
''')


def test_verbose_shows_what_handlers_log(tmp_path):
    (tmp_path / "logs.py").write_text(LOGS)
    quiet = durable_sync("run", "logs.py", "--input", '"o-1"', "--skip-time", "--db", ":memory:", cwd=tmp_path)
    assert "order o-1 received" not in quiet.stderr
    verbose = durable_sync("run", "logs.py", "--input", '"o-1"', "--skip-time", "--db", ":memory:", "-v", cwd=tmp_path)
    assert "    log info    order o-1 received" in verbose.stderr and "details of attempt" not in verbose.stderr
    debug = durable_sync("run", "logs.py", "--input", '"o-1"', "--skip-time", "--db", ":memory:", "--log-level",
                         "debug", cwd=tmp_path)
    assert "    log debug   work: details of attempt 1" in debug.stderr
    assert verbose.stdout == debug.stdout == "1\n"


# -- progress: labels, batches, polls, chained invokes ----------------------------------------------------------------
FAN_OUT = textwrap.dedent('''
    import durable_sync as ds


    @ds.durable_handler
    def handler(event, ctx):
        def score(c, item, index, items):
            if item == 3:
                raise ValueError("item 3 is bad")
            return c.step(lambda s: item * 2)
        results = ctx.map(list(range(100)), score, name="scores",
                          config=ds.MapConfig(completion_config=ds.CompletionConfig(tolerated_failure_count=5)))
        ctx.step(lambda s: "unnamed at the top")
        return len(results.get_results())
''')


def test_progress_of_a_100_item_map_is_a_summary_with_readable_labels(tmp_path):
    (tmp_path / "fan.py").write_text(FAN_OUT)
    run = durable_sync("run", "fan.py", "--skip-time", "--db", ":memory:", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    lines = run.stderr.splitlines()
    progress = lines[: lines.index("status SUCCEEDED")]
    assert len(progress) < 10, run.stderr  # not one line per item
    assert "  ContextFailed          scores[3] (ValueError: item 3 is bad)" in progress  # the item, by its label
    assert any(re.fullmatch(r"  ContextSucceeded +scores \(map: 100 items, 1 failed, 99 succeeded\)", line)
               for line in progress), progress
    assert "  StepSucceeded          step #2" in progress  # an unnamed step: its kind and position
    assert not re.search(r"\b[0-9a-f]{8,}\b", "\n".join(progress[1:]))  # no hash fragments


def test_polls_are_not_failures_and_chained_invokes_are_labelled(tmp_path):
    poll = durable_sync("run", str(ROOT / "examples" / "poll_job.py"), "--input", '{"dataset": "sales-2025"}',
                        "--skip-time", "--db", ":memory:", cwd=tmp_path)
    assert poll.returncode == 0, poll.stderr
    checks = [line for line in poll.stderr.splitlines() if "not done yet, next check in" in line]
    assert checks and not any("failed" in line for line in checks)
    invoke = durable_sync("run", str(ROOT / "examples" / "invoke_workflow.py"), "--input",
                          '{"customer": "c-42", "amount": 120}', "--skip-time", "--db", ":memory:", cwd=tmp_path)
    assert invoke.returncode == 0, invoke.stderr
    target = [line for line in invoke.stderr.splitlines() if "fraud-check" in line and "started" in line]
    assert target and target[0].startswith("[fraud-check] execution fraud-check / ")
    own = [line for line in invoke.stderr.splitlines() if "rate-limit" in line]
    assert own and all(line.startswith("[fraud-check] ") for line in own)  # the target's lines, consistently


def test_list_fits_the_terminal_and_says_the_time_zone(tmp_path):
    assert durable_sync("run", ORDER, "--input", ORDER_INPUT, "--skip-time", "--name", "a-rather-long-execution-name",
                        cwd=tmp_path).returncode == 0
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
               TZ="Europe/Paris")
    for columns in ("60", "400"):
        listed = subprocess.run([sys.executable, "-m", "durable_sync.cli", "list"], cwd=tmp_path, capture_output=True,
                                text=True, timeout=60, env={**env, "COLUMNS": columns})
        lines = listed.stdout.splitlines()
        assert lines[0].split()[:3] == ["NAME", "FUNCTION", "STATUS"]
        assert re.search(r"\d\d:\d\d:\d\d CES?T", lines[1]), lines[1]  # local time, with its zone
        if columns == "60":
            assert all(len(line) <= 60 for line in lines) and "ARN" not in lines[0]
        else:
            assert lines[0].split()[-1] == "ARN" and "a-rather-long-execution-name" in lines[1]


def test_every_command_explains_itself_with_an_example():
    from durable_sync.cli import build_parser

    parser = build_parser()
    [sub] = [a for a in parser._actions if isinstance(a, __import__("argparse")._SubParsersAction)]
    assert set(sub.choices) >= {"run", "list", "history", "resume", "pause", "stop", "delete", "callback", "serve"}
    for name, command in sub.choices.items():
        text = command.format_help()
        assert command.description and len(command.description) > 40, name
        assert "examples:\n  " in text, name
        assert "``" not in text and ":class:" not in text, name  # no reStructuredText printed literally
        refs = [a for a in command._actions if a.dest in ("ref", "arn")]
        assert all(a.metavar == "REF" for a in refs), name
    top = parser.format_help()
    assert "``" not in top and "examples:" in top


CAUGHT = textwrap.dedent('''
    import durable_sync as ds


    def send(step):
        raise ConnectionError("smtp refused")


    @ds.durable_handler
    def handler(event, ctx):
        try:
            ctx.step("notify", send, config=ds.StepConfig(retry_strategy=ds.RetryPresets.none()))
        except ds.StepError:
            return "sent later"
''')


def test_history_shows_the_stack_of_a_failed_operation_even_when_the_execution_succeeded(tmp_path, capsys,
                                                                                      monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mail.py").write_text(CAUGHT)
    assert _main(capsys, "run", "mail.py", "--skip-time", "--name", "m")[0] == 0
    code, out, _ = _main(capsys, "history", "m")
    assert code == 0 and 'result "sent later"' in out
    assert "\nnotify: ConnectionError: smtp refused\n" in out
    assert f'File "{tmp_path / "mail.py"}", line 6, in send' in out
