"""In-memory adapters for unit tests: the same ports as production, no I/O.

A :class:`FakeUnitOfWork` works on a copy of :class:`MemoryDatabase`; ``commit`` publishes
the copy, leaving without commit throws it away — the transactional behaviour use cases
rely on.
"""

from __future__ import annotations

import copy
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Self

from viarah.domain.gitlab.client import GitLabCallFailed, GitLabObject, GitLabUser, TokenInfo
from viarah.domain.gitlab.model import (
    REFRESH_PENDING_TIMEOUT,
    AuditEvent,
    DeliveryStatus,
    GitLabIntegration,
    GitLabLink,
    LinkSnapshot,
    WebhookDelivery,
)
from viarah.domain.gitlab.urls import GitLabRef
from viarah.domain.identity.model import ApiToken, LoginSession, User
from viarah.domain.jobs.model import DISPATCH_TIMEOUT, JobRecord, JobStatus
from viarah.domain.jobs.ports import BrokerUnavailable
from viarah.domain.notifications.model import (
    DeliveryState,
    Notification,
    PushDelivery,
    PushSubscription,
)
from viarah.domain.notifications.ports import TaskAudience
from viarah.domain.notifications.push import PushMessage, PushResult, PushTarget
from viarah.domain.orgs.model import Membership, MemberUser, Organization, Project, Role, Task
from viarah.domain.shared.errors import Conflict
from viarah.domain.shared.ids import ApiTokenId, MembershipId, OrgId, ProjectId, TaskId, UserId
from viarah.domain.shared.jobs import Job
from viarah.domain.shared.secrets import SecretUndecryptable


class FakeClock:
    """A clock that only moves when told to."""

    def __init__(self, start: datetime | None = None) -> None:
        self.current = start or datetime(2026, 1, 1, 12, 0, tzinfo=UTC)

    def now(self) -> datetime:
        return self.current

    def advance(self, **kwargs: float) -> None:
        self.current += timedelta(**kwargs)


class FakePasswordHasher:
    """Reversible 'hashing' that keeps the hasher's contract, fast enough for unit tests."""

    def __init__(self) -> None:
        self.version = "v1"

    def hash(self, password: str) -> str:
        return f"fake-{self.version}${password[::-1]}"

    def verify(self, password_hash: str, password: str) -> bool:
        return password_hash.split("$", 1)[-1] == password[::-1]

    def needs_rehash(self, password_hash: str) -> bool:
        return not password_hash.startswith(f"fake-{self.version}$")


@dataclass
class MemoryDatabase:
    users: dict[str, User] = field(default_factory=dict)
    sessions: dict[str, LoginSession] = field(default_factory=dict)
    api_tokens: dict[str, ApiToken] = field(default_factory=dict)
    orgs: dict[str, Organization] = field(default_factory=dict)
    memberships: dict[str, Membership] = field(default_factory=dict)
    projects: dict[str, Project] = field(default_factory=dict)
    tasks: dict[str, Task] = field(default_factory=dict)
    watchers: set[tuple[str, str]] = field(default_factory=set)
    jobs: list[Job] = field(default_factory=list)
    commits: int = 0
    gitlab_integrations: dict[str, GitLabIntegration] = field(default_factory=dict)
    gitlab_links: dict[str, GitLabLink] = field(default_factory=dict)
    deliveries: dict[str, WebhookDelivery] = field(default_factory=dict)
    audit: list[AuditEvent] = field(default_factory=list)
    subscriptions: dict[str, PushSubscription] = field(default_factory=dict)
    preferences: dict[tuple[str, str, str], bool] = field(default_factory=dict)
    notifications: dict[str, Notification] = field(default_factory=dict)
    push_deliveries: dict[str, PushDelivery] = field(default_factory=dict)


class _Repo:
    def __init__(self, db: MemoryDatabase) -> None:
        self.db = db


