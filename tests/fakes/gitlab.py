"""In-memory GitLab repositories, secret box, keyed hasher and a scripted GitLab."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta

from tests.fakes.memory import _Repo, add_jobs
from viarah.domain.gitlab.client import GitLabCallFailed, GitLabObject, GitLabUser, TokenInfo
from viarah.domain.gitlab.model import (
    AuditEvent,
    DeliveryStatus,
    GitLabIntegration,
    GitLabLink,
    LinkSnapshot,
    RefreshQueued,
    WebhookDelivery,
    refresh_to_queue,
)
from viarah.domain.gitlab.urls import GitLabRef
from viarah.domain.orgs.model import Role
from viarah.domain.shared.errors import Conflict
from viarah.domain.shared.ids import OrgId, TaskId, UserId
from viarah.domain.shared.jobs import Job
from viarah.domain.shared.secrets import SecretUndecryptable


class FakeIntegrations(_Repo):
    async def get(self, org_id: OrgId, *, for_update: bool = False) -> GitLabIntegration | None:
        return self.db.gitlab_integrations.get(org_id)

    async def save(self, integration: GitLabIntegration) -> None:
        self.db.gitlab_integrations[integration.org_id] = integration

    async def delete(self, org_id: OrgId) -> None:
        self.db.gitlab_integrations.pop(org_id, None)

    async def with_ciphertexts(self, after: OrgId | None, limit: int) -> list[GitLabIntegration]:
        found = sorted(
            (
                i
                for i in self.db.gitlab_integrations.values()
                if (i.token_ciphertext or i.signing_token_ciphertext)
                and (after is None or i.org_id > after)
            ),
            key=lambda i: i.org_id,
        )
        return found[:limit]

    async def count_with_ciphertexts(self) -> int:
        return len(await self.with_ciphertexts(None, 10**9))


class FakeLinks(_Repo):
    async def add(self, link: GitLabLink) -> None:
        if any(
            x.task_id == link.task_id and x.ref_key == link.ref_key
            for x in self.db.gitlab_links.values()
        ):
            raise Conflict("this task already links that issue or merge request")
        self.db.gitlab_links[link.id] = link

    async def get(self, org_id: OrgId, link_id: str) -> GitLabLink | None:
        link = self.db.gitlab_links.get(link_id)
        return link if link and link.org_id == org_id else None

    async def list_for_task_as(
        self, org_id: OrgId, task_id: TaskId, user_id: UserId
    ) -> tuple[str | None, bool, list[GitLabLink]]:
        role, task_found = await FakeOrgAccess(self.db).role_and_task(org_id, user_id, task_id)
        if not task_found:
            return role, False, []
        return (
            role,
            True,
            sorted(
                (
                    x
                    for x in self.db.gitlab_links.values()
                    if x.org_id == org_id and x.task_id == task_id
                ),
                key=lambda x: (x.created_at, x.id),
            ),
        )

    async def delete(self, link_id: str) -> None:
        self.db.gitlab_links.pop(link_id, None)

    async def for_object(self, org_id: OrgId, key: tuple[str, str, int]) -> list[GitLabLink]:
        return sorted(
            (x for x in self.db.gitlab_links.values() if x.org_id == org_id and x.ref_key == key),
            key=lambda x: (x.created_at, x.id),
        )

    def _update(self, org_id: OrgId, key: tuple[str, str, int], **changes: object) -> int:
        links = [
            x for x in self.db.gitlab_links.values() if x.org_id == org_id and x.ref_key == key
        ]
        for link in links:
            self.db.gitlab_links[link.id] = replace(link, **changes)  # type: ignore[arg-type]
        return len(links)

    async def request_refresh(
        self,
        org_id: OrgId,
        key: tuple[str, str, int],
        now: datetime,
        *,
        min_attempt_interval: timedelta | None,
    ) -> RefreshQueued | None:
        links = await self.for_object(org_id, key)
        states = ((link.refresh_requested_at, link.last_attempt_at) for link in links)
        queued = refresh_to_queue(states, now, min_attempt_interval)
        if queued is not None:
            self._update(org_id, key, refresh_requested_at=now)
        return queued

    async def request_refreshes(
        self, org_id: OrgId, keys: Sequence[tuple[str, str, int]], now: datetime
    ) -> dict[tuple[str, str, int], RefreshQueued]:
        queued = {}
        for key in keys:
            refresh = await self.request_refresh(org_id, key, now, min_attempt_interval=None)
            if refresh is not None:
                queued[key] = refresh
        return queued

    async def start_refresh(self, org_id: OrgId, key: tuple[str, str, int], now: datetime) -> None:
        self._update(org_id, key, refresh_requested_at=None, last_attempt_at=now)

    async def record_snapshot(
        self, org_id: OrgId, key: tuple[str, str, int], snapshot: LinkSnapshot
    ) -> None:
        self._update(
            org_id,
            key,
            cached_title=snapshot.title,
            cached_state=snapshot.state,
            cached_labels=snapshot.labels,
            cached_assignees=snapshot.assignees,
            last_synced_at=snapshot.synced_at,
            error_code=None,
            rate_limited_until=None,
        )

    async def record_error(
        self,
        org_id: OrgId,
        key: tuple[str, str, int],
        error_code: str,
        rate_limited_until: datetime | None,
    ) -> None:
        self._update(org_id, key, error_code=error_code, rate_limited_until=rate_limited_until)


class FakeDeliveries(_Repo):
    async def add(self, delivery: WebhookDelivery, job: Job | None = None) -> bool:
        if any(
            d.org_id == delivery.org_id and d.idempotency_key == delivery.idempotency_key
            for d in self.db.deliveries.values()
        ):
            return False
        self.db.deliveries[delivery.id] = delivery
        if job is not None:
            add_jobs(self.db, [job])
        return True

    async def get(self, delivery_id: str) -> WebhookDelivery | None:
        return self.db.deliveries.get(delivery_id)

    async def take_received(self, delivery_id: str, now: datetime) -> WebhookDelivery | None:
        delivery = self.db.deliveries.get(delivery_id)
        if delivery is None or delivery.status is not DeliveryStatus.RECEIVED:
            return None
        self.db.deliveries[delivery_id] = replace(
            delivery, status=DeliveryStatus.PROCESSED, processed_at=now
        )
        return delivery

    async def take_waiting(self, org_id: OrgId, now: datetime, limit: int) -> list[WebhookDelivery]:
        waiting = sorted(
            (
                d
                for d in self.db.deliveries.values()
                if d.org_id == org_id and d.status is DeliveryStatus.RECEIVED
            ),
            key=lambda d: (d.received_at, d.id),
        )[:limit]
        for delivery in waiting:
            self.db.deliveries[delivery.id] = replace(
                delivery, status=DeliveryStatus.PROCESSED, processed_at=now
            )
        return waiting

    async def orgs_waiting(self, received_before: datetime) -> list[OrgId]:
        return sorted(
            {
                d.org_id
                for d in self.db.deliveries.values()
                if d.status is DeliveryStatus.RECEIVED and d.received_at < received_before
            }
        )

    async def finish(
        self, delivery_id: str, status: DeliveryStatus, now: datetime, error: str | None
    ) -> None:
        delivery = self.db.deliveries[delivery_id]
        self.db.deliveries[delivery_id] = replace(
            delivery, status=status, processed_at=now, error=error
        )

    async def purge_finished(self, received_before: datetime, limit: int) -> int:
        doomed = [
            d.id
            for d in self.db.deliveries.values()
            if d.received_at < received_before and d.status is not DeliveryStatus.RECEIVED
        ][:limit]
        for delivery_id in doomed:
            del self.db.deliveries[delivery_id]
        return len(doomed)

    async def page(
        self, org_id: OrgId, limit: int, before: tuple[datetime, str] | None
    ) -> list[WebhookDelivery]:
        rows = sorted(
            (d for d in self.db.deliveries.values() if d.org_id == org_id),
            key=lambda d: (d.received_at, d.id),
            reverse=True,
        )
        if before is not None:
            rows = [d for d in rows if (d.received_at, d.id) < before]
        return rows[:limit]


class FakeAudit(_Repo):
    async def add(self, event: AuditEvent) -> None:
        self.db.audit.append(event)

    async def for_org(self, org_id: OrgId, limit: int) -> list[AuditEvent]:
        return [e for e in reversed(self.db.audit) if e.org_id == org_id][:limit]


class FakeOrgAccess(_Repo):
    async def role_of(self, org_id: OrgId, user_id: UserId) -> str | None:
        for m in self.db.memberships.values():
            if m.org_id == org_id and m.user_id == user_id:
                return m.role.value
        return None

    async def role_and_task(
        self, org_id: OrgId, user_id: UserId, task_id: TaskId
    ) -> tuple[str | None, bool]:
        role = await self.role_of(org_id, user_id)
        task = self.db.tasks.get(task_id)
        return role, role is not None and task is not None and task.org_id == org_id

    async def admins(self, org_id: OrgId) -> list[UserId]:
        return sorted(
            m.user_id
            for m in self.db.memberships.values()
            if m.org_id == org_id and m.role is Role.ADMIN
        )


class FakeSecretBox:
    """Reversible 'encryption' under named keys; the first key encrypts, any decrypts."""

    def __init__(self, keys: tuple[str, ...] = ("k1",)) -> None:
        self.keys = keys

    @property
    def available(self) -> bool:
        return bool(self.keys)

    def encrypt(self, plaintext: str) -> str:
        return f"enc[{self.keys[0]}]:{plaintext[::-1]}"

    def decrypt(self, ciphertext: str) -> str:
        key, _, body = ciphertext.partition(":")
        if key[4:-1] not in self.keys:
            raise SecretUndecryptable("no configured key decrypts this value")
        return body[::-1]

    def rotate(self, ciphertext: str) -> str:
        return self.encrypt(self.decrypt(ciphertext))

    def is_current(self, ciphertext: str) -> bool:
        return bool(self.keys) and ciphertext.startswith(f"enc[{self.keys[0]}]:")


class FakeKeyedHasher:
    """A keyed digest anyone can read back; ``key`` stands for the server secret."""

    def __init__(self, key: str = "") -> None:
        self.key = key

    def digest(self, value: str) -> str:
        return f"h:{self.key + ':' if self.key else ''}" + value[::-1]

    def matches(self, value: str, digest: str) -> bool:
        return self.digest(value) == digest


class FakeGitLab:
    """A scripted GitLab: objects by (path, kind, iid), a token it accepts, call counts."""

    def __init__(self, token: str = "glpat-good") -> None:
        self.token = token
        self.objects: dict[tuple[str, str, int], GitLabObject] = {}
        self.failures: list[GitLabCallFailed] = []
        self.calls: list[str] = []
        self.token_info_result = TokenInfo(scopes=("read_api",), expires_at=None)

    def put(self, path: str, kind: str, iid: int, state: str, title: str = "Title") -> None:
        self.objects[(path.lower(), kind, iid)] = GitLabObject(
            title=title, state=state, labels=("bug",), assignees=(), web_url="", updated_at=None
        )

    def _check(self, call: str, token: str) -> None:
        self.calls.append(call)
        if self.failures:
            raise self.failures.pop(0)
        if token != self.token:
            raise GitLabCallFailed("auth_error", "GitLab rejected the token", status=401)

    async def fetch_object(self, base_url: str, token: str, ref: GitLabRef) -> GitLabObject:
        self._check(f"object:{ref.project_path}:{ref.kind.value}:{ref.iid}", token)
        try:
            return self.objects[ref.key]
        except KeyError:
            raise GitLabCallFailed("not_found", "not found", status=404) from None

    async def current_user(self, base_url: str, token: str) -> GitLabUser:
        self._check("user", token)
        return GitLabUser(username="ada")

    async def token_info(self, base_url: str, token: str) -> TokenInfo:
        self._check("token_info", token)
        return self.token_info_result
