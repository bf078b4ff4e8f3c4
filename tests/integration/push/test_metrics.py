"""WebPushSender counts every message by outcome and times the requests that went out."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.fakes import FakeClock
from tests.fakes.resolver import FakeResolver
from tests.integration.push.helpers import LOOPBACK, SUBJECT, target_of
from tests.push_fake import Answer, FakePushService
from viarah.adapters.metrics.prometheus import PrometheusTelemetry
from viarah.adapters.outbound.http11 import GuardedHttp11Clients
from viarah.adapters.push import WebPushSender
from viarah.domain.notifications.push import PushMessage, PushTarget
from viarah.domain.shared.outbound import OutboundPolicy


@pytest.fixture
def telemetry() -> PrometheusTelemetry:
    return PrometheusTelemetry(process_metrics=False)


@pytest.fixture
async def sender(
    vapid_pair: tuple[str, str],
    clock: FakeClock,
    resolver: FakeResolver,
    telemetry: PrometheusTelemetry,
) -> AsyncIterator[WebPushSender]:
    http = GuardedHttp11Clients(
        OutboundPolicy(LOOPBACK), connect_timeout=1.0, read_timeout=1.0, resolver=resolver
    )
    sender = WebPushSender(
        *vapid_pair,
        SUBJECT,
        http=http,
        outbound_allowlist=LOOPBACK,
        clock=clock,
        telemetry=telemetry,
    )
    yield sender
    await sender.aclose()


def messages(telemetry: PrometheusTelemetry, outcome: str) -> float:
    value = telemetry.registry.get_sample_value("viarah_push_messages_total", {"outcome": outcome})
    return value or 0.0


def sends_timed(telemetry: PrometheusTelemetry) -> float:
    return telemetry.registry.get_sample_value("viarah_push_send_seconds_count") or 0.0


async def test_delivered_and_gone_messages_are_counted(
    push_service: FakePushService, sender: WebPushSender, telemetry: PrometheusTelemetry
) -> None:
    alive, expired = push_service.new_subscription(), push_service.new_subscription()
    push_service.expire(push_service.subscription_id(expired))

    assert (await sender.send(target_of(alive), PushMessage(b"hello"))).delivered
    assert (await sender.send(target_of(alive), PushMessage(b"again"))).delivered
    assert (await sender.send(target_of(expired), PushMessage(b"x"))).gone

    assert messages(telemetry, "delivered") == 2
    assert messages(telemetry, "gone") == 1
    assert len(push_service.delivered) == 2  # the fake really decrypted two messages
    assert sends_timed(telemetry) == 3


async def test_retryable_failed_and_refused_messages_are_counted(
    push_service: FakePushService, sender: WebPushSender, telemetry: PrometheusTelemetry
) -> None:
    sub = push_service.new_subscription()
    sub_id = push_service.subscription_id(sub)
    push_service.script(sub_id, Answer(429, {"Retry-After": "5"}), Answer(503), Answer(400))
    for _ in range(3):
        assert not (await sender.send(target_of(sub), PushMessage(b"x"))).delivered
    keys = target_of(sub)
    refused = PushTarget("https://169.254.169.254/push/x", keys.p256dh, keys.auth)
    assert (await sender.send(refused, PushMessage(b"x"))).status == 0

    assert messages(telemetry, "retryable") == 2
    assert messages(telemetry, "failed") == 1
    assert messages(telemetry, "refused") == 1
    assert sends_timed(telemetry) == 3  # nothing went out for the refused endpoint


async def test_the_endpoint_never_appears_in_the_metrics(
    push_service: FakePushService, sender: WebPushSender, telemetry: PrometheusTelemetry
) -> None:
    sub = push_service.new_subscription()
    await sender.send(target_of(sub), PushMessage(b"x"))
    body, _ = telemetry.exposition(lambda: None)
    assert push_service.subscription_id(sub).encode() not in body
    assert b"127.0.0.1" not in body
