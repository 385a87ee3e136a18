"""Random durable programs: the durable result equals the plain sequential result, and every step
body runs exactly once per attempt.

Hypothesis builds programs from steps (some retried, some giving up), waits, child contexts (both
forms), map, parallel, ``concurrently`` groups and callbacks, nested a few levels, with tiny random
sleeps in bodies and between operations so that threads interleave differently. Each program runs
on the in-memory engine with virtual time, normally and in always-replay mode (every invocation cut
after one new operation), and is compared with a plain interpreter of the same program.

The default profile keeps this to a few seconds; ``DURABLE_SLOW=1`` runs many more examples.
"""
from __future__ import annotations

import collections
import json
import os
import threading
import time
from dataclasses import dataclass
from typing import Any, Union

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import durable_sync as ds
from durable_sync.local import LocalEngine
from durable_sync.testing.replay_check import always_replay

SLOW = os.environ.get("DURABLE_SLOW") == "1"
EXAMPLES = 150 if SLOW else 12


# ----------------------------------------------------------------------------- programs


@dataclass(frozen=True)
class Step:
    fails: int      # attempts that raise before one succeeds
    gives_up: bool  # every attempt raises: the step fails for good after ``fails + 1`` attempts
    sleep_us: int


@dataclass(frozen=True)
class Wait:
    seconds: int


@dataclass(frozen=True)
class Callback:
    pass


@dataclass(frozen=True)
class Child:
    body: tuple
    block: bool  # `with ctx.child()` rather than run_in_child_context


@dataclass(frozen=True)
class Map:
    items: int
    body: tuple
    max_concurrency: Any
    flat: bool = False  # NestingType.FLAT: items record no context of their own


@dataclass(frozen=True)
class Parallel:
    branches: tuple


@dataclass(frozen=True)
class Inline:
    body: tuple  # `with group.child() as c:` -- a unit whose body runs on the block's thread


@dataclass(frozen=True)
class Group:
    units: tuple  # Step, a tuple of nodes (a child unit) or Inline
    max_concurrency: Any


Node = Union[Step, Wait, Callback, Child, Map, Parallel, Group]

steps = st.builds(Step, fails=st.integers(0, 2), gives_up=st.sampled_from([False, False, False, True]),
                  sleep_us=st.integers(0, 300))
leaves = st.one_of(steps, steps, st.builds(Wait, st.integers(1, 3)), st.just(Callback()))


def _extend(children: st.SearchStrategy) -> st.SearchStrategy:
    bodies = st.lists(children, min_size=1, max_size=3).map(tuple)
    concurrency = st.sampled_from([None, 1, 2])
    return st.one_of(
        st.builds(Child, bodies, st.booleans()),
        st.builds(Map, st.integers(0, 3), bodies, concurrency, st.booleans()),
        st.builds(Parallel, st.lists(bodies, min_size=0, max_size=3).map(tuple)),
        st.builds(Group, st.lists(st.one_of(steps, bodies, st.builds(Inline, bodies)), min_size=1,
                                  max_size=3).map(tuple), concurrency),
    )


nodes = st.recursive(leaves, _extend, max_leaves=8)
programs = st.lists(nodes, min_size=1, max_size=4).map(tuple)
gaps = st.lists(st.integers(0, 200), min_size=1, max_size=8)  # microseconds between operations


# ----------------------------------------------------------------------------- the two interpreters


class Runs:
    """How often each step body ran (thread-safe)."""

    def __init__(self):
        self._lock = threading.Lock()
        self.counts: collections.Counter = collections.Counter()

    def hit(self, path: str) -> None:
        with self._lock:
            self.counts[path] += 1


def _attempts(step: Step) -> int:
    return step.fails + 1


def _callback_value(name: str) -> str:
    return f"answer-{name}"


def plain(body: tuple, path: str, runs: Runs) -> list:
    """The program run as ordinary sequential Python."""
    return [_plain_node(node, f"{path}.{i}", runs) for i, node in enumerate(body)]


def _plain_node(node: Node, path: str, runs: Runs) -> Any:
    if isinstance(node, Step):
        for attempt in range(1, _attempts(node) + 1):
            runs.hit(path)
            if node.gives_up or attempt <= node.fails:
                continue
            return f"v{path}"
        return "gave-up"
    if isinstance(node, Wait):
        return None
    if isinstance(node, Callback):
        return _callback_value(f"cb{path}")
    if isinstance(node, Child):
        return plain(node.body, path, runs)
    if isinstance(node, Map):
        return [plain(node.body, f"{path}[{i}]", runs) for i in range(node.items)]
    if isinstance(node, Parallel):
        return [plain(branch, f"{path}[{i}]", runs) for i, branch in enumerate(node.branches)]
    results, failed = [], False
    for j, unit in enumerate(node.units):
        if isinstance(unit, Step):
            value = _plain_node(unit, f"{path}<{j}>", runs)
            failed = failed or value == "gave-up"
            results.append(value)
        else:
            results.append(plain(unit.body if isinstance(unit, Inline) else unit, f"{path}<{j}>", runs))
    return "group-failed" if failed else results


