"""A lean, guarded HTTP/1.1 keep-alive client for high-volume outbound requests (Web Push).

httpx/httpcore cost several milliseconds of CPU per request under fan-out (their pool
re-examines every pooled connection on every request); this client costs a fraction of
that: one ``write`` per request and an incremental response parser on an
:class:`asyncio.Protocol`. It keeps the guarantees of :mod:`.guarded`:

* **Only policy-approved addresses.** A new connection checks the host name with the
  domain's :class:`~viarah.domain.shared.outbound.OutboundPolicy`, resolves it ONCE, checks
  EVERY resolved address (one refused address refuses the call) and connects only to one
  of those checked addresses, never to the name. ``OutboundRefused`` propagates unchanged.
* **TLS** for ``https``: certificate verification with the default trust store
  (``httpx.create_ssl_context()``, the same as the httpx clients) unless a context is
  given, SNI and the certificate's host-name check against the URL's host.
* **Timeouts.** ``connect_timeout`` covers resolution, TCP connect and the TLS handshake;
  ``read_timeout`` covers sending the request and receiving the whole (capped) answer;
  ``pool_timeout`` is the longest wait for a free connection.
* **No redirects** (a 3xx is an answer like any other), no proxies, no ``.netrc``.
* **Keep-alive.** Connections are pooled per (scheme, host, port), at most
  ``max_connections`` each, idle ones reused most-recent-first and dropped after
  ``keepalive_expiry`` (or the server's ``Keep-Alive: timeout=``). A response with
  ``Connection: close``, an HTTP/1.0 answer, a body delimited by the connection's end,
  a body over the cap, or any protocol oddity closes the connection after the answer.
* **Answers:** ``Content-Length`` and ``chunked`` bodies, read up to ``max_body`` bytes
  (the rest is never buffered: the connection is closed instead), interim 1xx answers
  skipped.
* **A server that closed an idle connection.** The request is sent again, once, on a
  fresh connection only when nothing of it can have been processed: the connection was
  reused AND either writing failed or the connection ended before any byte of an answer.
  Any other failure is raised, never retried here.

Errors are httpx's exception types (``ConnectError``, ``ConnectTimeout``, ``ReadTimeout``,
``ReadError``, ``RemoteProtocolError``, ``PoolTimeout``), so callers treat both clients
alike. As with :class:`~.clients.GuardedHttpClients` there is one pool per event loop;
call :meth:`GuardedHttp11Clients.aclose` on each loop before it stops.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import re
import ssl
import threading
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from typing import cast

import httpx

from viarah.adapters.outbound.guarded import (
    Resolver,
    refusals_logged,
    resolve_addresses,
    system_resolver,
)
from viarah.adapters.outbound.http11_parser import Http11Answer, ResponseParser
from viarah.domain.shared.outbound import (
    OutboundPolicy,
)

DEFAULT_MAX_BODY = 64 * 1024
_FORBIDDEN_HEADERS = frozenset(
    {"host", "content-length", "transfer-encoding", "connection", "keep-alive", "upgrade", "te"}
)
_UNSAFE = re.compile(r"[\r\n\x00]")
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_TARGET = re.compile(r"^/[\x21-\x7e]*$")
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_HOST = re.compile(r"^[A-Za-z0-9._~:%-]+$")


class _Stale(Exception):
    """The connection ended (or refused the write) before any byte of an answer."""


# --- connections --------------------------------------------------------------------


class _Connection(asyncio.Protocol):
    """One TCP (or TLS) connection; at most one request in flight."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_until = 0.0
        self._parser: ResponseParser | None = None
        self._waiter: asyncio.Future[Http11Answer] | None = None
        self._answered_any = False

    # asyncio.Protocol callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport, but not always an asyncio.Transport instance: uvloop's
        # (the web process's loop) only quacks like one.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        waiter, parser = self._waiter, self._parser
        if waiter is None or parser is None or waiter.done():
            self.close()  # unsolicited bytes on an idle connection (a 408, garbage)
            return
        self._answered_any = True
        try:
            complete = parser.feed(data)
        except httpx.RemoteProtocolError as exc:
            parser.keep_alive = False
            waiter.set_exception(exc)
            return
        if complete:
            waiter.set_result(parser.answer())

    def eof_received(self) -> bool:
        self._ended(None)
        return False  # let the transport close itself

    def connection_lost(self, exc: Exception | None) -> None:
        self._ended(exc)

    def _ended(self, exc: Exception | None) -> None:
        self.closed = True
        waiter, parser = self._waiter, self._parser
        if waiter is None or waiter.done() or parser is None:
            return
        if parser.feed_eof():
            waiter.set_result(parser.answer())
        elif not self._answered_any:
            waiter.set_exception(_Stale())
        elif exc is not None:
            waiter.set_exception(httpx.ReadError(f"connection lost mid-answer: {exc!r}"))
        else:
            waiter.set_exception(httpx.RemoteProtocolError("server closed mid-answer"))

    # the pool's side

    @property
    def usable(self) -> bool:
        return not self.closed and self.transport is not None and not self.transport.is_closing()

    async def exchange(
        self, payload: bytes, method: str, max_body: int, deadline: float
    ) -> tuple[Http11Answer, bool, int | None]:
        """Send one request and wait for its answer; (answer, reusable, keep-alive s).

        Raises :class:`_Stale` when the connection ended (or the write failed) before
        any byte of an answer arrived, httpx errors otherwise.
        """
        transport = self.transport
        if transport is None or not self.usable:
            raise _Stale
        loop = asyncio.get_running_loop()
        parser = self._parser = ResponseParser(method, max_body)
        waiter = self._waiter = loop.create_future()
        self._answered_any = False
        try:
            transport.write(payload)
        except (OSError, RuntimeError):
            self.close()
            raise _Stale from None
        timer = loop.call_at(deadline, self._time_out, waiter)
        try:
            answer = await waiter
        finally:
            timer.cancel()
            self._waiter = None
            self._parser = None
        return answer, parser.keep_alive and not self.closed, parser.keep_alive_timeout

    @staticmethod
    def _time_out(waiter: asyncio.Future[Http11Answer]) -> None:
        if not waiter.done():
            waiter.set_exception(httpx.ReadTimeout("no complete answer in time"))

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class _TlsContext:
    """The TLS context, built on first use: loading the trust store takes ~20 ms, which
    a process that only ever talks plain http to allowlisted hosts never needs."""

    def __init__(self, context: ssl.SSLContext | None) -> None:
        self._context = context
        self._lock = threading.Lock()

    def get(self) -> ssl.SSLContext:
        if self._context is None:
            with self._lock:
                if self._context is None:
                    self._context = httpx.create_ssl_context()
        return self._context


