"""The console as an app the HTTP server mounts at ``/console``: routes, files and JSON answers.

``Console(engine, api)`` is called as ``console(method, path, query, headers, body) -> (status, headers,
body)`` for every request under ``/console`` (``LambdaHttpServer.mount``). Routes:

- ``GET /console/`` the executions list, ``GET /console/execution?arn=ARN`` one execution (HTML pages
  carrying the server's token), ``GET /console/static/NAME`` their CSS and JavaScript (package files;
  ``timeline.css`` is the HTML timeline's own stylesheet);
- ``GET /console/api/executions``, ``/console/api/execution``, ``/console/api/payload``: JSON (``views``);
- ``POST /console/api/actions/NAME``: an action (``actions``), with the token.

Every request first passes ``guard.check``; every answer is JSON or one of the package's files, sent with
a Content-Security-Policy that allows only the console's own scripts and styles.
"""
from __future__ import annotations

import functools
import json
import re
from importlib import resources
from typing import Any, Optional
from urllib.parse import parse_qs

from ..errors import ValidationError
from ..local.http.protocol import ApiError
from ..errors import ServiceError
from . import actions, guard, views
from .guard import BAD_REQUEST, Refused

PREFIX = "/console"
TOKEN_SLOT = "__DURABLE_CONSOLE_TOKEN__"
_STATIC_NAME = re.compile(r"^[a-z][a-z0-9_-]*\.(css|js)$")
_TYPES = {"css": "text/css; charset=utf-8", "js": "text/javascript; charset=utf-8",
          "html": "text/html; charset=utf-8", "json": "application/json"}
_PAGES = {"/": "index.html", "/execution": "execution.html"}
HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
}


@functools.lru_cache(maxsize=None)
def _package_file(name: str) -> Optional[str]:
    path = resources.files(__package__).joinpath("static", name)
    return path.read_text(encoding="utf-8") if path.is_file() else None


@functools.lru_cache(maxsize=1)
def timeline_css() -> str:
    """The HTML timeline's stylesheet (``inspection/timeline.html``): the console draws with the same classes."""
    page = resources.files("durable_sync.inspection").joinpath("timeline.html").read_text(encoding="utf-8")
    match = re.search(r"<style>\n?(.*?)</style>", page, re.S)
    return match.group(1) if match else ""


def _answer(status: int, content_type: str, body: bytes, extra: Optional[dict] = None) -> tuple[int, dict, bytes]:
    return status, {**HEADERS, "Content-Type": _TYPES[content_type], **(extra or {})}, body


def _json(status: int, value: Any) -> tuple[int, dict, bytes]:
    return _answer(status, "json", json.dumps(value, ensure_ascii=False).encode("utf-8"))


def _refusal(status: int, code: str, message: str) -> tuple[int, dict, bytes]:
    return _json(status, {"code": code, "message": message})


class Console:
    """The console of one engine, served next to (and acting through) the server's Lambda API ``api``."""

    def __init__(self, engine: Any, api: Any, *, token: Optional[str] = None):
        self.engine = engine
        self.api = api
        self.token = token or guard.new_token()
        self._names = guard.machine_names()

    def __call__(self, method: str, path: str, query: str, headers: Any, body: bytes) -> tuple[int, dict, bytes]:
        try:
            guard.check(method, headers, self.token, self._names)
            return self._route(method, path[len(PREFIX):], parse_qs(query, keep_blank_values=True), body)
        except Refused as exc:
            return _refusal(exc.status, exc.code, exc.message)
        except ApiError as exc:
            return _refusal(exc.status, exc.code, exc.message)
        except ServiceError as exc:
            return _refusal(exc.status, exc.code, exc.message)
        except ValidationError as exc:
            return _refusal(400, BAD_REQUEST, str(exc))

    def _route(self, method: str, path: str, query: dict, body: bytes) -> tuple[int, dict, bytes]:
        if path == "":
            return 308, {**HEADERS, "Location": PREFIX + "/", "Content-Length": "0"}, b""
        if path.startswith("/api/actions/"):
            if method != "POST":
                raise Refused(405, BAD_REQUEST, f"{method} {PREFIX}{path}: actions are POST requests")
            try:
                payload = json.loads(body.decode("utf-8")) if body else {}
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise Refused(400, BAD_REQUEST, f"the request body is not JSON ({exc}); nothing was changed") from None
            return _json(200, {"ok": True, **actions.perform(self.api, self.engine, path[len("/api/actions/"):],
                                                              payload)})
        if method not in ("GET", "HEAD"):
            raise Refused(405, BAD_REQUEST, f"{method} {PREFIX}{path}: only actions ({PREFIX}/api/actions/NAME) take "
                                            "POST")
        if path in _PAGES:
            page = _package_file(_PAGES[path])
            return _answer(200, "html", page.replace(TOKEN_SLOT, self.token).encode("utf-8"))
        if path.startswith("/static/"):
            return self._static(path[len("/static/"):])
        if path == "/api/executions":
            return _json(200, views.executions_page(self.engine, **{
                key: _one(query, key) for key in ("function", "status", "name", "offset", "limit")}))
        if path == "/api/execution":
            return _json(200, views.execution_page(self.engine, _required(query, "arn"), _one(query, "since")))
        if path == "/api/payload":
            return _json(200, views.payload(self.engine, _required(query, "arn"), _required(query, "ref")))
        raise Refused(404, "NotFound", f"nothing at {PREFIX}{path}; the console is at {PREFIX}/")

    def _static(self, name: str) -> tuple[int, dict, bytes]:
        if name == "timeline.css":
            return _answer(200, "css", timeline_css().encode("utf-8"))
        text = _package_file(name) if _STATIC_NAME.match(name) else None
        if text is None:
            raise Refused(404, "NotFound", f"no console file {name!r}")
        return _answer(200, name.rsplit(".", 1)[1], text.encode("utf-8"))


def _one(query: dict, key: str) -> Optional[str]:
    values = query.get(key)
    return values[-1] if values else None


def _required(query: dict, key: str) -> str:
    value = _one(query, key)
    if not value:
        raise Refused(400, BAD_REQUEST, f"the query parameter {key!r} is missing")
    return value


def mount(server: Any, *, token: Optional[str] = None) -> Console:
    """Serve the console of ``server``'s engine at ``/console/`` on ``server`` (a ``LambdaHttpServer``)."""
    console = Console(server.engine, server.api, token=token)
    server.mount(PREFIX, console)
    return console
