"""The VAPID JWT is signed once per push-service origin and re-signed before it expires."""

from __future__ import annotations

import threading
from datetime import timedelta

import httpx

from tests.fakes import FakeClock
from tests.fakes.resolver import FakeResolver
from tests.integration.push.helpers import make_sender, target_of
from tests.push_fake import FakePushService
from viarah.adapters.push import WebPushSender, crypto_floor_operation
from viarah.adapters.push.vapid_jwt import VapidSigner
from viarah.domain.notifications.push import PushMessage


async def test_one_jwt_serves_50_messages_to_the_same_origin(
    push_service: FakePushService, push_sender: WebPushSender
) -> None:
    subs = [push_service.new_subscription() for _ in range(10)]
    for n in range(50):
        result = await push_sender.send(target_of(subs[n % 10]), PushMessage(b"m%d" % n))
        assert result.delivered

    assert len(push_service.delivered) == 50
    assert push_service.jwt_signatures == 1
    assert push_sender.signatures == 1


async def test_each_origin_gets_its_own_jwt(
    push_service: FakePushService,
    vapid_pair: tuple[str, str],
    clock: FakeClock,
    resolver: FakeResolver,
) -> None:
    sender = make_sender(vapid_pair, clock, resolver, ("127.0.0.1", "push.test"))
    by_ip = push_service.new_subscription()
    by_name = push_service.new_subscription(host="push.test")
    for _ in range(3):
        for sub in (by_ip, by_name):
            assert (await sender.send(target_of(sub), PushMessage(b"x"))).delivered
    await sender.aclose()

    auds = [r.claims["aud"] for r in push_service.delivered if r.claims]
    assert set(auds) == {push_service.origin, f"http://push.test:{push_service.port}"}
    assert push_service.jwt_signatures == 2
    assert sender.signatures == 2


async def test_the_jwt_is_re_signed_when_less_than_an_hour_of_validity_remains(
    push_service: FakePushService, push_sender: WebPushSender, clock: FakeClock
) -> None:
    sub = target_of(push_service.new_subscription())

    await push_sender.send(sub, PushMessage(b"t0"))
    clock.advance(hours=10, minutes=59)  # 1 h 01 min left: keep it
    await push_sender.send(sub, PushMessage(b"t1"))
    clock.advance(minutes=2)  # 59 min left: re-sign
    await push_sender.send(sub, PushMessage(b"t2"))
    await push_sender.send(sub, PushMessage(b"t3"))

    jwts = [r.jwt for r in push_service.delivered]
    assert jwts[0] == jwts[1] != jwts[2] == jwts[3]
    assert push_service.jwt_signatures == 2
    assert push_sender.signatures == 2
    first, renewed = push_service.delivered[0].claims, push_service.delivered[2].claims
    assert first is not None
    assert renewed is not None
    assert renewed["exp"] - first["exp"] == int(timedelta(hours=11, minutes=1).total_seconds())


def test_concurrent_threads_share_one_signature(vapid_pair: tuple[str, str]) -> None:
    signer = VapidSigner(*vapid_pair, "mailto:ops@example.com", clock=FakeClock())
    barrier = threading.Barrier(8)
    headers: list[str] = []

    def worker() -> None:
        barrier.wait()
        for _ in range(25):
            headers.append(signer.authorization("https://fcm.googleapis.com"))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(headers) == 200
    assert len(set(headers)) == 1
    assert signer.signatures == 1
    assert "origins_cached=1" in repr(signer)


async def test_crypto_floor_operation_signs_afresh_and_its_output_is_deliverable(
    push_service: FakePushService, push_sender: WebPushSender, clock: FakeClock
) -> None:
    sub = push_service.new_subscription()
    prepared = [
        crypto_floor_operation(push_sender, target_of(sub), PushMessage(b"floor %d" % n))
        for n in range(3)
    ]
    assert push_sender.signatures == 3  # no cache: each call signs

    async with httpx.AsyncClient() as client:
        for p in prepared:
            answer = await client.post(p.endpoint.url, content=p.body, headers=p.headers)
            assert answer.status_code == 201
    assert push_service.messages_for(push_service.subscription_id(sub)) == [
        b"floor 0",
        b"floor 1",
        b"floor 2",
    ]
    # The cache was left alone: a normal send signs once more, then reuses it.
    await push_sender.send(target_of(sub), PushMessage(b"a"))
    await push_sender.send(target_of(sub), PushMessage(b"b"))
    assert push_sender.signatures == 4
