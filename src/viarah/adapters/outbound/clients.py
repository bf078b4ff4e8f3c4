"""Shared, guarded ``httpx.AsyncClient`` instances for outbound calls.

One client per event loop, created lazily and thread-safely: an async client's pooled
connections belong to the loop that opened them, and ``viarah serve`` runs the web app
and the worker on different loops of one process. In the usual process with a single
loop this is exactly one shared client. Call :meth:`GuardedHttpClients.aclose` on each
loop before it stops.
"""

from __future__ import annotations

import asyncio
import ssl
import threading
import weakref

import httpx

from viarah.adapters.outbound.guarded import GuardedTransport, Resolver, system_resolver
from viarah.domain.shared.outbound import OutboundPolicy

DEFAULT_TIMEOUT = httpx.Timeout(10.0, connect=3.0, read=10.0, write=10.0, pool=5.0)
DEFAULT_LIMITS = httpx.Limits(
    max_connections=20, max_keepalive_connections=10, keepalive_expiry=30.0
)
DEFAULT_USER_AGENT = "ViaRah"


class GuardedHttpClients:
    """Hands out the guarded client of the running event loop.

    Every client: only policy-approved addresses (see :mod:`.guarded`), redirects never
    followed (a 3xx is returned as is), no proxies or ``.netrc`` from the environment,
    connect 3 s / read 10 s / write 10 s / pool 5 s timeouts unless ``timeout`` says
    otherwise, pooled keep-alive connections.
    """

    def __init__(
        self,
        policy: OutboundPolicy,
        *,
        timeout: httpx.Timeout = DEFAULT_TIMEOUT,
        limits: httpx.Limits = DEFAULT_LIMITS,
        user_agent: str = DEFAULT_USER_AGENT,
        ssl_context: ssl.SSLContext | None = None,
        resolver: Resolver = system_resolver,
    ) -> None:
        self.policy = policy
        self._timeout = timeout
        self._limits = limits
        self._user_agent = user_agent
        self._ssl_context = ssl_context
        self._resolver = resolver
        self._lock = threading.Lock()
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient]
        self._clients = weakref.WeakKeyDictionary()

    def __repr__(self) -> str:
        return f"GuardedHttpClients(policy={self.policy!r}, timeout={self._timeout!r})"

    def client(self) -> httpx.AsyncClient:
        """The running loop's client (created on first use); call from async code only."""
        loop = asyncio.get_running_loop()
        with self._lock:
            client = self._clients.get(loop)
            if client is None or client.is_closed:
                client = self._build()
                self._clients[loop] = client
            return client

    async def aclose(self) -> None:
        """Close the running loop's client and its connections (a later call reopens)."""
        loop = asyncio.get_running_loop()
        with self._lock:
            client = self._clients.pop(loop, None)
        if client is not None:
            await client.aclose()

    def _build(self) -> httpx.AsyncClient:
        transport = GuardedTransport(
            self.policy,
            limits=self._limits,
            ssl_context=self._ssl_context,
            resolver=self._resolver,
        )
        return httpx.AsyncClient(
            transport=transport,
            timeout=self._timeout,
            follow_redirects=False,
            trust_env=False,
            headers={"User-Agent": self._user_agent},
        )
