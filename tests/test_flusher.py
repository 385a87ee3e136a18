"""Tests of the per-invocation checkpoint flusher (durable_sync.checkpoint.Flusher) with a fake client.

No test measures time: awaited updates must be persisted before ``enqueue``
returns, async ones are observed through events with bounded waits, and batching
is made deterministic by holding the client inside a call with a gate.
"""
from __future__ import annotations

import threading
import time

import pytest

import durable_sync as ds
from durable_sync import wire
from durable_sync.checkpoint import AWAIT, DEFER, QUEUE, Flusher
from durable_sync.state import ExecutionState
from helpers import os_threads, threads_gone, wait_until

ARN = "arn:aws:lambda:us-east-1:123456789012:function:f:$LATEST/durable-execution/n/exec-1"
TIMEOUT = 10  # seconds; a bound for waits that should end at once


class GateClient:
    """Records calls; ``hold_first`` keeps the first call inside ``checkpoint`` until ``release()``."""

    def __init__(self, hold_first=False, fail=None, ops_in_response=None):
        self.calls: list[dict] = []
        self.lock = threading.Lock()
        self.in_call = threading.Event()
        self.gate = threading.Event()
        self.sent = threading.Event()
        self.hold_first = hold_first
        self.fail = fail
        self.ops_in_response = ops_in_response or []
        if not hold_first:
            self.gate.set()

    def release(self):
        self.gate.set()

    def checkpoint(self, arn, token, updates, client_token):
        with self.lock:
            first = not self.calls and not self.in_call.is_set()
        if first:
            self.in_call.set()
            assert self.gate.wait(TIMEOUT), "the test never released the gate"
        if self.fail is not None:
            raise self.fail
        with self.lock:
            self.calls.append({"thread": threading.get_ident(), "token": token,
                               "ids": [u["Id"] for u in updates], "updates": list(updates),
                               "client_token": client_token})
            n = len(self.calls)
        self.sent.set()
        return {"CheckpointToken": f"tok-{n}", "NewExecutionState": {"Operations": self.ops_in_response}}

    def get_state(self, arn, token, marker):  # pragma: no cover
        raise AssertionError("not used")

    @property
    def sizes(self):
        return [len(c["ids"]) for c in self.calls]

    @property
    def ids(self):
        return [i for c in self.calls for i in c["ids"]]


def upd(i, payload=None, action="START"):
    u = {"Id": f"op-{i}", "Type": "STEP", "SubType": "Step", "Action": action}
    if payload is not None:
        u["Payload"] = payload
    return u


def make(client):
    return Flusher(client, ARN, "tok-0", ExecutionState(ARN, []))


def start_thread(target, *args):
    t = threading.Thread(target=target, args=args, daemon=True)
    t.start()
    return t


def body_starts(flusher):
    """What a step body's start does (OperationScope.run_step_body): persist the deferred updates, then
    run user code; whatever is still queued is the background thread's to send if it lingers."""
    flusher.persist_deferred(then_idle=True)
    flusher.activity(+1)  # (the body ended)


def hold_with_awaited_update(client, flusher, op=0):
    """Put a leader inside the client's first call; returns its thread."""
    t = start_thread(flusher.enqueue, upd(op), AWAIT)
    assert client.in_call.wait(TIMEOUT)
    return t


# ============================================================================= awaited / async


def test_awaited_update_is_persisted_before_enqueue_returns():
    before = os_threads()
    client = GateClient()
    flusher = make(client)
    flusher.enqueue(upd(1), AWAIT)
    # no idle timer, no hand-off: the batch was sent by the caller itself, before enqueue returned
    assert client.ids == ["op-1"]
    assert client.calls[0]["thread"] == threading.get_ident()
    assert client.calls[0]["token"] == "tok-0"
    assert flusher.token == "tok-1"  # rotated to the response's token
    assert os_threads() == before  # no background thread was needed
    flusher.enqueue(upd(2), AWAIT)
    assert client.ids == ["op-1", "op-2"]
    assert client.calls[1]["token"] == "tok-1"
    assert client.calls[0]["client_token"] != client.calls[1]["client_token"]
    flusher.close()


