"""Delivering notifications: one event becomes one message per recipient browser, sent
exactly once per subscription, retried with backoff when the push service asks."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from viarah.domain.notifications.model import (
    AUTH_FAILED,
    CHANNEL_PUSH,
    EVENT_TYPES,
    STATE_CHANGED,
    TOKEN_EXPIRING,
    DeliveryState,
    Notification,
    PushDelivery,
)
from viarah.domain.notifications.ports import NotificationsUnitOfWork
from viarah.domain.notifications.push import (
    MAX_PLAINTEXT_BYTES,
)
from viarah.domain.shared.clock import Clock
from viarah.domain.shared.errors import InvalidInput
from viarah.domain.shared.ids import OrgId, UserId, new_id
from viarah.domain.shared.jobs import Job

log = logging.getLogger("viarah.notifications")
UowFactory = Callable[[], NotificationsUnitOfWork]
DELIVER_JOB = "push.deliver"
MAX_DELIVERY_ATTEMPTS = 8
#: A claimed delivery not recorded within this time (worker died) is due again.
DELIVERY_LEASE = timedelta(minutes=2)


def topic_for(*parts: str) -> str:
    """A ≤ 32-char base64url Topic: a newer message on it replaces an undelivered older one."""
    digest = hashlib.sha256("|".join(parts).encode()).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")[:32]


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


_STATE_WORDS = {
    "closed": "closed",
    "merged": "merged",
    "opened": "reopened",
    "reopened": "reopened",
}


def describe(event: Mapping[str, Any], task_title: str | None) -> tuple[str, str, str, str | None]:
    """(title, body, url, topic) of the message for one event."""
    event_type = str(event.get("event_type"))
    if event_type == STATE_CHANGED:
        kind = "Merge request" if event.get("kind") == "mr" else "Issue"
        state = _STATE_WORDS.get(str(event.get("new_state")), str(event.get("new_state")))
        title = f"{kind} {state}: {_shorten(str(event.get('title') or ''), 120)}"
        body = f"Linked to task “{_shorten(task_title or '', 200)}”"
        return (
            title,
            body,
            str(event.get("url") or "/"),
            topic_for(event_type, str(event.get("link_id"))),
        )
    if event_type == AUTH_FAILED:
        return (
            "GitLab rejects ViaRah's token",
            f"Refreshes from {event.get('base_url')} are paused until a working token is saved.",
            "/",
            topic_for(event_type, str(event.get("org_id"))),
        )
    if event_type == TOKEN_EXPIRING:
        return (
            f"GitLab token expires in {event.get('days')} days",
            f"Replace the token before {event.get('expires_at')} to keep links fresh.",
            "/",
            topic_for(event_type, str(event.get("org_id"))),
        )
    raise InvalidInput("event_type", f"no message for event type {event_type!r}")


@dataclass(frozen=True, slots=True)
class FanOut:
    notification: Notification | None
    deliveries: int


class Notifier:
    """Turns a domain event into one notification and one delivery per recipient browser."""

    def __init__(self, uow: UowFactory, clock: Clock) -> None:
        self._uow = uow
        self._clock = clock

    async def notify(self, event: Mapping[str, Any]) -> FanOut:
        """Idempotent per ``event_id``: a retried job adds no second message."""
        event_type = str(event.get("event_type", ""))
        org_id = OrgId(str(event.get("org_id", "")))
        event_key = str(event.get("event_id") or "")
        if event_type not in EVENT_TYPES or not event_key:
            raise InvalidInput("event_type", f"not a notification event: {event_type!r}")
        now = self._clock.now()
        async with self._uow() as uow:
            task_id = str(event["task_id"]) if event.get("task_id") else None
            task_title: str | None = None
            if task_id is not None:
                audience = await uow.audience.for_task(org_id, task_id)
                if audience is None:
                    return FanOut(None, 0)  # the task is gone
                recipients, task_title = audience.recipients, audience.title
            else:
                wanted = [UserId(str(u)) for u in event.get("recipients", [])]
                recipients = await uow.audience.members(org_id, wanted)
            opted_out = await uow.preferences.opted_out(event_type, CHANNEL_PUSH, recipients)
            recipients = [r for r in dict.fromkeys(recipients) if r not in opted_out]
            title, body, url, topic = describe(event, task_title)
            notification = Notification(
                id=new_id(),
                event_key=event_key,
                event_type=event_type,
                org_id=org_id,
                task_id=task_id,
                title=title,
                body=body,
                url=url,
                topic=topic,
                urgency="normal",
                created_at=now,
            )
            if not await uow.notifications.add(notification):
                existing = await uow.notifications.by_event_key(event_key)
                assert existing is not None
                notification = existing
            subscriptions = await uow.push_subscriptions.for_users(recipients) if recipients else []
            added = await uow.push_deliveries.add_many(
                [
                    PushDelivery(
                        id=new_id(),
                        notification_id=notification.id,
                        subscription_id=s.id,
                        status=DeliveryState.PENDING,
                        attempts=0,
                        next_attempt_at=now,
                        last_status=None,
                        last_error=None,
                        sent_at=None,
                    )
                    for s in subscriptions
                ]
            )
            if subscriptions:
                # The backstop of notify_and_deliver, which sends at once: due when that
                # delivery's claims would have expired, so the two never run side by side.
                uow.outbox.add(
                    Job(
                        DELIVER_JOB,
                        {"notification_id": notification.id},
                        not_before=now + DELIVERY_LEASE,
                    )
                )
            await uow.commit()
        log.info(
            "notification.fanned_out type=%s recipients=%d deliveries=%d",
            event_type,
            len(recipients),
            added,
        )
        return FanOut(notification, added)


def payload_for(notification: Notification) -> bytes:
    """The JSON the service worker receives; refused if over RFC 8291's 3993 bytes."""
    data = json.dumps(
        {
            "title": notification.title,
            "body": notification.body,
            "url": notification.url,
            "event_type": notification.event_type,
            "org_id": notification.org_id,
            "task_id": notification.task_id,
        },
        ensure_ascii=False,
        separators=(",", ":"),
    ).encode()
    if len(data) > MAX_PLAINTEXT_BYTES:
        raise InvalidInput(
            "payload", f"is {len(data)} bytes; Web Push allows {MAX_PLAINTEXT_BYTES}"
        )
    return data


def backoff(attempts: int, retry_after: float | None, jitter: Callable[[], float]) -> timedelta:
    """Exponential backoff with jitter (1 s, 2 s, 4 s … ≤ 10 min), never before Retry-After."""
    base = min(600.0, 2.0 ** max(0, attempts - 1))
    delay = base * (0.5 + jitter())
    return timedelta(seconds=max(delay, retry_after or 0.0))
