"""Node.js handlers on the local engine: invocations run in Node processes, as on Lambda's Node.js runtime.

A function given as ``path/handler.js:handler`` (``.mjs`` and ``.cjs`` too) is a :class:`NodeHandler`:
a Lambda handler ``(event, lambda_context)`` for the engine, which it runs as Lambda's Node.js runtime
would. A Node process started with the bootstrap shipped in this package
(``durable_sync/local/node/bootstrap.mjs``) imports the module once (Lambda's init phase), then runs
invocations one at a time: it calls the exported function with the event and a Lambda context object
(``awsRequestId``, ``functionName``, ``invokedFunctionArn``, ``getRemainingTimeInMillis()``, ...) and
answers with the result or the error. As on Lambda, a process that answered is kept warm and runs the
function's next invocation (module-level state survives between invocations; at most
``MAX_WARM_PROCESSES`` idle ones per function); one that crashed or timed out is gone, and the next
invocation starts a new one (a cold start). ``release()`` (called by ``LocalEngine.close()``) ends the
idle ones.

Handlers written with ``@aws/durable-execution-sdk-js`` reach the engine the way they reach AWS: through
the AWS SDK's Lambda client. The process gets the environment the engine gives foreign handlers
(``foreign.Host.environment``: its endpoint in ``AWS_ENDPOINT_URL_LAMBDA``, a region and credentials
when none are configured), and ``AWS_ENDPOINT_URL`` set to the same endpoint, so that nothing the
handler sends through an AWS SDK leaves the machine.

The process:
- a request (event, context) is one JSON line on its stdin; an answer one JSON line on a pipe of its
  own (its file descriptor is in ``DURABLE_SYNC_ANSWER_FD``);
- what the handler prints (``console.log``, stdout and stderr) goes to the engine's stderr, as Lambda
  sends it to the function's log;
- a process that ends without answering (``process.exit()``, an uncaught exception, an unhandled
  rejection, a signal) is the invocation error ``Runtime.ExitError``, and the engine invokes again, as
  for a Python handler under process isolation; one that runs past the invocation's deadline (at most
  the Lambda maximum of 15 minutes) is killed (``Sandbox.Timedout``).

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
import threading
import time
import weakref
from typing import Any, Optional

from .. import wire
from .handlers import HandlerLoadError, function_name as default_function_name

#: The bootstrap each Node process runs (package data).
BOOTSTRAP = os.path.join(os.path.dirname(os.path.abspath(__file__)), "node", "bootstrap.mjs")
INVOCATION_TIMEOUT_SECONDS = wire.MAX_INVOCATION_SECONDS
CHECK_TIMEOUT_SECONDS = 60.0  # loading a module when it is registered
#: Idle warm processes kept per function and environment; more are ended when they finish.
MAX_WARM_PROCESSES = 4
ANSWER_FD_ENV = "DURABLE_SYNC_ANSWER_FD"


def find_node() -> str:
    """The ``node`` executable on PATH; ``HandlerLoadError`` when there is none."""
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
        self.__durable_release__ = self.release  # LocalEngine.close() ends the warm processes
        self._lock = threading.Lock()
        self._warm: list[_NodeProcess] = []  # idle processes that answered, newest last
        weakref.finalize(self, _end_all, self._warm)  # and so does garbage collection or the interpreter's exit

    def __repr__(self) -> str:
        return f"NodeHandler({self.path}:{self.export})"

    def check(self) -> None:
        """Load the module in Node and find the export; ``HandlerLoadError`` names what is wrong."""
        env = lambda_environment({}, self.__durable_function_name__)
        process = _NodeProcess(self.node, "check", self.path, self.export, env, key=None)
        try:
            answer, exit_status = process.exchange(None, CHECK_TIMEOUT_SECONDS)
        finally:
            process.end()
        if answer is None:
            raise HandlerLoadError(f"{self.path}: node {_how(exit_status)} while loading the module "
                                   "(its output above says why)")
        if "loadError" in answer:
            raise HandlerLoadError(_one_line(answer["loadError"].get("errorMessage")))

    def __call__(self, event: Any, lambda_context: Any) -> Any:
        """One invocation; ``lambda_context`` is the engine's (``runner.LocalLambdaContext``), with the
        environment that reaches the engine (``foreign.Host.call`` sets it)."""
        from .runner import InvocationFailed  # runner loads handlers: imported here to keep imports one-way

        engine_env = getattr(lambda_context, "environment", None) or {}
        if not engine_env.get("AWS_ENDPOINT_URL_LAMBDA"):
            raise InvocationFailed({"ErrorType": "Runtime.NoEndpoint", "ErrorMessage":
                                    "a Node.js handler reaches the engine through its Lambda API, and this "
                                    "invocation's context carries no endpoint (lambda_context.environment)"})
        fields = lambda_context_fields(lambda_context)
        request_id = fields["awsRequestId"]
        request = {"event": event, "context": fields}
        timeout = min(INVOCATION_TIMEOUT_SECONDS, max(1.0, fields["remainingMs"] / 1000))
        process = self._take(lambda_environment(engine_env, fields["functionName"], fields["functionVersion"],
                                                fields["memoryLimitInMB"], fields["logGroupName"]))
        try:
            answer, exit_status = process.exchange(request, timeout)
        except BaseException:
            process.end()
            raise
        if answer is None:
            process.end()
            if exit_status is None:
                raise InvocationFailed({"ErrorType": "Sandbox.Timedout", "ErrorMessage":
                                        f"RequestId: {request_id} the invocation ran longer than {timeout:.0f} s; "
                                        "its Node.js process was killed"})
            raise InvocationFailed({"ErrorType": "Runtime.ExitError", "ErrorMessage":
                                    f"RequestId: {request_id} Error: Runtime exited: the Node.js process "
                                    f"{_how(exit_status)} before answering"})
        if "loadError" in answer:  # the module loaded when it was registered, but not now
            process.end()
            raise InvocationFailed(_wire_error(answer["loadError"]))
        self._keep(process)
        if "error" in answer:
            raise InvocationFailed(_wire_error(answer["error"]))
        return answer.get("result")

    # -- warm processes --------------------------------------------------------------------------------
    def _take(self, env: dict) -> "_NodeProcess":
        """A warm process started with ``env``, else a new one (a cold start)."""
        key = tuple(sorted(env.items()))
        dead = []
        found = None
        with self._lock:
            for process in reversed(self._warm):
                if process.key == key:
                    self._warm.remove(process)
                    if process.running():
                        found = process
                        break
                    dead.append(process)
        _end_all(dead)
        if found is not None:
            return found
        return _NodeProcess(self.node, "serve", self.path, self.export, env, key=key)

    def _keep(self, process: "_NodeProcess") -> None:
        with self._lock:
            if sum(1 for p in self._warm if p.key == process.key) < MAX_WARM_PROCESSES:
                self._warm.append(process)
                return
        process.end()

    def release(self) -> None:
        """End the idle warm processes (the next invocation starts a new one)."""
        with self._lock:
            idle, self._warm[:] = list(self._warm), []
        _end_all(idle)


def lambda_context_fields(lambda_context: Any) -> dict:
    """What the bootstrap builds the handler's context object from: the engine's Lambda context."""
    return {"functionName": lambda_context.function_name, "functionVersion": lambda_context.function_version,
            "invokedFunctionArn": lambda_context.invoked_function_arn,
            "memoryLimitInMB": str(lambda_context.memory_limit_in_mb), "awsRequestId": lambda_context.aws_request_id,
            "logGroupName": lambda_context.log_group_name, "logStreamName": lambda_context.log_stream_name,
            "tenantId": lambda_context.tenant_id, "remainingMs": int(lambda_context.get_remaining_time_in_millis())}


def lambda_environment(engine_env: dict[str, str], function_name: str, version: str = "$LATEST",
                       memory_mb: str = "128", log_group: Optional[str] = None) -> dict[str, str]:
    """A Node process's environment: this process's, with ``engine_env`` (the engine's endpoint and what
    reaching it needs), ``AWS_ENDPOINT_URL`` at the same endpoint, and Lambda's variables.

    With no endpoint (a module loaded to check it), AWS calls go to a closed loopback port: whatever
    the module does while it loads, nothing leaves the machine.
    """
    env = {**os.environ, **engine_env}
    endpoint = engine_env.get("AWS_ENDPOINT_URL_LAMBDA") or "http://127.0.0.1:9"
    env.update({
        "AWS_ENDPOINT_URL_LAMBDA": endpoint, "AWS_ENDPOINT_URL": endpoint, "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_LAMBDA_FUNCTION_NAME": function_name, "AWS_LAMBDA_FUNCTION_VERSION": version,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(memory_mb),
        "AWS_LAMBDA_LOG_GROUP_NAME": log_group or f"/aws/lambda/{function_name}",
    })
    return env


# -- the process ---------------------------------------------------------------------------------------
class _NodeProcess:
    """One Node process running the bootstrap: requests in on stdin, answers out on a pipe of its own."""

    def __init__(self, node: str, mode: str, path: str, export: str, env: dict, key: Optional[tuple]):
        self.key = key
        read_fd, write_fd = os.pipe()
        try:
            self.proc = subprocess.Popen([node, BOOTSTRAP, mode, path, export], stdin=subprocess.PIPE, stdout=2,
                                         stderr=2, pass_fds=(write_fd,), env={**env, ANSWER_FD_ENV: str(write_fd)})
        except OSError as exc:
            os.close(read_fd)
            raise HandlerLoadError(f"cannot start {node}: {exc.strerror or exc}") from None
        finally:
            os.close(write_fd)
        self._answers = read_fd
        self._ended = False
        self._pending = b""  # answer bytes read past the last complete line
        assert self.proc.stdin is not None
        os.set_blocking(self.proc.stdin.fileno(), False)

    def running(self) -> bool:
        return self.proc.poll() is None

    def exchange(self, request: Optional[dict], timeout: float) -> tuple[Optional[dict], Optional[int]]:
        """Send ``request`` (None: none) and read one answer: (the answer or None, the exit status when the
        process ended without one; None when it ran past ``timeout`` and was killed).

        One thread does it all with ``select``: it feeds the request as the process reads it and collects
        the answer. Something the handler started and left running (holding the answer pipe open) does not
        keep the invocation waiting once the process itself has ended.
        """
        data = memoryview(json.dumps(request).encode("utf-8") + b"\n" if request is not None else b"")
        stdin = self.proc.stdin
        assert stdin is not None
        deadline = time.monotonic() + timeout
        with selectors.DefaultSelector() as selector:
            selector.register(self._answers, selectors.EVENT_READ)
            if data:
                selector.register(stdin.fileno(), selectors.EVENT_WRITE)
            while b"\n" not in self._pending:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    self.end()
                    return None, None
                events = selector.select(min(remaining, 0.05))
                if not events and not self.running():
                    return None, self.proc.wait()  # ended, and no answer came
                for key, _ in events:
                    if key.fd == self._answers:
                        chunk = os.read(self._answers, 1 << 16)
                        if not chunk:
                            return None, self.proc.wait()
                        self._pending += chunk
                        continue
                    try:
                        data = data[os.write(key.fd, data):]
                    except BlockingIOError:
                        continue
                    except BrokenPipeError:  # it stopped reading: it is ending, and its exit says why
                        data = data[:0]
                    if not data:
                        selector.unregister(key.fd)
        line, _, self._pending = self._pending.partition(b"\n")
        try:
            answer = json.loads(line)
        except ValueError:
            answer = None
        if not isinstance(answer, dict):  # the bootstrap writes JSON objects: something else wrote here
            answer = {"error": {"errorType": "Runtime.InvalidOutput",
                                "errorMessage": f"the Node.js process answered {line[:200]!r}, not a JSON object"}}
        return answer, None

    def end(self) -> None:
        """Stop the process if it still runs and free its pipes (idempotent)."""
        if self._ended:
            return
        self._ended = True
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        os.close(self._answers)


def _end_all(processes: list) -> None:
    for process in processes:
        process.end()
    processes.clear()


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
