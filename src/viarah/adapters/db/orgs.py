"""Repositories of the orgs context: organizations, memberships, projects, tasks."""

from __future__ import annotations

import contextlib
from typing import Any

import sqlalchemy as sa

from viarah.adapters.db import tables as t
from viarah.adapters.db.base import SqlRepository
from viarah.domain.orgs.model import (
    Membership,
    MemberUser,
    Organization,
    Project,
    Role,
    Task,
    TaskStatus,
)
from viarah.domain.shared.errors import Conflict
from viarah.domain.shared.ids import (
    MembershipId,
    OrgId,
    ProjectId,
    TaskId,
    UserId,
)


class SqlOrganizationRepository(SqlRepository):
    async def add(self, org: Organization) -> None:
        await self._conn.execute(
            t.organizations.insert().values(
                id=org.id, name=org.name, logo_url=org.logo_url, created_at=org.created_at
            )
        )

    async def get(self, org_id: OrgId) -> Organization | None:
        row = await self._one(sa.select(t.organizations).where(t.organizations.c.id == org_id))
        if row is None:
            return None
        return Organization(
            id=OrgId(row.id), name=row.name, logo_url=row.logo_url, created_at=row.created_at
        )


def _membership(row: sa.Row[Any]) -> Membership:
    return Membership(
        id=MembershipId(row.id),
        org_id=OrgId(row.org_id),
        user_id=UserId(row.user_id),
        role=Role(row.role),
        created_at=row.created_at,
    )


class SqlMembershipRepository(SqlRepository):
    async def add(self, membership: Membership) -> None:
        await self._insert(
            t.memberships,
            {
                "id": membership.id,
                "org_id": membership.org_id,
                "user_id": membership.user_id,
                "role": membership.role.value,
                "created_at": membership.created_at,
            },
            "the user is already a member of this organization",
        )

    async def get(self, membership_id: MembershipId) -> Membership | None:
        row = await self._one(sa.select(t.memberships).where(t.memberships.c.id == membership_id))
        return _membership(row) if row else None

    async def find(self, org_id: OrgId, user_id: UserId) -> Membership | None:
        row = await self._one(
            sa.select(t.memberships).where(
                t.memberships.c.org_id == org_id, t.memberships.c.user_id == user_id
            )
        )
        return _membership(row) if row else None

    async def list_for_org(self, org_id: OrgId) -> list[Membership]:
        rows = await self._all(
            sa.select(t.memberships)
            .where(t.memberships.c.org_id == org_id)
            .order_by(t.memberships.c.created_at, t.memberships.c.id)
        )
        return [_membership(r) for r in rows]

    async def list_for_user(self, user_id: UserId) -> list[Membership]:
        rows = await self._all(
            sa.select(t.memberships)
            .where(t.memberships.c.user_id == user_id)
            .order_by(t.memberships.c.created_at, t.memberships.c.id)
        )
        return [_membership(r) for r in rows]

    async def count_admins(self, org_id: OrgId, *, for_update: bool = False) -> int:
        query = (
            sa.select(t.memberships.c.id)
            .where(t.memberships.c.org_id == org_id, t.memberships.c.role == Role.ADMIN.value)
            .order_by(t.memberships.c.id)
        )
        if for_update:
            query = query.with_for_update()
        return len(await self._all(query))

    async def update(self, membership: Membership) -> None:
        await self._conn.execute(
            t.memberships.update()
            .where(t.memberships.c.id == membership.id)
            .values(role=membership.role.value)
        )

    async def delete(self, membership_id: MembershipId) -> None:
        await self._conn.execute(t.memberships.delete().where(t.memberships.c.id == membership_id))


def _member_user(row: sa.Row[Any]) -> MemberUser:
    return MemberUser(id=UserId(row.id), email=row.email, display_name=row.display_name)


