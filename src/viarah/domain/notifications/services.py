"""Notification use cases of a user: their browsers' push subscriptions and preferences.

Delivery lives in :mod:`viarah.domain.notifications.delivery` (the fan-out) and
:mod:`viarah.domain.notifications.dispatch` (sending).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from urllib.parse import urlsplit

from viarah.domain.notifications.model import (
    CHANNEL_PUSH,
    EVENT_TYPES,
    Preference,
    PushSubscription,
    check_auth_secret,
    check_p256_point,
)
from viarah.domain.notifications.ports import NotificationsUnitOfWork
from viarah.domain.shared.actor import Actor
from viarah.domain.shared.clock import Clock
from viarah.domain.shared.errors import InvalidInput, NotFound
from viarah.domain.shared.ids import is_valid_id, new_id
from viarah.domain.shared.outbound import OutboundPolicy, OutboundRefused
from viarah.domain.shared.text import clean_text

UowFactory = Callable[[], NotificationsUnitOfWork]
MAX_SUBSCRIPTIONS_PER_USER = 50


class PushSubscriptions:
    """A user's browsers: each one's push subscription, visible and removable only by them."""

    def __init__(self, uow: UowFactory, clock: Clock, policy: OutboundPolicy) -> None:
        self._uow = uow
        self._clock = clock
        self._policy = policy

    async def list_subscriptions(self, actor: Actor) -> list[PushSubscription]:
        async with self._uow() as uow:
            return await uow.push_subscriptions.list_for_user(actor.user_id)

    async def subscribe(
        self,
        actor: Actor,
        endpoint: str,
        p256dh: str,
        auth: str,
        expiration_time: datetime | None = None,
        user_agent: str | None = None,
    ) -> PushSubscription:
        """Store (or update, for a known endpoint) the browser's subscription."""
        url = self._check_endpoint(endpoint)
        now = self._clock.now()
        subscription = PushSubscription(
            id=new_id(),
            user_id=actor.user_id,
            endpoint=url,
            p256dh=check_p256_point(p256dh),
            auth=check_auth_secret(auth),
            expiration_time=expiration_time,
            user_agent=clean_text("user_agent", user_agent, max_length=500, required=False)
            if user_agent
            else None,
            created_at=now,
            updated_at=now,
        )
        async with self._uow() as uow:
            existing = await uow.push_subscriptions.list_for_user(actor.user_id)
            known = {s.endpoint for s in existing}
            if url not in known and len(existing) >= MAX_SUBSCRIPTIONS_PER_USER:
                raise InvalidInput(
                    "endpoint", f"at most {MAX_SUBSCRIPTIONS_PER_USER} browsers per user"
                )
            stored = await uow.push_subscriptions.upsert(subscription)
            await uow.commit()
        return stored

    async def unsubscribe(self, actor: Actor, subscription_id: str) -> None:
        async with self._uow() as uow:
            found = (
                await uow.push_subscriptions.get(subscription_id)
                if is_valid_id(subscription_id)
                else None
            )
            if found is None or found.user_id != actor.user_id:
                raise NotFound("push subscription not found")
            await uow.push_subscriptions.delete(found.id)
            await uow.commit()

    def _check_endpoint(self, endpoint: str) -> str:
        url = clean_text("endpoint", endpoint, max_length=2048)
        try:
            parts = urlsplit(url)
            host = parts.hostname or ""
            parts.port  # noqa: B018 - raises on a bad port
        except ValueError:
            raise InvalidInput("endpoint", "is not a valid URL") from None
        if parts.username or parts.password:
            raise InvalidInput("endpoint", "must not contain credentials")
        if parts.scheme == "http" and not self._policy.host_allowlisted(host):
            raise InvalidInput(
                "endpoint",
                "must be https:// (http:// only for hosts in VIA_RAH_OUTBOUND_ALLOWLIST)",
            )
        if parts.scheme not in ("https", "http") or not host:
            raise InvalidInput("endpoint", "must be an https:// URL")
        try:
            self._policy.check_host(host)
        except OutboundRefused as exc:
            raise InvalidInput("endpoint", exc.message) from None
        return url


class NotificationPreferences:
    """Per event type, whether the user wants push notifications (default on)."""

    def __init__(self, uow: UowFactory) -> None:
        self._uow = uow

    async def get(self, actor: Actor) -> list[Preference]:
        async with self._uow() as uow:
            stored = await uow.preferences.for_user(actor.user_id)
        return [Preference(e, CHANNEL_PUSH, stored.get(e, True)) for e in EVENT_TYPES]

    async def update(self, actor: Actor, changes: list[Preference]) -> list[Preference]:
        """Change the given entries; the others keep their value."""
        for index, change in enumerate(changes):
            if change.event_type not in EVENT_TYPES:
                raise InvalidInput(
                    f"preferences[{index}].event_type",
                    f"unknown event type; known: {', '.join(EVENT_TYPES)}",
                )
            if change.channel != CHANNEL_PUSH:
                raise InvalidInput(f"preferences[{index}].channel", "must be 'push'")
        async with self._uow() as uow:
            for change in changes:
                await uow.preferences.put(
                    actor.user_id, change.event_type, change.channel, change.enabled
                )
            await uow.commit()
        return await self.get(actor)
