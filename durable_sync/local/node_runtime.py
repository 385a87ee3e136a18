"""Node.js handlers on the local engine: each invocation runs in a fresh ``node`` process.

A function given as ``path/handler.js:handler`` (``.mjs`` and ``.cjs`` too) is a :class:`NodeHandler`:
a Lambda handler ``(event, lambda_context)`` for the engine, which it runs as Lambda's Node.js runtime
would. For every invocation it starts ``node`` with the bootstrap shipped in this package
(``durable_sync/local/node/bootstrap.mjs``), which imports the module, calls the exported function with
the event and a Lambda context object (``awsRequestId``, ``functionName``, ``invokedFunctionArn``,
``getRemainingTimeInMillis()``, ...) and answers with the result or the error.

Handlers written with ``@aws/durable-execution-sdk-js`` reach the engine the way they reach AWS: through
the AWS SDK's Lambda client. The process gets the engine's endpoint (``AWS_ENDPOINT_URL_LAMBDA`` and
``AWS_ENDPOINT_URL``), the engine's region and dummy credentials in its environment, so nothing the
handler sends through an AWS SDK leaves the machine.

The process:
- the request (module, export, event, context) is one JSON object on its stdin; the answer one JSON
  object on a pipe of its own (its file descriptor is in ``DURABLE_SYNC_ANSWER_FD``);
- what the handler prints (``console.log``, stdout and stderr) goes to the engine's stderr, as Lambda
  sends it to the function's log;
- a process that ends without answering (``process.exit()``, an uncaught exception, an unhandled
  rejection, a signal) is the invocation error ``Runtime.ExitError``, and the engine invokes again, as
  for a Python handler under process isolation; one that runs past the Lambda maximum of 15 minutes
  is killed (``Sandbox.Timedout``).

Loading problems are found when the function is loaded (``handlers.load("path/handler.js:handler")``
runs the bootstrap in check mode): no ``node`` on PATH, a module that does not load, a missing export
each raise ``HandlerLoadError`` with one line naming the problem. A handler that is not a durable one
(not wrapped with ``withDurableExecution``) is reported at its first invocation, by the engine's rule
for a handler output that is not a durable one.
"""
from __future__ import annotations

import json
import os
import selectors
import shutil
import signal
import subprocess
import time
import uuid
from typing import Any, Optional

from .handlers import HandlerLoadError, function_name as default_function_name

#: File names a Node.js handler may have.
NODE_SUFFIXES = (".js", ".mjs", ".cjs")
#: The bootstrap Node runs for every invocation (package data).
BOOTSTRAP = os.path.join(os.path.dirname(os.path.abspath(__file__)), "node", "bootstrap.mjs")
INVOCATION_TIMEOUT_SECONDS = 15 * 60  # the Lambda maximum
CHECK_TIMEOUT_SECONDS = 60.0  # loading a module at registration
REGION = "us-east-1"
ACCOUNT_ID = "000000000000"
#: Environment the engine never passes on: real credentials and profiles must not reach the handler.
_SCRUBBED = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN",
             "AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
             "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_ARN")


def is_node_file(path: str) -> bool:
    """Whether ``path`` names a Node.js module (``.js``, ``.mjs``, ``.cjs``)."""
    return path.lower().endswith(NODE_SUFFIXES)


def find_node() -> str:
    """The ``node`` executable on PATH; :class:`HandlerLoadError` when there is none."""
    node = shutil.which("node")
    if node is None:
        raise HandlerLoadError("no `node` on PATH: install Node.js 18 or later (https://nodejs.org) to run "
                               "JavaScript handlers, or put it on PATH")
    return node


def load_node_handler(path: str, export: str = "handler") -> "NodeHandler":
    """The handler ``export`` of the Node.js module at ``path``, checked by loading it once in Node."""
    if not os.path.isfile(path):
        raise HandlerLoadError(f"handler file {path!r} does not exist")
    handler = NodeHandler(os.path.abspath(path), export or "handler", find_node())
    handler.check()
    return handler


