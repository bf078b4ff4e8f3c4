"""Where push requests may go, and where their HTTP client comes from.

:func:`parse_endpoint` (before anything is encrypted): the endpoint must be ``https://``,
or ``http://`` on a host covered by ``VIA_RAH_OUTBOUND_ALLOWLIST``; no credentials in the
URL; an IP-literal host is judged at once by the domain's
:class:`~viarah.domain.shared.outbound.OutboundPolicy` (metadata and link-local never,
loopback/private only when allowlisted).

The HTTP client itself is handed in (:class:`PushTransport`): the container passes the
lean, guarded HTTP/1.1 keep-alive pool of ``adapters/outbound``
(``GuardedHttp11Clients``), which resolves each host once, checks every resolved address
with the same policy, connects only to a checked address (TLS verified, SNI = host), never
follows redirects, times out and reads at most a capped answer.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

import httpx

from viarah.domain.shared.outbound import (
    ALLOWLIST_VARIABLE,
    OutboundPolicy,
    OutboundRefused,
    normalize_host,
)

#: Connections kept per push-service origin (and event loop): at least the dispatcher's
#: messages in flight, so that none waits for a connection.
PUSH_MAX_CONNECTIONS = 64
USER_AGENT = "ViaRah-WebPush"


class PushAnswer(Protocol):
    """A push service's answer: ``headers`` with lower-case names, ``body`` capped."""

    @property
    def status(self) -> int: ...

    @property
    def reason(self) -> str: ...

    @property
    def headers(self) -> Mapping[str, str]: ...

    @property
    def body(self) -> bytes: ...


class PushTransport(Protocol):
    """Sends one HTTP request; must enforce the outbound policy on every address it
    connects to, time out, never follow redirects and cap the answer it reads. Raises
    ``OutboundRefused`` for a refused host or address, ``httpx.TransportError`` (or
    ``OSError``) for a network failure."""

    async def request(
        self,
        method: str,
        scheme: str,
        host: str,
        port: int,
        target: str,
        headers: Mapping[str, str],
        body: bytes = b"",
    ) -> PushAnswer: ...

    async def aclose(self) -> None:
        """Close the running event loop's connections."""
        ...


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A push resource URL that passed the scheme and literal-address checks."""

    url: str
    origin: str  # scheme://host[:port], the VAPID ``aud``; default port omitted
    host: str  # normalized: lower-case, no brackets
    scheme: str = "https"
    port: int = 443
    target: str = "/"  # path and query, percent-encoded


def parse_endpoint(endpoint: str, policy: OutboundPolicy) -> Endpoint:
    """The endpoint's origin, or :class:`OutboundRefused` saying why it may not be used."""
    try:
        url = httpx.URL(endpoint.strip())
        port = url.port
    except (httpx.InvalidURL, ValueError, TypeError):
        raise OutboundRefused("(invalid URL)", "not a valid push endpoint URL") from None
    scheme = url.scheme
    host = normalize_host(url.raw_host.decode("ascii"))
    if not host or scheme not in ("https", "http"):
        raise OutboundRefused(host or "(no host)", "not an https:// push endpoint")
    if url.userinfo:
        raise OutboundRefused(host, "given with credentials in the URL, which are never sent")
    if scheme == "http" and not policy.host_allowlisted(host):
        raise OutboundRefused(
            host,
            f"a plain http:// endpoint; push endpoints must be https:// unless the host is "
            f"listed in {ALLOWLIST_VARIABLE}",
        )
    policy.check_host(host)  # IP literals: metadata/link-local never, private unless listed
    shown = f"[{host}]" if ":" in host else host
    default = 443 if scheme == "https" else 80
    origin = f"{scheme}://{shown}" if port in (None, default) else f"{scheme}://{shown}:{port}"
    target = url.raw_path.decode("ascii") or "/"
    return Endpoint(
        url=str(url),
        origin=origin,
        host=host,
        scheme=scheme,
        port=port if port is not None else default,
        target=target,
    )


#: ``scheme://authority`` and a path made only of characters a URL parser leaves as they
#: are (no percent-escapes, query or fragment; dot segments are checked apart).
_PLAIN_ENDPOINT = re.compile(r"^(https?://[^/?#\s]+)(/[A-Za-z0-9._~!$&'()*+,;=:@/-]*)$")
MAX_CACHED_ORIGINS = 1024


class EndpointParser:
    """:func:`parse_endpoint` with the origin's checks done once per origin.

    The scheme, host and policy checks depend only on ``scheme://authority`` (and on the
    policy, fixed for the parser's life), so an endpoint whose path needs no normalizing
    reuses the checked origin; any other endpoint is parsed in full. Refusals are never
    cached: a refused origin is parsed (and refused) again on every call.
    """

    def __init__(self, policy: OutboundPolicy) -> None:
        self._policy = policy
        self._origins: dict[str, Endpoint] = {}

    def __call__(self, endpoint: str) -> Endpoint:
        text = endpoint.strip()
        plain = _PLAIN_ENDPOINT.match(text)
        if plain is None or "/." in plain.group(2):  # dot segments: let the parser decide
            return parse_endpoint(text, self._policy)
        prefix, path = plain.groups()
        base = self._origins.get(prefix)
        if base is None:
            base = parse_endpoint(prefix + "/", self._policy)  # OutboundRefused propagates
            if len(self._origins) >= MAX_CACHED_ORIGINS:
                self._origins.clear()
            self._origins[prefix] = base
        return Endpoint(
            url=base.url[:-1] + path,
            origin=base.origin,
            host=base.host,
            scheme=base.scheme,
            port=base.port,
            target=path,
        )
