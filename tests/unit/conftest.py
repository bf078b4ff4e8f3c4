"""Use cases wired on in-memory fakes: no I/O, the whole unit suite runs in seconds."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from tests.fakes import (
    FakeClock,
    FakeKeyedHasher,
    FakePasswordHasher,
    FakeUnitOfWork,
    MemoryDatabase,
)
from viarah.domain.identity.model import User
from viarah.domain.identity.services import ApiTokens, Authentication, Users
from viarah.domain.orgs.services import Memberships, Organizations, Projects, Tasks
from viarah.domain.shared.actor import Actor


@dataclass
class App:
    db: MemoryDatabase
    clock: FakeClock
    hasher: FakePasswordHasher
    users: Users
    auth: Authentication
    tokens: ApiTokens
    orgs: Organizations
    memberships: Memberships
    projects: Projects
    tasks: Tasks

    async def user(self, email: str, *, admin: bool = False) -> tuple[User, Actor]:
        user = await self.users.create(email, "correct horse", platform_admin=admin)
        return user, Actor(user_id=user.id, platform_role=user.platform_role)


@pytest.fixture
def app() -> App:
    db = MemoryDatabase()
    clock = FakeClock()
    hasher = FakePasswordHasher()

    def uow() -> FakeUnitOfWork:
        return FakeUnitOfWork(db)

    return App(
        db=db,
        clock=clock,
        hasher=hasher,
        users=Users(uow, clock, hasher),
        auth=Authentication(uow, clock, hasher, FakeKeyedHasher()),
        tokens=ApiTokens(uow, clock),
        orgs=Organizations(uow, clock),
        memberships=Memberships(uow, clock),
        projects=Projects(uow, clock),
        tasks=Tasks(uow, clock),
    )