class FakeUsers(_Repo):
    async def add(self, user: User) -> None:
        if any(u.email == user.email for u in self.db.users.values()):
            raise Conflict("email taken")
        self.db.users[user.id] = user

    async def get(self, user_id: UserId) -> User | None:
        return self.db.users.get(user_id)

    async def get_by_email(self, email: str) -> User | None:
        return next((u for u in self.db.users.values() if u.email == email), None)

    async def update(self, user: User) -> None:
        self.db.users[user.id] = user


class FakeSessions(_Repo):
    async def add(self, session: LoginSession) -> None:
        self.db.sessions[session.id] = session

    async def get_by_digest(self, token_digest: str) -> LoginSession | None:
        return next((s for s in self.db.sessions.values() if s.token_digest == token_digest), None)

    async def delete(self, session_id: str) -> None:
        self.db.sessions.pop(session_id, None)

    async def delete_expired(self, before: datetime) -> int:
        expired = [k for k, s in self.db.sessions.items() if s.expires_at < before]
        for key in expired:
            del self.db.sessions[key]
        return len(expired)


class FakeApiTokens(_Repo):
    async def add(self, token: ApiToken) -> None:
        self.db.api_tokens[token.id] = token

    async def get(self, token_id: ApiTokenId) -> ApiToken | None:
        return self.db.api_tokens.get(token_id)

    async def get_by_prefix(self, prefix: str) -> ApiToken | None:
        return next((t for t in self.db.api_tokens.values() if t.prefix == prefix), None)

    async def list_for_user(self, user_id: UserId) -> list[ApiToken]:
        return sorted(
            (t for t in self.db.api_tokens.values() if t.user_id == user_id),
            key=lambda t: (t.created_at, t.id),
        )

    async def update(self, token: ApiToken) -> None:
        self.db.api_tokens[token.id] = token


class FakeOrgs(_Repo):
    async def add(self, org: Organization) -> None:
        self.db.orgs[org.id] = org

    async def get(self, org_id: OrgId) -> Organization | None:
        return self.db.orgs.get(org_id)


class FakeMemberships(_Repo):
    async def add(self, membership: Membership) -> None:
        if await self.find(membership.org_id, membership.user_id) is not None:
            raise Conflict("already a member")
        self.db.memberships[membership.id] = membership

    async def get(self, membership_id: MembershipId) -> Membership | None:
        return self.db.memberships.get(membership_id)

    async def find(self, org_id: OrgId, user_id: UserId) -> Membership | None:
        return next(
            (
                m
                for m in self.db.memberships.values()
                if m.org_id == org_id and m.user_id == user_id
            ),
            None,
        )

    async def list_for_org(self, org_id: OrgId) -> list[Membership]:
        return sorted(
            (m for m in self.db.memberships.values() if m.org_id == org_id),
            key=lambda m: (m.created_at, m.id),
        )

    async def list_for_user(self, user_id: UserId) -> list[Membership]:
        return sorted(
            (m for m in self.db.memberships.values() if m.user_id == user_id),
            key=lambda m: (m.created_at, m.id),
        )

    async def count_admins(self, org_id: OrgId, *, for_update: bool = False) -> int:
        return sum(
            1 for m in self.db.memberships.values() if m.org_id == org_id and m.role is Role.ADMIN
        )

    async def update(self, membership: Membership) -> None:
        self.db.memberships[membership.id] = membership

    async def delete(self, membership_id: MembershipId) -> None:
        self.db.memberships.pop(membership_id, None)


class FakeDirectory(_Repo):
    def _view(self, user: User) -> MemberUser:
        return MemberUser(id=user.id, email=user.email, display_name=user.display_name)

    async def by_email(self, email: str) -> MemberUser | None:
        user = next((u for u in self.db.users.values() if u.email == email), None)
        return self._view(user) if user and user.is_active else None

    async def by_ids(self, user_ids: list[UserId]) -> dict[UserId, MemberUser]:
        return {uid: self._view(self.db.users[uid]) for uid in user_ids if uid in self.db.users}


