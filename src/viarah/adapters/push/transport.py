"""Where push requests may go, and the pooled HTTP clients that take them there.

* :func:`parse_endpoint` (before anything is encrypted): the endpoint must be
  ``https://``, or ``http://`` on a host covered by ``VIA_RAH_OUTBOUND_ALLOWLIST``; no
  credentials in the URL; an IP-literal host is judged at once by the domain's
  :class:`~viarah.domain.shared.outbound.OutboundPolicy` (metadata and link-local never,
  loopback/private only when allowlisted).
* :class:`PushClients` (when the container does not hand over a shared guarded client):
  one pooled ``httpx.AsyncClient`` per event loop, redirects never followed, no proxies
  from the environment, and a network backend that resolves the host ONCE, checks every
  resolved address with the policy and connects to one of those checked addresses (so a
  DNS answer that changes between the check and the connect cannot reach a refused
  address). A refusal surfaces as :class:`OutboundRefused`, unchanged through httpx.

TODO(outbound): this backend mirrors ``adapters/outbound/guarded.py``, which adapters may
not import; when the container passes ``GuardedHttpClients`` as ``http=`` to the sender,
that shared guard is used instead and this one is idle.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
import time
import weakref
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

import httpcore
import httpx

from viarah.domain.shared.outbound import (
    ALLOWLIST_VARIABLE,
    OutboundPolicy,
    OutboundRefused,
    normalize_host,
    parse_address,
)

DEFAULT_LIMITS = httpx.Limits(
    max_connections=64, max_keepalive_connections=32, keepalive_expiry=30.0
)
USER_AGENT = "ViaRah-WebPush"

Resolver = Callable[[str, int], Awaitable[list[str]]]
"""``(host, port) -> [ip, ...]``; raises ``OSError`` when the name does not resolve."""


class AsyncClientSource(Protocol):
    """Where the sender gets the ``httpx.AsyncClient`` of the running event loop; the
    client must enforce the outbound policy, timeouts and no redirects."""

    def client(self) -> httpx.AsyncClient: ...


async def system_resolver(host: str, port: int) -> list[str]:
    """``getaddrinfo`` (in the loop's executor), duplicates removed, order kept."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


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


class CheckedNetworkBackend(httpcore.AsyncNetworkBackend):
    """Resolves once, checks EVERY address with the policy, connects to a checked one."""

    def __init__(
        self,
        policy: OutboundPolicy,
        resolver: Resolver = system_resolver,
        inner: httpcore.AsyncNetworkBackend | None = None,
    ) -> None:
        self._policy = policy
        self._resolver = resolver
        self._inner = inner if inner is not None else httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's signature
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        deadline = None if timeout is None else time.monotonic() + timeout
        self._policy.check_host(host)
        addresses = await self._resolve(host, port, timeout)
        for address in addresses:  # one refused address refuses the name (rebinding)
            self._policy.check_address(address, host=host)
        error: Exception = httpcore.ConnectError(f"cannot connect to {host}")
        for address in addresses:
            remaining = None if deadline is None else max(deadline - time.monotonic(), 0.001)
            try:
                return await self._inner.connect_tcp(
                    address,
                    port,
                    timeout=remaining,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                error = exc
                if deadline is not None and time.monotonic() >= deadline:
                    break
        raise error

    async def _resolve(self, host: str, port: int, limit: float | None) -> list[str]:
        try:
            return [str(parse_address(host))]  # an IP literal: nothing to resolve
        except ValueError:
            pass
        try:
            addresses = await asyncio.wait_for(self._resolver(host, port), limit)
        except TimeoutError:
            raise httpcore.ConnectTimeout(f"resolving {host} timed out") from None
        except (OSError, UnicodeError):
            raise httpcore.ConnectError(f"cannot resolve {host}") from None
        if not addresses:
            raise httpcore.ConnectError(f"cannot resolve {host}: no address")
        return addresses

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's signature
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise OutboundRefused(path, "a Unix socket, which push never uses")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class _CheckedTransport(httpx.AsyncHTTPTransport):
    """httpx's own transport (its exception mapping, HTTP/1.1 pooling) over a connection
    pool whose network backend is :class:`CheckedNetworkBackend`. The pool, not the URL,
    carries the host name, so Host, TLS SNI and certificate checks stay on the name."""

    def __init__(
        self,
        backend: CheckedNetworkBackend,
        limits: httpx.Limits,
        ssl_context: ssl.SSLContext | None,
    ) -> None:
        context = (
            ssl_context if ssl_context is not None else httpx.create_ssl_context(trust_env=False)
        )
        super().__init__(verify=context, limits=limits, trust_env=False, retries=0)
        self._pool = httpcore.AsyncConnectionPool(  # private in httpx, stable since 0.18
            ssl_context=context,
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            http1=True,
            http2=False,
            retries=0,
            network_backend=backend,
        )


class PushClients:
    """One pooled, policy-checked client per event loop (created lazily, thread-safe).

    Async clients belong to the loop that opened their connections, and ``viarah serve``
    runs the web app and the worker on different loops of one process; in a process with
    a single loop this is exactly one shared client. Call :meth:`aclose` on each loop
    before it stops.
    """

    def __init__(
        self,
        policy: OutboundPolicy,
        *,
        timeout: httpx.Timeout,
        limits: httpx.Limits = DEFAULT_LIMITS,
        resolver: Resolver = system_resolver,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._policy = policy
        self._timeout = timeout
        self._limits = limits
        self._resolver = resolver
        self._ssl_context = ssl_context
        self._lock = threading.Lock()
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient]
        self._clients = weakref.WeakKeyDictionary()

    def __repr__(self) -> str:
        return f"PushClients(policy={self._policy!r}, timeout={self._timeout!r})"

    def client(self) -> httpx.AsyncClient:
        """The running loop's client; call from async code only."""
        loop = asyncio.get_running_loop()
        with self._lock:
            client = self._clients.get(loop)
            if client is None or client.is_closed:
                client = self._build()
                self._clients[loop] = client
            return client

    async def aclose(self) -> None:
        """Close the running loop's client and its connections (a later send reopens)."""
        loop = asyncio.get_running_loop()
        with self._lock:
            client = self._clients.pop(loop, None)
        if client is not None:
            await client.aclose()

    def _build(self) -> httpx.AsyncClient:
        backend = CheckedNetworkBackend(self._policy, self._resolver)
        return httpx.AsyncClient(
            transport=_CheckedTransport(backend, self._limits, self._ssl_context),
            timeout=self._timeout,
            follow_redirects=False,
            trust_env=False,
            headers={"User-Agent": USER_AGENT},
        )
