"""The HTTP server of the façade: ``http.server`` plumbing around ``protocol`` and ``LambdaApi``.

``start_server(engine)`` serves the Lambda API for an engine on a thread (127.0.0.1, a free port by
default) and returns its URL and a stop handle; ``make_server`` / ``serve`` give more control.
While it serves, handlers run by the engine talk back to this server over HTTP through boto3
(``BotoCheckpointClient``), exactly as on Lambda: the engine's ``client_factory`` is pointed at the
server's URL.

Binds 127.0.0.1 by default. There is no authentication: anything that can reach the port can run
the registered functions. ``mount(prefix, app)`` serves a path prefix with another app that has its
own rules (``durable-sync serve`` mounts the console at ``/console``); everything else is the Lambda API.
"""
from __future__ import annotations

import collections
import json
import logging
import socket
import sys
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, NamedTuple, Optional
from urllib.parse import urlsplit

from .api import DEFAULT_INVOKE_TIMEOUT, REGION, LambdaApi
from .protocol import BAD_CONTENT, SERVICE_ERROR, TOO_LARGE, ApiError, Router, parse_request, render_output

log = logging.getLogger("durable_sync.local.http")

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 9014
MAX_BODY_BYTES = 8 * 1024 * 1024

class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "durable-sync"
    sys_version = ""
    timeout = 120  # seconds a client may idle mid-request
    disable_nagle_algorithm = True  # headers and body go out as separate writes: no 40 ms delayed-ACK stall

    server: "LambdaHttpServer"

    def do_GET(self) -> None:  # noqa: N802 - http.server naming
        self._handle()

    do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = do_GET  # noqa: N815

    # http.server's own refusals (a bad request line, a URI or headers too long, an unknown method or HTTP
    # version) answer as the Lambda API does: a JSON error boto3 turns into a modeled exception, never a 5xx.
    _OWN_ERRORS = {414: 414, 431: 431, 501: 405, 505: 400}

    def send_error(self, code: int, message: Optional[str] = None, explain: Optional[str] = None) -> None:
        status = self._OWN_ERRORS.get(code, code if 400 <= code < 500 else 400)
        what = {414: "the request URI is too long", 431: "the request headers are too large or too many",
                501: f"the method {getattr(self, 'command', None)!r} is not supported",
                505: "the HTTP version is not supported; use HTTP/1.1"}.get(code, message or "bad request")
        self.close_connection = True
        if not getattr(self, "request_version", None) or self.request_version == "HTTP/0.9":
            self.request_version = "HTTP/1.1"  # answer with a status line and headers, which boto3 can read
        status, headers, payload = self._error(BAD_CONTENT, f"{what} ({message or code})", status)
        self._send(status, headers, payload, str(uuid.uuid4()))

    def version_string(self) -> str:
        return self.server_version

    def log_message(self, fmt: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), fmt % args)

    def _handle(self) -> None:
        request_id = str(uuid.uuid4())
        route_name = "?"
        split = urlsplit(self.path)
        app = self.server.mounted(split.path)
        if app is not None:  # e.g. the console under /console/: its own rules, not the Lambda API's
            self._serve_mounted(app, split, request_id)
            return
        try:
            if self.headers.get("Origin") is not None:
                raise ApiError(BAD_CONTENT, "requests from web pages (with an Origin header) are refused: "
                               "durable-sync serve has no authentication; call it from boto3 or the AWS CLI", 403)
            body = self._read_body()
            if body is None:
                return  # the client went away mid-body
            route, path_params = self.server.router.match(self.command, split.path)
            route_name = route.name
            self.server.count(route.name)
            params = parse_request(route, path_params, split.query, self.headers, body)
            output = self.server.api.call(route.name, params)
            status, headers, payload = render_output(route, output)
        except ApiError as exc:
            status, headers, payload = self._error(exc.code, exc.message, exc.status)
        except Exception as exc:  # noqa: BLE001 - a bug: answer 500 and keep serving
            log.exception("%s failed", route_name)
            status, headers, payload = self._error(SERVICE_ERROR, f"internal error in {route_name}: "
                                                   f"{type(exc).__name__}: {exc}", 500)
        self._send(status, headers, payload, request_id)

    def _serve_mounted(self, app: Callable, split: Any, request_id: str) -> None:
        try:
            body = self._read_body()
            if body is None:
                return  # the client went away mid-body
            status, headers, payload = app(self.command, split.path, split.query, self.headers, body)
        except ApiError as exc:
            status, headers, payload = self._error(exc.code, exc.message, exc.status)
        except Exception as exc:  # noqa: BLE001 - a bug: answer 500 and keep serving
            log.exception("%s %s failed", self.command, split.path)
            status, headers, payload = self._error(SERVICE_ERROR, f"internal error: {type(exc).__name__}: {exc}", 500)
        self._send(status, headers, payload, request_id)

    def _read_body(self) -> Optional[bytes]:
        encoding = (self.headers.get("Transfer-Encoding") or "").lower()
        if encoding and encoding != "identity":
            self.close_connection = True
            raise ApiError(BAD_CONTENT, "chunked request bodies are not supported; send a Content-Length", 411)
        length = self.headers.get("Content-Length")
        if length is None:
            return b""
        try:
            n = int(length)
            if n < 0:
                raise ValueError
        except ValueError:
            self.close_connection = True
            raise ApiError(BAD_CONTENT, f"invalid Content-Length {length!r}") from None
        limit = self.server.max_body_bytes
        if n > limit:
            # Read and drop a moderately oversized body so the client sees the 413, not a reset.
            if n <= 4 * limit:
                remaining = n
                while remaining > 0:
                    chunk = self.rfile.read(min(remaining, 1 << 20))
                    if not chunk:
                        break
                    remaining -= len(chunk)
            self.close_connection = True
            raise ApiError(TOO_LARGE, f"the request body of {n} bytes exceeds this server's limit of {limit} bytes",
                           413)
        body = self.rfile.read(n)
        if len(body) < n:
            self.close_connection = True
            return None
        return body

    @staticmethod
    def _error(code: str, message: str, status: int) -> tuple[int, dict, bytes]:
        body = json.dumps({"Type": "User" if status < 500 else "Service", "message": message}).encode("utf-8")
        return status, {"Content-Type": "application/json", "X-Amzn-ErrorType": code}, body

    def _send(self, status: int, headers: dict, payload: bytes, request_id: str) -> None:
        try:
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("x-amzn-RequestId", request_id)
            self.send_header("Content-Length", str(len(payload)))
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            if payload and self.command != "HEAD":
                self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True


