"""Delivering notifications: one event becomes one message per recipient browser, sent
exactly once per subscription, retried with backoff when the push service asks."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
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
    PushSubscription,
)
from viarah.domain.notifications.ports import GiveUp, NotificationsUnitOfWork, RetryLater
from viarah.domain.notifications.push import (
    MAX_PLAINTEXT_BYTES,
    PushMessage,
    PushResult,
    PushSender,
    PushTarget,
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
#: Deliveries claimed at once (one statement), and answers recorded per transaction.
BATCH = 1000
RECORD_EVERY = 250
#: No message of a claimed batch is sent later than this before its lease ends: longer
#: than one send can take (the push transport's pool, connect and read timeouts, and
#: one resend on a fresh connection), so a lease never ends while a send is in flight.
SEND_MARGIN = timedelta(seconds=30)
#: Messages in flight at once (the push transport keeps as many connections per origin).
#: Sending is CPU-bound in the worker (encryption): 64 in flight hide the push service's
#: round trip (64 / 50 ms = 1,280 messages/s) and the scheduling delays of a busy machine;
#: the transport's cost per message does not grow with its connections.
CONCURRENCY = 64


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


async def notify_and_deliver(
    notifier: Notifier, dispatcher: PushDispatcher, event: Mapping[str, Any]
) -> FanOut:
    """Fan an event out, then send its messages at once, in this worker.

    The ``push.deliver`` job committed with the fan-out is the backstop, due when this
    delivery's claims would have expired: it finds nothing due when this finished, and
    sends what is left when this was interrupted (a crash, the database away). Sending
    here saves the relay and broker round trip before the first message (the latency a
    user waits for); a failure to send here is logged, never raised, so the event is not
    processed again for it.
    """
    fan_out = await notifier.notify(event)
    if fan_out.notification is not None and fan_out.deliveries:
        try:
            await dispatcher.deliver(fan_out.notification.id)
        except Exception as exc:  # the push.deliver job sends what is left
            log.warning(
                "push.inline_delivery_failed notification=%s error=%s",
                fan_out.notification.id,
                type(exc).__name__,
            )
    return fan_out


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


class PushDispatcher:
    """Sends a notification's due deliveries; each subscription gets it at most once."""

    def __init__(
        self,
        uow: UowFactory,
        clock: Clock,
        sender: PushSender,
        *,
        concurrency: int = CONCURRENCY,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self._uow = uow
        self._clock = clock
        self._sender = sender
        self._concurrency = concurrency
        self._jitter = jitter

    async def deliver(self, notification_id: str) -> dict[str, int]:
        """Send every due delivery once; schedule a follow-up job for retries."""
        async with self._uow() as uow:
            notification = await uow.notifications.get(notification_id)
        if notification is None:
            return {}
        message = PushMessage(
            plaintext=payload_for(notification),
            topic=notification.topic,
            urgency=notification.urgency,
        )
        outcome: dict[str, int] = {}
        # A small first claim gets the first messages out at once; each further claim
        # runs while the previous batch is being sent.
        batch, lease_until = await self._claim(notification_id, 2 * self._concurrency)
        while batch:
            following = asyncio.create_task(self._claim(notification_id, BATCH))
            try:
                await self._send_all(message, batch, lease_until - SEND_MARGIN, outcome)
            except BaseException:
                following.cancel()
                raise
            batch, lease_until = await following
        await self._schedule_follow_up(notification_id)
        return outcome

    async def _claim(
        self, notification_id: str, limit: int
    ) -> tuple[list[tuple[PushDelivery, PushSubscription]], datetime]:
        """Up to ``limit`` due deliveries, leased to this dispatcher, and the lease's end."""
        now = self._clock.now()
        lease_until = now + DELIVERY_LEASE
        async with self._uow() as uow:
            due = await uow.push_deliveries.claim_due(notification_id, now, lease_until, limit)
            await uow.commit()
        return due, lease_until

    async def _send_all(
        self,
        message: PushMessage,
        due: list[tuple[PushDelivery, PushSubscription]],
        last_start: datetime,
        counts: dict[str, int],
    ) -> None:
        """Send to every subscription in ``due``, ``concurrency`` at a time, and record the
        answers as they come (every ``RECORD_EVERY``, one transaction each).

        No send starts after ``last_start``: a delivery not attempted by then stays
        claimed until its lease ends and is due again afterwards, so a slow push service
        can never make a lease expire while its message is still on the way.
        """
        pending = iter(due)
        done: list[tuple[tuple[PushDelivery, PushSubscription], PushResult]] = []
        recording: asyncio.Task[None] | None = None
        send, clock = self._sender.send, self._clock

        def stopped() -> bool:
            """A failed write stops further sends (the job fails and is retried)."""
            return recording is not None and recording.done() and recording.exception() is not None

        async def sender_loop() -> None:
            nonlocal done, recording
            for pair in pending:  # one iterator shared by the loops: each item taken once
                if stopped() or clock.now() > last_start:
                    return
                sub = pair[1]
                try:
                    result = await send(PushTarget(sub.endpoint, sub.p256dh, sub.auth), message)
                except ValueError as exc:  # this subscription's keys cannot be used
                    result = PushResult(0, reason=f"invalid: {exc}")
                done.append((pair, result))
                if len(done) >= RECORD_EVERY and (recording is None or recording.done()):
                    if stopped():
                        return
                    batch, done = done, []
                    recording = asyncio.create_task(self._record(batch, counts))

        workers = min(self._concurrency, len(due))
        try:
            await asyncio.gather(*(sender_loop() for _ in range(workers)))
        finally:
            if recording is not None:
                await recording  # raises when a write failed
        if done:
            await self._record(done, counts)

    async def _record(
        self,
        outcomes: list[tuple[tuple[PushDelivery, PushSubscription], PushResult]],
        counts: dict[str, int],
    ) -> None:
        """Record every answer of one batch in one transaction, a few statements in all."""
        now = self._clock.now()
        sent: list[str] = []
        succeeded: list[str] = []
        failed: list[tuple[str, str]] = []
        retries: list[RetryLater] = []
        final: list[GiveUp] = []
        gone: list[str] = []
        for (delivery, sub), result in outcomes:
            reason = result.reason or f"http {result.status}"
            if result.delivered:
                key = "sent"
                sent.append(delivery.id)
                succeeded.append(sub.id)
            elif result.gone:
                key = "gone"
                final.append(GiveUp(delivery.id, "gone", result.status, reason))
                gone.append(sub.id)
            elif result.retryable and delivery.attempts + 1 < MAX_DELIVERY_ATTEMPTS:
                key = "retry"
                later = now + backoff(delivery.attempts + 1, result.retry_after, self._jitter)
                retries.append(RetryLater(delivery.id, later, result.status, reason))
                failed.append((sub.id, reason))
            else:
                key = "failed"
                final.append(GiveUp(delivery.id, "failed", result.status, reason))
                failed.append((sub.id, reason))
            counts[key] = counts.get(key, 0) + 1
        async with self._uow() as uow:
            if sent:
                await uow.push_deliveries.mark_sent(sent, now, 201)
            if retries:
                await uow.push_deliveries.mark_retry(retries)
            if final:
                await uow.push_deliveries.mark_final(final)
            if succeeded or failed:
                await uow.push_subscriptions.record_outcomes(
                    now, succeeded=succeeded, failed=failed
                )
            if gone:
                await uow.push_subscriptions.delete_many(gone)
            await uow.commit()

    async def _schedule_follow_up(self, notification_id: str) -> None:
        async with self._uow() as uow:
            when = await uow.push_deliveries.next_pending_at(notification_id)
            if when is not None:
                uow.outbox.add(
                    Job(DELIVER_JOB, {"notification_id": notification_id}, not_before=when)
                )
                await uow.commit()