class NodeHandler:
    """A Lambda handler ``(event, lambda_context)`` that runs ``export`` of the module at ``path`` in Node."""

    def __init__(self, path: str, export: str, node: str):
        self.path = path
        self.export = export
        self.node = node
        self.__durable_ref__ = f"{path}:{export}"  # a restarted engine (and the CLI) load it from here
        self.__durable_function_name__ = default_function_name(path, export)
        self.__name__ = self.__qualname__ = export
        # A durable function (withDurableExecution) as far as the engine can tell: chained invoke starts
        # it as its own execution. Whether it really is one shows at its first invocation.
        self.__durable_function__ = self
        # Runs in a process of its own already: the engine never wraps it in process isolation.
        self.__durable_own_process__ = True

    def __repr__(self) -> str:
        return f"NodeHandler({self.path}:{self.export})"

    def check(self) -> None:
        """Load the module in Node and find the export; :class:`HandlerLoadError` names what is wrong."""
        request = {"module": self.path, "export": self.export, "check": True}
        answer, exit_status = _run_node(self.node, request, dict(os.environ), CHECK_TIMEOUT_SECONDS)
        if answer is None:
            raise HandlerLoadError(f"{self.path}: node {_how(exit_status)} while loading the module "
                                   "(its output above says why)")
        if "loadError" in answer:
            raise HandlerLoadError(_one_line(answer["loadError"].get("errorMessage")))

    def __call__(self, event: Any, lambda_context: Any = None) -> Any:
        from .runner import InvocationFailed  # runner loads handlers: imported here to keep imports one-way

        function_name = getattr(lambda_context, "function_name", None) or self.__durable_function_name__
        request_id = getattr(lambda_context, "aws_request_id", None) or str(uuid.uuid4())
        remaining = getattr(lambda_context, "get_remaining_time_in_millis", None)
        remaining_ms = remaining() if remaining is not None else INVOCATION_TIMEOUT_SECONDS * 1000
        endpoint = endpoint_of(lambda_context)
        if endpoint is None:
            raise InvocationFailed({"ErrorType": "Runtime.NoEndpoint", "ErrorMessage":
                                    "a Node.js handler reaches the engine over HTTP, and this invocation has no "
                                    "endpoint for it: serve the engine (durable_sync.local.http)"})
        request = {"module": self.path, "export": self.export, "event": event,
                   "context": lambda_context_fields(function_name, request_id, remaining_ms)}
        timeout = min(INVOCATION_TIMEOUT_SECONDS, max(1.0, remaining_ms / 1000))
        answer, exit_status = _run_node(self.node, request, lambda_environment(endpoint, function_name), timeout)
        if answer is None:
            if exit_status is None:
                raise InvocationFailed({"ErrorType": "Sandbox.Timedout", "ErrorMessage":
                                        f"RequestId: {request_id} the invocation ran longer than {timeout:.0f} s; "
                                        "its Node.js process was killed"})
            raise InvocationFailed({"ErrorType": "Runtime.ExitError", "ErrorMessage":
                                    f"RequestId: {request_id} Error: Runtime exited: the Node.js process "
                                    f"{_how(exit_status)} before answering"})
        if "loadError" in answer:
            raise InvocationFailed(_wire_error(answer["loadError"]))
        if "error" in answer:
            raise InvocationFailed(_wire_error(answer["error"]))
        return answer.get("result")


def endpoint_of(lambda_context: Any) -> Optional[str]:
    """The URL of the engine's Lambda API for this invocation (``durable-sync serve``'s), or None."""
    url = getattr(lambda_context, "endpoint_url", None)
    if url:
        return url
    client = getattr(lambda_context, "durable_client", None)
    boto_client = getattr(client, "boto_client", None)
    return getattr(getattr(boto_client, "meta", None), "endpoint_url", None)


def lambda_context_fields(function_name: str, request_id: str, remaining_ms: int) -> dict:
    """What the bootstrap builds the handler's context object from (Lambda's Node.js context)."""
    return {"functionName": function_name, "functionVersion": "$LATEST",
            "invokedFunctionArn": f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{function_name}",
            "memoryLimitInMB": 128, "awsRequestId": request_id,
            "logGroupName": f"/aws/lambda/{function_name}",
            "logStreamName": f"durable-sync/[$LATEST]{request_id.replace('-', '')}",
            "remainingMs": int(remaining_ms)}


