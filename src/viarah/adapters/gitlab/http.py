"""``HttpxGitLabClient``: the domain's ``GitLabClient`` port over GitLab's REST API v4.

The HTTP client comes from outside (the container passes the shared, SSRF-guarded
``GuardedHttpClients`` of ``adapters/outbound``); this module knows GitLab, not sockets.

Failures become ``GitLabCallFailed`` with the codes documented on it. The token travels
only in the ``PRIVATE-TOKEN`` header: it is never part of a URL, an exception message, a
log line or a repr (messages built from lower layers are redacted as a last resort).
"""

from __future__ import annotations

import json
import logging
import re
import time
from typing import Any, NoReturn, Protocol
from urllib.parse import quote, urlsplit

import httpx

from viarah.adapters.gitlab.parsing import (
    parse_object,
    parse_retry_after,
    parse_token_info,
    parse_user,
)
from viarah.domain.gitlab.client import GitLabCallFailed, GitLabObject, GitLabUser, TokenInfo
from viarah.domain.gitlab.urls import GitLabRef
from viarah.domain.shared.clock import Clock, SystemClock
from viarah.domain.shared.outbound import OutboundRefused
from viarah.domain.shared.telemetry import (
    GITLAB_CALL_SECONDS,
    GITLAB_CALLS,
    NullTelemetry,
    Telemetry,
)

log = logging.getLogger("viarah.gitlab.http")

API_PREFIX = "/api/v4"
MAX_BODY_BYTES = 2 * 1024 * 1024
# GitLab tokens are printable ASCII without spaces (glpat-..., gloas-..., legacy 20 chars).
_TOKEN = re.compile(r"^[\x21-\x7e]{1,1024}$")


class AsyncClientSource(Protocol):
    """Where the adapter gets its ``httpx.AsyncClient`` (the running loop's shared one)."""

    def client(self) -> httpx.AsyncClient:
        """The client to use now; it must enforce the outbound policy and timeouts."""
        ...


def _redact(text: str, token: str) -> str:
    return text.replace(token, "***") if token else text


