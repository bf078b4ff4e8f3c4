from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pytest

from tests.factories import b64url, browser_keys
from tests.fakes import FakePushSender, FakeUnitOfWork
from tests.unit.conftest import App
from viarah.domain.notifications.delivery import (
    DELIVER_JOB,
    DELIVERY_LEASE,
    MAX_DELIVERY_ATTEMPTS,
    Notifier,
    backoff,
    payload_for,
    topic_for,
)
from viarah.domain.notifications.dispatch import PushDispatcher, notify_and_deliver
from viarah.domain.notifications.model import (
    EVENT_TYPES,
    STATE_CHANGED,
    DeliveryState,
    Preference,
    PushSubscription,
)
from viarah.domain.notifications.push import PushMessage, PushResult, PushTarget
from viarah.domain.notifications.services import (
    NotificationPreferences,
    PushSubscriptions,
)
from viarah.domain.shared.actor import Actor
from viarah.domain.shared.errors import InvalidInput, NotFound, Unavailable
from viarah.domain.shared.ids import new_id
from viarah.domain.shared.outbound import OutboundPolicy

b64 = b64url


@dataclass
class N:
    app: App
    subs: PushSubscriptions
    prefs: NotificationPreferences
    notifier: Notifier
    sender: FakePushSender
    dispatcher: PushDispatcher
    org_id: str
    task_id: str
    admin: Actor
    watcher: Actor
    assignee: Actor

    async def browser(self, actor: Actor, name: str) -> str:
        p256dh, auth = browser_keys()
        sub = await self.subs.subscribe(actor, f"https://push.example.com/{name}", p256dh, auth)
        return sub.id

    def event(self, **extra: Any) -> dict[str, Any]:
        return {
            "event_id": new_id(),
            "event_type": STATE_CHANGED,
            "org_id": self.org_id,
            "task_id": self.task_id,
            "link_id": "link-1",
            "url": "https://gitlab.example.com/g/p/-/issues/1",
            "title": "Crash on login",
            "kind": "issue",
            "old_state": "opened",
            "new_state": "closed",
            **extra,
        }

    async def run_deliver_jobs(self) -> None:
        while jobs := [j for j in self.app.db.jobs if j.name == DELIVER_JOB]:
            self.app.db.jobs = [j for j in self.app.db.jobs if j.name != DELIVER_JOB]
            for job in jobs:
                if job.not_before:
                    self.app.clock.current = max(self.app.clock.current, job.not_before)
                await self.dispatcher.deliver(job.payload["notification_id"])


@pytest.fixture
async def n(app: App) -> N:
    def uow() -> FakeUnitOfWork:
        return FakeUnitOfWork(app.db)

    _, admin = await app.user("admin@example.com")
    _, watcher = await app.user("watcher@example.com")
    _, assignee = await app.user("assignee@example.com")
    org = (await app.orgs.create(admin, "Acme")).org
    await app.memberships.add(admin, org.id, "watcher@example.com", "member")
    await app.memberships.add(admin, org.id, "assignee@example.com", "member")
    project = await app.projects.create(admin, org.id, "P")
    task = await app.tasks.create(
        admin, org.id, project.id, "Fix login", assignee_user_id=assignee.user_id
    )
    await app.tasks.watch(watcher, org.id, task.id)
    sender = FakePushSender()
    return N(
        app=app,
        subs=PushSubscriptions(uow, app.clock, OutboundPolicy(["push.local"])),
        prefs=NotificationPreferences(uow),
        notifier=Notifier(uow, app.clock),
        sender=sender,
        dispatcher=PushDispatcher(uow, app.clock, sender, jitter=lambda: 0.5),
        org_id=org.id,
        task_id=task.id,
        admin=admin,
        watcher=watcher,
        assignee=assignee,
    )


# --- subscriptions ---------------------------------------------------------------------


async def test_subscribe_validates_and_reposting_updates(n: N) -> None:
    p256dh, auth = browser_keys()
    first = await n.subs.subscribe(
        n.watcher, "https://push.example.com/a", p256dh, auth, user_agent="Firefox"
    )
    again = await n.subs.subscribe(
        n.watcher, "https://push.example.com/a", p256dh, auth, user_agent="Firefox 2"
    )
    assert again.id == first.id
    (only,) = await n.subs.list_subscriptions(n.watcher)
    assert only.user_agent == "Firefox 2"
    assert p256dh not in repr(only)
    assert auth not in repr(only)


