"""Helpers of the Node.js handler tests."""
from __future__ import annotations

import contextlib
import json
import os
from typing import Any, Iterator

from durable_sync.local import LocalEngine
from durable_sync.local.handlers import load
from durable_sync.local.http import start_server
from durable_sync.local.node_runtime import NodeHandler

HANDLERS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "handlers")
#: Handlers the current test loaded; conftest ends their warm processes after it.
LOADED: list[NodeHandler] = []


def js(name: str, export: str = "handler") -> NodeHandler:
    """The handler ``export`` of tests/node/handlers/``name``, loaded (checked) in Node."""
    handler = load(f"{os.path.join(HANDLERS, name)}:{export}")
    assert isinstance(handler, NodeHandler)
    LOADED.append(handler)
    return handler


def lambda_client(url: str) -> Any:
    import boto3

    return boto3.client("lambda", endpoint_url=url, region_name="us-east-1",
                        aws_access_key_id="test", aws_secret_access_key="test")


@contextlib.contextmanager
def served(functions: dict, db: str = ":memory:", skip_time: bool = True) -> Iterator[tuple[LocalEngine, Any]]:
    """An engine with ``functions`` (handlers or references), its Lambda API on a loopback port; yields
    (engine, boto3 client)."""
    engine = LocalEngine(db=db, skip_time=skip_time, functions=functions)
    try:
        with start_server(engine) as running:
            yield engine, lambda_client(running.url)
    finally:
        engine.close()


def invoke(client: Any, function: str, event: Any = None, name: str | None = None) -> tuple[str, Any, Any]:
    """Invoke ``function`` and wait for its execution: (ARN, decoded payload, FunctionError or None)."""
    kwargs = {"DurableExecutionName": name} if name else {}
    response = client.invoke(FunctionName=function, Payload=json.dumps(event if event is not None else {}),
                             **kwargs)
    return response["DurableExecutionArn"], json.loads(response["Payload"].read()), response.get("FunctionError")


def history(client: Any, arn: str) -> list[dict]:
    events: list[dict] = []
    kwargs: dict = {}
    while True:
        page = client.get_durable_execution_history(DurableExecutionArn=arn, IncludeExecutionData=True, **kwargs)
        events.extend(page["Events"])
        if not page.get("NextMarker"):
            return events
        kwargs["Marker"] = page["NextMarker"]


def event_types(events: list[dict]) -> list[str]:
    return [e["EventType"] for e in events]
