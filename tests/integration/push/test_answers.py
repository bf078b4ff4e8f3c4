"""How the push service's answers (and silences) become a PushResult."""

from __future__ import annotations

import socket
from datetime import timedelta

import pytest

from tests.fakes import FakeClock
from tests.fakes.resolver import FakeResolver
from tests.gitlab_fake import http_date
from tests.integration.push.helpers import make_sender, target_of
from tests.push_fake import Answer, FakePushService
from viarah.adapters.push import WebPushSender
from viarah.domain.notifications.push import PushMessage


@pytest.mark.parametrize("status", [404, 410])
async def test_404_and_410_mean_the_subscription_is_gone(
    push_service: FakePushService, push_sender: WebPushSender, status: int
) -> None:
    sub = push_service.new_subscription()
    push_service.script(push_service.subscription_id(sub), Answer(status))

    result = await push_sender.send(target_of(sub), PushMessage(b"x"))

    assert result.status == status
    assert result.gone
    assert not result.delivered
    assert not result.retryable
    assert result.reason is not None
    assert result.reason.startswith("gone:")


async def test_an_expired_or_unknown_subscription_is_gone(
    push_service: FakePushService, push_sender: WebPushSender
) -> None:
    expired, forgotten = push_service.new_subscription(), push_service.new_subscription()
    push_service.expire(push_service.subscription_id(expired))
    push_service.forget(push_service.subscription_id(forgotten))

    assert (await push_sender.send(target_of(expired), PushMessage(b"x"))).status == 410
    assert (await push_sender.send(target_of(forgotten), PushMessage(b"x"))).status == 404


async def test_429_is_retryable_after_the_seconds_given(
    push_service: FakePushService, push_sender: WebPushSender
) -> None:
    sub = push_service.new_subscription()
    push_service.script(push_service.subscription_id(sub), Answer(429, {"Retry-After": "120"}))

    result = await push_sender.send(target_of(sub), PushMessage(b"x"))

    assert result.status == 429
    assert result.retryable
    assert result.retry_after == 120.0
    assert (await push_sender.send(target_of(sub), PushMessage(b"x"))).delivered


async def test_429_retry_after_as_an_http_date_counts_from_the_clock(
    push_service: FakePushService, push_sender: WebPushSender, clock: FakeClock
) -> None:
    sub = push_service.new_subscription()
    when = http_date(clock.now() + timedelta(minutes=5))
    push_service.script(push_service.subscription_id(sub), Answer(429, {"Retry-After": when}))

    result = await push_sender.send(target_of(sub), PushMessage(b"x"))

    assert result.retryable
    assert result.retry_after == 300.0


async def test_429_without_retry_after_is_retryable_with_no_hint(
    push_service: FakePushService, push_sender: WebPushSender
) -> None:
    sub = push_service.new_subscription()
    push_service.script(push_service.subscription_id(sub), Answer(429, {"Retry-After": "soon"}))

    result = await push_sender.send(target_of(sub), PushMessage(b"x"))

    assert result.retryable
    assert result.retry_after is None


@pytest.mark.parametrize("status", [500, 502, 503])
async def test_5xx_is_retryable(
    push_service: FakePushService, push_sender: WebPushSender, status: int
) -> None:
    sub = push_service.new_subscription()
    push_service.script(push_service.subscription_id(sub), Answer(status, {"Retry-After": "7"}))

    result = await push_sender.send(target_of(sub), PushMessage(b"x"))

    assert result.status == status
    assert result.retryable
    assert not result.gone
    assert result.retry_after == 7.0


@pytest.mark.parametrize("status", [400, 403, 413])
async def test_other_4xx_fail_without_retry(
    push_service: FakePushService, push_sender: WebPushSender, status: int
) -> None:
    sub = push_service.new_subscription()
    push_service.script(
        push_service.subscription_id(sub), Answer(status, body='{"message": "no way"}')
    )

    result = await push_sender.send(target_of(sub), PushMessage(b"x"))

    assert result.status == status
    assert not (result.delivered)
    assert not (result.gone)
    assert not (result.retryable)
    assert result.reason is not None
    assert result.reason.startswith(f"rejected: {status}")
    assert "no way" in result.reason


async def test_a_redirect_is_not_followed(
    push_service: FakePushService, push_sender: WebPushSender
) -> None:
    sub, elsewhere = push_service.new_subscription(), push_service.new_subscription()
    push_service.script(
        push_service.subscription_id(sub), Answer(307, {"Location": elsewhere["endpoint"]})
    )

    result = await push_sender.send(target_of(sub), PushMessage(b"x"))

    assert result.status == 307
    assert not result.retryable
    assert len(push_service.requests) == 1  # the Location was never visited


async def test_a_service_that_does_not_listen_is_a_network_error(
    push_sender: WebPushSender, push_service: FakePushService
) -> None:
    with socket.socket() as probe:  # a port that nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    sub = push_service.new_subscription()
    sub["endpoint"] = f"http://127.0.0.1:{port}/push/x"

    result = await push_sender.send(target_of(sub), PushMessage(b"x"))

    assert result.status == 0
    assert result.retryable
    assert result.reason == "network error: ConnectError"


async def test_a_name_that_does_not_resolve_is_a_network_error(
    push_service: FakePushService, push_sender: WebPushSender
) -> None:
    sub = push_service.new_subscription()
    sub["endpoint"] = "https://nowhere.invalid/push/x"

    result = await push_sender.send(target_of(sub), PushMessage(b"x"))

    assert result.status == 0
    assert result.reason == "network error: ConnectError"


async def test_a_service_that_answers_too_slowly_times_out(
    push_service: FakePushService,
    vapid_pair: tuple[str, str],
    clock: FakeClock,
    resolver: FakeResolver,
) -> None:
    sender = make_sender(vapid_pair, clock, resolver, ("127.0.0.1",), read_timeout=0.2)
    sub = push_service.new_subscription()
    push_service.script(push_service.subscription_id(sub), Answer(201, delay=2.0))

    result = await sender.send(target_of(sub), PushMessage(b"x"))
    await sender.aclose()

    assert result.status == 0
    assert result.retryable
    assert result.reason == "network error: ReadTimeout"


async def test_a_scripted_share_of_subscriptions_is_throttled_once_then_delivered(
    push_service: FakePushService, push_sender: WebPushSender
) -> None:
    subs = [push_service.new_subscription() for _ in range(20)]
    push_service.add_rule(429, fraction=0.1, attempts=1, retry_after=30)

    first = [await push_sender.send(target_of(s), PushMessage(b"x")) for s in subs]
    throttled = [s for s, r in zip(subs, first, strict=True) if r.status == 429]
    again = [await push_sender.send(target_of(s), PushMessage(b"x")) for s in throttled]

    assert len(throttled) == 2
    assert all(r.retry_after == 30.0 for r in first if r.status == 429)
    assert all(r.delivered for r in again)
    assert len(push_service.delivered) == 20
