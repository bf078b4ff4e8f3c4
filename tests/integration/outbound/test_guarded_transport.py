"""The guarded transport against a real local server: what it connects to, and what not."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterable, Iterator
from typing import Any

import httpcore
import httpx
import pytest

from tests.fakes.resolver import FakeResolver
from tests.gitlab_fake import DEFAULT_TOKEN, FakeGitLab, Scripted, self_signed_tls
from viarah.adapters.outbound.clients import GuardedHttpClients
from viarah.adapters.outbound.guarded import GuardedNetworkBackend
from viarah.domain.shared.outbound import OutboundPolicy, OutboundRefused

TOKEN = {"PRIVATE-TOKEN": DEFAULT_TOKEN}
FAST = httpx.Timeout(5.0, connect=2.0, read=0.5, write=2.0, pool=2.0)


class SpyBackend(httpcore.AsyncNetworkBackend):
    """Records where the guarded backend really connects, then connects there."""

    def __init__(self) -> None:
        self.connected_to: list[str] = []
        self._real = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        self.connected_to.append(host)
        return await self._real.connect_tcp(host, port, timeout=timeout)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


@pytest.fixture
def fake() -> Iterator[FakeGitLab]:
    with FakeGitLab() as server:
        yield server


async def get(clients: GuardedHttpClients, url: str) -> httpx.Response:
    try:
        return await clients.client().get(url, headers=TOKEN)
    finally:
        await clients.aclose()


async def test_allowlisted_loopback_is_reached(fake: FakeGitLab) -> None:
    clients = GuardedHttpClients(OutboundPolicy(["127.0.0.1"]), timeout=FAST)
    response = await get(clients, fake.base_url + fake.user_path)
    assert response.status_code == 200
    assert response.json()["username"] == "fake.admin"
    assert fake.calls(fake.user_path) == 1


async def test_loopback_is_refused_without_an_allowlist(fake: FakeGitLab) -> None:
    clients = GuardedHttpClients(OutboundPolicy(), timeout=FAST)
    with pytest.raises(OutboundRefused) as refused:
        await get(clients, fake.base_url + fake.user_path)
    assert refused.value.message == (
        "refused: 127.0.0.1 is a loopback address; add it to VIA_RAH_OUTBOUND_ALLOWLIST to allow it"
    )
    assert fake.calls(fake.user_path) == 0


@pytest.mark.parametrize("host", ["2130706433", "0x7f.1", "0x7f000001", "127.1"])
async def test_numeric_spellings_of_loopback_are_refused(fake: FakeGitLab, host: str) -> None:
    # Even with 127.0.0.1 allowlisted: these spellings are never legitimate.
    clients = GuardedHttpClients(OutboundPolicy(["127.0.0.1"]), timeout=FAST)
    with pytest.raises(OutboundRefused) as refused:
        await get(clients, fake.url_for(host) + fake.user_path)
    assert host in refused.value.message
    assert fake.calls(fake.user_path) == 0


async def test_octal_spelling_never_reaches_the_network(fake: FakeGitLab) -> None:
    clients = GuardedHttpClients(OutboundPolicy(["127.0.0.1"]), timeout=FAST)
    with pytest.raises(httpx.InvalidURL):  # httpx itself rejects 0177.0.0.1
        await get(clients, fake.url_for("0177.0.0.1") + fake.user_path)
    backend = GuardedNetworkBackend(OutboundPolicy(["127.0.0.1"]))
    with pytest.raises(OutboundRefused):  # and the backend would too
        await backend.connect_tcp("0177.0.0.1", fake.port, timeout=1)
    assert fake.calls(fake.user_path) == 0


async def test_localhost_is_refused_by_what_it_resolves_to(fake: FakeGitLab) -> None:
    clients = GuardedHttpClients(OutboundPolicy(), timeout=FAST)
    with pytest.raises(OutboundRefused) as refused:
        await get(clients, fake.url_for("localhost") + fake.user_path)
    assert "localhost resolves to" in refused.value.message
    assert "loopback" in refused.value.message
    assert fake.calls(fake.user_path) == 0


async def test_localhost_allowlisted_by_name_is_reached(fake: FakeGitLab) -> None:
    clients = GuardedHttpClients(OutboundPolicy(["localhost"]), timeout=FAST)
    response = await get(clients, fake.url_for("localhost") + fake.user_path)
    assert response.status_code == 200
    assert fake.requests[-1].headers["host"] == f"localhost:{fake.port}"


async def test_a_name_resolving_to_loopback_is_refused(fake: FakeGitLab) -> None:
    resolver = FakeResolver({"gitlab.example.com": ["127.0.0.1"]})
    clients = GuardedHttpClients(OutboundPolicy(), timeout=FAST, resolver=resolver)
    with pytest.raises(OutboundRefused) as refused:
        await get(clients, f"http://gitlab.example.com:{fake.port}{fake.user_path}")
    assert refused.value.message.startswith(
        "refused: gitlab.example.com resolves to 127.0.0.1, a loopback address"
    )
    assert fake.calls(fake.user_path) == 0


async def test_every_resolved_address_is_checked_before_any_connection() -> None:
    spy = SpyBackend()
    resolver = FakeResolver({"mixed.example.com": ["93.184.216.34", "169.254.169.254"]})
    backend = GuardedNetworkBackend(OutboundPolicy(), resolver=resolver, inner=spy)
    with pytest.raises(OutboundRefused) as refused:
        await backend.connect_tcp("mixed.example.com", 80, timeout=1)
    assert refused.value.address == "169.254.169.254"
    assert "never allowed" in refused.value.message
    assert spy.connected_to == []  # not even the public address was tried


async def test_connection_is_pinned_to_the_checked_address(fake: FakeGitLab) -> None:
    spy = SpyBackend()
    resolver = FakeResolver({"gitlab.test": ["127.0.0.1"]})
    backend = GuardedNetworkBackend(OutboundPolicy(["127.0.0.1"]), resolver=resolver, inner=spy)
    stream = await backend.connect_tcp("gitlab.test", fake.port, timeout=2)
    await stream.aclose()
    assert spy.connected_to == ["127.0.0.1"]  # the IP that was checked, never the name
    assert resolver.lookups == ["gitlab.test"]


async def test_host_header_is_kept_and_the_pooled_connection_reused(fake: FakeGitLab) -> None:
    resolver = FakeResolver({"gitlab.test": ["127.0.0.1"]})
    clients = GuardedHttpClients(OutboundPolicy(["127.0.0.1"]), timeout=FAST, resolver=resolver)
    try:
        client = clients.client()
        url = f"http://gitlab.test:{fake.port}{fake.user_path}"
        first = await client.get(url, headers=TOKEN)
        second = await client.get(url, headers=TOKEN)
    finally:
        await clients.aclose()
    assert (first.status_code, second.status_code) == (200, 200)
    assert [r.headers["host"] for r in fake.requests] == [f"gitlab.test:{fake.port}"] * 2
    assert fake.requests[0].client_port == fake.requests[1].client_port  # one connection
    assert resolver.lookups == ["gitlab.test"]  # resolved once, for that one connection


async def test_tls_verifies_the_host_name_while_connecting_to_the_pinned_ip() -> None:
    server_tls, client_tls = self_signed_tls("gitlab.test")
    with FakeGitLab(ssl_context=server_tls) as fake:
        resolver = FakeResolver({"gitlab.test": ["127.0.0.1"], "other.test": ["127.0.0.1"]})
        clients = GuardedHttpClients(
            OutboundPolicy(["127.0.0.1"]),
            timeout=FAST,
            ssl_context=client_tls,
            resolver=resolver,
        )
        response = await get(clients, f"https://gitlab.test:{fake.port}{fake.user_path}")
        assert response.status_code == 200
        # Same IP, another name: the certificate does not match, so no request is made.
        with pytest.raises(httpx.ConnectError, match="certificate"):
            await get(clients, f"https://other.test:{fake.port}{fake.user_path}")
        assert fake.calls(fake.user_path) == 1


async def test_redirects_are_returned_not_followed(fake: FakeGitLab) -> None:
    with FakeGitLab() as elsewhere:
        target = elsewhere.base_url + elsewhere.user_path
        fake.script(fake.user_path, Scripted(302, {}, headers={"Location": target}))
        clients = GuardedHttpClients(OutboundPolicy(["127.0.0.1"]), timeout=FAST)
        response = await get(clients, fake.base_url + fake.user_path)
        assert response.status_code == 302
        assert response.headers["location"] == target
        assert elsewhere.calls(elsewhere.user_path) == 0


async def test_slow_answers_time_out(fake: FakeGitLab) -> None:
    fake.script(fake.user_path, Scripted(200, {}, delay=3.0))
    clients = GuardedHttpClients(OutboundPolicy(["127.0.0.1"]), timeout=FAST)
    with pytest.raises(httpx.ReadTimeout):
        await get(clients, fake.base_url + fake.user_path)


async def test_unresolvable_names_are_connect_errors() -> None:
    clients = GuardedHttpClients(OutboundPolicy(), timeout=FAST, resolver=FakeResolver({}))
    with pytest.raises(httpx.ConnectError, match=r"cannot resolve nowhere\.test"):
        await get(clients, "http://nowhere.test/")


async def test_a_closed_port_is_a_connect_error() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    clients = GuardedHttpClients(OutboundPolicy(["127.0.0.1"]), timeout=FAST)
    with pytest.raises(httpx.ConnectError):
        await get(clients, f"http://127.0.0.1:{port}/")


def _ipv6_loopback_available() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _ipv6_loopback_available(), reason="no IPv6 loopback here")
async def test_ipv6_loopback_is_refused_unless_allowlisted() -> None:
    with FakeGitLab(host="::1") as fake:
        with pytest.raises(OutboundRefused, match=r"::1 is a loopback address"):
            await get(GuardedHttpClients(OutboundPolicy(), timeout=FAST), fake.base_url + "/")
        allowed = GuardedHttpClients(OutboundPolicy(["::1"]), timeout=FAST)
        response = await get(allowed, fake.base_url + fake.user_path)
        assert response.status_code == 200


async def test_unix_sockets_are_refused() -> None:
    backend = GuardedNetworkBackend(OutboundPolicy(["0.0.0.0/0"]))
    with pytest.raises(OutboundRefused, match="Unix socket"):
        await backend.connect_unix_socket("/var/run/docker.sock")


async def test_one_client_per_loop_and_a_fresh_one_after_aclose() -> None:
    clients = GuardedHttpClients(OutboundPolicy())
    first = clients.client()
    assert clients.client() is first
    others: list[httpx.AsyncClient] = []

    def other_loop() -> None:
        async def grab() -> None:
            others.append(clients.client())
            await clients.aclose()

        asyncio.run(grab())

    thread = threading.Thread(target=other_loop)
    thread.start()
    thread.join()
    assert others
    assert others[0] is not first
    assert others[0].is_closed
    assert not first.is_closed  # closing another loop's client left ours alone
    await clients.aclose()
    assert first.is_closed
    assert clients.client() is not first
    await clients.aclose()


def test_clients_enforce_the_documented_defaults() -> None:
    async def build() -> httpx.AsyncClient:
        clients = GuardedHttpClients(OutboundPolicy())
        client = clients.client()
        await clients.aclose()
        return client

    client = asyncio.run(build())
    assert client.follow_redirects is False
    assert client.trust_env is False
    assert client.timeout == httpx.Timeout(10.0, connect=3.0, read=10.0, write=10.0, pool=5.0)
