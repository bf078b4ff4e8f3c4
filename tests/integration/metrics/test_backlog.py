"""The backlog gauges' queries (adapters/db/stats.py) on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from viarah.adapters.db import tables as t
from viarah.adapters.db.engine import create_engine
from viarah.adapters.db.stats import read_backlog

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
ALIVE_AFTER = timedelta(seconds=92)


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url)
    yield engine
    await engine.dispose()


def _id() -> str:
    return str(uuid.uuid4())


async def insert(engine: AsyncEngine, table: Any, *rows: dict[str, Any]) -> None:
    async with engine.begin() as conn:
        await conn.execute(table.insert(), list(rows))


def job(status: str, available_at: datetime) -> dict[str, Any]:
    return {
        "id": _id(),
        "job": "notify",
        "payload": {},
        "status": status,
        "attempts": 0,
        "created_at": available_at,
        "available_at": available_at,
    }


async def seed(engine: AsyncEngine) -> None:
    await insert(
        engine,
        t.outbox,
        job("pending", NOW - timedelta(seconds=40)),  # due for 40 s: the oldest
        job("pending", NOW - timedelta(seconds=5)),
        job("pending", NOW + timedelta(minutes=5)),  # a retry later: not due yet
        job("dispatched", NOW),
        job("running", NOW),
        job("failed", NOW),
        *(job("done", NOW) for _ in range(3)),  # never counted
    )
    org_id = _id()
    await insert(
        engine,
        t.organizations,
        {"id": org_id, "name": "Acme", "created_at": NOW},
    )
    await insert(
        engine,
        t.webhook_deliveries,
        *(
            {
                "id": _id(),
                "org_id": org_id,
                "idempotency_key": f"key-{n}",
                "event_type": "Issue Hook",
                "status": status,
                "received_at": NOW,
                "payload_hash": "0" * 64,
            }
            for n, status in enumerate(["received", "received", "failed", "processed"])
        ),
    )
    notification_id = _id()
    await insert(
        engine,
        t.notifications,
        {
            "id": notification_id,
            "event_key": "k1",
            "event_type": "task.assigned",
            "org_id": org_id,
            "title": "t",
            "body": "b",
            "url": "/",
            "urgency": "normal",
            "created_at": NOW,
        },
    )
    await insert(
        engine,
        t.push_deliveries,
        *(
            {
                "id": _id(),
                "notification_id": notification_id,
                "subscription_id": _id(),
                "status": status,
                "attempts": 0,
                "next_attempt_at": NOW,
            }
            for status in ["pending", "sent", "gone", "failed", "failed"]
        ),
    )
    await insert(
        engine,
        t.worker_heartbeats,
        *(
            {
                "worker_id": f"w{n}",
                "hostname": "h",
                "pid": n,
                "started_at": NOW - timedelta(hours=1),
                "last_seen_at": NOW - age,
            }
            for n, age in enumerate(
                [timedelta(seconds=1), timedelta(seconds=30), timedelta(hours=1)]
            )
        ),
    )


async def test_an_empty_database_has_an_empty_backlog(engine: AsyncEngine) -> None:
    backlog = await read_backlog(engine, NOW, ALIVE_AFTER)

    assert backlog.outbox == {"pending": 0, "dispatched": 0, "running": 0, "failed": 0}
    assert backlog.oldest_due_seconds == 0
    assert backlog.webhook_deliveries == {"received": 0, "failed": 0}
    assert backlog.push_deliveries == {"pending": 0, "failed": 0}
    assert backlog.workers_alive == 0


async def test_the_backlog_counts_waiting_work_by_status(engine: AsyncEngine) -> None:
    await seed(engine)

    backlog = await read_backlog(engine, NOW, ALIVE_AFTER)

    assert backlog.outbox == {"pending": 3, "dispatched": 1, "running": 1, "failed": 1}
    assert backlog.oldest_due_seconds == pytest.approx(40)
    assert backlog.webhook_deliveries == {"received": 2, "failed": 1}
    assert backlog.push_deliveries == {"pending": 1, "failed": 2}
    assert backlog.workers_alive == 2  # the one silent for an hour is not alive


async def test_counts_stop_at_the_cap(engine: AsyncEngine) -> None:
    await seed(engine)

    backlog = await read_backlog(engine, NOW, ALIVE_AFTER, cap=2)

    assert backlog.outbox["pending"] == 2
    assert backlog.push_deliveries["failed"] == 2
    assert backlog.outbox["failed"] == 1
    assert backlog.cap == 2
