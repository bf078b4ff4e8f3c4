from __future__ import annotations

import pytest

from tests.unit.conftest import App
from viarah.domain.orgs.model import Role, TaskStatus
from viarah.domain.shared.actor import Actor
from viarah.domain.shared.errors import Conflict, Forbidden, InvalidInput, NotFound
from viarah.domain.shared.ids import new_id


async def _org_with(app: App) -> tuple[str, Actor, Actor, Actor, Actor]:
    """An org with an admin, a pm, a member, and an outsider (not a member)."""
    _, admin = await app.user("admin@example.com")
    _, pm = await app.user("pm@example.com")
    _, member = await app.user("member@example.com")
    _, outsider = await app.user("outsider@example.com")
    org = (await app.orgs.create(admin, "Acme")).org
    await app.memberships.add(admin, org.id, "pm@example.com", "pm")
    await app.memberships.add(admin, org.id, "member@example.com", "member")
    return org.id, admin, pm, member, outsider


async def test_creator_becomes_admin_and_sees_the_org(app: App) -> None:
    _, ada = await app.user("ada@example.com")
    view = await app.orgs.create(ada, "  Acme  ", "https://example.com/logo.png")
    assert view.role is Role.ADMIN
    assert view.org.name == "Acme"
    assert [v.org.id for v in await app.orgs.list_orgs(ada)] == [view.org.id]
    assert (await app.orgs.get(ada, view.org.id)).role is Role.ADMIN


@pytest.mark.parametrize(
    ("name", "logo", "field"),
    [("", None, "name"), ("x" * 201, None, "name"), ("Acme", "javascript:alert(1)", "logo_url")],
)
async def test_org_input_validation(app: App, name: str, logo: str | None, field: str) -> None:
    _, ada = await app.user("ada@example.com")
    with pytest.raises(InvalidInput) as info:
        await app.orgs.create(ada, name, logo)
    assert info.value.field == field


async def test_non_members_learn_nothing(app: App) -> None:
    org_id, *_, outsider = await _org_with(app)
    for call in (
        app.orgs.get(outsider, org_id),
        app.memberships.list_members(outsider, org_id),
        app.projects.list_projects(outsider, org_id),
        app.projects.create(outsider, org_id, "P"),
        app.tasks.get(outsider, org_id, new_id()),
    ):
        with pytest.raises(NotFound, match="organization not found"):
            await call
    assert await app.orgs.list_orgs(outsider) == []


@pytest.mark.parametrize("bad_id", ["not-a-uuid", "", "../etc"])
async def test_malformed_ids_are_not_found(app: App, bad_id: str) -> None:
    _, ada = await app.user("ada@example.com")
    with pytest.raises(NotFound):
        await app.orgs.get(ada, bad_id)


async def test_only_admins_manage_memberships(app: App) -> None:
    org_id, admin, pm, member, _ = await _org_with(app)
    await app.users.create("new@example.com", "correct horse")
    for actor in (pm, member):
        with pytest.raises(Forbidden):
            await app.memberships.add(actor, org_id, "new@example.com", "member")
    added = await app.memberships.add(admin, org_id, "NEW@example.com", "pm")
    assert added.user.email == "new@example.com"
    assert added.membership.role is Role.PM
    members = await app.memberships.list_members(member, org_id)
    assert {m.user.email for m in members} == {
        "admin@example.com",
        "pm@example.com",
        "member@example.com",
        "new@example.com",
    }


async def test_add_member_errors(app: App) -> None:
    org_id, admin, *_ = await _org_with(app)
    with pytest.raises(InvalidInput) as info:
        await app.memberships.add(admin, org_id, "ghost@example.com", "member")
    assert info.value.field == "email"
    with pytest.raises(Conflict):
        await app.memberships.add(admin, org_id, "member@example.com", "member")
    with pytest.raises(InvalidInput) as info:
        await app.memberships.add(admin, org_id, "member@example.com", "owner")
    assert info.value.field == "role"


async def test_last_admin_can_be_neither_demoted_nor_removed(app: App) -> None:
    org_id, admin, *_ = await _org_with(app)
    members = await app.memberships.list_members(admin, org_id)
    admin_membership = next(m.membership for m in members if m.membership.role is Role.ADMIN)
    with pytest.raises(Conflict, match="last admin"):
        await app.memberships.change_role(admin, org_id, admin_membership.id, "member")
    with pytest.raises(Conflict, match="last admin"):
        await app.memberships.remove(admin, org_id, admin_membership.id)

    pm_membership = next(m.membership for m in members if m.membership.role is Role.PM)
    promoted = await app.memberships.change_role(admin, org_id, pm_membership.id, "admin")
    assert promoted.membership.role is Role.ADMIN
    demoted = await app.memberships.change_role(admin, org_id, admin_membership.id, "member")
    assert demoted.membership.role is Role.MEMBER


