"""A served engine with its console, and a headless Chromium driven by selenium for the browser tests.

The browser is Debian's ``chromium`` with its ``chromium-driver`` (``chromium.py``), installed by ``.ci/run``
with apt; nothing is ever downloaded at test time. Where they are missing the browser tests skip and say
why; the HTTP-level tests need no browser.
"""
from __future__ import annotations

import http.client
import json
from dataclasses import dataclass
from typing import Any, Optional
from urllib.parse import quote, urlsplit

import pytest

import durable_sync as ds
from durable_sync.console import TOKEN_HEADER, Console, mount
from durable_sync.local import LocalEngine
from durable_sync.local.http import make_server

from . import chromium


# -- handlers ---------------------------------------------------------------------------------------------------
def _reserve(step: ds.StepContext) -> str:
    if step.attempt == 1:
        raise ConnectionError("the inventory service timed out")
    return "reservation-7"


@ds.durable_handler
def approval(event: Any, ctx: ds.DurableContext) -> dict:
    """Prepares (a step retried once, a pause, a child context of two steps), then waits for a person's answer
    (a callback with no timeout)."""
    prepared = ctx.step("prepare", lambda _: {"order": event.get("order") if isinstance(event, dict) else None})
    ctx.step("reserve", _reserve, config=ds.StepConfig(retry_strategy=ds.RetryPolicy(max_attempts=3)))
    ctx.wait(ds.Duration.from_seconds(5), name="cool-down")
    with ctx.child("quote") as quote:
        quote.step("price", lambda _: 42.0)
        quote.step("tax", lambda _: 4.2)
    answer = ctx.create_callback("approval").result()
    return {"prepared": prepared, "answer": answer}


@ds.durable_handler
def sleeper(event: Any, ctx: ds.DurableContext) -> str:
    """Long-running: waits a day (in virtual time the clock stands still until someone advances it)."""
    ctx.step("start", lambda _: "started")
    ctx.wait(ds.Duration.from_days(1), name="a-day")
    return "woke up"


def _explode(step: Any) -> None:
    raise ValueError("card declined <b>twice</b>")


@ds.durable_handler
def flaky(event: Any, ctx: ds.DurableContext) -> str:
    """A step that fails three attempts (the third ends the execution FAILED)."""
    ctx.step("charge", _explode, config=ds.StepConfig(retry_strategy=ds.RetryPolicy(max_attempts=3)))
    return "unreachable"


@ds.durable_handler
def echo(event: Any, ctx: ds.DurableContext) -> Any:
    return ctx.step("echo", lambda _: event)


FUNCTIONS = {"approval": approval, "sleeper": sleeper, "flaky": flaky, "echo": echo}


# -- a served engine -------------------------------------------------------------------------------------------
@dataclass
class Served:
    engine: LocalEngine
    server: Any
    console: Console

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def host(self) -> str:
        return urlsplit(self.url).netloc

    def start(self, function: str, input: Any = None, name: Optional[str] = None) -> str:
        """Start an execution of a served function and run it (in virtual time) until it ends or waits for
        the outside, as the server does for a client's Invoke; ``start_only`` leaves it at its first wait."""
        arn = self.start_only(function, input, name)
        self.engine.wait(arn)
        return arn

    def start_only(self, function: str, input: Any = None, name: Optional[str] = None) -> str:
        return self.engine.start(self.engine.functions[function], input, name=name, function_name=function)

    def page_url(self, arn: Optional[str] = None) -> str:
        return f"{self.url}/console/" if arn is None else f"{self.url}/console/execution?arn={quote(arn, safe='')}"

    def request(self, method: str, path: str, body: Any = None, *, headers: Optional[dict] = None,
                token: Optional[str] = "right") -> tuple[int, dict, Any]:
        """(status, headers, decoded JSON or text) of one request; ``token="right"`` sends the console's token."""
        sent = {"Host": self.host}
        if body is not None:
            sent["Content-Type"] = "application/json"
        if token is not None:
            sent[TOKEN_HEADER] = self.console.token if token == "right" else token
        sent.update(headers or {})
        sent = {k: v for k, v in sent.items() if v is not None}
        conn = http.client.HTTPConnection(urlsplit(self.url).hostname, urlsplit(self.url).port, timeout=30)
        try:
            payload = json.dumps(body).encode("utf-8") if body is not None and not isinstance(body, bytes) else body
            conn.putrequest(method, path, skip_host=True)
            for key, value in sent.items():
                conn.putheader(key, value)
            conn.putheader("Content-Length", str(len(payload or b"")))
            conn.endheaders(payload)
            response = conn.getresponse()
            raw = response.read()
            answer_headers = {k.lower(): v for k, v in response.getheaders()}
        finally:
            conn.close()
        kind = answer_headers.get("content-type", "")
        return response.status, answer_headers, (json.loads(raw) if "json" in kind else raw.decode("utf-8"))

    def action(self, name: str, body: Any, **kwargs: Any) -> tuple[int, Any]:
        status, _, answer = self.request("POST", f"/console/api/actions/{name}", body, **kwargs)
        return status, answer


@pytest.fixture
def served():
    """An in-memory engine on a virtual clock whose callbacks keep real time (as `serve --skip-time`), served on
    127.0.0.1 with the console mounted."""
    engine = LocalEngine(db=":memory:", skip_time=True, real_time_callbacks=True)
    server = make_server(engine, "127.0.0.1", 0, functions=FUNCTIONS)
    console = mount(server)
    server.start()
    try:
        yield Served(engine, server, console)
    finally:
        server.close()
        engine.close()


# -- the browser -----------------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def browser():
    """One headless Chromium for all browser tests (each test opens its own pages)."""
    try:
        driver, profile = chromium.start()
    except chromium.NoBrowser as exc:
        pytest.skip(f"no browser for the console's browser tests: {exc}")
    try:
        yield driver
    finally:
        chromium.stop(driver, profile)
