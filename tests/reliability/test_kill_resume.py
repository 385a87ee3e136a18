"""SIGKILL of the engine process in workflows with waits, callbacks and maps, resumed on the same database.

tests/test_resume.py kills a 100-step workflow; this extends the same idea to the other
operations. The engine process (kill_workflow.py) runs a workflow of phases, each: three steps
(one at-most-once), a durable wait, a callback, a map of four branches on two threads (steps,
an at-most-once step, waits inside branches), the callback's answer, and a child block with a
step and a wait. It is killed again and again -- at random moments from outside, and just
before / just after the N-th SQLite COMMIT from inside -- and restarted on the same database.
Between runs the test sometimes answers the waiting callback from outside, through the
database's inbox (as ``durable-sync callback succeed`` does), so answers also cross kills.

Checks: the execution SUCCEEDS with every step's result; no step body ran again after the run
whose result was recorded, none ran twice in one process, no at-most-once body ran twice in one
attempt; every acknowledged step result and callback answer is the one the execution kept; no
operation completed twice; history event ids are contiguous.
"""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

from durable_sync.local import LocalEngine
from durable_sync.local.store import Reader

from .chaos import STATS, audit_history, audit_steps, parse_ledger_file, scale

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
SCRIPT = HERE / "kill_workflow.py"
PHASES = scale(3, 4)
ROUNDS = scale(1, 6)  # executions, each killed EXTERNAL_KILLS + COMMIT_KILLS times
EXTERNAL_KILLS = scale(3, 4)
COMMIT_KILLS = scale(3, 4)


def _env(tmp_path: Path, **extra: str) -> dict:
    env = dict(os.environ)
    env.update({"LEDGER": str(tmp_path / "ledger.txt"), "DB": str(tmp_path / "chaos.db"), "PHASES": str(PHASES),
                "PYTHONPATH": os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])})
    env.update(extra)
    return env


def _ledger_size(tmp_path: Path) -> int:
    path = tmp_path / "ledger.txt"
    return path.stat().st_size if path.exists() else 0


def _kill_externally(tmp_path: Path, rng: random.Random) -> str:
    before = _ledger_size(tmp_path)
    proc = subprocess.Popen([sys.executable, str(SCRIPT)], env=_env(tmp_path), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    while proc.poll() is None and _ledger_size(tmp_path) == before and time.monotonic() < deadline:
        time.sleep(0.002)
    time.sleep(rng.uniform(0, 0.15))
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        return "killed"
    _, err = proc.communicate()
    assert proc.returncode == 0, err.decode()[-3000:]
    return "finished"


def _kill_at_commit(tmp_path: Path, when: str, n: int) -> str:
    proc = subprocess.run([sys.executable, str(SCRIPT)], env=_env(tmp_path, KILL_AT=f"{when}:{n}"),
                          capture_output=True, timeout=120)
    if proc.returncode == -signal.SIGKILL:
        return "killed"
    assert proc.returncode == 0, proc.stderr.decode()[-3000:]
    return "finished"


def _post_answer(db: str, rng: random.Random):
    """Answer a waiting callback through the inbox while no engine runs; returns (row, name, by) or None."""
    if not os.path.exists(db):
        return None
    with Reader(db) as reader:
        executions = reader.executions(name="chaos")
        if not executions:
            return None
        ex = reader.execution(executions[0].arn)
        waiting = [op for op in ex.ops.values() if op["Type"] == "CALLBACK" and op["Status"] == "STARTED"]
        if not waiting:
            return None
        op = rng.choice(waiting)
        by = f"inbox-{uuid.uuid4().hex[:6]}"
        row = reader.post_callback("succeed", op["CallbackDetails"]["CallbackId"], json.dumps({"by": by}))
        return row, op["Name"], by


def test_sigkill_with_waits_callbacks_and_maps_loses_nothing(tmp_path):
    seed = int(os.environ.get("DURABLE_KILL_SEED", random.randrange(1 << 30)))
    for n in range(ROUNDS):
        round_path = tmp_path / f"round-{n}"
        round_path.mkdir()
        _one_execution(round_path, seed + n)


def _one_execution(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    db = str(tmp_path / "chaos.db")
    kills = ["external"] * EXTERNAL_KILLS + ["commit"] * COMMIT_KILLS
    rng.shuffle(kills)
    outcomes, posted = [], []
    for kind in kills:
        if rng.random() < 0.5 and (answer := _post_answer(db, rng)) is not None:
            posted.append(answer)
        if kind == "external":
            outcomes.append(_kill_externally(tmp_path, rng))
        else:
            outcomes.append(_kill_at_commit(tmp_path, rng.choice(["before", "after"]), rng.randint(1, 30)))
    final = subprocess.run([sys.executable, str(SCRIPT)], env=_env(tmp_path), capture_output=True, timeout=180)
    context = f"(seed {seed}; outcomes {outcomes})"
    assert final.returncode == 0, final.stderr.decode()[-3000:] + final.stdout.decode()[-2000:] + context
    report = json.loads(final.stdout.decode().strip().splitlines()[-1])
    assert report["status"] == "SUCCEEDED", (report, context)
    result = report["result"]

    entries = parse_ledger_file(str(tmp_path / "ledger.txt"))
    expected = {f"p{p}{k}" for p in range(PHASES) for k in ("s0", "s1", "s2", "c", "m0a", "m0b", "m1a", "m1b",
                                                              "m2a", "m2b", "m3a", "m3b")}
    assert set(result["steps"]) == expected, context
    at_most_once = {f"p{p}s2" for p in range(PHASES)} | {f"p{p}m1a" for p in range(PHASES)}
    audit = audit_steps([e for e in entries if e.kind != "cback"], result["steps"], at_most_once,
                        one_run_per_process=True)

    # callback answers: the driver's ("cback") and the inbox's ("ok" outcomes) are acknowledged ones
    acked: dict[str, list[str]] = {}
    for e in entries:
        if e.kind == "cback":
            acked.setdefault(e.key, []).append(e.token)
    with Reader(db) as reader:
        for row, name, by in posted:
            outcome = reader.inbox_outcome(row)
            assert outcome is not None, f"inbox answer {row} was never applied {context}"
            if outcome == "ok":
                acked.setdefault(name, []).append(by)
    assert set(result["callbacks"]) == {f"p{p}-cb" for p in range(PHASES)}, context
    for name, answer in result["callbacks"].items():
        got = acked.get(name, [])
        if len(got) > 1:
            audit.duplicate(f"callback {name} accepted {len(got)} answers: {got}")
        if got and answer != {"by": got[0]}:
            audit.lose(f"callback {name}: accepted answer {got[0]} but the execution saw {answer}")

    engine = LocalEngine(db=db, skip_time=True)
    try:
        [execution] = engine.list_executions()
        history = engine.history(execution["DurableExecutionArn"])
    finally:
        engine.close()
    audit.merge(audit_history(history))
    waits = [e["Name"] for e in history if e["EventType"] == "WaitStarted"]
    if len(waits) != len(set(waits)):
        audit.duplicate(f"a wait started twice: {sorted(waits)}")
    assert len(waits) == PHASES * 4, waits  # p-wait, two branch waits, the child's wait
    assert history[-1]["EventType"] == "ExecutionSucceeded"

    killed = outcomes.count("killed")
    STATS.record(f"SIGKILL with waits, callbacks and maps; {len(posted)} answers via the inbox", runs=1,
                 completed=1, faults={"sigkill": killed},
                 lost=audit.lost, duplicates=audit.duplicates)
    assert not audit.problems, "\n".join(audit.problems) + context
    assert killed >= len(kills) // 2, context  # the kills did interrupt it
