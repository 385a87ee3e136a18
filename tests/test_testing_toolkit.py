"""The testing toolkit: DurableTestRunner, TestResult and the pytest plugin.

These tests double as examples (see docs/testing.md).
"""
from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import durable_sync as ds
from durable_sync.testing import (CallbackOperation, ContextOperation, DurableTestRunner, OperationNotFoundError,
                                  StepOperation, TestResult, WaitOperation)

REPO = Path(__file__).resolve().parents[1]
NO_RETRY = ds.StepConfig(retry_strategy=ds.RetryPresets.none())
needs_callbacks = pytest.mark.skipif(not hasattr(ds.DurableContext, "create_callback"),
                                     reason="ctx.create_callback is not implemented yet")


@ds.durable_handler
def order_workflow(event, ctx):
    user = ctx.step("fetch-user", lambda s: {"id": event["user"], "tier": "gold"})
    with ctx.child("billing") as billing:
        amount = billing.step("price", lambda s: 42)
        with billing.child("payment") as payment:
            payment.step("charge", lambda s: f"charged {amount}")
        billing.wait(30, name="settle")
        billing.result = amount
    ctx.wait(ds.Duration.from_minutes(5), name="cool-down")
    return {"user": user["id"], "amount": amount}


# --------------------------------------------------------------------------- results and lookups


def test_run_returns_a_test_result(durable_runner):
    result = durable_runner(order_workflow).run({"user": "u-1"})
    assert isinstance(result, TestResult)
    assert result.status == "SUCCEEDED"
    assert result.result == {"user": "u-1", "amount": 42}
    assert result.error is None
    assert result.input == {"user": "u-1"}
    assert result.history[0]["EventType"] == "ExecutionStarted"
    assert result.history[-1]["EventType"] == "ExecutionSucceeded"
    assert {op["Type"] for op in result.operations} == {"EXECUTION", "STEP", "CONTEXT", "WAIT"}
    assert result.invocation_count == 3  # first run, after "settle", after "cool-down"


def test_lookups_search_nested_contexts(durable_runner):
    result = durable_runner(order_workflow).run({"user": "u-1"})
    charge = result.get_step("charge")  # two levels down
    assert isinstance(charge, StepOperation)
    assert (charge.status, charge.attempt, charge.result) == ("SUCCEEDED", 1, "charged 42")
    assert charge.error is None and charge.start_time is not None and charge.elapsed is not None

    billing = result.get_context("billing")
    assert isinstance(billing, ContextOperation)
    assert billing.result == 42
    assert [c.name for c in billing.children] == ["price", "payment", "settle"]
    assert billing.get_step("charge") == charge  # lookups on a context search below it
    assert billing.get_context("payment").children[0] == charge

    settle = result.get_wait("settle")
    assert isinstance(settle, WaitOperation)
    assert settle.wait_seconds == 30 and settle.status == "SUCCEEDED"
    assert settle.end_time - settle.start_time == settle.elapsed
    assert result.get_wait("cool-down").wait_seconds == 300

    assert [op.name for op in result.operation_tree] == ["fetch-user", "billing", "cool-down"]
    assert [op.name for op in result.all_operations()] == [
        "fetch-user", "billing", "price", "payment", "charge", "settle", "cool-down"]
    assert [op.name for op in result.find_operations(type="WAIT")] == ["settle", "cool-down"]


def test_test_result_from_records_fetched_elsewhere(durable_runner):
    """E.g. operations and history fetched with boto3 from a real execution."""
    result = durable_runner(order_workflow).run({"user": "u-1"})
    again = TestResult.from_records(result.operations, result.history, arn=result.arn)
    assert (again.status, again.result, again.error) == ("SUCCEEDED", {"user": "u-1", "amount": 42}, None)
    assert again.get_step("charge") == result.get_step("charge")
    assert again.tree() == result.tree()


def test_a_failed_lookup_lists_what_exists(durable_runner):
    result = durable_runner(order_workflow).run({"user": "u-1"})
    with pytest.raises(OperationNotFoundError) as info:
        result.get_step("refund")
    message = str(info.value)
    assert "no step named 'refund' in the execution (SUCCEEDED)" in message
    assert "steps that exist: 'charge', 'fetch-user', 'price'" in message
    assert re.search(r"├─ payment +child +SUCCEEDED", message)  # the operation tree
    # usable as a plain assertion failure and as a lookup error
    assert isinstance(info.value, AssertionError) and isinstance(info.value, LookupError)
    with pytest.raises(OperationNotFoundError, match="operations with that name but another type: settle  wait  SUCCEEDED"):
        result.get_step("settle")
    with pytest.raises(LookupError, match="no child context named 'shipping' in child context 'billing'"):
        result.get_context("billing").get_context("shipping")


