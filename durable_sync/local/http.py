"""HTTP façade of the local engine: the Lambda REST API, so unmodified boto3 and the AWS CLI work.

``serve(engine)`` answers every durable-execution operation of the botocore
``lambda`` model (checkpoint, state, get, history, list by function, stop, callback
success / failure / heartbeat; delete, pause and resume where the installed botocore
has them) and ``Invoke`` for the functions registered with it.

Routes, member locations (uri, querystring, header, body, payload) and input
validation come from the botocore service model, not from hand-written tables: a
small generic router matches ``method + requestUri`` of each operation, turns the
request into the operation's input dict, and checks it against the input shape
(required members, types, enums, lengths, ranges, patterns). Outputs are rendered
through the output shape (rest-json: timestamps as epoch seconds, header members
as headers, a payload member as the raw body). Errors answer
``{"Type": "User"|"Service", "message": ...}`` with ``X-Amzn-ErrorType: <Code>`` so
boto3 raises the modeled exception (``ResourceNotFoundException``,
``InvalidParameterValueException``, ...).

While it serves, handlers run by the engine talk back to this server over HTTP
through boto3 (``BotoCheckpointClient``), exactly as on Lambda: the engine's
``client_factory`` is pointed at the server's URL.

With a virtual-time engine (``skip_time=True``) the server drives the clock: after
each request that changes an execution (Invoke, callback answers, stop) it advances
virtual time until every execution is done or waits on the outside.

Binds 127.0.0.1 by default. There is no authentication: anything that can reach
the port can run the registered functions.
"""
from __future__ import annotations

import argparse
import base64
import collections
import datetime as dt
import functools
import json
import logging
import re
import signal
import socket
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Optional
from urllib.parse import parse_qs, unquote, urlsplit

from ..errors import ValidationError
from .service import CONFLICT, INVALID, NOT_FOUND, TOO_LARGE, ServiceError

log = logging.getLogger("durable_sync.local.http")

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 9014
MAX_BODY_BYTES = 8 * 1024 * 1024
MAX_SYNC_PAYLOAD_BYTES = 6 * 1024 * 1024  # Invoke RequestResponse (Lambda: 6 MB)
MAX_ASYNC_PAYLOAD_BYTES = 1024 * 1024  # Invoke Event (Lambda: 1 MB)
DEFAULT_INVOKE_TIMEOUT = 900.0  # a synchronous invoke waits at most 15 minutes, as on Lambda
ACCOUNT_ID = "000000000000"
REGION = "us-east-1"

UNKNOWN_OPERATION = "UnknownOperationException"
BAD_CONTENT = "InvalidRequestContentException"
ALREADY_STARTED = "DurableExecutionAlreadyStartedException"
SERVICE_ERROR = "ServiceException"
DEFAULT_PAGE = 100

#: Identifiers the engine mints and the server only looks up: a wrong one is "not found"
#: or "invalid token", never a pattern error (engine tokens are opaque, not base64).
_LOOKUP_ONLY_SHAPES = frozenset({"DurableExecutionArn", "CheckpointToken", "CallbackId"})

_ARN_RE = re.compile(r"^(?P<function_arn>arn:[^:]+:lambda:[^:]+:\d+:function:(?P<function>[^:/]+)"
                     r"(?::(?P<qualifier>[^/]+))?)/durable-execution/(?P<name>[^/]+)/(?P<id>[^/]+)$")
_FUNCTION_RE = re.compile(r"^(?:arn:[^:]*:lambda:)?(?:[a-z]{2}[a-z0-9-]*-\d:)?(?:\d{12}:)?(?:function:)?"
                          r"(?P<name>[A-Za-z0-9_.-]+)(?::(?P<qualifier>[A-Za-z0-9_$.-]+))?$")


class ApiError(Exception):
    """An error answer: ``code`` is the modeled exception name (X-Amzn-ErrorType)."""

    def __init__(self, code: str, message: str, status: int = 400):
        super().__init__(message)
        self.code, self.message, self.status = code, message, status


# -- the model: routes and shapes --------------------------------------------------------
@functools.lru_cache(maxsize=1)
def service_model() -> Any:
    import botocore.session

    return botocore.session.get_session().get_service_model("lambda")


@functools.lru_cache(maxsize=1)
def _execution_statuses() -> frozenset:
    """The ExecutionStatus values of the installed model (PAUSING / PAUSED came with pause and resume)."""
    try:
        return frozenset(service_model().shape_for("ExecutionStatus").enum)
    except Exception:  # noqa: BLE001 - no such shape: report the engine's statuses as they are
        return frozenset()


def reported_status(status: str) -> str:
    """``status`` as this model can say it: a paused execution is RUNNING to a model without PAUSED."""
    statuses = _execution_statuses()
    return "RUNNING" if statuses and status not in statuses and status in ("PAUSING", "PAUSED") else status


