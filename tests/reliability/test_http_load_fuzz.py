"""The HTTP façade (``durable-sync serve``) under load and under malformed requests. Loopback only.

Load: concurrent executions started with boto3 ``Invoke`` (Event), each waiting on a callback that
a client thread finds in the history and answers (with a heartbeat first), a real-time durable
wait, steps before and after; every checkpoint of every invocation goes back over HTTP. All must
SUCCEED with their own results, with no client error and no execution lost.

Fuzz: a bounded number of malformed requests (random methods, paths under the served prefixes
and elsewhere, headers, bodies: random bytes, bad UTF-8, wrong JSON types, deep nesting, bad
Content-Length, chunked bodies, garbage request lines, URIs and headers too long, unknown methods and
HTTP versions, lone surrogates). The generator is seeded, so a run is reproducible. Every answer must
be a 4xx (no 5xx: a malformed request is the client's fault) that botocore's rest-json parser turns
into an exception of the ``lambda`` model (a JSON body and ``X-Amzn-ErrorType``), including the HTTP
server's own refusals; and the server must keep serving: an execution waiting on a callback before
the fuzz finishes normally after it, and one that completed before it is unchanged.
"""
from __future__ import annotations

import http.client
import json
import os
import random
import socket
import string
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import quote

import boto3
import botocore.parsers
import botocore.session
from botocore.awsrequest import HeadersDict
import pytest
from botocore.config import Config

import durable_sync as ds
from durable_sync.local import LocalEngine
from durable_sync.local.http import make_server

from .chaos import STATS, scale

TIMEOUT = 60.0


@ds.durable_handler
def approval(event, ctx):
    doubled = ctx.step("prepare", lambda s: event["n"] * 2)
    callback = ctx.create_callback(name="approval", config=ds.CallbackConfig(heartbeat_timeout=120))
    ctx.wait(1, name="settle")  # real time: the engine's scheduler fires it
    answer = callback.result()
    total = ctx.step("finish", lambda s: doubled + answer["add"])
    return {"n": event["n"], "total": total}


def _client(url: str):
    return boto3.client("lambda", endpoint_url=url, region_name="us-east-1", aws_access_key_id="x",
                        aws_secret_access_key="x", config=Config(retries={"total_max_attempts": 1},
                                                                 read_timeout=30, max_pool_connections=50))


def _callback_id(lam, arn: str, deadline: float) -> str:
    while time.monotonic() < deadline:
        for event in lam.get_durable_execution_history(DurableExecutionArn=arn)["Events"]:
            if event["EventType"] == "CallbackStarted":
                return event["CallbackStartedDetails"]["CallbackId"]
        time.sleep(0.02)
    raise TimeoutError(f"no CallbackStarted for {arn}")


def _finish(lam, arn: str, deadline: float) -> dict:
    while time.monotonic() < deadline:
        execution = lam.get_durable_execution(DurableExecutionArn=arn)
        if execution["Status"] != "RUNNING":
            return execution
        time.sleep(0.05)
    raise TimeoutError(f"{arn} still RUNNING")


@pytest.fixture
def served(tmp_path):
    engine = LocalEngine(db=str(tmp_path / "serve.db"))  # real time, SQLite: as `durable-sync serve`
    server = make_server(engine, "127.0.0.1", 0, functions={"approval": approval}, invoke_timeout=TIMEOUT).start()
    assert server.server_address[0] == "127.0.0.1"
    yield engine, server
    server.close()
    engine.close()


