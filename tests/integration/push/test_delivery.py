"""WebPushSender against a push service that verifies VAPID and decrypts: what arrives."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta

import pytest

from tests.fakes import FakeClock
from tests.fakes.resolver import FakeResolver
from tests.gitlab_fake import self_signed_tls
from tests.integration.push.helpers import SUBJECT, make_sender, target_of
from tests.push_fake import FakePushService
from viarah.adapters.outbound.http11 import GuardedHttp11Clients
from viarah.adapters.push import WebPushSender
from viarah.domain.notifications.push import (
    DEFAULT_TTL_SECONDS,
    MAX_PLAINTEXT_BYTES,
    PushMessage,
)
from viarah.domain.shared.outbound import OutboundPolicy


async def test_a_message_arrives_decrypted_and_equal_to_the_plaintext(
    push_service: FakePushService, push_sender: WebPushSender
) -> None:
    sub = push_service.new_subscription(application_server_key=push_sender.public_key)
    plaintext = json.dumps({"title": "Closed", "body": "group/app#12 was closed"}).encode()

    result = await push_sender.send(target_of(sub), PushMessage(plaintext))

    assert result.status == 201
    assert result.delivered
    assert not result.retryable
    assert push_service.messages_for(push_service.subscription_id(sub)) == [plaintext]
    assert push_service.rejected == []


async def test_headers_carry_ttl_urgency_topic_and_the_encoding(
    push_service: FakePushService, push_sender: WebPushSender
) -> None:
    sub = push_service.new_subscription()
    await push_sender.send(target_of(sub), PushMessage(b"default"))
    await push_sender.send(
        target_of(sub), PushMessage(b"custom", ttl=600, urgency="high", topic="task-42_state")
    )

    default, custom = push_service.delivered
    assert default.headers["ttl"] == str(DEFAULT_TTL_SECONDS) == "86400"
    assert default.headers["urgency"] == "normal"
    assert "topic" not in default.headers
    assert default.headers["content-encoding"] == "aes128gcm"
    assert default.headers["content-type"] == "application/octet-stream"
    assert default.headers["authorization"].startswith("vapid t=")
    assert ", k=" + push_sender.public_key in default.headers["authorization"]
    assert custom.headers["ttl"] == "600"
    assert custom.headers["urgency"] == "high"
    assert custom.headers["topic"] == "task-42_state"


async def test_the_jwt_names_the_endpoint_origin_expires_in_12_hours_and_has_the_subject(
    push_service: FakePushService, push_sender: WebPushSender, clock: FakeClock
) -> None:
    sub = push_service.new_subscription()
    await push_sender.send(target_of(sub), PushMessage(b"hi"))

    (request,) = push_service.delivered
    assert request.claims is not None
    assert request.claims["aud"] == push_service.origin == f"http://127.0.0.1:{push_service.port}"
    assert request.claims["exp"] == int(clock.now().timestamp()) + 12 * 3600
    assert request.claims["sub"] == SUBJECT


async def test_the_largest_plaintext_fits_a_4096_byte_body(
    push_service: FakePushService, push_sender: WebPushSender
) -> None:
    sub = push_service.new_subscription()
    plaintext = b"x" * MAX_PLAINTEXT_BYTES

    result = await push_sender.send(target_of(sub), PushMessage(plaintext))

    assert result.delivered
    (request,) = push_service.delivered
    assert request.body_size == 4096
    assert request.plaintext == plaintext


async def test_a_plaintext_over_3993_bytes_is_refused_before_encryption(
    push_service: FakePushService, push_sender: WebPushSender, monkeypatch: pytest.MonkeyPatch
) -> None:
    import viarah.adapters.push.webpush as webpush

    def never(*_args: object) -> bytes:
        raise AssertionError("encrypt must not be called")

    monkeypatch.setattr(webpush, "encrypt", never)
    sub = push_service.new_subscription()

    with pytest.raises(ValueError, match="too large: 3994 bytes"):
        await push_sender.send(target_of(sub), PushMessage(b"x" * (MAX_PLAINTEXT_BYTES + 1)))

    assert push_service.requests == []


@pytest.mark.parametrize(
    ("message", "why"),
    [
        (PushMessage(b"x", ttl=0), "TTL"),
        (PushMessage(b"x", ttl=-5), "TTL"),
        (PushMessage(b"x", urgency="urgent"), "urgency"),
        (PushMessage(b"x", topic="a" * 33), "topic"),
        (PushMessage(b"x", topic="not base64url!"), "topic"),
        (PushMessage(b"x", topic=""), "topic"),
    ],
)
async def test_messages_that_break_the_protocol_rules_are_refused(
    push_service: FakePushService, push_sender: WebPushSender, message: PushMessage, why: str
) -> None:
    sub = push_service.new_subscription()

    with pytest.raises(ValueError, match=why):
        await push_sender.send(target_of(sub), message)

    assert push_service.requests == []


async def test_a_message_without_payload_is_a_tickle_with_no_body(
    push_service: FakePushService, push_sender: WebPushSender
) -> None:
    sub = push_service.new_subscription()

    assert (await push_sender.send(target_of(sub), PushMessage(b""))).delivered
    (request,) = push_service.delivered
    assert request.body_size == 0
    assert "content-encoding" not in request.headers


async def test_messages_to_one_service_share_a_pooled_connection(
    push_service: FakePushService, push_sender: WebPushSender
) -> None:
    subs = [push_service.new_subscription() for _ in range(5)]
    for sub in subs * 2:
        assert (await push_sender.send(target_of(sub), PushMessage(b"m"))).delivered

    assert len({r.client_port for r in push_service.delivered}) == 1


async def test_push_is_disabled_when_any_vapid_setting_is_missing(
    push_service: FakePushService, vapid_pair: tuple[str, str]
) -> None:
    public, private = vapid_pair
    for args in ((public, private, ""), ("", private, SUBJECT), (public, "", SUBJECT)):
        http = GuardedHttp11Clients(OutboundPolicy(["127.0.0.1"]))
        sender = WebPushSender(*args, http=http, outbound_allowlist=("127.0.0.1",))
        sub = push_service.new_subscription()
        result = await sender.send(target_of(sub), PushMessage(b"x"))
        assert not sender.enabled
        assert sender.public_key == ""
        assert result.status == 0
        assert result.reason == "push disabled"
    assert push_service.requests == []


def test_mismatched_or_malformed_vapid_settings_fail_at_construction(
    vapid_pair: tuple[str, str],
) -> None:
    public, private = vapid_pair
    other_public = make_sender_public_key()
    cases = [
        ((other_public, private, SUBJECT), "does not belong"),
        ((public, private[:-4], SUBJECT), "WEBPUSH_VAPID_PRIVATE_KEY"),
        ((public, private + "!", SUBJECT), "WEBPUSH_VAPID_PRIVATE_KEY"),
        ((public, private, "ops@example.com"), "WEBPUSH_VAPID_SUBJECT"),
    ]
    for args, why in cases:
        with pytest.raises(ValueError, match=why) as caught:
            WebPushSender(*args, http=GuardedHttp11Clients(OutboundPolicy()))
        assert private not in str(caught.value)
        assert private[:-4] not in str(caught.value)


def make_sender_public_key() -> str:
    from viarah.adapters.crypto.vapid import generate_vapid_keypair

    return generate_vapid_keypair().public_key


async def test_https_endpoint_with_a_host_name_is_verified_and_named_in_aud(
    vapid_pair: tuple[str, str], clock: FakeClock
) -> None:
    server_tls, client_tls = self_signed_tls("push.test")
    resolver = FakeResolver({"push.test": ["127.0.0.1"]})
    now = lambda: clock.now().timestamp()  # noqa: E731
    with FakePushService(aliases=("push.test",), now=now, ssl_context=server_tls) as service:
        sender = make_sender(
            vapid_pair, clock, resolver, allowlist=("127.0.0.1",), ssl_context=client_tls
        )
        sub = service.new_subscription(host="push.test")
        assert sub["endpoint"].startswith("https://push.test:")

        result = await sender.send(target_of(sub), PushMessage(b"over TLS"))
        await sender.aclose()

    assert result.delivered
    (request,) = service.delivered
    assert request.plaintext == b"over TLS"
    assert request.claims is not None
    assert request.claims["aud"] == f"https://push.test:{service.port}"


async def test_jwt_expiry_stays_within_the_push_services_24_hour_limit(
    push_service: FakePushService, push_sender: WebPushSender, clock: FakeClock
) -> None:
    sub = push_service.new_subscription()
    await push_sender.send(target_of(sub), PushMessage(b"a"))
    clock.advance(hours=23)  # the cached token expired long ago: a fresh one is signed

    assert (await push_sender.send(target_of(sub), PushMessage(b"b"))).delivered
    first, second = push_service.delivered
    assert first.claims is not None
    assert second.claims is not None
    assert second.claims["exp"] - first.claims["exp"] == int(timedelta(hours=23).total_seconds())


async def test_a_sender_shared_by_two_event_loops_keeps_one_client_per_loop(
    push_service: FakePushService, push_sender: WebPushSender
) -> None:
    sub = push_service.new_subscription()

    async def on_another_loop() -> bool:
        try:
            return (await push_sender.send(target_of(sub), PushMessage(b"thread"))).delivered
        finally:
            await push_sender.aclose()

    assert (await push_sender.send(target_of(sub), PushMessage(b"main"))).delivered
    assert await asyncio.to_thread(asyncio.run, on_another_loop())
    assert (await push_sender.send(target_of(sub), PushMessage(b"main again"))).delivered

    assert push_service.messages_for(push_service.subscription_id(sub)) == [
        b"main",
        b"thread",
        b"main again",
    ]
    main_ports = {push_service.delivered[0].client_port, push_service.delivered[2].client_port}
    assert len(main_ports) == 1  # the main loop's pooled connection survived
    assert push_service.delivered[1].client_port not in main_ports
