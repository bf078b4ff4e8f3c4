"""Links from a task to GitLab issues and merge requests. Any member of the org."""

from __future__ import annotations

from datetime import datetime

import msgspec
from litestar import Controller, delete, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody
from litestar.status_codes import HTTP_201_CREATED

from viarah.domain.gitlab.links import GitLabLinks, LinkView
from viarah.domain.shared.actor import Actor
from viarah.entrypoints.web.errors import API_ERRORS


class LinkIn(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """An issue (``/-/issues/N``) or merge request (``/-/merge_requests/N``) web URL on
    the organization's GitLab."""

    url: str


class AssigneeBody(msgspec.Struct, frozen=True):
    username: str
    name: str


class SyncBody(msgspec.Struct, frozen=True):
    """``never`` (not fetched yet), ``ok``, ``stale`` (older than the TTL; a refresh is
    queued) or ``error`` (``error_code`` says why)."""

    status: str
    stale: bool
    rate_limited: bool
    rate_limited_until: datetime | None
    error_code: str | None


class LinkBody(msgspec.Struct, frozen=True):
    id: str
    url: str
    project_path: str
    gitlab_type: str  # issue | mr
    gitlab_iid: int
    cached_title: str | None
    cached_state: str | None
    cached_labels: list[str]
    cached_assignees: list[AssigneeBody]
    last_synced_at: datetime | None
    sync: SyncBody

    @staticmethod
    def of(view: LinkView) -> LinkBody:
        link, sync = view.link, view.sync
        return LinkBody(
            id=link.id,
            url=link.url,
            project_path=link.project_path,
            gitlab_type=link.kind.value,
            gitlab_iid=link.iid,
            cached_title=link.cached_title,
            cached_state=link.cached_state,
            cached_labels=list(link.cached_labels),
            cached_assignees=[
                AssigneeBody(username=a.username, name=a.name) for a in link.cached_assignees
            ],
            last_synced_at=link.last_synced_at,
            sync=SyncBody(
                status=sync.status.value,
                stale=sync.stale,
                rate_limited=sync.rate_limited,
                rate_limited_until=sync.rate_limited_until,
                error_code=sync.error_code,
            ),
        )


class LinkOut(msgspec.Struct, frozen=True):
    link: LinkBody


class LinkListOut(msgspec.Struct, frozen=True):
    links: list[LinkBody]


class GitLabLinkController(Controller):
    path = "/orgs/{org_id:str}/tasks/{task_id:str}/gitlab-links"
    tags = ["gitlab"]

    @get(
        "",
        responses=API_ERRORS,
        summary="The task's GitLab links with cached metadata",
        description="Links older than GITLAB_METADATA_TTL_SECONDS get a refresh queued.",
    )
    async def list_links(
        self,
        actor: NamedDependency[Actor],
        gitlab_links: NamedDependency[GitLabLinks],
        org_id: FromPath[str],
        task_id: FromPath[str],
    ) -> LinkListOut:
        views = await gitlab_links.list_links(actor, org_id, task_id)
        return LinkListOut(links=[LinkBody.of(v) for v in views])

    @post(
        "",
        responses=API_ERRORS,
        status_code=HTTP_201_CREATED,
        summary="Link the task to an issue or merge request",
        description=(
            "The URL must be on the organization's GitLab (400 naming why otherwise); "
            "linking the same object twice is 409. Metadata is fetched in the background."
        ),
    )
    async def create_link(
        self,
        actor: NamedDependency[Actor],
        gitlab_links: NamedDependency[GitLabLinks],
        org_id: FromPath[str],
        task_id: FromPath[str],
        data: JSONBody[LinkIn],
    ) -> LinkOut:
        view = await gitlab_links.link(actor, org_id, task_id, data.url)
        return LinkOut(link=LinkBody.of(view))

    @delete("/{link_id:str}", responses=API_ERRORS, summary="Remove a link")
    async def delete_link(
        self,
        actor: NamedDependency[Actor],
        gitlab_links: NamedDependency[GitLabLinks],
        org_id: FromPath[str],
        task_id: FromPath[str],
        link_id: FromPath[str],
    ) -> None:
        await gitlab_links.unlink(actor, org_id, task_id, link_id)