async def test_remove_member_and_membership_of_other_org(app: App) -> None:
    org_id, admin, _, member, outsider = await _org_with(app)
    other_org = (await app.orgs.create(outsider, "Other")).org
    other_membership = (await app.memberships.list_members(outsider, other_org.id))[0]
    with pytest.raises(NotFound):
        await app.memberships.remove(admin, org_id, other_membership.membership.id)
    target = next(
        m
        for m in await app.memberships.list_members(admin, org_id)
        if m.user.email.startswith("member")
    )
    await app.memberships.remove(admin, org_id, target.membership.id)
    with pytest.raises(NotFound):
        await app.orgs.get(member, org_id)


async def test_projects_are_created_by_admins_and_pms(app: App) -> None:
    org_id, admin, pm, member, _ = await _org_with(app)
    first = await app.projects.create(admin, org_id, "Alpha")
    app.clock.advance(seconds=1)
    second = await app.projects.create(pm, org_id, "Beta")
    with pytest.raises(Forbidden):
        await app.projects.create(member, org_id, "Gamma")
    assert [p.id for p in await app.projects.list_projects(member, org_id)] == [first.id, second.id]


async def test_tasks_lifecycle(app: App) -> None:
    org_id, admin, _, member, _ = await _org_with(app)
    project = await app.projects.create(admin, org_id, "Alpha")
    task = await app.tasks.create(
        member, org_id, project.id, "Fix login", assignee_user_id=member.user_id
    )
    assert task.status is TaskStatus.TODO
    assert task.assignee_user_id == member.user_id
    assert [t.id for t in await app.tasks.list_tasks(admin, org_id, project.id)] == [task.id]

    app.clock.advance(minutes=5)
    updated = await app.tasks.update(member, org_id, task.id, status="done", title="Fixed login")
    assert updated.status is TaskStatus.DONE
    assert updated.title == "Fixed login"
    assert updated.assignee_user_id == member.user_id
    assert updated.updated_at > task.updated_at

    unassigned = await app.tasks.update(member, org_id, task.id, assignee_user_id=None)
    assert unassigned.assignee_user_id is None
    assert (await app.tasks.get(admin, org_id, task.id)).assignee_user_id is None


async def test_task_validation(app: App) -> None:
    org_id, admin, *_, outsider = await _org_with(app)
    project = await app.projects.create(admin, org_id, "Alpha")
    with pytest.raises(InvalidInput) as info:
        await app.tasks.create(admin, org_id, project.id, "T", status="someday")
    assert info.value.field == "status"
    with pytest.raises(InvalidInput) as info:
        await app.tasks.create(admin, org_id, project.id, "T", assignee_user_id=outsider.user_id)
    assert info.value.field == "assignee_user_id"
    with pytest.raises(InvalidInput) as info:
        await app.tasks.create(admin, org_id, project.id, "   ")
    assert info.value.field == "title"
    with pytest.raises(NotFound, match="project"):
        await app.tasks.create(admin, org_id, new_id(), "T")


async def test_tasks_of_another_org_are_not_found(app: App) -> None:
    org_id, admin, *_, outsider = await _org_with(app)
    other_org = (await app.orgs.create(outsider, "Other")).org
    other_project = await app.projects.create(outsider, other_org.id, "Theirs")
    their_task = await app.tasks.create(outsider, other_org.id, other_project.id, "Secret")
    with pytest.raises(NotFound, match="task"):
        await app.tasks.get(admin, org_id, their_task.id)
    with pytest.raises(NotFound, match="project"):
        await app.tasks.list_tasks(admin, org_id, other_project.id)


async def test_watch_and_unwatch_are_idempotent(app: App) -> None:
    org_id, admin, _, member, _ = await _org_with(app)
    project = await app.projects.create(admin, org_id, "Alpha")
    task = await app.tasks.create(admin, org_id, project.id, "Watch me")
    await app.tasks.watch(member, org_id, task.id)
    await app.tasks.watch(member, org_id, task.id)
    await app.tasks.watch(admin, org_id, task.id)
    assert sorted(await app.tasks.watchers(admin, org_id, task.id)) == sorted(
        [member.user_id, admin.user_id]
    )
    await app.tasks.unwatch(member, org_id, task.id)
    await app.tasks.unwatch(member, org_id, task.id)
    assert await app.tasks.watchers(admin, org_id, task.id) == [admin.user_id]


async def test_failed_use_case_changes_nothing(app: App) -> None:
    org_id, admin, *_ = await _org_with(app)
    before = len(app.db.memberships)
    with pytest.raises(InvalidInput):
        await app.memberships.add(admin, org_id, "ghost@example.com", "member")
    assert len(app.db.memberships) == before
