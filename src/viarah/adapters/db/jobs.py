"""The outbox table as a JobStore, and worker heartbeats.

Every hot-path operation of the job machinery is ONE statement (a worker pays for each
round trip and each statement compiled, once per job):

- ``take_due`` (the relay) marks the due rows ``dispatched`` and returns them in a single
  ``UPDATE … WHERE id IN (SELECT … FOR UPDATE SKIP LOCKED) RETURNING``: two relays (one
  per worker) never take the same row, and nobody waits for another's locks;
- ``claim`` is ``UPDATE … WHERE <still deliverable> RETURNING``: a second claimant of the
  same row waits for the first one's row lock, re-checks the condition and gets nothing;
- ``finish``, ``retry_later``, ``give_up`` and ``release`` are single ``UPDATE``s.

On PostgreSQL they run on an autocommit connection of the native pool (``native.py``): a
lone statement is atomic anyway, and it spares the ``BEGIN`` and ``COMMIT`` round trips.
On SQLite (the embedded
``viarah serve``) they run in the engine's ``BEGIN IMMEDIATE`` transaction as before; its
statements do not leave the process. The statements are built once (bound parameters),
so SQLAlchemy finds them in its compiled cache without rebuilding them for every job.

Claims and finishes are also *grouped*: while one claim (or finish) statement of this
process is in flight, the next callers queue up, and the queue goes out as one statement
(``WHERE id IN (…)``) when it returns. A lone worker still pays one statement per call
and waits for nobody; a busy one pays one per group. Each caller still returns only once
its own row is written, so no guarantee moves.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable, Sequence
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import Any, Generic, TypeVar, cast

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from viarah.adapters.db import tables as t
from viarah.adapters.db.engine import read_only_options
from viarah.adapters.db.native import NativePool
from viarah.domain.jobs.model import DISPATCH_TIMEOUT, Heartbeat, JobRecord, JobStatus

_o = t.outbox.c
_hb = t.worker_heartbeats.c

_PENDING = JobStatus.PENDING.value
_DISPATCHED = JobStatus.DISPATCHED.value
_RUNNING = JobStatus.RUNNING.value
_DONE = JobStatus.DONE.value
_FAILED = JobStatus.FAILED.value

#: The columns a :class:`JobRecord` is made of.
_RECORD_COLUMNS = (
    _o.id,
    _o.job,
    _o.payload,
    _o.status,
    _o.attempts,
    _o.created_at,
    _o.available_at,
)


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


def _param(name: str, column: sa.Column[Any]) -> sa.BindParameter[Any]:
    return sa.bindparam(name, type_=column.type)


def _holder_dead(with_heartbeats: bool) -> sa.ColumnElement[bool]:
    """The job's worker has not recorded a heartbeat since ``:alive_since`` (or ever)."""
    if not with_heartbeats:
        return sa.false()
    alive = sa.select(_hb.worker_id).where(
        _hb.worker_id == _o.locked_by, _hb.last_seen_at >= _param("alive_since", _hb.last_seen_at)
    )
    return sa.and_(_o.locked_by.is_not(None), ~alive.exists())


def _running_abandoned(with_heartbeats: bool) -> sa.ColumnElement[bool]:
    """Running, but its claim expired (``:now``) or its worker stopped beating."""
    return sa.and_(
        _o.status == _RUNNING,
        sa.or_(_o.locked_until < _param("now", _o.locked_until), _holder_dead(with_heartbeats)),
    )


def _redeliverable(with_heartbeats: bool) -> sa.ColumnElement[bool]:
    """Not finished, and not held by a live worker whose claim is still valid."""
    return sa.or_(
        _o.status == _PENDING, _o.status == _DISPATCHED, _running_abandoned(with_heartbeats)
    )


def _due(with_heartbeats: bool) -> sa.ColumnElement[bool]:
    """Due for (re)dispatch at ``:now``: pending and available, dispatched but not claimed
    since ``:dispatched_before``, or running and abandoned."""
    return sa.or_(
        sa.and_(_o.status == _PENDING, _o.available_at <= _param("now", _o.available_at)),
        sa.and_(
            _o.status == _DISPATCHED,
            _o.dispatched_at < _param("dispatched_before", _o.dispatched_at),
        ),
        _running_abandoned(with_heartbeats),
    )


