"""The checkpoint client protocol and the per-invocation flusher.

Callers enqueue updates, each with how long it may stay unsaved (``persist``):

* ``AWAIT``: the caller blocks until the batch holding the update is persisted (an
  at-most-once START, a wait, a callback, an invoke: the service must know before the code
  goes on);
* ``DEFER``: not awaited now, but persisted before anything could act on it: before the next
  step body runs (``persist_deferred``), with the next awaited update, and before the
  invocation ends (``drain``). A step's SUCCEED is deferred, so it rides with the next
  step's round trip instead of paying its own;
* ``QUEUE``: sent with the next batch (an at-least-once START, a CONTEXT START; a step's
  SUCCEED in ``CheckpointMode.PIPELINED``); there is no idle timer. When a step body starts,
  the call that persists the deferred updates takes the queued ones along; if some are still
  unsaved (nothing was deferred) the body may run long, so the background thread sends them
  once they lingered ``ASYNC_LINGER_SECONDS``: a long body's START is recorded when it starts,
  not when it ends. The thread is started the first time this happens in an invocation (an
  invocation whose queued updates always ride along never starts it), and joined before the
  invocation returns. At most one batch (the service's limits: 250 updates, 750 KB) is ever
  unsaved: the caller that would exceed that waits for a flush.

Updates are applied in order (FIFO, one batch in flight at a time, each call using the token
the previous one returned), so an awaited update also persists everything queued before it.

A waiting caller flushes itself when no flush is in progress (leader/follower group commit), so
a sequential step pays no thread hop. Concurrent callers share one checkpoint call. While a
flush is in flight, callers queue behind it and the next flush takes all of them. When no flush
is in flight but other threads of the invocation are running durable code (map, parallel and
concurrently units, counted by ``activity``; a thread in a step body or blocked in a pool wait
does not count), the first caller *gathers*: it waits until every running thread is waiting
too, then the last to arrive sends the batch for all, or at most ``GATHER_SECONDS``. Without
this a fast service (the in-memory engine answers in microseconds and never releases the GIL)
would see one call per awaited update. Waiters whose updates are persisted are woken one at a
time, each by the thread that next blocks, so they never queue up on the GIL together.

A failed call fails the flusher: every waiter, and every later caller, gets the error
(``CheckpointError``; the updates of the failed batch and everything queued after it are not
saved, so the invocation must end: the handler fails it, or lets Lambda retry it).

A ``CheckpointDurableExecution`` response's ``NewExecutionState`` is paged: when it carries a
``NextMarker``, the rest is fetched with ``GetDurableExecutionState`` before anybody uses it.
"""
from __future__ import annotations

import _thread
import os
import threading
import time
from collections import deque
from queue import Empty, SimpleQueue
from typing import Any, Callable, Protocol

from . import wire
from .errors import CheckpointError, DurableError, ExecutionEnvelopeError
from .state import ExecutionState


#: How long an update may stay unsaved (``Flusher.enqueue``; see the module doc).
AWAIT, DEFER, QUEUE = "await", "defer", "queue"
_PERSIST = (AWAIT, DEFER, QUEUE)


class CheckpointClient(Protocol):
    """What the SDK needs from the service (boto3 shapes, without ResponseMetadata)."""

    def checkpoint(self, arn: str, token: str, updates: list[dict[str, Any]], client_token: str) -> dict[str, Any]:
        """CheckpointDurableExecution: returns {CheckpointToken, NewExecutionState{Operations, NextMarker}}."""

    def get_state(self, arn: str, token: str, marker: str) -> dict[str, Any]:
        """GetDurableExecutionState: returns {Operations, NextMarker}."""


def read_pages(client: CheckpointClient, arn: str, token: str, marker: Any) -> list[dict[str, Any]]:
    """The operations of the pages after ``marker`` (GetDurableExecutionState), in order.

    Used for the invocation's initial state and for every paged checkpoint response. A marker
    the service returns twice would loop forever: it is refused with ``ExecutionEnvelopeError``.
    """
    ops: list[dict[str, Any]] = []
    seen = set()
    while marker:
        if marker in seen:
            raise ExecutionEnvelopeError(f"GetDurableExecutionState returned the marker {marker!r} twice")
        seen.add(marker)
        page = client.get_state(arn, token, marker) or {}
        ops.extend(page.get("Operations") or [])
        marker = page.get("NextMarker")
    return ops


#: How long queued updates that nobody awaits may wait for a flush to ride along with.
ASYNC_LINGER_SECONDS = 0.002
#: Longest a caller waits for the other running threads to reach a checkpoint (see the module doc).
GATHER_SECONDS = 0.001
#: A checkpoint call slower than this makes pools that watch slow calls start more workers (``watch_slow_calls``).
SLOW_CALL_SECONDS = 0.002
#: A sleeping waiter re-checks this often, in case the thread that should wake it blocked in code the
#: flusher cannot see (user code outside a step). Rarely needed, so long: against AWS a checkpoint
#: takes tens of ms, and waking each waiter every few ms would cost real CPU on a small Lambda.
WAKE_SECONDS = 0.05


def _start_thread(target: Callable[[], None]) -> Callable[[], None]:
    """Run ``target`` on a new thread; returns its ``join``, which returns once ``target`` has returned
    (and may be called again).

    A ``_thread`` thread rather than a ``threading.Thread``: ``Thread.start`` blocks until the new
    thread runs, and ``Thread.join`` until its thread state is gone; together with the ``Thread``
    object that costs about 80 µs more per invocation on a 2-vCPU machine than starting it and
    waiting on one lock. It is not listed by ``threading.enumerate()``.
    """
    done = _thread.allocate_lock()
    done.acquire()

    def run() -> None:
        try:
            target()
        finally:
            done.release()

    def join() -> None:
        with done:
            pass

    _thread.start_new_thread(run, ())
    return join


class _Waiter:
    """One caller blocked until update ``seq`` is persisted; whoever takes it off the lists wakes it.

    The wake-up is a ``SimpleQueue`` (C, no lock handed between threads): a ``threading.Event``
    costs ~10 µs to create, and a concurrent map creates one waiter per awaited update.
    """

    __slots__ = ("seq", "_signal")

    def __init__(self, seq: int):
        self.seq = seq
        self._signal: SimpleQueue = SimpleQueue()

    def wake(self) -> None:
        self._signal.put(True)

    def wait(self, timeout: float) -> bool:
        """True when woken, False when ``timeout`` passed first."""
        try:
            return self._signal.get(True, timeout)
        except Empty:
            return False


class Flusher:
    """Batches and sends the updates of one invocation, in order."""

    def __init__(self, client: CheckpointClient, arn: str, token: str, state: ExecutionState):
        self._client = client
        self._arn = arn
        self.token = token
        self._state = state
        self._lock = threading.Lock()  # guards everything below; callers sleep on their own _Waiter
        self._queue: list[tuple[int, dict[str, Any], int]] = []  # (seq, update, size)
        self._enqueued = 0
        self._persisted = 0
        self._deferred = 0  # the last deferred update: persisted before the next step body
        self._unsaved_bytes = 0  # queued or in flight
        self._flushing = False
        self._closed = False
        self._linger = 0  # the last queued update a step body started with: the background thread sends it
        self._linger_due = 0.0  # ... once it lingered unsaved until then (time.monotonic())
        self._bg_signal: SimpleQueue = SimpleQueue()  # wakes the background thread (work, or the end)
        self._bg_idle = False  # the background thread sleeps until signalled
        self._waiting: list[_Waiter] = []  # callers blocked until their update is persisted
        self._ready: deque[_Waiter] = deque()  # persisted, still asleep: woken one at a time
        self._runners = 1  # threads of the invocation running durable code (the handler's at first)
        self._gathering = False
        self.error: BaseException | None = None
        self.calls = 0
        self.updates_sent = 0
        self.gather_timeouts = 0  # gatherings that ended by GATHER_SECONDS, not by every runner arriving
        self._join_thread: Callable[[], None] | None = None  # the background thread's join, once it is started
        #: ``on_response(operations)``: called with the operations of each checkpoint response, with the
        #: flusher's lock held (so it only queues them): instrumentation's on_operation_change.
        self.on_response: Any = None
        self._slow_call_watchers: list[Callable[[], None]] = []
        # ClientTokens: unique per batch, stable across the client's own retries of that batch.
        self._token_prefix = os.urandom(16).hex()
        self._batches = 0

    # -- callers -------------------------------------------------------------
    def enqueue(self, update: dict[str, Any], persist: str, shape_checked: bool = False) -> None:
        """Queue one update; ``persist`` is AWAIT, DEFER or QUEUE (see the module doc)."""
        if persist not in _PERSIST:
            raise ValueError(f"persist must be AWAIT, DEFER or QUEUE, got {persist!r}")
        size = wire.validate_update(update, shape_checked)
        with self._lock:
            if self.error is not None:
                raise self._failure()
            if self._closed:
                raise CheckpointError("checkpoint after the invocation ended (a thread outlived its invocation)")
            seq = self._enqueued = self._enqueued + 1
            self._queue.append((seq, update, size))
            self._unsaved_bytes += size
            if persist == AWAIT:
                self._wait_for(seq)
                return
            if seq - self._persisted >= wire.MAX_BATCH_UPDATES or self._unsaved_bytes > wire.MAX_BATCH_BYTES:
                self._make_room(seq, size)
            if persist == DEFER:
                self._deferred = seq  # the next awaited point sends it

    def _make_room(self, seq: int, size: int) -> None:
        """(lock held) More than a batch is unsaved with update ``seq``: send what fits in one."""
        if seq - self._persisted >= wire.MAX_BATCH_UPDATES:
            self._wait_for(seq)  # a batch's worth is unsaved: send it, this one included
        else:
            # More than a batch's bytes: send what came before (an update too big for any batch goes
            # alone, now).
            self._wait_for(seq if size > wire.MAX_BATCH_BYTES else seq - 1)

    def persist_deferred(self, then_idle: bool = False) -> None:
        """Return once every deferred update is persisted (before a step body runs); the updates queued
        behind them ride along. ``then_idle``: the calling thread then runs user code (a step body), not
        durable code (``activity(-1)``, in the same locked section), and the updates still queued are sent
        by the background thread if they linger ``ASYNC_LINGER_SECONDS`` (the body may run long).

        Raises the flusher's failure, if any: nothing more is run whose result could not be saved.
        """
        with self._lock:
            if self.error is not None:
                raise self._failure()
            if self._deferred > self._persisted:
                self._wait_for(self._enqueued)  # a call is paid anyway: nothing queued waits through the body
            if then_idle:
                self._idle()
                if self._queue:
                    self._arm_linger()

    def _arm_linger(self) -> None:
        """(lock held) Have the background thread send the queued updates once they lingered unsaved."""
        last = self._queue[-1][0]
        if self._linger >= last:
            return  # asked already
        if self._linger <= self._persisted:  # nothing asked is unsaved: a new linger period starts
            self._linger_due = time.monotonic() + ASYNC_LINGER_SECONDS
        self._linger = last
        if self._join_thread is None:  # its first act is to sleep, without this lock: it never waits for it here
            self._join_thread = _start_thread(self._background)
        elif self._bg_idle:
            self._bg_idle = False
            self._bg_signal.put(True)

    def watch_slow_calls(self, grow: Callable[[], None]) -> None:
        """After each checkpoint call slower than ``SLOW_CALL_SECONDS``, call ``grow()`` on the thread that
        made the call, without the flusher's lock. ``grow`` must not raise.

        A map or parallel without ``max_concurrency`` starts a few workers and grows this way: against
        a far-away service its threads mostly wait on round trips, and more branches in flight share
        each one; against a fast one (the local engine), starting threads costs more than it saves.
        """
        with self._lock:
            self._slow_call_watchers.append(grow)

    def unwatch_slow_calls(self, grow: Callable[[], None]) -> None:
        with self._lock:
            self._slow_call_watchers.remove(grow)

    def activity(self, delta: int) -> None:
        """A thread of the invocation starts (+1) or stops (-1) running durable code.

        Pools call it when a unit starts and ends and around their waits, steps around their
        body; it only steers batching (who waits for whom), never what is sent.
        """
        with self._lock:
            if delta < 0:
                self._idle(-delta)
            else:
                self._runners += delta

    def _idle(self, threads: int = 1) -> None:
        """(lock held) ``threads`` stop running durable code."""
        self._runners -= threads
        if self._gathering and self._runners <= len(self._waiting) and self._waiting:
            self._waiting.pop(0).wake()  # the last runner stopped: the gatherer sends for all
        self._pass()

    def drain(self) -> None:
        """Persist everything queued so far (end of an invocation)."""
        with self._lock:
            if self._enqueued and self.error is None:
                self._wait_for(self._enqueued)

    def close(self) -> None:
        """Drain, then stop the background thread; no thread outlives the invocation."""
        try:
            self.drain()
        except DurableError:
            pass
        with self._lock:
            self._closed = True
            join = self._join_thread
        if join is not None:
            self._bg_signal.put(True)
            join()

    # -- internals -----------------------------------------------------------
    def _failure(self) -> CheckpointError:
        err = self.error
        if isinstance(err, CheckpointError):
            return err
        return CheckpointError(f"checkpoint failed: {err}", retryable=False)

    def _wait_for(self, seq: int) -> None:
        """Called with the lock held: return once ``seq`` is persisted (group commit, see the module doc)."""
        while self._persisted < seq:
            if self.error is not None:
                raise self._failure()
            if self._flushing or (self._gathering and self._runners > len(self._waiting) + 1):
                self._sleep(seq, WAKE_SECONDS)  # a flush is in flight, or others gather for the next one
            elif self._runners > len(self._waiting) + 1:
                self._gathering = True  # other threads run durable code: give them a moment to join
                if not self._sleep(seq, GATHER_SECONDS):
                    self.gather_timeouts += 1
                if self._persisted < seq and not self._flushing:
                    self._gathering = False
                    self._flush_once(self._wanted(seq))
            else:
                self._gathering = False  # everyone who runs durable code waits: send for all
                self._flush_once(self._wanted(seq))

    def _wanted(self, seq: int) -> int:
        """(lock held) The last update a flush for ``seq`` carries: the last one somebody waits for.

        Updates queued after it wait for a later flush: sending them now would not save a call (nobody
        waits for them), but would split an operation's START and SUCCEED over two calls, and the
        service answers each call with the operations it changed.
        """
        for waiter in self._waiting:
            if waiter.seq > seq:
                seq = waiter.seq
        return seq

    def _sleep(self, seq: int, timeout: float) -> bool:
        """(lock held) Block until woken (True) or ``timeout`` passes (False); the caller re-checks.

        Before blocking, wake one persisted waiter (``_pass``): woken threads run one at a time.
        """
        waiter = _Waiter(seq)
        self._waiting.append(waiter)
        self._pass()
        self._lock.release()
        try:
            woken = waiter.wait(timeout)
        finally:
            self._lock.acquire()
        if not woken:  # whoever takes a waiter out of the lists wakes it; on a timeout it leaves by itself
            if waiter in self._waiting:
                self._waiting.remove(waiter)
            elif waiter in self._ready:
                self._ready.remove(waiter)
        return woken

    def _pass(self) -> None:
        """(lock held) Wake one waiter whose update is persisted."""
        if self._ready:
            self._ready.popleft().wake()

    def _take_batch(self, upto: int) -> tuple[list[tuple[int, dict[str, Any], int]], int]:
        """(lock held) The next batch (at most ``upto``, within the batch limits) and its size in bytes."""
        batch, total = [], 0
        for item in self._queue:
            if item[0] > upto or (batch and (len(batch) >= wire.MAX_BATCH_UPDATES
                                            or total + item[2] > wire.MAX_BATCH_BYTES)):
                break
            batch.append(item)
            total += item[2]
        del self._queue[: len(batch)]
        return batch, total

    def _call(self, updates: list[dict[str, Any]], client_token: str) -> tuple[str, list[dict[str, Any]]]:
        """(lock released) One checkpoint call: the new token and the new state, every page of it."""
        response = self._client.checkpoint(self._arn, self.token, updates, client_token) or {}
        new_state = response.get("NewExecutionState") or {}
        ops = new_state.get("Operations") or []
        token = response.get("CheckpointToken")
        if not token:  # the execution is complete: the token is spent, there is nothing more to read
            return self.token, ops
        if new_state.get("NextMarker"):
            ops = [*ops, *read_pages(self._client, self._arn, token, new_state["NextMarker"])]
        return token, ops

    def _flush_once(self, upto: int) -> None:
        """Called with the lock held and no flush in progress: send one batch (updates up to ``upto``)."""
        batch, nbytes = self._take_batch(upto)
        if not batch:
            return
        self._flushing = True
        self._batches += 1
        client_token = f"{self._token_prefix}-{self._batches}"
        error = None
        watchers = list(self._slow_call_watchers) if self._slow_call_watchers else None
        self._lock.release()  # the call runs unlocked: callers keep queueing behind it
        try:
            started = time.monotonic() if watchers else 0.0
            try:
                token, ops = self._call([u for _, u, _ in batch], client_token)
            except BaseException as exc:  # noqa: BLE001 - recorded, re-raised to every waiter
                error = exc
            if watchers and time.monotonic() - started > SLOW_CALL_SECONDS:
                for grow in watchers:
                    grow()
        finally:
            self._lock.acquire()
        self._flushing = False
        if error is not None:
            self.error = error if isinstance(error, CheckpointError) else CheckpointError(
                f"checkpoint failed: {type(error).__name__}: {error}; the {len(batch)} update(s) of this batch and "
                "those queued after it were not saved", retryable=False)
        else:
            self.calls += 1
            self.updates_sent += len(batch)
            self._unsaved_bytes -= nbytes
            self.token = token
            if ops:
                self._state.merge(ops)
                if self.on_response is not None:
                    self.on_response(ops)
            self._persisted = batch[-1][0]
        if self.error is not None:  # every waiter wakes to raise it
            for waiter in self._waiting + list(self._ready):
                waiter.wake()
            self._waiting, self._ready = [], deque()
            if self._join_thread is not None:
                self._bg_signal.put(True)  # the background thread ends
        elif self._waiting:  # the persisted ones are woken one at a time (_pass)
            persisted, still = self._persisted, []
            for waiter in self._waiting:
                (self._ready if waiter.seq <= persisted else still).append(waiter)
            if still and not self._gathering:
                still.pop(0).wake()  # queued behind this flush: the first one sends the next batch
            self._waiting = still

    def _background(self) -> None:
        """Send the queued updates a step body started with (``_arm_linger``) once they lingered unsaved.

        The thread sleeps on its own signal, without the flusher's lock, until a linger period ends or it
        is signalled; it takes the lock only to look and send. Against a fast service it rarely has
        anything to send: the next step's call usually carries the updates first.
        """
        timeout: float | None = ASYNC_LINGER_SECONDS
        while True:
            try:
                self._bg_signal.get(True, timeout)
            except Empty:
                pass
            with self._lock:
                if self.error is not None or self._closed:
                    return
                if self._linger <= self._persisted:  # sent by somebody else meanwhile: sleep until asked again
                    self._bg_idle = True
                    timeout = None
                    continue
                timeout = self._linger_due - time.monotonic()
                if timeout > 0:
                    continue
                if not self._flushing and not self._gathering:  # else a flush is coming that takes them along
                    self._flush_once(self._linger)
                    self._pass()
                if self._linger > self._persisted:  # more than one batch, or a flush in the way: look again soon
                    self._linger_due = time.monotonic() + ASYNC_LINGER_SECONDS
                timeout = ASYNC_LINGER_SECONDS
