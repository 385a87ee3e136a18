"""Shared machinery of the fault-injection suite: the tally, ledgers and audits, and the chaos workflow.

The tally (``STATS``) is what the suite reports at the end of the session. Each scenario
adds the executions it ran, the faults it injected, and what its audits found:

- a *lost update* is an acknowledged write that the final state does not hold: a step result
  something acted on (a later step body started on the thread that got it back from
  ``ctx.step``: SPEC §3 saves a result before the next step body runs, not before ``ctx.step``
  returns), a checkpoint update the client got a success answer for, a callback answer the
  engine accepted;
- a *duplicate step execution* is a step body that ran again after a run of it had been
  recorded as the step's result (or twice in one attempt for an at-most-once step).

Audits work from ledgers the step bodies write as they run (``run`` when a body starts,
``ret`` when it returns its result token, ``ack`` when the next step body on the thread that
got the token back from ``ctx.step`` starts), compared with the execution's final result and
history.
"""
from __future__ import annotations

import collections
import json
import os
import sqlite3
import threading
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Optional

import durable_sync as ds
from durable_sync.local.store import SqliteStore

SLOW = os.environ.get("DURABLE_SLOW") == "1"


def scale(quick: int, slow: int) -> int:
    """How many of something to do: ``quick`` by default, ``slow`` with DURABLE_SLOW=1."""
    return slow if SLOW else quick


# -- the tally ------------------------------------------------------------------------------------
class Stats:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.runs = 0
        self.completed = 0
        self.faults: collections.Counter = collections.Counter()
        self.lost = 0
        self.duplicates = 0
        self.scenarios: list[str] = []

    def record(self, scenario: str, *, runs: int = 0, completed: int = 0, faults: Optional[dict] = None,
               lost: int = 0, duplicates: int = 0) -> str:
        faults = {k: v for k, v in (faults or {}).items() if v}
        with self._lock:
            self.runs += runs
            self.completed += completed
            self.faults.update(faults)
            self.lost += lost
            self.duplicates += duplicates
            line = (f"[{scenario}] runs={runs} faults_injected={sum(faults.values())} "
                    f"({', '.join(f'{k}={v}' for k, v in sorted(faults.items())) or 'none'}) "
                    f"executions_completed={completed} lost_updates={lost} duplicate_step_executions={duplicates}")
            self.scenarios.append(line)
        print(line)
        return line

    def line(self) -> str:
        with self._lock:
            return (f"reliability summary ({'slow' if SLOW else 'quick'}): runs={self.runs} "
                    f"faults_injected={sum(self.faults.values())} executions_completed={self.completed} "
                    f"lost_updates={self.lost} duplicate_step_executions={self.duplicates}")


STATS = Stats()


# -- ledgers and audits ------------------------------------------------------------------------------
@dataclass
class Entry:
    kind: str  # run | ret | ack
    key: str
    token: str = ""
    attempt: int = 0
    pid: int = 0


