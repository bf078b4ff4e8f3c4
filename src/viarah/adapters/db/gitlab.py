"""Repositories of the GitLab context."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from viarah.adapters.db import tables as t
from viarah.adapters.db.base import INSERT_JOB, SqlRepository, insert_coalesced_job, outbox_row
from viarah.domain.gitlab.client import Assignee
from viarah.domain.gitlab.model import (
    AuditEvent,
    DeliveryStatus,
    GitLabIntegration,
    GitLabLink,
    LinkSnapshot,
    RefreshQueued,
    TokenStatus,
    WebhookDelivery,
    refresh_to_queue,
)
from viarah.domain.gitlab.urls import ObjectKind
from viarah.domain.shared.ids import OrgId, TaskId, UserId
from viarah.domain.shared.jobs import Job

_i = t.gitlab_integrations.c
_l = t.gitlab_links.c
_d = t.webhook_deliveries.c
Key = tuple[str, str, int]


def _integration(row: sa.Row[Any]) -> GitLabIntegration:
    return GitLabIntegration(
        org_id=OrgId(row.org_id),
        base_url=row.base_url,
        token_ciphertext=row.token_ciphertext,
        token_set_at=row.token_set_at,
        token_status=TokenStatus(row.token_status),
        token_scopes=tuple(row.token_scopes or ()),
        token_expires_at=row.token_expires_at,
        token_expiry_warned_days=row.token_expiry_warned_days,
        webhook_secret_digest=row.webhook_secret_digest,
        webhook_secret_set_at=row.webhook_secret_set_at,
        signing_token_ciphertext=row.signing_token_ciphertext,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


# Statements of the hot paths (every webhook, every link read), built once: building a
# Core statement per call costs as much CPU as running it (docs/performance.md).
_INTEGRATION = sa.select(t.gitlab_integrations).where(_i.org_id == sa.bindparam("org_id"))
_INTEGRATION_FOR_UPDATE = _INTEGRATION.with_for_update()
# A member's view of a task's links in one statement: one row per link (or one row with
# no link), none at all for a non-member.
_TASK_LINKS_AS = (
    sa.select(
        t.memberships.c.role.label("member_role"),
        t.tasks.c.id.label("found_task_id"),
        *t.gitlab_links.c,
    )
    .select_from(t.memberships)
    .outerjoin(
        t.tasks,
        sa.and_(
            t.tasks.c.id == sa.bindparam("task_id"), t.tasks.c.org_id == t.memberships.c.org_id
        ),
    )
    .outerjoin(
        t.gitlab_links,
        sa.and_(_l.task_id == t.tasks.c.id, _l.org_id == t.memberships.c.org_id),
    )
    .where(
        t.memberships.c.org_id == sa.bindparam("org_id"),
        t.memberships.c.user_id == sa.bindparam("user_id"),
    )
    .order_by(_l.created_at, _l.id)
)
_ROLE_AND_TASK = sa.select(
    t.memberships.c.role,
    sa.exists()
    .where(t.tasks.c.id == sa.bindparam("task_id"), t.tasks.c.org_id == sa.bindparam("org_id"))
    .label("task"),
).where(
    t.memberships.c.org_id == sa.bindparam("org_id"),
    t.memberships.c.user_id == sa.bindparam("user_id"),
)

_INSERT_DELIVERY = {
    name: dialect.insert(t.webhook_deliveries)
    .on_conflict_do_nothing(index_elements=["org_id", "idempotency_key"])
    .returning(_d.id)
    for name, dialect in (("postgresql", postgresql), ("sqlite", sqlite))
}


def _insert_delivery_with_job() -> sa.Select[Any]:
    """PostgreSQL: the delivery and, only if it was new, its outbox job, in ONE statement
    (atomic in autocommit): ``WITH d AS (INSERT … ON CONFLICT DO NOTHING RETURNING id),
    j AS (INSERT INTO outbox … SELECT … FROM d WHERE NOT EXISTS (<its coalesce key is
    pending>)) SELECT id FROM d``. No row returned means a duplicate."""
    delivery = (
        postgresql.insert(t.webhook_deliveries)
        .values({c.name: sa.bindparam(c.name, type_=c.type) for c in t.webhook_deliveries.c})
        .on_conflict_do_nothing(index_elements=["org_id", "idempotency_key"])
        .returning(_d.id)
        .cte("delivery")
    )
    job = insert_coalesced_job("job_", delivery).returning(t.outbox.c.id).cte("job")
    return sa.select(delivery.c.id).add_cte(job)


_INSERT_DELIVERY_WITH_JOB = _insert_delivery_with_job()


class SqlIntegrationRepository(SqlRepository):
    async def get(self, org_id: OrgId, *, for_update: bool = False) -> GitLabIntegration | None:
        query = _INTEGRATION_FOR_UPDATE if for_update else _INTEGRATION
        row = (await self._conn.execute(query, {"org_id": org_id})).first()
        return _integration(row) if row else None

    async def save(self, integration: GitLabIntegration) -> None:
        values = {
            "base_url": integration.base_url,
            "token_ciphertext": integration.token_ciphertext,
            "token_set_at": integration.token_set_at,
            "token_status": integration.token_status.value,
            "token_scopes": list(integration.token_scopes),
            "token_expires_at": integration.token_expires_at,
            "token_expiry_warned_days": integration.token_expiry_warned_days,
            "webhook_secret_digest": integration.webhook_secret_digest,
            "webhook_secret_set_at": integration.webhook_secret_set_at,
            "signing_token_ciphertext": integration.signing_token_ciphertext,
            "updated_at": integration.updated_at,
        }
        result = await self._conn.execute(
            t.gitlab_integrations.update().where(_i.org_id == integration.org_id).values(**values)
        )
        if result.rowcount == 0:
            await self._insert(
                t.gitlab_integrations,
                {"org_id": integration.org_id, "created_at": integration.created_at, **values},
                "the GitLab integration was created concurrently; try again",
            )

    async def delete(self, org_id: OrgId) -> None:
        await self._conn.execute(t.gitlab_integrations.delete().where(_i.org_id == org_id))

    def _encrypted(self) -> sa.ColumnElement[bool]:
        return sa.or_(_i.token_ciphertext.is_not(None), _i.signing_token_ciphertext.is_not(None))

    async def with_ciphertexts(self, after: OrgId | None, limit: int) -> list[GitLabIntegration]:
        query = sa.select(t.gitlab_integrations).where(self._encrypted())
        if after is not None:
            query = query.where(_i.org_id > after)
        rows = await self._all(query.order_by(_i.org_id).limit(limit))
        return [_integration(r) for r in rows]

    async def count_with_ciphertexts(self) -> int:
        query = sa.select(sa.func.count()).select_from(t.gitlab_integrations)
        return int((await self._conn.execute(query.where(self._encrypted()))).scalar_one())


def _link(row: sa.Row[Any]) -> GitLabLink:
    return GitLabLink(
        id=row.id,
        org_id=OrgId(row.org_id),
        task_id=TaskId(row.task_id),
        url=row.url,
        project_path=row.project_path,
        kind=ObjectKind(row.kind),
        iid=row.iid,
        cached_title=row.cached_title,
        cached_state=row.cached_state,
        cached_labels=tuple(row.cached_labels or ()),
        cached_assignees=tuple(
            Assignee(username=a.get("username", ""), name=a.get("name", ""))
            for a in (row.cached_assignees or ())
        ),
        last_synced_at=row.last_synced_at,
        error_code=row.error_code,
        rate_limited_until=row.rate_limited_until,
        refresh_requested_at=row.refresh_requested_at,
        last_attempt_at=row.last_attempt_at,
        created_at=row.created_at,
    )


# The statements about one GitLab object's links (every webhook's processing, every
# refresh), built once. The object's parameters are prefixed so that an UPDATE can take
# its SET values by column name.
_OBJECT = sa.and_(
    _l.org_id == sa.bindparam("object_org_id"),
    _l.project_key == sa.bindparam("object_project_key"),
    _l.kind == sa.bindparam("object_kind"),
    _l.iid == sa.bindparam("object_iid"),
)
_OBJECT_LINKS = sa.select(t.gitlab_links).where(_OBJECT).order_by(_l.created_at, _l.id)
_LOCK_OBJECT = (
    sa.select(_l.refresh_requested_at, _l.last_attempt_at)
    .where(_OBJECT)
    .order_by(_l.id)
    .with_for_update()
)
_UPDATE_OBJECT = t.gitlab_links.update().where(_OBJECT)


# The same for several objects of one organization at once (a batch of deliveries).
_OBJECTS = sa.and_(
    _l.org_id == sa.bindparam("objects_org_id"),
    sa.tuple_(_l.project_key, _l.kind, _l.iid).in_(sa.bindparam("objects_keys", expanding=True)),
)


def _lock_objects(postgres: bool) -> sa.Select[Any]:
    # Rows are locked in the ORDER BY's order; on PostgreSQL by code point ("C"), the
    # order in which the per-object callers take their objects (sorted in Python).
    project_key = sa.collate(_l.project_key, "C") if postgres else _l.project_key
    return (
        sa.select(_l.project_key, _l.kind, _l.iid, _l.refresh_requested_at, _l.last_attempt_at)
        .where(_OBJECTS)
        .order_by(project_key, _l.kind, _l.iid, _l.id)
        .with_for_update()
    )


_LOCK_OBJECTS = {postgres: _lock_objects(postgres) for postgres in (False, True)}
_MARK_OBJECTS = (
    t.gitlab_links.update()
    .where(_OBJECTS)
    .values(refresh_requested_at=sa.bindparam("requested_at"))
)


def _object(org_id: OrgId, key: Key) -> dict[str, Any]:
    project_key, kind, iid = key
    return {
        "object_org_id": org_id,
        "object_project_key": project_key,
        "object_kind": kind,
        "object_iid": iid,
    }


_TAKE_RECEIVED = (
    t.webhook_deliveries.update()
    .where(_d.id == sa.bindparam("delivery_id"), _d.status == DeliveryStatus.RECEIVED.value)
    .values(status=DeliveryStatus.PROCESSED.value, processed_at=sa.bindparam("now"))
    .returning(*t.webhook_deliveries.c)
)

_RECEIVED = _d.status == sa.literal_column("'received'")  # matches the partial index


def _take_waiting(postgres: bool) -> sa.Update:
    """The oldest ``received`` deliveries of ``:waiting_org_id`` (up to ``:limit``), marked
    ``processed`` at ``:now`` and returned. PostgreSQL: ``FOR UPDATE SKIP LOCKED``, so two
    workers draining one organization take disjoint batches and never wait for each
    other; ``id = ANY(ARRAY(…))`` runs the subquery once, then looks rows up by key.
    SQLite's write lock serialises the takers anyway."""
    waiting = (
        sa.select(_d.id)
        .where(_d.org_id == sa.bindparam("waiting_org_id"), _RECEIVED)
        .order_by(_d.received_at, _d.id)
        .limit(sa.bindparam("limit", type_=sa.Integer))
    )
    if postgres:
        locked = waiting.with_for_update(skip_locked=True).scalar_subquery()
        taken = _d.id == sa.any_(sa.func.array(locked))
    else:
        taken = _d.id.in_(waiting.scalar_subquery())
    return (
        t.webhook_deliveries.update()
        .where(taken, _RECEIVED)
        .values(status=DeliveryStatus.PROCESSED.value, processed_at=sa.bindparam("now"))
        .returning(*t.webhook_deliveries.c)
    )