class SqlUserDirectory(SqlRepository):
    _columns = (t.users.c.id, t.users.c.email, t.users.c.display_name)

    async def by_email(self, email: str) -> MemberUser | None:
        row = await self._one(
            sa.select(*self._columns).where(t.users.c.email == email, t.users.c.is_active)
        )
        return _member_user(row) if row else None

    async def by_ids(self, user_ids: list[UserId]) -> dict[UserId, MemberUser]:
        if not user_ids:
            return {}
        rows = await self._all(sa.select(*self._columns).where(t.users.c.id.in_(set(user_ids))))
        return {UserId(r.id): _member_user(r) for r in rows}


def _project(row: sa.Row[Any]) -> Project:
    return Project(
        id=ProjectId(row.id), org_id=OrgId(row.org_id), name=row.name, created_at=row.created_at
    )


class SqlProjectRepository(SqlRepository):
    async def add(self, project: Project) -> None:
        await self._conn.execute(
            t.projects.insert().values(
                id=project.id,
                org_id=project.org_id,
                name=project.name,
                created_at=project.created_at,
            )
        )

    async def get(self, org_id: OrgId, project_id: ProjectId) -> Project | None:
        row = await self._one(
            sa.select(t.projects).where(
                t.projects.c.id == project_id, t.projects.c.org_id == org_id
            )
        )
        return _project(row) if row else None

    async def list_for_org(self, org_id: OrgId) -> list[Project]:
        rows = await self._all(
            sa.select(t.projects)
            .where(t.projects.c.org_id == org_id)
            .order_by(t.projects.c.created_at, t.projects.c.id)
        )
        return [_project(r) for r in rows]


def _task(row: sa.Row[Any]) -> Task:
    return Task(
        id=TaskId(row.id),
        org_id=OrgId(row.org_id),
        project_id=ProjectId(row.project_id),
        title=row.title,
        status=TaskStatus(row.status),
        assignee_user_id=UserId(row.assignee_user_id) if row.assignee_user_id else None,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


class SqlTaskRepository(SqlRepository):
    async def add(self, task: Task) -> None:
        await self._conn.execute(
            t.tasks.insert().values(
                id=task.id,
                org_id=task.org_id,
                project_id=task.project_id,
                title=task.title,
                status=task.status.value,
                assignee_user_id=task.assignee_user_id,
                created_at=task.created_at,
                updated_at=task.updated_at,
            )
        )

    async def get(self, org_id: OrgId, task_id: TaskId) -> Task | None:
        row = await self._one(
            sa.select(t.tasks).where(t.tasks.c.id == task_id, t.tasks.c.org_id == org_id)
        )
        return _task(row) if row else None

    async def list_for_project(self, org_id: OrgId, project_id: ProjectId) -> list[Task]:
        rows = await self._all(
            sa.select(t.tasks)
            .where(t.tasks.c.org_id == org_id, t.tasks.c.project_id == project_id)
            .order_by(t.tasks.c.created_at, t.tasks.c.id)
        )
        return [_task(r) for r in rows]

    async def update(self, task: Task) -> None:
        await self._conn.execute(
            t.tasks.update()
            .where(t.tasks.c.id == task.id)
            .values(
                title=task.title,
                status=task.status.value,
                assignee_user_id=task.assignee_user_id,
                updated_at=task.updated_at,
            )
        )

    async def add_watcher(self, task_id: TaskId, user_id: UserId) -> None:
        exists = await self._one(
            sa.select(t.task_watchers.c.task_id).where(
                t.task_watchers.c.task_id == task_id, t.task_watchers.c.user_id == user_id
            )
        )
        if exists is None:
            # A concurrent request adding the same watcher is the same outcome.
            with contextlib.suppress(Conflict):
                await self._insert(
                    t.task_watchers, {"task_id": task_id, "user_id": user_id}, "already watching"
                )

    async def remove_watcher(self, task_id: TaskId, user_id: UserId) -> None:
        await self._conn.execute(
            t.task_watchers.delete().where(
                t.task_watchers.c.task_id == task_id, t.task_watchers.c.user_id == user_id
            )
        )

    async def watchers(self, task_id: TaskId) -> list[UserId]:
        rows = await self._all(
            sa.select(t.task_watchers.c.user_id)
            .where(t.task_watchers.c.task_id == task_id)
            .order_by(t.task_watchers.c.user_id)
        )
        return [UserId(r.user_id) for r in rows]
