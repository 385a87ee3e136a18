"""The bounded worker pool behind ``ctx.map`` / ``ctx.parallel`` and ``ctx.concurrently``.

One piece of code schedules both (``operations.batch`` and ``operations.concurrently``):

* **Slots.** A task runs only while it holds a slot; at most ``max_slots`` are held at a
  time (``None``: no limit). A task that *suspends* (wait, retry back-off, callback)
  keeps its slot until the invocation ends, so ``max_slots`` bounds the tasks in flight,
  suspended ones included; on replay the task resumes from its checkpoints.
* **Workers.** At most ``threads`` workers run tasks. A worker takes the next queued
  task (FIFO) while one may start (the owner's ``may_start``, a free slot), runs it,
  records its outcome under the pool's lock (the owner's ``on_outcome``) and takes the
  next; it ends when no task may start. No hand-off to a coordinator per task.
* **Growing.** ``grow()`` raises ``threads`` to ``max_threads`` and starts workers for the
  tasks that may start. Owners without a concurrency bound start ``INITIAL_THREADS`` and
  call ``grow`` once a checkpoint call was slow (``Flusher.watch_slow_calls``): against a
  far-away service their threads mostly wait on round trips, and more tasks in flight share
  each one; against a fast service (the local engine) a thread costs more to start than it
  saves.
* **No thread outlives the pool.** ``join()`` returns once every worker has ended and
  been joined; owners call it before their operation returns (or suspends).

Two ways to drive it:

* all tasks known up front (map/parallel): ``run_here(tasks, threads)``: the calling
  thread is one of the ``threads`` workers, so ``threads=1`` starts no thread at all;
* tasks arriving one by one (concurrently): ``submit(task)`` queues a task and starts a
  worker if no idle one can take it; the owner's thread runs tasks itself only when no
  thread can be started, and helps at the end (``work()`` then ``join()``).

For ``concurrently`` two more things: an *inline* slot (``acquire_inline`` /
``release_inline``) is a slot held by the owner's own thread while the body of
``with group.child()`` runs there; and a thread that holds a slot and waits for a task
still queued *runs that task itself* (``steal`` + ``run_stolen``) instead of waiting
for a slot it may be holding itself, so waiting on a sibling never deadlocks the bound.

Tasks report ``(kind, value)`` outcomes, ``kind`` one of ``OK``, ``ERR`` (the task
failed: ``value`` is the exception), ``SUSPEND`` (the invocation must pause) and
``FATAL`` (the invocation fails: checkpoint errors, non-determinism, interpreter exit);
``outcome_of`` classifies a call that way.
"""
from __future__ import annotations

import itertools
import os
import threading
from collections import deque
from typing import Any, Callable, Iterable, Optional

from .errors import CheckpointError, NonDeterminismError, SuspendExecution

__all__ = ["UnitPool", "outcome_of", "classify", "OK", "ERR", "SUSPEND", "FATAL", "INITIAL_THREADS",
           "DEFAULT_MAX_THREADS", "MAX_THREADS", "pool_threads"]

#: Without a concurrency bound every task may be in flight at once; the worker threads of one pool
#: start at INITIAL_THREADS and grow up to DEFAULT_MAX_THREADS while checkpoint calls are slow.
INITIAL_THREADS = min(32, (os.cpu_count() or 1) + 4)
DEFAULT_MAX_THREADS = 64
#: Hard cap on the worker threads of one pool, whatever the concurrency bound says.
MAX_THREADS = 128

OK, ERR, SUSPEND, FATAL = "ok", "err", "suspend", "fatal"


def pool_threads(max_concurrency: Optional[int]) -> tuple[int, int]:
    """``(threads, max_threads)`` of a pool for this concurrency bound: the bound itself (capped), or, without
    one, INITIAL_THREADS that may grow to DEFAULT_MAX_THREADS."""
    if max_concurrency:
        threads = min(max_concurrency, MAX_THREADS)
        return threads, threads
    return INITIAL_THREADS, DEFAULT_MAX_THREADS

_UNBOUNDED = float("inf")


def classify(exc: BaseException) -> str:
    """The outcome kind of an exception raised by a task: SUSPEND, FATAL or ERR."""
    if isinstance(exc, SuspendExecution):
        return SUSPEND
    if isinstance(exc, (CheckpointError, NonDeterminismError)):  # the invocation fails, not the task
        return FATAL
    if isinstance(exc, Exception):  # the task failed
        return ERR
    return FATAL  # interpreter exit and the like: end the invocation


def outcome_of(fn: Callable[..., Any], *args: Any) -> tuple[str, Any]:
    """Call ``fn(*args)``; its outcome as ``(kind, value)`` (see the module docstring)."""
    try:
        return OK, fn(*args)
    except BaseException as exc:  # noqa: BLE001 - classified, handed to the pool's owner
        return classify(exc), exc


