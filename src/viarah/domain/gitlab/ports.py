"""What the GitLab context needs from the outside world."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Protocol

from viarah.domain.gitlab.model import (
    AuditEvent,
    DeliveryStatus,
    GitLabIntegration,
    GitLabLink,
    LinkSnapshot,
    RefreshQueued,
    WebhookDelivery,
)
from viarah.domain.shared.ids import OrgId, TaskId, UserId
from viarah.domain.shared.jobs import Job
from viarah.domain.shared.uow import UnitOfWork


class OrgAccess(Protocol):
    """Membership facts owned by the orgs context."""

    async def role_of(self, org_id: OrgId, user_id: UserId) -> str | None:
        """``admin``/``pm``/``member``, or None for a non-member."""
        ...

    async def role_and_task(
        self, org_id: OrgId, user_id: UserId, task_id: TaskId
    ) -> tuple[str | None, bool]:
        """The user's role (as :meth:`role_of`) and whether the task belongs to the org,
        in one lookup (every task route asks both); the flag is False for a non-member."""
        ...

    async def admins(self, org_id: OrgId) -> list[UserId]: ...


class IntegrationRepository(Protocol):
    async def get(self, org_id: OrgId, *, for_update: bool = False) -> GitLabIntegration | None: ...

    async def save(self, integration: GitLabIntegration) -> None:
        """Insert or replace the org's integration."""
        ...

    async def delete(self, org_id: OrgId) -> None: ...

    async def with_ciphertexts(self, after: OrgId | None, limit: int) -> list[GitLabIntegration]:
        """Integrations holding encrypted secrets, ordered by org id (key rotation)."""
        ...

    async def count_with_ciphertexts(self) -> int: ...


class LinkRepository(Protocol):
    async def add(self, link: GitLabLink) -> None:
        """Conflict when the task already links this object."""
        ...

    async def get(self, org_id: OrgId, link_id: str) -> GitLabLink | None: ...

    async def list_for_task_as(
        self, org_id: OrgId, task_id: TaskId, user_id: UserId
    ) -> tuple[str | None, bool, list[GitLabLink]]:
        """In one lookup (a task page reads this on every load): the user's role in the
        org (None for a non-member), whether the task belongs to the org (False for a
        non-member), and the task's links oldest first (empty unless both)."""
        ...

    async def delete(self, link_id: str) -> None: ...

    async def for_object(self, org_id: OrgId, key: tuple[str, str, int]) -> list[GitLabLink]:
        """Every link in the org pointing at one issue/MR."""
        ...

    async def request_refresh(
        self,
        org_id: OrgId,
        key: tuple[str, str, int],
        now: datetime,
        *,
        min_attempt_interval: timedelta | None,
    ) -> RefreshQueued | None:
        """Atomically mark the object's links as having a refresh queued.

        None (nothing marked) when a refresh is already queued (and younger than
        REFRESH_PENDING_TIMEOUT), or when ``min_attempt_interval`` is given and the last
        attempt is more recent than that; otherwise the caller should enqueue the job
        (the result carries the links' latest refresh attempt).
        """
        ...

    async def request_refreshes(
        self, org_id: OrgId, keys: Sequence[tuple[str, str, int]], now: datetime
    ) -> dict[tuple[str, str, int], RefreshQueued]:
        """:meth:`request_refresh` (no ``min_attempt_interval``) for several objects in a
        few statements: their links are locked in one order in every transaction (so two
        callers cannot deadlock), and those with no refresh queued are marked. Returns the
        objects marked; an object with no link, or a refresh queued, is left out."""
        ...

    async def start_refresh(self, org_id: OrgId, key: tuple[str, str, int], now: datetime) -> None:
        """A refresh begins: clear the queued mark and record the attempt time."""
        ...

    async def record_snapshot(
        self, org_id: OrgId, key: tuple[str, str, int], snapshot: LinkSnapshot
    ) -> None: ...

    async def record_error(
        self,
        org_id: OrgId,
        key: tuple[str, str, int],
        error_code: str,
        rate_limited_until: datetime | None,
    ) -> None: ...


class DeliveryRepository(Protocol):
    async def add(self, delivery: WebhookDelivery, job: Job | None = None) -> bool:
        """Store a delivery and, with it, the ``job`` that processes it (unless a job with
        its coalesce key is pending already), in one atomic write. False (nothing stored)
        if its idempotency key was seen."""
        ...

    async def get(self, delivery_id: str) -> WebhookDelivery | None: ...

    async def take_received(self, delivery_id: str, now: datetime) -> WebhookDelivery | None:
        """Mark a ``received`` delivery ``processed`` at ``now`` and return it as it was;
        None (nothing changed) if there is no such delivery or it is not ``received``.
        A concurrent caller waits for this one's transaction and then gets None."""
        ...

    async def take_waiting(self, org_id: OrgId, now: datetime, limit: int) -> list[WebhookDelivery]:
        """Up to ``limit`` of the organization's ``received`` deliveries, oldest first,
        marked ``processed`` at ``now`` and returned as they were. Concurrent callers get
        disjoint batches (neither waits for the other)."""
        ...

    async def orgs_waiting(self, received_before: datetime) -> list[OrgId]:
        """Organizations with a delivery still ``received`` that arrived before the time."""
        ...

    async def finish(
        self, delivery_id: str, status: DeliveryStatus, now: datetime, error: str | None
    ) -> None: ...

    async def purge_finished(self, received_before: datetime, limit: int) -> int:
        """Delete up to ``limit`` deliveries received before the time that are no longer
        ``received`` (processed, ignored or failed); how many were deleted."""
        ...

    async def page(
        self, org_id: OrgId, limit: int, before: tuple[datetime, str] | None
    ) -> list[WebhookDelivery]:
        """Newest first; ``before`` is the (received_at, id) of the last item seen."""
        ...


class AuditLog(Protocol):
    async def add(self, event: AuditEvent) -> None: ...

    async def for_org(self, org_id: OrgId, limit: int) -> list[AuditEvent]: ...


class GitLabUnitOfWork(UnitOfWork, Protocol):
    gitlab_integrations: IntegrationRepository
    gitlab_links: LinkRepository
    webhook_deliveries: DeliveryRepository
    audit: AuditLog
    org_access: OrgAccess