class Durable:
    """The program run with durable operations."""

    def __init__(self, runs: Runs, gaps: list[int]):
        self.runs = runs
        self.gaps = gaps

    def pause(self, path: str) -> None:
        time.sleep(self.gaps[hash(path) % len(self.gaps)] / 1e6)  # perturbs thread scheduling only

    def body(self, ctx: Any, body: tuple, path: str) -> list:
        out = []
        for i, node in enumerate(body):
            self.pause(f"{path}.{i}")
            out.append(self.node(ctx, node, f"{path}.{i}"))
        return out

    def step_call(self, node: Step, path: str):
        runs = self.runs

        def fn(step_ctx):
            runs.hit(path)
            time.sleep(node.sleep_us / 1e6)
            if node.gives_up or step_ctx.attempt <= node.fails:
                raise ConnectionError(f"attempt {step_ctx.attempt} of {path}")
            return f"v{path}"

        config = ds.StepConfig(retry_strategy=ds.RetryPolicy(max_attempts=_attempts(node), initial_delay=1,
                                                              jitter="none"))
        return f"s{path}", fn, config

    def node(self, ctx: Any, node: Node, path: str) -> Any:
        if isinstance(node, Step):
            name, fn, config = self.step_call(node, path)
            try:
                return ctx.step(name, fn, config)
            except ds.StepError:
                return "gave-up"
        if isinstance(node, Wait):
            return ctx.wait(node.seconds, name=f"w{path}")
        if isinstance(node, Callback):
            return ctx.create_callback(f"cb{path}").result()
        if isinstance(node, Child):
            if node.block:
                with ctx.child(f"c{path}") as c:
                    c.result = self.body(c, node.body, path)
                return c.result
            return ctx.run_in_child_context(lambda c: self.body(c, node.body, path), name=f"c{path}")
        if isinstance(node, Map):
            nesting = ds.NestingType.FLAT if node.flat else ds.NestingType.NESTED
            result = ctx.map(list(range(node.items)), lambda c, item, i, items: self.body(c, node.body, f"{path}[{i}]"),
                             name=f"m{path}", config=ds.MapConfig(max_concurrency=node.max_concurrency,
                                                                  nesting_type=nesting))
            return result.get_results()
        if isinstance(node, Parallel):
            branches = [ds.ParallelBranch(lambda c, b=branch, i=i: self.body(c, b, f"{path}[{i}]"), name=f"b{path}[{i}]")
                        for i, branch in enumerate(node.branches)]
            return ctx.parallel(branches, name=f"p{path}").get_results()
        try:
            with ctx.concurrently(f"g{path}", max_concurrency=node.max_concurrency) as group:
                futures = []
                for j, unit in enumerate(node.units):
                    unit_path = f"{path}<{j}>"
                    if isinstance(unit, Step):
                        futures.append(group.step(*self.step_call(unit, unit_path)))
                    elif isinstance(unit, Inline):
                        block = group.child(f"i{unit_path}")
                        with block as c:
                            c.result = self.body(c, unit.body, unit_path)
                        futures.append(block.future)
                    else:
                        futures.append(group.run_in_child_context(
                            lambda c, u=unit, p=unit_path: self.body(c, u, p), name=f"u{unit_path}"))
            return [f.result() for f in futures]
        except ds.StepError:
            return "group-failed"


def run_durably(program: tuple, gaps: list[int], replay_always: bool) -> tuple[Any, collections.Counter]:
    runs = Runs()
    durable = Durable(runs, gaps)

    @ds.durable_handler
    def handler(event, ctx):
        return durable.body(ctx, program, "")

    engine = LocalEngine(db=":memory:", skip_time=True)
    try:
        arn = engine.start(always_replay(handler) if replay_always else handler)
        for _ in range(200):
            result = engine.wait(arn)
            if result.status != "RUNNING":
                break
            for cb in engine.snapshot(arn).open_callbacks:  # the outside system answers
                engine.send_callback_success(cb.callback_id, json.dumps(_callback_value(cb.operation_name)))
        assert result.status == "SUCCEEDED", (result.status, result.error)
        return result.result, runs.counts
    finally:
        engine.close()


def check(program: tuple, gaps: list[int], replay_always: bool) -> None:
    expected_runs = Runs()
    expected = plain(program, "", expected_runs)
    result, counts = run_durably(program, gaps, replay_always)
    assert result == json.loads(json.dumps(expected))
    assert counts == expected_runs.counts  # every body ran exactly once per attempt


SETTINGS = settings(max_examples=EXAMPLES, deadline=None, derandomize=not SLOW,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@SETTINGS
@given(programs, gaps)
def test_random_programs_give_the_plain_result_and_run_each_body_once_per_attempt(program, gaps):
    check(program, gaps, replay_always=False)


@SETTINGS
@given(programs, gaps)
def test_random_programs_in_always_replay_mode(program, gaps):
    check(program, gaps, replay_always=True)


def test_a_fixed_program_with_every_kind_of_operation():
    step, retried, doomed = Step(0, False, 50), Step(1, False, 0), Step(0, True, 0)
    program = (
        step, Wait(2), Callback(),
        Child((retried, Wait(1)), block=True),
        Map(3, (step, Callback()), 2),
        Parallel(((step,), (Wait(1), retried), ())),
        Group((step, (Wait(1), step), retried), 1),
        Group((Inline((step, Wait(1))), (step,), Inline((Callback(),))), 2),
        Map(2, (Wait(1), Child((step,), block=True)), None, flat=True),
        Group((doomed, (step,)), None),
        Child((Map(2, (Group(((step, Wait(1)),), None),), None),), block=False),
    )
    for mode in (False, True):
        check(program, [0, 100, 50], replay_always=mode)