_TAKE_WAITING = {postgres: _take_waiting(postgres) for postgres in (False, True)}
_ORGS_WAITING = (
    sa.select(_d.org_id)
    .where(_RECEIVED, _d.received_at < sa.bindparam("before"))
    .group_by(_d.org_id)
    .order_by(_d.org_id)
)


def _purge_finished(postgres: bool) -> sa.Delete:
    """Up to ``:limit`` deliveries received before ``:before`` and no longer waiting,
    oldest first. PostgreSQL: found organization by organization (a LATERAL subquery), so
    each lookup walks the (org_id, received_at) index from its oldest entry; without the
    ORDER BY the planner scans the table from its start, through the rows the previous
    batches left dead."""
    limit = sa.bindparam("limit", type_=sa.Integer)
    old_and_finished = (
        _d.received_at < sa.bindparam("before"),
        _d.status != sa.literal_column("'received'"),
    )
    if postgres:
        orgs = t.organizations.c
        per_org = (
            sa.select(_d.id)
            .where(_d.org_id == orgs.id, *old_and_finished)
            .order_by(_d.received_at)
            .limit(limit)
            .lateral()
        )
        doomed = sa.select(per_org.c.id).select_from(t.organizations).join(per_org, sa.true())
    else:
        doomed = sa.select(_d.id).where(*old_and_finished).order_by(_d.received_at)
    return t.webhook_deliveries.delete().where(_d.id.in_(doomed.limit(limit).scalar_subquery()))