class HttpxGitLabClient:
    """Calls one GitLab instance per call (``base_url``) with a personal/project token.

    ``http`` supplies the guarded client (redirects are never followed, so a 3xx is
    reported as ``http_3xx``); ``clock`` dates HTTP-date ``Retry-After`` values;
    ``max_body_bytes`` bounds what a misbehaving server can make us read. Every call is
    counted in ``telemetry`` (``gitlab_calls`` by call and outcome: ``ok`` or the failure
    code) with its duration (``gitlab_call_seconds``).
    """

    def __init__(
        self,
        http: AsyncClientSource,
        *,
        clock: Clock | None = None,
        max_body_bytes: int = MAX_BODY_BYTES,
        telemetry: Telemetry | None = None,
    ) -> None:
        self._http = http
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._max_body_bytes = max_body_bytes
        self._telemetry: Telemetry = telemetry if telemetry is not None else NullTelemetry()

    def __repr__(self) -> str:
        return f"HttpxGitLabClient(http={self._http!r})"

    async def fetch_object(self, base_url: str, token: str, ref: GitLabRef) -> GitLabObject:
        """``GET /api/v4/projects/:path/(issues|merge_requests)/:iid``."""
        project = quote(ref.project_path, safe="")
        path = f"{API_PREFIX}/projects/{project}/{ref.kind.api_collection}/{ref.iid}"
        call = ref.kind.api_collection.removesuffix("s")  # issue | merge_request
        return parse_object(await self._call(call, base_url, token, path), ref)

    async def current_user(self, base_url: str, token: str) -> GitLabUser:
        """``GET /api/v4/user`` — proves the token works."""
        return parse_user(await self._call("user", base_url, token, f"{API_PREFIX}/user"))

    async def token_info(self, base_url: str, token: str) -> TokenInfo:
        """``GET /api/v4/personal_access_tokens/self`` — scopes and expiry."""
        path = f"{API_PREFIX}/personal_access_tokens/self"
        return parse_token_info(await self._call("token_info", base_url, token, path))

    async def _call(self, call: str, base_url: str, token: str, path: str) -> Any:
        """``_get_json``, counted and timed under ``call`` (a fixed word, never the path)."""
        started = time.perf_counter()
        try:
            data = await self._get_json(base_url, token, path)
        except GitLabCallFailed as exc:
            self._measure(call, exc.code, started)
            raise
        self._measure(call, "ok", started)
        return data

    def _measure(self, call: str, outcome: str, started: float) -> None:
        self._telemetry.count(GITLAB_CALLS, call=call, outcome=outcome)
        self._telemetry.observe(GITLAB_CALL_SECONDS, time.perf_counter() - started, call=call)

    async def _get_json(self, base_url: str, token: str, path: str) -> Any:
        if not token or not _TOKEN.match(token):
            self._fail(
                base_url,
                path,
                "auth_error",
                "the GitLab token is empty or contains characters GitLab never issues "
                "(spaces, line breaks, non-ASCII); set the token again",
            )
        host = urlsplit(base_url).hostname or base_url
        url = base_url.rstrip("/") + path
        headers = {"PRIVATE-TOKEN": token, "Accept": "application/json"}
        try:
            async with self._http.client().stream("GET", url, headers=headers) as response:
                if not 200 <= response.status_code < 300:
                    self._status_failure(base_url, path, response)
                body = await self._read_body(response, base_url, path)
        except GitLabCallFailed:
            raise
        except OutboundRefused as exc:
            self._fail(base_url, path, "network_error", exc.message)
        except httpx.TimeoutException as exc:
            phase = type(exc).__name__.removesuffix("Timeout").lower() or "request"
            self._fail(
                base_url, path, "network_error", f"GitLab at {host} timed out ({phase} timeout)"
            )
        except httpx.InvalidURL as exc:
            self._fail(base_url, path, "network_error", f"{_redact(str(exc), token)} ({host})")
        except httpx.DecodingError:
            self._fail(base_url, path, "bad_response", "GitLab sent a body that cannot be decoded")
        except httpx.HTTPError as exc:
            detail = _redact(str(exc), token) or type(exc).__name__
            self._fail(base_url, path, "network_error", f"cannot reach GitLab at {host}: {detail}")
        try:
            data = json.loads(body)
        except ValueError:
            self._fail(base_url, path, "bad_response", f"GitLab at {host} did not answer JSON")
        log.debug("gitlab.call host=%s path=%s status=ok", host, path)
        return data

    async def _read_body(self, response: httpx.Response, base_url: str, path: str) -> bytes:
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            if size > self._max_body_bytes:
                self._fail(
                    base_url,
                    path,
                    "bad_response",
                    f"GitLab's answer is larger than {self._max_body_bytes} bytes",
                )
            chunks.append(chunk)
        return b"".join(chunks)

    def _status_failure(self, base_url: str, path: str, response: httpx.Response) -> NoReturn:
        status = response.status_code
        host = urlsplit(base_url).hostname or base_url
        answered = f"GitLab at {host} answered {status} {response.reason_phrase}".rstrip()
        if status in (401, 403):
            self._fail(
                base_url,
                path,
                "auth_error",
                f"{answered}: the token is invalid, expired, revoked or lacks the read_api scope",
                status=status,
            )
        if status == 404:
            self._fail(
                base_url,
                path,
                "not_found",
                f"{answered}: it does not exist or the token cannot see it",
                status=status,
            )
        if status == 429:
            retry_after = parse_retry_after(
                response.headers.get("Retry-After"),
                response.headers.get("RateLimit-Reset"),
                self._clock.now(),
            )
            wait = "" if retry_after is None else f"; retry after {retry_after:g} s"
            self._fail(
                base_url,
                path,
                "rate_limited",
                f"{answered}: rate limited{wait}",
                status=status,
                retry_after=retry_after,
            )
        if 300 <= status < 400:
            self._fail(
                base_url,
                path,
                f"http_{status}",
                f"{answered}: a redirect, which is never followed (check the base URL)",
                status=status,
            )
        self._fail(base_url, path, f"http_{status}", answered, status=status)

    @staticmethod
    def _fail(
        base_url: str,
        path: str,
        code: str,
        message: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> NoReturn:
        host = urlsplit(base_url).hostname or base_url
        log.warning(
            "gitlab.call_failed host=%s path=%s code=%s status=%s", host, path, code, status
        )
        raise GitLabCallFailed(
            code, f"{message} (GET {path})", status=status, retry_after=retry_after
        ) from None