class FakeProjects(_Repo):
    async def add(self, project: Project) -> None:
        self.db.projects[project.id] = project

    async def get(self, org_id: OrgId, project_id: ProjectId) -> Project | None:
        project = self.db.projects.get(project_id)
        return project if project and project.org_id == org_id else None

    async def list_for_org(self, org_id: OrgId) -> list[Project]:
        return sorted(
            (p for p in self.db.projects.values() if p.org_id == org_id),
            key=lambda p: (p.created_at, p.id),
        )


class FakeTasks(_Repo):
    async def add(self, task: Task) -> None:
        self.db.tasks[task.id] = task

    async def get(self, org_id: OrgId, task_id: TaskId) -> Task | None:
        task = self.db.tasks.get(task_id)
        return task if task and task.org_id == org_id else None

    async def list_for_project(self, org_id: OrgId, project_id: ProjectId) -> list[Task]:
        return sorted(
            (
                t
                for t in self.db.tasks.values()
                if t.org_id == org_id and t.project_id == project_id
            ),
            key=lambda t: (t.created_at, t.id),
        )

    async def update(self, task: Task) -> None:
        self.db.tasks[task.id] = task

    async def add_watcher(self, task_id: TaskId, user_id: UserId) -> None:
        self.db.watchers.add((task_id, user_id))

    async def remove_watcher(self, task_id: TaskId, user_id: UserId) -> None:
        self.db.watchers.discard((task_id, user_id))

    async def watchers(self, task_id: TaskId) -> list[UserId]:
        return sorted(UserId(u) for t, u in self.db.watchers if t == task_id)


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

    async def list_for_task(self, org_id: OrgId, task_id: TaskId) -> list[GitLabLink]:
        return sorted(
            (
                x
                for x in self.db.gitlab_links.values()
                if x.org_id == org_id and x.task_id == task_id
            ),
            key=lambda x: (x.created_at, x.id),
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
    ) -> bool:
        links = await self.for_object(org_id, key)
        if not links:
            return False
        for link in links:
            pending = link.refresh_requested_at
            if pending is not None and pending > now - REFRESH_PENDING_TIMEOUT:
                return False
            last = link.last_attempt_at
            if (
                min_attempt_interval is not None
                and last is not None
                and last > now - min_attempt_interval
            ):
                return False
        self._update(org_id, key, refresh_requested_at=now)
        return True

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
    async def add(self, delivery: WebhookDelivery) -> bool:
        if any(
            d.org_id == delivery.org_id and d.idempotency_key == delivery.idempotency_key
            for d in self.db.deliveries.values()
        ):
            return False
        self.db.deliveries[delivery.id] = delivery
        return True

    async def get(self, delivery_id: str) -> WebhookDelivery | None:
        return self.db.deliveries.get(delivery_id)

    async def finish(
        self, delivery_id: str, status: DeliveryStatus, now: datetime, error: str | None
    ) -> None:
        delivery = self.db.deliveries[delivery_id]
        self.db.deliveries[delivery_id] = replace(
            delivery, status=status, processed_at=now, error=error
        )

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

    async def task_exists(self, org_id: OrgId, task_id: TaskId) -> bool:
        task = self.db.tasks.get(task_id)
        return task is not None and task.org_id == org_id

    async def admins(self, org_id: OrgId) -> list[UserId]:
        return sorted(
            m.user_id
            for m in self.db.memberships.values()
            if m.org_id == org_id and m.role is Role.ADMIN
        )