@pytest.mark.parametrize(
    ("endpoint", "p256dh", "auth", "field"),
    [
        ("http://push.example.com/a", None, None, "endpoint"),
        ("ftp://push.example.com/a", None, None, "endpoint"),
        ("https://169.254.169.254/a", None, None, "endpoint"),
        ("https://127.0.0.1/a", None, None, "endpoint"),
        ("https://user:pw@push.example.com/a", None, None, "endpoint"),
        ("https://push.example.com/a", "not-base64!!", None, "keys.p256dh"),
        ("https://push.example.com/a", b64(b"\x04" + b"\x01" * 64), None, "keys.p256dh"),
        ("https://push.example.com/a", b64(b"\x02" + b"\x01" * 32), None, "keys.p256dh"),
        ("https://push.example.com/a", None, b64(b"short"), "keys.auth"),
    ],
)
async def test_subscribe_names_the_bad_field(
    n: N, endpoint: str, p256dh: str | None, auth: str | None, field: str
) -> None:
    good_p256dh, good_auth = browser_keys()
    with pytest.raises(InvalidInput) as info:
        await n.subs.subscribe(n.watcher, endpoint, p256dh or good_p256dh, auth or good_auth)
    assert info.value.field == field


async def test_http_endpoint_on_allowlisted_host_is_accepted(n: N) -> None:
    p256dh, auth = browser_keys()
    sub = await n.subs.subscribe(n.watcher, "http://push.local:8080/x", p256dh, auth)
    assert sub.endpoint == "http://push.local:8080/x"


async def test_users_see_and_delete_only_their_own(n: N) -> None:
    sub_id = await n.browser(n.watcher, "w1")
    assert await n.subs.list_subscriptions(n.admin) == []
    with pytest.raises(NotFound):
        await n.subs.unsubscribe(n.admin, sub_id)
    await n.subs.unsubscribe(n.watcher, sub_id)
    assert await n.subs.list_subscriptions(n.watcher) == []


# --- preferences -----------------------------------------------------------------------


async def test_preferences_default_on_and_partial_updates(n: N) -> None:
    prefs = await n.prefs.get(n.watcher)
    assert [p.event_type for p in prefs] == list(EVENT_TYPES)
    assert all(p.enabled and p.channel == "push" for p in prefs)
    updated = await n.prefs.update(n.watcher, [Preference(STATE_CHANGED, "push", False)])
    assert {p.event_type: p.enabled for p in updated}[STATE_CHANGED] is False
    assert sum(p.enabled for p in updated) == len(EVENT_TYPES) - 1
    with pytest.raises(InvalidInput) as info:
        await n.prefs.update(n.watcher, [Preference("nope", "push", True)])
    assert info.value.field == "preferences[0].event_type"
    with pytest.raises(InvalidInput):
        await n.prefs.update(n.watcher, [Preference(STATE_CHANGED, "email", True)])


# --- fan-out and delivery --------------------------------------------------------------


async def test_state_change_reaches_every_browser_of_assignee_and_watchers(n: N) -> None:
    await n.browser(n.watcher, "w1")
    await n.browser(n.watcher, "w2")
    await n.browser(n.assignee, "a1")
    await n.browser(n.admin, "admin1")  # not a watcher: hears nothing
    fan = await n.notifier.notify(n.event())
    assert fan.deliveries == 3
    await n.run_deliver_jobs()
    endpoints = sorted(t.endpoint.rsplit("/", 1)[1] for t, _ in n.sender.sent)
    assert endpoints == ["a1", "w1", "w2"]
    _, message = n.sender.sent[0]
    data = json.loads(message.plaintext)
    assert data["title"] == "Issue closed: Crash on login"
    assert "Fix login" in data["body"]
    assert data["task_id"] == n.task_id
    assert data["event_type"] == STATE_CHANGED
    assert message.ttl == 86400
    assert message.topic == topic_for(STATE_CHANGED, "link-1")
    assert message.topic is not None
    assert len(message.topic) <= 32


async def test_an_event_is_delivered_at_once_and_its_job_is_only_a_backstop(n: N) -> None:
    await n.browser(n.watcher, "w1")
    await n.browser(n.assignee, "a1")
    fan = await notify_and_deliver(n.notifier, n.dispatcher, n.event())
    assert fan.deliveries == 2
    assert sorted(t.endpoint.rsplit("/", 1)[1] for t, _ in n.sender.sent) == ["a1", "w1"]
    assert [j.name for j in n.app.db.jobs] == [DELIVER_JOB]  # committed with the fan-out
    await n.run_deliver_jobs()
    assert len(n.sender.sent) == 2  # the backstop found nothing left to send


