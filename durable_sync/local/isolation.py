"""Process isolation: each invocation runs in a fresh child process, as a Lambda sandbox would.

Mechanism: a new interpreter per invocation (``subprocess`` with ``sys.executable``,
the moral equivalent of multiprocessing's "spawn"), connected to the engine by a
``socketpair`` carrying pickled messages (``multiprocessing.connection.Connection``
framing). Why not fork: the engine is multi-threaded (scheduler, invoke pool, the
SDK's flusher threads, the store's inbox thread), and a forked child inherits
every lock some other thread held at that instant — the logging, stdio and
SQLite locks included — which deadlocks at random. Why not multiprocessing's
"spawn"/"forkserver" contexts: they re-run the parent's ``__main__`` module in
each child (under a pytest or durable-sync console script that is a second full
import of the runner), and forkserver's long-lived server keeps the environment
of the moment it started. A plain fresh interpreter costs one Python start plus
``import durable_sync`` (~0.1-0.2 s) per invocation, which is fine for what
isolation is for: emulating crashes (``os._exit``), leaks and process-global state.

The child gets the engine's ``sys.path`` and current environment, imports the
handler from its reference (``handlers.reference``: "FILE:ATTR" or "module:qualname"),
else the handler pickled by reference, and runs it with a ``PipeClient`` as its
checkpoint client (an official-SDK handler gets a boto3-like client over the same
pipe, or the served engine's endpoint in its environment: see ``foreign``):
``checkpoint`` and ``get_state`` are calls answered by the engine in the parent
while the child runs. Log records the child emits are sent to
the parent and handled there by the logger of the same name, so log capture works
as with in-process invocations. A child that dies before answering (``os._exit``,
a signal, a crash of the interpreter) becomes an invocation error
``Runtime.ExitError``; one that runs past the Lambda maximum of 15 minutes is
killed (``Sandbox.Timedout``).
"""
from __future__ import annotations

import logging
import os
import pickle
import socket
import subprocess
import sys
import threading
import time
from multiprocessing.connection import Connection
from typing import Any, Optional

from .. import wire
from . import foreign
from .handlers import load, reference

INVOCATION_TIMEOUT_SECONDS = wire.MAX_INVOCATION_SECONDS
_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_BOOT = ("import sys; sys.path.insert(0, {root!r}); "
         "from durable_sync.local.isolation import child_main; child_main(int(sys.argv[1]))")


def _handler_spec(handler: Any) -> tuple[str, Any]:
    ref = reference(handler)
    if ref is not None:
        return "ref", ref
    try:
        return "pickle", pickle.dumps(handler)
    except Exception as exc:  # noqa: BLE001 - reported as the invocation's error
        raise TypeError(
            f"isolation='process' runs the handler in a child process, which must import it: "
            f"{getattr(handler, '__qualname__', handler)!r} is not importable ({type(exc).__name__}: {exc}). "
            "Define the handler at module level in an importable module, or load it with the CLI.") from None


# -- the engine side --------------------------------------------------------------------------------
def run_in_child(engine: Any, handler: Any, envelope: dict, function_name: str,
                 timeout: float = INVOCATION_TIMEOUT_SECONDS,
                 request_id: Optional[str] = None) -> tuple[Any, Optional[dict]]:
    """One invocation in a child process; returns (output, failure) as the in-process path does.
    ``request_id``: the invocation's (its lambda context's ``aws_request_id``)."""
    try:
        spec = _handler_spec(handler)
    except TypeError as exc:
        return None, {"ErrorType": "Runtime.IsolationError", "ErrorMessage": str(exc)}
    if not hasattr(socket, "socketpair") or os.name == "nt":
        return None, {"ErrorType": "Runtime.IsolationError",
                      "ErrorMessage": "isolation='process' needs a POSIX system"}
    # A served engine's endpoint goes in the child's environment, for handlers that reach it through boto3.
    endpoint_url = engine.foreign.endpoint_url
    env = {**os.environ, **engine.foreign.environment()} if endpoint_url else None
    parent_sock, child_sock = socket.socketpair()
    try:
        proc = subprocess.Popen([sys.executable, "-c", _BOOT.format(root=_ROOT), str(child_sock.fileno())],
                                pass_fds=(child_sock.fileno(),), stdin=subprocess.DEVNULL, env=env)
    except OSError as exc:
        parent_sock.close()
        return None, {"ErrorType": "Runtime.IsolationError", "ErrorMessage": f"cannot start a child process: {exc}"}
    finally:
        child_sock.close()
    conn = Connection(parent_sock.detach())
    deadline = time.monotonic() + timeout
    try:
        conn.send({"sys_path": list(sys.path), "handler": spec, "envelope": envelope,
                   "function_name": function_name, "deadline_ms": int((time.time() + timeout) * 1000),
                   "log_levels": _log_levels(), "endpoint_url": endpoint_url, "request_id": request_id})
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not conn.poll(remaining):
                proc.kill()
                return None, {"ErrorType": "Sandbox.Timedout",
                              "ErrorMessage": f"the invocation ran longer than {timeout:.0f} s; its process was killed"}
            message = conn.recv()
            kind = message[0]
            if kind == "call":
                conn.send(_serve(engine, message[1], message[2]))
            elif kind == "log":
                _emit_log(message[1])
            elif kind == "output":
                return message[1], None
            elif kind == "raised":
                return None, message[1]
    except (EOFError, OSError):
        code = _reap(proc, 5.0)
        how = f"signal {-code}" if code is not None and code < 0 else f"status {code}"
        return None, {"ErrorType": "Runtime.ExitError",
                      "ErrorMessage": f"RequestId: the handler process exited with {how} before answering"}
    finally:
        conn.close()
        _reap(proc, 5.0)


