"""Where push requests may go, and where their HTTP client comes from.

:func:`parse_endpoint` (before anything is encrypted): the endpoint must be ``https://``,
or ``http://`` on a host covered by ``VIA_RAH_OUTBOUND_ALLOWLIST``; no credentials in the
URL; an IP-literal host is judged at once by the domain's
:class:`~viarah.domain.shared.outbound.OutboundPolicy` (metadata and link-local never,
loopback/private only when allowlisted).

The HTTP client itself is handed in (:class:`AsyncClientSource`): the container passes
the shared guarded clients of ``adapters/outbound``, which resolve each host once, check
every resolved address with the same policy, connect only to a checked address, never
follow redirects and time out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import httpx

from viarah.domain.shared.outbound import (
    ALLOWLIST_VARIABLE,
    OutboundPolicy,
    OutboundRefused,
    normalize_host,
)

#: Pool limits for the push client: fan-out sends up to this many messages at once.
PUSH_LIMITS = httpx.Limits(max_connections=64, max_keepalive_connections=64, keepalive_expiry=30.0)
USER_AGENT = "ViaRah-WebPush"


class AsyncClientSource(Protocol):
    """Where the sender gets the ``httpx.AsyncClient`` of the running event loop; the
    client must enforce the outbound policy, timeouts and no redirects."""

    def client(self) -> httpx.AsyncClient: ...

    async def aclose(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A push resource URL that passed the scheme and literal-address checks."""

    url: str
    origin: str  # scheme://host[:port], the VAPID ``aud``; default port omitted
    host: str  # normalized: lower-case, no brackets


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
    return Endpoint(url=str(url), origin=origin, host=host)
