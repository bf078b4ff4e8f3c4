"""Linking tasks to GitLab issues and merge requests, and keeping the links fresh."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from viarah.domain.gitlab.access import check_task_access, require_task
from viarah.domain.gitlab.client import GitLabCallFailed, GitLabClient
from viarah.domain.gitlab.integrations import audit, event_job
from viarah.domain.gitlab.model import (
    AUTH_FAILED_EVENT,
    MIN_REFRESH_INTERVAL,
    STATE_CHANGED_EVENT,
    GitLabIntegration,
    GitLabLink,
    LinkSnapshot,
    SyncView,
    TokenStatus,
    link_for,
    refresh_wanted,
)
from viarah.domain.gitlab.ports import GitLabUnitOfWork
from viarah.domain.gitlab.urls import GitLabRef, ObjectKind, parse_gitlab_url
from viarah.domain.shared.actor import Actor
from viarah.domain.shared.clock import Clock
from viarah.domain.shared.errors import Conflict, NotFound, Unavailable
from viarah.domain.shared.ids import OrgId, TaskId, is_valid_id, new_id
from viarah.domain.shared.jobs import Job
from viarah.domain.shared.secrets import SecretBox, SecretUndecryptable

log = logging.getLogger("viarah.gitlab")
UowFactory = Callable[[], GitLabUnitOfWork]
REFRESH_JOB = "gitlab.refresh_object"
ObjectKey = tuple[str, str, int]


def refresh_job(org_id: str, key: ObjectKey, not_before: datetime | None = None) -> Job:
    project_path, kind, iid = key
    return Job(
        REFRESH_JOB,
        {"org_id": org_id, "project_path": project_path, "kind": kind, "iid": iid},
        not_before=not_before,
    )


@dataclass(frozen=True, slots=True)
class LinkView:
    link: GitLabLink
    sync: SyncView


class GitLabLinks:
    """Task ↔ issue/MR links as members see them."""

    def __init__(self, uow: UowFactory, clock: Clock, ttl: timedelta) -> None:
        self._uow = uow
        self._clock = clock
        self._ttl = ttl

    async def link(self, actor: Actor, org_id: str, task_id: str, url: str) -> LinkView:
        """Link a task to an issue/MR URL on the org's GitLab; refreshed at once."""
        now = self._clock.now()
        async with self._uow() as uow:
            await require_task(uow, actor, org_id, task_id)
            integration = await uow.gitlab_integrations.get(OrgId(org_id))
            if integration is None:
                raise Conflict(
                    "this organization has no GitLab integration; "
                    "an admin or pm must set its base_url first",
                    code="missing_integration",
                )
            ref = parse_gitlab_url(url, expected_origin=integration.base_url)
            link = link_for(ref, OrgId(org_id), TaskId(task_id), new_id(), now)
            await uow.gitlab_links.add(link)
            # One queued refresh serves every link to the object: linking it from many
            # tasks at once costs one GitLab call.
            if await uow.gitlab_links.request_refresh(
                OrgId(org_id), link.ref_key, now, min_attempt_interval=None
            ):
                uow.outbox.add(refresh_job(org_id, link.ref_key))
            await uow.commit()
        return LinkView(link, link.sync(now, self._ttl))

    async def list_links(self, actor: Actor, org_id: str, task_id: str) -> list[LinkView]:
        """The task's links with their cached metadata; stale ones get a refresh queued."""
        now = self._clock.now()
        async with self._uow().read_only() as uow:
            if not (is_valid_id(org_id) and is_valid_id(task_id)):
                await require_task(uow, actor, org_id, task_id)  # NotFound, naming which
            role, task_found, links = await uow.gitlab_links.list_for_task_as(
                OrgId(org_id), TaskId(task_id), actor.user_id
            )
        check_task_access(role, task_found)
        views = [LinkView(link, link.sync(now, self._ttl)) for link in links]
        # Only objects that may want a refresh by what was just read; the lock-taking
        # check in _queue_refreshes decides. A stale task page stays one cheap read while
        # its refresh is pending (instead of a locking query per link on every read).
        stale = {
            v.link.ref_key
            for v in views
            if v.sync.stale
            and not v.sync.rate_limited
            and refresh_wanted(
                v.link.refresh_requested_at, v.link.last_attempt_at, now, MIN_REFRESH_INTERVAL
            )
        }
        if stale:
            await self._queue_refreshes(OrgId(org_id), stale)
        return views

    async def _queue_refreshes(self, org_id: OrgId, keys: set[ObjectKey]) -> None:
        now = self._clock.now()
        async with self._uow() as uow:
            queued = False
            for key in sorted(keys):
                if await uow.gitlab_links.request_refresh(
                    org_id, key, now, min_attempt_interval=MIN_REFRESH_INTERVAL
                ):
                    uow.outbox.add(refresh_job(org_id, key))
                    queued = True
            if queued:
                await uow.commit()

    async def unlink(self, actor: Actor, org_id: str, task_id: str, link_id: str) -> None:
        async with self._uow() as uow:
            await require_task(uow, actor, org_id, task_id)
            link = (
                await uow.gitlab_links.get(OrgId(org_id), link_id) if is_valid_id(link_id) else None
            )
            if link is None or link.task_id != task_id:
                raise NotFound("link not found")
            await uow.gitlab_links.delete(link.id)
            await uow.commit()