@dataclass(frozen=True, slots=True)
class _Settings:
    policy: OutboundPolicy
    resolver: Resolver
    tls: _TlsContext
    connect_timeout: float
    read_timeout: float
    pool_timeout: float
    max_connections: int
    keepalive_expiry: float
    max_body: int
    user_agent: str


class _OriginPool:
    """The connections of one event loop to one (scheme, host, port)."""

    def __init__(self, settings: _Settings, scheme: str, host: str, port: int) -> None:
        self._s = settings
        self._scheme, self._host, self._port = scheme, host, port
        shown = f"[{host}]" if ":" in host else host
        authority = shown if port == (443 if scheme == "https" else 80) else f"{shown}:{port}"
        #: The fields every request to this origin starts with.
        self.head_fields = f"Host: {authority}\r\nUser-Agent: {settings.user_agent}\r\n"
        self._idle: list[_Connection] = []  # most recently used last
        self._open = 0  # idle + busy + being opened
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self.closed = False

    @property
    def empty(self) -> bool:
        return self._open == 0 and not self._waiters

    async def request(self, payload: bytes, method: str) -> Http11Answer:
        settings = self._s
        for fresh in (False, True):
            conn = await self._acquire(fresh)
            reused = conn is not None
            if conn is None:
                try:
                    conn = await self._connect()
                except BaseException:
                    self._forget()
                    raise
            deadline = asyncio.get_running_loop().time() + settings.read_timeout
            try:
                answer, reusable, keep_for = await conn.exchange(
                    payload, method, settings.max_body, deadline
                )
            except _Stale:
                self._discard(conn)
                if reused and not fresh:
                    continue  # the server dropped an idle connection: once, on a new one
                raise httpx.RemoteProtocolError(
                    "server disconnected without sending an answer"
                ) from None
            except BaseException:
                self._discard(conn)
                raise
            self._release(conn, reusable, keep_for)
            return answer
        raise AssertionError("unreachable")  # pragma: no cover

    async def _acquire(self, fresh: bool) -> _Connection | None:
        """A reusable idle connection, or None: the caller may open a new one (counted)."""
        loop = asyncio.get_running_loop()
        deadline: float | None = None
        while True:
            if not fresh:
                now = loop.time()
                while self._idle:
                    conn = self._idle.pop()
                    if conn.usable and conn.idle_until > now:
                        return conn
                    self._discard(conn, wake=False)
            if self._open < self._s.max_connections:
                self._open += 1
                return None
            if fresh and self._idle:  # make room for the fresh connection
                self._discard(self._idle.pop(0), wake=False)
                continue
            if deadline is None:
                deadline = loop.time() + self._s.pool_timeout
            waiter: asyncio.Future[None] = loop.create_future()
            self._waiters.append(waiter)
            try:
                async with asyncio.timeout_at(deadline):
                    await waiter
            except TimeoutError:
                raise httpx.PoolTimeout("no free connection in time") from None
            finally:
                if not waiter.done():
                    waiter.cancel()
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)

    def _release(self, conn: _Connection, reusable: bool, keep_for: int | None) -> None:
        if not reusable or self.closed or not conn.usable:
            self._discard(conn)
            return
        expiry = self._s.keepalive_expiry
        if keep_for is not None:
            expiry = min(expiry, keep_for - 1.0)
        if expiry <= 0:
            self._discard(conn)
            return
        conn.idle_until = asyncio.get_running_loop().time() + expiry
        self._idle.append(conn)
        self._wake()

    def _discard(self, conn: _Connection, *, wake: bool = True) -> None:
        conn.close()
        self._forget(wake=wake)

    def _forget(self, *, wake: bool = True) -> None:
        self._open -= 1
        if wake:
            self._wake()

    def _wake(self) -> None:
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)
                return

    async def _connect(self) -> _Connection:
        settings = self._s
        host, port = self._host, self._port
        loop = asyncio.get_running_loop()
        deadline = loop.time() + settings.connect_timeout
        with refusals_logged():
            settings.policy.check_host(host)
            addresses = await self._resolve(deadline)
            for address in addresses:
                settings.policy.check_address(address, host=host)
        tls = settings.tls.get() if self._scheme == "https" else None
        last: Exception | None = None
        for address in addresses:  # only addresses that passed the policy
            conn = _Connection()
            try:
                async with asyncio.timeout_at(deadline):
                    await loop.create_connection(
                        lambda conn=conn: conn,
                        address,
                        port,
                        ssl=tls,
                        server_hostname=host if tls is not None else None,
                    )
            except TimeoutError:
                conn.close()
                raise httpx.ConnectTimeout(f"connecting to {host} timed out") from None
            except (OSError, ssl.SSLError) as exc:
                conn.close()
                last = exc
                continue
            return conn
        raise httpx.ConnectError(f"cannot connect to {host}: {last!r}")

    async def _resolve(self, deadline: float) -> list[str]:
        return await resolve_addresses(
            self._s.resolver,
            self._host,
            self._port,
            max(0.0, deadline - asyncio.get_running_loop().time()),
            timed_out=httpx.ConnectTimeout,
            failed=httpx.ConnectError,
        )

    def close(self) -> None:
        self.closed = True
        while self._idle:
            self._discard(self._idle.pop(), wake=False)
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)