_PURGE_FINISHED = {postgres: _purge_finished(postgres) for postgres in (False, True)}


def purge_finished_statement(*, postgres: bool) -> sa.Delete:
    """The statement behind ``purge_finished`` (``bench.retention`` explains its plan)."""
    return _PURGE_FINISHED[postgres]


class SqlLinkRepository(SqlRepository):
    async def add(self, link: GitLabLink) -> None:
        await self._insert(
            t.gitlab_links,
            {
                "id": link.id,
                "org_id": link.org_id,
                "task_id": link.task_id,
                "url": link.url,
                "project_path": link.project_path,
                "project_key": link.project_path.lower(),
                "kind": link.kind.value,
                "iid": link.iid,
                "cached_title": link.cached_title,
                "cached_state": link.cached_state,
                "cached_labels": list(link.cached_labels),
                "cached_assignees": [
                    {"username": a.username, "name": a.name} for a in link.cached_assignees
                ],
                "last_synced_at": link.last_synced_at,
                "error_code": link.error_code,
                "rate_limited_until": link.rate_limited_until,
                "refresh_requested_at": link.refresh_requested_at,
                "last_attempt_at": link.last_attempt_at,
                "created_at": link.created_at,
            },
            "this task already links that issue or merge request",
        )

    async def get(self, org_id: OrgId, link_id: str) -> GitLabLink | None:
        row = await self._one(
            sa.select(t.gitlab_links).where(_l.id == link_id, _l.org_id == org_id)
        )
        return _link(row) if row else None

    async def list_for_task_as(
        self, org_id: OrgId, task_id: TaskId, user_id: UserId
    ) -> tuple[str | None, bool, list[GitLabLink]]:
        params = {"org_id": org_id, "task_id": task_id, "user_id": user_id}
        rows = (await self._conn.execute(_TASK_LINKS_AS, params)).all()
        if not rows:
            return None, False, []
        first = rows[0]
        links = [_link(r) for r in rows] if first.id is not None else []
        return str(first.member_role), first.found_task_id is not None, links

    async def delete(self, link_id: str) -> None:
        await self._conn.execute(t.gitlab_links.delete().where(_l.id == link_id))

    async def for_object(self, org_id: OrgId, key: Key) -> list[GitLabLink]:
        return [_link(r) for r in await self._conn.execute(_OBJECT_LINKS, _object(org_id, key))]

    async def request_refresh(
        self, org_id: OrgId, key: Key, now: datetime, *, min_attempt_interval: timedelta | None
    ) -> RefreshQueued | None:
        # Lock the object's links first (FOR UPDATE returns their latest committed state),
        # so two concurrent callers cannot both decide to queue a refresh.
        params = _object(org_id, key)
        rows = (await self._conn.execute(_LOCK_OBJECT, params)).all()
        states = ((row.refresh_requested_at, row.last_attempt_at) for row in rows)
        queued = refresh_to_queue(states, now, min_attempt_interval)
        if queued is not None:
            await self._conn.execute(_UPDATE_OBJECT, {**params, "refresh_requested_at": now})
        return queued

    async def request_refreshes(
        self, org_id: OrgId, keys: Sequence[Key], now: datetime
    ) -> dict[Key, RefreshQueued]:
        if not keys:
            return {}
        params = {"objects_org_id": org_id, "objects_keys": list(keys)}
        statement = _LOCK_OBJECTS[self._conn.dialect.name == "postgresql"]
        rows = (await self._conn.execute(statement, params)).all()
        found: dict[Key, list[tuple[datetime | None, datetime | None]]] = {}
        for row in rows:
            states = found.setdefault((row.project_key, row.kind, row.iid), [])
            states.append((row.refresh_requested_at, row.last_attempt_at))
        decided = {key: refresh_to_queue(states, now, None) for key, states in found.items()}
        queued = {key: refresh for key, refresh in decided.items() if refresh is not None}
        if queued:
            marks = {"objects_org_id": org_id, "objects_keys": list(queued), "requested_at": now}
            await self._conn.execute(_MARK_OBJECTS, marks)
        return queued

    async def start_refresh(self, org_id: OrgId, key: Key, now: datetime) -> None:
        values = {"refresh_requested_at": None, "last_attempt_at": now}
        await self._conn.execute(_UPDATE_OBJECT, {**_object(org_id, key), **values})

    async def record_snapshot(self, org_id: OrgId, key: Key, snapshot: LinkSnapshot) -> None:
        values = {
            "cached_title": snapshot.title,
            "cached_state": snapshot.state,
            "cached_labels": list(snapshot.labels),
            "cached_assignees": [
                {"username": a.username, "name": a.name} for a in snapshot.assignees
            ],
            "last_synced_at": snapshot.synced_at,
            "error_code": None,
            "rate_limited_until": None,
        }
        await self._conn.execute(_UPDATE_OBJECT, {**_object(org_id, key), **values})

    async def record_error(
        self, org_id: OrgId, key: Key, error_code: str, rate_limited_until: datetime | None
    ) -> None:
        values = {"error_code": error_code, "rate_limited_until": rate_limited_until}
        await self._conn.execute(_UPDATE_OBJECT, {**_object(org_id, key), **values})