class GitLabRefresher:
    """Fetches one issue/MR once and updates every link in the org that points at it."""

    def __init__(self, uow: UowFactory, clock: Clock, box: SecretBox, client: GitLabClient) -> None:
        self._uow = uow
        self._clock = clock
        self._box = box
        self._client = client

    async def refresh(self, org_id: str, project_path: str, kind: str, iid: int) -> str:
        """Refresh the object; returns the outcome (``ok``, ``no_links`` or an error code).

        Transient failures (network, GitLab 5xx) raise Unavailable so the job is retried
        with backoff; 429 re-queues the refresh after ``Retry-After``.
        """
        org = OrgId(org_id)
        key: ObjectKey = (project_path.lower(), ObjectKind(kind).value, iid)
        now = self._clock.now()
        async with self._uow() as uow:
            integration = await uow.gitlab_integrations.get(org)
            links = await uow.gitlab_links.for_object(org, key)
            if links:
                await uow.gitlab_links.start_refresh(org, key, now)
                await uow.commit()
        if not links:
            return "no_links"
        limits = [lk.rate_limited_until for lk in links if lk.rate_limited_until is not None]
        if limits and max(limits) > now:
            await self._requeue(org, key, max(limits))
            return "rate_limited"
        if integration is None:
            await self._record_error(org, key, "missing_integration")
            return "missing_integration"
        token = self._token(integration)
        if not isinstance(token, _Token):
            await self._record_error(org, key, token)
            return token
        ref = GitLabRef(integration.base_url, links[0].project_path, ObjectKind(kind), iid)
        try:
            obj = await self._client.fetch_object(integration.base_url, token.value, ref)
        except GitLabCallFailed as exc:
            return await self._failed(org, key, exc)
        await self._store(org, key, LinkSnapshot.of(obj, self._clock.now()))
        return "ok"

    async def _store(self, org: OrgId, key: ObjectKey, snapshot: LinkSnapshot) -> None:
        """Write the snapshot on every link; a state change becomes a notification event."""
        async with self._uow() as uow:
            before = await uow.gitlab_links.for_object(org, key)
            await uow.gitlab_links.record_snapshot(org, key, snapshot)
            for link in before:
                if link.cached_state is not None and link.cached_state != snapshot.state:
                    uow.outbox.add(
                        event_job(
                            STATE_CHANGED_EVENT,
                            {
                                "org_id": org,
                                "task_id": link.task_id,
                                "link_id": link.id,
                                "url": link.url,
                                "title": snapshot.title,
                                "kind": link.kind.value,
                                "old_state": link.cached_state,
                                "new_state": snapshot.state,
                            },
                        )
                    )
            await uow.commit()
        log.info(
            "gitlab.refreshed org=%s object=%s links=%d", org, "/".join(map(str, key)), len(before)
        )

    def _token(self, integration: GitLabIntegration) -> _Token | str:
        """The decrypted token, or the error code saying why there is none."""
        if integration.token_ciphertext is None:
            return "missing_token"
        if integration.token_status is TokenStatus.INVALID:
            return "auth_error"  # refreshes pause until a working token is saved
        if not self._box.available:
            return "encryption_key_missing"
        try:
            return _Token(self._box.decrypt(integration.token_ciphertext))
        except SecretUndecryptable:
            return "encryption_key_missing"

    async def _failed(self, org: OrgId, key: ObjectKey, exc: GitLabCallFailed) -> str:
        if exc.code == "rate_limited":
            until = self._clock.now() + timedelta(seconds=max(1.0, exc.retry_after or 60.0))
            await self._record_error(org, key, "rate_limited", until)
            await self._requeue(org, key, until)
            return "rate_limited"
        await self._record_error(org, key, exc.code)
        if exc.code == "auth_error":
            await self._mark_token_rejected(org)
        if exc.code == "network_error" or exc.code.startswith("http_5"):
            raise Unavailable(f"GitLab call failed ({exc.code}); will retry")
        return exc.code

    async def _mark_token_rejected(self, org: OrgId) -> None:
        now = self._clock.now()
        async with self._uow() as uow:
            integration = await uow.gitlab_integrations.get(org, for_update=True)
            if integration is None or integration.token_status is TokenStatus.INVALID:
                return
            await uow.gitlab_integrations.save(
                replace(integration, token_status=TokenStatus.INVALID, updated_at=now)
            )
            admins = await uow.org_access.admins(org)
            uow.outbox.add(
                event_job(
                    AUTH_FAILED_EVENT,
                    {"org_id": org, "recipients": list(admins), "base_url": integration.base_url},
                )
            )
            await uow.audit.add(audit(org, None, "gitlab.token.rejected", now))
            await uow.commit()

    async def _record_error(
        self, org: OrgId, key: ObjectKey, code: str, until: datetime | None = None
    ) -> None:
        async with self._uow() as uow:
            await uow.gitlab_links.record_error(org, key, code, until)
            await uow.commit()

    async def _requeue(self, org: OrgId, key: ObjectKey, when: datetime) -> None:
        async with self._uow() as uow:
            uow.outbox.add(refresh_job(org, key, not_before=when))
            await uow.commit()


@dataclass(frozen=True, slots=True)
class _Token:
    value: str = field(repr=False)