def _due_select(with_heartbeats: bool) -> sa.Select[Any]:
    return (
        sa.select(*_RECORD_COLUMNS)
        .where(_due(with_heartbeats))
        .order_by(_o.available_at, _o.id)
        .limit(sa.bindparam("limit", type_=sa.Integer))
    )


def _take_due(with_heartbeats: bool, postgres: bool) -> sa.Update:
    # SKIP LOCKED: rows another relay is taking (or a worker is claiming) right now are
    # left to it; FOR UPDATE re-checks the condition on rows changed since the snapshot.
    # SQLite renders no FOR UPDATE; its write lock serialises relays anyway.
    due_ids = (
        sa.select(_o.id)
        .where(_due(with_heartbeats))
        .order_by(_o.available_at, _o.id)
        .limit(sa.bindparam("limit", type_=sa.Integer))
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    # PostgreSQL: ``id = ANY(ARRAY(subquery))`` runs the subquery once and then looks the
    # rows up by primary key; ``id IN (subquery)`` would be planned as a hash join over
    # the whole outbox table (finished jobs included), whatever the subquery returns.
    taken = _o.id == sa.any_(sa.func.array(due_ids)) if postgres else _o.id.in_(due_ids)
    return (
        t.outbox.update()
        .where(taken)
        .values(
            status=_DISPATCHED,
            dispatched_at=_param("now", _o.dispatched_at),
            locked_by=None,
        )
        .returning(*_RECORD_COLUMNS)
    )


def _claim(with_heartbeats: bool) -> sa.Update:
    return (
        t.outbox.update()
        .where(_o.id.in_(sa.bindparam("job_ids", expanding=True)), _redeliverable(with_heartbeats))
        .values(
            status=_RUNNING,
            locked_until=_param("lock_until", _o.locked_until),
            locked_by=_param("holder", _o.locked_by),
        )
        .returning(*_RECORD_COLUMNS)
    )


_BY_ID = _o.id == sa.bindparam("job_id", type_=_o.id.type)

#: Statements by whether they consult heartbeats (``dead_after`` given or not).
_DUE_SELECT = {flag: _due_select(flag) for flag in (False, True)}
#: By (consults heartbeats, PostgreSQL).
_TAKE_DUE = {(flag, pg): _take_due(flag, pg) for flag in (False, True) for pg in (False, True)}
_CLAIM = {flag: _claim(flag) for flag in (False, True)}

_FINISH = (
    t.outbox.update()
    .where(_o.id.in_(sa.bindparam("job_ids", expanding=True)))
    .values(
        status=_DONE,
        finished_at=_param("now", _o.finished_at),
        locked_until=None,
        last_error=None,
    )
)
_RETRY_LATER = (
    t.outbox.update()
    .where(_BY_ID)
    .values(
        status=_PENDING,
        attempts=_o.attempts + 1,
        available_at=_param("retry_at", _o.available_at),
        locked_until=None,
        dispatched_at=None,
        last_error=_param("error", _o.last_error),
    )
)
_GIVE_UP = (
    t.outbox.update()
    .where(_BY_ID)
    .values(
        status=_FAILED,
        attempts=_o.attempts + 1,
        finished_at=_param("now", _o.finished_at),
        locked_until=None,
        last_error=_param("error", _o.last_error),
    )
)
#: Back to pending: rows this relay took at ``:now`` and could not hand to the broker (a
#: worker may have claimed one meanwhile through an older message: then it is left alone).
_RELEASE = (
    t.outbox.update()
    .where(
        _o.id.in_(sa.bindparam("job_ids", expanding=True)),
        _o.status == _DISPATCHED,
        _o.dispatched_at == _param("now", _o.dispatched_at),
    )
    .values(status=_PENDING, dispatched_at=None)
)


#: A claim asked for: job id, now, lease end.
_ClaimCall = tuple[str, datetime, datetime]


def _times(now: datetime, dead_after: timedelta | None) -> dict[str, Any]:
    params: dict[str, Any] = {"now": now}
    if dead_after is not None:
        params["alive_since"] = now - dead_after
    return params


K = TypeVar("K", bound=Hashable)
T = TypeVar("T")
R = TypeVar("R")


class _Grouped(Generic[K, T, R]):
    """Concurrent calls of one operation, written as few statements (group commit).

    ``submit(key, item)`` queues ``item``; calls with the same ``key`` can share a
    statement. One drain task per event loop runs ``write(key, items)`` for each queued
    group, one statement at a time: whatever queues up while a statement is in flight goes
    out in the next one. ``write`` returns one result per item (in order); if it raises,
    every caller of that group gets the exception. A caller cancelled before its group
    goes out is left out of it.
    """

    def __init__(self, write: Callable[[K, list[T]], Awaitable[Sequence[R]]]) -> None:
        self._write = write
        self._loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopQueue[K, T, R]]
        self._loops = weakref.WeakKeyDictionary()

    async def submit(self, key: K, item: T) -> R:
        loop = asyncio.get_running_loop()
        queue = self._loops.get(loop)
        if queue is None:
            queue = self._loops[loop] = _LoopQueue()
        future: asyncio.Future[R] = loop.create_future()
        queue.calls.setdefault(key, []).append((item, future))
        if queue.drain is None or queue.drain.done():
            queue.drain = loop.create_task(self._run(queue))
        return await future

    async def _run(self, queue: _LoopQueue[K, T, R]) -> None:
        while queue.calls:
            key = next(iter(queue.calls))
            group = [(item, f) for item, f in queue.calls.pop(key) if not f.done()]
            if not group:
                continue
            try:
                results = await self._write(key, [item for item, _ in group])
            except asyncio.CancelledError:
                for _, future in group + [c for calls in queue.calls.values() for c in calls]:
                    future.cancel()
                queue.calls.clear()
                raise
            except Exception as exc:
                for _, future in group:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (_, future), result in zip(group, results, strict=True):
                if not future.done():
                    future.set_result(result)