def test_queued_updates_alone_wait_for_a_flush_without_a_thread():
    before = os_threads()
    client = GateClient()
    flusher = make(client)
    flusher.enqueue(upd(1), QUEUE)  # no idle timer: nobody waits for it, no user code runs yet
    assert client.calls == []
    assert os_threads() == before  # no background thread either
    flusher.enqueue(upd(2), AWAIT)  # ... it rides with the next flush
    assert [c["ids"] for c in client.calls] == [["op-1", "op-2"]]
    flusher.close()


def test_a_queued_update_a_step_body_starts_with_is_sent_by_the_background_thread():
    client = GateClient(hold_first=True)
    flusher = make(client)
    flusher.enqueue(upd(1), QUEUE)
    body_starts(flusher)  # the body may run long: the update must not wait for it
    assert client.in_call.wait(TIMEOUT), "nobody sent the async update"
    assert client.calls == []
    client.release()
    assert client.sent.wait(TIMEOUT)
    assert client.ids == ["op-1"]
    assert client.calls[0]["thread"] != threading.get_ident()  # the background thread sent it
    flusher.close()


def test_async_updates_after_an_idle_period_are_still_sent():
    client = GateClient()
    flusher = make(client)
    flusher.enqueue(upd(1), QUEUE)
    body_starts(flusher)
    wait_until(lambda: client.ids == ["op-1"], "the first async update")
    client.sent.clear()
    flusher.enqueue(upd(2), QUEUE)
    body_starts(flusher)  # the background thread is idle now and must wake up
    assert client.sent.wait(TIMEOUT)
    wait_until(lambda: client.ids == ["op-1", "op-2"], "the second async update")
    flusher.close()


def test_order_is_preserved_across_async_and_awaited_updates():
    client = GateClient(hold_first=True)
    flusher = make(client)
    leader = hold_with_awaited_update(client, flusher, 0)
    for i in range(1, 6):
        flusher.enqueue(upd(i), QUEUE)
    waiter = start_thread(flusher.enqueue, upd(6), AWAIT)
    wait_until(lambda: flusher._enqueued == 7, "the awaited update to be queued")
    client.release()
    leader.join(TIMEOUT)
    waiter.join(TIMEOUT)
    flusher.enqueue(upd(7), QUEUE)
    flusher.enqueue(upd(8), AWAIT)
    assert client.ids == [f"op-{i}" for i in range(9)]
    assert client.sizes[:2] == [1, 6]  # everything queued behind the held call went in one batch
    flusher.close()


def test_drain_persists_queued_async_updates():
    client = GateClient()
    flusher = make(client)
    for i in range(5):
        flusher.enqueue(upd(i), QUEUE)
    flusher.drain()
    assert [c["ids"] for c in client.calls] == [[f"op-{i}" for i in range(5)]]
    assert flusher.updates_sent == 5
    flusher.close()


# ============================================================================= deferred updates


def test_a_deferred_update_rides_with_the_next_awaited_point(no_linger):
    client = GateClient()
    flusher = make(client)
    flusher.enqueue(upd(0), QUEUE)  # a step's START
    flusher.enqueue(upd(0, action="SUCCEED"), DEFER)  # ... and its SUCCEED
    flusher.enqueue(upd(1), QUEUE)  # the next step's START
    assert client.calls == []  # nothing waits for any of them yet
    flusher.persist_deferred()  # the next step body is about to run
    # one call, in order; the next step's START rides along: it would otherwise wait through its body
    assert [c["ids"] for c in client.calls] == [["op-0", "op-0", "op-1"]]
    flusher.enqueue(upd(2), QUEUE)
    flusher.persist_deferred()  # nothing deferred is unsaved: no call
    assert len(client.calls) == 1
    flusher.close()
    assert [c["ids"] for c in client.calls] == [["op-0", "op-0", "op-1"], ["op-2"]]


