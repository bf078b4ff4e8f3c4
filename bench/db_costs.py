"""What one database round trip costs a ViaRah process on this machine.

    python -m bench.db_costs [--postgres-admin-url URL] [--n 2000]

Against PostgreSQL (the server's ``postgres`` database, read-only queries), in this
process: CPU and wall time per operation for psycopg's sync and async connections, a
SQLAlchemy statement on ViaRah's engine, a unit-of-work-shaped transaction (checkout,
``BEGIN``, statement, ``ROLLBACK``), a Core ``select`` built per call, and the pool's
checkout with ``pool_pre_ping`` against ViaRah's idle-only ping; then the same through
ViaRah's native PostgreSQL path (``viarah.adapters.db.native``).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from bench.stack import os_environ_admin_url
from viarah.adapters.db.engine import async_url, create_engine
from viarah.adapters.db.native import NativePool


async def _measure(name: str, op: Callable[[], Awaitable[object]], n: int) -> None:
    for _ in range(min(200, n)):
        await op()
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(n):
        await op()
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    print(f"{name:58s} {cpu / n * 1e6:7.0f} µs CPU  {wall / n * 1e6:7.0f} µs wall", flush=True)


_PG_CLASS = sa.table("pg_class", sa.column("oid"), sa.column("relname"), sa.column("relkind"))


def _built_select(execute: Callable[[Any], Awaitable[Any]]) -> Callable[[], Awaitable[object]]:
    """A Core select with two conditions, built anew on every call, run by ``execute``."""

    async def op() -> object:
        query = sa.select(_PG_CLASS.c.oid, _PG_CLASS.c.relname).where(
            _PG_CLASS.c.relname == "pg_class", _PG_CLASS.c.relkind == "r"
        )
        return (await execute(query)).first()

    return op


async def _run(url: str, n: int) -> None:
    sync = psycopg.connect(url, autocommit=True)
    aconn = await psycopg.AsyncConnection.connect(url, autocommit=True)

    async def sync_select() -> object:
        return sync.execute("SELECT 1").fetchone()

    async def async_select() -> object:
        return await (await aconn.execute("SELECT 1")).fetchone()

    await _measure("psycopg sync: SELECT 1", sync_select, n)
    await _measure("psycopg async: SELECT 1", async_select, n)
    sync.close()
    await aconn.close()

    engine: AsyncEngine = create_engine(url)
    pre_ping = create_async_engine(
        async_url(url), pool_size=10, max_overflow=10, pool_pre_ping=True, pool_timeout=5
    )
    one = sa.text("SELECT 1")
    conn = await engine.connect()
    await conn.begin()

    async def sa_statement() -> object:
        return (await conn.execute(one)).first()

    await _measure("SQLAlchemy: SELECT 1 in an open transaction", sa_statement, n)
    await _measure(
        "SQLAlchemy: Core select built per call, 2 conditions", _built_select(conn.execute), n
    )
    await conn.rollback()
    await conn.close()

    def unit_of_work(eng: AsyncEngine) -> Callable[[], Awaitable[object]]:
        async def op() -> object:
            async with eng.connect() as c:
                await c.begin()
                row = (await c.execute(one)).first()
                await c.rollback()
            return row

        return op

    await _measure("unit of work: checkout, BEGIN, SELECT 1, ROLLBACK", unit_of_work(engine), n)
    await _measure("  the same with pool_pre_ping=True", unit_of_work(pre_ping), n)

    native = NativePool(engine, size=4)

    async def native_checkout() -> object:
        async with native.statement() as statement:
            return (await statement.execute(one)).first()

    await _measure("native pool: checkout (autocommit), SELECT 1, release", native_checkout, n)
    async with native.statement() as held:
        await _measure(
            "native connection: Core select built per call", _built_select(held.execute), n
        )
    await native.close()
    await engine.dispose()
    await pre_ping.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.db_costs")
    parser.add_argument("--postgres-admin-url", default=os_environ_admin_url())
    parser.add_argument("--n", type=int, default=2000)
    args = parser.parse_args()
    asyncio.run(_run(args.postgres_admin_url, args.n))


if __name__ == "__main__":
    main()