@functools.lru_cache(maxsize=1)
def _event_types() -> frozenset:
    """The EventType values of the installed model (ExecutionPaused / ExecutionResumed came with pause)."""
    try:
        return frozenset(service_model().shape_for("EventType").enum)
    except Exception:  # noqa: BLE001 - no such shape: every event is shown
        return frozenset()


def served_operations(model: Any = None) -> list[str]:
    """Every durable-execution operation of the model, plus Invoke."""
    model = model or service_model()
    return sorted(n for n in model.operation_names if "DurableExecution" in n) + ["Invoke"]


@dataclass(frozen=True)
class Route:
    name: str
    method: str
    regex: re.Pattern
    labels: tuple  # (group name, member location name, greedy)
    operation: Any  # botocore OperationModel


def build_routes(model: Any = None) -> list[Route]:
    model = model or service_model()
    routes = []
    for name in served_operations(model):
        op = model.operation_model(name)
        uri = op.http["requestUri"].split("?", 1)[0]
        pattern, labels, pos = "", [], 0
        for i, m in enumerate(re.finditer(r"\{([^}]+)\}", uri)):
            pattern += re.escape(uri[pos:m.start()])
            label = m.group(1)
            greedy = label.endswith("+")
            group = f"p{i}"
            pattern += f"(?P<{group}>.+)" if greedy else f"(?P<{group}>[^/]+)"
            labels.append((group, label.rstrip("+"), greedy))
            pos = m.end()
        pattern += re.escape(uri[pos:])
        routes.append(Route(name, op.http["method"].upper(), re.compile(f"^{pattern}/?$"), tuple(labels), op))
    # Literal segments first, so ".../checkpoint" never matches a shorter template greedily.
    routes.sort(key=lambda r: -len(r.regex.pattern))
    return routes


class Router:
    def __init__(self, model: Any = None):
        self.routes = build_routes(model)

    def match(self, method: str, path: str) -> tuple[Route, dict]:
        allowed = []
        for route in self.routes:
            m = route.regex.match(path)
            if not m:
                continue
            if route.method != method:
                allowed.append(route.method)
                continue
            return route, {loc: unquote(m.group(group)) for group, loc, _ in route.labels}
        if allowed:
            raise ApiError(UNKNOWN_OPERATION, f"{method} is not supported on {path}; use {', '.join(sorted(set(allowed)))}",
                           405)
        hint = (" (percent-encode the execution ARN in the path: its '/' and ':' become %2F and %3A)"
                if "/durable-execution/" in path else "")
        raise ApiError(UNKNOWN_OPERATION, f"no Lambda operation is served at {method} {path}{hint}; this server "
                       f"answers the durable execution operations and Invoke ({', '.join(served_operations())})", 404)


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _show(value: Any) -> str:
    text = json.dumps(value) if isinstance(value, (str, int, float, bool)) or value is None else type(value).__name__
    return text if len(text) <= 80 else text[:77] + "..."


def _kind(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", int: "an integer",
            float: "a number", bytes: "binary data"}.get(type(value), type(value).__name__)


@functools.lru_cache(maxsize=256)
def _compiled(pattern: str) -> Optional[re.Pattern]:
    try:
        return re.compile(pattern)
    except re.error:
        return None