def _serve(engine: Any, method: str, args: tuple) -> tuple:
    from .service import ServiceError

    call = {"checkpoint": engine.checkpoint, "get_state": engine.get_state}.get(method)
    if call is None:
        return "error", "ValueError", f"unknown call {method!r}"
    try:
        return "ok", call(*args)
    except ServiceError as exc:
        return "service_error", exc.code, exc.message, exc.status
    except Exception as exc:  # noqa: BLE001 - sent to the child, raised there
        return "error", type(exc).__name__, str(exc)


def _reap(proc: subprocess.Popen, timeout: float) -> Optional[int]:
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()


def _log_levels() -> dict:
    levels = {"": logging.getLogger().level}
    for name, logger in list(logging.root.manager.loggerDict.items()):
        if isinstance(logger, logging.Logger) and logger.level != logging.NOTSET:
            levels[name] = logger.level
    return levels


def _emit_log(fields: dict) -> None:
    record = logging.makeLogRecord(fields)
    logger = logging.getLogger(record.name) if record.name and record.name != "root" else logging.getLogger()
    logger.handle(record)


# -- the child side ---------------------------------------------------------------------------------
class _Channel:
    """The child's end: one request/response at a time, sends from any thread."""

    def __init__(self, conn: Connection):
        self._conn = conn
        self._send_lock = threading.Lock()
        self._call_lock = threading.Lock()

    def send(self, message: tuple) -> None:
        with self._send_lock:
            self._conn.send(message)

    def call(self, method: str, *args: Any) -> Any:
        with self._call_lock:
            self.send(("call", method, args))
            reply = self._conn.recv()
        if reply[0] == "ok":
            return reply[1]
        if reply[0] == "service_error":
            from .service import ServiceError

            raise ServiceError(reply[1], reply[2], reply[3])
        raise RuntimeError(f"{reply[1]}: {reply[2]}")


class PipeClient:
    """The CheckpointClient of a handler running in a child process: calls go to the engine."""

    def __init__(self, channel: _Channel):
        self._channel = channel

    def checkpoint(self, arn: str, token: str, updates: list, client_token: str) -> dict:
        return self._call("checkpoint", arn, token, updates, client_token)

    def get_state(self, arn: str, token: str, marker: str) -> dict:
        return self._call("get_state", arn, token, marker)

    def _call(self, method: str, *args: Any) -> dict:
        """Service errors become CheckpointErrors classified as the boto3 client does (5xx / stale
        token: retry the invocation; other 4xx: fail the execution)."""
        from .runner import checkpoint_error
        from .service import ServiceError

        try:
            return self._channel.call(method, *args)
        except ServiceError as exc:
            raise checkpoint_error(exc) from exc


class _ForwardLogs(logging.Handler):
    def __init__(self, channel: _Channel):
        super().__init__(logging.NOTSET)
        self._channel = channel

    def emit(self, record: logging.LogRecord) -> None:
        try:
            fields = dict(record.__dict__)
            fields["msg"] = record.getMessage()
            fields["args"] = None
            if record.exc_info:
                fields["exc_text"] = logging.Formatter().formatException(record.exc_info)
            fields["exc_info"] = None
            fields.pop("message", None)
            for key, value in list(fields.items()):
                if not isinstance(value, (str, int, float, bool, type(None))):
                    try:
                        pickle.dumps(value)
                    except Exception:  # noqa: BLE001
                        fields[key] = repr(value)
            self._channel.send(("log", fields))
        except Exception:  # noqa: BLE001 - the engine is gone; nothing to log to
            pass


def _flush_stdio() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # noqa: BLE001
            pass


def child_main(fd: int) -> None:
    """Entry point of the child process (see ``_BOOT``)."""
    conn = Connection(fd)
    channel = _Channel(conn)
    boot = conn.recv()
    for entry in reversed(boot["sys_path"]):
        if entry not in sys.path:
            sys.path.insert(0, entry)
    root = logging.getLogger()
    root.handlers[:] = [_ForwardLogs(channel)]
    for name, level in boot["log_levels"].items():
        (logging.getLogger(name) if name else root).setLevel(level)
    code = 0
    try:
        kind, value = boot["handler"]
        handler = load(value) if kind == "ref" else pickle.loads(value)
        from .clock import RealClock
        from .runner import LocalLambdaContext

        lambda_context = LocalLambdaContext(PipeClient(channel), boot["function_name"], boot["deadline_ms"], RealClock(),
                                            boot["endpoint_url"], boot["request_id"])
        if boot["endpoint_url"]:  # foreign handlers find the served engine in the environment
            output = handler(boot["envelope"], lambda_context)
        else:  # an official-SDK handler gets a client that calls the engine over the pipe
            output = foreign.Host().call(handler, boot["envelope"], lambda_context, channel.call)
        try:
            channel.send(("output", output))
        except Exception:  # noqa: BLE001 - unpicklable output: the engine reports it as invalid
            channel.send(("output", f"<{type(output).__name__} object that cannot leave the process>"))
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException as exc:  # noqa: BLE001 - an invocation error, as Lambda reports it
        try:
            channel.send(("raised", {"ErrorType": type(exc).__name__, "ErrorMessage": str(exc)}))
        except Exception:  # noqa: BLE001
            code = 1
    _flush_stdio()
    os._exit(code)
