"""Hosting Lambda handlers not written with durable_sync: they reach the engine the way they reach AWS.

The engine runs any Lambda handler ``(event, lambda_context)``. A durable_sync handler checkpoints
through the client in its ``lambda_context``. A handler written with the official AWS SDK
(``aws_durable_execution_sdk_python``, ``@durable_execution``) checkpoints through boto3's ``lambda``
client, wrapped in the SDK's own ``LambdaClient``; the engine hands it one through the SDK's invocation
input (``DurableExecutionInvocationInputWithClient``), per invocation, so that several engines can share
a process although the SDK caches one client per process:

- served (``durable-sync serve``, ``start_server``: the server tells the engine its URL through
  ``Host.served_at``): a real boto3 client for that URL, so checkpoints travel over HTTP as on Lambda;
- otherwise: ``EngineLambdaClient``, the two boto3 calls the SDK makes, answered by the engine in this
  process (or, in a child process, over the isolation pipe). It validates the request against
  botocore's model and answers in boto3's shapes (timestamps as datetimes, errors as ``ClientError``
  with the service's code and HTTP status), so the SDK's own classification of errors applies.

A handler that talks to the service through boto3 by itself reaches a served engine through its
environment (``Host.environment``: ``AWS_ENDPOINT_URL_LAMBDA``, and a region and dummy credentials
when none are configured), which ``serve`` sets in its process and isolation gives each child.

Which handlers are durable (``is_durable``) matters to chained invoke: a durable target runs as an
execution of its own, any other function is called with the payload as its event.
"""
from __future__ import annotations

import os
import threading
from typing import Any, Callable, Optional

from . import history as h
from .service import REGION, ServiceError

DURABLE_SYNC, OFFICIAL, LAMBDA = "durable_sync", "official", "lambda"
#: Where the official SDK's handler wrapper (``@durable_execution``) is defined.
_OFFICIAL_WRAPPER_FILE = os.path.join("aws_durable_execution_sdk_python", "execution.py")
#: Dummy credentials: the engine checks none, botocore needs some to sign.
DUMMY_KEY = "durable-sync-local"

_model_lock = threading.Lock()
_model: Any = None  # botocore's lambda service model, loaded once (it is large)


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
    """The official SDK's wrapper to hand a client to, when nothing but the engine's own serving layer
    (``http.named_function``, which only re-encodes the event as JSON) lies over it."""
    for layer in _layers(handler):
        if _is_official_wrapper(layer):
            return layer
        if not getattr(layer, "__durable_served__", None):
            return None
    return None


def _lambda_model() -> Any:
    global _model
    with _model_lock:
        if _model is None:
            import botocore.session

            _model = botocore.session.get_session().get_service_model("lambda")
        return _model


class EngineLambdaClient:
    """The boto3 ``lambda`` calls the official SDK makes, answered by the engine without HTTP.

    ``call(method, *args)`` reaches the engine's ``checkpoint`` / ``get_state`` and raises
    ``ServiceError``; requests are validated as boto3 validates them, answers and errors come back as
    boto3 gives them."""

    def __init__(self, call: Callable[..., dict]):
        self._call = call

    def checkpoint_durable_execution(self, **params: Any) -> dict:
        self._validate("CheckpointDurableExecution", params)
        return self._answer("CheckpointDurableExecution", "checkpoint", params["DurableExecutionArn"],
                            params["CheckpointToken"], params.get("Updates") or [], params.get("ClientToken"))

    def get_durable_execution_state(self, **params: Any) -> dict:
        self._validate("GetDurableExecutionState", params)
        return self._answer("GetDurableExecutionState", "get_state", params["DurableExecutionArn"],
                            params["CheckpointToken"], params.get("Marker"), params.get("MaxItems") or 1000)

    @staticmethod
    def _validate(operation: str, params: dict) -> None:
        from botocore.validate import validate_parameters

        validate_parameters(params, _lambda_model().operation_model(operation).input_shape)

    def _answer(self, operation: str, method: str, *args: Any) -> dict:
        from botocore.exceptions import ClientError

        try:
            response = self._call(method, *args)
        except ServiceError as exc:
            raise ClientError({"Error": {"Code": exc.code, "Message": exc.message},
                               "ResponseMetadata": {"HTTPStatusCode": exc.status}}, operation) from None
        return h.to_boto(response)


