"""The unit of work over :class:`MemoryDatabase`: commit publishes, leaving discards."""

from __future__ import annotations

import copy
from types import TracebackType
from typing import Self

from tests.fakes.gitlab import FakeAudit, FakeDeliveries, FakeIntegrations, FakeLinks, FakeOrgAccess
from tests.fakes.identity import FakeApiTokens, FakeSessions, FakeUsers
from tests.fakes.memory import FakeOutbox, MemoryDatabase, add_jobs
from tests.fakes.notifications import (
    FakeAudience,
    FakeNotifications,
    FakePreferences,
    FakePushDeliveries,
    FakeSubscriptions,
)
from tests.fakes.orgs import FakeDirectory, FakeMemberships, FakeOrgs, FakeProjects, FakeTasks


class FakeUnitOfWork:
    """Implements every context's UnitOfWork on a :class:`MemoryDatabase`."""

    def __init__(self, db: MemoryDatabase) -> None:
        self._shared = db
        self._work: MemoryDatabase | None = None
        self._read_only = False
        self._single_write = False
        self.outbox = FakeOutbox()

    def read_only(self) -> Self:
        self._read_only = True
        return self

    def single_write(self) -> Self:
        self._single_write = True
        return self

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
        assert not self._read_only, "commit in a read-only unit of work"
        assert not (self._single_write and self.outbox.pending), "a single write has no outbox"
        add_jobs(self._work, self.outbox.pending)
        self.outbox.pending = []
        self._work.commits += 1
        for name in vars(self._shared):
            setattr(self._shared, name, copy.deepcopy(getattr(self._work, name)))

    async def rollback(self) -> None:
        self._open()