class FakeSubscriptions(_Repo):
    async def upsert(self, subscription: PushSubscription) -> PushSubscription:
        for existing in self.db.subscriptions.values():
            if existing.endpoint == subscription.endpoint:
                updated = replace(subscription, id=existing.id, created_at=existing.created_at)
                self.db.subscriptions[existing.id] = updated
                return updated
        self.db.subscriptions[subscription.id] = subscription
        return subscription

    async def get(self, subscription_id: str) -> PushSubscription | None:
        return self.db.subscriptions.get(subscription_id)

    async def list_for_user(self, user_id: UserId) -> list[PushSubscription]:
        return sorted(
            (s for s in self.db.subscriptions.values() if s.user_id == user_id),
            key=lambda s: (s.created_at, s.id),
        )

    async def for_users(self, user_ids: list[UserId]) -> list[PushSubscription]:
        return [s for s in self.db.subscriptions.values() if s.user_id in set(user_ids)]

    async def delete(self, subscription_id: str) -> None:
        self.db.subscriptions.pop(subscription_id, None)

    async def record_outcome(
        self, subscription_id: str, now: datetime, *, ok: bool, reason: str | None
    ) -> None:
        sub = self.db.subscriptions.get(subscription_id)
        if sub is None:
            return
        if ok:
            self.db.subscriptions[sub.id] = replace(sub, last_success_at=now)
        else:
            self.db.subscriptions[sub.id] = replace(
                sub, last_failure_at=now, last_failure_reason=reason
            )


class FakePreferences(_Repo):
    async def for_user(self, user_id: UserId) -> dict[str, bool]:
        return {e: v for (u, e, _c), v in self.db.preferences.items() if u == user_id}

    async def put(self, user_id: UserId, event_type: str, channel: str, enabled: bool) -> None:
        self.db.preferences[(user_id, event_type, channel)] = enabled

    async def opted_out(self, event_type: str, channel: str, user_ids: list[UserId]) -> set[UserId]:
        return {u for u in user_ids if self.db.preferences.get((u, event_type, channel)) is False}


class FakeNotifications(_Repo):
    async def add(self, notification: Notification) -> bool:
        if await self.by_event_key(notification.event_key) is not None:
            return False
        self.db.notifications[notification.id] = notification
        return True

    async def get(self, notification_id: str) -> Notification | None:
        return self.db.notifications.get(notification_id)

    async def by_event_key(self, event_key: str) -> Notification | None:
        return next((n for n in self.db.notifications.values() if n.event_key == event_key), None)


class FakePushDeliveries(_Repo):
    async def add_many(self, deliveries: list[PushDelivery]) -> int:
        pairs = {(d.notification_id, d.subscription_id) for d in self.db.push_deliveries.values()}
        added = 0
        for delivery in deliveries:
            if (delivery.notification_id, delivery.subscription_id) not in pairs:
                self.db.push_deliveries[delivery.id] = delivery
                added += 1
        return added

    async def claim_due(
        self, notification_id: str, now: datetime, lease_until: datetime, limit: int
    ) -> list[tuple[PushDelivery, PushSubscription]]:
        due = []
        for d in sorted(self.db.push_deliveries.values(), key=lambda d: d.id):
            if (
                d.notification_id == notification_id
                and d.status is DeliveryState.PENDING
                and d.next_attempt_at <= now
                and d.subscription_id in self.db.subscriptions
            ):
                if len(due) == limit:
                    break
                self.db.push_deliveries[d.id] = replace(d, next_attempt_at=lease_until)
                due.append((d, self.db.subscriptions[d.subscription_id]))
        return due

    async def next_pending_at(self, notification_id: str) -> datetime | None:
        times = [
            d.next_attempt_at
            for d in self.db.push_deliveries.values()
            if d.notification_id == notification_id
            and d.status is DeliveryState.PENDING
            and d.subscription_id in self.db.subscriptions
        ]
        return min(times) if times else None

    async def mark_sent(self, delivery_ids: list[str], now: datetime, status: int) -> None:
        for delivery_id in delivery_ids:
            d = self.db.push_deliveries[delivery_id]
            self.db.push_deliveries[delivery_id] = replace(
                d,
                status=DeliveryState.SENT,
                attempts=d.attempts + 1,
                sent_at=now,
                last_status=status,
            )

    async def mark_retry(
        self, delivery_id: str, next_attempt_at: datetime, status: int, error: str
    ) -> None:
        d = self.db.push_deliveries[delivery_id]
        self.db.push_deliveries[delivery_id] = replace(
            d,
            attempts=d.attempts + 1,
            next_attempt_at=next_attempt_at,
            last_status=status,
            last_error=error,
        )

    async def mark_final(
        self, delivery_id: str, state: str, now: datetime, status: int, error: str
    ) -> None:
        d = self.db.push_deliveries[delivery_id]
        self.db.push_deliveries[delivery_id] = replace(
            d,
            status=DeliveryState(state),
            attempts=d.attempts + 1,
            last_status=status,
            last_error=error,
        )

    async def counts(self, notification_id: str) -> dict[str, int]:
        return dict(
            Counter(
                d.status.value
                for d in self.db.push_deliveries.values()
                if d.notification_id == notification_id
            )
        )


