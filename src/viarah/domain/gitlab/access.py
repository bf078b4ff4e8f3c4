"""Authorization rules of the GitLab context (membership facts come through OrgAccess)."""

from __future__ import annotations

from viarah.domain.gitlab.ports import GitLabUnitOfWork
from viarah.domain.shared.actor import Actor
from viarah.domain.shared.errors import Forbidden, NotFound
from viarah.domain.shared.ids import OrgId, TaskId, is_valid_id

MANAGER_ROLES = ("admin", "pm")


async def require_member(uow: GitLabUnitOfWork, actor: Actor, org_id: str) -> str:
    """The actor's role in the org; NotFound for non-members (they learn nothing)."""
    role = (
        await uow.org_access.role_of(OrgId(org_id), actor.user_id) if is_valid_id(org_id) else None
    )
    if role is None:
        raise NotFound("organization not found")
    return role


async def require_manager(uow: GitLabUnitOfWork, actor: Actor, org_id: str) -> None:
    if await require_member(uow, actor, org_id) not in MANAGER_ROLES:
        raise Forbidden("only an org admin or pm may manage the GitLab integration")


async def require_task(uow: GitLabUnitOfWork, actor: Actor, org_id: str, task_id: str) -> None:
    """The actor is a member and the task is in the org; NotFound (org first) otherwise."""
    if not is_valid_id(task_id):
        await require_member(uow, actor, org_id)
        raise NotFound("task not found")
    role, task_found = (
        await uow.org_access.role_and_task(OrgId(org_id), actor.user_id, TaskId(task_id))
        if is_valid_id(org_id)
        else (None, False)
    )
    check_task_access(role, task_found)


def check_task_access(role: str | None, task_found: bool) -> None:
    """NotFound unless the actor is a member (``role``) and the task is in the org."""
    if role is None:
        raise NotFound("organization not found")
    if not task_found:
        raise NotFound("task not found")