def _delivery(row: sa.Row[Any]) -> WebhookDelivery:
    return WebhookDelivery(
        id=row.id,
        org_id=OrgId(row.org_id),
        idempotency_key=row.idempotency_key,
        event_type=row.event_type,
        status=DeliveryStatus(row.status),
        received_at=row.received_at,
        processed_at=row.processed_at,
        error=row.error,
        payload_hash=row.payload_hash,
        project_path=row.project_path,
        kind=ObjectKind(row.kind) if row.kind else None,
        iid=row.iid,
        action=row.action,
    )


def _taken(row: sa.Row[Any]) -> WebhookDelivery:
    """A delivery as it was before a take marked it processed (RETURNING gives the new row)."""
    return replace(_delivery(row), status=DeliveryStatus.RECEIVED, processed_at=None)


class SqlDeliveryRepository(SqlRepository):
    async def add(self, delivery: WebhookDelivery, job: Job | None = None) -> bool:
        # ON CONFLICT DO NOTHING: a duplicate costs no savepoint and no error round trip.
        values = {
            "id": delivery.id,
            "org_id": delivery.org_id,
            "idempotency_key": delivery.idempotency_key,
            "event_type": delivery.event_type,
            "status": delivery.status.value,
            "received_at": delivery.received_at,
            "processed_at": delivery.processed_at,
            "error": delivery.error,
            "payload_hash": delivery.payload_hash,
            "project_path": delivery.project_path,
            "kind": delivery.kind.value if delivery.kind else None,
            "iid": delivery.iid,
            "action": delivery.action,
        }
        dialect = self._conn.dialect.name
        if job is not None and dialect == "postgresql":
            row = outbox_row(job, delivery.received_at)
            values.update({f"job_{name}": value for name, value in row.items()})
            return (await self._conn.execute(_INSERT_DELIVERY_WITH_JOB, values)).first() is not None
        inserted = (await self._conn.execute(_INSERT_DELIVERY[dialect], values)).first()
        if inserted is not None and job is not None:  # SQLite: the unit of work's transaction
            await self._conn.execute(INSERT_JOB, outbox_row(job, delivery.received_at))
        return inserted is not None

    async def get(self, delivery_id: str) -> WebhookDelivery | None:
        row = await self._one(sa.select(t.webhook_deliveries).where(_d.id == delivery_id))
        return _delivery(row) if row else None

    async def take_received(self, delivery_id: str, now: datetime) -> WebhookDelivery | None:
        params = {"delivery_id": delivery_id, "now": now}
        row = (await self._conn.execute(_TAKE_RECEIVED, params)).first()
        return _taken(row) if row else None

    async def take_waiting(self, org_id: OrgId, now: datetime, limit: int) -> list[WebhookDelivery]:
        params = {"waiting_org_id": org_id, "now": now, "limit": limit}
        statement = _TAKE_WAITING[self._conn.dialect.name == "postgresql"]
        rows = (await self._conn.execute(statement, params)).all()
        taken = [_taken(row) for row in rows]
        taken.sort(key=lambda delivery: (delivery.received_at, delivery.id))
        return taken

    async def orgs_waiting(self, received_before: datetime) -> list[OrgId]:
        rows = await self._conn.execute(_ORGS_WAITING, {"before": received_before})
        return [OrgId(row.org_id) for row in rows]

    async def finish(
        self, delivery_id: str, status: DeliveryStatus, now: datetime, error: str | None
    ) -> None:
        await self._conn.execute(
            t.webhook_deliveries.update()
            .where(_d.id == delivery_id)
            .values(status=status.value, processed_at=now, error=error[:1000] if error else None)
        )

    async def purge_finished(self, received_before: datetime, limit: int) -> int:
        statement = _PURGE_FINISHED[self._conn.dialect.name == "postgresql"]
        result = await self._conn.execute(statement, {"before": received_before, "limit": limit})
        return int(result.rowcount)

    async def page(
        self, org_id: OrgId, limit: int, before: tuple[datetime, str] | None
    ) -> list[WebhookDelivery]:
        query = sa.select(t.webhook_deliveries).where(_d.org_id == org_id)
        if before is not None:
            query = query.where(sa.tuple_(_d.received_at, _d.id) < sa.tuple_(*before))
        rows = await self._all(query.order_by(_d.received_at.desc(), _d.id.desc()).limit(limit))
        return [_delivery(r) for r in rows]


