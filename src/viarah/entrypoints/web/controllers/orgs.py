"""Organizations the caller belongs to."""

from __future__ import annotations

from datetime import datetime

import msgspec
from litestar import Controller, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody
from litestar.status_codes import HTTP_201_CREATED

from viarah.domain.orgs.model import OrgView
from viarah.domain.orgs.services import Organizations
from viarah.domain.shared.actor import Actor
from viarah.entrypoints.web.errors import API_ERRORS


class OrgIn(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    name: str
    logo_url: str | None = None


class OrgSummary(msgspec.Struct, frozen=True):
    id: str
    name: str
    logo_url: str | None
    created_at: datetime
    role: str

    @staticmethod
    def of(view: OrgView) -> OrgSummary:
        org = view.org
        return OrgSummary(
            id=org.id,
            name=org.name,
            logo_url=org.logo_url,
            created_at=org.created_at,
            role=view.role.value,
        )


class OrgOut(msgspec.Struct, frozen=True):
    org: OrgSummary


class OrgListOut(msgspec.Struct, frozen=True):
    orgs: list[OrgSummary]


class OrgController(Controller):
    """List, create and read organizations; non-members get 404."""

    path = "/orgs"
    tags = ["orgs"]

    @get("", responses=API_ERRORS, summary="The organizations I belong to, with my role")
    async def list_orgs(
        self, actor: NamedDependency[Actor], organizations: NamedDependency[Organizations]
    ) -> OrgListOut:
        views = await organizations.list_orgs(actor)
        return OrgListOut(orgs=[OrgSummary.of(v) for v in views])

    @post(
        "",
        responses=API_ERRORS,
        status_code=HTTP_201_CREATED,
        summary="Create an organization (I become admin)",
    )
    async def create_org(
        self,
        actor: NamedDependency[Actor],
        organizations: NamedDependency[Organizations],
        data: JSONBody[OrgIn],
    ) -> OrgOut:
        view = await organizations.create(actor, data.name, data.logo_url)
        return OrgOut(org=OrgSummary.of(view))

    @get("/{org_id:str}", responses=API_ERRORS, summary="One organization I belong to")
    async def get_org(
        self,
        actor: NamedDependency[Actor],
        organizations: NamedDependency[Organizations],
        org_id: FromPath[str],
    ) -> OrgOut:
        return OrgOut(org=OrgSummary.of(await organizations.get(actor, org_id)))
