"""Web Push for the caller's browsers: the VAPID key, push subscriptions, preferences.

Every route needs authentication (session or API token); each user sees and removes only
their own subscriptions. Subscription keys are write-only: no response ever carries them.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgspec
from litestar import Controller, Request, Response, delete, get, post, put
from litestar.di import NamedDependency
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath, JSONBody, SkipValidation
from litestar.status_codes import HTTP_201_CREATED, HTTP_503_SERVICE_UNAVAILABLE

from viarah.domain.notifications.model import CHANNEL_PUSH, Preference, PushSubscription
from viarah.domain.notifications.push import PushSender
from viarah.domain.notifications.services import NotificationPreferences, PushSubscriptions
from viarah.domain.shared.actor import Actor
from viarah.domain.shared.errors import InvalidInput, Unavailable
from viarah.entrypoints.web.errors import API_ERRORS, ErrorOut

PUSH_NOT_CONFIGURED = (
    "push is not configured: set WEBPUSH_VAPID_PUBLIC_KEY, WEBPUSH_VAPID_PRIVATE_KEY "
    "and WEBPUSH_VAPID_SUBJECT"
)
#: A User-Agent header longer than this is cut (the domain stores at most 500 characters).
USER_AGENT_MAX = 500
#: ``expirationTime`` above this (ms since the epoch, year 9999) is not a real date.
_MAX_EPOCH_MS = 253_402_300_799_000

VAPID_ERRORS = {
    **API_ERRORS,
    HTTP_503_SERVICE_UNAVAILABLE: ResponseSpec(
        data_container=ErrorOut,
        description="Push is not configured (a WEBPUSH_VAPID_* setting is empty)",
        generate_examples=False,
    ),
}


class VapidKeyOut(msgspec.Struct, frozen=True):
    """The application server key for ``pushManager.subscribe({applicationServerKey})``."""

    public_key: str


class KeysIn(msgspec.Struct, frozen=True):
    p256dh: str | msgspec.UnsetType = msgspec.UNSET
    auth: str | msgspec.UnsetType = msgspec.UNSET


class BrowserSubscriptionIn(msgspec.Struct, frozen=True):
    """``PushSubscription.toJSON()``; fields a browser may add later are ignored."""

    endpoint: str | msgspec.UnsetType = msgspec.UNSET
    expiration_time: float | None = msgspec.field(default=None, name="expirationTime")
    keys: KeysIn | msgspec.UnsetType = msgspec.UNSET


class SubscribeIn(msgspec.Struct, frozen=True):
    """Either the browser's subscription itself (bare), or ``{"subscription": {...},
    "user_agent": "..."}``. Without ``user_agent`` the request's User-Agent is stored."""

    endpoint: str | msgspec.UnsetType = msgspec.UNSET
    expiration_time: float | None = msgspec.field(default=None, name="expirationTime")
    keys: KeysIn | msgspec.UnsetType = msgspec.UNSET
    subscription: BrowserSubscriptionIn | msgspec.UnsetType = msgspec.UNSET
    user_agent: str | None = None

    def browser_subscription(self) -> BrowserSubscriptionIn:
        if self.subscription is msgspec.UNSET:
            return BrowserSubscriptionIn(self.endpoint, self.expiration_time, self.keys)
        if self.endpoint is not msgspec.UNSET or self.keys is not msgspec.UNSET:
            raise InvalidInput(
                "subscription", "send the subscription either bare or wrapped, not both"
            )
        return self.subscription


def _required(field: str, value: str | msgspec.UnsetType) -> str:
    if value is msgspec.UNSET:
        raise InvalidInput(field, "is required")
    return value


def _expiration(epoch_ms: float | None) -> datetime | None:
    if epoch_ms is None:
        return None
    if not 0 <= epoch_ms <= _MAX_EPOCH_MS:
        raise InvalidInput("expirationTime", "must be milliseconds since 1970 or null")
    return datetime.fromtimestamp(epoch_ms / 1000, tz=UTC)


def _header_user_agent(request: Request[Any, Any, Any]) -> str | None:
    """The User-Agent header, printable characters only, cut to what the domain stores."""
    raw = request.headers.get("user-agent", "")
    cleaned = "".join(ch for ch in raw if ch.isprintable()).strip()[:USER_AGENT_MAX]
    return cleaned or None


class SubscriptionBody(msgspec.Struct, frozen=True):
    id: str
    endpoint: str
    expiration_time: datetime | None
    user_agent: str | None
    created_at: datetime
    updated_at: datetime
    last_success_at: datetime | None
    last_failure_at: datetime | None
    last_failure_reason: str | None

    @staticmethod
    def of(subscription: PushSubscription) -> SubscriptionBody:
        return SubscriptionBody(
            id=subscription.id,
            endpoint=subscription.endpoint,
            expiration_time=subscription.expiration_time,
            user_agent=subscription.user_agent,
            created_at=subscription.created_at,
            updated_at=subscription.updated_at,
            last_success_at=subscription.last_success_at,
            last_failure_at=subscription.last_failure_at,
            last_failure_reason=subscription.last_failure_reason,
        )


