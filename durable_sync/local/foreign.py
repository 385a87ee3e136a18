"""Hosting Lambda handlers not written with durable_sync: they reach the engine the way they reach AWS.

The engine runs any Lambda handler ``(event, lambda_context)``. A durable_sync handler talks to the
engine through the client in its ``lambda_context``; any other durable handler (one written with the
official AWS SDK, ``aws_durable_execution_sdk_python``, or with anything else over boto3) talks to it
through boto3's ``lambda`` client, as on AWS, so the engine gives it a Lambda API endpoint:

- ``Host.endpoint``: a loopback HTTP façade of the engine (``durable_sync.local.http``), started on
  the first need and closed with the engine.
- In process, an official-SDK handler gets a boto3 client for that endpoint through the SDK's own
  invocation input (``DurableExecutionInvocationInputWithClient``, the SDK's way of handing its
  handler a client). The SDK caches one boto3 client per process, from the environment, so giving it
  a client per invocation is what lets several engines share one process.
- In a child process (``isolation="process"``), the environment carries the endpoint
  (``Host.environment``: ``AWS_ENDPOINT_URL_LAMBDA``, a region, and dummy credentials when none are
  configured), so every boto3 client the handler creates reaches the engine.

Which handlers are durable (``is_durable``) matters to chained invoke: a durable target runs as an
execution of its own, any other function is called with the payload as its event.
"""
from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING, Any, Callable, Optional

from .service import REGION

if TYPE_CHECKING:
    from .engine import LocalEngine

DURABLE_SYNC, OFFICIAL, LAMBDA = "durable_sync", "official", "lambda"
#: Where the official SDK's handler wrapper (``@durable_execution``) is defined.
_OFFICIAL_WRAPPER_FILE = os.path.join("aws_durable_execution_sdk_python", "execution.py")
#: Dummy credentials: the engine checks none, botocore needs some to sign.
DUMMY_KEY = "durable-sync-local"

_session_lock = threading.Lock()
_session: Any = None  # one boto3 session: its loader caches the (large) lambda model across clients


def _is_official_wrapper(fn: Any) -> bool:
    code = getattr(fn, "__code__", None)
    return code is not None and code.co_name == "wrapper" and code.co_filename.endswith(_OFFICIAL_WRAPPER_FILE)


def _layers(handler: Any):
    """``handler`` and the functions it wraps (``functools.wraps`` chains), outermost first."""
    seen = set()
    while handler is not None and id(handler) not in seen:
        seen.add(id(handler))
        yield handler
        handler = getattr(handler, "__wrapped__", None)


def kind(handler: Any) -> str:
    """DURABLE_SYNC (``@durable_handler``), OFFICIAL (the official SDK's ``@durable_execution``, possibly
    under other decorators) or LAMBDA (any other handler)."""
    for layer in _layers(handler):
        if getattr(layer, "__durable_function__", None) is not None:
            return DURABLE_SYNC
        if _is_official_wrapper(layer):
            return OFFICIAL
    return LAMBDA


def is_durable(handler: Any) -> bool:
    """Whether ``handler`` is a durable function (runs as an execution of its own when invoked)."""
    return kind(handler) != LAMBDA


def official_entry(handler: Any) -> Optional[Callable]:
    """The official SDK's wrapper to call with an injected client, when nothing but the engine's own
    serving layer (``http.named_function``, which only re-encodes the event as JSON) lies over it."""
    for layer in _layers(handler):
        if _is_official_wrapper(layer):
            return layer
        if not getattr(layer, "__durable_served__", None):
            return None
    return None


def _boto_session() -> Any:
    global _session
    with _session_lock:
        if _session is None:
            import boto3

            _session = boto3.session.Session()
        return _session


class Host:
    """The engine's endpoint for foreign handlers (one per engine; the façade starts on first use)."""

    def __init__(self, engine: "LocalEngine"):
        self._engine = engine
        self._lock = threading.Lock()
        self._server: Any = None  # the loopback façade of its own (RunningServer), once started
        self._served_at: Optional[str] = None
        self._client: Any = None
        self._closed = False

    @property
    def endpoint(self) -> str:
        """The URL of a Lambda API serving this engine on the loopback interface."""
        with self._lock:
            if self._closed:
                raise RuntimeError("the engine is closed")
            if self._served_at is not None:
                return self._served_at
            if self._server is None:
                from .http import start_server

                # For foreign handlers only: durable_sync handlers keep the client they have.
                self._server = start_server(self._engine, "127.0.0.1", 0, handlers_over_http=False)
            return self._server.url

    def served_at(self, url: Optional[str]) -> None:
        """The façade serving this engine (``durable-sync serve``) is at ``url`` (None: no more): foreign
        handlers use it rather than a loopback one of their own."""
        with self._lock:
            self._served_at = url
            if url is not None and self._client is not None and self._client.meta.endpoint_url != url:
                self._client.close()
                self._client = None

    def environment(self) -> dict[str, str]:
        """Variables that point boto3's ``lambda`` client in a child process at this engine."""
        env = {"AWS_ENDPOINT_URL_LAMBDA": self.endpoint}
        if not (os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")):
            env["AWS_REGION"] = env["AWS_DEFAULT_REGION"] = REGION
        if not (os.environ.get("AWS_ACCESS_KEY_ID") or os.environ.get("AWS_PROFILE")):
            env["AWS_ACCESS_KEY_ID"] = env["AWS_SECRET_ACCESS_KEY"] = DUMMY_KEY
        return env

    def boto_client(self) -> Any:
        """A boto3 ``lambda`` client for this engine's endpoint (one per engine)."""
        endpoint = self.endpoint
        with self._lock:
            if self._client is None:
                from botocore.config import Config

                self._client = _boto_session().client(
                    "lambda", endpoint_url=endpoint, region_name=REGION, aws_access_key_id=DUMMY_KEY,
                    aws_secret_access_key=DUMMY_KEY, config=Config(connect_timeout=5, read_timeout=60))
            return self._client

    def call(self, handler: Callable, envelope: dict, lambda_context: Any) -> Any:
        """Invoke ``handler`` in this process with ``envelope``, as Lambda would."""
        if getattr(handler, "__durable_own_process__", False):
            # It runs in a process of its own (a Node.js handler, node_runtime): that process reaches the
            # engine with this environment.
            lambda_context.environment = self.environment()
            return handler(envelope, lambda_context)
        entry = official_entry(handler)
        if entry is None:
            return handler(envelope, lambda_context)
        from aws_durable_execution_sdk_python.execution import (DurableExecutionInvocationInput,
                                                                DurableExecutionInvocationInputWithClient)
        from aws_durable_execution_sdk_python.lambda_service import LambdaClient

        invocation = DurableExecutionInvocationInput.from_json_dict(envelope)
        event = DurableExecutionInvocationInputWithClient.from_durable_execution_invocation_input(
            invocation, LambdaClient(client=self.boto_client()))
        return entry(event, lambda_context)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            server, client, self._server, self._client = self._server, self._client, None, None
        if client is not None:
            client.close()  # its pooled connections end, and with them the façade's connection threads
        if server is not None:
            server.stop()
