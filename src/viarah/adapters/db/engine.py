"""Async engines for PostgreSQL (psycopg) and SQLite (aiosqlite)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import msgspec
import psycopg.types.json
import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine


def async_url(database_url: str) -> str:
    """The async-driver form of a settings URL (``sqlite:///`` → ``sqlite+aiosqlite:///``)."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        return str(url.set(drivername="sqlite+aiosqlite"))
    return url.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)


def sync_url(database_url: str) -> str:
    """The blocking-driver form, for alembic and operator commands."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        return str(url.set(drivername="sqlite"))
    return url.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)


def ensure_sqlite_directory(database_url: str) -> None:
    """Create the directory of an SQLite file so that a first start just works."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # Let SQLAlchemy's "begin" event issue BEGIN itself (pysqlite would otherwise defer it
    # to the first write, so reads before a write would not be in the transaction).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


#: Execution option of a connection that only reads (see :func:`read_only_options`).
READ_ONLY = "viarah_read_only"


def _sqlite_begin(conn: sa.Connection) -> None:
    # IMMEDIATE takes the write lock up front: transactions that read-then-write (the
    # last-admin rule, job claims) are serialised instead of racing. busy_timeout makes
    # the others wait rather than fail. Fine for the embedded single-node database.
    # A read-only connection takes no lock: WAL readers never wait for the writer.
    read_only = conn.get_execution_options().get(READ_ONLY, False)
    conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


def read_only_options(engine: AsyncEngine) -> dict[str, Any]:
    """Execution options for a connection that only reads.

    PostgreSQL: autocommit, so that a read costs one round trip (no ``BEGIN`` and
    ``ROLLBACK`` around it); each statement sees the data committed when it starts.
    SQLite: a deferred transaction instead of ``BEGIN IMMEDIATE``, so that readers do not
    queue behind the writer.
    """
    if engine.dialect.name == "postgresql":
        return {"isolation_level": "AUTOCOMMIT", READ_ONLY: True}
    return {READ_ONLY: True}


def _configure_sqlite(engine: sa.Engine) -> None:
    sa.event.listen(engine, "connect", _sqlite_pragmas)
    sa.event.listen(engine, "begin", _sqlite_begin)


#: A pooled connection that sat idle longer than this is pinged before it is handed out.
PING_IDLE_AFTER_SECONDS = 2.0


def _ping_idle_connections(engine: sa.Engine) -> None:
    """Pessimistic disconnect handling that costs nothing under load.

    ``pool_pre_ping`` pings on EVERY checkout: one extra round trip per unit of work (a
    quarter of /healthz, an eighth of a webhook). Here only a connection idle for more
    than :data:`PING_IDLE_AFTER_SECONDS` is pinged; a dead one (PostgreSQL restarted, a
    firewall dropped it) is replaced before use, as with ``pool_pre_ping``. A connection
    that dies while in steady use fails its statement instead; SQLAlchemy then invalidates
    the whole pool, so the next checkouts reconnect.
    """
    dialect = engine.dialect

    def checked_in(_dbapi_connection: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    def checked_out(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        idle_since = record.info.pop("idle_since", None)
        if idle_since is None or time.monotonic() - idle_since < PING_IDLE_AFTER_SECONDS:
            return
        try:
            alive = dialect.do_ping(dbapi_connection)
        except Exception as exc:
            raise sa.exc.DisconnectionError(f"ping failed: {type(exc).__name__}") from exc
        if not alive:
            raise sa.exc.DisconnectionError("ping failed")

    sa.event.listen(engine.pool, "checkin", checked_in)
    sa.event.listen(engine.pool, "checkout", checked_out)


def _decode_json_with_msgspec(_dbapi_connection: Any, _record: Any) -> None:
    # psycopg decodes json/jsonb with json.loads; msgspec's decoder gives the same values
    # at a fraction of the cost (a task's link list decodes two documents per link).
    psycopg.types.json.set_json_loads(
        msgspec.json.decode, context=_dbapi_connection.driver_connection
    )


def create_engine(database_url: str, *, pool_size: int = 10) -> AsyncEngine:
    """An async engine with sane timeouts; SQLite gets WAL and foreign keys on."""
    url = async_url(database_url)
    if url.startswith("sqlite"):
        ensure_sqlite_directory(database_url)
        engine = create_async_engine(url, connect_args={"timeout": 10}, hide_parameters=True)
        _configure_sqlite(engine.sync_engine)
        return engine
    engine = create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=0,
        pool_timeout=5,
        connect_args={"connect_timeout": 5},
        hide_parameters=True,
    )
    _ping_idle_connections(engine.sync_engine)
    sa.event.listen(engine.sync_engine, "connect", _decode_json_with_msgspec)
    return engine


def create_sync_engine(database_url: str) -> sa.Engine:
    url = sync_url(database_url)
    if url.startswith("sqlite"):
        ensure_sqlite_directory(database_url)
        engine = sa.create_engine(url, hide_parameters=True)
        _configure_sqlite(engine)
        return engine
    return sa.create_engine(
        url, connect_args={"connect_timeout": 5}, pool_pre_ping=True, hide_parameters=True
    )