def coerce(value: Any, shape: Any, path: str, errors: list[str], from_json: bool = True) -> Any:
    """Check ``value`` against ``shape`` (botocore input shape); returns it converted (blobs, timestamps)."""
    t = shape.type_name
    meta = shape.metadata

    def bad(constraint: str) -> None:
        errors.append(f"Value {_show(value)} at '{path or 'body'}' failed to satisfy constraint: {constraint}")

    if t == "structure":
        if not isinstance(value, dict):
            errors.append(f"'{path or 'body'}' must be an object, got {_kind(value)}")
            return value
        out = {}
        for name, member_value in value.items():
            member = shape.members.get(name)
            if member is None or member_value is None:
                continue  # unknown members are ignored (newer clients), null is absent
            out[name] = coerce(member_value, member, _join(path, name), errors, from_json)
        for name in shape.required_members:
            if out.get(name) is None:
                errors.append(f"Value null at '{_join(path, name)}' failed to satisfy constraint: Member must not "
                              "be null")
        return out
    if t == "list":
        if not isinstance(value, list):
            bad(f"Member must be a list, got {_kind(value)}")
            return value
        _check_length(len(value), meta, bad, "Member must have length")
        return [coerce(v, shape.member, f"{path}[{i}]", errors, from_json) for i, v in enumerate(value)]
    if t == "map":
        if not isinstance(value, dict):
            bad(f"Member must be an object, got {_kind(value)}")
            return value
        return {coerce(k, shape.key, f"{path}.<key>", errors, from_json):
                coerce(v, shape.value, f"{path}[{k!r}]", errors, from_json) for k, v in value.items()}
    if t == "string":
        if not isinstance(value, str):
            bad(f"Member must be a string, got {_kind(value)}")
            return value
        _check_length(len(value), meta, bad, "Member must have length")
        enum = meta.get("enum")
        if enum and value not in enum:
            bad(f"Member must satisfy enum value set: [{', '.join(enum)}]")
        pattern = meta.get("pattern")
        if pattern and shape.name not in _LOOKUP_ONLY_SHAPES:
            regex = _compiled(pattern)
            if regex is not None and value and not regex.fullmatch(value):
                bad(f"Member must satisfy regular expression pattern: {pattern}")
        return value
    if t in ("integer", "long"):
        if isinstance(value, bool) or not isinstance(value, int):
            bad(f"Member must be an integer, got {_kind(value)}")
            return value
        if "min" in meta and value < meta["min"]:
            bad(f"Member must have value greater than or equal to {meta['min']}")
        if "max" in meta and value > meta["max"]:
            bad(f"Member must have value less than or equal to {meta['max']}")
        return value
    if t in ("float", "double"):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            bad(f"Member must be a number, got {_kind(value)}")
        return value
    if t == "boolean":
        if not isinstance(value, bool):
            bad(f"Member must be a boolean, got {_kind(value)}")
        return value
    if t == "blob":
        if isinstance(value, str) and from_json:
            try:
                value = base64.b64decode(value, validate=True)
            except (ValueError, TypeError):
                bad("Member must be base64-encoded binary data")
                return value
        if not isinstance(value, (bytes, bytearray)):
            bad(f"Member must be binary data, got {_kind(value)}")
            return value
        _check_length(len(value), meta, bad, "Member must have length")
        return bytes(value)
    if t == "timestamp":
        if isinstance(value, dt.datetime):
            return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            bad(f"Member must be a timestamp, got {_kind(value)}")
            return value
        try:
            from botocore.utils import parse_timestamp

            return parse_timestamp(value).astimezone(dt.timezone.utc)
        except Exception:  # noqa: BLE001 - any parse failure is the caller's
            bad("Member must be a timestamp (ISO 8601 or epoch seconds)")
            return value
    return value


def _check_length(n: int, meta: dict, bad: Callable[[str], None], what: str) -> None:
    if "min" in meta and n < meta["min"]:
        bad(f"{what} greater than or equal to {meta['min']}")
    if "max" in meta and n > meta["max"]:
        bad(f"{what} less than or equal to {meta['max']}")


def _from_text(text: str, shape: Any, path: str, errors: list[str]) -> Any:
    """A uri / querystring / header string as the member's type."""
    t = shape.type_name
    if t in ("integer", "long"):
        try:
            return int(text)
        except ValueError:
            errors.append(f"Value {_show(text)} at '{path}' failed to satisfy constraint: Member must be an integer")
            return text
    if t == "boolean":
        if text.lower() in ("true", "false"):
            return text.lower() == "true"
        errors.append(f"Value {_show(text)} at '{path}' failed to satisfy constraint: Member must be true or false")
        return text
    if t in ("float", "double"):
        try:
            return float(text)
        except ValueError:
            errors.append(f"Value {_show(text)} at '{path}' failed to satisfy constraint: Member must be a number")
            return text
    return text  # strings; timestamps are parsed by coerce()


def parse_request(route: Route, path_params: dict, query: str, headers: Any, body: bytes) -> dict:
    """The operation's input dict from the HTTP request, validated against the input shape."""
    shape = route.operation.input_shape
    if shape is None:
        return {}
    errors: list[str] = []
    raw: dict[str, Any] = {}
    qs = parse_qs(query, keep_blank_values=True) if query else {}
    payload_name = shape.serialization.get("payload")
    for name, member in shape.members.items():
        location = member.serialization.get("location")
        wire_name = member.serialization.get("name", name)
        if location == "uri":
            raw[name] = _from_text(path_params[wire_name], member, name, errors)
        elif location == "querystring":
            values = qs.get(wire_name)
            if values is None:
                continue
            if member.type_name == "list":
                raw[name] = [_from_text(v, member.member, f"{name}[{i}]", errors) for i, v in enumerate(values)]
            elif len(values) > 1:
                errors.append(f"query parameter {wire_name} was given {len(values)} times; give it once")
            else:
                raw[name] = _from_text(values[0], member, name, errors)
        elif location == "header":
            value = headers.get(wire_name)
            if value is not None:
                raw[name] = _from_text(value, member, name, errors)
    if payload_name:
        member = shape.members[payload_name]
        if member.type_name == "blob":
            if body:
                raw[payload_name] = body
        elif member.type_name == "string":
            if body:
                raw[payload_name] = _utf8(body)
        elif body.strip():
            raw[payload_name] = _json_body(body)
    elif body.strip():
        document = _json_body(body)
        if not isinstance(document, dict):
            raise ApiError(BAD_CONTENT, f"the request body must be a JSON object, got {_kind(document)}")
        for name, value in document.items():
            member = shape.members.get(name)
            if member is not None and member.serialization.get("location") is None:
                raw[name] = value
    params = coerce(raw, shape, "", errors, from_json=True)
    if errors:
        shown = errors[:10]
        more = f" (and {len(errors) - 10} more)" if len(errors) > 10 else ""
        raise ApiError(INVALID, f"{len(errors)} validation error{'s' if len(errors) > 1 else ''} detected in the "
                       f"{route.name} request: {'; '.join(shown)}{more}")
    return params