class Ledger:
    """What step bodies did, in order (thread-safe; map branches write from worker threads)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.entries: list[Entry] = []
        self._n = 0

    def new_token(self, key: str) -> str:
        with self._lock:
            self._n += 1
            return f"{key}#{self._n}-{uuid.uuid4().hex[:6]}"

    def add(self, kind: str, key: str, token: str = "", attempt: int = 0, pid: int = 0) -> None:
        with self._lock:
            self.entries.append(Entry(kind, key, token, attempt, pid or os.getpid()))


def parse_ledger_file(path: str) -> list[Entry]:
    """Lines ``kind key token attempt pid`` (appended with O_APPEND by processes that may die)."""
    entries = []
    if not os.path.exists(path):
        return entries
    with open(path) as fh:
        for line in fh:
            parts = line.split()
            if len(parts) == 5:  # a line cut short by a kill is simply missing
                entries.append(Entry(parts[0], parts[1], parts[2], int(parts[3]), int(parts[4])))
    return entries


@dataclass
class Audit:
    lost: int = 0
    duplicates: int = 0
    problems: list[str] = field(default_factory=list)

    def lose(self, message: str) -> None:
        self.lost += 1
        self.problems.append("LOST: " + message)

    def duplicate(self, message: str) -> None:
        self.duplicates += 1
        self.problems.append("DUPLICATE: " + message)

    def merge(self, other: "Audit") -> "Audit":
        self.lost += other.lost
        self.duplicates += other.duplicates
        self.problems.extend(other.problems)
        return self


def audit_steps(entries: Iterable[Entry], final: dict[str, str], at_most_once: set[str],
                one_run_per_process: bool = False) -> Audit:
    """Compare a step ledger with the final result tokens (step key -> token of the recorded run)."""
    out = Audit()
    by_key: dict[str, list[tuple[int, Entry]]] = collections.defaultdict(list)
    for n, entry in enumerate(entries):
        by_key[entry.key].append((n, entry))
    for key in sorted(set(by_key) | set(final)):
        items = by_key.get(key, [])
        runs = [(n, e) for n, e in items if e.kind == "run"]
        rets = {e.token: n for n, e in items if e.kind == "ret"}
        acks = [(n, e) for n, e in items if e.kind == "ack"]
        if key not in final:
            # A run nothing acted on may go unrecorded when the execution ends without it (a lasting
            # fault failed it); an acknowledged one may not. Callers check that a SUCCEEDED execution
            # holds every step.
            if acks:
                out.lose(f"step {key}: acknowledged result {acks[0][1].token!r} but the final result does not "
                         f"hold it ({len(runs)} runs)")
            continue
        token = final[key]
        if token not in rets:
            out.lose(f"step {key}: the final result {token!r} is not the result of any run of its body")
            continue
        later = [e for n, e in runs if n > rets[token]]
        if later:
            out.duplicate(f"step {key} ran {len(later)} more time(s) after the run whose result was recorded")
        if acks:
            if acks[0][1].token != token:
                out.lose(f"step {key}: acknowledged result {acks[0][1].token!r} was replaced by {token!r}")
            if len(acks) > 1:
                out.duplicate(f"step {key} handed back a fresh result {len(acks)} times")
        if key in at_most_once:
            attempts = collections.Counter(e.attempt for _, e in runs)
            twice = sorted(a for a, c in attempts.items() if c > 1)
            if twice:
                out.duplicate(f"at-most-once step {key} ran more than once in attempt(s) {twice}")
        elif one_run_per_process:
            pids = collections.Counter(e.pid for _, e in runs)
            if any(c > 1 for c in pids.values()):
                out.duplicate(f"step {key} ran twice in one process")
    return out


def audit_history(history: list[dict]) -> Audit:
    """Event ids contiguous, and no operation completed twice."""
    out = Audit()
    ids = [e["EventId"] for e in history]
    if ids != list(range(1, len(ids) + 1)):
        out.lose(f"history event ids are not 1..{len(ids)}: {ids[:10]}...")
    done = collections.Counter()
    for e in history:
        t = e["EventType"]
        if t.endswith(("Succeeded", "Failed", "TimedOut")) and t not in ("ExecutionSucceeded", "ExecutionFailed"):
            retry = (e.get(f"{t}Details") or {}).get("RetryDetails") or {}
            if retry.get("NextAttemptDelaySeconds") is None:  # a retry or a poll is not a completion
                done[(e.get("Id"), t)] += 1
    for (op_id, t), n in done.items():
        if n > 1:
            out.duplicate(f"operation {op_id} has {n} {t} events")
    return out


class AckRecorder:
    """A CheckpointClient wrapper that remembers every update whose checkpoint was acknowledged."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self._lock = threading.Lock()
        self.acked: list[dict] = []

    def checkpoint(self, arn: str, token: str, updates: list, client_token: str) -> dict:
        response = self.inner.checkpoint(arn, token, updates, client_token)
        with self._lock:
            self.acked.extend({**u, "_arn": arn} for u in updates)
        return response

    def get_state(self, arn: str, token: str, marker: str) -> dict:
        return self.inner.get_state(arn, token, marker)


def audit_acked(acked: list[dict], engine: Any) -> Audit:
    """Every acknowledged update is in the engine's final state (checked against the database when the
    engine was restarted on it)."""
    out = Audit()
    ops_by_arn: dict[str, dict] = {}
    for u in acked:
        arn = u["_arn"]
        if arn not in ops_by_arn:
            ops_by_arn[arn] = {op["Id"]: op for op in engine.operations(arn)}
        op = ops_by_arn[arn].get(u["Id"])
        what = f"{u['Type']} {u['Action']} of {u.get('Name') or u['Id']}"
        if u["Type"] == "EXECUTION":
            if u["Action"] == "SUCCEED" and engine.get_execution(arn).raw_result != u.get("Payload"):
                out.lose(f"acknowledged {what}: the execution's result differs")
            continue
        if op is None:
            out.lose(f"acknowledged {what}: the operation is missing")
            continue
        details = op.get({"STEP": "StepDetails", "CONTEXT": "ContextDetails"}.get(u["Type"], "")) or {}
        if u["Action"] == "SUCCEED":
            if op["Status"] != "SUCCEEDED":
                out.lose(f"acknowledged {what}: the operation is {op['Status']}")
            elif u["Type"] in ("STEP", "CONTEXT") and (details.get("Result") or "") != (u.get("Payload") or ""):
                out.lose(f"acknowledged {what}: the stored result differs")
        elif u["Action"] == "FAIL" and op["Status"] != "FAILED":
            out.lose(f"acknowledged {what}: the operation is {op['Status']}")
    return out


