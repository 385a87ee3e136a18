"""Handler exceptions at random points: crashes of the invocation, transient step errors, fatal errors.

- A *crash* is ``SystemExit`` raised at a fault point (between operations, inside a step body, a
  map branch, a child block, a condition check): on Lambda the runtime process exits, so the
  engine must record a ``Runtime.ExitError`` invocation and invoke again; replay must resume
  without re-running completed steps, and at-most-once steps must not run twice in one attempt.
- A *transient error* raised by a step body goes through the step's retry strategy.
- A *fatal error* raised by workflow code (outside any step) fails the execution with that
  error, keeping every step that completed before it, each run once.

At most two crashes in a row hit one execution: the engine fails an execution after three
consecutive failed invocations (MAX_INVOCATION_ATTEMPTS), which is the right terminal state for
a handler that always crashes, and is tested on its own.
"""
from __future__ import annotations

import functools
import random
import threading

import pytest

from durable_sync.local import LocalEngine
from durable_sync.local.engine import MAX_INVOCATION_ATTEMPTS

from . import chaos
from .chaos import STATS, Probe, audit_run, chaos_workflow, drive, scale

EVENT = {"steps": 5, "items": 4}


class TransientError(Exception):
    pass


class Boom(Exception):
    pass


class Injector:
    """Raises at fault points: SystemExit (crash) and TransientError (inside step bodies)."""

    def __init__(self, seed: int, p_crash: float, p_error: float, crash_at: set | None = None) -> None:
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.p_crash, self.p_error = p_crash, p_error
        self.crash_at = set(crash_at or ())  # crash the first time each of these points is reached
        self.consecutive = 0  # failed invocations in a row (the engine gives up at MAX_INVOCATION_ATTEMPTS)
        self.crashes = 0
        self.errors = 0
        self.points: list[str] = []
        self.crashed = False  # one crash per invocation (concurrent map branches could both roll one)

    def __call__(self, point: str) -> None:
        with self.lock:
            self.points.append(point)
            if point in self.crash_at:
                self.crash_at.discard(point)
                self.crashes += 1
                raise SystemExit(f"injected crash at {point}")
            roll = self.rng.random()
            if point.startswith("body:") and roll < self.p_error:
                self.errors += 1
                raise TransientError(f"injected transient error at {point}")
            if not self.crashed and self.consecutive < MAX_INVOCATION_ATTEMPTS - 1 and roll > 1 - self.p_crash:
                self.crashed = True
                self.crashes += 1
                raise SystemExit(f"injected crash at {point}")


def guarded(injector: Injector):
    """The workflow as a Lambda handler that counts consecutive failed invocations for the injector."""

    @functools.wraps(chaos_workflow)
    def handler(event, lambda_context=None):
        injector.crashed = False
        try:
            output = chaos_workflow(event, lambda_context)
        except BaseException:
            injector.consecutive += 1
            raise
        injector.consecutive = 0
        return output

    return handler


def run_once(injector: Injector, name: str):
    chaos.PROBE = probe = Probe(injector)
    engine = LocalEngine(db=":memory:", skip_time=True)
    try:
        arn, result = drive(engine, guarded(injector), EVENT, name, probe)
        audit = audit_run(engine, arn, result, probe, EVENT)
        exit_errors = sum(1 for e in engine.history(arn) if e["EventType"] == "InvocationCompleted"
                          and ((e["InvocationCompletedDetails"].get("Error") or {}).get("Payload") or {}).get(
                              "ErrorType") == "Runtime.ExitError")
    finally:
        engine.close()
        chaos.PROBE = Probe()
    return result, audit, exit_errors


def fault_points() -> list[str]:
    """Every fault point a clean run of the workflow passes (in order, first occurrence)."""
    injector = Injector(0, 0.0, 0.0)
    result, audit, _ = run_once(injector, "points")
    assert result.status == "SUCCEEDED" and not audit.problems, (result, audit.problems)
    return list(dict.fromkeys(injector.points))


