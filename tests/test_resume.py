"""Crash-safe resume: kill -9 the engine process anywhere, restart it on the same database.

The main test runs a 100-step workflow in a child process (in CheckpointMode.AWAITED and
PIPELINED), SIGKILLs that process at random moments (and at random checkpoints, just before
and just after the SQLite commit), restarts it each time on the same database, and checks the
ledger the step bodies append to:

- the execution completes with the right result;
- no completed step ran again: after a step's success was acknowledged ("ack" in the ledger:
  logged when the next step body starts, which SPEC §3 allows only once the result is saved)
  its body never runs again, and the result stored for every step is the one of its last run;
- at-most-once steps ran at most once per attempt;
- nothing acknowledged was lost: every acknowledged result is the one in the final result.

Quick by default (a few kills of each kind); DURABLE_SLOW=1 (or DURABLE_KILLS=N) does more.
"""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from collections import defaultdict
from pathlib import Path

import pytest

import durable_sync as ds
from durable_sync.local import LocalEngine

ROOT = Path(__file__).resolve().parent.parent
SLOW = os.environ.get("DURABLE_SLOW") == "1"
EXTERNAL_KILLS = int(os.environ.get("DURABLE_KILLS", "40" if SLOW else "6"))
COMMIT_KILLS = int(os.environ.get("DURABLE_COMMIT_KILLS", "20" if SLOW else "4"))
STEPS = 100

WORKFLOW = textwrap.dedent('''
    """A 100-step workflow whose steps append to a ledger file (run by test_resume.py)."""
    import json, os, sys, time

    import durable_sync as ds
    from durable_sync.local import LocalEngine
    from tests.reliability.killing import kill_at_commit_from_env

    LEDGER = os.environ["LEDGER"]
    PID = os.getpid()
    AT_MOST_ONCE = ds.StepConfig(
        step_semantics=ds.StepSemantics.AT_MOST_ONCE_PER_RETRY,
        retry_strategy=ds.RetryPolicy(max_attempts=1000, initial_delay=1, backoff_rate=1.0, jitter="none"))


    def log(line):
        fd = os.open(LEDGER, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, (line + "\\n").encode())
        finally:
            os.close(fd)


    PIPELINED = os.environ.get("MODE") == "pipelined"


    @ds.durable_handler(checkpoint_mode=ds.CheckpointMode.PIPELINED if PIPELINED else None)
    def handler(event, ctx):
        results = []
        fresh = []  # steps this process ran whose results nothing has acted on yet
        for i in range(event["steps"]):
            ran = []

            def body(step, i=i, ran=ran):
                # A step body acts on the results before it: they are saved by now (SPEC §3) -- in
                # PIPELINED mode only once an awaited update went out (an at-most-once START).
                if not PIPELINED or i % 10 == 5:
                    for j in fresh:
                        log(f"ack {j} {PID}")
                    fresh.clear()
                log(f"run {i} {PID} {step.attempt}")
                ran.append(True)
                time.sleep(float(os.environ.get("STEP_WORK", "0.002")))  # simulated work, not a durable wait
                return {"i": i, "pid": PID, "sq": i * i}

            value = ctx.step(f"s{i}", body, config=AT_MOST_ONCE if i % 10 == 5 else None)
            if ran:
                fresh.append(i)
            results.append(value)
        return {"sum": sum(r["sq"] for r in results), "pids": [r["pid"] for r in results]}


    if __name__ == "__main__":
        kill_at_commit_from_env()
        engine = LocalEngine(db=os.environ["DB"], skip_time=True, functions={"handler": handler})
        try:
            result = engine.run(handler, {"steps": int(os.environ["STEPS"])}, name="ledger")
            print(json.dumps({"status": result.status, "result": result.result}))
        finally:
            engine.close()
''')


def _env(tmp_path: Path, **extra: str) -> dict:
    env = dict(os.environ)
    env.update({"LEDGER": str(tmp_path / "ledger.txt"), "DB": str(tmp_path / "durable.db"), "STEPS": str(STEPS),
                "PYTHONPATH": os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])})
    env.update(extra)
    return env


def _ledger_lines(tmp_path: Path) -> list[list[str]]:
    path = tmp_path / "ledger.txt"
    if not path.exists():
        return []
    return [line.split() for line in path.read_text().splitlines() if line.strip()]