def _utf8(body: bytes) -> str:
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ApiError(BAD_CONTENT, f"the request body is not UTF-8 text ({exc})") from None


def _json_body(body: bytes) -> Any:
    try:
        return json.loads(_utf8(body))
    except json.JSONDecodeError as exc:
        raise ApiError(BAD_CONTENT, f"Could not parse request body into json: {exc.msg} at line {exc.lineno} "
                       f"column {exc.colno}") from None
    except RecursionError:  # e.g. "[[[[..." nested deeper than the decoder goes: the client's fault, not a 500
        raise ApiError(BAD_CONTENT, "Could not parse request body into json: nested too deeply") from None


# -- output rendering ------------------------------------------------------------------------
def _epoch_seconds(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.timezone.utc)
        return round(value.timestamp(), 3)
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return round(value / 1000, 3)  # the engine keeps epoch milliseconds
    return value


def to_wire(value: Any, shape: Any) -> Any:
    """``value`` as the rest-json body carries it for ``shape`` (unmodeled keys and None dropped)."""
    t = shape.type_name
    if value is None:
        return None
    if t == "structure" and isinstance(value, dict):
        out = {}
        for name, member in shape.members.items():
            v = value.get(name)
            if v is not None:
                out[name] = to_wire(v, member)
        return out
    if t == "list" and isinstance(value, list):
        return [to_wire(v, shape.member) for v in value]
    if t == "map" and isinstance(value, dict):
        return {k: to_wire(v, shape.value) for k, v in value.items()}
    if t == "timestamp":
        fmt = shape.serialization.get("timestampFormat", "unixTimestamp")
        if fmt == "iso8601" and isinstance(value, (int, dt.datetime)):
            seconds = _epoch_seconds(value)
            return dt.datetime.fromtimestamp(seconds, dt.timezone.utc).isoformat().replace("+00:00", "Z")
        return _epoch_seconds(value)
    if t == "blob":
        data = value.encode("utf-8") if isinstance(value, str) else bytes(value)
        return base64.b64encode(data).decode("ascii")
    return value


def render_output(route: Route, output: dict) -> tuple[int, dict, bytes]:
    """(status, headers, body) for an operation's output dict."""
    shape = route.operation.output_shape
    status = int(route.operation.http.get("responseCode", 200))
    headers: dict[str, str] = {}
    if shape is None:
        return status, {"Content-Type": "application/json"}, b"{}"
    payload_name = shape.serialization.get("payload")
    document: dict[str, Any] = {}
    body: Optional[bytes] = None
    for name, member in shape.members.items():
        value = output.get(name)
        if value is None:
            continue
        location = member.serialization.get("location")
        if location == "statusCode":
            status = int(value)
        elif location == "header":
            headers[member.serialization.get("name", name)] = (
                str(value).lower() if isinstance(value, bool) else str(value))
        elif name == payload_name:
            if member.type_name in ("blob", "string"):
                body = value.encode("utf-8") if isinstance(value, str) else bytes(value)
            else:
                body = json.dumps(to_wire(value, member), separators=(",", ":")).encode("utf-8")
        else:
            document[name] = to_wire(value, member)
    if payload_name is None:
        body = json.dumps(document, separators=(",", ":")).encode("utf-8")
    headers.setdefault("Content-Type", "application/json")
    return status, headers, body if body is not None else b""


# -- the operations ---------------------------------------------------------------------------
def named_function(name: str, handler: Callable) -> Callable:
    """``handler`` served as the Lambda function ``name``.

    The engine names executions and ARNs after it, and the handler receives the
    invocation envelope as Lambda's runtime delivers it: decoded from JSON text
    (epoch-millisecond timestamps, fresh objects it shares with nobody).
    """
    if getattr(handler, "__durable_served__", None) == name:
        return handler

    @functools.wraps(handler)
    def function(event: Any, lambda_context: Any = None) -> Any:
        return handler(json.loads(json.dumps(event)), lambda_context)

    function.__durable_function_name__ = name  # type: ignore[attr-defined]
    function.__durable_served__ = name  # type: ignore[attr-defined]
    return function


