"""Orgs use cases: organizations, memberships, projects, tasks and watchers.

Visibility rule: a caller who is not a member of an organization gets NotFound for it and
for everything inside it, so non-members never learn what exists.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from viarah.domain.orgs.model import (
    Membership,
    MembershipView,
    Organization,
    OrgView,
    Project,
    Role,
    Task,
    TaskStatus,
)
from viarah.domain.orgs.ports import OrgsUnitOfWork
from viarah.domain.shared.actor import Actor
from viarah.domain.shared.clock import Clock
from viarah.domain.shared.errors import Conflict, Forbidden, InvalidInput, NotFound
from viarah.domain.shared.ids import (
    MembershipId,
    OrgId,
    ProjectId,
    TaskId,
    UserId,
    is_valid_id,
    new_id,
)
from viarah.domain.shared.text import clean_text, normalize_email

UowFactory = Callable[[], OrgsUnitOfWork]
ORG_NOT_FOUND = "organization not found"
_UNSET = object()


async def membership_of(uow: OrgsUnitOfWork, actor: Actor, org_id: str) -> Membership:
    """The actor's membership in ``org_id``; NotFound when there is none."""
    if not is_valid_id(org_id):
        raise NotFound(ORG_NOT_FOUND)
    membership = await uow.memberships.find(OrgId(org_id), actor.user_id)
    if membership is None:
        raise NotFound(ORG_NOT_FOUND)
    return membership


def require_manager(membership: Membership) -> None:
    if not membership.role.manages:
        raise Forbidden("only an org admin or pm may do this")


def require_admin(membership: Membership) -> None:
    if membership.role is not Role.ADMIN:
        raise Forbidden("only an org admin may do this")


def _check_logo_url(logo_url: str | None) -> str | None:
    if logo_url is None or not logo_url.strip():
        return None
    url = clean_text("logo_url", logo_url, max_length=2000)
    if not url.startswith(("https://", "http://")):
        raise InvalidInput("logo_url", "must be an http(s) URL")
    return url


class Organizations:
    def __init__(self, uow: UowFactory, clock: Clock) -> None:
        self._uow = uow
        self._clock = clock

    async def create(self, actor: Actor, name: str, logo_url: str | None = None) -> OrgView:
        """Create an organization; its creator becomes its first admin."""
        now = self._clock.now()
        org = Organization(
            id=OrgId(new_id()),
            name=clean_text("name", name, max_length=200),
            logo_url=_check_logo_url(logo_url),
            created_at=now,
        )
        membership = Membership(
            id=MembershipId(new_id()),
            org_id=org.id,
            user_id=actor.user_id,
            role=Role.ADMIN,
            created_at=now,
        )
        async with self._uow() as uow:
            await uow.orgs.add(org)
            await uow.memberships.add(membership)
            await uow.commit()
        return OrgView(org=org, role=Role.ADMIN)

    async def list_orgs(self, actor: Actor) -> list[OrgView]:
        """The organizations the actor belongs to, oldest first."""
        async with self._uow() as uow:
            views = []
            for membership in await uow.memberships.list_for_user(actor.user_id):
                org = await uow.orgs.get(membership.org_id)
                if org is not None:
                    views.append(OrgView(org=org, role=membership.role))
        return sorted(views, key=lambda v: (v.org.created_at, v.org.id))

    async def get(self, actor: Actor, org_id: str) -> OrgView:
        async with self._uow() as uow:
            membership = await membership_of(uow, actor, org_id)
            org = await uow.orgs.get(membership.org_id)
        if org is None:
            raise NotFound(ORG_NOT_FOUND)
        return OrgView(org=org, role=membership.role)


