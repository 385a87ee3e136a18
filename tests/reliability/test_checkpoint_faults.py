"""Checkpoint calls that fail: throttling, 5xx, timeouts, answers lost after the service applied the call.

Two layers:

1. **The boto3 path.** The engine serves the Lambda API (``durable_sync.local.http``) on 127.0.0.1;
   handlers checkpoint through ``BotoCheckpointClient`` (botocore, tenacity retries) via a
   fault-injecting HTTP proxy, also on 127.0.0.1. The proxy answers some
   ``CheckpointDurableExecution`` calls with 429 TooManyRequestsException or 500 ServiceException
   without forwarding them, forwards some and then answers 5xx anyway, drops the connection
   after forwarding (the answer is lost after the apply), or answers after the client's read
   timeout. The client must retry with the same ClientToken and CheckpointToken and the engine
   must apply each batch once. Faults per call are capped below the client's attempts, so every
   call eventually gets through and no invocation fails.
2. **Giving up.** An in-process client wrapper makes the SDK give up on a call (a retryable
   CheckpointError, as the boto3 client raises once its retries are spent), before or after the
   engine applied it, so the invocation fails and the engine invokes again; replay must pick up
   exactly what was applied.

Checks: every execution SUCCEEDED with the right result; every update a client got a success
answer for is in the final state (lost updates); no step body ran after its success was recorded,
no at-most-once body ran twice in one attempt, and no operation completed twice in the history.
"""
from __future__ import annotations

import functools
import http.client
import json
import random
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from botocore.config import Config

from durable_sync.aws import BotoCheckpointClient, make_boto_client
from durable_sync.errors import CheckpointError
from durable_sync.local import LocalEngine
from durable_sync.local.engine import MAX_INVOCATION_ATTEMPTS, InProcessClient
from durable_sync.local.http import make_server

from . import chaos
from .chaos import (STATS, AckRecorder, Audit, Probe, audit_acked, audit_run, chaos_workflow, drive, scale)

EVENT = {"steps": 5, "items": 4}
READ_TIMEOUT = 0.5
FAULTS = ("throttle", "5xx-before-apply", "5xx-after-apply", "lost-after-apply", "timeout-after-apply")