def function_name(value: str) -> str:
    """The bare function name of a name, partial ARN or ARN, with or without a qualifier."""
    m = _FUNCTION_RE.match(value)
    if not m:
        raise ApiError(INVALID, f"{value!r} is not a function name or ARN")
    return m.group("name")


def _arn_parts(arn: str) -> dict:
    m = _ARN_RE.match(arn)
    if m is None:
        return {"function_arn": arn.split("/durable-execution/")[0], "function": None, "qualifier": "$LATEST",
                "name": arn.rsplit("/", 2)[-2] if arn.count("/") >= 2 else arn}
    parts = m.groupdict()
    parts["qualifier"] = parts["qualifier"] or "$LATEST"
    return parts


def _offset(marker: Optional[str]) -> int:
    if marker is None or marker == "":
        return 0
    if not marker.isdigit():
        raise ApiError(INVALID, f"Marker {marker!r} was not returned by this server; pass the NextMarker of the "
                       "previous page")
    return int(marker)


def _page(items: list, marker: Optional[str], max_items: Optional[int]) -> tuple[list, Optional[str]]:
    start = _offset(marker)
    size = max_items or DEFAULT_PAGE
    page = items[start:start + size]
    return page, (str(start + size) if start + size < len(items) else None)


class LambdaApi:
    """The operations, over a LocalEngine; HTTP-free (``call(name, params) -> output``)."""

    def __init__(self, engine: Any, functions: Optional[dict] = None, invoke_timeout: float = DEFAULT_INVOKE_TIMEOUT):
        self.engine = engine
        self.invoke_timeout = invoke_timeout
        self._functions: dict[str, Callable] = {}
        self._drive_lock = threading.RLock()
        self._changed = threading.Condition()
        self._generation = 0
        self._closed = False
        for name, handler in (functions or {}).items():
            self.register(name, handler)

    def register(self, name: str, handler: Callable) -> Callable:
        wrapper = named_function(name, handler)
        self._functions[name] = wrapper
        self.engine.register_function(name, wrapper)
        return wrapper

    def close(self) -> None:
        self._closed = True
        self._notify()

    def call(self, name: str, params: dict) -> dict:
        method = getattr(self, f"op_{name}", None)
        if method is None:
            raise ApiError(UNKNOWN_OPERATION, f"{name} is in the Lambda model but not implemented by this server", 501)
        try:
            return method(params)
        except ServiceError as exc:
            raise ApiError(exc.code, exc.message, exc.status) from None
        except ValidationError as exc:
            raise ApiError(INVALID, str(exc)) from None

    # -- virtual time ---------------------------------------------------------------------
    def _notify(self) -> None:
        with self._changed:
            self._generation += 1
            self._changed.notify_all()

    def _drive(self) -> None:
        """Virtual time: advance until every execution is done or waits on the outside."""
        if not self.engine.skip_time:
            return
        with self._drive_lock:
            for item in self.engine.list_executions(status="RUNNING"):
                self.engine.wait(item["DurableExecutionArn"])
        self._notify()

    def _mutate(self, fn: Callable, *args: Any) -> Any:
        if not self.engine.skip_time:
            result = fn(*args)
            self._notify()
            return result
        with self._drive_lock:
            result = fn(*args)
            self._drive()
        return result

    def _await_outcome(self, arn: str) -> Any:
        if not self.engine.skip_time:
            return self.engine.wait(arn, self.invoke_timeout)
        deadline = time.monotonic() + self.invoke_timeout
        while True:
            with self._changed:
                generation = self._generation
            result = self.engine.get_execution(arn)
            remaining = deadline - time.monotonic()
            if result.status != "RUNNING" or remaining <= 0 or self._closed:
                return result
            with self._changed:
                if self._generation == generation:
                    self._changed.wait(min(remaining, 1.0))

    # -- lookups ------------------------------------------------------------------------------
    def _function(self, value: str) -> tuple[str, Callable]:
        name = function_name(value)
        handler = self._functions.get(name)
        if handler is None:
            registered = getattr(self.engine, "_functions", {}).get(name)  # registered on the engine directly
            if registered is not None:
                handler = self.register(name, registered)
        if handler is None:
            known = ", ".join(sorted(self._functions)) or "none"
            raise ApiError(NOT_FOUND, f"Function not found: arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{name} "
                           f"(functions served here: {known})", 404)
        return name, handler

    def _execution_op(self, arn: str) -> dict:
        for op in self.engine.operations(arn):
            if op.get("Type") == "EXECUTION":
                return op
        raise ApiError(NOT_FOUND, f"no durable execution {arn!r}", 404)

    # -- Invoke -------------------------------------------------------------------------------
    def op_Invoke(self, p: dict) -> dict:
        name, handler = self._function(p["FunctionName"])
        invocation_type = p.get("InvocationType") or "RequestResponse"
        payload = p.get("Payload") or b""
        limit = MAX_ASYNC_PAYLOAD_BYTES if invocation_type == "Event" else MAX_SYNC_PAYLOAD_BYTES
        if len(payload) > limit:
            raise ApiError(TOO_LARGE, f"Request must be smaller than {limit} bytes for the InvokeFunction operation",
                           413)
        if payload.strip():
            try:
                event = json.loads(payload.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise ApiError(BAD_CONTENT, f"Could not parse request body into json: {exc}") from None
        else:
            event = {}  # Lambda passes {} when there is no payload
        if invocation_type == "DryRun":
            return {"StatusCode": 204}
        try:
            if invocation_type == "Event" and self.engine.skip_time:
                with self._drive_lock:
                    arn = self.engine.start(handler, input=event, name=p.get("DurableExecutionName"))
                threading.Thread(target=self._drive, name="durable-http-drive", daemon=True).start()
            else:
                arn = self._mutate(lambda: self.engine.start(handler, input=event,
                                                             name=p.get("DurableExecutionName")))
        except ServiceError as exc:
            if exc.code == CONFLICT:
                raise ApiError(ALREADY_STARTED, f"{exc.message}; use another DurableExecutionName or the same "
                               "payload", 409) from None
            raise
        if invocation_type == "Event":
            return {"StatusCode": 202, "DurableExecutionArn": arn}
        result = self._await_outcome(arn)
        out = {"StatusCode": 200, "DurableExecutionArn": arn, "ExecutedVersion": "$LATEST"}
        if result.status == "SUCCEEDED":
            out["Payload"] = (result.raw_result if result.raw_result is not None else "null").encode("utf-8")
        elif result.status == "RUNNING":
            out["FunctionError"] = "Unhandled"
            out["Payload"] = json.dumps({
                "errorType": "DurableExecution.StillRunning",
                "errorMessage": f"the durable execution is still RUNNING after {self.invoke_timeout:g} s; poll "
                                f"GetDurableExecution for {arn}"}).encode("utf-8")
        else:
            err = result.error or {}
            body = {"errorType": err.get("ErrorType") or f"Execution.{result.status}",
                    "errorMessage": err.get("ErrorMessage") or f"the durable execution ended {result.status}"}
            if err.get("StackTrace"):
                body["stackTrace"] = err["StackTrace"]
            out["FunctionError"] = "Unhandled"
            out["Payload"] = json.dumps(body).encode("utf-8")
        return out

    # -- executions ---------------------------------------------------------------------------
    def op_GetDurableExecution(self, p: dict) -> dict:
        arn = p["DurableExecutionArn"]
        result = self.engine.get_execution(arn)
        op = self._execution_op(arn)
        parts = _arn_parts(arn)
        with_data = p.get("IncludeExecutionData") is not False  # newer models: default true
        out = {"DurableExecutionArn": arn, "DurableExecutionName": parts["name"],
               "FunctionArn": parts["function_arn"],
               "Status": reported_status(getattr(result, "pause_status", None) or result.status),
               "StartTimestamp": op.get("StartTimestamp"), "EndTimestamp": op.get("EndTimestamp"),
               "Version": parts["qualifier"], "ExecutionDataIncluded": with_data,
               "ExpectedExecutionTimeoutTimestamp": getattr(result, "timeout_at", None)}
        pause_details = getattr(result, "pause_details", None)
        if pause_details:  # members the model lacks are dropped when rendered
            out["PauseDetails"] = pause_details if with_data else {k: v for k, v in pause_details.items()
                                                                   if k != "Reason"}
        if with_data:
            out["InputPayload"] = (op.get("ExecutionDetails") or {}).get("InputPayload")
            if result.status == "SUCCEEDED":
                out["Result"] = result.raw_result if result.raw_result is not None else "null"
            elif result.error:
                out["Error"] = result.error
        return out

    def op_GetDurableExecutionHistory(self, p: dict) -> dict:
        events = self.engine.history(p["DurableExecutionArn"])
        known = _event_types()
        if known:  # a model without pause / resume cannot describe their events: leave them out
            events = [e for e in events if e["EventType"] in known]
        if p.get("IncludeExecutionData") is False:
            events = [_without_data(e) for e in events]
        if p.get("ReverseOrder"):
            events = events[::-1]
        page, marker = _page(events, p.get("Marker"), p.get("MaxItems"))
        return {"Events": page, "NextMarker": marker}

    def op_ListDurableExecutionsByFunction(self, p: dict) -> dict:
        name = function_name(p["FunctionName"])
        items = self.engine.list_executions(function_name=name)
        if not items and name not in self._functions and name not in getattr(self.engine, "_functions", {}):
            raise ApiError(NOT_FOUND, f"Function not found: arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{name}", 404)
        statuses = set(p.get("Statuses") or ())
        after, before = p.get("StartedAfter"), p.get("StartedBefore")
        selected = []
        for item in items:
            item = {**item, "Status": reported_status(item["Status"])}
            if p.get("DurableExecutionName") and item["DurableExecutionName"] != p["DurableExecutionName"]:
                continue
            if statuses and item["Status"] not in statuses:
                continue
            started = item["StartTimestamp"]
            if (after is not None and started <= after) or (before is not None and started >= before):
                continue
            selected.append({**item, "FunctionArn": _arn_parts(item["DurableExecutionArn"])["function_arn"]})
        selected.sort(key=lambda i: (i["StartTimestamp"], i["DurableExecutionArn"]), reverse=bool(p.get("ReverseOrder")))
        page, marker = _page(selected, p.get("Marker"), p.get("MaxItems"))
        return {"DurableExecutions": page, "NextMarker": marker}

    def op_StopDurableExecution(self, p: dict) -> dict:
        arn = p["DurableExecutionArn"]
        self._mutate(self.engine.stop, arn, p.get("Error"))
        return {"StopTimestamp": self._execution_op(arn).get("EndTimestamp") or dt.datetime.now(dt.timezone.utc)}

    # Delete, pause and resume: operations of newer botocore models (routed only where the model has them).
    def op_DeleteDurableExecution(self, p: dict) -> dict:
        deleted = self.engine.delete(p["DurableExecutionArn"])  # ends nothing, starts nothing: no drive
        self._notify()
        return {"DeletionRequestTimestamp": deleted}

    def op_PauseDurableExecution(self, p: dict) -> dict:
        # Not under the drive lock: an invocation in flight (the drive's) is what makes it PAUSING.
        timeout_paused = p.get("ExecutionTimeoutPaused")
        self.engine.pause(p["DurableExecutionArn"], p.get("Reason"),
                          execution_timeout_paused=True if timeout_paused is None else timeout_paused,
                          client_token=p.get("ClientToken"))
        self._notify()
        return {}

    def op_ResumeDurableExecution(self, p: dict) -> dict:
        arn = p["DurableExecutionArn"]
        self._mutate(lambda: self.engine.resume_execution(arn, p.get("Reason"), client_token=p.get("ClientToken")))
        return {}

    # -- the SDK's calls ----------------------------------------------------------------------
    def op_CheckpointDurableExecution(self, p: dict) -> dict:
        # Never takes the drive lock: it is called from inside running invocations.
        response = self.engine.checkpoint(p["DurableExecutionArn"], p["CheckpointToken"], p.get("Updates") or [],
                                          p.get("ClientToken"))
        self._notify()
        return response

    def op_GetDurableExecutionState(self, p: dict) -> dict:
        _offset(p.get("Marker"))
        return self.engine.get_state(p["DurableExecutionArn"], p["CheckpointToken"], p.get("Marker"),
                                     p.get("MaxItems") or DEFAULT_PAGE)

    # -- callbacks ------------------------------------------------------------------------------
    def op_SendDurableExecutionCallbackSuccess(self, p: dict) -> dict:
        result = p.get("Result")
        text = _utf8(result) if result else None
        self._mutate(self.engine.send_callback_success, p["CallbackId"], text)
        return {}

    def op_SendDurableExecutionCallbackFailure(self, p: dict) -> dict:
        self._mutate(self.engine.send_callback_failure, p["CallbackId"], p.get("Error"))
        return {}

    def op_SendDurableExecutionCallbackHeartbeat(self, p: dict) -> dict:
        self._mutate(self.engine.send_callback_heartbeat, p["CallbackId"])
        return {}


def _without_data(event: dict) -> dict:
    """An event without its Input / Result payloads (IncludeExecutionData=false)."""
    out = dict(event)
    for key, details in event.items():
        if key.endswith("Details") and isinstance(details, dict):
            details = dict(details)
            for field in ("Input", "Result", "Reason"):  # Reason: ExecutionPaused / ExecutionResumed
                if isinstance(details.get(field), dict):
                    details[field] = {k: v for k, v in details[field].items() if k != "Payload"}
            out[key] = details
    return out


# -- HTTP ---------------------------------------------------------------------------------------
class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "durable-sync"
    sys_version = ""
    timeout = 120  # seconds a client may idle mid-request
    disable_nagle_algorithm = True  # headers and body go out as separate writes: no 40 ms delayed-ACK stall

    server: "LambdaHttpServer"

    def do_GET(self) -> None:  # noqa: N802 - http.server naming
        self._handle()

    do_POST = do_PUT = do_DELETE = do_PATCH = do_GET  # noqa: N815

    def version_string(self) -> str:
        return self.server_version

    def log_message(self, fmt: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), fmt % args)

    def _handle(self) -> None:
        request_id = str(uuid.uuid4())
        route_name = "?"
        try:
            if self.headers.get("Origin") is not None:
                raise ApiError("AccessDeniedException", "requests from web pages (with an Origin header) are refused: "
                               "durable-sync serve has no authentication; call it from boto3 or the AWS CLI", 403)
            body = self._read_body()
            if body is None:
                return  # the client went away mid-body
            split = urlsplit(self.path)
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
                 invoke_timeout: float = DEFAULT_INVOKE_TIMEOUT, checkpoint_endpoint: Optional[str] = None):
        if ":" in host:
            self.address_family = socket.AF_INET6
        super().__init__((host, port), _Handler)
        self.engine = engine
        self.router = Router()
        self.api = LambdaApi(engine, functions, invoke_timeout)
        self.max_body_bytes = max_body_bytes
        self.requests: collections.Counter = collections.Counter()  # operation name -> requests routed
        self._count_lock = threading.Lock()
        self._thread: Optional[threading.Thread] = None
        self._closed = False
        self._previous_factory = getattr(engine, "client_factory", None)
        self._installed_factory = None
        if self._previous_factory is None:
            from ..aws import BotoCheckpointClient, make_boto_client

            client = BotoCheckpointClient(make_boto_client(
                endpoint_url=checkpoint_endpoint or self.url, region_name=REGION,
                aws_access_key_id="durable-sync-local", aws_secret_access_key="durable-sync-local"))
            self._installed_factory = lambda: client
            engine.client_factory = self._installed_factory

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


