"""The GitLab context: per-org integrations, task links and webhook deliveries."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from enum import StrEnum
from typing import Any

from viarah.domain.gitlab.client import Assignee, GitLabObject
from viarah.domain.gitlab.urls import GitLabRef, ObjectKind
from viarah.domain.shared.ids import OrgId, TaskId, UserId

#: Never ask GitLab about the same object more often than this from stale reads.
MIN_REFRESH_INTERVAL = timedelta(seconds=30)
#: A refresh queued longer ago than this is presumed lost and may be queued again.
REFRESH_PENDING_TIMEOUT = timedelta(minutes=10)
#: Admins hear about an expiring token this many days before it expires.
EXPIRY_WARNING_DAYS = (30, 7)
STATE_CHANGED_EVENT = "gitlab_link.state_changed"
AUTH_FAILED_EVENT = "gitlab_integration.auth_failed"
TOKEN_EXPIRING_EVENT = "gitlab_integration.token_expiring"


def refresh_wanted(
    requested_at: datetime | None,
    last_attempt_at: datetime | None,
    now: datetime,
    min_attempt_interval: timedelta | None,
) -> bool:
    """Whether a link may have a refresh queued: none is pending (or the pending one is
    presumed lost), and with ``min_attempt_interval`` the last attempt is older."""
    if requested_at is not None and requested_at > now - REFRESH_PENDING_TIMEOUT:
        return False
    return not (
        min_attempt_interval is not None
        and last_attempt_at is not None
        and last_attempt_at > now - min_attempt_interval
    )


def refresh_to_queue(
    links: Iterable[tuple[datetime | None, datetime | None]],
    now: datetime,
    min_attempt_interval: timedelta | None,
) -> RefreshQueued | None:
    """Whether an object gets a refresh queued, from its links' ``(refresh_requested_at,
    last_attempt_at)``: None when it has no link or one of them refuses
    (:func:`refresh_wanted`); else the links' latest attempt."""
    states = list(links)
    if not states or not all(
        refresh_wanted(requested, attempted, now, min_attempt_interval)
        for requested, attempted in states
    ):
        return None
    return RefreshQueued(max((a for _, a in states if a is not None), default=None))


@dataclass(frozen=True, slots=True)
class RefreshQueued:
    """A refresh of an object was marked queued; its links were last attempted then."""

    last_attempt_at: datetime | None

    def start_at(self, now: datetime, spacing: timedelta, jitter: float = 0.0) -> datetime | None:
        """When the queued refresh may start so that refreshes of one object are at least
        ``spacing`` apart: None (now) if the last attempt is older than that, else
        ``spacing * (1 + jitter / 2)`` after it (``jitter`` in [0, 1): the refreshes of
        many objects started together do not stay in step)."""
        if self.last_attempt_at is None or self.last_attempt_at <= now - spacing:
            return None
        return self.last_attempt_at + spacing * (1 + jitter / 2)


class TokenStatus(StrEnum):
    UNKNOWN = "unknown"  # stored, not yet checked (or GitLab unreachable when checked)
    VALID = "valid"
    INVALID = "invalid"  # GitLab rejects it: refreshes pause until a new token is saved


@dataclass(frozen=True, slots=True)
class GitLabIntegration:
    org_id: OrgId
    base_url: str
    token_ciphertext: str | None
    token_set_at: datetime | None
    token_status: TokenStatus
    token_scopes: tuple[str, ...]
    token_expires_at: date | None
    token_expiry_warned_days: int | None  # smallest EXPIRY_WARNING_DAYS already announced
    webhook_secret_digest: str | None
    webhook_secret_set_at: datetime | None
    signing_token_ciphertext: str | None
    created_at: datetime
    updated_at: datetime

    @property
    def has_token(self) -> bool:
        return self.token_ciphertext is not None

    @property
    def webhook_configured(self) -> bool:
        return self.webhook_secret_digest is not None


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """Who changed what on an integration, when. Never holds a secret."""

    id: str
    org_id: OrgId
    actor_user_id: UserId | None
    action: str
    details: dict[str, Any]
    created_at: datetime


class SyncStatus(StrEnum):
    NEVER = "never"
    OK = "ok"
    STALE = "stale"
    ERROR = "error"


@dataclass(frozen=True, slots=True)
class SyncView:
    status: SyncStatus
    stale: bool
    rate_limited: bool
    rate_limited_until: datetime | None
    error_code: str | None


@dataclass(frozen=True, slots=True)
class GitLabLink:
    id: str
    org_id: OrgId
    task_id: TaskId
    url: str
    project_path: str
    kind: ObjectKind
    iid: int
    cached_title: str | None
    cached_state: str | None
    cached_labels: tuple[str, ...]
    cached_assignees: tuple[Assignee, ...]
    last_synced_at: datetime | None
    error_code: str | None
    rate_limited_until: datetime | None
    refresh_requested_at: datetime | None
    last_attempt_at: datetime | None
    created_at: datetime

    @property
    def ref_key(self) -> tuple[str, str, int]:
        return (self.project_path.lower(), self.kind.value, self.iid)

    def sync(self, now: datetime, ttl: timedelta) -> SyncView:
        stale = self.last_synced_at is None or now - self.last_synced_at >= ttl
        limited = self.rate_limited_until is not None and self.rate_limited_until > now
        if self.error_code is not None:
            status = SyncStatus.ERROR
        elif self.last_synced_at is None:
            status = SyncStatus.NEVER
        else:
            status = SyncStatus.STALE if stale else SyncStatus.OK
        return SyncView(
            status=status,
            stale=stale,
            rate_limited=limited,
            rate_limited_until=self.rate_limited_until if limited else None,
            error_code=self.error_code,
        )


def link_for(
    ref: GitLabRef, org_id: OrgId, task_id: TaskId, link_id: str, now: datetime
) -> GitLabLink:
    return GitLabLink(
        id=link_id,
        org_id=org_id,
        task_id=task_id,
        url=ref.web_url,
        project_path=ref.project_path,
        kind=ref.kind,
        iid=ref.iid,
        cached_title=None,
        cached_state=None,
        cached_labels=(),
        cached_assignees=(),
        last_synced_at=None,
        error_code=None,
        rate_limited_until=None,
        refresh_requested_at=None,
        last_attempt_at=None,
        created_at=now,
    )


@dataclass(frozen=True, slots=True)
class LinkSnapshot:
    """What a refresh writes onto every link of one object."""

    title: str
    state: str
    labels: tuple[str, ...]
    assignees: tuple[Assignee, ...]
    synced_at: datetime

    @staticmethod
    def of(obj: GitLabObject, now: datetime) -> LinkSnapshot:
        return LinkSnapshot(obj.title, obj.state, obj.labels, obj.assignees, now)


class DeliveryStatus(StrEnum):
    RECEIVED = "received"
    PROCESSED = "processed"
    FAILED = "failed"
    IGNORED = "ignored"


@dataclass(frozen=True, slots=True)
class WebhookDelivery:
    id: str
    org_id: OrgId
    idempotency_key: str
    event_type: str
    status: DeliveryStatus
    received_at: datetime
    processed_at: datetime | None
    error: str | None
    payload_hash: str
    project_path: str | None
    kind: ObjectKind | None
    iid: int | None
    action: str | None

    @property
    def ref_key(self) -> tuple[str, str, int] | None:
        if self.project_path is None or self.kind is None or self.iid is None:
            return None
        return (self.project_path.lower(), self.kind.value, self.iid)
