"""What the notifications context needs from the outside world."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple, Protocol

from viarah.domain.notifications.model import Notification, PushDelivery, PushSubscription
from viarah.domain.shared.ids import OrgId, UserId
from viarah.domain.shared.uow import UnitOfWork


@dataclass(frozen=True, slots=True)
class TaskAudience:
    """Who hears about a task: its assignee and watchers (members of the org only)."""

    title: str
    project_id: str
    recipients: list[UserId]


class Audience(Protocol):
    """Facts owned by the orgs context."""

    async def for_task(self, org_id: OrgId, task_id: str) -> TaskAudience | None: ...

    async def members(self, org_id: OrgId, user_ids: list[UserId]) -> list[UserId]:
        """The subset of ``user_ids`` that are still members of the org."""
        ...


class SubscriptionRepository(Protocol):
    async def upsert(self, subscription: PushSubscription) -> PushSubscription:
        """Insert, or update the row with the same endpoint (keeping its id)."""
        ...

    async def get(self, subscription_id: str) -> PushSubscription | None: ...

    async def list_for_user(self, user_id: UserId) -> list[PushSubscription]: ...

    async def for_users(self, user_ids: list[UserId]) -> list[PushSubscription]: ...

    async def delete(self, subscription_id: str) -> None: ...

    async def delete_many(self, subscription_ids: list[str]) -> None: ...

    async def record_outcomes(
        self, now: datetime, *, succeeded: list[str], failed: list[tuple[str, str]]
    ) -> None:
        """``last_success_at = now`` for the ``succeeded`` ids; ``last_failure_at = now``
        and ``last_failure_reason`` for each ``(id, reason)`` in ``failed``."""
        ...


class PreferenceRepository(Protocol):
    async def for_user(self, user_id: UserId) -> dict[str, bool]:
        """Stored choices ``event_type → enabled`` (absent means the default: on)."""
        ...

    async def put(self, user_id: UserId, event_type: str, channel: str, enabled: bool) -> None: ...

    async def opted_out(
        self, event_type: str, channel: str, user_ids: list[UserId]
    ) -> set[UserId]: ...


class RetryLater(NamedTuple):
    """A delivery attempt that failed and is tried again at ``next_attempt_at``."""

    delivery_id: str
    next_attempt_at: datetime
    status: int
    error: str


class GiveUp(NamedTuple):
    """A delivery attempt after which the delivery is never attempted again."""

    delivery_id: str
    state: str  # failed | gone
    status: int
    error: str


class NotificationRepository(Protocol):
    async def add(self, notification: Notification) -> bool:
        """False (nothing stored) when a notification for the same event_key exists."""
        ...

    async def get(self, notification_id: str) -> Notification | None: ...

    async def by_event_key(self, event_key: str) -> Notification | None: ...


class PushDeliveryRepository(Protocol):
    async def add_many(self, deliveries: list[PushDelivery]) -> int:
        """Insert; a (notification, subscription) pair that exists is skipped."""
        ...

    async def claim_due(
        self, notification_id: str, now: datetime, lease_until: datetime, limit: int
    ) -> list[tuple[PushDelivery, PushSubscription]]:
        """Take pending deliveries whose next attempt is due (with their subscriptions),
        moving their next attempt to ``lease_until`` so no concurrent sender takes them."""
        ...

    async def next_pending_at(self, notification_id: str) -> datetime | None: ...

    async def mark_sent(self, delivery_ids: list[str], now: datetime, status: int) -> None: ...

    async def mark_retry(self, retries: list[RetryLater]) -> None:
        """Count the attempt, record its answer and when to try again."""
        ...

    async def mark_final(self, outcomes: list[GiveUp]) -> None:
        """Count the attempt, record its answer and the state: ``failed`` or ``gone``;
        never attempted again."""
        ...

    async def counts(self, notification_id: str) -> dict[str, int]: ...


class NotificationsUnitOfWork(UnitOfWork, Protocol):
    push_subscriptions: SubscriptionRepository
    preferences: PreferenceRepository
    notifications: NotificationRepository
    push_deliveries: PushDeliveryRepository
    audience: Audience