class _LoopQueue(Generic[K, T, R]):
    """What one event loop has queued for a :class:`_Grouped` operation."""

    def __init__(self) -> None:
        self.calls: dict[K, list[tuple[T, asyncio.Future[R]]]] = {}
        self.drain: asyncio.Task[None] | None = None


class SqlJobStore:
    def __init__(self, engine: AsyncEngine, native: NativePool | None = None) -> None:
        self._engine = engine
        self._native = native
        self._claims: _Grouped[tuple[str | None, timedelta | None], _ClaimCall, JobRecord | None]
        self._claims = _Grouped(self._claim_group)
        self._finishes: _Grouped[None, tuple[str, datetime], None] = _Grouped(self._finish_group)
        self._postgres = engine.dialect.name == "postgresql"

    @asynccontextmanager
    async def _statement(self) -> AsyncIterator[AsyncConnection]:
        """A connection for one atomic statement, committed when the block ends: on
        PostgreSQL a native connection in autocommit (one round trip), else a transaction
        (SQLite's ``BEGIN IMMEDIATE``)."""
        if self._native is not None:
            async with self._native.statement() as native:
                # NativeConnection implements the part of AsyncConnection used here.
                yield cast(AsyncConnection, native)
        else:
            async with self._engine.begin() as conn:
                yield conn

    async def take_due(
        self, now: datetime, limit: int, dead_after: timedelta | None = None
    ) -> list[JobRecord]:
        params = _times(now, dead_after)
        params.update(dispatched_before=now - DISPATCH_TIMEOUT, limit=limit)
        async with self._statement() as conn:
            statement = _TAKE_DUE[dead_after is not None, self._postgres]
            rows = (await conn.execute(statement, params)).all()
        records = [_record(row) for row in rows]
        records.sort(key=lambda record: (record.available_at, record.id))  # oldest first
        return records

    async def release(self, job_ids: list[str], now: datetime) -> None:
        if not job_ids:
            return
        async with self._statement() as conn:
            await conn.execute(_RELEASE, {"job_ids": job_ids, "now": now})

    async def due_for_dispatch(
        self, now: datetime, limit: int, dead_after: timedelta | None = None
    ) -> list[JobRecord]:
        params = _times(now, dead_after)
        params.update(dispatched_before=now - DISPATCH_TIMEOUT, limit=limit)
        async with self._statement() as conn:
            rows = (await conn.execute(_DUE_SELECT[dead_after is not None], params)).all()
        return [_record(row) for row in rows]

    async def claim(
        self,
        job_id: str,
        now: datetime,
        lock_until: datetime,
        holder: str | None = None,
        dead_after: timedelta | None = None,
    ) -> JobRecord | None:
        return await self._claims.submit((holder, dead_after), (job_id, now, lock_until))

    async def _claim_group(
        self, key: tuple[str | None, timedelta | None], calls: list[_ClaimCall]
    ) -> list[JobRecord | None]:
        """One statement for claims queued together; the latest ``now`` and lease apply
        (the statement runs after every one of them was asked for)."""
        holder, dead_after = key
        now = max(call[1] for call in calls)
        params = _times(now, dead_after)
        params.update(
            job_ids=sorted({call[0] for call in calls}),
            lock_until=max(call[2] for call in calls),
            holder=holder,
        )
        async with self._statement() as conn:
            rows = (await conn.execute(_CLAIM[dead_after is not None], params)).all()
        claimed = {row.id: _record(row) for row in rows}
        # The same id asked twice (a duplicate delivery): only the first caller runs it.
        return [claimed.pop(call[0], None) for call in calls]

    async def finish(self, job_id: str, now: datetime) -> None:
        await self._finishes.submit(None, (job_id, now))

    async def _finish_group(self, _key: None, calls: list[tuple[str, datetime]]) -> list[None]:
        params = {"job_ids": sorted({call[0] for call in calls}), "now": max(c[1] for c in calls)}
        async with self._statement() as conn:
            await conn.execute(_FINISH, params)
        return [None] * len(calls)

    async def retry_later(self, job_id: str, error: str, available_at: datetime) -> None:
        params = {"job_id": job_id, "error": error[:1000], "retry_at": available_at}
        async with self._statement() as conn:
            await conn.execute(_RETRY_LATER, params)

    async def give_up(self, job_id: str, error: str, now: datetime) -> None:
        async with self._statement() as conn:
            await conn.execute(_GIVE_UP, {"job_id": job_id, "error": error[:1000], "now": now})

    async def purge_done(self, finished_before: datetime, limit: int) -> int:
        async with self._statement() as conn:
            result = await conn.execute(_PURGE_DONE, {"before": finished_before, "limit": limit})
        return int(result.rowcount)

    async def counts(self) -> dict[str, int]:
        async with self._engine.connect() as conn:
            rows = (
                await conn.execute(sa.select(_o.status, sa.func.count()).group_by(_o.status))
            ).all()
        counts = {status.value: 0 for status in JobStatus}
        counts.update({row[0]: int(row[1]) for row in rows})
        return counts


_PURGE_DONE = t.outbox.delete().where(
    _o.id.in_(
        sa.select(_o.id)
        .where(_o.status == JobStatus.DONE.value, _o.finished_at < sa.bindparam("before"))
        .limit(sa.bindparam("limit"))
        .scalar_subquery()
    )
)


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


_SELECT_1 = sa.text("SELECT 1")


async def database_answers(engine: AsyncEngine, native: NativePool | None = None) -> bool:
    """True when a trivial query succeeds (health checks): one round trip on PostgreSQL,
    on the pool the units of work use."""
    try:
        if native is not None:
            async with native.statement() as statement:
                await statement.execute(_SELECT_1)
            return True
        async with engine.connect() as conn:
            await conn.execution_options(**read_only_options(engine))
            await conn.execute(_SELECT_1)
    except Exception:
        return False
    return True
