"""Who may use the console: the rules every request under ``/console/`` passes before anything else.

- **Host.** The request names this server by an IP address, ``localhost`` (or a ``*.localhost`` name) or
  this machine's own name. A page of another site that points its own domain name at this machine (DNS
  rebinding) names that domain and is refused: it can neither read the console nor learn its token.
- **Origin.** A request sent by a web page carries the page's origin: it must be the console's own
  (``http://`` and the Host the request names). Requests without one (curl, scripts) pass this rule.
- **Token.** Every state-changing request (a POST) carries the server's token in the
  ``X-Durable-Console-Token`` header, with a JSON body. The token is random, made when the server starts,
  and written into the console's own pages; other sites cannot read those pages (the same-origin policy).

A refused request changes nothing: these checks run before the request is looked at.
"""
from __future__ import annotations

import hmac
import ipaddress
import secrets
import socket
from typing import Any, Optional

TOKEN_HEADER = "X-Durable-Console-Token"

# refusal codes (the ``code`` of the console's JSON errors)
FORBIDDEN_HOST = "ForbiddenHost"
FOREIGN_ORIGIN = "ForeignOrigin"
BAD_TOKEN = "BadToken"
BAD_REQUEST = "InvalidRequest"


class Refused(Exception):
    """A request the console does not serve: HTTP ``status``, a ``code`` and a message saying why."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def new_token() -> str:
    return secrets.token_urlsafe(32)


def machine_names() -> frozenset[str]:
    """The names this machine answers to besides IP addresses and localhost."""
    try:
        name = socket.gethostname().lower()
    except OSError:  # pragma: no cover - no hostname at all
        return frozenset()
    return frozenset({name, name.split(".")[0]}) - {""}


def host_name(host_header: str) -> str:
    """The host of a Host header (``127.0.0.1:9014`` -> ``127.0.0.1``, ``[::1]:80`` -> ``::1``), lower case."""
    host = host_header.strip().lower()
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    name, sep, port = host.rpartition(":")
    return name if sep and port.isdigit() else host


def allowed_host(host_header: Optional[str], names: frozenset[str]) -> bool:
    if not host_header:
        return False
    host = host_name(host_header)
    if host == "localhost" or host.endswith(".localhost") or host in names:
        return True
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def check(method: str, headers: Any, token: str, names: frozenset[str]) -> None:
    """Refuse (``Refused``) a request that breaks one of the module's rules; return quietly otherwise."""
    host = headers.get("Host")
    if not allowed_host(host, names):
        raise Refused(403, FORBIDDEN_HOST, f"the console answers only to an IP address, localhost or this machine's "
                                           f"name, not to Host {host!r}; open it as http://127.0.0.1:PORT/console/")
    origin = headers.get("Origin")
    if origin is not None and origin.lower() != f"http://{host}".lower():
        raise Refused(403, FOREIGN_ORIGIN, f"a request from the web page of {origin!r} is refused: only the console's "
                                           f"own pages (http://{host}) may send requests to it")
    if method in ("GET", "HEAD"):
        return
    given = headers.get(TOKEN_HEADER)
    if not given:
        raise Refused(403, BAD_TOKEN, f"a request that changes something needs the console's token in the "
                                      f"{TOKEN_HEADER} header (the console's pages send it); nothing was changed")
    if not hmac.compare_digest(given.encode("utf-8", "replace"), token.encode("utf-8")):
        raise Refused(403, BAD_TOKEN, "the console token is wrong (a server started since the page was loaded has "
                                      "another one: reload the page); nothing was changed")
    content_type = (headers.get("Content-Type") or "").split(";")[0].strip().lower()
    if content_type != "application/json":
        raise Refused(415, BAD_REQUEST, f"a request that changes something has a JSON body (Content-Type: "
                                        f"application/json), not {content_type or 'none'!r}; nothing was changed")