class FakeAudience(_Repo):
    async def for_task(self, org_id: OrgId, task_id: str) -> TaskAudience | None:
        task = self.db.tasks.get(TaskId(task_id))
        if task is None or task.org_id != org_id:
            return None
        people = [task.assignee_user_id] if task.assignee_user_id else []
        people += sorted(UserId(u) for t, u in self.db.watchers if t == task_id)
        return TaskAudience(task.title, task.project_id, await self.members(org_id, people))

    async def members(self, org_id: OrgId, user_ids: list[UserId]) -> list[UserId]:
        member_ids = {m.user_id for m in self.db.memberships.values() if m.org_id == org_id}
        return [u for u in dict.fromkeys(user_ids) if u in member_ids]


class FakeOutbox:
    def __init__(self) -> None:
        self.pending: list[Job] = []

    def add(self, job: Job) -> None:
        self.pending.append(job)


class FakeUnitOfWork:
    """Implements every context's UnitOfWork on a :class:`MemoryDatabase`."""

    def __init__(self, db: MemoryDatabase) -> None:
        self._shared = db
        self._work: MemoryDatabase | None = None
        self.outbox = FakeOutbox()

    async def __aenter__(self) -> Self:
        self._open()
        return self

    def _open(self) -> None:
        self._work = work = copy.deepcopy(self._shared)
        self.users = FakeUsers(work)
        self.sessions = FakeSessions(work)
        self.api_tokens = FakeApiTokens(work)
        self.orgs = FakeOrgs(work)
        self.memberships = FakeMemberships(work)
        self.directory = FakeDirectory(work)
        self.projects = FakeProjects(work)
        self.tasks = FakeTasks(work)
        self.gitlab_integrations = FakeIntegrations(work)
        self.gitlab_links = FakeLinks(work)
        self.webhook_deliveries = FakeDeliveries(work)
        self.audit = FakeAudit(work)
        self.org_access = FakeOrgAccess(work)
        self.push_subscriptions = FakeSubscriptions(work)
        self.preferences = FakePreferences(work)
        self.notifications = FakeNotifications(work)
        self.push_deliveries = FakePushDeliveries(work)
        self.audience = FakeAudience(work)
        self.outbox = FakeOutbox()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._work = None

    async def commit(self) -> None:
        assert self._work is not None
        self._work.jobs.extend(self.outbox.pending)
        self.outbox.pending = []
        self._work.commits += 1
        for name in vars(self._shared):
            setattr(self._shared, name, copy.deepcopy(getattr(self._work, name)))

    async def rollback(self) -> None:
        self._open()


