"""The outbox table as a JobStore, and worker heartbeats."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from viarah.adapters.db import tables as t
from viarah.domain.jobs.model import DISPATCH_TIMEOUT, Heartbeat, JobRecord, JobStatus

_o = t.outbox.c


def _record(row: sa.Row[Any]) -> JobRecord:
    return JobRecord(
        id=row.id,
        job=row.job,
        payload=dict(row.payload or {}),
        status=JobStatus(row.status),
        attempts=row.attempts,
        created_at=row.created_at,
        available_at=row.available_at,
    )


def _holder_dead(now: datetime, dead_after: timedelta | None) -> sa.ColumnElement[bool]:
    """The job's worker has not recorded a heartbeat for ``dead_after`` (or ever)."""
    if dead_after is None:
        return sa.false()
    hb = t.worker_heartbeats.c
    alive = sa.select(hb.worker_id).where(
        hb.worker_id == _o.locked_by, hb.last_seen_at >= now - dead_after
    )
    return sa.and_(_o.locked_by.is_not(None), ~alive.exists())


def _redeliverable(now: datetime, dead_after: timedelta | None = None) -> sa.ColumnElement[bool]:
    """Not finished, and not held by a live worker whose claim is still valid."""
    return sa.or_(
        _o.status.in_([JobStatus.PENDING.value, JobStatus.DISPATCHED.value]),
        sa.and_(
            _o.status == JobStatus.RUNNING.value,
            sa.or_(_o.locked_until < now, _holder_dead(now, dead_after)),
        ),
    )


class SqlJobStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def due_for_dispatch(
        self, now: datetime, limit: int, dead_after: timedelta | None = None
    ) -> list[JobRecord]:
        query = (
            sa.select(t.outbox)
            .where(
                sa.or_(
                    sa.and_(_o.status == JobStatus.PENDING.value, _o.available_at <= now),
                    sa.and_(
                        _o.status == JobStatus.DISPATCHED.value,
                        _o.dispatched_at < now - DISPATCH_TIMEOUT,
                    ),
                    sa.and_(
                        _o.status == JobStatus.RUNNING.value,
                        sa.or_(_o.locked_until < now, _holder_dead(now, dead_after)),
                    ),
                )
            )
            .order_by(_o.available_at, _o.id)
            .limit(limit)
        )
        async with self._engine.connect() as conn:
            return [_record(row) for row in (await conn.execute(query)).all()]

    async def mark_dispatched(
        self, job_ids: list[str], now: datetime, dead_after: timedelta | None = None
    ) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(
                t.outbox.update()
                .where(_o.id.in_(job_ids), _redeliverable(now, dead_after))
                .values(status=JobStatus.DISPATCHED.value, dispatched_at=now, locked_by=None)
            )

    async def claim(
        self,
        job_id: str,
        now: datetime,
        lock_until: datetime,
        holder: str | None = None,
        dead_after: timedelta | None = None,
    ) -> JobRecord | None:
        async with self._engine.begin() as conn:
            result = await conn.execute(
                t.outbox.update()
                .where(_o.id == job_id, _redeliverable(now, dead_after))
                .values(status=JobStatus.RUNNING.value, locked_until=lock_until, locked_by=holder)
            )
            if result.rowcount != 1:
                return None
            row = (await conn.execute(sa.select(t.outbox).where(_o.id == job_id))).one()
        return _record(row)

    async def finish(self, job_id: str, now: datetime) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(
                t.outbox.update()
                .where(_o.id == job_id)
                .values(
                    status=JobStatus.DONE.value, finished_at=now, locked_until=None, last_error=None
                )
            )

    async def retry_later(self, job_id: str, error: str, available_at: datetime) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(
                t.outbox.update()
                .where(_o.id == job_id)
                .values(
                    status=JobStatus.PENDING.value,
                    attempts=_o.attempts + 1,
                    available_at=available_at,
                    locked_until=None,
                    dispatched_at=None,
                    last_error=error[:1000],
                )
            )

    async def give_up(self, job_id: str, error: str, now: datetime) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(
                t.outbox.update()
                .where(_o.id == job_id)
                .values(
                    status=JobStatus.FAILED.value,
                    attempts=_o.attempts + 1,
                    finished_at=now,
                    locked_until=None,
                    last_error=error[:1000],
                )
            )

    async def counts(self) -> dict[str, int]:
        async with self._engine.connect() as conn:
            rows = (
                await conn.execute(sa.select(_o.status, sa.func.count()).group_by(_o.status))
            ).all()
        counts = {status.value: 0 for status in JobStatus}
        counts.update({row[0]: int(row[1]) for row in rows})
        return counts


class SqlHeartbeatStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def record(self, heartbeat: Heartbeat) -> None:
        hb = t.worker_heartbeats
        async with self._engine.begin() as conn:
            updated = await conn.execute(
                hb.update()
                .where(hb.c.worker_id == heartbeat.worker_id)
                .values(last_seen_at=heartbeat.last_seen_at)
            )
            if updated.rowcount == 0:
                await conn.execute(
                    hb.insert().values(
                        worker_id=heartbeat.worker_id,
                        hostname=heartbeat.hostname,
                        pid=heartbeat.pid,
                        started_at=heartbeat.started_at,
                        last_seen_at=heartbeat.last_seen_at,
                    )
                )

    async def latest(self) -> Heartbeat | None:
        hb = t.worker_heartbeats
        async with self._engine.connect() as conn:
            row = (
                await conn.execute(sa.select(hb).order_by(hb.c.last_seen_at.desc()).limit(1))
            ).first()
        if row is None:
            return None
        return Heartbeat(row.worker_id, row.hostname, row.pid, row.started_at, row.last_seen_at)


async def database_answers(engine: AsyncEngine) -> bool:
    """True when a trivial query succeeds (health checks)."""
    try:
        async with engine.connect() as conn:
            await conn.execute(sa.text("SELECT 1"))
    except Exception:
        return False
    return True