# -- CLI: durable-sync serve -----------------------------------------------------------------------
_NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def add_serve_parser(sub: Any) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "serve", help="serve the Lambda API (durable operations + Invoke) over HTTP for boto3 and the AWS CLI",
        description="Serve the Lambda REST API for durable executions on the embedded engine. Point boto3 or the "
                    "AWS CLI at it with AWS_ENDPOINT_URL_LAMBDA=http://HOST:PORT (or --endpoint-url).")
    p.add_argument("--host", default=DEFAULT_HOST, help=f"address to bind (default {DEFAULT_HOST}; there is no auth)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT}; 0 picks one)")
    p.add_argument("--db", default="durable.db", help="SQLite database (default durable.db; ':memory:' for none)")
    p.add_argument("--skip-time", action="store_true", help="virtual time: waits and retries take no real time")
    p.add_argument("--function", "-f", action="append", default=[], metavar="[NAME=]FILE[:HANDLER]",
                   help="a durable handler to serve as function NAME (default: the file's name); repeatable")
    p.add_argument("--invoke-timeout", type=float, default=DEFAULT_INVOKE_TIMEOUT,
                   help="seconds a RequestResponse Invoke waits for the execution (default 900)")
    p.set_defaults(func=cmd_serve)
    return p


def _load_functions(specs: list[str]) -> dict[str, Callable]:
    from ..cli import CliError, load_handler

    functions: dict[str, Callable] = {}
    for spec in specs:
        name, sep, target = spec.partition("=")
        if not sep or "/" in name or "\\" in name or name.endswith((".py", ".py:")):
            name, target = "", spec
        handler = load_handler(target)
        name = name or handler.__durable_function_name__
        if not _NAME_RE.match(name):
            raise CliError(f"function name {name!r} must be 1-64 characters of [A-Za-z0-9_-] (use NAME=FILE:HANDLER)")
        if name in functions:
            raise CliError(f"function {name!r} is given twice")
        functions[name] = named_function(name, handler)
    return functions