class Memberships:
    """Who belongs to an organization, with which role. The last admin always stays."""

    def __init__(self, uow: UowFactory, clock: Clock) -> None:
        self._uow = uow
        self._clock = clock

    async def list_members(self, actor: Actor, org_id: str) -> list[MembershipView]:
        async with self._uow() as uow:
            await membership_of(uow, actor, org_id)
            memberships = await uow.memberships.list_for_org(OrgId(org_id))
            users = await uow.directory.by_ids([m.user_id for m in memberships])
        return [
            MembershipView(membership=m, user=users[m.user_id])
            for m in memberships
            if m.user_id in users
        ]

    async def for_user(self, user_id: UserId) -> list[Membership]:
        """Every membership of one user (for the ``/api/me`` view)."""
        async with self._uow() as uow:
            return await uow.memberships.list_for_user(user_id)

    async def add(self, actor: Actor, org_id: str, email: str, role: str) -> MembershipView:
        """Add an existing user by e-mail; Conflict if already a member."""
        new_role = Role.parse(role)
        email = normalize_email(email)
        async with self._uow() as uow:
            require_admin(await membership_of(uow, actor, org_id))
            user = await uow.directory.by_email(email)
            if user is None:
                raise InvalidInput("email", "no user with this e-mail exists")
            if await uow.memberships.find(OrgId(org_id), user.id) is not None:
                raise Conflict(f"{email} is already a member of this organization")
            membership = Membership(
                id=MembershipId(new_id()),
                org_id=OrgId(org_id),
                user_id=user.id,
                role=new_role,
                created_at=self._clock.now(),
            )
            await uow.memberships.add(membership)
            await uow.commit()
        return MembershipView(membership=membership, user=user)

    async def change_role(
        self, actor: Actor, org_id: str, membership_id: str, role: str
    ) -> MembershipView:
        new_role = Role.parse(role)
        async with self._uow() as uow:
            target = await self._target(uow, actor, org_id, membership_id)
            if target.role is Role.ADMIN and new_role is not Role.ADMIN:
                await self._keep_an_admin(uow, target.org_id, "demoted")
            updated = replace(target, role=new_role)
            await uow.memberships.update(updated)
            users = await uow.directory.by_ids([updated.user_id])
            await uow.commit()
        return MembershipView(membership=updated, user=users[updated.user_id])

    async def remove(self, actor: Actor, org_id: str, membership_id: str) -> None:
        async with self._uow() as uow:
            target = await self._target(uow, actor, org_id, membership_id)
            if target.role is Role.ADMIN:
                await self._keep_an_admin(uow, target.org_id, "removed")
            await uow.memberships.delete(target.id)
            await uow.commit()

    async def _target(
        self, uow: OrgsUnitOfWork, actor: Actor, org_id: str, membership_id: str
    ) -> Membership:
        require_admin(await membership_of(uow, actor, org_id))
        target = (
            await uow.memberships.get(MembershipId(membership_id))
            if is_valid_id(membership_id)
            else None
        )
        if target is None or target.org_id != org_id:
            raise NotFound("membership not found")
        return target

    @staticmethod
    async def _keep_an_admin(uow: OrgsUnitOfWork, org_id: OrgId, verb: str) -> None:
        if await uow.memberships.count_admins(org_id, for_update=True) <= 1:
            raise Conflict(f"the last admin of an organization cannot be {verb}")


class Projects:
    def __init__(self, uow: UowFactory, clock: Clock) -> None:
        self._uow = uow
        self._clock = clock

    async def list_projects(self, actor: Actor, org_id: str) -> list[Project]:
        async with self._uow() as uow:
            membership = await membership_of(uow, actor, org_id)
            return await uow.projects.list_for_org(membership.org_id)

    async def create(self, actor: Actor, org_id: str, name: str) -> Project:
        """Create a project (admin or pm)."""
        async with self._uow() as uow:
            membership = await membership_of(uow, actor, org_id)
            require_manager(membership)
            project = Project(
                id=ProjectId(new_id()),
                org_id=membership.org_id,
                name=clean_text("name", name, max_length=200),
                created_at=self._clock.now(),
            )
            await uow.projects.add(project)
            await uow.commit()
        return project

    async def get(self, actor: Actor, org_id: str, project_id: str) -> Project:
        async with self._uow() as uow:
            membership = await membership_of(uow, actor, org_id)
            return await _project(uow, membership.org_id, project_id)


async def _project(uow: OrgsUnitOfWork, org_id: OrgId, project_id: str) -> Project:
    project = (
        await uow.projects.get(org_id, ProjectId(project_id)) if is_valid_id(project_id) else None
    )
    if project is None:
        raise NotFound("project not found")
    return project


