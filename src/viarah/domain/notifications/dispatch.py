"""Sending a notification's messages: claimed deliveries flow to ``concurrency`` senders
without a pause between claims, and every answer is recorded, so each subscription gets
the message at most once."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import random
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

from viarah.domain.notifications.delivery import (
    DELIVER_JOB,
    DELIVERY_LEASE,
    MAX_DELIVERY_ATTEMPTS,
    FanOut,
    Notifier,
    UowFactory,
    backoff,
    payload_for,
)
from viarah.domain.notifications.model import PushDelivery, PushSubscription
from viarah.domain.notifications.ports import GiveUp, RetryLater
from viarah.domain.notifications.push import PushMessage, PushResult, PushSender, PushTarget
from viarah.domain.shared.clock import Clock
from viarah.domain.shared.jobs import Job

log = logging.getLogger("viarah.notifications")

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

Pair = tuple[PushDelivery, PushSubscription]


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
        await _Sending(self, notification_id, message, outcome).run()
        await self._schedule_follow_up(notification_id)
        return outcome

    async def _claim_due(self, notification_id: str, limit: int) -> tuple[list[Pair], datetime]:
        """Up to ``limit`` due deliveries, leased to this dispatcher, and the lease's end."""
        now = self._clock.now()
        lease_until = now + DELIVERY_LEASE
        async with self._uow() as uow:
            due = await uow.push_deliveries.claim_due(notification_id, now, lease_until, limit)
            await uow.commit()
        return due, lease_until

    async def _record_answers(
        self, outcomes: list[tuple[Pair, PushResult]], counts: dict[str, int]
    ) -> None:
        """Record every answer of one batch in one transaction, a few statements in all."""
        now = self._clock.now()
        sent: list[str] = []
        succeeded: list[str] = []
        failed: list[tuple[str, str]] = []
        retries: list[RetryLater] = []
        final: list[GiveUp] = []
        gone: list[str] = []
        tally: collections.Counter[str] = collections.Counter()
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
            tally[key] += 1
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
        for key, count in tally.items():  # counted once written (a failed write is retried)
            counts[key] = counts.get(key, 0) + count

    async def _schedule_follow_up(self, notification_id: str) -> None:
        async with self._uow() as uow:
            when = await uow.push_deliveries.next_pending_at(notification_id)
            if when is not None:
                uow.outbox.add(
                    Job(DELIVER_JOB, {"notification_id": notification_id}, not_before=when)
                )
                await uow.commit()


