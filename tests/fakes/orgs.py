"""In-memory orgs repositories."""

from __future__ import annotations

from tests.fakes.memory import _Repo
from viarah.domain.identity.model import User
from viarah.domain.orgs.model import Membership, MemberUser, Organization, Project, Role, Task
from viarah.domain.shared.errors import Conflict
from viarah.domain.shared.ids import MembershipId, OrgId, ProjectId, TaskId, UserId


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