async def _task(uow: OrgsUnitOfWork, org_id: OrgId, task_id: str) -> Task:
    task = await uow.tasks.get(org_id, TaskId(task_id)) if is_valid_id(task_id) else None
    if task is None:
        raise NotFound("task not found")
    return task


async def _assignee(uow: OrgsUnitOfWork, org_id: OrgId, user_id: str | None) -> UserId | None:
    if user_id is None:
        return None
    if not is_valid_id(user_id) or await uow.memberships.find(org_id, UserId(user_id)) is None:
        raise InvalidInput("assignee_user_id", "must be a member of this organization")
    return UserId(user_id)


class Tasks:
    """Tasks inside projects, and who watches them. Any member may create and edit."""

    def __init__(self, uow: UowFactory, clock: Clock) -> None:
        self._uow = uow
        self._clock = clock

    async def list_tasks(self, actor: Actor, org_id: str, project_id: str) -> list[Task]:
        async with self._uow() as uow:
            membership = await membership_of(uow, actor, org_id)
            project = await _project(uow, membership.org_id, project_id)
            return await uow.tasks.list_for_project(membership.org_id, project.id)

    async def create(
        self,
        actor: Actor,
        org_id: str,
        project_id: str,
        title: str,
        status: str = TaskStatus.TODO.value,
        assignee_user_id: str | None = None,
    ) -> Task:
        now = self._clock.now()
        async with self._uow() as uow:
            membership = await membership_of(uow, actor, org_id)
            project = await _project(uow, membership.org_id, project_id)
            task = Task(
                id=TaskId(new_id()),
                org_id=membership.org_id,
                project_id=project.id,
                title=clean_text("title", title, max_length=500),
                status=TaskStatus.parse(status),
                assignee_user_id=await _assignee(uow, membership.org_id, assignee_user_id),
                created_at=now,
                updated_at=now,
            )
            await uow.tasks.add(task)
            await uow.commit()
        return task

    async def get(self, actor: Actor, org_id: str, task_id: str) -> Task:
        async with self._uow() as uow:
            membership = await membership_of(uow, actor, org_id)
            return await _task(uow, membership.org_id, task_id)

    async def update(
        self,
        actor: Actor,
        org_id: str,
        task_id: str,
        *,
        title: str | None = None,
        status: str | None = None,
        assignee_user_id: object = _UNSET,
    ) -> Task:
        """Change the given fields; ``assignee_user_id=None`` unassigns."""
        async with self._uow() as uow:
            membership = await membership_of(uow, actor, org_id)
            task = await _task(uow, membership.org_id, task_id)
            changes: dict[str, object] = {}
            if title is not None:
                changes["title"] = clean_text("title", title, max_length=500)
            if status is not None:
                changes["status"] = TaskStatus.parse(status)
            if assignee_user_id is not _UNSET:
                if assignee_user_id is not None and not isinstance(assignee_user_id, str):
                    raise InvalidInput("assignee_user_id", "must be a user id or null")
                changes["assignee_user_id"] = await _assignee(
                    uow, membership.org_id, assignee_user_id
                )
            if not changes:
                return task
            updated = replace(task, **changes, updated_at=self._clock.now())  # type: ignore[arg-type]
            await uow.tasks.update(updated)
            await uow.commit()
        return updated

    async def watch(self, actor: Actor, org_id: str, task_id: str) -> None:
        async with self._uow() as uow:
            membership = await membership_of(uow, actor, org_id)
            task = await _task(uow, membership.org_id, task_id)
            await uow.tasks.add_watcher(task.id, actor.user_id)
            await uow.commit()

    async def unwatch(self, actor: Actor, org_id: str, task_id: str) -> None:
        async with self._uow() as uow:
            membership = await membership_of(uow, actor, org_id)
            task = await _task(uow, membership.org_id, task_id)
            await uow.tasks.remove_watcher(task.id, actor.user_id)
            await uow.commit()

    async def watchers(self, actor: Actor, org_id: str, task_id: str) -> list[UserId]:
        async with self._uow() as uow:
            membership = await membership_of(uow, actor, org_id)
            task = await _task(uow, membership.org_id, task_id)
            return await uow.tasks.watchers(task.id)
