"""What every repository shares: the unit of work's connection and a few row helpers."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from viarah.adapters.db import tables as t
from viarah.domain.shared.errors import Conflict
from viarah.domain.shared.ids import new_id
from viarah.domain.shared.jobs import Job

_o = t.outbox.c
#: The columns a new job fills in.
OUTBOX_COLUMNS = (
    "id",
    "job",
    "payload",
    "status",
    "attempts",
    "created_at",
    "available_at",
    "coalesce_key",
)


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
        "coalesce_key": job.coalesce_key,
    }


def insert_coalesced_job(prefix: str = "", source: sa.FromClause | None = None) -> sa.Insert:
    """``INSERT INTO outbox … SELECT :<prefix><column>… [FROM source] WHERE NOT EXISTS (a
    pending job with the same coalesce key)``: a job with a key that is already pending
    adds nothing (one with no key is always added). ``source`` (a CTE) makes the insert
    depend on its rows: one job per row, none when it has none."""
    params = {name: sa.bindparam(f"{prefix}{name}", type_=_o[name].type) for name in OUTBOX_COLUMNS}
    # psycopg's dialect casts every typed parameter (``%(payload)s::JSON``), which the
    # select list of an INSERT … SELECT needs.
    values = sa.select(*params.values())
    if source is not None:
        values = values.select_from(source)
    # The status as a literal: it matches the partial index's predicate in every plan.
    pending = sa.exists().where(
        _o.coalesce_key == params["coalesce_key"], _o.status == sa.literal_column("'pending'")
    )
    return t.outbox.insert().from_select(OUTBOX_COLUMNS, values.where(~pending))


#: One job, unless its coalesce key is pending already (see :func:`insert_coalesced_job`).
INSERT_JOB = insert_coalesced_job()


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
