"""Who is calling: cookie sessions (with CSRF protection) and bearer API tokens.

The guard :func:`authenticate` runs before the request body is read, so a caller without
valid credentials gets 401 before any validation error. Route handlers opt out with
``opt={"public": True}`` and restrict themselves to cookie sessions with
``opt={"session_only": True}``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from litestar import Response
from litestar.connection import ASGIConnection
from litestar.datastructures import Cookie
from litestar.handlers import BaseRouteHandler

from viarah.domain.identity.services import OpenedSession
from viarah.domain.shared.actor import Actor
from viarah.domain.shared.errors import Forbidden, Unauthenticated
from viarah.entrypoints.web.deps import ACTOR_KEY, container_of, settings_of

SESSION_COOKIE = "viarah_session"
CSRF_COOKIE = "viarah_csrf"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
READ_SCOPE_METHODS = frozenset({"GET", "HEAD"})

CREDENTIALS_REQUIRED = "authentication required: log in or send an API token"
BAD_AUTHORIZATION = "the Authorization header must be 'Bearer vrak_<prefix>.<secret>'"
CSRF_FAILED = "CSRF token missing or incorrect"
ORIGIN_REFUSED = "the request's Origin is not allowed to make cookie-authenticated changes"
READ_SCOPE = "this API token has read scope; use a write-scope token to change data"
SESSION_ONLY = "this endpoint needs a login session; API tokens cannot use it"


def _method(connection: ASGIConnection[Any, Any, Any, Any]) -> str:
    return str(connection.scope.get("method", "GET")).upper()


def _host_header(connection: ASGIConnection[Any, Any, Any, Any]) -> str:
    return connection.headers.get("host", "").strip().lower()


_DEFAULT_PORTS = {"http": ":80", "https": ":443"}


def _without_default_port(scheme: str, netloc: str) -> str:
    port = _DEFAULT_PORTS.get(scheme)
    return netloc[: -len(port)] if port and netloc.endswith(port) else netloc


def origin_allowed(origin: str, *, scheme: str, host: str, trusted: Sequence[str]) -> bool:
    """True when ``origin`` is this server's own origin or a trusted one.

    Our own origin is the request's scheme and Host; an ``https`` origin on the same Host
    is also ours (TLS ends at a reverse proxy, the app sees plain http).
    """
    origin = origin.strip().lower().rstrip("/")
    if origin in {t.strip().lower().rstrip("/") for t in trusted}:
        return True
    parts = urlsplit(origin)
    if not host or parts.path or parts.query or parts.scheme not in _DEFAULT_PORTS:
        return False
    if parts.scheme != scheme.lower() and parts.scheme != "https":
        return False
    own = _without_default_port(parts.scheme, host.lower())
    return _without_default_port(parts.scheme, parts.netloc) == own


def check_origin(connection: ASGIConnection[Any, Any, Any, Any]) -> None:
    """Forbidden when an ``Origin`` header names a foreign origin."""
    origin = connection.headers.get("origin")
    if origin is None:
        return
    settings = settings_of(connection.app.state)
    if not origin_allowed(
        origin,
        scheme=connection.url.scheme,
        host=_host_header(connection),
        trusted=settings.csrf_trusted_origins,
    ):
        raise Forbidden(ORIGIN_REFUSED, code="csrf_failed")


async def _bearer_actor(
    connection: ASGIConnection[Any, Any, Any, Any], authorization: str, session_only: bool
) -> Actor:
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated(BAD_AUTHORIZATION)
    authentication = container_of(connection.app.state).authentication()
    actor: Actor = await authentication.from_api_token(token.strip())
    if session_only:
        raise Forbidden(SESSION_ONLY)
    if not actor.can_write and _method(connection) not in READ_SCOPE_METHODS:
        raise Forbidden(READ_SCOPE, code="read_scope")
    return actor


async def _session_actor(connection: ASGIConnection[Any, Any, Any, Any]) -> Actor:
    cookie = connection.cookies.get(SESSION_COOKIE)
    if not cookie:
        raise Unauthenticated(CREDENTIALS_REQUIRED)
    authentication = container_of(connection.app.state).authentication()
    actor, session = await authentication.from_session(cookie)
    if _method(connection) not in SAFE_METHODS:
        check_origin(connection)
        if not session.csrf_matches(connection.headers.get(CSRF_HEADER)):
            raise Forbidden(CSRF_FAILED, code="csrf_failed")
    return actor


async def authenticate(
    connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler
) -> None:
    """Guard: resolve the caller into an :class:`Actor` on the request state, or refuse.

    ``Authorization: Bearer`` wins over a session cookie when both are sent. ``OPTIONS``
    (answered by litestar with the allowed methods) needs no credentials.
    """
    method = _method(connection)
    if method == "OPTIONS":
        return
    if handler.opt.get("public"):
        if method not in SAFE_METHODS:
            check_origin(connection)
        return
    session_only = bool(handler.opt.get("session_only"))
    authorization = connection.headers.get("authorization")
    if authorization is not None:
        actor = await _bearer_actor(connection, authorization, session_only)
    else:
        actor = await _session_actor(connection)
    connection.state[ACTOR_KEY] = actor


def _cookie(key: str, value: str, *, secure: bool, http_only: bool, max_age: int) -> Cookie:
    return Cookie(
        key=key,
        value=value,
        path="/",
        max_age=max_age,
        secure=secure,
        httponly=http_only,
        samesite="lax",
    )


def set_session_cookies(
    response: Response[Any], opened: OpenedSession, *, secure: bool, now: datetime
) -> None:
    """The HttpOnly session cookie and the script-readable CSRF cookie, plus the header."""
    max_age = max(0, int((opened.session.expires_at - now).total_seconds()))
    response.set_cookie(
        _cookie(SESSION_COOKIE, opened.cookie_value, secure=secure, http_only=True, max_age=max_age)
    )
    response.set_cookie(
        _cookie(
            CSRF_COOKIE, opened.session.csrf_token, secure=secure, http_only=False, max_age=max_age
        )
    )
    response.headers[CSRF_HEADER] = opened.session.csrf_token


def clear_session_cookies(response: Response[Any], *, secure: bool) -> None:
    """Tell the browser to forget both cookies."""
    for key, http_only in ((SESSION_COOKIE, True), (CSRF_COOKIE, False)):
        response.set_cookie(_cookie(key, "", secure=secure, http_only=http_only, max_age=0))