class FaultProxy(ThreadingHTTPServer):
    """A loopback HTTP proxy that injects faults into CheckpointDurableExecution calls."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, upstream_port: int, seed: int, rate: float, max_in_a_row: int) -> None:
        super().__init__(("127.0.0.1", 0), _ProxyHandler)
        self.upstream_port = upstream_port
        self.rng = random.Random(seed)
        self.rate = rate
        self.max_in_a_row = max_in_a_row
        self.lock = threading.Lock()
        self.injected: dict[str, int] = {f: 0 for f in FAULTS}
        self.by_client_token: dict[str, int] = {}
        self.forwarded = 0
        self.thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def decide(self, path: str, body: bytes) -> str | None:
        if not path.endswith("/checkpoint"):
            return None
        try:
            client_token = json.loads(body).get("ClientToken") or ""
        except ValueError:
            return None
        with self.lock:
            if self.by_client_token.get(client_token, 0) >= self.max_in_a_row or self.rng.random() >= self.rate:
                return None
            self.by_client_token[client_token] = self.by_client_token.get(client_token, 0) + 1
            fault = self.rng.choices(FAULTS, weights=(3, 2, 2, 3, 1))[0]
            self.injected[fault] += 1
            return fault

    def forward(self, method: str, path: str, headers, body: bytes) -> tuple[int, list, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.upstream_port, timeout=30)
        try:
            fwd = {k: v for k, v in headers.items() if k.lower() not in ("host", "connection", "content-length")}
            conn.request(method, path, body=body, headers=fwd)
            response = conn.getresponse()
            data = response.read()
            with self.lock:
                self.forwarded += 1
            return response.status, response.getheaders(), data
        finally:
            conn.close()


class _ProxyHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are separate writes: no delayed-ACK stalls
    server: FaultProxy

    def log_message(self, *args) -> None:
        pass

    def _error(self, status: int, code: str, message: str) -> None:
        body = json.dumps({"Type": "Service" if status >= 500 else "User", "message": message}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("X-Amzn-ErrorType", code)
        self.send_header("x-amzn-RequestId", "proxy")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _relay(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        fault = self.server.decide(self.path, body)
        if fault == "throttle":
            return self._error(429, "TooManyRequestsException", "Rate exceeded (injected)")
        if fault == "5xx-before-apply":
            return self._error(500, "ServiceException", "injected failure before apply")
        status, headers, data = self.server.forward(self.command, self.path, self.headers, body)
        if fault == "5xx-after-apply":
            return self._error(503, "ServiceException", "injected failure after apply")
        if fault == "lost-after-apply":
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)  # applied, but the answer never arrives
            except OSError:
                pass
            return None
        if fault == "timeout-after-apply":
            time.sleep(READ_TIMEOUT + 0.3)  # the client gave up before this answer
        try:
            self.send_response(status)
            for key, value in headers:
                if key.lower() not in ("connection", "transfer-encoding"):
                    self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)
        except OSError:
            self.close_connection = True

    do_GET = do_POST = do_PUT = do_DELETE = _relay  # noqa: N815


def test_checkpoint_faults_on_the_boto3_path_are_retried_idempotently():
    runs = scale(4, 24)
    seed = random.randrange(1 << 30)
    engine = LocalEngine(db=":memory:", skip_time=True)
    server = make_server(engine, "127.0.0.1", 0, invoke_timeout=30).start()
    proxy = FaultProxy(server.port, seed, rate=0.3, max_in_a_row=4)
    proxy.thread.start()
    recorder = AckRecorder(BotoCheckpointClient(
        make_boto_client(endpoint_url=proxy.url, region_name="us-east-1", aws_access_key_id="x",
                         aws_secret_access_key="x",
                         config=Config(retries={"total_max_attempts": 1}, connect_timeout=2,
                                       read_timeout=READ_TIMEOUT)),
        max_attempts=8, initial_backoff=0.005, max_backoff=0.05))
    engine.client_factory = lambda: recorder
    audit = Audit()
    completed = 0
    try:
        for n in range(runs):
            chaos.PROBE = probe = Probe()
            arn, result = drive(engine, chaos_workflow, EVENT, f"boto-{n}", probe)
            completed += result.status == "SUCCEEDED"
            audit.merge(audit_run(engine, arn, result, probe, EVENT))
            failed = [e for e in engine.history(arn) if e["EventType"] == "InvocationCompleted"
                      and e["InvocationCompletedDetails"].get("Error")]
            assert failed == [], failed  # every call got through within the client's retries
        audit.merge(audit_acked(recorder.acked, engine))
    finally:
        chaos.PROBE = Probe()
        proxy.shutdown()
        proxy.server_close()
        server.close()
        engine.close()
    STATS.record("checkpoint faults on the boto3 path", runs=runs, completed=completed, faults=proxy.injected,
                 lost=audit.lost, duplicates=audit.duplicates)
    assert not audit.problems, f"seed {seed}:\n" + "\n".join(audit.problems)
    assert completed == runs
    assert proxy.injected["lost-after-apply"] + proxy.injected["5xx-after-apply"] > 0, proxy.injected
    assert len(recorder.acked) > 0


class GivingUpClient:
    """Makes the SDK give up on some checkpoint calls, before or after the engine applied them."""

    def __init__(self, inner, seed: int, rate: float) -> None:
        self.inner = inner
        self.rng = random.Random(seed)
        self.rate = rate
        self.lock = threading.Lock()
        self.allowed = True  # set by the handler wrapper: no more than two failed invocations in a row
        self.injected = {"give-up-before-apply": 0, "give-up-after-apply": 0}
        self._turn = seed % 2  # the kinds alternate (runs use consecutive seeds): every kind is injected

    def _roll(self) -> str | None:
        with self.lock:
            if not self.allowed or self.rng.random() >= self.rate:
                return None
            self.allowed = False  # one per invocation
            kind = sorted(self.injected)[self._turn]
            self._turn = 1 - self._turn
            self.injected[kind] += 1
            return kind

    def checkpoint(self, arn, token, updates, client_token):
        fault = self._roll()
        if fault == "give-up-before-apply":
            raise CheckpointError("CheckpointDurableExecution failed 5 time(s), last with ServiceException "
                                  "(injected)", retryable=True, error_type="ServiceException")
        response = self.inner.checkpoint(arn, token, updates, client_token)
        if fault == "give-up-after-apply":
            raise CheckpointError("CheckpointDurableExecution failed 5 time(s), last with ReadTimeoutError "
                                  "(injected; the call was applied)", retryable=True, error_type="ReadTimeoutError")
        return response

    def get_state(self, arn, token, marker):
        return self.inner.get_state(arn, token, marker)


def test_a_client_that_gives_up_fails_the_invocation_and_replay_resumes_exactly():
    runs = scale(10, 80)
    seed = random.randrange(1 << 30)
    audit = Audit()
    completed = 0
    injected = {"give-up-before-apply": 0, "give-up-after-apply": 0}
    for n in range(runs):
        engine = LocalEngine(db=":memory:", skip_time=True)
        flaky = GivingUpClient(InProcessClient(engine), seed + n, rate=0.08)
        recorder = AckRecorder(flaky)
        engine.client_factory = lambda: recorder
        consecutive = [0]

        @functools.wraps(chaos_workflow)
        def handler(event, lambda_context=None):
            flaky.allowed = consecutive[0] < MAX_INVOCATION_ATTEMPTS - 1
            try:
                output = chaos_workflow(event, lambda_context)
            except BaseException:
                consecutive[0] += 1
                raise
            consecutive[0] = 0
            return output

        chaos.PROBE = probe = Probe()
        try:
            arn, result = drive(engine, handler, EVENT, f"give-up-{n}", probe)
            completed += result.status == "SUCCEEDED"
            audit.merge(audit_run(engine, arn, result, probe, EVENT))
            audit.merge(audit_acked(recorder.acked, engine))
            failures = sum(1 for e in engine.history(arn) if e["EventType"] == "InvocationCompleted"
                           and e["InvocationCompletedDetails"].get("Error"))
            assert failures == sum(flaky.injected.values()), (failures, flaky.injected)
        finally:
            chaos.PROBE = Probe()
            engine.close()
        for k, v in flaky.injected.items():
            injected[k] += v
    STATS.record("checkpoint client gives up", runs=runs, completed=completed, faults=injected, lost=audit.lost,
                 duplicates=audit.duplicates)
    assert not audit.problems, f"seed {seed}:\n" + "\n".join(audit.problems)
    assert completed == runs
    assert all(injected.values()), injected
