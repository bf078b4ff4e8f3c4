"""Helpers for the push adapter tests (importable, unlike conftest fixtures)."""

from __future__ import annotations

import ssl
from typing import Any

from tests.fakes import FakeClock
from tests.fakes.resolver import FakeResolver
from viarah.adapters.outbound.http11 import GuardedHttp11Clients
from viarah.adapters.push import WebPushSender
from viarah.adapters.push.transport import PUSH_MAX_CONNECTIONS
from viarah.domain.notifications.push import PushTarget
from viarah.domain.shared.outbound import OutboundPolicy

SUBJECT = "mailto:push-ops@example.com"
LOOPBACK = ("127.0.0.1",)


def target_of(subscription: dict[str, Any]) -> PushTarget:
    """The domain's view of a browser's ``PushSubscription.toJSON()``."""
    keys = subscription["keys"]
    return PushTarget(subscription["endpoint"], p256dh=keys["p256dh"], auth=keys["auth"])


def make_sender(
    vapid_pair: tuple[str, str],
    clock: FakeClock,
    resolver: FakeResolver,
    allowlist: tuple[str, ...] = (),
    *,
    read_timeout: float = 1.0,
    ssl_context: ssl.SSLContext | None = None,
) -> WebPushSender:
    """A sender with another allowlist (close it with ``await sender.aclose()``).

    Its HTTP client is the same guarded client the container gives it in production.
    """
    policy = OutboundPolicy(allowlist)
    http = GuardedHttp11Clients(
        policy,
        connect_timeout=1.0,
        read_timeout=read_timeout,
        max_connections=PUSH_MAX_CONNECTIONS,
        resolver=resolver,
        ssl_context=ssl_context,
    )
    return WebPushSender(*vapid_pair, SUBJECT, http=http, outbound_allowlist=allowlist, clock=clock)