class UnitPool:
    """Bounded slots, bounded worker threads, FIFO queue; see the module docstring.

    ``run(task) -> (kind, value)`` runs a task on a worker; ``on_outcome(task, kind, value)``
    and ``on_start(task)`` are called with ``cond`` held; ``may_start()`` too.
    ``activity(+1 | -1)`` (the flusher's) is told when a thread starts or stops running a task's
    durable code: tasks, and the owner's own code outside the pool's waits (``enter``/``leave``).
    Every attribute below is guarded by ``cond``.
    """

    def __init__(self, run: Callable[[Any], tuple[str, Any]], on_outcome: Callable[[Any, str, Any], None], *,
                 max_slots: Optional[int], max_threads: int, label: str, threads: Optional[int] = None,
                 may_start: Optional[Callable[[], bool]] = None, on_start: Optional[Callable[[Any], None]] = None,
                 activity: Optional[Callable[[int], None]] = None):
        self.cond = threading.Condition(threading.Lock())
        self.pending: deque = deque()
        self.max_slots: float = _UNBOUNDED if max_slots is None else max_slots
        self.max_threads = max(1, max_threads)
        self.threads = min(self.max_threads, max(1, threads or max_threads))  # the current bound on workers
        self.in_slots = 0          # slots held: running tasks, suspended tasks, inline holders
        self.suspended_slots = 0   # of which held by suspended tasks (never freed in this invocation)
        self.active = 0            # live workers: pool threads and callers working (run_here, work)
        self.busy = 0              # workers running a task right now
        self._run = run
        self._on_outcome = on_outcome
        self._may_start = may_start
        self._on_start = on_start
        self._label = label
        self._activity = activity or (lambda delta: None)
        self._threads: list[threading.Thread] = []
        self._numbers = itertools.count(1)  # worker thread names
        self._joined = False
        self._local = threading.local()  # .slots: slots of this pool held by the current thread

    # -- queries (cond held) ---------------------------------------------------------------------
    def startable(self) -> bool:
        """A queued task may start now (a free slot, the owner allows it)."""
        return bool(self.pending) and self.in_slots < self.max_slots and (
            self._may_start is None or self._may_start())

    def stalled(self) -> bool:
        """Nothing runs, nothing can start: the held slots all belong to suspended tasks."""
        return self.in_slots == self.suspended_slots and not self.startable()

    def holds_slot(self) -> bool:
        """The current thread holds a slot of this pool (runs one of its tasks, or an inline body)."""
        return getattr(self._local, "slots", 0) > 0

    # -- driving ---------------------------------------------------------------------------------
    def run_here(self, tasks: Iterable[Any], threads: int) -> None:
        """Queue ``tasks`` and run them with ``threads`` workers, the calling thread being one; then join."""
        with self.cond:
            self.pending.extend(tasks)
            self.active += 1  # the calling thread
        self._launch(threads - 1)
        self.enter()
        try:
            self._worker()
        finally:
            try:
                self.join()  # even when the calling thread's own work raised: no thread outlives this call
            finally:
                self.leave()

    def grow(self) -> None:
        """Allow ``max_threads`` workers, and start those the queued tasks can use."""
        with self.cond:
            if self._joined or self.threads == self.max_threads:  # done with the pool, or grown already
                return
            self.threads = self.max_threads
            want = self._wanted()
            self.active += want
        self._start_reserved(want)

    def submit(self, task: Any) -> None:
        """Queue ``task``; a worker starts it as soon as a slot is free."""
        with self.cond:
            self.pending.append(task)
            self._spawn()
            help_now = self.active == 0 and self.startable()
        if help_now:  # no thread could be started: run it here rather than never
            self.work()

    def work(self) -> None:
        """The calling thread works as one more worker until no task may start."""
        with self.cond:
            self.active += 1
        self.enter()
        try:
            self._worker()
        finally:
            self.leave()

    def join(self) -> None:
        """Wait until no worker is left, and join the threads: none outlives this call."""
        self.enter()
        try:
            with self.cond:
                while self.active:
                    self.cond.wait()
                self._joined = True
                threads, self._threads = self._threads, []
            for thread in threads:
                thread.join()
        finally:
            self.leave()

    def enter(self) -> None:
        """The calling thread enters the pool's machinery (runs tasks or waits): it stops running
        durable code of its own, which the flusher's gathering must not wait for (``activity``)."""
        local = self._local
        depth = getattr(local, "depth", 0)
        local.depth = depth + 1
        if depth == 0:
            self._activity(-1)

    def leave(self) -> None:
        """Undo one ``enter``."""
        local = self._local
        local.depth -= 1
        if local.depth == 0:
            self._activity(1)

    def cancel_pending(self) -> list[Any]:
        """(cond held) Drop the queued tasks; returns them."""
        dropped = list(self.pending)
        self.pending.clear()
        return dropped

    # -- inline slots and stealing (concurrently) ------------------------------------------------
    def acquire_inline(self) -> bool:
        """Take a slot for a body that runs on the calling thread, after the tasks queued before it.

        Blocks while the bound is reached; returns False when no slot can free up in this
        invocation (every slot held by a suspended task): the caller must suspend.
        """
        self.enter()
        try:
            with self.cond:
                while self.in_slots + len(self.pending) >= self.max_slots:
                    if self.startable() and self.active == 0:
                        self.help_locked()
                        continue
                    if self.stalled():
                        return False
                    self.cond.wait()
                self.in_slots += 1
                self._local.slots = getattr(self._local, "slots", 0) + 1
            return True
        finally:
            self.leave()

    def release_inline(self, suspended: bool) -> None:
        """Give back an inline slot (a suspended body keeps it, as a suspended task does)."""
        with self.cond:
            self._local.slots -= 1
            if suspended:
                self.suspended_slots += 1
            else:
                self.in_slots -= 1
                self._spawn()
            help_now = self.active == 0 and self.startable()
            self.cond.notify_all()
        if help_now:
            self.work()

    def steal(self, task: Any) -> bool:
        """(cond held) Take ``task`` out of the queue to run it on this thread (which holds a slot)."""
        try:
            self.pending.remove(task)
        except ValueError:
            return False
        if self._on_start is not None:
            self._on_start(task)
        return True

    def run_stolen(self, task: Any) -> None:
        """Run a stolen task on this thread; it uses the slot the thread already holds."""
        outcome = self._call(task)
        with self.cond:
            self._settle(task, outcome, held=False)

    def help_locked(self) -> None:
        """(cond held) Work as one more worker for a while: for waiters that see queued tasks and no worker."""
        self.cond.release()
        try:
            self.work()
        finally:
            self.cond.acquire()

    # -- internals -------------------------------------------------------------------------------
    def _wanted(self) -> int:
        """(cond held) Workers to start for the tasks that may start and that no idle worker will take."""
        if not self.startable():
            return 0
        startable = min(len(self.pending), self.max_slots - self.in_slots)
        return max(0, int(min(startable - (self.active - self.busy), self.threads - self.active)))

    def _spawn(self) -> None:
        """(cond held) Start workers for the tasks that may start and that no idle worker will take."""
        self._start_workers(self._wanted())

    def _launch(self, count: int) -> None:
        """(cond NOT held) Start up to ``count`` workers."""
        if count <= 0:
            return
        with self.cond:
            self.active += count
        self._start_reserved(count)

    def _start_reserved(self, count: int) -> None:
        """(cond NOT held) Start ``count`` workers already counted in ``active``. Starting threads while
        holding the lock made every new worker queue up on it, and the pool ran ~40% slower for the whole map."""
        if count <= 0:
            return
        started = []
        for _ in range(count):
            thread = threading.Thread(target=self._worker, name=f"{self._label}-{next(self._numbers)}", daemon=True)
            try:
                thread.start()
            except RuntimeError:  # "can't start new thread": go on with the workers there are
                break
            started.append(thread)
        with self.cond:
            self._threads.extend(started)
            if len(started) < count:
                self.active -= count - len(started)
                self.cond.notify_all()

    def _start_workers(self, count: int) -> None:
        """(cond held) Start up to ``count`` worker threads; fewer if the system refuses threads."""
        for _ in range(max(0, count)):
            thread = threading.Thread(target=self._worker, name=f"{self._label}-{next(self._numbers)}",
                                      daemon=True)
            self.active += 1
            try:
                thread.start()
            except RuntimeError:  # "can't start new thread": go on with the workers there are
                self.active -= 1
                break
            self._threads.append(thread)

    def _worker(self) -> None:
        """A worker's life (already counted in ``active``): run tasks until none may start, sign off."""
        try:
            self._work()
        finally:
            with self.cond:
                self.active -= 1
                self.cond.notify_all()

    def _work(self) -> None:
        cond = self.cond
        task: Any = None
        outcome: tuple[str, Any] = (OK, None)
        taken = False
        while True:
            with cond:
                if taken:
                    self.busy -= 1
                    self._settle(task, outcome, held=True)
                if not self.startable():
                    return
                task = self.pending.popleft()
                self.in_slots += 1
                self.busy += 1
                taken = True
                if self._on_start is not None:
                    self._on_start(task)
            outcome = self._call(task)

    def _call(self, task: Any) -> tuple[str, Any]:
        local = self._local
        local.slots = getattr(local, "slots", 0) + 1
        depth, local.depth = getattr(local, "depth", 0), 0  # the task's own code runs durable code
        self._activity(1)
        try:
            return self._run(task)
        except BaseException as exc:  # noqa: BLE001 - a broken runner must not strand the task or its slot
            return FATAL, exc
        finally:
            self._activity(-1)
            local.depth = depth
            local.slots -= 1

    def _settle(self, task: Any, outcome: tuple[str, Any], held: bool) -> None:
        """(cond held) Account for a finished task and hand its outcome to the owner."""
        kind, value = outcome
        if held:
            if kind == SUSPEND:
                self.suspended_slots += 1  # keeps its slot until the invocation ends
            else:
                self.in_slots -= 1
        self._on_outcome(task, kind, value)
        self.cond.notify_all()