async def test_an_interrupted_inline_delivery_is_finished_by_the_job(
    n: N, monkeypatch: pytest.MonkeyPatch
) -> None:
    await n.browser(n.watcher, "w1")

    async def broken(notification_id: str) -> dict[str, int]:
        raise ConnectionError("database went away")

    monkeypatch.setattr(n.dispatcher, "deliver", broken)
    fan = await notify_and_deliver(n.notifier, n.dispatcher, n.event())  # logged, not raised
    assert fan.deliveries == 1
    assert n.sender.sent == []
    monkeypatch.undo()
    await n.run_deliver_jobs()
    assert [t.endpoint.rsplit("/", 1)[1] for t, _ in n.sender.sent] == ["w1"]


async def test_preference_off_means_no_message(n: N) -> None:
    await n.browser(n.watcher, "w1")
    await n.prefs.update(n.watcher, [Preference(STATE_CHANGED, "push", False)])
    fan = await n.notifier.notify(n.event())
    assert fan.deliveries == 0
    await n.run_deliver_jobs()
    assert n.sender.sent == []


async def test_retried_fan_out_is_idempotent(n: N) -> None:
    await n.browser(n.watcher, "w1")
    event = n.event()
    await n.notifier.notify(event)
    again = await n.notifier.notify(event)
    assert again.deliveries == 0
    await n.run_deliver_jobs()
    assert len(n.sender.sent) == 1


async def test_gone_subscription_is_deleted(n: N) -> None:
    sub_id = await n.browser(n.watcher, "w1")
    n.sender.script["https://push.example.com/w1"] = [PushResult(410)]
    await n.notifier.notify(n.event())
    await n.run_deliver_jobs()
    assert sub_id not in n.app.db.subscriptions
    (delivery,) = n.app.db.push_deliveries.values()
    assert delivery.status is DeliveryState.GONE


async def test_429_and_5xx_retry_without_resending_to_others(n: N) -> None:
    await n.browser(n.watcher, "ok")
    await n.browser(n.watcher, "busy")
    n.sender.script["https://push.example.com/busy"] = [
        PushResult(429, retry_after=30),
        PushResult(503),
    ]
    await n.notifier.notify(n.event())
    await n.run_deliver_jobs()
    delivered = [t.endpoint.rsplit("/", 1)[1] for t, _ in n.sender.sent]
    assert sorted(delivered) == ["busy", "ok"]  # each exactly once
    busy = next(d for d in n.app.db.push_deliveries.values() if d.attempts == 3)
    assert busy.status is DeliveryState.SENT
    sub = next(s for s in n.app.db.subscriptions.values() if s.endpoint.endswith("busy"))
    assert sub.last_success_at is not None
    assert sub.last_failure_reason == "http 503"


async def test_other_4xx_fails_without_retry(n: N) -> None:
    await n.browser(n.watcher, "w1")
    n.sender.script["https://push.example.com/w1"] = [PushResult(413)]
    await n.notifier.notify(n.event())
    await n.run_deliver_jobs()
    (delivery,) = n.app.db.push_deliveries.values()
    assert delivery.status is DeliveryState.FAILED
    assert delivery.attempts == 1


async def test_retries_give_up_after_max_attempts(n: N) -> None:
    await n.browser(n.watcher, "w1")
    n.sender.script["https://push.example.com/w1"] = [PushResult(500)] * 20
    await n.notifier.notify(n.event())
    await n.run_deliver_jobs()
    (delivery,) = n.app.db.push_deliveries.values()
    assert delivery.status is DeliveryState.FAILED
    assert delivery.attempts == MAX_DELIVERY_ATTEMPTS


async def test_fan_out_to_1000_with_10_percent_429_is_exact(n: N) -> None:
    p256dh, auth = browser_keys()
    now = n.app.clock.now()
    watchers = []
    for w in range(20):  # 20 watchers with 50 browsers each (set up directly: fast)
        user = await n.app.users.create(f"w{w}@example.com", "correct horse")
        await n.app.memberships.add(n.admin, n.org_id, user.email, "member")
        await n.app.tasks.watch(Actor(user_id=user.id), n.org_id, n.task_id)
        watchers.append(user.id)
    for i in range(1000):
        endpoint = f"https://push.example.com/{i}"
        n.app.db.subscriptions[f"s{i:04d}"] = PushSubscription(
            f"s{i:04d}", watchers[i % 20], endpoint, p256dh, auth, None, None, now, now
        )
        if i % 10 == 0:
            n.sender.script[endpoint] = [PushResult(429, retry_after=1)]
    fan = await n.notifier.notify(n.event())
    assert fan.deliveries == 1000
    await n.run_deliver_jobs()
    endpoints = [t.endpoint for t, _ in n.sender.sent]
    assert len(endpoints) == 1000
    assert len(set(endpoints)) == 1000
    states = {d.status for d in n.app.db.push_deliveries.values()}
    assert states == {DeliveryState.SENT}


