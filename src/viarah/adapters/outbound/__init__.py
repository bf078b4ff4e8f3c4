"""Outbound HTTP with the SSRF guard: every connection goes only to an address the
domain's :class:`~viarah.domain.shared.outbound.OutboundPolicy` allows.

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

__all__ = [
    "DEFAULT_LIMITS",
    "DEFAULT_TIMEOUT",
    "GuardedHttpClients",
    "GuardedNetworkBackend",
    "GuardedTransport",
    "Resolver",
    "system_resolver",
]