class SubscriptionOut(msgspec.Struct, frozen=True):
    subscription: SubscriptionBody


class SubscriptionListOut(msgspec.Struct, frozen=True):
    subscriptions: list[SubscriptionBody]


class PreferenceBody(msgspec.Struct, frozen=True):
    event_type: str
    channel: str
    enabled: bool

    @staticmethod
    def of(preference: Preference) -> PreferenceBody:
        return PreferenceBody(preference.event_type, preference.channel, preference.enabled)


class PreferenceIn(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    event_type: str
    enabled: bool
    channel: str = CHANNEL_PUSH


class PreferencesIn(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """Entries given are changed; event types not listed keep their value."""

    preferences: list[PreferenceIn]


class PreferencesOut(msgspec.Struct, frozen=True):
    """Every known event type, in a stable order (default: enabled)."""

    preferences: list[PreferenceBody]


class PushController(Controller):
    """This browser's push subscription, as the page at ``/`` manages it."""

    path = "/push"
    tags = ["push"]

    @get(
        "/vapid_public_key",
        responses=VAPID_ERRORS,
        summary="The VAPID public key browsers subscribe with",
        description="503 when the WEBPUSH_VAPID_* settings are not all set.",
    )
    async def vapid_public_key(
        self,
        actor: NamedDependency[Actor],
        # A Protocol (the port), which litestar cannot check with isinstance().
        push_sender: NamedDependency[SkipValidation[PushSender]],
    ) -> VapidKeyOut:
        if not push_sender.enabled:
            raise Unavailable(PUSH_NOT_CONFIGURED, code="push_not_configured")
        return VapidKeyOut(public_key=push_sender.public_key)

    @get("/subscriptions", responses=API_ERRORS, summary="My browsers' push subscriptions")
    async def list_subscriptions(
        self,
        actor: NamedDependency[Actor],
        push_subscriptions: NamedDependency[PushSubscriptions],
    ) -> SubscriptionListOut:
        found = await push_subscriptions.list_subscriptions(actor)
        return SubscriptionListOut(subscriptions=[SubscriptionBody.of(s) for s in found])

    @post(
        "/subscriptions",
        responses=API_ERRORS,
        status_code=HTTP_201_CREATED,
        summary="Store this browser's push subscription",
        description=(
            "Takes PushSubscription.toJSON() bare or as {subscription, user_agent}. "
            "201 with the stored subscription; re-posting a known endpoint updates it."
        ),
    )
    async def subscribe(
        self,
        request: Request[Any, Any, Any],
        actor: NamedDependency[Actor],
        push_subscriptions: NamedDependency[PushSubscriptions],
        data: JSONBody[SubscribeIn],
    ) -> Response[SubscriptionOut]:
        browser = data.browser_subscription()
        keys = browser.keys if browser.keys is not msgspec.UNSET else KeysIn()
        stored = await push_subscriptions.subscribe(
            actor,
            _required("endpoint", browser.endpoint),
            _required("keys.p256dh", keys.p256dh),
            _required("keys.auth", keys.auth),
            expiration_time=_expiration(browser.expiration_time),
            user_agent=data.user_agent if data.user_agent else _header_user_agent(request),
        )
        return Response(
            SubscriptionOut(subscription=SubscriptionBody.of(stored)),
            status_code=HTTP_201_CREATED,
        )

    @delete(
        "/subscriptions/{subscription_id:str}",
        responses=API_ERRORS,
        summary="Remove one of my push subscriptions",
    )
    async def unsubscribe(
        self,
        actor: NamedDependency[Actor],
        push_subscriptions: NamedDependency[PushSubscriptions],
        subscription_id: FromPath[str],
    ) -> None:
        await push_subscriptions.unsubscribe(actor, subscription_id)


class NotificationPreferenceController(Controller):
    """Which events the caller wants pushed to their browsers."""

    path = "/me/notification-preferences"
    tags = ["push"]

    @get("", responses=API_ERRORS, summary="My notification preferences (every event type)")
    async def get_preferences(
        self,
        actor: NamedDependency[Actor],
        notification_preferences: NamedDependency[NotificationPreferences],
    ) -> PreferencesOut:
        found = await notification_preferences.get(actor)
        return PreferencesOut(preferences=[PreferenceBody.of(p) for p in found])

    @put(
        "",
        responses=API_ERRORS,
        summary="Change some notification preferences",
        description="Entries given change; the others keep their value. Answers the full list.",
    )
    async def update_preferences(
        self,
        actor: NamedDependency[Actor],
        notification_preferences: NamedDependency[NotificationPreferences],
        data: JSONBody[PreferencesIn],
    ) -> PreferencesOut:
        changes = [Preference(p.event_type, p.channel, p.enabled) for p in data.preferences]
        updated = await notification_preferences.update(actor, changes)
        return PreferencesOut(preferences=[PreferenceBody.of(p) for p in updated])