class FakeJobStore:
    """The outbox table in memory, with the claim/redelivery rules of the SQL store."""

    def __init__(self) -> None:
        self.records: dict[str, JobRecord] = {}
        self.dispatched_at: dict[str, datetime] = {}
        self.locked_until: dict[str, datetime] = {}
        self.errors: dict[str, str] = {}

    def put(self, job_id: str, name: str, payload: dict[str, object], now: datetime) -> None:
        self.records[job_id] = JobRecord(
            job_id, name, dict(payload), JobStatus.PENDING, 0, now, now
        )

    def status(self, job_id: str) -> str:
        return self.records[job_id].status.value

    def _redeliverable(self, job_id: str, now: datetime) -> bool:
        status = self.records[job_id].status
        if status in (JobStatus.PENDING, JobStatus.DISPATCHED):
            return True
        return status is JobStatus.RUNNING and self.locked_until[job_id] < now

    async def due_for_dispatch(
        self, now: datetime, limit: int, dead_after: timedelta | None = None
    ) -> list[JobRecord]:
        due = []
        for job_id, rec in self.records.items():
            if (
                (rec.status is JobStatus.PENDING and rec.available_at <= now)
                or (
                    rec.status is JobStatus.DISPATCHED
                    and self.dispatched_at[job_id] < now - DISPATCH_TIMEOUT
                )
                or (rec.status is JobStatus.RUNNING and self.locked_until[job_id] < now)
            ):
                due.append(rec)
        return due[:limit]

    async def mark_dispatched(
        self, job_ids: list[str], now: datetime, dead_after: timedelta | None = None
    ) -> None:
        for job_id in job_ids:
            if self._redeliverable(job_id, now):
                self.records[job_id] = replace(self.records[job_id], status=JobStatus.DISPATCHED)
                self.dispatched_at[job_id] = now

    async def claim(
        self,
        job_id: str,
        now: datetime,
        lock_until: datetime,
        holder: str | None = None,
        dead_after: timedelta | None = None,
    ) -> JobRecord | None:
        if job_id not in self.records or not self._redeliverable(job_id, now):
            return None
        self.records[job_id] = replace(self.records[job_id], status=JobStatus.RUNNING)
        self.locked_until[job_id] = lock_until
        return self.records[job_id]

    async def finish(self, job_id: str, now: datetime) -> None:
        self.records[job_id] = replace(self.records[job_id], status=JobStatus.DONE)

    async def retry_later(self, job_id: str, error: str, available_at: datetime) -> None:
        rec = self.records[job_id]
        self.records[job_id] = replace(
            rec, status=JobStatus.PENDING, attempts=rec.attempts + 1, available_at=available_at
        )
        self.errors[job_id] = error

    async def give_up(self, job_id: str, error: str, now: datetime) -> None:
        rec = self.records[job_id]
        self.records[job_id] = replace(rec, status=JobStatus.FAILED, attempts=rec.attempts + 1)
        self.errors[job_id] = error

    async def counts(self) -> dict[str, int]:
        return dict(Counter(r.status.value for r in self.records.values()))


class FakeJobQueue:
    """A broker that records what it was sent and can be switched off."""

    def __init__(self) -> None:
        self.sent: list[str] = []
        self.down = False

    def send(self, job_id: str, job_name: str) -> None:
        if self.down:
            raise BrokerUnavailable("ConnectionError")
        self.sent.append(job_id)


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
    def digest(self, value: str) -> str:
        return "h:" + value[::-1]

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


class FakePushSender:
    """Records what would be sent; answers from a script (default 201)."""

    def __init__(self, enabled: bool = True) -> None:
        self._enabled = enabled
        self.sent: list[tuple[PushTarget, PushMessage]] = []
        self.script: dict[str, list[PushResult]] = {}

    @property
    def enabled(self) -> bool:
        return self._enabled

    @property
    def public_key(self) -> str:
        return "BPublicKey"

    async def send(self, target: PushTarget, message: PushMessage) -> PushResult:
        if not self._enabled:
            return PushResult(0, reason="push disabled")
        answers = self.script.get(target.endpoint)
        result = answers.pop(0) if answers else PushResult(201)
        if result.delivered:
            self.sent.append((target, message))
        return result
