"""Notification use cases on the SQL adapters (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.factories import browser_keys
from tests.fakes import FakePasswordHasher, FakePushSender
from viarah.adapters.db.engine import create_engine
from viarah.adapters.db.native import NativePool, native_pool_for
from viarah.adapters.db.uow import SqlUnitOfWork
from viarah.domain.identity.services import Users
from viarah.domain.notifications.delivery import Notifier
from viarah.domain.notifications.dispatch import PushDispatcher
from viarah.domain.notifications.model import STATE_CHANGED, Preference
from viarah.domain.notifications.push import PushResult
from viarah.domain.notifications.services import (
    NotificationPreferences,
    PushSubscriptions,
)
from viarah.domain.orgs.services import Memberships, Organizations, Projects, Tasks
from viarah.domain.shared.actor import Actor
from viarah.domain.shared.clock import SystemClock
from viarah.domain.shared.ids import new_id
from viarah.domain.shared.outbound import OutboundPolicy


@dataclass
class World:
    engine: AsyncEngine
    native: NativePool | None
    subs: PushSubscriptions
    prefs: NotificationPreferences
    notifier: Notifier
    sender: FakePushSender
    dispatcher: PushDispatcher
    org_id: str
    task_id: str
    watcher: Actor
    admin: Actor

    def event(self) -> dict[str, object]:
        return {
            "event_id": new_id(),
            "event_type": STATE_CHANGED,
            "org_id": self.org_id,
            "task_id": self.task_id,
            "link_id": "l1",
            "url": "https://gitlab.example.com/g/p/-/issues/1",
            "title": "Crash",
            "kind": "issue",
            "old_state": "opened",
            "new_state": "closed",
        }


@pytest.fixture
async def world(database_url: str) -> AsyncIterator[World]:
    engine = create_engine(database_url)
    native = native_pool_for(engine, size=4)
    clock = SystemClock()

    def uow() -> SqlUnitOfWork:
        return SqlUnitOfWork(engine, clock, native=native)

    users = Users(uow, clock, FakePasswordHasher())
    admin_user = await users.create("admin@example.com", "correct horse")
    watcher_user = await users.create("watcher@example.com", "correct horse")
    admin, watcher = Actor(user_id=admin_user.id), Actor(user_id=watcher_user.id)
    org = (await Organizations(uow, clock).create(admin, "Acme")).org
    await Memberships(uow, clock).add(admin, org.id, "watcher@example.com", "member")
    project = await Projects(uow, clock).create(admin, org.id, "P")
    tasks = Tasks(uow, clock)
    task = await tasks.create(admin, org.id, project.id, "Fix login")
    await tasks.watch(watcher, org.id, task.id)
    sender = FakePushSender()
    yield World(
        engine=engine,
        native=native,
        subs=PushSubscriptions(uow, clock, OutboundPolicy()),
        prefs=NotificationPreferences(uow),
        notifier=Notifier(uow, clock),
        sender=sender,
        dispatcher=PushDispatcher(uow, clock, sender, jitter=lambda: 0.0),
        org_id=org.id,
        task_id=task.id,
        watcher=watcher,
        admin=admin,
    )
    if native is not None:
        await native.close()
    await engine.dispose()


async def test_subscriptions_upsert_by_endpoint(world: World) -> None:
    p256dh, auth = browser_keys()
    first = await world.subs.subscribe(world.watcher, "https://push.example.com/x", p256dh, auth)
    p256dh2, auth2 = browser_keys()
    again = await world.subs.subscribe(
        world.watcher, "https://push.example.com/x", p256dh2, auth2, user_agent="UA"
    )
    assert again.id == first.id
    (stored,) = await world.subs.list_subscriptions(world.watcher)
    assert stored.p256dh == p256dh2
    assert stored.user_agent == "UA"
    # The same browser used by another account moves to that account.
    moved = await world.subs.subscribe(world.admin, "https://push.example.com/x", p256dh2, auth2)
    assert moved.id == first.id
    assert await world.subs.list_subscriptions(world.watcher) == []


async def test_preferences_round_trip(world: World) -> None:
    await world.prefs.update(world.watcher, [Preference(STATE_CHANGED, "push", False)])
    await world.prefs.update(world.watcher, [Preference(STATE_CHANGED, "push", False)])
    prefs = {p.event_type: p.enabled for p in await world.prefs.get(world.watcher)}
    assert prefs[STATE_CHANGED] is False
    fan = await world.notifier.notify(world.event())
    assert fan.deliveries == 0


async def test_fan_out_delivery_and_retry_on_sql(world: World) -> None:
    p256dh, auth = browser_keys()
    for name in ("a", "b", "c"):
        await world.subs.subscribe(world.watcher, f"https://push.example.com/{name}", p256dh, auth)
    world.sender.script["https://push.example.com/b"] = [PushResult(429, retry_after=0)]
    world.sender.script["https://push.example.com/c"] = [PushResult(410)]
    event = world.event()
    fan = await world.notifier.notify(event)
    assert fan.deliveries == 3
    assert (await world.notifier.notify(event)).deliveries == 0
    assert fan.notification is not None
    first = await world.dispatcher.deliver(fan.notification.id)
    assert first == {"sent": 1, "retry": 1, "gone": 1}
    await asyncio.sleep(1.1)  # the retry's backoff (1 s with no jitter)
    second = await world.dispatcher.deliver(fan.notification.id)
    assert second == {"sent": 1}
    sent = sorted(target.endpoint for target, _ in world.sender.sent)
    assert sent == ["https://push.example.com/a", "https://push.example.com/b"]
    remaining = await world.subs.list_subscriptions(world.watcher)
    assert sorted(s.endpoint for s in remaining) == sent
    assert all(s.last_success_at is not None for s in remaining)


async def test_concurrent_dispatchers_never_double_send(world: World) -> None:
    p256dh, auth = browser_keys()
    for n in range(40):
        await world.subs.subscribe(world.watcher, f"https://push.example.com/{n}", p256dh, auth)
    fan = await world.notifier.notify(world.event())
    assert fan.notification is not None
    await asyncio.gather(*(world.dispatcher.deliver(fan.notification.id) for _ in range(4)))
    endpoints = [target.endpoint for target, _ in world.sender.sent]
    assert len(endpoints) == 40
    assert len(set(endpoints)) == 40


async def test_lease_expiry_makes_a_claimed_delivery_due_again(world: World) -> None:
    p256dh, auth = browser_keys()
    await world.subs.subscribe(world.watcher, "https://push.example.com/a", p256dh, auth)
    fan = await world.notifier.notify(world.event())
    assert fan.notification is not None
    clock = SystemClock()
    async with SqlUnitOfWork(world.engine, clock, native=world.native) as uow:
        now = clock.now()
        claimed = await uow.push_deliveries.claim_due(
            fan.notification.id, now, now + timedelta(minutes=2), 10
        )
        again = await uow.push_deliveries.claim_due(
            fan.notification.id, now, now + timedelta(minutes=2), 10
        )
        later = await uow.push_deliveries.claim_due(
            fan.notification.id, now + timedelta(minutes=3), now + timedelta(minutes=5), 10
        )
        await uow.commit()
    assert len(claimed) == 1
    assert again == []
    assert len(later) == 1