def test_failed_execution_and_assertion_helpers(durable_runner):
    @ds.durable_handler
    def handler(event, ctx):
        ctx.step("ok", lambda s: 1)
        with ctx.child("payment") as c:
            c.step("charge", _raise(ValueError("card declined")), config=NO_RETRY)

    result = durable_runner(handler).run()
    assert result.status == "FAILED"
    assert result.error_type == "ValueError" and result.error_message == "card declined"
    charge = result.get_step("charge")
    assert (charge.status, charge.error_type, charge.error_message) == ("FAILED", "ValueError", "card declined")
    assert result.get_context("payment").status == "FAILED"
    result.assert_failed(error_type="ValueError", message="declined")
    with pytest.raises(AssertionError) as info:
        result.assert_succeeded()
    message = str(info.value)
    assert "expected the execution to succeed, but it is FAILED" in message
    assert re.search(r"charge +step +FAILED +1 attempt .*ValueError: card declined", message), message
    assert "error stack trace:" in message
    trace = message.split("error stack trace:")[1]
    assert f'File "{__file__}"' in trace and "library frame" in trace  # the test's frame; the SDK's folded
    assert not re.search(r"File \"[^\"]*/durable_sync/", trace)  # no SDK frame shown
    with pytest.raises(AssertionError, match="expected error type 'KeyError', got 'ValueError'"):
        result.assert_failed(error_type="KeyError")


def _raise(exc):
    def body(step_ctx):
        raise exc
    return body


def test_plain_function_handlers_are_accepted():
    def handler(event, ctx):  # not decorated: the runner decorates it
        return ctx.step("double", lambda s: event * 2)

    with DurableTestRunner(handler) as runner:
        assert runner.run(21).result == 42


def test_run_with_a_virtual_timeout_stops_early(durable_runner):
    runner = durable_runner(order_workflow)
    result = runner.run({"user": "u-1"}, timeout=60)  # "settle" (30 s) fires, "cool-down" (5 min) does not
    assert result.status == "RUNNING"
    assert result.get_wait("settle").status == "SUCCEEDED"
    assert result.get_wait("cool-down").status == "STARTED"
    assert runner.wait().status == "SUCCEEDED"


def test_runner_is_a_context_manager_and_closes_its_engine():
    with DurableTestRunner(order_workflow) as runner:
        runner.run({"user": "u"})
        engine = runner.engine
    with pytest.raises(ds.DurableError, match="closed"):
        runner.engine
    assert engine._closed


def test_real_time_mode():
    @ds.durable_handler
    def handler(event, ctx):
        return ctx.step("hello", lambda s: "hi")

    with DurableTestRunner(handler, skip_time=False) as runner:
        assert runner.run(timeout=10).result == "hi"


# --------------------------------------------------------------------------- callbacks answered by the test


@needs_callbacks
def test_a_callback_answered_by_the_test(durable_runner):
    @ds.durable_handler
    def approval_flow(event, ctx):
        callback = ctx.create_callback("manager-approval")
        ctx.step("notify-manager", lambda s: f"please answer {callback.callback_id}")
        decision = callback.result()
        ctx.wait(60, name="grace")
        return {"approved": decision["approved"], "by": decision["by"]}

    runner = durable_runner(approval_flow)
    runner.start({"amount": 500})
    callback_id = runner.wait_for_callback("manager-approval")
    assert runner.result().status == "RUNNING"  # it waits for us
    assert runner.result().get_step("notify-manager").result == f"please answer {callback_id}"

    runner.send_callback_success(callback_id, {"approved": True, "by": "ann"})
    result = runner.wait()
    assert result.status == "SUCCEEDED"
    assert result.result == {"approved": True, "by": "ann"}
    callback = result.get_callback("manager-approval")
    assert isinstance(callback, CallbackOperation)
    assert (callback.status, callback.callback_id, callback.result) == ("SUCCEEDED", callback_id,
                                                                      {"approved": True, "by": "ann"})


@needs_callbacks
def test_callback_failure_heartbeat_and_raw_payloads(durable_runner):
    @ds.durable_handler
    def handler(event, ctx):
        config = ds.CallbackConfig(heartbeat_timeout=ds.Duration.from_minutes(10))
        first = ctx.create_callback("first", config)
        raw = first.result()
        try:
            ctx.create_callback("second").result()
        except ds.CallbackError as exc:
            return {"raw": raw, "error": [exc.error_type, exc.error_message]}

    runner = durable_runner(handler)
    runner.start()
    first = runner.wait_for_callback("first")
    runner.advance(9 * 60)
    runner.send_callback_heartbeat(first)  # keeps it alive past the 10-minute heartbeat timeout
    runner.advance(9 * 60)
    runner.send_callback_success(first, raw='"as is"')
    second = runner.wait_for_callback("second")
    runner.send_callback_failure(second, PermissionError("denied"))
    result = runner.wait()
    assert result.result == {"raw": "as is", "error": ["PermissionError", "denied"]}
    assert result.get_callback("second").error_type == "PermissionError"