def test_payload_limit_and_backoff() -> None:
    delays = [backoff(a, None, lambda: 0.5).total_seconds() for a in range(1, 12)]
    assert delays[:4] == [1.0, 2.0, 4.0, 8.0]
    assert max(delays) == 600
    assert backoff(1, 90, lambda: 0.5).total_seconds() == 90


async def test_oversized_payload_is_refused_before_sending(n: N) -> None:
    await n.browser(n.watcher, "w1")
    fan = await n.notifier.notify(n.event())
    assert fan.notification is not None
    from dataclasses import replace

    huge = replace(fan.notification, body="x" * 5000)
    with pytest.raises(InvalidInput, match="3993"):
        payload_for(huge)


class SlowPushService(FakePushSender):
    """Every answer takes ``seconds`` of the app's clock (a push service that crawls)."""

    def __init__(self, app: App, seconds: float) -> None:
        super().__init__()
        self._app = app
        self._seconds = seconds

    async def send(self, target: PushTarget, message: PushMessage) -> PushResult:
        self._app.clock.advance(seconds=self._seconds)
        return await super().send(target, message)


async def test_no_send_starts_after_the_lease_margin_and_the_rest_follows_later(n: N) -> None:
    for name in ("b0", "b1", "b2", "b3", "b4"):
        await n.browser(n.watcher, name)
    slow = SlowPushService(n.app, seconds=40)
    dispatcher = PushDispatcher(
        lambda: FakeUnitOfWork(n.app.db), n.app.clock, slow, concurrency=1, jitter=lambda: 0.5
    )
    claimed_at = n.app.clock.now()
    fan = await n.notifier.notify(n.event())
    assert fan.notification is not None

    await dispatcher.deliver(fan.notification.id)

    # 2 min lease, no start in its last 30 s: sends start at +0, +40 s, +80 s; not +120 s.
    assert len(slow.sent) == 3
    pending = [d for d in n.app.db.push_deliveries.values() if d.status is DeliveryState.PENDING]
    assert len(pending) == 2
    assert all(d.attempts == 0 for d in pending)
    follow_up = [j for j in n.app.db.jobs if j.name == DELIVER_JOB][-1]
    assert follow_up.not_before == claimed_at + DELIVERY_LEASE  # due again when it ends

    n.app.clock.current = follow_up.not_before
    await dispatcher.deliver(fan.notification.id)
    assert len(slow.sent) == 5
    assert len({t.endpoint for t, _ in slow.sent}) == 5  # nobody got it twice


async def test_outcomes_of_a_mixed_batch_are_recorded_per_subscription(n: N) -> None:
    names = ["ok", "gone", "busy", "bad"]
    ids = {name: await n.browser(n.watcher, name) for name in names}
    n.sender.script["https://push.example.com/gone"] = [PushResult(410)]
    n.sender.script["https://push.example.com/busy"] = [PushResult(503, reason="busy")]
    n.sender.script["https://push.example.com/bad"] = [PushResult(400, reason="rejected: no")]
    fan = await n.notifier.notify(n.event())
    assert fan.notification is not None

    counts = await n.dispatcher.deliver(fan.notification.id)

    assert counts == {"sent": 1, "gone": 1, "retry": 1, "failed": 1}
    subs = n.app.db.subscriptions
    assert ids["gone"] not in subs
    assert subs[ids["ok"]].last_success_at == n.app.clock.now()
    assert subs[ids["ok"]].last_failure_at is None
    assert subs[ids["busy"]].last_failure_reason == "busy"
    assert subs[ids["bad"]].last_failure_reason == "rejected: no"
    by_sub = {d.subscription_id: d for d in n.app.db.push_deliveries.values()}
    assert by_sub[ids["busy"]].status is DeliveryState.PENDING
    assert by_sub[ids["busy"]].attempts == 1
    assert by_sub[ids["busy"]].last_status == 503
    assert by_sub[ids["bad"]].status is DeliveryState.FAILED
    assert by_sub[ids["gone"]].status is DeliveryState.GONE
    assert by_sub[ids["ok"]].status is DeliveryState.SENT


