"""Map and parallel: branches run on a bounded thread pool, each checkpointed as a child context.

Wire shape. The batch itself is a CONTEXT (SubType ``Map`` / ``Parallel``) in the
calling context. Branch ``i`` (0-based) is a CONTEXT (SubType ``MapIteration`` /
``ParallelBranch``) with id ``wire.branch_id(parent, i)`` and ParentId = the batch
context, begun with ``OperationScope.begin_at`` and run through the shared child-context
protocol (``operations.child.run_child``).
With ``NestingType.FLAT`` a branch is a *virtual* context: it records nothing of
its own, its operations take ids derived from the branch id but name the batch
context as their ParentId. Ids never depend on thread scheduling.

Scheduling (``durable_sync.pool.UnitPool``, the scheduler shared with
``ctx.concurrently``). At most ``max_concurrency`` (never more than ``MAX_THREADS``) workers
run branches; without it, ``INITIAL_THREADS`` start and more (up to ``DEFAULT_MAX_THREADS``) while
checkpoint calls are slow, so against AWS the branches share round trips. The calling thread is
one of the workers, so ``max_concurrency=1`` starts no thread at all. Each worker takes the next branch in
index order while one may start, runs it, records its outcome and decides the
completion under one lock (no hand-off to a coordinator per branch); a worker ends
when no branch may start, and the call returns only after every worker is joined,
so no thread outlives it. A *slot* is held by a
branch from its start until it completes; a branch that suspends (wait, retry,
callback) keeps its slot until the invocation ends, so ``max_concurrency`` bounds
the branches in flight, suspended ones included. Without ``max_concurrency`` the
number of branches in flight is unbounded (a thousand waits all start in the
first invocation) while the number of threads stays bounded. On replay, a branch
that completed earlier is answered from its checkpoint before any worker starts:
no thread, no slot, its body does not run.

Completion (``CompletionConfig``; the rules are in ``operations.batch_result.Completion``).
Once the outcome is decided no further branch
starts; branches already running finish (threads cannot be killed, and none may
outlive the invocation) and are reported with their final status. The batch
context SUCCEEDs with the BatchResult even when branches failed; only
``BatchResult.throw_if_error()`` raises.

Suspension. When no branch runs, the outcome is not decided and at least one
branch suspended, the call raises the scope's ``suspend(...)`` from the calling thread; the
engine re-invokes at the earliest completion and the suspended branches resume from their
checkpoints. A ``CheckpointError`` in a branch fails
the invocation (it is re-raised from the calling thread), not the branch.

Payload. The batch context's Payload is the default serdes text of
``BatchResult.to_dict()``: ``{"all": [{"index", "status", "result", "error"}],
"completionReason"}`` (with ``item_serdes`` a succeeded item carries ``"payload"``,
its item_serdes text, instead of ``"result"``; with an op-level ``serdes``, or a
handler serdes in the official SDK's format (``serdes.ExtendedTypeSerDes``, which writes
``{"t":"br",...}`` as the official SDK does), the text is whatever that serdes makes of
the BatchResult). A payload over 256 KiB is
replaced by a JSON summary and checkpointed with ReplayChildren; replay rebuilds
the result from the branches' own checkpoints.
"""
from __future__ import annotations

import json
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

from .. import wire
from ..config import MapConfig, NestingType, ParallelBranch, ParallelConfig, expect
from ..errors import CheckpointError, ChildContextError, NonDeterminismError, SerDesError, SuspendExecution, \
    ValidationError, error_object
from ..pool import ERR, OK, SUSPEND, UnitPool, outcome_of, pool_threads
from ..serdes import SerDesContext, as_replayed, deserialize_value, serialize_value
from ..serdes_envelope import ExtendedTypeSerDes
from .batch_result import BatchItem, BatchItemStatus, BatchResult, Completion, CompletionReason
from .child import run_child
from .calls import check_takes, ordered_sequence
from .scope import DEFER, QUEUE, Op, OperationScope, decorated_name, recorded_error