class Host:
    """How one engine hosts foreign handlers."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._served_at: Optional[str] = None
        self._client: Any = None  # boto3 client for the served URL, made on first use
        self._loopback: Any = None  # a façade of its own for handlers in other processes (RunningServer)

    def served_at(self, url: Optional[str]) -> None:
        """A façade serving this engine is at ``url`` (None: no more): foreign handlers use it."""
        with self._lock:
            if url != self._served_at and self._client is not None:
                self._client.close()
                self._client = None
            self._served_at = url

    @property
    def endpoint_url(self) -> Optional[str]:
        """The URL of the Lambda API serving this engine, or None (``lambda_context.endpoint_url``)."""
        return self._served_at

    def environment(self, url: Optional[str] = None) -> dict[str, str]:
        """Variables that point boto3's ``lambda`` client in a child process at the served engine, or at
        ``url`` ({} when there is neither)."""
        url = url or self._served_at
        if url is None:
            return {}
        env = {"AWS_ENDPOINT_URL_LAMBDA": url}
        if not (os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")):
            env["AWS_REGION"] = env["AWS_DEFAULT_REGION"] = REGION
        if not (os.environ.get("AWS_ACCESS_KEY_ID") or os.environ.get("AWS_PROFILE")):
            env["AWS_ACCESS_KEY_ID"] = env["AWS_SECRET_ACCESS_KEY"] = DUMMY_KEY
        return env

    def _boto_client(self) -> Any:
        with self._lock:
            if self._client is None:
                from botocore.config import Config

                from ..aws import make_boto_client

                # As the official SDK configures its own client (botocore's retries included).
                self._client = make_boto_client(endpoint_url=self._served_at, region_name=REGION,
                                                aws_access_key_id=DUMMY_KEY, aws_secret_access_key=DUMMY_KEY,
                                                config=Config(connect_timeout=5, read_timeout=60))
            return self._client

    def call(self, handler: Callable, envelope: dict, lambda_context: Any, engine_call: Callable[..., dict]) -> Any:
        """Invoke ``handler`` in this process with ``envelope``, as Lambda would. ``engine_call(method,
        *args)`` answers ``checkpoint`` / ``get_state`` when the engine is not served."""
        entry = official_entry(handler)
        if entry is None:
            return handler(envelope, lambda_context)
        client = self._boto_client() if self._served_at is not None else EngineLambdaClient(engine_call)
        return entry(with_client(envelope, client), lambda_context)

    def process_environment(self, engine: Any) -> dict[str, str]:
        """``environment()`` for a handler that runs in a process of its own and reaches the engine over HTTP
        whether or not it is served (a Node.js handler): an engine that is not served gets a loopback façade
        for them, started on first need and stopped with the engine; its own clients stay as they are."""
        with self._lock:
            url = self._served_at
            if url is None:
                if self._loopback is None:
                    from .http import start_server

                    self._loopback = start_server(engine, "127.0.0.1", 0, attach=False)
                url = self._loopback.url
        return self.environment(url)

    def close(self) -> None:
        self.served_at(None)
        with self._lock:
            loopback, self._loopback = self._loopback, None
        if loopback is not None:
            loopback.stop()


def with_client(envelope: dict, boto_client: Any) -> Any:
    """The official SDK's invocation input for ``envelope``, carrying ``boto_client`` (wrapped in the SDK's
    own ``LambdaClient``, so its calls and error handling are the SDK's)."""
    from aws_durable_execution_sdk_python.execution import (DurableExecutionInvocationInput,
                                                            DurableExecutionInvocationInputWithClient)
    from aws_durable_execution_sdk_python.lambda_service import LambdaClient

    return DurableExecutionInvocationInputWithClient.from_durable_execution_invocation_input(
        DurableExecutionInvocationInput.from_json_dict(envelope), LambdaClient(client=boto_client))
