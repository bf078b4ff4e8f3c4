"""The lean HTTP/1.1 client (push's transport) against real local servers: the outbound
guard, TLS, keep-alive, framing, caps, timeouts and the one resend after a server closed
an idle connection."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import httpx
import pytest
import uvloop

from tests.fakes.resolver import FakeResolver
from tests.gitlab_fake import self_signed_tls
from viarah.adapters.outbound.http11 import GuardedHttp11Clients
from viarah.domain.shared.outbound import OutboundPolicy, OutboundRefused

LOOPBACK = OutboundPolicy(["127.0.0.1"])
OK = b"HTTP/1.1 201 Created\r\nLocation: /m/1\r\nContent-Length: 0\r\n\r\n"


@dataclass
class Seen:
    """One request as the server read it."""

    connection: int  # 0, 1, ... in accept order
    head: bytes
    body: bytes


# What the server does with one request: bytes to send, then "keep" (read the next
# request), "close" (close the connection) or "hang" (send nothing more, stay open).
Action = tuple[bytes, str]
Script = Callable[[Seen, int], Action]  # (request, index of the request on its connection)


@dataclass
class RawServer:
    """A TCP (optionally TLS) server on 127.0.0.1 that answers with scripted raw bytes."""

    script: Script
    tls: ssl.SSLContext | None = None
    seen: list[Seen] = field(default_factory=list)
    connections: int = 0
    sni: list[str | None] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        self._stop = threading.Event()
        self._open: list[socket.socket] = []
        if self.tls is not None:
            self.tls.sni_callback = lambda _s, name, _c: self.sni.append(name)  # type: ignore[assignment]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            number = self.connections
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn, number), daemon=True).start()

    def _serve(self, conn: socket.socket, number: int) -> None:
        self._open.append(conn)
        try:
            if self.tls is not None:
                conn = self.tls.wrap_socket(conn, server_side=True)
                self._open.append(conn)
            buffer = b""
            index = 0
            while True:
                while b"\r\n\r\n" not in buffer:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buffer += data
                head, _, buffer = buffer.partition(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                while len(buffer) < length:
                    buffer += conn.recv(65536)
                request = Seen(number, head, buffer[:length])
                buffer = buffer[length:]
                self.seen.append(request)
                answer, then = self.script(request, index)
                index += 1
                if answer:
                    conn.sendall(answer)
                if then == "close":
                    return
                if then == "hang":
                    self._stop.wait(30)
                    return
        except OSError:
            return
        finally:
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._sock.close()
        for conn in self._open:
            with contextlib.suppress(OSError):
                conn.close()


@pytest.fixture
def serve() -> Iterator[Callable[..., RawServer]]:
    servers: list[RawServer] = []

    def start(script: Script, tls: ssl.SSLContext | None = None) -> RawServer:
        server = RawServer(script, tls)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


def always(answer: bytes, then: str = "keep") -> Script:
    return lambda _request, _index: (answer, then)


def client(policy: OutboundPolicy = LOOPBACK, **options: object) -> GuardedHttp11Clients:
    options.setdefault("connect_timeout", 2.0)
    options.setdefault("read_timeout", 2.0)
    return GuardedHttp11Clients(policy, **options)  # type: ignore[arg-type]


async def post(
    http: GuardedHttp11Clients,
    port: int,
    body: bytes = b"hello",
    *,
    host: str = "127.0.0.1",
    scheme: str = "http",
    headers: dict[str, str] | None = None,
):  # type: ignore[no-untyped-def]
    return await http.request("POST", scheme, host, port, "/push/abc?x=1", headers or {}, body)


# --- the request on the wire and keep-alive ------------------------------------------


async def test_one_connection_serves_many_requests_and_the_request_is_well_formed(
    serve: Callable[..., RawServer],
) -> None:
    server = serve(always(OK))
    http = client(user_agent="ViaRah-Test")

    answers = [await post(http, server.port, b"m%d" % n, headers={"TTL": "60"}) for n in range(5)]
    await http.aclose()

    assert [a.status for a in answers] == [201] * 5
    assert answers[0].reason == "Created"
    assert answers[0].headers["location"] == "/m/1"
    assert server.connections == 1
    head = server.seen[0].head.decode()
    lines = head.split("\r\n")
    assert lines[0] == "POST /push/abc?x=1 HTTP/1.1"
    assert f"Host: 127.0.0.1:{server.port}" in lines
    assert "User-Agent: ViaRah-Test" in lines
    assert "TTL: 60" in lines
    assert "Content-Length: 2" in lines
    assert [s.body for s in server.seen] == [b"m0", b"m1", b"m2", b"m3", b"m4"]


async def test_concurrent_requests_open_at_most_max_connections(
    serve: Callable[..., RawServer],
) -> None:
    def slow(_request: Seen, _index: int) -> Action:
        time.sleep(0.05)
        return OK, "keep"

    server = serve(slow)
    http = client(max_connections=3)

    answers = await asyncio.gather(*(post(http, server.port) for _ in range(12)))
    await http.aclose()

    assert all(a.status == 201 for a in answers)
    assert server.connections == 3
    assert len(server.seen) == 12


@pytest.mark.parametrize(
    "header", ["Host", "Content-Length", "Transfer-Encoding", "Connection", "Bad Name"]
)
async def test_framing_headers_cannot_be_set_by_the_caller(
    serve: Callable[..., RawServer], header: str
) -> None:
    server = serve(always(OK))
    with pytest.raises(ValueError, match="may not be set"):
        await post(client(), server.port, headers={header: "x"})
    assert server.connections == 0


async def test_header_values_with_line_breaks_are_refused(serve: Callable[..., RawServer]) -> None:
    server = serve(always(OK))
    with pytest.raises(ValueError, match="line break"):
        await post(client(), server.port, headers={"Topic": "a\r\nX-Injected: 1"})
    assert server.connections == 0


# --- answers: framing, caps, interim answers -------------------------------------------


async def test_a_content_length_body_is_read_exactly_and_the_connection_reused(
    serve: Callable[..., RawServer],
) -> None:
    body = b'{"error": "nope"}'
    answer = b"HTTP/1.1 400 Bad Request\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    server = serve(always(answer))
    http = client()

    first = await post(http, server.port)
    second = await post(http, server.port)
    await http.aclose()

    assert first.status == second.status == 400
    assert first.body == second.body == body
    assert server.connections == 1


async def test_a_chunked_body_with_extensions_and_trailers_is_decoded(
    serve: Callable[..., RawServer],
) -> None:
    answer = (
        b"HTTP/1.1 429 Too Many Requests\r\nTransfer-Encoding: chunked\r\nRetry-After: 30\r\n\r\n"
        b"5;ext=1\r\nhello\r\n7\r\n, world\r\n0\r\nX-Trailer: yes\r\n\r\n"
    )
    server = serve(always(answer))
    http = client()

    first = await post(http, server.port)
    second = await post(http, server.port)
    await http.aclose()

    assert first.status == 429
    assert first.headers["retry-after"] == "30"
    assert first.body == second.body == b"hello, world"
    assert server.connections == 1  # fully read: the connection was reused


@pytest.mark.parametrize("chunked", [False, True])
async def test_a_huge_body_is_capped_and_its_connection_not_reused(
    serve: Callable[..., RawServer], chunked: bool
) -> None:
    big = b"x" * 300_000
    if chunked:
        answer = b"HTTP/1.1 500 Oops\r\nTransfer-Encoding: chunked\r\n\r\n"
        answer += b"".join(b"%x\r\n%s\r\n" % (10_000, big[:10_000]) for _ in range(30))
        answer += b"0\r\n\r\n"
    else:
        answer = b"HTTP/1.1 500 Oops\r\nContent-Length: %d\r\n\r\n%s" % (len(big), big)
    server = serve(always(answer))
    http = client(max_body=4096)

    first = await post(http, server.port)
    second = await post(http, server.port)
    await http.aclose()

    assert first.status == 500
    assert first.body == b"x" * 4096
    assert first.truncated
    assert second.body == b"x" * 4096
    assert server.connections == 2  # the rest was never read: a new connection


async def test_a_body_delimited_by_the_connection_end_is_read_to_it(
    serve: Callable[..., RawServer],
) -> None:
    server = serve(always(b"HTTP/1.1 502 Bad Gateway\r\n\r\nupstream died", then="close"))
    http = client()

    first = await post(http, server.port)
    second = await post(http, server.port)
    await http.aclose()

    assert first.status == 502
    assert first.body == second.body == b"upstream died"
    assert server.connections == 2


async def test_connection_close_and_http_1_0_answers_are_not_reused(
    serve: Callable[..., RawServer],
) -> None:
    close = b"HTTP/1.1 201 Created\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    old = b"HTTP/1.0 201 Created\r\nContent-Length: 0\r\n\r\n"
    for answer in (close, old):
        server = serve(always(answer))  # the server itself keeps the connection open
        http = client()
        assert (await post(http, server.port)).status == 201
        assert (await post(http, server.port)).status == 201
        await http.aclose()
        assert server.connections == 2


async def test_interim_1xx_answers_are_skipped(serve: Callable[..., RawServer]) -> None:
    server = serve(always(b"HTTP/1.1 100 Continue\r\n\r\n" + OK))
    http = client()
    assert (await post(http, server.port)).status == 201
    assert (await post(http, server.port)).status == 201
    await http.aclose()
    assert server.connections == 1


async def test_a_malformed_answer_is_a_protocol_error(serve: Callable[..., RawServer]) -> None:
    server = serve(always(b"SMTP ready\r\n\r\n"))
    with pytest.raises(httpx.RemoteProtocolError):
        await post(client(), server.port)


# --- connections the server closes --------------------------------------------------


async def test_an_idle_connection_closed_by_the_server_is_replaced(
    serve: Callable[..., RawServer],
) -> None:
    server = serve(always(OK, then="close"))  # answers keep-alive, then closes anyway
    http = client()

    first = await post(http, server.port, b"one")
    await asyncio.sleep(0.1)  # the FIN arrives (and is noticed) while the connection is idle
    second = await post(http, server.port, b"two")
    await http.aclose()

    assert first.status == second.status == 201
    assert [s.body for s in server.seen] == [b"one", b"two"]  # each sent exactly once
    assert server.connections == 2


async def test_a_reused_connection_that_ends_before_any_answer_is_resent_once(
    serve: Callable[..., RawServer],
) -> None:
    def script(request: Seen, index: int) -> Action:
        if request.connection == 0 and index == 1:
            return b"", "close"  # read the 2nd request, then drop the connection silently
        return OK, "keep"

    server = serve(script)
    http = client()

    assert (await post(http, server.port, b"one")).status == 201
    assert (await post(http, server.port, b"two")).status == 201
    await http.aclose()

    assert [(s.connection, s.body) for s in server.seen] == [(0, b"one"), (0, b"two"), (1, b"two")]


async def test_a_fresh_connection_that_ends_before_any_answer_is_not_resent(
    serve: Callable[..., RawServer],
) -> None:
    server = serve(always(b"", then="close"))
    with pytest.raises(httpx.RemoteProtocolError):
        await post(client(), server.port)
    assert len(server.seen) == 1


async def test_a_connection_that_ends_mid_answer_is_never_resent(
    serve: Callable[..., RawServer],
) -> None:
    def script(request: Seen, index: int) -> Action:
        if index == 1:
            return b"HTTP/1.1 201 Created\r\nContent-Length: 10\r\n\r\nabc", "close"
        return OK, "keep"

    server = serve(script)
    http = client()
    assert (await post(http, server.port, b"one")).status == 201
    with pytest.raises(httpx.RemoteProtocolError):
        await post(http, server.port, b"two")
    await http.aclose()
    assert [s.body for s in server.seen] == [b"one", b"two"]


# --- timeouts ------------------------------------------------------------------------


async def test_an_answer_that_never_comes_is_a_read_timeout(
    serve: Callable[..., RawServer],
) -> None:
    server = serve(always(b"HTTP/1.1 201 Created\r\nContent-Le", then="hang"))
    http = client(read_timeout=0.3)
    started = time.monotonic()
    with pytest.raises(httpx.ReadTimeout):
        await post(http, server.port)
    assert time.monotonic() - started < 2.0
    assert len(server.seen) == 1  # and it was not resent


async def test_a_tls_handshake_that_never_completes_is_a_connect_timeout() -> None:
    silent = socket.create_server(("127.0.0.1", 0))  # accepts TCP, never speaks TLS
    try:
        http = client(connect_timeout=0.3)
        started = time.monotonic()
        with pytest.raises(httpx.ConnectTimeout):
            await post(http, silent.getsockname()[1], scheme="https")
        assert time.monotonic() - started < 2.0
    finally:
        silent.close()


async def test_a_closed_port_and_an_unknown_name_are_connect_errors() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    http = client(OutboundPolicy(["127.0.0.1", "nowhere.test"]), resolver=FakeResolver({}))
    with pytest.raises(httpx.ConnectError):
        await post(http, port)
    with pytest.raises(httpx.ConnectError):
        await post(http, port, host="nowhere.test")


# --- TLS ---------------------------------------------------------------------------


async def test_tls_checks_the_certificate_and_sends_the_host_name_while_connecting_to_the_ip(
    serve: Callable[..., RawServer],
) -> None:
    server_tls, client_tls = self_signed_tls("push.test")
    server = serve(always(OK), tls=server_tls)
    resolver = FakeResolver({"push.test": ["127.0.0.1"], "other.test": ["127.0.0.1"]})
    http = client(OutboundPolicy(["127.0.0.1"]), ssl_context=client_tls, resolver=resolver)

    first = await post(http, server.port, host="push.test", scheme="https")
    second = await post(http, server.port, host="push.test", scheme="https")
    with pytest.raises(httpx.ConnectError):  # the certificate does not name other.test
        await post(http, server.port, host="other.test", scheme="https")
    await http.aclose()
    untrusted = client(OutboundPolicy(["127.0.0.1"]), resolver=resolver)  # default CAs
    with pytest.raises(httpx.ConnectError):
        await post(untrusted, server.port, host="push.test", scheme="https")

    assert first.status == second.status == 201
    assert server.sni[:1] == ["push.test"]
    assert f"Host: push.test:{server.port}".encode() in server.seen[0].head
    assert resolver.lookups[:2] == ["push.test", "other.test"]  # once per new connection
    assert len(server.seen) == 2


# --- the outbound policy ----------------------------------------------------------------


async def test_a_loopback_address_is_refused_unless_allowlisted(
    serve: Callable[..., RawServer],
) -> None:
    server = serve(always(OK))
    with pytest.raises(OutboundRefused, match="loopback"):
        await post(client(OutboundPolicy()), server.port)
    assert server.connections == 0


@pytest.mark.parametrize(
    ("answers", "why"),
    [
        (["169.254.169.254"], "never allowed"),
        (["127.0.0.1", "169.254.10.1"], "never allowed"),
        (["127.0.0.1", "10.0.0.8"], "a private address"),
    ],
)
async def test_every_resolved_address_is_checked_before_connecting(
    serve: Callable[..., RawServer], answers: list[str], why: str
) -> None:
    server = serve(always(OK))
    resolver = FakeResolver({"mixed.test": answers})
    http = client(OutboundPolicy(["127.0.0.1", "169.254.0.0/16"]), resolver=resolver)
    with pytest.raises(OutboundRefused, match=why):
        await post(http, server.port, host="mixed.test")
    assert server.connections == 0
    assert resolver.lookups == ["mixed.test"]


@pytest.mark.parametrize("host", ["2130706433", "0x7f.1", "127.1"])
async def test_odd_numeric_spellings_are_refused_without_a_lookup(
    serve: Callable[..., RawServer], host: str
) -> None:
    server = serve(always(OK))
    resolver = FakeResolver({})
    with pytest.raises(OutboundRefused):
        await post(client(resolver=resolver), server.port, host=host)
    assert resolver.lookups == []
    assert server.connections == 0


async def test_the_connection_goes_to_the_checked_address_and_is_reused_without_lookup(
    serve: Callable[..., RawServer],
) -> None:
    server = serve(always(OK))
    resolver = FakeResolver({"push.test": ["127.0.0.1"]})
    http = client(OutboundPolicy(["127.0.0.1"]), resolver=resolver)
    for _ in range(3):
        assert (await post(http, server.port, host="push.test")).status == 201
    await http.aclose()
    assert resolver.lookups == ["push.test"]
    assert server.connections == 1
    assert f"Host: push.test:{server.port}".encode() in server.seen[0].head


async def test_each_event_loop_has_its_own_connections(serve: Callable[..., RawServer]) -> None:
    server = serve(always(OK))
    http = client()

    async def elsewhere() -> int:
        try:
            return (await post(http, server.port)).status
        finally:
            await http.aclose()

    assert (await post(http, server.port)).status == 201
    assert await asyncio.to_thread(asyncio.run, elsewhere()) == 201
    assert (await post(http, server.port)).status == 201
    await http.aclose()
    assert server.connections == 2
    assert [s.connection for s in server.seen] == [0, 1, 0]


def test_works_on_uvloop(serve: Callable[..., RawServer]) -> None:
    """uvloop's transports (``viarah web`` runs on uvloop) are not ``asyncio.Transport``
    instances; the client once asserted they were, and every request failed there."""
    server = serve(always(OK))

    async def one() -> int:
        http = client()
        try:
            return (await post(http, server.port, b"m")).status
        finally:
            await http.aclose()

    assert uvloop.run(one()) == 201
