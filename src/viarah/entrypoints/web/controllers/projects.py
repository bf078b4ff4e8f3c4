"""Projects of an organization: members read, admins and PMs create."""

from __future__ import annotations

from datetime import datetime

import msgspec
from litestar import Controller, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody
from litestar.status_codes import HTTP_201_CREATED

from viarah.domain.orgs.model import Project
from viarah.domain.orgs.services import Projects
from viarah.domain.shared.actor import Actor
from viarah.entrypoints.web.errors import API_ERRORS


class ProjectIn(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    name: str


class ProjectBody(msgspec.Struct, frozen=True):
    id: str
    name: str
    created_at: datetime

    @staticmethod
    def of(project: Project) -> ProjectBody:
        return ProjectBody(id=project.id, name=project.name, created_at=project.created_at)


class ProjectOut(msgspec.Struct, frozen=True):
    project: ProjectBody


class ProjectListOut(msgspec.Struct, frozen=True):
    projects: list[ProjectBody]


class ProjectController(Controller):
    path = "/orgs/{org_id:str}/projects"
    tags = ["projects"]

    @get("", responses=API_ERRORS, summary="Projects of the organization")
    async def list_projects(
        self,
        actor: NamedDependency[Actor],
        projects: NamedDependency[Projects],
        org_id: FromPath[str],
    ) -> ProjectListOut:
        found = await projects.list_projects(actor, org_id)
        return ProjectListOut(projects=[ProjectBody.of(p) for p in found])

    @post(
        "",
        responses=API_ERRORS,
        status_code=HTTP_201_CREATED,
        summary="Create a project (admin or pm)",
    )
    async def create_project(
        self,
        actor: NamedDependency[Actor],
        projects: NamedDependency[Projects],
        org_id: FromPath[str],
        data: JSONBody[ProjectIn],
    ) -> ProjectOut:
        return ProjectOut(project=ProjectBody.of(await projects.create(actor, org_id, data.name)))