__all__ = ["run_parallel", "run_map"]


# --------------------------------------------------------------------------- validation

_DEFAULT_PARALLEL = ParallelConfig()
_DEFAULT_MAP = MapConfig()


def _config(config: Any, kind: str) -> ParallelConfig:
    """The batch's config: a MapConfig for map, a ParallelConfig for parallel (each checks its fields)."""
    if kind == "map":
        return expect(config, MapConfig, "map", _DEFAULT_MAP)
    if isinstance(config, MapConfig):
        raise ValidationError("parallel takes config=ds.ParallelConfig(...), got MapConfig; MapConfig is for "
                              "ctx.map (pass the same fields to ds.ParallelConfig)")
    return expect(config, ParallelConfig, "parallel", _DEFAULT_PARALLEL)


# --------------------------------------------------------------------------- entry points

@dataclass(frozen=True)
class _Branch:
    index: int
    fn: Callable[[Any], Any]
    name: Optional[str]


_MAP_PARAMS = ("ctx", "item", "index", "items")
_BRANCH_PARAMS = ("ctx",)
#: The official SDK's Names of map items / parallel branches without a name of their own.
MAP_ITEM_PREFIX, PARALLEL_BRANCH_PREFIX = "map-item-", "parallel-branch-"


def run_parallel(scope: OperationScope, branches: Any, name: Optional[str] = None,
                 config: Optional[ParallelConfig] = None) -> BatchResult:
    """``ctx.parallel``: branches are callables ``fn(ctx)`` or ``ParallelBranch(fn, name)``.

    A branch without a ParallelBranch name is named ``parallel-branch-<index>`` (its function's
    name is not used), and the parallel itself only by ``name``, as in the official SDK.
    """
    if isinstance(branches, str) and not isinstance(name, (str, type(None))):  # parallel("name", [branches])
        branches, name = name, branches
    cfg = _config(config, "parallel")
    seq = ordered_sequence(branches, "parallel", "branches")
    items = []
    for index, branch in enumerate(seq):
        if isinstance(branch, ParallelBranch):
            fn, branch_name = branch.func, branch.name
        else:
            fn, branch_name = branch, None
        if not callable(fn):
            raise ValidationError(f"parallel branch {index} is a {type(fn).__name__}, not a callable; pass "
                                  "functions taking the branch context, or ParallelBranch(fn, name)")
        check_takes(fn, _BRANCH_PARAMS, f"parallel branch {index}")
        if branch_name is None:
            branch_name = f"{PARALLEL_BRANCH_PREFIX}{index}"
        else:
            wire.validate_name(branch_name)
        items.append(_Branch(index, fn, branch_name))
    wire.validate_name(name)
    return _Batch(scope, "parallel", name, cfg, items, wire.SubType.PARALLEL, wire.SubType.PARALLEL_BRANCH).run()


def run_map(scope: OperationScope, items: Any, fn: Any, name: Optional[str] = None,
            config: Optional[MapConfig] = None) -> BatchResult:
    """``ctx.map``: ``fn(ctx, item, index, items)`` for every item.

    Names as in the official SDK: the map is named by ``name`` (else a decorated function's
    name; a plain function's ``__name__`` is not used), item ``i`` by ``config.item_namer``,
    else ``map-item-<i>``.
    """
    if isinstance(items, str) and not callable(fn) and callable(name):  # map("name", items, fn)
        items, fn, name = fn, name, items
    cfg = _config(config, "map")
    if not callable(fn):
        raise ValidationError(f"map needs a callable fn(ctx, item, index, items), got {type(fn).__name__}")
    seq = ordered_sequence(items, "map", "items")
    check_takes(fn, _MAP_PARAMS, "the map function")
    namer = getattr(cfg, "item_namer", None)
    branches = []
    for index, item in enumerate(seq):
        item_name = namer(item, index) if namer is not None else None
        if item_name is None:
            item_name = f"{MAP_ITEM_PREFIX}{index}"
        else:
            wire.validate_name(item_name)
        branches.append(_Branch(index, _MapCall(fn, item, index, seq), item_name))
    if name is None:
        name = decorated_name(fn)
    wire.validate_name(name)
    return _Batch(scope, "map", name, cfg, branches, wire.SubType.MAP, wire.SubType.MAP_ITERATION).run()