class InFlightPushService(FakePushSender):
    """Answers after a few turns of the event loop; notes how many sends were already in
    flight when each one started."""

    def __init__(self) -> None:
        super().__init__()
        self.in_flight = 0
        self.seen: list[int] = []

    async def send(self, target: PushTarget, message: PushMessage) -> PushResult:
        self.seen.append(self.in_flight)
        self.in_flight += 1
        try:
            for _ in range(3):
                await asyncio.sleep(0)
            return await super().send(target, message)
        finally:
            self.in_flight -= 1


def add_browsers(n: N, count: int) -> None:
    """``count`` subscriptions of the watcher, set up directly (fast)."""
    p256dh, auth = browser_keys()
    now = n.app.clock.now()
    for i in range(count):
        n.app.db.subscriptions[f"s{i:05d}"] = PushSubscription(
            f"s{i:05d}",
            n.watcher.user_id,
            f"https://push.example.com/{i}",
            p256dh,
            auth,
            None,
            None,
            now,
            now,
        )


async def fan_out_to_browsers(
    n: N, count: int, uow: type[FakeUnitOfWork] = FakeUnitOfWork
) -> tuple[InFlightPushService, PushDispatcher, str]:
    """``count`` browsers of the watcher, a dispatcher with 4 senders on ``uow``, and the
    id of a notification fanned out to them all."""
    add_browsers(n, count)
    service = InFlightPushService()
    dispatcher = PushDispatcher(lambda: uow(n.app.db), n.app.clock, service, concurrency=4)
    fan = await n.notifier.notify(n.event())
    assert fan.notification is not None
    return service, dispatcher, fan.notification.id


async def test_later_claims_follow_on_without_a_pause(n: N) -> None:
    service, dispatcher, notification_id = await fan_out_to_browsers(n, 40)

    counts = await dispatcher.deliver(notification_id)

    # The first claim holds 8 (2 per sender); the other 32 come from the next claim. The
    # connections never all fall idle in between: only the very first send started alone.
    assert counts == {"sent": 40}
    assert len(service.seen) == 40
    assert service.seen.count(0) == 1
    assert max(service.seen) == 3


async def test_a_fan_out_of_several_claims_reaches_everyone_once(n: N) -> None:
    add_browsers(n, 2_600)  # the first claim, then 1,000 + 1,000 + the rest
    fan = await n.notifier.notify(n.event())
    assert fan.notification is not None

    counts = await n.dispatcher.deliver(fan.notification.id)

    assert counts == {"sent": 2_600}
    endpoints = [t.endpoint for t, _ in n.sender.sent]
    assert len(set(endpoints)) == len(endpoints) == 2_600
    states = {d.status for d in n.app.db.push_deliveries.values()}
    assert states == {DeliveryState.SENT}
    assert not [j for j in n.app.db.jobs if j.name == DELIVER_JOB and j.not_before is None]


class FirstRecordFails(FakeUnitOfWork):
    """Units of work whose first ``mark_sent`` fails (the database away for a moment)."""

    failures = 1

    def _open(self) -> None:
        super()._open()
        mark_sent = self.push_deliveries.mark_sent

        async def failing(delivery_ids: list[str], now: datetime, status: int) -> None:
            if FirstRecordFails.failures:
                FirstRecordFails.failures -= 1
                raise Unavailable("the database is unavailable")
            await mark_sent(delivery_ids, now, status)

        self.push_deliveries.mark_sent = failing  # type: ignore[method-assign]


async def test_a_failed_record_stops_sending_and_nothing_is_sent_twice(n: N) -> None:
    service, dispatcher, notification_id = await fan_out_to_browsers(n, 600, FirstRecordFails)

    with pytest.raises(Unavailable):
        await dispatcher.deliver(notification_id)

    # Sending stopped soon after the first 250 answers; every answer, those of the failed
    # recording included, was written once the database answered again.
    sent_first = len(service.sent)
    assert 250 <= sent_first < 300
    deliveries = n.app.db.push_deliveries.values()
    assert sum(d.status is DeliveryState.SENT for d in deliveries) == sent_first
    # The job's retry, once the claims of the others have run out, sends only the rest.
    n.app.clock.advance(seconds=DELIVERY_LEASE.total_seconds())
    await dispatcher.deliver(notification_id)
    endpoints = [t.endpoint for t, _ in service.sent]
    assert len(endpoints) == len(set(endpoints)) == 600