class GuardedHttp11Clients:
    """Guarded, pooled HTTP/1.1 requests with small bodies (see the module docstring).

    ``request`` takes the URL already split (the caller parsed and checked it): ``scheme``
    ``"http"`` or ``"https"``, ``host`` as in the URL (lower-case, IPv6 without
    brackets), ``port``, and ``target`` (path and query, percent-encoded). ``headers``
    must not set ``Host``, ``Content-Length`` or other framing fields (ValueError).
    """

    def __init__(
        self,
        policy: OutboundPolicy,
        *,
        connect_timeout: float = 3.0,
        read_timeout: float = 10.0,
        pool_timeout: float = 5.0,
        max_connections: int = 64,
        keepalive_expiry: float = 30.0,
        max_body: int = DEFAULT_MAX_BODY,
        user_agent: str = "ViaRah",
        ssl_context: ssl.SSLContext | None = None,
        resolver: Resolver = system_resolver,
    ) -> None:
        if min(connect_timeout, read_timeout, pool_timeout) <= 0 or max_connections < 1:
            raise ValueError("timeouts must be positive and max_connections at least 1")
        if _UNSAFE.search(user_agent):
            raise ValueError("user_agent must not contain line breaks")
        self.policy = policy
        self._settings = _Settings(
            policy=policy,
            resolver=resolver,
            tls=_TlsContext(ssl_context),
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            pool_timeout=pool_timeout,
            max_connections=max_connections,
            keepalive_expiry=keepalive_expiry,
            max_body=max_body,
            user_agent=user_agent,
        )
        self._lock = threading.Lock()
        self._checked_names: set[str] = set()  # header names known to be acceptable
        #: The pools of the loop used last (held weakly: a closed loop can still go away).
        self._last: (
            tuple[weakref.ref[asyncio.AbstractEventLoop], dict[tuple[str, str, int], _OriginPool]]
            | None
        ) = None
        self._pools: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, dict[tuple[str, str, int], _OriginPool]
        ] = weakref.WeakKeyDictionary()

    def __repr__(self) -> str:
        s = self._settings
        return (
            f"GuardedHttp11Clients(policy={self.policy!r}, connect_timeout={s.connect_timeout}, "
            f"read_timeout={s.read_timeout}, max_connections={s.max_connections})"
        )

    async def request(
        self,
        method: str,
        scheme: str,
        host: str,
        port: int,
        target: str,
        headers: Mapping[str, str],
        body: bytes = b"",
    ) -> Http11Answer:
        """Send one request and return the answer (redirects are answers too).

        Raises ``OutboundRefused`` when the policy refuses the host or an address it
        resolves to, httpx's ``TransportError`` subclasses for network failures and
        timeouts, ValueError for a request that cannot be written safely.
        """
        loop = asyncio.get_running_loop()
        pools = self._pools_of(loop)
        key = (scheme, host, port)
        pool = pools.get(key)
        if pool is None:
            if scheme not in ("http", "https"):
                raise ValueError(f"unsupported scheme {scheme!r}")
            if not _HOST.match(host):
                raise ValueError("invalid host")
            pool = pools[key] = _OriginPool(self._settings, scheme, host, port)
        payload = self._payload(pool.head_fields, method, target, headers, body)
        try:
            return await pool.request(payload, method)
        finally:
            if pool.empty and pools.get(key) is pool:
                del pools[key]

    def _payload(
        self,
        head_fields: str,
        method: str,
        target: str,
        headers: Mapping[str, str],
        body: bytes,
    ) -> bytes:
        if method not in _METHODS and not _TOKEN.match(method):
            raise ValueError("invalid HTTP method")
        if not _TARGET.match(target):
            raise ValueError("the request target must be an absolute path without spaces")
        lines = [f"{method} {target} HTTP/1.1\r\n{head_fields}"]
        checked = self._checked_names
        for name, value in headers.items():
            if name not in checked:
                if name.lower() in _FORBIDDEN_HEADERS or not _TOKEN.match(name):
                    raise ValueError(f"header {name!r} may not be set by the caller")
                if len(checked) < 256:
                    checked.add(name)
            lines.append(f"{name}: {value}\r\n")
        if _UNSAFE.search("".join(headers.values())):
            raise ValueError("a header value contains a line break or NUL")
        lines.append(f"Content-Length: {len(body)}\r\n\r\n")
        return "".join(lines).encode("latin-1") + body

    def _pools_of(self, loop: asyncio.AbstractEventLoop) -> dict[tuple[str, str, int], _OriginPool]:
        last = self._last
        if last is not None and last[0]() is loop:
            return last[1]
        pools = self._pools.get(loop)
        if pools is None:
            with self._lock:
                pools = self._pools.setdefault(loop, {})
        self._last = (weakref.ref(loop), pools)
        return pools

    async def aclose(self) -> None:
        """Close the running loop's connections (busy ones when their answer is in)."""
        loop = asyncio.get_running_loop()
        with self._lock:
            pools = self._pools.pop(loop, {})
            self._last = None
        for pool in pools.values():
            pool.close()