class _MapCall:
    __slots__ = ("fn", "item", "index", "items")

    def __init__(self, fn: Callable, item: Any, index: int, items: Sequence[Any]):
        self.fn, self.item, self.index, self.items = fn, item, index, items

    def __call__(self, ctx: Any) -> Any:
        return self.fn(ctx, self.item, self.index, self.items)


# --------------------------------------------------------------------------- the batch

_FLAT_CODES = {BatchItemStatus.SUCCEEDED: "S", BatchItemStatus.FAILED: "F", BatchItemStatus.STARTED: "T"}


class _Batch:
    """One map/parallel call: replay, scheduling, completion, checkpointing of the batch context."""

    def __init__(self, scope: OperationScope, kind: str, name: Optional[str], cfg: ParallelConfig,
                 branches: list[_Branch], subtype: str, iteration_subtype: str):
        self.scope = scope
        self.kind = kind
        self.name = name
        self.cfg = cfg
        self.branches = branches
        self.subtype = subtype
        self.iteration_subtype = iteration_subtype
        self.flat = cfg.nesting_type is NestingType.FLAT
        self.item_serdes = cfg.item_serdes
        self.op: Optional[Op] = None
        self.op_id = ""
        self.batch_scope: Optional[OperationScope] = None
        # The branch operations begun so far (recorded ones up front, the others when they start).
        self._ops: list[Optional[Op]] = [None] * len(branches)
        self._pool: Optional[UnitPool] = None  # the scheduler (durable_sync.pool); its lock guards the state below

    # -- entry --------------------------------------------------------------------------
    def run(self) -> BatchResult:
        scope = self.scope
        op = self.op = scope.begin(wire.CONTEXT, self.subtype, self.name, self._label())
        self.op_id = op.id
        self.batch_scope = scope.child_scope(op)
        sctx = scope.serdes_ctx(op.id)
        if op.record is not None:
            details = op.details("ContextDetails")
            if op.status == wire.SUCCEEDED:
                if details.get("ReplayChildren"):
                    return self._rebuild(details.get("Result"))
                return self._decode(details.get("Result"), sctx)
            if op.completed:
                raise recorded_error(ChildContextError, details.get("Error"))
        else:
            scope.checkpoint(op, wire.START, QUEUE)
        result = self._execute()
        try:
            payload = self._encode(result, sctx)
            value = self._decode(payload, sctx)
        except SerDesError as exc:
            scope.checkpoint(op, wire.FAIL, DEFER, Error=error_object(exc))
            raise
        nbytes = len(payload) if payload.isascii() else len(payload.encode("utf-8"))
        if nbytes > wire.MAX_CONTEXT_RESULT_BYTES:
            scope.checkpoint(op, wire.SUCCEED, DEFER, Payload=self._summary(result),
                             ContextOptions={"ReplayChildren": True})
        else:
            scope.checkpoint(op, wire.SUCCEED, DEFER, Payload=payload)
        return value

    # -- scheduling -------------------------------------------------------------------------
    def _execute(self) -> BatchResult:
        """Run the branches; returns the BatchResult, or raises the invocation's suspension / failure."""
        scope = self.scope
        total = len(self.branches)
        self._completion = Completion(self.cfg.completion_config, total)
        self._results: dict[int, BatchItem] = {}
        self._suspended: list[int] = []
        self._successes = self._failures = 0
        self._fatal: Optional[BaseException] = None
        self._decided = self._completion.decide(0, 0) if total == 0 else None
        was_suspended = scope.suspension_mark()
        threads, max_threads = pool_threads(self.cfg.max_concurrency)
        pool = self._pool = UnitPool(self._run_branch, self._on_outcome, max_slots=self.cfg.max_concurrency,
                                     max_threads=max_threads, threads=threads,
                                     label=f"durable-{self.kind}-{self.op_id[:8]}",
                                     may_start=self._may_start, activity=scope.activity)
        # Branches that completed in an earlier invocation are answered from their checkpoints, without a thread.
        pending: deque[int] = deque()
        for index in range(total):
            try:
                stored = self._stored(index)
            except BaseException as exc:  # noqa: BLE001 - non-determinism: fail the call, run nothing
                self._fatal = exc
                break
            if stored is None:
                pending.append(index)
            else:
                self._record(stored)
        if self._decided is None and self._fatal is None and pending:
            # The calling thread is worker 0; the others are started now and exit when nothing can start.
            # Without max_concurrency, more start while checkpoint calls are slow (durable_sync.pool).
            growing = max_threads > threads
            if growing:
                scope.watch_slow_calls(pool.grow)
            try:
                pool.run_here(pending, min(threads, len(pending)))  # returns once every worker is joined
            finally:
                if growing:
                    scope.unwatch_slow_calls(pool.grow)
        else:
            pool.pending.extend(pending)
        if self._fatal is not None:
            if self._suspended and not isinstance(self._fatal, SuspendExecution):
                scope.restore_suspension(was_suspended)  # the failure is the outcome, not the branches' suspensions
            raise self._fatal
        results = self._results
        if self._decided is None:
            if not self._suspended:  # cannot happen: nothing runs, nothing waits, yet not all completed
                raise AssertionError(f"{self.kind} {self.op_id}: scheduler stopped without an outcome")
            raise scope.suspend(f"{self.kind} {self.name or self.op_id}: {len(self._suspended)} branch(es) waiting, "
                                f"{len(results)} of {total} completed")
        if self._suspended:
            # The outcome was decided without these suspended branches: they stay STARTED, and their
            # suspension must not read as a SuspendExecution swallowed by user code.
            scope.restore_suspension(was_suspended)
        for index in self._suspended:
            results[index] = BatchItem(index, BatchItemStatus.STARTED)
        for index in pool.pending:  # started in an earlier invocation, not resumed once the outcome was decided
            if self._ops[index] is not None:
                results[index] = BatchItem(index, BatchItemStatus.STARTED)
        return BatchResult(results.values(), self._decided)

    def _record(self, item: BatchItem) -> None:
        """Called with the lock held (or before workers start): count an outcome, decide."""
        self._results[item.index] = item
        if item.status is BatchItemStatus.SUCCEEDED:
            self._successes += 1
        else:
            self._failures += 1
        if self._decided is None and self._fatal is None:
            self._decided = self._completion.decide(self._successes, self._failures)

    def _may_start(self) -> bool:
        """(pool lock held) A branch may start while the outcome is open and nothing fatal happened."""
        return self._decided is None and self._fatal is None

    def _on_outcome(self, index: int, kind: str, value: Any) -> None:
        """(pool lock held) A branch finished on a worker: count it (the pool did the slots)."""
        if kind == SUSPEND:
            self._suspended.append(index)  # keeps its slot until the invocation ends
        elif kind == OK:
            self._record(BatchItem(index, BatchItemStatus.SUCCEEDED, value))
        elif kind == ERR:
            self._record(BatchItem(index, BatchItemStatus.FAILED, None, value))
        elif self._fatal is None:
            self._fatal = value

    def _run_branch(self, index: int) -> tuple[str, Any]:
        """Run branch ``index``; its outcome as (kind, value), a failure as a ChildContextError."""
        kind, value = outcome_of(self._call_unit, index)
        if kind == ERR and type(value) is not ChildContextError:
            value = ChildContextError.from_error_object(error_object(value))
        return kind, value

    def _label(self) -> str:
        return f"ctx.{self.kind}({self.name!r})" if self.name else f"ctx.{self.kind}()"

    def _what(self, index: int) -> str:
        return f"branch {index} of {self._label()}"

    def _call_unit(self, index: int) -> Any:
        """Run branch ``index`` on this thread as a unit: a body of its own, whose context is its only one."""
        return self.batch_scope.run_unit(self, index, self._call_branch, index)

    def describe_unit(self, index: int) -> tuple[str, str]:
        """(label, context) of branch ``index`` for refusal messages (OperationScope.Body)."""
        item = "map item" if self.kind == "map" else "parallel branch"
        return (f"{item} {index} of {self._label()}",
                f"the context it receives (the `ctx` argument of the {item}'s function)")

    def _call_branch(self, index: int) -> Any:
        branch = self.branches[index]
        batch_scope = self.batch_scope
        if self.flat:
            bid = wire.branch_id(self.op_id, index)
            value = batch_scope.run_child_body(None, batch_scope.virtual_scope(bid, branch.name), branch.fn)
            serdes = self.item_serdes or batch_scope.serdes
            sctx = batch_scope.serdes_ctx(bid)
            return as_replayed(serdes, value, serialize_value(serdes, value, sctx), sctx)
        op = self._ops[index]
        if op is None:  # (a recorded branch was begun by _stored)
            op = self._ops[index] = batch_scope.begin_at(index, wire.CONTEXT, self.iteration_subtype, branch.name,
                                                         self._what(index))
        return run_child(batch_scope, op, branch.fn, self.item_serdes)

    def _stored(self, index: int) -> Optional[BatchItem]:
        """Begin a branch recorded in an earlier invocation; its item if it completed and need not run."""
        if self.flat:
            return None  # virtual contexts record nothing: the body replays from its operations
        branch = self.branches[index]
        op = self._ops[index]
        if op is None:
            op = self._ops[index] = self.batch_scope.begin_at(index, wire.CONTEXT, self.iteration_subtype,
                                                              branch.name, self._what(index), recorded_only=True)
        if op is None:
            return None
        details = op.details("ContextDetails")
        if op.status == wire.SUCCEEDED and not details.get("ReplayChildren"):
            value = deserialize_value(self.item_serdes or self.scope.serdes, details.get("Result"),
                                      self.scope.serdes_ctx(op.id))
            return BatchItem(index, BatchItemStatus.SUCCEEDED, value)
        if op.completed and op.status != wire.SUCCEEDED:
            return BatchItem(index, BatchItemStatus.FAILED, None,
                             ChildContextError.from_error_object(details.get("Error")))
        return None

    # -- payload ------------------------------------------------------------------------------
    def _batch_serdes(self) -> Any:
        """The serdes that writes the BatchResult itself: the op-level one, else a handler serdes in the
        official SDK's format (it writes batch results as such), else None (to_dict() with the handler's)."""
        if self.cfg.serdes is not None:
            return self.cfg.serdes
        if self.item_serdes is None and isinstance(self.scope.serdes, ExtendedTypeSerDes):
            return self.scope.serdes
        return None

    def _encode(self, result: BatchResult, sctx: SerDesContext) -> str:
        scope = self.scope
        batch_serdes = self._batch_serdes()
        if batch_serdes is not None:
            return serialize_value(batch_serdes, result, sctx)
        data = result.to_dict()
        if self.item_serdes is not None:
            for entry in data["all"]:
                if entry["status"] == BatchItemStatus.SUCCEEDED.value:
                    bsctx = scope.serdes_ctx(wire.branch_id(self.op_id, entry["index"]))
                    entry["payload"] = serialize_value(self.item_serdes, entry.pop("result"), bsctx)
        return serialize_value(scope.serdes, data, sctx)

    def _decode(self, text: Optional[str], sctx: SerDesContext) -> BatchResult:
        scope = self.scope
        batch_serdes = self._batch_serdes()
        if batch_serdes is not None:
            value = deserialize_value(batch_serdes, text, sctx)
            if isinstance(value, BatchResult):
                return value
            if isinstance(value, dict):
                return BatchResult.from_dict(value)
            raise SerDesError(f"the serdes of {self.kind} {self.name or self.op_id} returned a "
                              f"{type(value).__name__}; it must return a BatchResult (or BatchResult.to_dict())")
        data = deserialize_value(scope.serdes, text, sctx)
        if isinstance(data, BatchResult):  # written by the official SDK ({"t":"br",...})
            return data
        if isinstance(data, dict) and isinstance(data.get("all"), list):
            for entry in data["all"]:
                if isinstance(entry, dict) and "payload" in entry:
                    bsctx = scope.serdes_ctx(wire.branch_id(self.op_id, entry.get("index", 0)))
                    entry["result"] = deserialize_value(self.item_serdes or scope.serdes, entry.pop("payload"),
                                                        bsctx)
        return BatchResult.from_dict(data)

    def _summary(self, result: BatchResult) -> str:
        """The payload of a batch whose result exceeds 256 KiB (ReplayChildren rebuilds it)."""
        summary: dict[str, Any] = {
            "type": "MapResult" if self.kind == "map" else "ParallelResult",
            "totalCount": result.total_count, "successCount": result.success_count,
            "failureCount": result.failure_count, "startedCount": result.started_count,
            "completionReason": result.completion_reason.value, "status": result.status.value}
        if self.flat:
            codes = ["-"] * len(self.branches)
            for item in result.all:
                codes[item.index] = _FLAT_CODES[item.status]
            summary["flatStatuses"] = "".join(codes)
        return json.dumps(summary, separators=(",", ":"))

    def _rebuild(self, summary_text: Optional[str]) -> BatchResult:
        """Replay of a batch completed with ReplayChildren: rebuild the result from the branches."""
        try:
            summary = json.loads(summary_text or "{}")
            reason = CompletionReason(summary["completionReason"])
        except (ValueError, KeyError, TypeError):
            raise SerDesError(f"{self.kind} {self.name or self.op_id}: the summary checkpointed for a large "
                              f"result is unreadable: {summary_text!r:.200}") from None
        items: list[BatchItem] = []
        if self.flat:
            codes = str(summary.get("flatStatuses") or "")
            for index, code in enumerate(codes[:len(self.branches)]):
                if code == "T":
                    items.append(BatchItem(index, BatchItemStatus.STARTED))
                elif code in ("S", "F"):
                    items.append(self._replay_inline(index))
            return BatchResult(items, reason)
        for index in range(len(self.branches)):
            stored = self._stored(index)
            op = self._ops[index]
            if op is None:
                continue
            if stored is not None:
                items.append(stored)
            elif op.status == wire.SUCCEEDED:  # the branch's own result was large: replay its body
                items.append(self._replay_inline(index))
            else:
                items.append(BatchItem(index, BatchItemStatus.STARTED))
        return BatchResult(items, reason)

    def _replay_inline(self, index: int) -> BatchItem:
        try:
            value = self._call_unit(index)
        except ChildContextError as exc:
            return _failed_item(index, exc)
        except (SuspendExecution, CheckpointError, NonDeterminismError):
            raise
        except Exception as exc:  # noqa: BLE001 - a FLAT branch's failure replays as its exception
            return _failed_item(index, exc)
        return BatchItem(index, BatchItemStatus.SUCCEEDED, value)


def _failed_item(index: int, exc: BaseException) -> BatchItem:
    return BatchItem(index, BatchItemStatus.FAILED, None, ChildContextError.from_error_object(error_object(exc)))
