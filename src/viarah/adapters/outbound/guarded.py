"""An httpx transport that connects only to addresses the outbound policy allows.

How the guard works, and why it resists DNS rebinding:

* httpcore asks its *network backend* for a TCP stream to ``(host, port)``; the
  :class:`GuardedNetworkBackend` answers that call itself: it refuses odd host spellings,
  resolves the name once (``getaddrinfo``), checks EVERY resolved address with the policy
  (one refused address refuses the call: a name that mixes public and internal answers is
  an attack, not a load balancer), and then opens the socket to one of *those checked IP
  addresses* — never to the name, so nothing can resolve it again to something else
  between the check and the connect.
* The HTTP layer above still sees the original origin: the ``Host`` header, the TLS SNI
  and the certificate check use the host name, and the connection pool is keyed by it.
* Redirects are not followed by the clients built in :mod:`.clients`; proxies from the
  environment are never used (this transport has no proxy support at all), so the
  address checked is the address connected to.

Residual risk, documented: a pooled keep-alive connection stays pinned to the address it
was opened to for ``keepalive_expiry`` seconds (that is what pinning means); a host that
is allowlisted *by name* may resolve to any loopback/private address, by design.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import time
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable, Iterator
from typing import Any

import httpcore
import httpx

from viarah.domain.shared.outbound import (
    OutboundPolicy,
    OutboundRefused,
    normalize_host,
    parse_address,
)

log = logging.getLogger("viarah.outbound")


@contextlib.contextmanager
def refusals_logged() -> Iterator[None]:
    """Log an ``OutboundRefused`` raised inside (host, address, why), then let it go on."""
    try:
        yield
    except OutboundRefused as refused:
        log.warning(
            "outbound.refused host=%s address=%s reason=%s",
            refused.host,
            refused.address,
            refused.reason,
        )
        raise


Resolver = Callable[[str, int], Awaitable[list[str]]]


async def resolve_addresses(
    resolver: Resolver,
    host: str,
    port: int,
    limit: float | None,
    *,
    timed_out: type[Exception],
    failed: type[Exception],
) -> list[str]:
    """The addresses of ``host`` (an IP literal is its own address), within ``limit``
    seconds; ``timed_out`` or ``failed`` (the caller's HTTP library's errors) otherwise."""
    try:  # an IP literal needs no lookup
        return [str(parse_address(normalize_host(host)))]
    except ValueError:
        pass
    try:
        addresses = await asyncio.wait_for(resolver(host, port), limit)
    except TimeoutError:
        raise timed_out(f"resolving {host} timed out") from None
    except (OSError, UnicodeError) as exc:
        raise failed(f"cannot resolve {host}: {exc}") from None
    if not addresses:
        raise failed(f"cannot resolve {host}: no address")
    return addresses


"""``(host, port) -> [ip, ...]`` in preference order; raises ``OSError`` when unresolvable."""


async def system_resolver(host: str, port: int) -> list[str]:
    """The system's resolver (``getaddrinfo`` in a worker thread), duplicates removed."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


class GuardedNetworkBackend(httpcore.AsyncNetworkBackend):
    """Resolves, checks every address, then connects to a checked address (pinned).

    Raises :class:`OutboundRefused` (unchanged, through httpx) when the policy refuses the
    host or any address it resolves to; ``httpcore.ConnectError``/``ConnectTimeout`` when
    the name does not resolve or no address answers in time.
    """

    def __init__(
        self,
        policy: OutboundPolicy,
        *,
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
        with refusals_logged():
            self._policy.check_host(host)
            addresses = await self._resolve(host, port, timeout)
            for address in addresses:
                self._policy.check_address(address, host=host)
        last_error: Exception | None = None
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
                last_error = exc
                if deadline is not None and time.monotonic() >= deadline:
                    break
        assert last_error is not None  # addresses is never empty
        raise last_error

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's signature
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise OutboundRefused(path, "a Unix socket, which outbound calls never use")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)

    async def _resolve(self, host: str, port: int, limit: float | None) -> list[str]:
        return await resolve_addresses(
            self._resolver,
            host,
            port,
            limit,
            timed_out=httpcore.ConnectTimeout,
            failed=httpcore.ConnectError,
        )


# Most specific first: the first match wins.
_EXCEPTIONS: tuple[tuple[type[Exception], type[httpx.TransportError]], ...] = (
    (httpcore.ConnectTimeout, httpx.ConnectTimeout),
    (httpcore.ReadTimeout, httpx.ReadTimeout),
    (httpcore.WriteTimeout, httpx.WriteTimeout),
    (httpcore.PoolTimeout, httpx.PoolTimeout),
    (httpcore.TimeoutException, httpx.TimeoutException),
    (httpcore.ConnectError, httpx.ConnectError),
    (httpcore.ReadError, httpx.ReadError),
    (httpcore.WriteError, httpx.WriteError),
    (httpcore.NetworkError, httpx.NetworkError),
    (httpcore.ProxyError, httpx.ProxyError),
    (httpcore.UnsupportedProtocol, httpx.UnsupportedProtocol),
    (httpcore.LocalProtocolError, httpx.LocalProtocolError),
    (httpcore.RemoteProtocolError, httpx.RemoteProtocolError),
    (httpcore.ProtocolError, httpx.ProtocolError),
)


@contextlib.contextmanager
def _httpx_errors() -> Iterator[None]:
    """httpcore's exceptions as the httpx ones callers catch (``httpx.TransportError``)."""
    try:
        yield
    except Exception as exc:
        for source, target in _EXCEPTIONS:
            if isinstance(exc, source):
                raise target(str(exc)) from exc
        raise


class _ResponseStream(httpx.AsyncByteStream):
    def __init__(self, stream: AsyncIterable[bytes]) -> None:
        self._stream = stream

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _httpx_errors():
            async for part in self._stream:
                yield part

    async def aclose(self) -> None:
        close = getattr(self._stream, "aclose", None)
        if close is not None:
            with _httpx_errors():
                await close()


class GuardedTransport(httpx.AsyncBaseTransport):
    """httpx's pooled HTTP/1.1 transport on a :class:`GuardedNetworkBackend`.

    Built on httpcore's public API only (``AsyncConnectionPool(network_backend=...)``),
    so an httpx upgrade cannot silently drop the guard.
    """

    def __init__(
        self,
        policy: OutboundPolicy,
        *,
        limits: httpx.Limits,
        ssl_context: ssl.SSLContext | None = None,
        resolver: Resolver = system_resolver,
    ) -> None:
        context = ssl_context if ssl_context is not None else httpx.create_ssl_context()
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=context,
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            http1=True,
            http2=False,
            network_backend=GuardedNetworkBackend(policy, resolver=resolver),
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request`` through the guarded pool; errors come out as httpx's."""
        assert isinstance(request.stream, httpx.AsyncByteStream)
        core_request = httpcore.Request(
            method=request.method,
            url=httpcore.URL(
                scheme=request.url.raw_scheme,
                host=request.url.raw_host,
                port=request.url.port,
                target=request.url.raw_path,
            ),
            headers=request.headers.raw,
            content=request.stream,
            extensions=request.extensions,
        )
        with _httpx_errors():
            response = await self._pool.handle_async_request(core_request)
        assert isinstance(response.stream, AsyncIterable)
        return httpx.Response(
            status_code=response.status,
            headers=response.headers,
            stream=_ResponseStream(response.stream),
            extensions=response.extensions,
        )

    async def aclose(self) -> None:
        """Close every pooled connection."""
        with _httpx_errors():
            await self._pool.aclose()
