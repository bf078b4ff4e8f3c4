"""In-memory adapters for unit tests: the same ports as production, no I/O.

A :class:`FakeUnitOfWork` works on a copy of :class:`MemoryDatabase`; ``commit`` publishes
the copy, leaving without commit throws it away — the transactional behaviour use cases
rely on.
"""

from tests.fakes.clock import FakeClock
from tests.fakes.gitlab import (
    FakeAudit,
    FakeDeliveries,
    FakeGitLab,
    FakeIntegrations,
    FakeKeyedHasher,
    FakeLinks,
    FakeOrgAccess,
    FakeSecretBox,
)
from tests.fakes.identity import FakeApiTokens, FakePasswordHasher, FakeSessions, FakeUsers
from tests.fakes.jobs import FakeJobQueue, FakeJobStore
from tests.fakes.memory import FakeOutbox, MemoryDatabase
from tests.fakes.notifications import (
    FakeAudience,
    FakeNotifications,
    FakePreferences,
    FakePushDeliveries,
    FakePushSender,
    FakeSubscriptions,
)
from tests.fakes.orgs import FakeDirectory, FakeMemberships, FakeOrgs, FakeProjects, FakeTasks
from tests.fakes.uow import FakeUnitOfWork

__all__ = [
    "FakeApiTokens",
    "FakeAudience",
    "FakeAudit",
    "FakeClock",
    "FakeDeliveries",
    "FakeDirectory",
    "FakeGitLab",
    "FakeIntegrations",
    "FakeJobQueue",
    "FakeJobStore",
    "FakeKeyedHasher",
    "FakeLinks",
    "FakeMemberships",
    "FakeNotifications",
    "FakeOrgAccess",
    "FakeOrgs",
    "FakeOutbox",
    "FakePasswordHasher",
    "FakePreferences",
    "FakeProjects",
    "FakePushDeliveries",
    "FakePushSender",
    "FakeSecretBox",
    "FakeSessions",
    "FakeSubscriptions",
    "FakeTasks",
    "FakeUnitOfWork",
    "FakeUsers",
    "MemoryDatabase",
]