class LambdaHttpServer(ThreadingHTTPServer):
    """The façade server; ``start()`` runs it on a thread, ``close()`` stops it."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, engine: Any, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, *,
                 functions: Optional[dict] = None, max_body_bytes: int = MAX_BODY_BYTES,
                 invoke_timeout: float = DEFAULT_INVOKE_TIMEOUT, checkpoint_endpoint: Optional[str] = None,
                 attach: bool = True):
        if ":" in host:
            self.address_family = socket.AF_INET6
        super().__init__((host, port), _Handler)
        self.engine = engine
        self.router = Router()
        self.api = LambdaApi(engine, functions, invoke_timeout)
        self.max_body_bytes = max_body_bytes
        self.requests: collections.Counter = collections.Counter()  # operation name -> requests routed
        self._count_lock = threading.Lock()
        self._mounts: dict[str, Callable] = {}  # path prefix -> app (see mount)
        self._thread: Optional[threading.Thread] = None
        self._closed = False
        self._previous_factory = getattr(engine, "client_factory", None)
        self._installed_factory = None
        # attach=False: a façade only for handlers in other processes (foreign.Host.process_environment):
        # the engine's own handlers keep their clients.
        if attach and self._previous_factory is None:
            from ...aws import BotoCheckpointClient, make_boto_client

            client = BotoCheckpointClient(make_boto_client(
                endpoint_url=checkpoint_endpoint or self.url, region_name=REGION,
                aws_access_key_id="durable-sync-local", aws_secret_access_key="durable-sync-local"))
            self._installed_factory = lambda: client
            engine.client_factory = self._installed_factory
            engine.foreign.served_at(checkpoint_endpoint or self.url)  # foreign handlers come here too

    @property
    def port(self) -> int:
        return self.server_address[1]

    @property
    def url(self) -> str:
        host = self.server_address[0]
        if host in ("0.0.0.0", ""):
            host = "127.0.0.1"
        elif host == "::":
            host = "::1"
        return f"http://[{host}]:{self.port}" if ":" in host else f"http://{host}:{self.port}"

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, TimeoutError)):
            log.debug("connection from %s ended: %s", client_address, exc)  # a client went away
        else:
            log.exception("error while serving %s", client_address)

    def count(self, operation: str) -> None:
        with self._count_lock:
            self.requests[operation] += 1

    def mount(self, prefix: str, app: Callable) -> None:
        """Serve ``prefix`` and every path under it (``"/console"``: ``/console``, ``/console/...``) with ``app``
        instead of the Lambda API: ``app(method, path, query, headers, body) -> (status, headers, body)``,
        called on the request's thread. The Lambda API's rules (the Origin refusal, its JSON errors) do not
        apply there: the app has its own."""
        if not prefix.startswith("/") or prefix.endswith("/"):
            raise ValueError(f"mount prefix must start with '/' and not end with one, got {prefix!r}")
        self._mounts[prefix] = app

    def mounted(self, path: str) -> Optional[Callable]:
        """The app mounted where ``path`` is, or None (the Lambda API)."""
        for prefix, app in self._mounts.items():
            if path == prefix or path.startswith(prefix + "/"):
                return app
        return None

    def register_function(self, name: str, handler: Callable) -> None:
        self.api.register(name, handler)

    def start(self) -> "LambdaHttpServer":
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="durable-http", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.api.close()
        if self._thread is not None:
            self.shutdown()
            self._thread.join()
        self.server_close()
        if self._installed_factory is not None and getattr(self.engine, "client_factory", None) is \
                self._installed_factory:
            self.engine.client_factory = self._previous_factory
            self.engine.foreign.served_at(None)

    def __enter__(self) -> "LambdaHttpServer":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def make_server(engine: Any, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, **kwargs: Any) -> LambdaHttpServer:
    """A bound, not yet serving, server (``port=0`` picks a free port)."""
    return LambdaHttpServer(engine, host, port, **kwargs)


def serve(engine: Any, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, *, background: bool = False,
          **kwargs: Any) -> LambdaHttpServer:
    """Serve the Lambda API for ``engine``. Blocks until interrupted, or runs on a thread with ``background``."""
    server = make_server(engine, host, port, **kwargs)
    if background:
        return server.start()
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
    return server


class RunningServer(NamedTuple):
    """A façade serving on a thread: its ``url`` and ``stop()`` (idempotent). Also a context manager."""

    url: str
    stop: Callable[[], None]
    server: LambdaHttpServer

    def __enter__(self) -> "RunningServer":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def start_server(engine: Any, host: str = DEFAULT_HOST, port: int = 0, **kwargs: Any) -> RunningServer:
    """Serve the Lambda API for ``engine`` on a background thread; ``port=0`` picks a free port.

    ``url, stop, _ = start_server(engine)`` (or ``with start_server(engine) as running: running.url``).
    Keyword arguments go to ``LambdaHttpServer`` (``functions``, ``invoke_timeout``, ``max_body_bytes``).
    """
    server = make_server(engine, host, port, **kwargs).start()
    return RunningServer(server.url, server.close, server)