def cmd_serve(args: argparse.Namespace) -> int:
    from ..cli import CliError
    from .engine import LocalEngine

    functions = _load_functions(args.function)
    engine = LocalEngine(db=args.db, skip_time=args.skip_time, functions=functions)
    try:
        try:
            server = make_server(engine, args.host, args.port, functions=functions,
                                 invoke_timeout=args.invoke_timeout)
        except OSError as exc:
            raise CliError(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}") from None
        if args.host not in ("127.0.0.1", "localhost", "::1"):
            print(f"durable-sync: warning: listening on {args.host} with no authentication", file=sys.stderr)
        names = ", ".join(sorted(functions)) or "none (add --function NAME=FILE:HANDLER)"
        print(f"durable-sync: Lambda API on {server.url} (db {args.db}, "
              f"{'virtual' if args.skip_time else 'real'} time)\n"
              f"  functions: {names}\n"
              f"  export AWS_ENDPOINT_URL_LAMBDA={server.url}   # boto3 and the AWS CLI then use it", file=sys.stderr,
              flush=True)
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, _raise_interrupt)
        try:
            server.serve_forever(poll_interval=0.2)
        except KeyboardInterrupt:
            print("durable-sync: stopping", file=sys.stderr)
        finally:
            server.close()
    finally:
        engine.close()
    return 0


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt
