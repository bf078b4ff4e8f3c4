"""The backlog the metrics endpoint reports: cheap, bounded counts read in one round trip.

Every count is capped (``SELECT count(*) FROM (SELECT 1 ... LIMIT cap)``), so a huge
table costs at most ``cap`` rows per status; terminal success states (done jobs,
processed webhooks, sent pushes), which only grow, are not counted at all. On PostgreSQL
the statement also runs under a ``statement_timeout``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from viarah.adapters.db import tables as t
from viarah.domain.gitlab.model import DeliveryStatus
from viarah.domain.jobs.model import JobStatus
from viarah.domain.notifications.model import DeliveryState
from viarah.domain.shared.telemetry import Backlog

DEFAULT_CAP = 10_000
#: The server gives up on the statement after this long (PostgreSQL only).
STATEMENT_TIMEOUT_MS = 1000

OUTBOX_STATUSES = (
    JobStatus.PENDING.value,
    JobStatus.DISPATCHED.value,
    JobStatus.RUNNING.value,
    JobStatus.FAILED.value,
)
WEBHOOK_STATUSES = (DeliveryStatus.RECEIVED.value, DeliveryStatus.FAILED.value)
PUSH_STATUSES = (DeliveryState.PENDING.value, DeliveryState.FAILED.value)


def _capped(table: sa.Table, where: sa.ColumnElement[bool], cap: int) -> sa.ScalarSelect[int]:
    rows = sa.select(sa.literal(1).label("one")).select_from(table).where(where).limit(cap)
    return sa.select(sa.func.count()).select_from(rows.subquery()).scalar_subquery()


def _by_status(table: sa.Table, statuses: Sequence[str], cap: int) -> list[sa.ScalarSelect[int]]:
    return [_capped(table, table.c.status == status, cap) for status in statuses]


async def read_backlog(
    engine: AsyncEngine, now: datetime, alive_after: timedelta, cap: int = DEFAULT_CAP
) -> Backlog:
    """Outbox jobs, webhook and push deliveries by status (capped at ``cap``), the age of
    the oldest due job, and the workers that beat within ``alive_after`` of ``now``."""
    o = t.outbox.c
    oldest = (
        sa.select(sa.func.min(o.available_at))
        .where(o.status == JobStatus.PENDING.value, o.available_at <= now)
        .scalar_subquery()
    )
    hb = t.worker_heartbeats
    columns: list[sa.ColumnElement[Any]] = [
        *_by_status(t.outbox, OUTBOX_STATUSES, cap),
        *_by_status(t.webhook_deliveries, WEBHOOK_STATUSES, cap),
        *_by_status(t.push_deliveries, PUSH_STATUSES, cap),
        _capped(hb, hb.c.last_seen_at >= now - alive_after, cap),
        sa.type_coerce(oldest, t.UTCDateTime()),
    ]
    async with engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            await conn.execute(sa.text(f"SET LOCAL statement_timeout = {STATEMENT_TIMEOUT_MS}"))
        row = (await conn.execute(sa.select(*columns))).one()
    values = list(row)
    counts = [int(value) for value in values[:-1]]
    oldest_due: datetime | None = values[-1]
    outbox, counts = counts[: len(OUTBOX_STATUSES)], counts[len(OUTBOX_STATUSES) :]
    webhooks, counts = counts[: len(WEBHOOK_STATUSES)], counts[len(WEBHOOK_STATUSES) :]
    pushes, counts = counts[: len(PUSH_STATUSES)], counts[len(PUSH_STATUSES) :]
    return Backlog(
        outbox=dict(zip(OUTBOX_STATUSES, outbox, strict=True)),
        oldest_due_seconds=(
            0.0 if oldest_due is None else max(0.0, (now - oldest_due).total_seconds())
        ),
        webhook_deliveries=dict(zip(WEBHOOK_STATUSES, webhooks, strict=True)),
        push_deliveries=dict(zip(PUSH_STATUSES, pushes, strict=True)),
        workers_alive=counts[0],
        cap=cap,
    )