# -- the chaos workflow (in-process scenarios) -----------------------------------------------------------
RETRY = ds.RetryPolicy(max_attempts=60, initial_delay=1, backoff_rate=1.0, jitter="none")
ALO = ds.StepConfig(retry_strategy=RETRY)
AMO = ds.StepConfig(step_semantics=ds.StepSemantics.AT_MOST_ONCE_PER_RETRY, retry_strategy=RETRY)


class Probe:
    """What the chaos workflow reports to and asks: ledger, fault points, callbacks answered."""

    def __init__(self, fault: Optional[Callable[[str], None]] = None) -> None:
        self.ledger = Ledger()
        self.fault = fault  # fault(point) may raise; points: "body:<key>", "after:<key>", "after:<op>", ...
        self.at_most_once: set[str] = set()
        self.callback_acks: dict[str, list[str]] = collections.defaultdict(list)
        self._fresh = threading.local()  # .results: (key, token) this thread got back, not acted on yet

    def new_invocation(self) -> None:
        """An invocation starts on this thread: results of an earlier (failed) one were never acted on here."""
        self._pending().clear()

    def got_back(self, key: str, token: str) -> None:
        """``ctx.step`` handed a fresh result back to this thread."""
        self._pending().append((key, token))

    def acting(self) -> None:
        """A step body starts on this thread: every result this thread got back before is saved by now."""
        pending = self._pending()
        for key, token in pending:
            self.ledger.add("ack", key, token)
        pending.clear()

    def _pending(self) -> list[tuple[str, str]]:
        if not hasattr(self._fresh, "results"):
            self._fresh.results = []
        return self._fresh.results

    def point(self, name: str) -> None:
        if self.fault is not None:
            self.fault(name)


PROBE = Probe()


def step(c: ds.DurableContext, key: str, config: ds.StepConfig) -> str:
    """A ledgered step: its body logs run/ret (and acks the results before it), the caller keeps a fresh
    result to ack when the thread's next step body starts."""
    probe = PROBE
    if config is AMO:
        probe.at_most_once.add(key)
    fresh: list[str] = []

    def body(step_ctx: ds.StepContext) -> str:
        probe.acting()
        probe.ledger.add("run", key, attempt=step_ctx.attempt)
        probe.point(f"body:{key}")
        token = probe.ledger.new_token(key)
        probe.ledger.add("ret", key, token, step_ctx.attempt)
        fresh.append(token)
        return token

    value = c.step(key, body, config=config)
    if fresh:
        assert value == fresh[-1], (key, value, fresh)
        probe.got_back(key, value)
    probe.point(f"after:{key}")
    return value


def _branch(c: ds.DurableContext, item: int, index: int, items: list) -> str:
    PROBE.point(f"branch:{index}")
    value = step(c, f"m{index}", AMO if index % 2 == 0 else ALO)
    if index == 0:
        c.wait(1, name="m-wait")
    return value


def _check(state: int, check_ctx: Any) -> int:
    PROBE.point("poll")
    return state + 1


def _poll_strategy(state: int, attempt: int) -> ds.WaitForConditionDecision:
    if state >= 3:
        return ds.WaitForConditionDecision.stop_polling()
    return ds.WaitForConditionDecision.continue_waiting(ds.Duration.from_seconds(1))


@ds.durable_handler
def chaos_workflow(event: Any, ctx: ds.DurableContext) -> dict:
    """Steps of both semantics, waits, a child block, a callback, a map with waits, a polled condition."""
    PROBE.new_invocation()
    out: dict[str, Any] = {}
    for i in range(event.get("steps", 5)):
        out[f"s{i}"] = step(ctx, f"s{i}", AMO if i % 3 == 2 else ALO)
    ctx.wait(2, name="w1")
    PROBE.point("after:w1")
    with ctx.child("kid") as c:
        out["kid-a"] = step(c, "kid-a", ALO)
        c.wait(1, name="kid-wait")
        out["kid-b"] = step(c, "kid-b", AMO)
    callback = ctx.create_callback(name="cb")
    PROBE.point("after:create-cb")
    batch = ctx.map(list(range(event.get("items", 4))), _branch, name="m", config=ds.MapConfig(max_concurrency=2))
    batch.throw_if_error()
    for i, value in enumerate(batch.get_results()):
        out[f"m{i}"] = value
    out["cb"] = callback.result()
    PROBE.point("after:cb-result")
    out["poll"] = ctx.wait_for_condition(_check, ds.WaitForConditionConfig(wait_strategy=_poll_strategy,
                                                                            initial_state=0), name="poll")
    return out


def step_tokens(result: dict) -> dict[str, str]:
    return {k: v for k, v in result.items() if k not in ("cb", "poll")}


