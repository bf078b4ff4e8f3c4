"""Old finished webhook deliveries are purged, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.fakes import FakePasswordHasher
from viarah.adapters.db import tables as t
from viarah.adapters.db.engine import create_engine
from viarah.adapters.db.uow import SqlUnitOfWork
from viarah.domain.gitlab.model import DeliveryStatus
from viarah.domain.gitlab.retention import PURGE_DELIVERIES_JOB, DeliveryRetention
from viarah.domain.identity.services import Users
from viarah.domain.orgs.services import Organizations
from viarah.domain.shared.actor import Actor
from viarah.domain.shared.clock import SystemClock
from viarah.domain.shared.ids import new_id

NOW = SystemClock().now()


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    made = create_engine(database_url)
    yield made
    await made.dispose()


def _uow(engine: AsyncEngine) -> SqlUnitOfWork:
    return SqlUnitOfWork(engine, SystemClock())


async def _orgs(engine: AsyncEngine, count: int) -> list[str]:
    clock = SystemClock()
    user = await Users(lambda: _uow(engine), clock, FakePasswordHasher()).create(
        "admin@example.com", "correct horse"
    )
    orgs = Organizations(lambda: _uow(engine), clock)
    return [(await orgs.create(Actor(user_id=user.id), f"Org {n}")).org.id for n in range(count)]


async def _deliveries(
    engine: AsyncEngine, org_id: str, status: DeliveryStatus, age: timedelta, count: int
) -> None:
    received = NOW - age
    rows = [
        {
            "id": new_id(),
            "org_id": org_id,
            "idempotency_key": f"key:{new_id()}",
            "event_type": "Issue Hook",
            "status": status.value,
            "received_at": received,
            "processed_at": None if status is DeliveryStatus.RECEIVED else received,
            "payload_hash": "0" * 64,
        }
        for _ in range(count)
    ]
    async with engine.begin() as conn:
        await conn.execute(t.webhook_deliveries.insert(), rows)


async def _left(engine: AsyncEngine) -> list[tuple[str, str, datetime]]:
    d = t.webhook_deliveries.c
    async with engine.connect() as conn:
        rows = await conn.execute(sa.select(d.org_id, d.status, d.received_at))
        return sorted((r.org_id, r.status, r.received_at) for r in rows)


async def _pending_purge_jobs(engine: AsyncEngine) -> int:
    o = t.outbox.c
    query = sa.select(sa.func.count()).where(o.job == PURGE_DELIVERIES_JOB, o.status == "pending")
    async with engine.connect() as conn:
        return int((await conn.execute(query)).scalar_one())


async def test_only_finished_deliveries_past_retention_are_deleted(engine: AsyncEngine) -> None:
    first, second = await _orgs(engine, 2)
    old, recent = timedelta(days=31), timedelta(days=29)
    for org_id in (first, second):
        for status in (DeliveryStatus.PROCESSED, DeliveryStatus.IGNORED, DeliveryStatus.FAILED):
            await _deliveries(engine, org_id, status, old, 2)
        await _deliveries(engine, org_id, DeliveryStatus.RECEIVED, old, 1)  # still waiting
        await _deliveries(engine, org_id, DeliveryStatus.PROCESSED, recent, 1)
    retention = DeliveryRetention(lambda: _uow(engine), SystemClock(), retention_days=30, batch=4)

    assert await retention.purge() == 12  # 3 batches of 4 (the last one short: 0)
    left = await _left(engine)
    assert [(org, status) for org, status, _ in left] == sorted(
        [(org, status) for org in (first, second) for status in ("received", "processed")]
    )
    assert all(
        when == NOW - recent for _, status, when in left if status == "processed"
    )  # the recent ones stay
    assert await _pending_purge_jobs(engine) == 0  # it finished: no follow-up
    assert await retention.purge() == 0


async def test_a_purge_stops_at_its_limit_and_queues_the_rest(engine: AsyncEngine) -> None:
    (org_id,) = await _orgs(engine, 1)
    await _deliveries(engine, org_id, DeliveryStatus.PROCESSED, timedelta(days=8), 7)
    retention = DeliveryRetention(
        lambda: _uow(engine), SystemClock(), retention_days=7, batch=2, max_per_job=5
    )

    assert await retention.purge() == 5
    assert len(await _left(engine)) == 2
    assert await _pending_purge_jobs(engine) == 1  # the follow-up
    assert await retention.purge() == 2
    assert await _left(engine) == []


async def test_retention_zero_keeps_everything(engine: AsyncEngine) -> None:
    (org_id,) = await _orgs(engine, 1)
    await _deliveries(engine, org_id, DeliveryStatus.PROCESSED, timedelta(days=3650), 3)
    retention = DeliveryRetention(lambda: _uow(engine), SystemClock(), retention_days=0)

    assert await retention.purge() == 0
    assert len(await _left(engine)) == 3