def test_a_crash_at_every_fault_point_is_survived():
    points = fault_points()
    assert {"body:s0", "after:s2", "after:w1", "body:kid-b", "branch:1", "body:m0", "poll", "after:cb-result"} <= \
        set(points)
    total = completed = crashes = lost = dups = 0
    problems = []
    for point in points:
        injector = Injector(1, 0.0, 0.0, crash_at={point})
        result, audit, exit_errors = run_once(injector, f"crash-{point}")
        crashes += injector.crashes
        assert injector.crashes == 1, point
        assert exit_errors == 1, (point, exit_errors)  # recorded as a crashed invocation, then invoked again
        problems += [f"{point}: {p}" for p in audit.problems]
        lost += audit.lost
        dups += audit.duplicates
        completed += result.status == "SUCCEEDED"
        total += 1
    STATS.record("crash at every fault point", runs=total, completed=completed, faults={"handler-crash": crashes},
                 lost=lost, duplicates=dups)
    assert not problems, "\n".join(problems)
    assert completed == total


def test_random_crashes_and_transient_step_errors():
    runs = scale(8, 150)
    seed = random.randrange(1 << 30)
    crashes = errors = completed = lost = dups = 0
    problems = []
    for n in range(runs):
        injector = Injector(seed + n, p_crash=0.06, p_error=0.15)
        result, audit, exit_errors = run_once(injector, f"random-{n}")
        crashes += injector.crashes
        errors += injector.errors
        assert exit_errors == injector.crashes, (seed + n, exit_errors, injector.crashes)
        completed += result.status == "SUCCEEDED"
        lost += audit.lost
        dups += audit.duplicates
        problems += [f"seed {seed + n}: {p}" for p in audit.problems]
    STATS.record("random handler crashes and step errors", runs=runs, completed=completed,
                 faults={"handler-crash": crashes, "step-error": errors}, lost=lost, duplicates=dups)
    assert not problems, "\n".join(problems)
    assert completed == runs
    assert crashes > 0 and errors > 0


@pytest.mark.parametrize("point, error_type", [
    ("after:s1", "Boom"), ("after:w1", "Boom"), ("after:kid-a", "Boom"), ("branch:2", "Boom"), ("poll", "Boom"),
    ("after:cb-result", "Boom"),
])
def test_a_fatal_error_fails_the_execution_and_keeps_what_completed(point, error_type):
    def fault(p):
        if p == point:
            raise Boom(f"fatal at {p}")

    chaos.PROBE = probe = Probe(fault)
    engine = LocalEngine(db=":memory:", skip_time=True)
    try:
        arn, result = drive(engine, chaos_workflow, EVENT, "fatal", probe)
        assert result.status == "FAILED"
        assert error_type in (result.error["ErrorType"], result.error["ErrorMessage"]), result.error
        assert f"fatal at {point}" in result.error["ErrorMessage"]
        audit = audit_run(engine, arn, result, probe, EVENT, expect_success=False)
        # every step the workflow got a result from before the error is recorded, and ran once
        acked = {e.key for e in probe.ledger.entries if e.kind == "ack"}
        assert acked and acked <= set(chaos.recorded_steps(engine, arn))
        ran = [e.key for e in probe.ledger.entries if e.kind == "run"]
        assert len(ran) == len(set(ran)), ran
        # one invocation failed the execution: a fatal error is not retried
        failed = [e for e in engine.history(arn) if e["EventType"] == "InvocationCompleted"
                  and e["InvocationCompletedDetails"].get("Error")]
        assert failed == []
    finally:
        engine.close()
        chaos.PROBE = Probe()
    STATS.record(f"fatal error at {point}", runs=1, completed=1, faults={"fatal-error": 1}, lost=audit.lost,
                 duplicates=audit.duplicates)
    assert not audit.problems, audit.problems


def test_a_handler_that_always_crashes_fails_after_bounded_attempts():
    calls = []

    @functools.wraps(chaos_workflow)
    def always_exits(event, lambda_context=None):
        calls.append(1)
        raise SystemExit(3)

    engine = LocalEngine(db=":memory:", skip_time=True)
    try:
        result = engine.run(always_exits, {})
        assert result.status == "FAILED"
        assert result.error["ErrorType"] == "Runtime.ExitError"
        assert "SystemExit" in result.error["ErrorMessage"]
        assert len(calls) == MAX_INVOCATION_ATTEMPTS
    finally:
        engine.close()
    STATS.record("handler always exits", runs=1, completed=1, faults={"handler-crash": len(calls)})
