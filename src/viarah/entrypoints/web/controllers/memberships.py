"""Members of an organization: anyone in it reads, admins change."""

from __future__ import annotations

from datetime import datetime

import msgspec
from litestar import Controller, delete, get, patch, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody
from litestar.status_codes import HTTP_201_CREATED

from viarah.domain.orgs.model import MembershipView
from viarah.domain.orgs.services import Memberships
from viarah.domain.shared.actor import Actor
from viarah.entrypoints.web.controllers.me import UserOut
from viarah.entrypoints.web.errors import API_ERRORS


class MembershipIn(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    email: str
    role: str


class RoleIn(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    role: str


class MembershipBody(msgspec.Struct, frozen=True):
    id: str
    user: UserOut
    role: str
    created_at: datetime

    @staticmethod
    def of(view: MembershipView) -> MembershipBody:
        m = view.membership
        return MembershipBody(
            id=m.id, user=UserOut.of(view.user), role=m.role.value, created_at=m.created_at
        )


class MembershipOut(msgspec.Struct, frozen=True):
    membership: MembershipBody


class MembershipListOut(msgspec.Struct, frozen=True):
    memberships: list[MembershipBody]


class MembershipController(Controller):
    """The last admin of an organization can be neither demoted nor removed (409)."""

    path = "/orgs/{org_id:str}/memberships"
    tags = ["memberships"]

    @get("", responses=API_ERRORS, summary="Members of the organization")
    async def list_members(
        self,
        actor: NamedDependency[Actor],
        memberships: NamedDependency[Memberships],
        org_id: FromPath[str],
    ) -> MembershipListOut:
        views = await memberships.list_members(actor, org_id)
        return MembershipListOut(memberships=[MembershipBody.of(v) for v in views])

    @post(
        "",
        responses=API_ERRORS,
        status_code=HTTP_201_CREATED,
        summary="Add an existing user by e-mail (admin)",
    )
    async def add_member(
        self,
        actor: NamedDependency[Actor],
        memberships: NamedDependency[Memberships],
        org_id: FromPath[str],
        data: JSONBody[MembershipIn],
    ) -> MembershipOut:
        view = await memberships.add(actor, org_id, data.email, data.role)
        return MembershipOut(membership=MembershipBody.of(view))

    @patch("/{membership_id:str}", responses=API_ERRORS, summary="Change a member's role (admin)")
    async def change_role(
        self,
        actor: NamedDependency[Actor],
        memberships: NamedDependency[Memberships],
        org_id: FromPath[str],
        membership_id: FromPath[str],
        data: JSONBody[RoleIn],
    ) -> MembershipOut:
        view = await memberships.change_role(actor, org_id, membership_id, data.role)
        return MembershipOut(membership=MembershipBody.of(view))

    @delete("/{membership_id:str}", responses=API_ERRORS, summary="Remove a member (admin)")
    async def remove_member(
        self,
        actor: NamedDependency[Actor],
        memberships: NamedDependency[Memberships],
        org_id: FromPath[str],
        membership_id: FromPath[str],
    ) -> None:
        await memberships.remove(actor, org_id, membership_id)