def test_concurrent_executions_and_callbacks_through_boto3(served):
    engine, server = served
    count = scale(50, 200)
    lam = _client(server.url)

    def one(i: int) -> tuple[int, dict]:
        deadline = time.monotonic() + TIMEOUT
        arn = lam.invoke(FunctionName="approval", InvocationType="Event", Payload=json.dumps({"n": i}),
                         DurableExecutionName=f"load-{i}")["DurableExecutionArn"]
        callback_id = _callback_id(lam, arn, deadline)
        lam.send_durable_execution_callback_heartbeat(CallbackId=callback_id)
        lam.send_durable_execution_callback_success(CallbackId=callback_id, Result=json.dumps({"add": i}))
        return i, _finish(lam, arn, deadline)

    errors, finished = [], {}
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=16) as pool:
        for future in [pool.submit(one, i) for i in range(count)]:
            try:
                i, execution = future.result(timeout=TIMEOUT * 2)
                finished[i] = execution
            except Exception as exc:  # noqa: BLE001 - counted, reported below
                errors.append(f"{type(exc).__name__}: {exc}")
    elapsed = time.monotonic() - started
    listed = {e["DurableExecutionName"]: e for e in lam.list_durable_executions_by_function(
        FunctionName="approval", MaxItems=1000)["DurableExecutions"]}
    lost = [i for i in range(count) if f"load-{i}" not in listed or listed[f"load-{i}"]["Status"] != "SUCCEEDED"]
    wrong = [i for i, e in finished.items() if e["Status"] != "SUCCEEDED" or json.loads(e["Result"]) != {
        "n": i, "total": 3 * i}]
    print(f"[http load] {count} executions in {elapsed:.1f} s, {server.requests['CheckpointDurableExecution']} "
          f"checkpoint requests, errors={len(errors)}, lost={len(lost)}, wrong={len(wrong)}")
    STATS.record(f"HTTP load: {count} concurrent executions + callbacks", runs=count, completed=len(finished),
                 lost=len(lost) + len(wrong))
    assert errors == [], errors[:5]
    assert lost == [] and wrong == [], (lost, wrong)
    # prepare + the callback (one call), the wait, then finish at the end: 3 calls each
    assert server.requests["CheckpointDurableExecution"] >= count * 3


# -- fuzz ---------------------------------------------------------------------------------------------
ARN = "arn:aws:lambda:us-east-1:000000000000:function:approval:$LATEST/durable-execution/nope/0123"
ROUTES = [("GET", "/2025-12-01/durable-executions/{arn}"), ("POST", "/2025-12-01/durable-executions/{arn}/checkpoint"),
          ("GET", "/2025-12-01/durable-executions/{arn}/state"), ("GET", "/2025-12-01/durable-executions/{arn}/history"),
          ("POST", "/2025-12-01/durable-executions/{arn}/stop"),
          ("POST", "/2025-12-01/durable-execution-callbacks/{id}/succeed"),
          ("POST", "/2025-12-01/durable-execution-callbacks/{id}/fail"),
          ("POST", "/2025-12-01/durable-execution-callbacks/{id}/heartbeat"),
          ("GET", "/2025-12-01/functions/{fn}/durable-executions"), ("POST", "/2015-03-31/functions/{fn}/invocations"),
          ("GET", "/{junk}"), ("POST", "/2025-12-01/{junk}"), ("PUT", "/2015-03-31/functions/{fn}/{junk}")]
METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "FOO", "TRACE"]
SEED = 20251201


def _modeled_errors() -> frozenset:
    model = botocore.session.get_session().get_service_model("lambda")
    return frozenset(shape.name for name in model.operation_names for shape in model.operation_model(name).error_shapes)


def _botocore_error(status: int, headers: dict, body: bytes) -> str | None:
    """The error code botocore's rest-json parser reads from an answer (None: it could not)."""
    model = botocore.session.get_session().get_service_model("lambda")
    parser = botocore.parsers.create_parser("rest-json")
    parsed = parser.parse({"status_code": status, "headers": HeadersDict(headers), "body": body},
                          model.operation_model("GetDurableExecution").output_shape)
    return (parsed.get("Error") or {}).get("Code") or None


def _junk(rng: random.Random, n: int = 12) -> str:
    return "".join(rng.choice(string.printable[:94]) for _ in range(rng.randint(0, n)))