@needs_callbacks
def test_wait_for_callback_finds_callbacks_of_ctx_wait_for_callback(durable_runner):
    submitted = []

    @ds.durable_handler
    def handler(event, ctx):
        return ctx.wait_for_callback(lambda callback_id, c: submitted.append(callback_id), name="payment")

    runner = durable_runner(handler)
    runner.start()
    callback_id = runner.wait_for_callback("payment")
    assert submitted == [callback_id]
    runner.send_callback_success(callback_id, "paid")
    result = runner.wait()
    assert result.result == "paid"
    assert result.get_callback("payment").callback_id == callback_id


@needs_callbacks
def test_wait_for_callback_advances_time_until_the_callback_exists(durable_runner):
    @ds.durable_handler
    def handler(event, ctx):
        ctx.wait(ds.Duration.from_days(2), name="later")
        return ctx.create_callback("late").result()

    runner = durable_runner(handler)
    runner.start()
    callback_id = runner.wait_for_callback("late")
    assert runner.now() - runner.result().get_wait("later").start_time == dt.timedelta(days=2)
    assert runner.result().get_callback("late").status == "STARTED"
    runner.send_callback_success(callback_id, 7)
    assert runner.wait().result == 7


@needs_callbacks
def test_wait_for_callback_fails_clearly_when_no_such_callback_comes(durable_runner):
    @ds.durable_handler
    def handler(event, ctx):
        ctx.create_callback("other").result()

    runner = durable_runner(handler)
    runner.start()
    with pytest.raises(OperationNotFoundError) as info:
        runner.wait_for_callback("approval")
    message = str(info.value)
    assert "no callback named 'approval' waiting for an answer" in message
    assert "other  callback  STARTED" in message

    done = durable_runner(order_workflow)
    done.start({"user": "u"})
    with pytest.raises(OperationNotFoundError, match=r"the execution ended \(SUCCEEDED\)"):
        done.wait_for_callback()


# --------------------------------------------------------------------------- pytest plugin


PLUGIN_TESTS = '''
import durable_sync as ds


@ds.durable_handler
def handler(event, ctx):
    ctx.step("fetch", lambda s: 1)
    with ctx.child("pay") as c:
        c.step("charge", _boom, config=ds.StepConfig(retry_strategy=ds.RetryPresets.none()))
    return "done"


def _boom(step_ctx):
    raise ValueError("card declined")


made = []


def test_fixture_runs(durable_runner):
    runner = durable_runner(handler)
    made.append(runner)
    result = runner.run()
    assert result.get_step("fetch").result == 1


def test_status_assertion_shows_the_tree(durable_runner):
    result = durable_runner(handler).run()
    assert result.status == "SUCCEEDED"


def test_step_status_assertion_shows_the_step(durable_runner):
    result = durable_runner(handler).run()
    assert result.get_step("charge").status == "SUCCEEDED"


def test_runners_are_closed_at_teardown():
    assert made and made[0]._closed
'''


def _run_pytest(tmp_path: Path, env_extra: dict, args: list) -> subprocess.CompletedProcess:
    (tmp_path / "test_plugin_usage.py").write_text(PLUGIN_TESTS)
    env = {**os.environ, **env_extra}
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args, str(tmp_path)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)