class SqlAuditLog(SqlRepository):
    async def add(self, event: AuditEvent) -> None:
        await self._conn.execute(
            t.audit_events.insert().values(
                id=event.id,
                org_id=event.org_id,
                actor_user_id=event.actor_user_id,
                action=event.action,
                details=event.details,
                created_at=event.created_at,
            )
        )

    async def for_org(self, org_id: OrgId, limit: int) -> list[AuditEvent]:
        a = t.audit_events.c
        rows = await self._all(
            sa.select(t.audit_events)
            .where(a.org_id == org_id)
            .order_by(a.created_at.desc(), a.id.desc())
            .limit(limit)
        )
        return [
            AuditEvent(
                id=r.id,
                org_id=OrgId(r.org_id),
                actor_user_id=UserId(r.actor_user_id) if r.actor_user_id else None,
                action=r.action,
                details=dict(r.details or {}),
                created_at=r.created_at,
            )
            for r in rows
        ]


class SqlOrgAccess(SqlRepository):
    async def role_of(self, org_id: OrgId, user_id: UserId) -> str | None:
        m = t.memberships.c
        row = await self._one(sa.select(m.role).where(m.org_id == org_id, m.user_id == user_id))
        return str(row.role) if row else None

    async def role_and_task(
        self, org_id: OrgId, user_id: UserId, task_id: TaskId
    ) -> tuple[str | None, bool]:
        values = {"org_id": org_id, "user_id": user_id, "task_id": task_id}
        row = (await self._conn.execute(_ROLE_AND_TASK, values)).first()
        return (str(row.role), bool(row.task)) if row else (None, False)

    async def admins(self, org_id: OrgId) -> list[UserId]:
        m = t.memberships.c
        rows = await self._all(
            sa.select(m.user_id).where(m.org_id == org_id, m.role == "admin").order_by(m.user_id)
        )
        return [UserId(r.user_id) for r in rows]
