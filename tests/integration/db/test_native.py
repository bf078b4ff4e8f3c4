"""PostgreSQL's native units of work: SQLAlchemy Core statements run on psycopg must give
what SQLAlchemy's own execution gives (rows, types, errors), and the pool must behave
as the engine's did (transactions, autocommit reads, reuse after close, dead connections)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from viarah.adapters.db import tables as t
from viarah.adapters.db.engine import create_engine
from viarah.adapters.db.native import NativePool, native_pool_for
from viarah.adapters.db.uow import SqlUnitOfWork
from viarah.domain.identity.model import User
from viarah.domain.shared.actor import PlatformRole
from viarah.domain.shared.clock import SystemClock
from viarah.domain.shared.errors import Conflict, Unavailable
from viarah.domain.shared.ids import UserId, new_id

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


@pytest.fixture
async def engine(postgres_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(postgres_url)
    yield engine
    await engine.dispose()


@pytest.fixture
async def pool(engine: AsyncEngine) -> AsyncIterator[NativePool]:
    pool = native_pool_for(engine, size=2)
    assert pool is not None
    yield pool
    await pool.close()


def _user(email: str) -> dict[str, Any]:
    return {
        "id": new_id(),
        "email": email,
        "display_name": "Ada",
        "password_hash": "x",
        "platform_role": "user",
        "is_active": True,
        "created_at": NOW,
    }


async def _both(engine: AsyncEngine, pool: NativePool, statement: Any, params: Any = None) -> Any:
    """The rows of ``statement`` through SQLAlchemy and through the native connection."""
    async with engine.connect() as conn:
        expected = (await conn.execute(statement, params)).all()
    async with pool.statement() as native:
        got = (await native.execute(statement, params)).all()
    return expected, got


async def test_no_native_pool_on_sqlite(sqlite_url: str) -> None:
    engine = create_engine(sqlite_url)
    try:
        assert native_pool_for(engine, size=2) is None
    finally:
        await engine.dispose()


async def test_rows_types_and_names_match_sqlalchemy(engine: AsyncEngine, pool: NativePool) -> None:
    async with engine.begin() as conn:
        await conn.execute(t.users.insert(), [_user("a@example.com"), _user("b@example.com")])
    users = t.users.c
    query = (
        sa.select(users.email, users.created_at, users.is_active, sa.func.count().over().label("n"))
        .where(users.email.in_(["a@example.com", "b@example.com", "z@example.com"]))
        .order_by(users.email)
    )
    expected, got = await _both(engine, pool, query)
    assert [tuple(row) for row in got] == [tuple(row) for row in expected]
    assert got[0].email == "a@example.com"
    assert got[0].created_at == NOW
    assert got[0].created_at.tzinfo is UTC  # UTCDateTime's result processor ran
    assert got[1]._mapping == {
        "email": "b@example.com",
        "created_at": NOW,
        "is_active": True,
        "n": 2,
    }
    # A literal in a cached statement shape takes this call's value, not the first one's.
    for email in ("a@example.com", "b@example.com"):
        async with pool.statement() as native:
            one = (await native.execute(sa.select(users.email).where(users.email == email))).one()
        assert one.email == email


async def test_json_binds_and_executemany(engine: AsyncEngine, pool: NativePool) -> None:
    jobs = [
        {
            "id": new_id(),
            "job": "test.job",
            "payload": {"n": n, "nested": {"x": [1, "two"]}},
            "status": "pending",
            "attempts": 0,
            "created_at": NOW,
            "available_at": NOW + timedelta(seconds=n),
        }
        for n in range(3)
    ]
    async with pool.statement() as native:
        result = await native.execute(t.outbox.insert(), jobs)
        assert result.rowcount == 3
    query = sa.select(t.outbox.c.payload, t.outbox.c.available_at).order_by(t.outbox.c.available_at)
    expected, got = await _both(engine, pool, query)
    assert [tuple(row) for row in got] == [tuple(row) for row in expected]
    assert got[2].payload == {"n": 2, "nested": {"x": [1, "two"]}}


async def test_errors_are_sqlalchemys_and_savepoints_keep_the_transaction(
    engine: AsyncEngine, pool: NativePool
) -> None:
    async with pool.statement() as native:
        await native.execute(t.users.insert(), _user("dup@example.com"))
        with pytest.raises(sa.exc.IntegrityError):
            await native.execute(t.users.insert(), _user("dup@example.com"))
    uow = SqlUnitOfWork(engine, SystemClock(), native=pool)
    async with uow:
        with pytest.raises(Conflict):  # the repository's savepoint path
            await uow.users.add(_domain_user("dup@example.com"))
        await uow.users.add(_domain_user("after@example.com"))  # the transaction lives on
        await uow.commit()
    async with engine.connect() as conn:
        emails = (await conn.execute(sa.select(t.users.c.email))).scalars().all()
    assert sorted(emails) == ["after@example.com", "dup@example.com"]


def _domain_user(email: str) -> User:
    return User(
        id=UserId(new_id()),
        email=email,
        display_name="Ada",
        password_hash="x",
        platform_role=PlatformRole.USER,
        is_active=True,
        created_at=NOW,
    )


async def test_unit_of_work_commits_rolls_back_and_reads_without_a_transaction(
    engine: AsyncEngine, pool: NativePool
) -> None:
    uow = SqlUnitOfWork(engine, SystemClock(), native=pool)
    async with uow:
        await uow.users.add(_domain_user("kept@example.com"))
        await uow.commit()
        await uow.users.add(_domain_user("dropped@example.com"))
        await uow.rollback()
        await uow.users.add(_domain_user("left@example.com"))  # never committed
    reader = SqlUnitOfWork(engine, SystemClock(), native=pool).read_only()
    async with reader:
        assert await reader.users.get_by_email("kept@example.com") is not None
        assert await reader.users.get_by_email("dropped@example.com") is None
        assert await reader.users.get_by_email("left@example.com") is None
        raw = reader._raw
        assert raw is not None
        assert raw.info.transaction_status is psycopg.pq.TransactionStatus.IDLE
        with pytest.raises(AssertionError):
            await reader.commit()
    # Back in the pool, connections are out of autocommit and out of any transaction.
    raw = await pool.acquire()
    try:
        assert raw.autocommit is False
        assert raw.info.transaction_status is psycopg.pq.TransactionStatus.IDLE
    finally:
        await pool.release(raw)


async def test_pool_is_reusable_after_close(pool: NativePool) -> None:
    async with pool.statement() as native:
        assert (await native.execute(sa.text("SELECT 1"))).scalar() == 1
    await pool.close()
    async with pool.statement() as native:
        assert (await native.execute(sa.text("SELECT 2"))).scalar() == 2


async def test_a_connection_killed_while_idle_is_replaced(
    engine: AsyncEngine, pool: NativePool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("viarah.adapters.db.native.PING_IDLE_AFTER_SECONDS", 0.0)
    pids = []
    for _ in range(2):  # both pooled connections
        async with pool.statement() as native:
            pids.append((await native.execute(sa.text("SELECT pg_backend_pid()"))).scalar())
    async with engine.connect() as conn:
        for pid in set(pids):
            await conn.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    for _ in range(3):
        async with pool.statement() as native:
            pid = (await native.execute(sa.text("SELECT pg_backend_pid()"))).scalar()
        assert pid not in pids


async def test_a_dead_database_is_unavailable_not_a_traceback(engine: AsyncEngine) -> None:
    dead = create_engine("postgresql://postgres@127.0.0.1:1/nothing")
    pool = native_pool_for(dead, size=1)
    assert pool is not None
    monkeypatch_timeout = pytest.MonkeyPatch()
    monkeypatch_timeout.setattr("viarah.adapters.db.native.CHECKOUT_TIMEOUT_SECONDS", 1.0)
    try:
        with pytest.raises(Unavailable):
            async with SqlUnitOfWork(dead, SystemClock(), native=pool) as uow:
                await uow.users.get_by_email("x@example.com")
    finally:
        monkeypatch_timeout.undo()
        await pool.close()
        await dead.dispose()