def test_an_awaited_update_carries_the_deferred_ones_before_it(no_linger):
    client = GateClient()
    flusher = make(client)
    flusher.enqueue(upd(1, action="SUCCEED"), DEFER)
    flusher.enqueue(upd(2), AWAIT)  # e.g. the next at-most-once START
    assert [c["ids"] for c in client.calls] == [["op-1", "op-2"]]
    flusher.close()


def test_queued_updates_alone_are_not_forced_out_by_persist_deferred(no_linger):
    client = GateClient()
    flusher = make(client)
    flusher.enqueue(upd(1), QUEUE)  # an at-least-once START: nothing acts on it
    flusher.persist_deferred()
    assert client.calls == []
    flusher.drain()  # ... but the invocation never ends with it unsaved
    assert client.ids == ["op-1"]
    flusher.close()


def test_deferred_updates_start_no_background_thread():
    before = os_threads()
    client = GateClient()
    flusher = make(client)
    for i in range(5):
        flusher.enqueue(upd(i, action="SUCCEED"), DEFER)
    assert os_threads() == before
    flusher.close()  # drains them
    assert client.sizes == [5]


def test_a_background_failure_surfaces_before_the_next_step_body():
    client = GateClient(fail=ds.CheckpointError("ThrottlingException: slow down", retryable=True))
    flusher = make(client)
    flusher.enqueue(upd(1), QUEUE)
    body_starts(flusher)  # sent by the background thread while the body runs, which fails
    wait_until(lambda: flusher.error is not None, "the background failure")
    with pytest.raises(ds.CheckpointError, match="slow down") as caught:
        flusher.persist_deferred()
    assert caught.value.retryable  # Lambda retries the invocation: the updates were not saved
    flusher.close()


def test_a_generic_failure_says_what_was_not_saved():
    client = GateClient(fail=OSError("connection reset"))
    flusher = make(client)
    flusher.enqueue(upd(1, action="SUCCEED"), DEFER)
    with pytest.raises(ds.CheckpointError, match=r"connection reset; the 2 update\(s\) of this batch .* not saved"):
        flusher.enqueue(upd(2), AWAIT)
    flusher.close()


# ============================================================================= group commit


def test_concurrent_awaited_callers_coalesce():
    n = 24
    client = GateClient(hold_first=True)
    flusher = make(client)
    persisted_on_return = {}

    def caller(i):
        flusher.enqueue(upd(i), AWAIT)
        with client.lock:
            persisted_on_return[i] = f"op-{i}" in [x for c in client.calls for x in c["ids"]]

    leader = start_thread(caller, 0)
    assert client.in_call.wait(TIMEOUT)
    threads = [start_thread(caller, i) for i in range(1, n)]
    wait_until(lambda: flusher._enqueued == n, "all callers to queue their update")
    client.release()
    for t in [leader, *threads]:
        t.join(TIMEOUT)
        assert not t.is_alive()
    assert sorted(client.ids) == sorted(f"op-{i}" for i in range(n))
    assert len(client.ids) == n  # each sent exactly once
    assert len(client.calls) < n  # coalesced
    assert client.sizes == [1, n - 1]  # one call while held, then one group commit for all the others
    assert persisted_on_return == {i: True for i in range(n)}
    flusher.close()


@pytest.fixture
def no_linger(monkeypatch):
    """The background thread never sends by itself before close: batches are made by callers only."""
    monkeypatch.setattr("durable_sync.checkpoint.ASYNC_LINGER_SECONDS", TIMEOUT * 100)


def enqueue_all(flusher, updates):
    """Queue ``updates`` (not awaited) from another thread: the unsaved bound may block it."""
    return start_thread(lambda: [flusher.enqueue(u, QUEUE) for u in updates])


def test_batch_limit_of_250_updates(no_linger):
    client = GateClient(hold_first=True)
    flusher = make(client)
    leader = hold_with_awaited_update(client, flusher, "held")
    producer = enqueue_all(flusher, [upd(i) for i in range(600)])
    # at most one batch (250) is unsaved, the update in flight included: the 250th waits for room
    wait_until(lambda: flusher._enqueued == 250 and len(flusher._waiting) == 1, "the producer to block")
    assert client.calls == []
    client.release()
    leader.join(TIMEOUT)
    producer.join(TIMEOUT)
    assert not producer.is_alive()
    flusher.drain()
    assert client.sizes == [1, 249, 250, 101]
    assert client.ids == ["op-held"] + [f"op-{i}" for i in range(600)]
    assert max(client.sizes) <= wire.MAX_BATCH_UPDATES
    flusher.close()


