"""ASGI middleware: the Host allowlist, and one log line and one measurement per request.

Litestar's own ``AllowedHostsConfig`` answers a refused Host with its own body
(``{"message": ...}``) and uses ``*.example.com`` patterns; ours answers with the API's
error envelope and follows the documented ``ALLOWED_HOSTS`` syntax (``*`` allows any
host, ``.example.com`` allows the domain and its subdomains).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

from litestar.datastructures import Headers
from litestar.enums import ScopeType
from litestar.middleware import ASGIMiddleware
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from viarah.domain.shared.telemetry import (
    HTTP_REQUEST_SECONDS,
    HTTP_REQUESTS,
    NullTelemetry,
    Telemetry,
)
from viarah.domain.shared.text import loggable
from viarah.entrypoints.web.errors import error_body

log = logging.getLogger("viarah.web")

INVALID_HOST = "the Host header is not one this server answers to (see ALLOWED_HOSTS)"
#: Methods measured under their own name; anything else is measured as ``other``.
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED_ROUTE = "(unmatched)"


def split_host(host_header: str) -> str:
    """The host name of a Host header: lower-cased, without port or trailing dot."""
    host = host_header.strip().lower()
    if host.startswith("["):  # IPv6 literal, maybe with a port
        end = host.find("]")
        return host[1:end] if end > 0 else ""
    if host.count(":") == 1:
        host = host.split(":", 1)[0]
    return host.rstrip(".")


def host_allowed(host_header: str, allowed: Sequence[str]) -> bool:
    """Whether the Host header matches one of the ``ALLOWED_HOSTS`` patterns."""
    host = split_host(host_header)
    if not host:
        return "*" in allowed
    for pattern in allowed:
        pattern = pattern.strip().lower().rstrip(".")
        if pattern == "*":
            return True
        if pattern.startswith("*."):
            if host.endswith(pattern[1:]):
                return True
        elif pattern.startswith("."):
            if host == pattern[1:] or host.endswith(pattern):
                return True
        elif host == split_host(pattern):
            return True
    return False


class HostAllowlistMiddleware(ASGIMiddleware):
    """Refuses requests whose Host header is not allowed, with a 400 error envelope."""

    scopes = (ScopeType.HTTP,)

    def __init__(self, allowed_hosts: Sequence[str]) -> None:
        self.allowed_hosts = tuple(allowed_hosts)
        self.allow_all = "*" in self.allowed_hosts

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        if self.allow_all or host_allowed(
            Headers.from_scope(scope).get("host", ""), self.allowed_hosts
        ):
            await next_app(scope, receive, send)
            return
        log.warning("http.invalid_host path=%s", loggable(str(scope.get("path", ""))))
        body = error_body(INVALID_HOST, "invalid_host")
        await send(
            {
                "type": "http.response.start",
                "status": 400,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body, "more_body": False})


def route_of(scope: Scope) -> str:
    """The route template that matched (``/api/orgs/{org_id}``), never the raw path: a
    label must not carry ids, and must come from a small, fixed set."""
    template = scope.get("path_template")
    return template if isinstance(template, str) and template else UNMATCHED_ROUTE


class RequestLogMiddleware(ASGIMiddleware):
    """``http.request method=... path=... status=... ms=...``: no query, headers or body.

    Also counts the request in ``telemetry`` (``http_requests`` by method, route template
    and status; ``http_request_seconds`` by method and route template).
    """

    scopes = (ScopeType.HTTP,)

    def __init__(self, telemetry: Telemetry | None = None) -> None:
        self.telemetry: Telemetry = telemetry if telemetry is not None else NullTelemetry()

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        started = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await next_app(scope, receive, send_wrapper)
        finally:
            elapsed = time.perf_counter() - started
            method = str(scope.get("method", "-"))
            log.info(
                "http.request method=%s path=%s status=%d ms=%.1f",
                loggable(method, 20),
                loggable(str(scope.get("path", ""))),
                status,
                elapsed * 1000,
            )
            method = method if method in KNOWN_METHODS else "other"
            route = route_of(scope)
            self.telemetry.count(HTTP_REQUESTS, method=method, route=route, status=str(status))
            self.telemetry.observe(HTTP_REQUEST_SECONDS, elapsed, method=method, route=route)