def _kill_externally(script: Path, tmp_path: Path, rng: random.Random, max_delay: float) -> str:
    """Start the engine process, let it get into the workflow, SIGKILL it at a random moment."""
    before = len(_ledger_lines(tmp_path))
    proc = subprocess.Popen([sys.executable, str(script)], env=_env(tmp_path), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    while proc.poll() is None and len(_ledger_lines(tmp_path)) == before and time.monotonic() < deadline:
        time.sleep(0.002)
    time.sleep(rng.uniform(0, max_delay))
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        return "killed"
    out, err = proc.communicate()
    assert proc.returncode == 0, err.decode()[-2000:]
    return "finished"


def _kill_at_commit(script: Path, tmp_path: Path, when: str, n: int) -> str:
    proc = subprocess.run([sys.executable, str(script)], env=_env(tmp_path, KILL_AT=f"{when}:{n}"),
                          capture_output=True, timeout=60)
    if proc.returncode == -signal.SIGKILL:
        return "killed"
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    return "finished"


@pytest.mark.parametrize("mode", ["awaited", "pipelined"])
def test_sigkill_at_random_points_loses_nothing_acknowledged(tmp_path, monkeypatch, mode):
    """In PIPELINED mode the steps since the last awaited update re-run after a kill (their results were
    never saved), and still nothing is recorded twice or lost once acknowledged."""
    monkeypatch.setenv("MODE", mode)
    seed = int(os.environ.get("DURABLE_KILL_SEED", random.randrange(1 << 30)))
    rng = random.Random(seed)
    script = tmp_path / "ledger_workflow.py"
    script.write_text(WORKFLOW)
    # Spread the kills over the first ~half of the workflow (the last run finishes the rest): each
    # process gets to run a few steps (about 3 ms each) before it dies.
    kills = ["external"] * EXTERNAL_KILLS + ["commit"] * COMMIT_KILLS
    rng.shuffle(kills)
    steps_per_kill = max(1.0, STEPS / (2 * len(kills)))
    outcomes = []
    for kind in kills:
        if kind == "external":
            outcomes.append(_kill_externally(script, tmp_path, rng, max_delay=2 * steps_per_kill * 0.003))
        else:  # about two commits per step; die just before or just after the N-th one
            n = rng.randint(1, max(2, int(4 * steps_per_kill)))
            outcomes.append(_kill_at_commit(script, tmp_path, rng.choice(["before", "after"]), n))
    final = subprocess.run([sys.executable, str(script)], env=_env(tmp_path), capture_output=True, timeout=120)
    assert final.returncode == 0, final.stderr.decode()[-3000:]
    report = json.loads(final.stdout.decode().strip().splitlines()[-1])
    context = f"(seed {seed}; outcomes {outcomes})"

    # The execution completes with the right result.
    assert report["status"] == "SUCCEEDED", context
    assert report["result"]["sum"] == sum(i * i for i in range(STEPS)), context
    final_pids = report["result"]["pids"]
    assert outcomes.count("killed") >= (EXTERNAL_KILLS + COMMIT_KILLS) // 2, context  # the kills did interrupt it

    runs: dict[int, list[tuple[int, int, int]]] = defaultdict(list)  # step -> [(line no, pid, attempt)]
    acks: dict[int, list[tuple[int, int]]] = defaultdict(list)  # step -> [(line no, pid)]
    for n, parts in enumerate(_ledger_lines(tmp_path)):
        if parts[0] == "run":
            runs[int(parts[1])].append((n, int(parts[2]), int(parts[3])))
        elif parts[0] == "ack":
            acks[int(parts[1])].append((n, int(parts[2])))
    assert sorted(runs) == list(range(STEPS)), context
    for i in range(STEPS):
        # No completed step ran twice: nothing runs after the first acknowledged success.
        if acks[i]:
            first_ack = acks[i][0][0]
            assert all(line < first_ack for line, _, _ in runs[i]), f"step {i} re-ran after its ack {context}"
            assert len(acks[i]) == 1, f"step {i} acknowledged twice {context}"
            # Nothing acknowledged was lost: the acknowledged result is the one the execution kept.
            assert final_pids[i] == acks[i][0][1], f"step {i}: acknowledged result lost {context}"
        # The stored result is the one of the step's last run (a run whose success was persisted
        # is never followed by another).
        assert final_pids[i] == runs[i][-1][1], f"step {i}: result is not from its last run {context}"
        if i % 10 == 5:  # at-most-once: at most one run per attempt
            attempts = [attempt for _, _, attempt in runs[i]]
            assert len(attempts) == len(set(attempts)), f"at-most-once step {i} ran twice in one attempt {context}"
        else:  # at-least-once: re-runs only happen in processes that were killed
            pids = [pid for _, pid, _ in runs[i]]
            assert len(pids) == len(set(pids)), f"step {i} ran twice in one process {context}"

    engine = LocalEngine(db=str(tmp_path / "durable.db"), skip_time=True)
    try:
        [execution] = engine.list_executions()
        history = engine.history(execution["DurableExecutionArn"])
    finally:
        engine.close()
    succeeded = [e["Name"] for e in history if e["EventType"] == "StepSucceeded"]
    assert succeeded == [f"s{i}" for i in range(STEPS)], context
    assert [e["EventId"] for e in history] == list(range(1, len(history) + 1))
    assert history[-1]["EventType"] == "ExecutionSucceeded"


# -- resume in the same process: handler references, registered functions, missing handlers ----------
RESUME_MODULE = textwrap.dedent('''
    import durable_sync as ds

    CALLS = []


    @ds.durable_handler
    def handler(event, ctx):
        first = ctx.step("first", lambda s: CALLS.append("first") or event["x"])
        ctx.wait(60, name="pause")
        second = ctx.step("second", lambda s: CALLS.append("second") or first + 1)
        return {"second": second}
''')


def _module(tmp_path: Path, monkeypatch, name: str = "resume_mod"):
    (tmp_path / f"{name}.py").write_text(RESUME_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop(name, None)
    import importlib

    return importlib.import_module(name)


def _started(tmp_path: Path, monkeypatch) -> tuple[str, str]:
    module = _module(tmp_path, monkeypatch)
    db = str(tmp_path / "durable.db")
    engine = LocalEngine(db=db, skip_time=True)
    try:
        arn = engine.start(module.handler, {"x": 41}, name="r1")
        assert engine.get_execution(arn).status == "RUNNING"
    finally:
        engine.close()
    sys.modules.pop("resume_mod", None)  # the restarted engine must import it again
    return db, arn


def test_a_restarted_engine_imports_the_handler_from_its_reference_and_fires_due_timers(tmp_path, monkeypatch):
    db, arn = _started(tmp_path, monkeypatch)
    engine = LocalEngine(db=db, skip_time=True)
    try:
        before = [e["EventType"] for e in engine.history(arn)]
        assert before.count("InvocationCompleted") == 1  # a cleanly suspended execution is not re-invoked
        result = engine.wait(arn)
        assert (result.status, result.result) == ("SUCCEEDED", {"second": 42})
        import resume_mod

        assert resume_mod.CALLS == ["second"]  # the first step was not re-run
        types = [e["EventType"] for e in engine.history(arn)]
        assert types[len(before):] == ["WaitSucceeded", "StepStarted", "StepSucceeded", "InvocationCompleted",
                                       "ExecutionSucceeded"]
    finally:
        engine.close()


def test_a_registered_function_wins_over_the_handler_reference(tmp_path, monkeypatch):
    db, arn = _started(tmp_path, monkeypatch)
    seen = []

    @ds.durable_handler
    def replacement(event, ctx):
        seen.append("replacement")
        ctx.step("first", lambda s: 0)
        ctx.wait(60, name="pause")
        return {"second": ctx.step("second", lambda s: "from replacement")}

    engine = LocalEngine(db=db, skip_time=True, functions={"handler": replacement})
    try:
        result = engine.wait(arn)
        assert result.result == {"second": "from replacement"}
        assert seen and "resume_mod" not in sys.modules
    finally:
        engine.close()


def test_an_execution_without_a_handler_stays_running_until_one_is_registered(tmp_path, monkeypatch):
    db, arn = _started(tmp_path, monkeypatch)
    (tmp_path / "resume_mod.py").unlink()  # its module is gone
    engine = LocalEngine(db=db, skip_time=True)
    try:
        result = engine.wait(arn)  # the wait fires; the handler cannot be imported
        assert result.status == "RUNNING"
        missing = engine.missing_handlers()
        assert list(missing) == [arn]
        assert "'handler'" in missing[arn] and "resume_mod:handler" in missing[arn]
        assert [e["EventType"] for e in engine.history(arn)][-1] == "WaitSucceeded"  # not failed, not invoked

        @ds.durable_handler
        def handler(event, ctx):
            first = ctx.step("first", lambda s: 0)
            ctx.wait(60, name="pause")
            return {"second": ctx.step("second", lambda s: first + 2)}

        engine.register_function("handler", handler)
        result = engine.wait(arn)
        assert (result.status, result.result) == ("SUCCEEDED", {"second": 43})
        assert engine.missing_handlers() == {}
    finally:
        engine.close()


def test_virtual_time_does_not_run_backwards_after_a_restart(tmp_path, monkeypatch):
    module = _module(tmp_path, monkeypatch)
    db = str(tmp_path / "durable.db")
    engine = LocalEngine(db=db, skip_time=True)
    try:
        arn = engine.start(module.handler, {"x": 1})
        engine.advance(10 * 24 * 3600)  # ten virtual days
        assert engine.get_execution(arn).status == "SUCCEEDED"
        last = engine.history(arn)[-1]["EventTimestamp"]
    finally:
        engine.close()
    engine = LocalEngine(db=db, skip_time=True)
    try:
        arn2 = engine.start(module.handler, {"x": 2})
        assert engine.history(arn2)[0]["EventTimestamp"] >= last
    finally:
        engine.close()


# -- interrupted steps: the process dies inside a step body ---------------------------------------------
CRASH_MODULE = textwrap.dedent('''
    import os, sys
    import durable_sync as ds

    MARK = os.environ["CRASH_MARK"]
    RUNS = os.environ["RUNS_FILE"]


    def body(step):
        with open(RUNS, "a") as fh:
            fh.write(f"{step.attempt}\\n")
        if not os.path.exists(MARK):
            open(MARK, "w").close()
            os._exit(1)  # the process dies in the middle of the step
        return "done"


    def semantics():
        if os.environ.get("SEMANTICS") == "at-most-once":
            return ds.StepSemantics.AT_MOST_ONCE_PER_RETRY
        return ds.StepSemantics.AT_LEAST_ONCE_PER_RETRY


    @ds.durable_handler
    def handler(event, ctx):
        retry = ds.RetryPolicy(max_attempts=3, initial_delay=5, backoff_rate=1.0, jitter="none")
        config = ds.StepConfig(step_semantics=semantics(), retry_strategy=retry)
        return ctx.step("fragile", body, config=config)


    if __name__ == "__main__":
        from durable_sync.local import LocalEngine
        engine = LocalEngine(db=os.environ["DB"], skip_time=True)
        engine.run(handler, None, name="crash")
''')


@pytest.mark.parametrize("semantics", ["at-least-once", "at-most-once"])
def test_a_step_interrupted_by_a_crash_is_handled_by_its_semantics(tmp_path, monkeypatch, semantics):
    (tmp_path / "crash_mod.py").write_text(CRASH_MODULE)
    env = _env(tmp_path, CRASH_MARK=str(tmp_path / "mark"), RUNS_FILE=str(tmp_path / "runs"), SEMANTICS=semantics)
    proc = subprocess.run([sys.executable, str(tmp_path / "crash_mod.py")], env=env, capture_output=True, timeout=60)
    assert proc.returncode == 1, proc.stderr.decode()
    for key in ("CRASH_MARK", "RUNS_FILE", "SEMANTICS"):
        monkeypatch.setenv(key, env[key])
    engine = LocalEngine(db=env["DB"], skip_time=True)  # imports crash_mod's handler from its file reference
    try:
        [execution] = engine.list_executions()
        arn = execution["DurableExecutionArn"]
        result = engine.wait(arn)
        assert (result.status, result.result) == ("SUCCEEDED", "done")
        step_events = [(e["EventType"], (e.get("StepFailedDetails") or {}).get("RetryDetails"))
                       for e in engine.history(arn) if e["EventType"].startswith("Step")]
    finally:
        engine.close()
    attempts = (tmp_path / "runs").read_text().split()
    if semantics == "at-least-once":
        # The interrupted attempt simply runs again: no failure recorded, attempt 1 twice.
        assert attempts == ["1", "1"]
        assert [t for t, _ in step_events] == ["StepStarted", "StepSucceeded"]
    else:
        # At most once per attempt: the interruption is a failed attempt 1, retried after 5 s as attempt 2.
        assert attempts == ["1", "2"]
        assert [t for t, _ in step_events] == ["StepStarted", "StepFailed", "StepStarted", "StepSucceeded"]
        assert step_events[1][1] == {"CurrentAttempt": 1, "NextAttemptDelaySeconds": 5}
