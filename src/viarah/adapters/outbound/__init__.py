"""Outbound HTTP with the SSRF guard: every connection goes only to an address the
domain's :class:`~viarah.domain.shared.outbound.OutboundPolicy` allows.

Two clients: :class:`GuardedHttpClients` (httpx, for GitLab) and
:class:`GuardedHttp11Clients` (a lean HTTP/1.1 keep-alive pool, for the push fan-out).

Other adapters (GitLab, push) never import this package: the container builds a
:class:`GuardedHttpClients` and hands it to them.
"""

from viarah.adapters.outbound.clients import (
    DEFAULT_LIMITS,
    DEFAULT_TIMEOUT,
    GuardedHttpClients,
)
from viarah.adapters.outbound.guarded import (
    GuardedNetworkBackend,
    GuardedTransport,
    Resolver,
    system_resolver,
)
from viarah.adapters.outbound.http11 import GuardedHttp11Clients
from viarah.adapters.outbound.http11_parser import Http11Answer

__all__ = [
    "DEFAULT_LIMITS",
    "DEFAULT_TIMEOUT",
    "GuardedHttp11Clients",
    "GuardedHttpClients",
    "GuardedNetworkBackend",
    "GuardedTransport",
    "Http11Answer",
    "Resolver",
    "system_resolver",
]
