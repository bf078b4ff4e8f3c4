"""What every repository shares: the unit of work's connection and a few row helpers."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from viarah.domain.shared.errors import Conflict
from viarah.domain.shared.ids import new_id
from viarah.domain.shared.jobs import Job


def outbox_row(job: Job, now: datetime) -> dict[str, Any]:
    """The ``outbox`` row of a job committed at ``now``."""
    return {
        "id": new_id(),
        "job": job.name,
        "payload": job.payload,
        "status": "pending",
        "attempts": 0,
        "created_at": now,
        "available_at": job.not_before or now,
    }


class SqlRepository:
    """Base of the repositories: one connection, insert-or-Conflict and row helpers."""

    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def _insert(self, table: sa.Table, values: dict[str, Any], conflict: str) -> None:
        try:
            async with self._conn.begin_nested():
                await self._conn.execute(table.insert().values(**values))
        except IntegrityError:
            raise Conflict(conflict) from None

    async def _one(self, query: sa.Select[Any]) -> sa.Row[Any] | None:
        row: sa.Row[Any] | None = (await self._conn.execute(query)).first()
        return row

    async def _all(self, query: sa.Select[Any]) -> list[sa.Row[Any]]:
        return list((await self._conn.execute(query)).all())