def _random_json(rng: random.Random, depth: int = 0):
    kind = rng.randrange(8 if depth < 4 else 5)
    if kind == 0:
        return rng.randint(-2 ** 70, 2 ** 70)
    if kind == 1:
        return rng.choice([None, True, False, 1.5e308, -0.0])
    if kind == 2:
        return _junk(rng, 30)
    if kind == 3:
        return "\u0000\ud7ff\u202e" + _junk(rng)
    if kind == 4:
        return rng.random()
    if kind == 5:
        return [_random_json(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    keys = ["Updates", "CheckpointToken", "ClientToken", "Result", "Error", "ErrorType", "ErrorMessage", "Id",
            "Type", "Action", "Payload", "WaitOptions", "StepOptions", "Marker", "MaxItems", _junk(rng, 6)]
    return {rng.choice(keys): _random_json(rng, depth + 1) for _ in range(rng.randint(0, 5))}


def _random_request(rng: random.Random, callback_id: str) -> tuple[str, str, dict, bytes]:
    arn = rng.choice([ARN, quote(ARN, safe=""), _junk(rng, 40), quote(_junk(rng, 40), safe=""), "", "%ZZ", "..%2F"])
    method, template = rng.choice(ROUTES)
    if rng.random() < 0.25:
        method = rng.choice(METHODS)
    path = template.format(arn=arn, id=rng.choice([quote(_junk(rng, 30), safe=""), "A" * 300,
                                                               callback_id[::-1], ""]),
                                       fn=rng.choice(["approval-missing", _junk(rng, 10), "x" * 200, "%00"]),
                                       junk=quote(_junk(rng, 20)))
    if rng.random() < 0.3:
        path += "?" + "&".join(f"{rng.choice(['Marker', 'MaxItems', 'ReverseOrder', 'x', _junk(rng, 4)])}="
                               f"{quote(_junk(rng, 8))}" for _ in range(rng.randint(1, 4)))
    kind = rng.randrange(7)
    if kind == 0:
        body = b""
    elif kind == 1:
        body = os.urandom(rng.randint(1, 300))
    elif kind == 2:
        body = json.dumps(_random_json(rng)).encode()
    elif kind == 3:
        body = (b"[" * rng.choice([50, 2000, 100000])) + (b"]" * rng.choice([0, 50]))
    elif kind == 4:
        body = b'{"Updates": [' + b",".join(json.dumps(_random_json(rng)).encode() for _ in range(3)) + b"]}"
    elif kind == 5:
        body = rng.choice([b'{"Error": {"ErrorType": "\\ud800"}}', b'"\\udfff"', b'{"Updates": [{"Id": "\\ud83d"}]}'])
    else:
        body = b"\xff\xfe" + _junk(rng).encode()
    headers = {"Content-Type": rng.choice(["application/json", "text/plain", _junk(rng, 10), ""])}
    for name in rng.sample(["X-Amz-Invocation-Type", "X-Amz-Durable-Execution-Name", "X-Amz-Log-Type",
                            "X-Amz-Client-Context", "X-Amz-Tenant-Id",
                            "X-" + "".join(rng.choice(string.ascii_letters + "-") for _ in range(8))],
                           rng.randint(0, 3)):
        headers[name] = _junk(rng, 20).replace("\n", "").replace("\r", "")
    return method, path, headers, body


RAW = [
    b"GARBAGE\r\n\r\n",
    b"GET\r\n\r\n",
    b"POST /2025-12-01/durable-executions/x/checkpoint HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
    b"POST /2025-12-01/durable-executions/x/checkpoint HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
    b"POST /2025-12-01/durable-executions/x/checkpoint HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"5\r\nhello\r\n0\r\n\r\n",
    b"POST /2025-12-01/durable-executions/x/checkpoint HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999\r\n\r\n{}",
    b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET / HTTP/1.1\r\n" + b"X-Long: " + b"b" * 70000 + b"\r\n\r\n",
    b"GET / HTTP/9.9\r\nHost: x\r\n\r\n",
    b"GET / HTTP/1.1\r\n" + b"".join(b"X-%d: y\r\n" % i for i in range(200)) + b"\r\n",
    b"FOO /2025-12-01/durable-executions/x HTTP/1.1\r\nHost: x\r\n\r\n",
    b"BREW /2015-03-31/functions/approval/invocations HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}",
    b"POST /2025-12-01/durable-execution-callbacks/abc/fail HTTP/1.1\r\nHost: x\r\nContent-Length: 23\r\n\r\n"
    b'{"ErrorType": "\\ud800"}',
]


def _raw_answer(port: int, data: bytes) -> tuple[int, dict, bytes] | None:
    """(status, headers, body) of the answer to raw bytes; None when the server closed without answering."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        try:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        reply = b""
        try:
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                reply += chunk
        except OSError:
            pass
    if not reply.startswith(b"HTTP/"):
        return None
    head, _, body = reply.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, body


def test_fuzzed_requests_get_4xx_and_the_server_keeps_serving(served):
    engine, server = served
    lam = _client(server.url)
    done = lam.invoke(FunctionName="approval", InvocationType="Event", Payload=b'{"n": 1}',
                      DurableExecutionName="before-fuzz")["DurableExecutionArn"]
    deadline = time.monotonic() + TIMEOUT
    lam.send_durable_execution_callback_success(CallbackId=_callback_id(lam, done, deadline), Result=b'{"add": 0}')
    assert _finish(lam, done, deadline)["Status"] == "SUCCEEDED"
    history_before = lam.get_durable_execution_history(DurableExecutionArn=done)["Events"]
    waiting = lam.invoke(FunctionName="approval", InvocationType="Event", Payload=b'{"n": 5}',
                         DurableExecutionName="during-fuzz")["DurableExecutionArn"]
    callback_id = _callback_id(lam, waiting, deadline)

    seed = SEED
    rng = random.Random(seed)
    modeled = _modeled_errors()
    count = scale(500, 3000)
    statuses: dict[int, int] = {}
    bad = []
    for n in range(count):
        method, path, headers, body = _random_request(rng, callback_id)
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        try:
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            payload = response.read()
            status = response.status
            error_type = response.getheader("X-Amzn-ErrorType")
            answer_headers = dict(response.getheaders())
        except (http.client.HTTPException, OSError) as exc:
            bad.append(f"{method} {path[:80]!r}: no answer ({type(exc).__name__}: {exc})")
            continue
        finally:
            conn.close()
        statuses[status] = statuses.get(status, 0) + 1
        if not 400 <= status < 500:
            bad.append(f"{method} {path[:80]!r} body {body[:40]!r}: {status} {error_type}")
        elif method != "HEAD" and _botocore_error(status, answer_headers, payload) not in modeled:
            bad.append(f"{method} {path[:80]!r}: {status} {error_type}: botocore reads no modeled exception")
    for data in RAW:
        answer = _raw_answer(server.port, data)
        if answer is None:
            bad.append(f"raw {data[:50]!r}: closed without an answer")
            continue
        status, answer_headers, payload = answer
        statuses[status] = statuses.get(status, 0) + 1
        if not 400 <= status < 500 or _botocore_error(status, answer_headers, payload) not in modeled:
            bad.append(f"raw {data[:50]!r}: {status} {answer_headers.get('X-Amzn-ErrorType')} {payload[:80]!r}")

    # the server still serves, the waiting execution finishes, the finished one is unchanged
    lam.send_durable_execution_callback_success(CallbackId=callback_id, Result=b'{"add": 1}')
    finished = _finish(lam, waiting, time.monotonic() + TIMEOUT)
    assert finished["Status"] == "SUCCEEDED" and json.loads(finished["Result"]) == {"n": 5, "total": 11}
    assert lam.get_durable_execution_history(DurableExecutionArn=done)["Events"] == history_before
    print(f"[http fuzz] {count + len(RAW)} malformed requests (seed {seed}): statuses {sorted(statuses.items(), key=str)}")
    STATS.record(f"HTTP fuzz: {count + len(RAW)} malformed requests", runs=2, completed=2,
                 faults={"malformed-request": count + len(RAW)})
    assert not bad, f"seed {seed}: {len(bad)} bad answers:\n" + "\n".join(bad[:30])
