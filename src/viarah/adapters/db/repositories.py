"""Repositories over one SQLAlchemy connection; rows are mapped to domain objects by hand."""

from __future__ import annotations

import contextlib
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from viarah.adapters.db import tables as t
from viarah.domain.identity.model import ApiToken, LoginSession, User
from viarah.domain.orgs.model import (
    Membership,
    MemberUser,
    Organization,
    Project,
    Role,
    Task,
    TaskStatus,
)
from viarah.domain.shared.actor import PlatformRole, TokenScope
from viarah.domain.shared.errors import Conflict
from viarah.domain.shared.ids import (
    ApiTokenId,
    MembershipId,
    OrgId,
    ProjectId,
    TaskId,
    UserId,
)


class _Repository:
    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def _insert(self, table: sa.Table, values: dict[str, Any], conflict: str) -> None:
        try:
            async with self._conn.begin_nested():
                await self._conn.execute(table.insert().values(**values))
        except IntegrityError:
            raise Conflict(conflict) from None

    async def _one(self, query: sa.Select[Any]) -> sa.Row[Any] | None:
        row: sa.Row[Any] | None = (await self._conn.execute(query)).first()
        return row

    async def _all(self, query: sa.Select[Any]) -> list[sa.Row[Any]]:
        return list((await self._conn.execute(query)).all())


# --- identity -------------------------------------------------------------------------


def _user(row: sa.Row[Any]) -> User:
    return User(
        id=UserId(row.id),
        email=row.email,
        display_name=row.display_name,
        password_hash=row.password_hash,
        platform_role=PlatformRole(row.platform_role),
        is_active=row.is_active,
        created_at=row.created_at,
    )


def _user_values(user: User) -> dict[str, Any]:
    return {
        "id": user.id,
        "email": user.email,
        "display_name": user.display_name,
        "password_hash": user.password_hash,
        "platform_role": user.platform_role.value,
        "is_active": user.is_active,
        "created_at": user.created_at,
    }


class SqlUserRepository(_Repository):
    async def add(self, user: User) -> None:
        await self._insert(
            t.users, _user_values(user), f"a user with email {user.email} already exists"
        )

    async def get(self, user_id: UserId) -> User | None:
        row = await self._one(sa.select(t.users).where(t.users.c.id == user_id))
        return _user(row) if row else None

    async def get_by_email(self, email: str) -> User | None:
        row = await self._one(sa.select(t.users).where(t.users.c.email == email))
        return _user(row) if row else None

    async def update(self, user: User) -> None:
        values = _user_values(user)
        await self._conn.execute(t.users.update().where(t.users.c.id == user.id).values(**values))


class SqlSessionRepository(_Repository):
    async def add(self, session: LoginSession) -> None:
        await self._conn.execute(
            t.login_sessions.insert().values(
                id=session.id,
                token_digest=session.token_digest,
                user_id=session.user_id,
                csrf_token=session.csrf_token,
                created_at=session.created_at,
                expires_at=session.expires_at,
            )
        )

    async def get_by_digest(self, token_digest: str) -> LoginSession | None:
        row = await self._one(
            sa.select(t.login_sessions).where(t.login_sessions.c.token_digest == token_digest)
        )
        if row is None:
            return None
        return LoginSession(
            id=row.id,
            token_digest=row.token_digest,
            user_id=UserId(row.user_id),
            csrf_token=row.csrf_token,
            created_at=row.created_at,
            expires_at=row.expires_at,
        )

    async def delete(self, session_id: str) -> None:
        await self._conn.execute(
            t.login_sessions.delete().where(t.login_sessions.c.id == session_id)
        )

    async def delete_expired(self, before: datetime) -> int:
        result = await self._conn.execute(
            t.login_sessions.delete().where(t.login_sessions.c.expires_at < before)
        )
        return int(result.rowcount or 0)


def _token(row: sa.Row[Any]) -> ApiToken:
    return ApiToken(
        id=ApiTokenId(row.id),
        user_id=UserId(row.user_id),
        name=row.name,
        prefix=row.prefix,
        secret_digest=row.secret_digest,
        scope=TokenScope(row.scope),
        created_at=row.created_at,
        expires_at=row.expires_at,
        revoked_at=row.revoked_at,
        last_used_at=row.last_used_at,
    )


class SqlApiTokenRepository(_Repository):
    async def add(self, token: ApiToken) -> None:
        await self._insert(
            t.api_tokens,
            {
                "id": token.id,
                "user_id": token.user_id,
                "name": token.name,
                "prefix": token.prefix,
                "secret_digest": token.secret_digest,
                "scope": token.scope.value,
                "created_at": token.created_at,
                "expires_at": token.expires_at,
                "revoked_at": token.revoked_at,
                "last_used_at": token.last_used_at,
            },
            "token prefix collision; try again",
        )

    async def get(self, token_id: ApiTokenId) -> ApiToken | None:
        row = await self._one(sa.select(t.api_tokens).where(t.api_tokens.c.id == token_id))
        return _token(row) if row else None

    async def get_by_prefix(self, prefix: str) -> ApiToken | None:
        row = await self._one(sa.select(t.api_tokens).where(t.api_tokens.c.prefix == prefix))
        return _token(row) if row else None

    async def list_for_user(self, user_id: UserId) -> list[ApiToken]:
        rows = await self._all(
            sa.select(t.api_tokens)
            .where(t.api_tokens.c.user_id == user_id)
            .order_by(t.api_tokens.c.created_at, t.api_tokens.c.id)
        )
        return [_token(r) for r in rows]

    async def update(self, token: ApiToken) -> None:
        await self._conn.execute(
            t.api_tokens.update()
            .where(t.api_tokens.c.id == token.id)
            .values(
                name=token.name,
                revoked_at=token.revoked_at,
                last_used_at=token.last_used_at,
                expires_at=token.expires_at,
            )
        )


# --- orgs -----------------------------------------------------------------------------


class SqlOrganizationRepository(_Repository):
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


class SqlMembershipRepository(_Repository):
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


class SqlUserDirectory(_Repository):
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


class SqlProjectRepository(_Repository):
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


class SqlTaskRepository(_Repository):
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