def lambda_environment(endpoint: str, function_name: str) -> dict[str, str]:
    """The Node process's environment: the engine's, pointed at the engine, with Lambda's variables."""
    env = {k: v for k, v in os.environ.items() if k not in _SCRUBBED}
    env.update({
        "AWS_ENDPOINT_URL_LAMBDA": endpoint, "AWS_ENDPOINT_URL": endpoint,
        "AWS_REGION": REGION, "AWS_DEFAULT_REGION": REGION,
        "AWS_ACCESS_KEY_ID": "durable-sync-local", "AWS_SECRET_ACCESS_KEY": "durable-sync-local",
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_LAMBDA_FUNCTION_NAME": function_name, "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "128", "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{function_name}",
    })
    return env


# -- the process ---------------------------------------------------------------------------------------
def _run_node(node: str, request: dict, env: dict, timeout: float) -> tuple[Optional[dict], Optional[int]]:
    """Run the bootstrap on ``request``: (its answer or None, its exit status or None if it was killed).

    One thread does it all with ``select``: it feeds the request to stdin as the process reads it and
    collects the answer until the process closes its end. A process still running at ``timeout`` is
    killed. Something the handler started and left running (holding the answer pipe open) does not
    keep the invocation waiting once the process itself has ended.
    """
    data = memoryview(json.dumps(request).encode("utf-8"))
    read_fd, write_fd = os.pipe()
    try:
        proc = subprocess.Popen([node, BOOTSTRAP], stdin=subprocess.PIPE, stdout=2, stderr=2,
                                pass_fds=(write_fd,), env={**env, "DURABLE_SYNC_ANSWER_FD": str(write_fd)})
    except OSError as exc:
        os.close(read_fd)
        raise HandlerLoadError(f"cannot start {node}: {exc.strerror or exc}") from None
    finally:
        os.close(write_fd)
    stdin = proc.stdin
    assert stdin is not None
    os.set_blocking(stdin.fileno(), False)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    killed = False
    try:
        with selectors.DefaultSelector() as selector:
            selector.register(read_fd, selectors.EVENT_READ)
            selector.register(stdin.fileno(), selectors.EVENT_WRITE)
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    proc.kill()
                    killed = True
                    break
                events = selector.select(min(remaining, 0.05))
                if not events and proc.poll() is not None:
                    break  # ended; whatever it answered is in
                done = False
                for key, _ in events:
                    if key.fd == read_fd:
                        chunk = os.read(read_fd, 1 << 16)
                        if chunk:
                            chunks.append(chunk)
                        else:
                            done = True
                    else:
                        try:
                            data = data[os.write(key.fd, data):]
                        except BlockingIOError:
                            continue
                        except BrokenPipeError:  # it stopped reading: it is ending, and its exit says why
                            data = data[:0]
                        if not data:
                            selector.unregister(key.fd)
                            stdin.close()
                if done:
                    break
    except BaseException:
        proc.kill()
        raise
    finally:
        os.close(read_fd)
        if not stdin.closed:
            try:
                stdin.close()
            except OSError:
                pass
        proc.wait()
    exit_status = None if killed else proc.returncode
    raw = b"".join(chunks)
    try:
        answer = json.loads(raw) if raw else None
    except ValueError:
        answer = None
    return (answer if isinstance(answer, dict) else None), exit_status


def _how(exit_status: Optional[int]) -> str:
    if exit_status is None:
        return "was killed"
    if exit_status < 0:
        try:
            name = signal.Signals(-exit_status).name
        except ValueError:
            name = str(-exit_status)
        return f"was killed by signal {name}"
    return f"exited with status {exit_status}"


def _one_line(text: Any) -> str:
    return " ".join(str(text or "").split())


def _wire_error(error: dict) -> dict:
    """Lambda's Node.js error (errorType, errorMessage, trace) as a wire ErrorObject."""
    out = {"ErrorType": str(error.get("errorType") or "Error"), "ErrorMessage": str(error.get("errorMessage") or "")}
    trace = error.get("trace")
    if isinstance(trace, list) and trace:
        out["StackTrace"] = [str(line) for line in trace]
    return out
