"""In-memory notification repositories and a scripted push sender."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from datetime import datetime

from tests.fakes.memory import _Repo
from viarah.domain.notifications.model import (
    DeliveryState,
    Notification,
    PushDelivery,
    PushSubscription,
)
from viarah.domain.notifications.ports import GiveUp, RetryLater, TaskAudience
from viarah.domain.notifications.push import PushMessage, PushResult, PushTarget
from viarah.domain.shared.ids import OrgId, TaskId, UserId


class FakeSubscriptions(_Repo):
    async def upsert(self, subscription: PushSubscription) -> PushSubscription:
        for existing in self.db.subscriptions.values():
            if existing.endpoint == subscription.endpoint:
                updated = replace(subscription, id=existing.id, created_at=existing.created_at)
                self.db.subscriptions[existing.id] = updated
                return updated
        self.db.subscriptions[subscription.id] = subscription
        return subscription

    async def get(self, subscription_id: str) -> PushSubscription | None:
        return self.db.subscriptions.get(subscription_id)

    async def list_for_user(self, user_id: UserId) -> list[PushSubscription]:
        return sorted(
            (s for s in self.db.subscriptions.values() if s.user_id == user_id),
            key=lambda s: (s.created_at, s.id),
        )

    async def for_users(self, user_ids: list[UserId]) -> list[PushSubscription]:
        return [s for s in self.db.subscriptions.values() if s.user_id in set(user_ids)]

    async def delete(self, subscription_id: str) -> None:
        self.db.subscriptions.pop(subscription_id, None)

    async def delete_many(self, subscription_ids: list[str]) -> None:
        for subscription_id in subscription_ids:
            self.db.subscriptions.pop(subscription_id, None)

    async def record_outcomes(
        self, now: datetime, *, succeeded: list[str], failed: list[tuple[str, str]]
    ) -> None:
        for subscription_id in succeeded:
            sub = self.db.subscriptions.get(subscription_id)
            if sub is not None:
                self.db.subscriptions[sub.id] = replace(sub, last_success_at=now)
        for subscription_id, reason in failed:
            sub = self.db.subscriptions.get(subscription_id)
            if sub is not None:
                self.db.subscriptions[sub.id] = replace(
                    sub, last_failure_at=now, last_failure_reason=reason
                )


class FakePreferences(_Repo):
    async def for_user(self, user_id: UserId) -> dict[str, bool]:
        return {e: v for (u, e, _c), v in self.db.preferences.items() if u == user_id}

    async def put(self, user_id: UserId, event_type: str, channel: str, enabled: bool) -> None:
        self.db.preferences[(user_id, event_type, channel)] = enabled

    async def opted_out(self, event_type: str, channel: str, user_ids: list[UserId]) -> set[UserId]:
        return {u for u in user_ids if self.db.preferences.get((u, event_type, channel)) is False}


class FakeNotifications(_Repo):
    async def add(self, notification: Notification) -> bool:
        if await self.by_event_key(notification.event_key) is not None:
            return False
        self.db.notifications[notification.id] = notification
        return True

    async def get(self, notification_id: str) -> Notification | None:
        return self.db.notifications.get(notification_id)

    async def by_event_key(self, event_key: str) -> Notification | None:
        return next((n for n in self.db.notifications.values() if n.event_key == event_key), None)


class FakePushDeliveries(_Repo):
    async def add_many(self, deliveries: list[PushDelivery]) -> int:
        pairs = {(d.notification_id, d.subscription_id) for d in self.db.push_deliveries.values()}
        added = 0
        for delivery in deliveries:
            if (delivery.notification_id, delivery.subscription_id) not in pairs:
                self.db.push_deliveries[delivery.id] = delivery
                added += 1
        return added

    async def claim_due(
        self, notification_id: str, now: datetime, lease_until: datetime, limit: int
    ) -> list[tuple[PushDelivery, PushSubscription]]:
        due = []
        for d in sorted(self.db.push_deliveries.values(), key=lambda d: d.id):
            if (
                d.notification_id == notification_id
                and d.status is DeliveryState.PENDING
                and d.next_attempt_at <= now
                and d.subscription_id in self.db.subscriptions
            ):
                if len(due) == limit:
                    break
                self.db.push_deliveries[d.id] = replace(d, next_attempt_at=lease_until)
                due.append((d, self.db.subscriptions[d.subscription_id]))
        return due

    async def next_pending_at(self, notification_id: str) -> datetime | None:
        times = [
            d.next_attempt_at
            for d in self.db.push_deliveries.values()
            if d.notification_id == notification_id
            and d.status is DeliveryState.PENDING
            and d.subscription_id in self.db.subscriptions
        ]
        return min(times) if times else None

    async def mark_sent(self, delivery_ids: list[str], now: datetime, status: int) -> None:
        for delivery_id in delivery_ids:
            d = self.db.push_deliveries[delivery_id]
            self.db.push_deliveries[delivery_id] = replace(
                d,
                status=DeliveryState.SENT,
                attempts=d.attempts + 1,
                sent_at=now,
                last_status=status,
            )

    async def mark_retry(self, retries: list[RetryLater]) -> None:
        for r in retries:
            d = self.db.push_deliveries[r.delivery_id]
            self.db.push_deliveries[r.delivery_id] = replace(
                d,
                attempts=d.attempts + 1,
                next_attempt_at=r.next_attempt_at,
                last_status=r.status,
                last_error=r.error,
            )

    async def mark_final(self, outcomes: list[GiveUp]) -> None:
        for o in outcomes:
            d = self.db.push_deliveries[o.delivery_id]
            self.db.push_deliveries[o.delivery_id] = replace(
                d,
                status=DeliveryState(o.state),
                attempts=d.attempts + 1,
                last_status=o.status,
                last_error=o.error,
            )

    async def counts(self, notification_id: str) -> dict[str, int]:
        return dict(
            Counter(
                d.status.value
                for d in self.db.push_deliveries.values()
                if d.notification_id == notification_id
            )
        )


class FakeAudience(_Repo):
    async def for_task(self, org_id: OrgId, task_id: str) -> TaskAudience | None:
        task = self.db.tasks.get(TaskId(task_id))
        if task is None or task.org_id != org_id:
            return None
        people = [task.assignee_user_id] if task.assignee_user_id else []
        people += sorted(UserId(u) for t, u in self.db.watchers if t == task_id)
        return TaskAudience(task.title, task.project_id, await self.members(org_id, people))

    async def members(self, org_id: OrgId, user_ids: list[UserId]) -> list[UserId]:
        member_ids = {m.user_id for m in self.db.memberships.values() if m.org_id == org_id}
        return [u for u in dict.fromkeys(user_ids) if u in member_ids]


class FakePushSender:
    """Records what would be sent; answers from a script (default 201)."""

    def __init__(self, enabled: bool = True) -> None:
        self._enabled = enabled
        self.sent: list[tuple[PushTarget, PushMessage]] = []
        self.script: dict[str, list[PushResult]] = {}

    @property
    def enabled(self) -> bool:
        return self._enabled

    @property
    def public_key(self) -> str:
        return "BPublicKey"

    async def send(self, target: PushTarget, message: PushMessage) -> PushResult:
        if not self._enabled:
            return PushResult(0, reason="push disabled")
        answers = self.script.get(target.endpoint)
        result = answers.pop(0) if answers else PushResult(201)
        if result.delivered:
            self.sent.append((target, message))
        return result
