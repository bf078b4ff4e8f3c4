"""Push endpoints obey the outbound policy: https only (http on allowlisted hosts), no
metadata/link-local ever, loopback/private only when allowlisted — checked on every
resolved address, and nothing is sent to a refused endpoint."""

from __future__ import annotations

import pytest

from tests.fakes import FakeClock
from tests.fakes.resolver import FakeResolver
from tests.integration.push.helpers import make_sender, target_of
from tests.push_fake import FakePushService
from viarah.adapters.push import WebPushSender
from viarah.domain.notifications.push import PushMessage, PushResult


async def _send_to(sender: WebPushSender, sub: dict[str, object], endpoint: str) -> PushResult:
    sub = dict(sub, endpoint=endpoint)
    try:
        return await sender.send(target_of(sub), PushMessage(b"x"))
    finally:
        await sender.aclose()


async def test_http_endpoint_is_refused_unless_its_host_is_allowlisted(
    push_service: FakePushService,
    vapid_pair: tuple[str, str],
    clock: FakeClock,
    resolver: FakeResolver,
) -> None:
    sub = push_service.new_subscription(host="push.test")
    # push.test resolves to 127.0.0.1, which IS allowlisted as an address: the address may
    # be reached, but plain http:// needs the host itself on the allowlist.
    refused = make_sender(vapid_pair, clock, resolver, ("127.0.0.1",))
    allowed = make_sender(vapid_pair, clock, resolver, ("push.test",))

    no = await refused.send(target_of(sub), PushMessage(b"x"))
    yes = await allowed.send(target_of(sub), PushMessage(b"x"))
    await refused.aclose()
    await allowed.aclose()

    assert no.status == 0
    assert no.reason is not None
    assert no.reason.startswith("refused: push.test is a plain http:// endpoint")
    assert "VIA_RAH_OUTBOUND_ALLOWLIST" in no.reason
    assert yes.delivered
    assert len(push_service.requests) == 1


async def test_loopback_endpoint_is_refused_without_allowlist(
    push_service: FakePushService,
    vapid_pair: tuple[str, str],
    clock: FakeClock,
    resolver: FakeResolver,
) -> None:
    sender = make_sender(vapid_pair, clock, resolver, ())
    sub = push_service.new_subscription()

    literal = await _send_to(sender, sub, f"https://127.0.0.1:{push_service.port}/push/x")
    by_name = await _send_to(sender, sub, f"https://push.test:{push_service.port}/push/x")

    for result in (literal, by_name):
        assert result.status == 0
        assert result.reason is not None
        assert result.reason.startswith("refused: ")
        assert "a loopback address" in result.reason
    assert push_service.requests == []


@pytest.mark.parametrize(
    "endpoint",
    [
        "https://169.254.169.254/push/x",
        "http://169.254.169.254/push/x",
        "https://[fd00:ec2::254]/push/x",
        "https://[::ffff:169.254.169.254]/push/x",
        "https://metadata.test/push/x",  # a name that resolves to the metadata address
        "https://mixed.test/push/x",  # one good address and one link-local: refused
    ],
)
async def test_link_local_and_metadata_are_refused_even_when_allowlisted(
    push_service: FakePushService, vapid_pair: tuple[str, str], clock: FakeClock, endpoint: str
) -> None:
    resolver = FakeResolver(
        {"metadata.test": ["169.254.169.254"], "mixed.test": ["127.0.0.1", "169.254.10.1"]}
    )
    allowlist = (
        "169.254.169.254",
        "169.254.0.0/16",
        "fd00::/8",
        "metadata.test",
        "mixed.test",
        "127.0.0.1",
    )
    sender = make_sender(vapid_pair, clock, resolver, allowlist)

    result = await _send_to(sender, push_service.new_subscription(), endpoint)

    assert result.status == 0
    assert result.reason is not None
    assert result.reason.startswith("refused: ")
    assert "never allowed" in result.reason
    assert push_service.requests == []


async def test_a_name_resolving_to_a_private_address_is_refused(
    push_service: FakePushService, vapid_pair: tuple[str, str], clock: FakeClock
) -> None:
    resolver = FakeResolver({"internal.test": ["10.1.2.3"]})
    sender = make_sender(vapid_pair, clock, resolver, ("127.0.0.1",))

    result = await _send_to(sender, push_service.new_subscription(), "https://internal.test/p/x")

    assert result.status == 0
    assert result.reason is not None
    assert "internal.test resolves to 10.1.2.3, a private address" in result.reason
    assert resolver.lookups == ["internal.test"]


@pytest.mark.parametrize(
    ("endpoint", "why"),
    [
        ("ftp://push.example.com/x", "not an https:// push endpoint"),
        ("https://user:pw@push.example.com/x", "credentials"),
        ("https://2130706433/x", "non-standard numeric spelling"),
        ("not a url", "refused: "),
    ],
)
async def test_odd_endpoints_are_refused_without_any_lookup(
    push_service: FakePushService,
    push_sender: WebPushSender,
    resolver: FakeResolver,
    endpoint: str,
    why: str,
) -> None:
    result = await _send_to(push_sender, push_service.new_subscription(), endpoint)

    assert result.status == 0
    assert result.reason is not None
    assert why in result.reason
    assert resolver.lookups == []
