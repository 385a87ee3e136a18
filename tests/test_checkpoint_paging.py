"""Checkpoint responses are paged: NewExecutionState.NextMarker means "fetch the rest with
GetDurableExecutionState" (SPEC §3). The SDK must read every page before it uses the new state."""
from __future__ import annotations

import itertools

import pytest

import durable_sync as ds
from durable_sync.checkpoint import AWAIT, Flusher
from durable_sync.local import LocalEngine
from durable_sync.state import ExecutionState

ARN = "arn:aws:lambda:us-east-1:123456789012:function:f:$LATEST/durable-execution/n/exec-1"


class PagingClient:
    """Wraps a checkpoint client so that every response is paged: no operation is inline, one per page.

    Pages it made up are served from its own table; any other marker goes to the wrapped client.
    """

    def __init__(self, inner):
        self.inner = inner
        self.pages: dict[str, tuple[dict, str | None]] = {}
        self.page_reads = 0
        self._ids = itertools.count(1)

    def _page(self, ops):
        marker = None
        for op in reversed(ops):
            new = f"page-{next(self._ids)}"
            self.pages[new] = (op, marker)
            marker = new
        return marker

    def checkpoint(self, arn, token, updates, client_token):
        response = dict(self.inner.checkpoint(arn, token, updates, client_token))
        ops = (response.get("NewExecutionState") or {}).get("Operations") or []
        state = {"Operations": []}
        marker = self._page(ops)
        if marker:
            state["NextMarker"] = marker
        response["NewExecutionState"] = state
        return response

    def get_state(self, arn, token, marker):
        if marker in self.pages:
            self.page_reads += 1
            op, nxt = self.pages.pop(marker)
            return {"Operations": [op], **({"NextMarker": nxt} if nxt else {})}
        return self.inner.get_state(arn, token, marker)


class FakeService:
    """A minimal checkpoint client answering every call with the given operations."""

    def __init__(self, ops):
        self.ops = ops

    def checkpoint(self, arn, token, updates, client_token):
        return {"CheckpointToken": "tok-new", "NewExecutionState": {"Operations": self.ops}}

    def get_state(self, arn, token, marker):  # pragma: no cover - PagingClient serves its own markers
        raise AssertionError("unexpected marker")


def test_every_page_is_merged_before_the_awaited_update_returns():
    ops = [{"Id": f"op-{i}", "Type": "STEP", "SubType": "Step", "Status": "SUCCEEDED"} for i in range(5)]
    client = PagingClient(FakeService(ops))
    state = ExecutionState(ARN, [])
    flusher = Flusher(client, ARN, "tok-0", state)
    flusher.enqueue({"Id": "x", "Type": "STEP", "SubType": "Step", "Action": "START"}, AWAIT)
    assert [state.get(f"op-{i}") for i in range(5)] == ops
    assert client.page_reads == 5
    flusher.close()


def test_a_marker_returned_twice_is_an_error_not_a_loop():
    class Looping(FakeService):
        def checkpoint(self, arn, token, updates, client_token):
            return {"CheckpointToken": "tok-new", "NewExecutionState": {"Operations": [], "NextMarker": "m"}}

        def get_state(self, arn, token, marker):
            return {"Operations": [], "NextMarker": "m"}

    flusher = Flusher(Looping([]), ARN, "tok-0", ExecutionState(ARN, []))
    with pytest.raises(ds.CheckpointError, match="marker 'm' twice"):
        flusher.enqueue({"Id": "x", "Type": "STEP", "SubType": "Step", "Action": "START"}, AWAIT)
    flusher.close()


@ds.durable_handler
def approval(event, ctx):
    before = ctx.step(lambda s: "before", name="before")
    callback = ctx.create_callback(name="approval")
    ctx.step(lambda s: callback.callback_id, name="submit")
    answer = callback.result()
    return {"before": before, "answer": answer, "after": ctx.step(lambda s: "after", name="after")}


def test_callback_id_arrives_on_a_later_page():
    """The CallbackId is only in the checkpoint response's state: on a paged response it is on a page."""
    engine = LocalEngine(db=":memory:", skip_time=True)
    clients: list[PagingClient] = []

    def factory():
        clients.append(PagingClient(engine._client))
        return clients[-1]

    engine.client_factory = factory
    try:
        arn = engine.start(approval, {})
        ops = engine.operations(arn)
        cid = next(op["CallbackDetails"]["CallbackId"] for op in ops if op.get("Name") == "approval")
        engine.send_callback_success(cid, '"yes"')
        result = engine.wait(arn)
    finally:
        engine.close()
    assert result.status == "SUCCEEDED", result.error
    assert result.result == {"before": "before", "answer": "yes", "after": "after"}
    assert clients and clients[0].page_reads >= 1  # the callback's record came on a page


# ----------------------------------------------------------------------------- how the engine pages

from hypothesis import given, settings, strategies as st  # noqa: E402

from durable_sync.local.service import _size, page  # noqa: E402

OPS = st.lists(st.builds(lambda result, error, details: {
    "Id": "x", "Type": "STEP", "Status": "SUCCEEDED",
    **({"StepDetails": {"Attempt": 1, **({"Result": "r" * result} if result is not None else {}),
                        **({"Error": {"ErrorType": "E", "ErrorMessage": "m" * error}} if error is not None else {})}}
       if details else {})},
    st.one_of(st.none(), st.integers(0, 3000)), st.one_of(st.none(), st.integers(0, 900)), st.booleans()),
    max_size=14)


@given(OPS, st.integers(1, 6), st.sampled_from([150, 600, 2000, 5000, 10 ** 7]))
@settings(max_examples=400, deadline=None)
def test_pages_cover_the_operations_in_order_within_their_limits(ops, max_items, max_bytes):
    ops = [{**op, "Id": f"op-{i}"} for i, op in enumerate(ops)]
    seen, start, pages = [], 0, 0
    while True:
        chunk, nxt = page(ops, start, max_items, max_bytes)
        pages += 1
        assert chunk == ops[start:start + len(chunk)]  # in order, from the marker
        seen.extend(chunk)
        if len(ops) - start > 1:
            assert 1 <= len(chunk) <= max_items
            sizes = [200 + _size(op) for op in chunk]
            assert len(chunk) == 1 or sum(sizes) <= max_bytes  # a single operation is a page of its own
            if nxt is not None and len(chunk) < max_items:  # cut by bytes: the next one would not fit
                assert sum(sizes) + 200 + _size(ops[nxt]) > max_bytes
        if nxt is None:
            break
        assert nxt == start + len(chunk)
        start = nxt
    assert seen == ops and pages <= max(1, len(ops))