def open_callbacks(engine: Any, arn: str) -> list[tuple[str, str]]:
    return [(op.get("Name") or op["Id"], op["CallbackDetails"]["CallbackId"]) for op in engine.operations(arn)
            if op["Type"] == "CALLBACK" and op["Status"] == "STARTED"]


def drive(engine: Any, handler: Callable, event: dict, name: str, probe: Probe,
          on_stuck: Optional[Callable[[], None]] = None, max_rounds: int = 200) -> tuple[str, Any]:
    """Start (or attach to) an execution on a virtual-time engine and answer its callbacks until it ends."""
    arn = engine.start(handler, event, name=name)
    for _ in range(max_rounds):
        result = engine.wait(arn)
        if result.status != "RUNNING":
            return arn, result
        pending = open_callbacks(engine, arn)
        if not pending:
            if on_stuck is None:
                raise AssertionError(f"execution {name} is RUNNING with nothing to answer: {engine.history(arn)[-5:]}")
            on_stuck()
            continue
        for cb_name, callback_id in pending:
            payload = json.dumps({"answer": cb_name, "n": uuid.uuid4().hex[:8]})
            engine.send_callback_success(callback_id, payload)
            probe.callback_acks[cb_name].append(payload)
    raise AssertionError(f"execution {name} did not finish in {max_rounds} rounds")


def recorded_steps(engine: Any, arn: str) -> dict[str, str]:
    """Step name -> the result token its SUCCEEDED record holds (what a replay would hand back)."""
    out = {}
    for op in engine.operations(arn):
        if op["Type"] == "STEP" and op.get("SubType") == "Step" and op["Status"] == "SUCCEEDED":
            out[op["Name"]] = json.loads(op["StepDetails"]["Result"])
    return out


def audit_run(engine: Any, arn: str, result: Any, probe: Probe, event: dict, expect_success: bool = True) -> Audit:
    """The standard checks of one chaos_workflow execution."""
    out = Audit()
    recorded = recorded_steps(engine, arn)
    if expect_success:
        if result.status != "SUCCEEDED":
            out.problems.append(f"execution ended {result.status}: {result.error}")
            return out
        value = result.result
        expected = {f"s{i}" for i in range(event.get("steps", 5))} | {"kid-a", "kid-b"} | {
            f"m{i}" for i in range(event.get("items", 4))}
        if set(step_tokens(value)) != expected or set(recorded) != expected:
            out.problems.append(f"result keys {sorted(step_tokens(value))} / records {sorted(recorded)} != "
                                f"{sorted(expected)}")
        if step_tokens(value) != recorded:
            out.lose(f"the result differs from the recorded step results: {step_tokens(value)} vs {recorded}")
        if value.get("poll") != 3:
            out.problems.append(f"poll ended with {value.get('poll')!r}")
        acks = probe.callback_acks.get("cb", [])
        if len(acks) > 1:
            out.duplicate(f"callback cb accepted {len(acks)} answers")
        if acks and value.get("cb") != json.loads(acks[0]):
            out.lose(f"callback cb: accepted answer {acks[0]} but the execution saw {value.get('cb')!r}")
    out.merge(audit_steps(probe.ledger.entries, recorded, probe.at_most_once))
    out.merge(audit_history(engine.history(arn)))
    return out


# -- storage faults ------------------------------------------------------------------------------------
class FaultyStore(SqliteStore):
    """An SqliteStore whose connection can be made full or read-only for a number of failed writes."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.mode: str | None = None  # None | "full" | "readonly"
        self.fail_writes = 0  # clear the fault after this many failed writes (0: never)
        self.failed = 0
        self.writes = 0

    def set_fault(self, mode: str | None, fail_writes: int = 0) -> None:
        with self._lock:
            self.mode, self.fail_writes = mode, fail_writes
            conn = self._conn
            if mode == "full":
                pages = conn.execute("PRAGMA page_count").fetchone()[0]
                conn.execute(f"PRAGMA max_page_count = {pages}")
            else:
                conn.execute("PRAGMA max_page_count = 1073741823")
            conn.execute(f"PRAGMA query_only = {1 if mode == 'readonly' else 0}")

    def _guard(self, write, *args):
        self.writes += 1
        try:
            return write(*args)
        except sqlite3.OperationalError as exc:
            if self.mode is None:
                raise
            assert ("full" in str(exc)) if self.mode == "full" else ("readonly" in str(exc)), exc
            self.failed += 1
            if self.fail_writes and self.failed >= self.fail_writes:
                self.set_fault(None)
            raise

    def create_execution(self, ex):
        return self._guard(super().create_execution, ex)

    def commit(self, ex, change):
        return self._guard(super().commit, ex, change)

    def delete_execution(self, ex):
        return self._guard(super().delete_execution, ex)
