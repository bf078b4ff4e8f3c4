"""Notifications: events for people, their preferences, their browsers' push subscriptions."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from viarah.domain.shared.errors import InvalidInput
from viarah.domain.shared.ids import OrgId, UserId

STATE_CHANGED = "gitlab_link.state_changed"
AUTH_FAILED = "gitlab_integration.auth_failed"
TOKEN_EXPIRING = "gitlab_integration.token_expiring"
#: Every event type a user can receive; preferences list them all (default on).
EVENT_TYPES: tuple[str, ...] = (STATE_CHANGED, AUTH_FAILED, TOKEN_EXPIRING)
CHANNEL_PUSH = "push"

# NIST P-256 (secp256r1): y^2 = x^3 - 3x + b over GF(p).
_P256_P = 0xFFFFFFFF00000001000000000000000000000000FFFFFFFFFFFFFFFFFFFFFFFF
_P256_B = 0x5AC635D8AA3A93E7B3EBBD55769886BC651D06B0CC53B0F63BCE3C3E27D2604B


def b64url_decode(field_name: str, value: str) -> bytes:
    """Decode base64url with or without padding; InvalidInput naming the field otherwise."""
    text = value.strip()
    if not text or len(text) > 200:
        raise InvalidInput(field_name, "must be a base64url string")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise InvalidInput(field_name, "must be a base64url string") from None


def check_p256_point(value: str) -> str:
    """``keys.p256dh``: an uncompressed point on the P-256 curve (65 bytes, 0x04 first)."""
    raw = b64url_decode("keys.p256dh", value)
    if len(raw) != 65 or raw[0] != 4:
        raise InvalidInput("keys.p256dh", "must be an uncompressed P-256 public key (65 bytes)")
    x = int.from_bytes(raw[1:33], "big")
    y = int.from_bytes(raw[33:], "big")
    on_curve = (y * y - (x * x * x - 3 * x + _P256_B)) % _P256_P == 0
    if not (x < _P256_P and y < _P256_P and on_curve):
        raise InvalidInput("keys.p256dh", "is not a point on the P-256 curve")
    return value.strip()


def check_auth_secret(value: str) -> str:
    """``keys.auth``: the 16-byte authentication secret."""
    if len(b64url_decode("keys.auth", value)) != 16:
        raise InvalidInput("keys.auth", "must be 16 bytes (base64url)")
    return value.strip()


@dataclass(frozen=True, slots=True)
class PushSubscription:
    id: str
    user_id: UserId
    endpoint: str
    p256dh: str = field(repr=False)
    auth: str = field(repr=False)
    expiration_time: datetime | None
    user_agent: str | None
    created_at: datetime
    updated_at: datetime
    last_success_at: datetime | None = None
    last_failure_at: datetime | None = None
    last_failure_reason: str | None = None


@dataclass(frozen=True, slots=True)
class Preference:
    event_type: str
    channel: str
    enabled: bool


@dataclass(frozen=True, slots=True)
class Notification:
    """One event as people are told about it (shared by all its deliveries)."""

    id: str
    event_key: str  # the source event's identity: one notification per source event
    event_type: str
    org_id: OrgId
    task_id: str | None
    title: str
    body: str
    url: str
    topic: str | None
    urgency: str
    created_at: datetime


class DeliveryState(StrEnum):
    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"
    GONE = "gone"  # the subscription was deleted (404/410)


@dataclass(frozen=True, slots=True)
class PushDelivery:
    id: str
    notification_id: str
    subscription_id: str
    status: DeliveryState
    attempts: int
    next_attempt_at: datetime
    last_status: int | None
    last_error: str | None
    sent_at: datetime | None