class _Sending:
    """One :meth:`PushDispatcher.deliver`: claims fill a queue that ``concurrency``
    senders drain, and answers are recorded as they come.

    - The first claim is small (two messages per sender), so the first messages go out
      at once. Whenever fewer than :data:`BATCH` claimed messages wait, the next claim
      runs while they are sent, and its messages follow on the same connections: no
      pause between claims, and at most about two batches claimed and not yet sent.
    - Every :data:`RECORD_EVERY` answers are recorded in one transaction while sending
      goes on (one recording at a time); once nothing is left to send, the last answers
      are recorded together as soon as they are all in.
    - No message starts after its claim's lease end minus :data:`SEND_MARGIN`: it stays
      claimed, and is due again when the lease ends (a slow push service can never make
      a lease expire while its message is on the way).
    - A failed recording or claim stops further sends. The answers not yet recorded, and
      those of a failed recording, are then written (if the database is back), and the
      error is raised: the job is retried, and sends only what is recorded nowhere.
    """

    def __init__(
        self,
        dispatcher: PushDispatcher,
        notification_id: str,
        message: PushMessage,
        counts: dict[str, int],
    ) -> None:
        self._d = dispatcher
        self._notification_id = notification_id
        self._message = message
        self._counts = counts
        self._waiting: collections.deque[tuple[Pair, datetime]] = collections.deque()
        self._claimed_all = False
        self._claiming: asyncio.Task[None] | None = None
        self._failure: BaseException | None = None
        self._done: list[tuple[Pair, PushResult]] = []
        self._unrecorded: list[tuple[Pair, PushResult]] = []
        self._recording: asyncio.Task[None] | None = None

    async def run(self) -> None:
        d = self._d
        await self._claim(2 * d._concurrency)
        self._claim_more()
        try:
            senders = min(d._concurrency, len(self._waiting))
            await asyncio.gather(*(self._sender() for _ in range(senders)))
        except BaseException:
            self._stop_claiming()
            if self._recording is not None:
                with contextlib.suppress(Exception):
                    await self._recording
            raise
        self._stop_claiming()
        # The last answers are recorded at once, beside a recording still under way (of
        # other rows), even after a failure: what was sent must not be sent again.
        writes = [self._recording] if self._recording is not None else []
        if self._done:
            writes.append(asyncio.create_task(self._record(self._done)))
        for outcome in await asyncio.gather(*writes, return_exceptions=True):
            if isinstance(outcome, Exception):
                self._failure = self._failure or outcome
        if self._unrecorded:  # a recording failed: once more, in case the database is back
            batch, self._unrecorded = self._unrecorded, []
            try:
                await self._d._record_answers(batch, self._counts)
            except Exception as exc:
                self._failure = self._failure or exc
        if self._failure is not None:
            raise self._failure

    def _stop_claiming(self) -> None:
        """A claim still running when sending stopped early is abandoned (its leases run
        out, and the messages are due again then)."""
        if self._claiming is not None and not self._claiming.done():
            self._claiming.cancel()

    async def _claim(self, limit: int) -> None:
        try:
            batch, lease_until = await self._d._claim_due(self._notification_id, limit)
        except Exception as exc:
            self._failure = exc  # senders stop; run() raises it after recording
            return
        last_start = lease_until - SEND_MARGIN
        self._waiting.extend((pair, last_start) for pair in batch)
        if len(batch) < limit:
            self._claimed_all = True  # nothing else was due

    def _claim_more(self) -> None:
        """Start the next claim when it is time (see the class docstring)."""
        if (
            self._claimed_all
            or self._failure is not None
            or len(self._waiting) >= BATCH
            or (self._claiming is not None and not self._claiming.done())
        ):
            return
        self._claiming = asyncio.create_task(self._claim(BATCH))

    async def _next(self) -> tuple[Pair, datetime] | None:
        """The next message to send, or None when there is none (or sending stopped)."""
        self._check_recording()
        while self._failure is None:
            if self._waiting:
                item = self._waiting.popleft()
                self._claim_more()
                return item
            if self._claimed_all:
                return None
            self._claim_more()
            assert self._claiming is not None
            await asyncio.wait([self._claiming])
        return None

    async def _sender(self) -> None:
        send, now = self._d._sender.send, self._d._clock.now
        while (item := await self._next()) is not None:
            pair, last_start = item
            if now() > last_start:
                continue  # stays claimed: due again when its lease ends
            sub = pair[1]
            try:
                result = await send(PushTarget(sub.endpoint, sub.p256dh, sub.auth), self._message)
            except ValueError as exc:  # this subscription's keys cannot be used
                result = PushResult(0, reason=f"invalid: {exc}")
            self._done.append((pair, result))
            self._record_some()

    def _record_some(self) -> None:
        """Record the answers so far when there are enough, nothing else is being
        recorded, and messages are still to be sent (the last answers wait for run())."""
        recording = self._recording
        if len(self._done) < RECORD_EVERY or (recording is not None and not recording.done()):
            return
        self._check_recording()
        if self._failure is not None or (self._claimed_all and not self._waiting):
            return
        batch, self._done = self._done, []
        self._recording = asyncio.create_task(self._record(batch))

    def _check_recording(self) -> None:
        """A failed recording stops further sends."""
        recording = self._recording
        if recording is not None and recording.done() and not recording.cancelled():
            self._failure = self._failure or recording.exception()

    async def _record(self, batch: list[tuple[Pair, PushResult]]) -> None:
        try:
            await self._d._record_answers(batch, self._counts)
        except Exception:
            self._unrecorded.extend(batch)  # tried once more at the end
            raise
