"""The Lambda REST API as botocore's ``lambda`` model describes it: routes, input coercion, output rendering.

Routes, member locations (uri, querystring, header, body, payload) and input validation come from
the botocore service model, not from hand-written tables: a small generic router matches ``method +
requestUri`` of each operation, turns the request into the operation's input dict, and checks it
against the input shape (required members, types, enums, lengths, ranges, patterns). Outputs are
rendered through the output shape (rest-json: timestamps as epoch seconds, header members as
headers, a payload member as the raw body). Errors are ``ApiError``s, which the server answers as
``{"Type": "User"|"Service", "message": ...}`` with ``X-Amzn-ErrorType: <Code>`` so that botocore
raises the modeled exception. Nothing here knows the engine or HTTP sockets.
"""
from __future__ import annotations

import base64
import datetime as dt
import functools
import json
import re
from dataclasses import dataclass
from typing import Any, Callable, Optional
from urllib.parse import parse_qs, unquote

from ...errors import INVALID

# Every error answer names an exception of botocore's ``lambda`` model, so boto3 raises a modeled exception.
NOT_FOUND = "ResourceNotFoundException"
BAD_CONTENT = "InvalidRequestContentException"
TOO_LARGE = "RequestTooLargeException"
ALREADY_STARTED = "DurableExecutionAlreadyStartedException"
SERVICE_ERROR = "ServiceException"
DEFAULT_PAGE = 100

#: Identifiers the engine mints and the server only looks up: a wrong one is "not found"
#: or "invalid token", never a pattern error (engine tokens are opaque, not base64).
_LOOKUP_ONLY_SHAPES = frozenset({"DurableExecutionArn", "CheckpointToken", "CallbackId"})


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
def event_types() -> frozenset:
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
            raise ApiError(BAD_CONTENT, f"{method} is not supported on {path}; use {', '.join(sorted(set(allowed)))}",
                           405)
        hint = (" (percent-encode the execution ARN in the path: its '/' and ':' become %2F and %3A)"
                if "/durable-execution/" in path else "")
        raise ApiError(NOT_FOUND, f"no Lambda operation is served at {method} {path}{hint}; this server "
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
        if not _is_text(value):
            bad("Member must be Unicode text (it holds a lone surrogate, which no UTF-8 text can carry)")
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


def _is_text(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


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
                raw[payload_name] = utf8(body)
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


def utf8(body: bytes) -> str:
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ApiError(BAD_CONTENT, f"the request body is not UTF-8 text ({exc})") from None


def _json_body(body: bytes) -> Any:
    try:
        return json.loads(utf8(body))
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