def test_unsaved_updates_never_exceed_one_batch(no_linger):
    """Without a background send, the producer itself flushes at the bound."""
    client = GateClient()
    flusher = make(client)
    for i in range(600):
        flusher.enqueue(upd(i), QUEUE)
        assert flusher._enqueued - flusher._persisted <= wire.MAX_BATCH_UPDATES
    assert [c["thread"] for c in client.calls] == [threading.get_ident()] * 2
    assert client.sizes == [250, 250]
    flusher.close()
    assert client.sizes == [250, 250, 100]
    assert client.ids == [f"op-{i}" for i in range(600)]


def test_batch_byte_limit(no_linger):
    payload = "p" * 100_000
    client = GateClient(hold_first=True)
    flusher = make(client)
    leader = hold_with_awaited_update(client, flusher, "held")
    producer = enqueue_all(flusher, [upd(i, payload, action="SUCCEED") for i in range(10)])
    wait_until(lambda: flusher._enqueued == 9 and len(flusher._waiting) == 1, "the producer to block")
    client.release()
    leader.join(TIMEOUT)
    producer.join(TIMEOUT)
    flusher.drain()
    for call in client.calls:
        assert sum(len(u.get("Payload") or "") for u in call["updates"]) <= wire.MAX_BATCH_BYTES
    assert client.sizes == [1, 7, 3]
    assert client.ids == ["op-held"] + [f"op-{i}" for i in range(10)]
    flusher.close()


def test_update_bigger_than_the_batch_byte_limit_goes_alone(no_linger):
    big = "B" * (wire.MAX_BATCH_BYTES + 1000)
    client = GateClient(hold_first=True)
    flusher = make(client)
    leader = hold_with_awaited_update(client, flusher, "held")
    producer = enqueue_all(flusher, [upd("small-1"), upd("big", big, action="SUCCEED"), upd("small-2")])
    client.release()
    leader.join(TIMEOUT)
    producer.join(TIMEOUT)
    flusher.drain()  # returns: nothing stranded
    assert [c["ids"] for c in client.calls] == [["op-held"], ["op-small-1"], ["op-big"], ["op-small-2"]]
    flusher.close()


def test_awaited_oversized_update_is_not_stranded():
    client = GateClient()
    flusher = make(client)
    big = "B" * (wire.MAX_BATCH_BYTES * 2)
    flusher.enqueue(upd(1, big, action="SUCCEED"), AWAIT)
    flusher.enqueue(upd(2), AWAIT)
    assert [c["ids"] for c in client.calls] == [["op-1"], ["op-2"]]
    flusher.close()


def test_update_over_the_payload_limit_fails_before_sending():
    client = GateClient()
    flusher = make(client)
    with pytest.raises(ds.ValidationError, match="exceeds"):
        flusher.enqueue(upd(1, "x" * (wire.MAX_PAYLOAD_BYTES + 1), action="SUCCEED"), AWAIT)
    with pytest.raises(ds.ValidationError):
        flusher.enqueue({"Id": "bad id!", "Type": "STEP", "Action": "START"}, AWAIT)
    flusher.drain()
    assert client.calls == []
    flusher.close()


# ============================================================================= errors


@pytest.mark.parametrize("failure", [RuntimeError("connection reset"),
                                     ds.CheckpointError("Invalid checkpoint token", retryable=True)],
                         ids=["generic", "checkpoint-error"])
def test_client_error_is_raised_to_every_waiter(failure):
    n = 8
    client = GateClient(hold_first=True, fail=failure)
    flusher = make(client)
    errors: dict[int, BaseException] = {}

    def caller(i):
        try:
            flusher.enqueue(upd(i), AWAIT)
        except BaseException as exc:  # noqa: BLE001 - collected for the assertions
            errors[i] = exc

    leader = start_thread(caller, 0)
    assert client.in_call.wait(TIMEOUT)
    threads = [start_thread(caller, i) for i in range(1, n)]
    wait_until(lambda: flusher._enqueued == n, "all callers to queue their update")
    client.release()
    for t in [leader, *threads]:
        t.join(TIMEOUT)
        assert not t.is_alive()
    assert sorted(errors) == list(range(n))
    assert all(isinstance(e, ds.CheckpointError) for e in errors.values())
    if isinstance(failure, ds.CheckpointError):
        assert all(e is failure for e in errors.values())
        assert all(e.retryable for e in errors.values())
    else:
        assert all("connection reset" in str(e) and not e.retryable for e in errors.values())
    assert isinstance(flusher.error, ds.CheckpointError)
    # later callers fail at once, async ones included
    with pytest.raises(ds.CheckpointError):
        flusher.enqueue(upd("late"), AWAIT)
    with pytest.raises(ds.CheckpointError):
        flusher.enqueue(upd("late-async"), QUEUE)
    flusher.close()


def test_async_failure_is_reported_to_the_next_awaited_caller():
    client = GateClient(fail=ds.CheckpointError("denied", retryable=False))
    flusher = make(client)
    flusher.enqueue(upd(1), QUEUE)
    body_starts(flusher)
    wait_until(lambda: flusher.error is not None, "the background failure")
    with pytest.raises(ds.CheckpointError, match="denied"):
        flusher.enqueue(upd(2), AWAIT)
    flusher.close()


# ============================================================================= lifecycle


def test_close_joins_the_background_thread():
    before = os_threads()
    client = GateClient(hold_first=True)
    flusher = make(client)
    flusher.enqueue(upd(1), QUEUE)
    body_starts(flusher)
    assert client.in_call.wait(TIMEOUT)
    assert len(os_threads() - before) == 1  # the background thread, inside the held call
    client.release()
    flusher.enqueue(upd(2), QUEUE)
    flusher.close()
    assert client.ids == ["op-1", "op-2"]  # close drains first
    assert client.calls[0]["thread"] != threading.get_ident()
    assert threads_gone(before)
    flusher.close()  # a second close joins again without waiting
    with pytest.raises(ds.CheckpointError, match="after the invocation ended"):
        flusher.enqueue(upd(3), QUEUE)


def test_close_ends_an_idle_background_thread():
    before = os_threads()
    client = GateClient()
    flusher = make(client)
    flusher.enqueue(upd(1), QUEUE)
    body_starts(flusher)
    assert client.sent.wait(TIMEOUT)  # the background thread sent it ...
    wait_until(lambda: flusher._bg_idle, "the background thread to sleep until asked again")  # ... and sleeps
    assert len(os_threads() - before) == 1
    flusher.close()
    assert threads_gone(before)


def test_close_after_a_failure_still_joins():
    before = os_threads()
    client = GateClient(fail=RuntimeError("down"))
    flusher = make(client)
    flusher.enqueue(upd(1), QUEUE)
    try:  # the background thread may already have failed the first batch
        flusher.enqueue(upd(2), QUEUE)
    except ds.CheckpointError:
        pass
    flusher.close()  # does not raise, does not hang
    assert threads_gone(before)
    assert isinstance(flusher.error, ds.CheckpointError)


def test_response_operations_are_merged_into_the_state():
    op = {"Id": "cb-1", "Type": "CALLBACK", "SubType": "Callback", "Status": "STARTED",
          "CallbackDetails": {"CallbackId": "abc"}}
    client = GateClient(ops_in_response=[op])
    state = ExecutionState(ARN, [])
    flusher = Flusher(client, ARN, "tok-0", state)
    flusher.enqueue(upd(1), AWAIT)
    assert state.get("cb-1") == op
    flusher.close()


# ============================================================================= gathering (group commit without a slow service)


@pytest.fixture
def long_gather(monkeypatch):
    """Gathering ends only when every running thread arrives (the bound is far away)."""
    monkeypatch.setattr("durable_sync.checkpoint.GATHER_SECONDS", TIMEOUT)


def two_gathering_callers(flusher):
    """Three threads run durable code; two of them wait in a gathering. Returns their threads."""
    flusher.activity(+1)
    flusher.activity(+1)
    a = start_thread(flusher.enqueue, upd(0), AWAIT)
    wait_until(lambda: len(flusher._waiting) == 1, "the first caller to gather")
    b = start_thread(flusher.enqueue, upd(1), AWAIT)
    wait_until(lambda: len(flusher._waiting) == 2, "the second caller to join")
    return a, b


def test_gathering_waits_for_the_running_threads_and_sends_once(long_gather):
    client = GateClient()
    flusher = make(client)
    a, b = two_gathering_callers(flusher)
    assert client.calls == []  # the third thread still runs: nothing is sent yet
    flusher.activity(-1)  # ... until it stops running durable code (a step body, a pool wait)
    for t in (a, b):
        t.join(TIMEOUT)
        assert not t.is_alive()
    assert client.sizes == [2]
    assert flusher.gather_timeouts == 0
    flusher.close()


def test_the_last_thread_to_arrive_sends_for_all(long_gather):
    client = GateClient()
    flusher = make(client)
    a, b = two_gathering_callers(flusher)
    flusher.enqueue(upd(2), AWAIT)  # the third arrives: it sends, and returns persisted
    assert client.sizes == [3]
    flusher.activity(-1)  # it stops running durable code: it wakes the next waiter, which wakes the next
    for t in (a, b):
        t.join(TIMEOUT)
        assert not t.is_alive()
    flusher.close()


def test_gathering_is_bounded_when_a_running_thread_never_arrives():
    client = GateClient()
    flusher = make(client)
    flusher.activity(+1)  # another thread "runs" but never checkpoints (blocked in user code, say)
    flusher.enqueue(upd(0), AWAIT)  # returns after GATHER_SECONDS, persisted
    assert client.sizes == [1]
    assert flusher.gather_timeouts == 1
    flusher.close()


def test_a_single_running_thread_never_gathers(long_gather):
    client = GateClient()
    flusher = make(client)
    for i in range(3):
        flusher.enqueue(upd(i), AWAIT)
    assert client.sizes == [1, 1, 1]
    assert flusher.gather_timeouts == 0
    flusher.close()


def test_a_failed_gathered_flush_is_raised_to_every_waiter(long_gather):
    client = GateClient(fail=RuntimeError("service down"))
    flusher = make(client)
    flusher.activity(+1)
    errors = []

    def caller(i):
        try:
            flusher.enqueue(upd(i), AWAIT)
        except ds.CheckpointError as exc:
            errors.append(exc)

    a = start_thread(caller, 0)
    wait_until(lambda: len(flusher._waiting) == 1, "the first caller to gather")
    caller(1)
    a.join(TIMEOUT)
    assert not a.is_alive()
    assert len(errors) == 2 and all("service down" in str(e) for e in errors)
    flusher.close()


# ============================================================================= slow calls


class SlowClient(GateClient):
    """Each call takes ``seconds`` (only the flusher's own clock sees it: the test asserts counts)."""

    def __init__(self, seconds):
        super().__init__()
        self.seconds = seconds

    def checkpoint(self, arn, token, updates, client_token):
        time.sleep(self.seconds)
        return super().checkpoint(arn, token, updates, client_token)


@pytest.mark.parametrize("slow", [True, False], ids=["slow", "fast"])
def test_watchers_hear_of_slow_calls_only(monkeypatch, slow):
    monkeypatch.setattr("durable_sync.checkpoint.SLOW_CALL_SECONDS", 0.0 if slow else TIMEOUT)
    client = SlowClient(0.001)
    flusher = make(client)
    heard = []

    def grow():
        heard.append(threading.current_thread().name)

    flusher.watch_slow_calls(grow)
    flusher.enqueue(upd(1), AWAIT)
    flusher.unwatch_slow_calls(grow)
    flusher.enqueue(upd(2), AWAIT)
    assert heard == ([threading.current_thread().name] if slow else [])  # told by the thread that made the call
    flusher.close()
