"""What the orgs context needs from the outside world."""

from __future__ import annotations

from typing import Protocol

from viarah.domain.orgs.model import Membership, MemberUser, Organization, Project, Task
from viarah.domain.shared.ids import MembershipId, OrgId, ProjectId, TaskId, UserId
from viarah.domain.shared.uow import UnitOfWork


class OrganizationRepository(Protocol):
    async def add(self, org: Organization) -> None: ...

    async def get(self, org_id: OrgId) -> Organization | None: ...


class MembershipRepository(Protocol):
    async def add(self, membership: Membership) -> None:
        """Store a membership; Conflict if the user is already a member."""
        ...

    async def get(self, membership_id: MembershipId) -> Membership | None: ...

    async def find(self, org_id: OrgId, user_id: UserId) -> Membership | None: ...

    async def list_for_org(self, org_id: OrgId) -> list[Membership]: ...

    async def list_for_user(self, user_id: UserId) -> list[Membership]: ...

    async def count_admins(self, org_id: OrgId, *, for_update: bool = False) -> int:
        """Admins of the org; ``for_update`` locks them until the transaction ends."""
        ...

    async def update(self, membership: Membership) -> None: ...

    async def delete(self, membership_id: MembershipId) -> None: ...


class UserDirectory(Protocol):
    """Read access to user accounts (owned by the identity context)."""

    async def by_email(self, email: str) -> MemberUser | None: ...

    async def by_ids(self, user_ids: list[UserId]) -> dict[UserId, MemberUser]: ...


class ProjectRepository(Protocol):
    async def add(self, project: Project) -> None: ...

    async def get(self, org_id: OrgId, project_id: ProjectId) -> Project | None: ...

    async def list_for_org(self, org_id: OrgId) -> list[Project]: ...


class TaskRepository(Protocol):
    async def add(self, task: Task) -> None: ...

    async def get(self, org_id: OrgId, task_id: TaskId) -> Task | None: ...

    async def list_for_project(self, org_id: OrgId, project_id: ProjectId) -> list[Task]: ...

    async def update(self, task: Task) -> None: ...

    async def add_watcher(self, task_id: TaskId, user_id: UserId) -> None:
        """Idempotent: watching twice is the same as watching once."""
        ...

    async def remove_watcher(self, task_id: TaskId, user_id: UserId) -> None: ...

    async def watchers(self, task_id: TaskId) -> list[UserId]: ...


class OrgsUnitOfWork(UnitOfWork, Protocol):
    orgs: OrganizationRepository
    memberships: MembershipRepository
    directory: UserDirectory
    projects: ProjectRepository
    tasks: TaskRepository
