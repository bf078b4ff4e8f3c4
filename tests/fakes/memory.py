"""The in-memory database the fake repositories share, and the outbox."""

from __future__ import annotations

from dataclasses import dataclass, field

from viarah.domain.gitlab.model import (
    AuditEvent,
    GitLabIntegration,
    GitLabLink,
    WebhookDelivery,
)
from viarah.domain.identity.model import ApiToken, LoginSession, User
from viarah.domain.notifications.model import (
    Notification,
    PushDelivery,
    PushSubscription,
)
from viarah.domain.orgs.model import Membership, Organization, Project, Task
from viarah.domain.shared.jobs import Job


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


def add_jobs(db: MemoryDatabase, jobs: list[Job]) -> None:
    """Commit jobs to ``db.jobs`` (the pending ones, until a test runs them): a job whose
    coalesce key is pending already adds nothing, as in the SQL outbox."""
    for job in jobs:
        if job.coalesce_key is None or all(j.coalesce_key != job.coalesce_key for j in db.jobs):
            db.jobs.append(job)


class _Repo:
    def __init__(self, db: MemoryDatabase) -> None:
        self.db = db


class FakeOutbox:
    def __init__(self) -> None:
        self.pending: list[Job] = []

    def add(self, job: Job) -> None:
        self.pending.append(job)