def test_plugin_fixture_and_assertion_messages(tmp_path):
    """The plugin module, loaded by name (entry-point autoloading off, so installed or not is the same)."""
    env = {"PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1",
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    proc = _run_pytest(tmp_path, env, ["-p", "durable_sync.testing.plugin"])
    out = proc.stdout + proc.stderr
    assert "2 failed, 2 passed" in out, out
    # `assert result.status == "SUCCEEDED"` shows the execution and its tree
    assert "assert 'FAILED' == 'SUCCEEDED'" in out, out
    assert "execution FAILED, error ValueError: card declined" in out
    assert re.search(r"└─ pay +child +FAILED", out), out
    assert re.search(r"└─ charge +step +FAILED +1 attempt \(1 failed\) +\S+ ms +ValueError: card declined", out), out
    # `assert step.status == ...` shows the step and its attempts
    assert "attempt 1: FAILED" in out, out


TOOLKIT_FAILURES = '''
import durable_sync as ds
from durable_sync.testing import DurableTestRunner, replay


@ds.durable_handler
def handler(event, ctx):
    return ctx.step("fetch", lambda s: 1)


@ds.durable_handler
def renamed(event, ctx):
    return ctx.step("fetch-v2", lambda s: 1)


def test_missing_step():
    result = DurableTestRunner(handler).run()
    result.get_step("charge")  # LINE-MISSING


def test_wrong_outcome():
    result = DurableTestRunner(handler).run()
    result.assert_failed()  # LINE-OUTCOME


def test_changed_code():
    result = DurableTestRunner(handler).run()
    replay(result, renamed)  # LINE-REPLAY
'''


def test_toolkit_failures_show_the_test_line_and_message_not_library_frames(tmp_path):
    (tmp_path / "test_toolkit_failures.py").write_text(TOOLKIT_FAILURES)
    env = {**os.environ, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1",
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    out = proc.stdout + proc.stderr
    assert "3 failed" in out, out
    for marker in ("LINE-MISSING", "LINE-OUTCOME", "LINE-REPLAY"):
        assert f"# {marker}" in out, out  # the user's own line is shown
    assert "no step named 'charge' in the execution (SUCCEEDED)" in out
    assert "expected the execution to fail, but it is SUCCEEDED" in out
    assert "the code asks for STEP 'fetch-v2', but the record has STEP 'fetch'" in out
    for library in ("inspection/model.py", "testing/results.py", "testing/replay_check.py", "def get_operation",
                    "def assert_failed", "def replay("):
        assert library not in out, f"{library} is shown:\n{out}"


def test_plugin_is_registered_for_this_test_session(request):
    plugins = request.config.pluginmanager
    import durable_sync.testing.plugin as plugin_module
    assert plugins.is_registered(plugin_module)


def test_entry_point_is_declared():
    setup_py = (REPO / "setup.py").read_text()
    assert '"pytest11": ["durable_sync=durable_sync.testing.plugin"]' in setup_py


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("DURABLE_SLOW") != "1", reason="needs network for pip; set DURABLE_SLOW=1")
def test_plugin_works_when_installed_in_a_fresh_virtualenv(tmp_path):
    """pip install the project into a new venv and use the fixture from a test outside the repo."""
    src = tmp_path / "src"
    shutil.copytree(REPO, src, ignore=shutil.ignore_patterns(".git", "*.egg-info", "build", "__pycache__",
                                                             ".pytest_cache", "*.db*", ".venv", "benchmarks"))
    if not (src / "README.md").exists():  # setup.py reads it
        (src / "README.md").write_text("durable_sync\n")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    py = venv / "bin" / "python"
    pip = [str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, str(src)], check=True, timeout=900)
    subprocess.run([*pip, "pytest", "freezegun"], check=True, timeout=900)
    check = tmp_path / "plugin_check"
    check.mkdir()
    (check / "test_x.py").write_text(textwrap.dedent('''
        import time
        from freezegun import freeze_time
        import durable_sync as ds

        @ds.durable_handler
        def handler(event, ctx):
            def flaky(step_ctx):
                if step_ctx.attempt < 3:
                    raise RuntimeError("not yet")
                return time.time()
            policy = ds.RetryPolicy(initial_delay=2, backoff_rate=2, jitter="none")
            return ctx.step("flaky", flaky, config=ds.StepConfig(retry_strategy=policy))

        @freeze_time("2026-01-01")
        def test_uses_the_fixture(durable_runner):
            result = durable_runner(handler).run()
            assert result.status == "SUCCEEDED"
            assert result.get_step("flaky").retry_delays == [2, 4]
            assert result.result == 1767225600 + 6

        def test_failure_shows_the_tree(durable_runner):
            result = durable_runner(handler).run()
            assert result.status == "FAILED"
    '''))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTEST_DISABLE_PLUGIN_AUTOLOAD",
                                                             "PYTEST_ADDOPTS")}
    proc = subprocess.run([str(py), "-m", "pytest", "-q", "-p", "no:cacheprovider", str(check)], cwd=check,
                          env=env, capture_output=True, text=True, timeout=300)
    out = proc.stdout + proc.stderr
    print(out)
    assert "1 failed, 1 passed" in out, out
    assert "'SUCCEEDED' == 'FAILED'" in out and "flaky  step  SUCCEEDED  3 attempts (2 failed)  back-off 2 s, 4 s" in out, out
    where = subprocess.run([str(py), "-c", "import durable_sync; print(durable_sync.__file__)"], cwd=check,
                           env=env, capture_output=True, text=True, check=True).stdout
    assert str(venv) in where, where  # the installed copy, not the repo
