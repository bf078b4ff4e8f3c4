"""The SQLAlchemy unit of work: one connection, one transaction, every repository."""

from __future__ import annotations

import logging
from types import TracebackType
from typing import Any, Self, cast

import psycopg
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from viarah.adapters.db import gitlab as g
from viarah.adapters.db import identity as i
from viarah.adapters.db import notifications as n
from viarah.adapters.db import orgs as o
from viarah.adapters.db import tables as t
from viarah.adapters.db.base import INSERT_JOB, outbox_row
from viarah.adapters.db.engine import read_only_options
from viarah.adapters.db.native import NativeConnection, NativePool
from viarah.domain.shared.clock import Clock
from viarah.domain.shared.errors import Unavailable
from viarah.domain.shared.jobs import Job

log = logging.getLogger("viarah.db")
DATABASE_UNAVAILABLE = "the database is unavailable; try again shortly"


def is_connection_error(exc: BaseException) -> bool:
    """True for errors that mean 'cannot talk to the database', not 'bad query'."""
    if isinstance(exc, OperationalError | InterfaceError):
        return True
    if isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError):
        return True
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    return isinstance(exc, ConnectionError | TimeoutError | OSError)


class SqlOutbox:
    """Collects jobs during the transaction; they are inserted just before commit."""

    def __init__(self) -> None:
        self.pending: list[Job] = []

    def add(self, job: Job) -> None:
        self.pending.append(job)


class SqlUnitOfWork:
    """Implements every context's UnitOfWork Protocol on one database transaction.

    On PostgreSQL (``native`` given) the transaction runs on a psycopg connection of the
    native pool (see ``native.py``); on SQLite on a SQLAlchemy connection. The
    repositories are the same code on both.
    """

    def __init__(
        self,
        engine: AsyncEngine,
        clock: Clock,
        native: NativePool | None = None,
    ) -> None:
        self._engine = engine
        self._clock = clock
        self._native = native
        self._conn: AsyncConnection | None = None
        self._raw: psycopg.AsyncConnection[Any] | None = None
        self._read_only = False
        self._single_write = False
        self.outbox = SqlOutbox()

    def single_write(self) -> Self:
        """Reads, then one atomic write: on PostgreSQL every statement runs on its own
        (autocommit: no ``BEGIN``/``COMMIT`` round trips); on SQLite an ordinary
        transaction. Call before ``async with``."""
        self._single_write = True
        return self

    def read_only(self) -> Self:
        """Only reads: no transaction on PostgreSQL (one round trip per read); commit()
        is refused. Call before ``async with``."""
        self._read_only = True
        return self

    async def __aenter__(self) -> Self:
        if self._native is not None:
            return await self._enter_native(self._native)
        try:
            self._conn = await self._engine.connect()
            if self._read_only:  # the first read begins (SQLite) or runs on its own (PG)
                await self._conn.execution_options(**read_only_options(self._engine))
            else:
                await self._conn.begin()
        except Exception as exc:
            if self._conn is not None:
                await self._conn.close()
                self._conn = None
            if is_connection_error(exc):
                log.error("db.unavailable error=%s", type(exc).__name__)
                raise Unavailable(DATABASE_UNAVAILABLE) from exc
            raise
        return self._with_repositories(self._conn)

    async def _enter_native(self, native: NativePool) -> Self:
        try:
            self._raw = await native.acquire(autocommit=self._read_only or self._single_write)
        except Exception as exc:
            if is_connection_error(exc):
                log.error("db.unavailable error=%s", type(exc).__name__)
                raise Unavailable(DATABASE_UNAVAILABLE) from exc
            raise
        # The repositories are typed against SQLAlchemy's connection; NativeConnection
        # implements the part of it they use (execute, begin_nested, dialect).
        return self._with_repositories(cast(AsyncConnection, NativeConnection(self._raw, native)))

    def _with_repositories(self, conn: AsyncConnection) -> Self:
        self._conn = conn
        self.users = i.SqlUserRepository(conn)
        self.sessions = i.SqlSessionRepository(conn)
        self.api_tokens = i.SqlApiTokenRepository(conn)
        self.orgs = o.SqlOrganizationRepository(conn)
        self.memberships = o.SqlMembershipRepository(conn)
        self.directory = o.SqlUserDirectory(conn)
        self.projects = o.SqlProjectRepository(conn)
        self.tasks = o.SqlTaskRepository(conn)
        self.gitlab_integrations = g.SqlIntegrationRepository(conn)
        self.gitlab_links = g.SqlLinkRepository(conn)
        self.webhook_deliveries = g.SqlDeliveryRepository(conn)
        self.audit = g.SqlAuditLog(conn)
        self.org_access = g.SqlOrgAccess(conn)
        self.push_subscriptions = n.SqlSubscriptionRepository(conn)
        self.preferences = n.SqlPreferenceRepository(conn)
        self.notifications = n.SqlNotificationRepository(conn)
        self.push_deliveries = n.SqlPushDeliveryRepository(conn)
        self.audience = n.SqlAudience(conn)
        self.outbox = SqlOutbox()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        raw, self._raw = self._raw, None
        if raw is not None:
            assert self._native is not None
            await self._native.release(raw)
            self._conn = None
            self._raise_unavailable_for(exc)
            return
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            if conn.in_transaction():
                await conn.rollback()
        except Exception:
            log.debug("db.rollback_failed", exc_info=True)
        finally:
            await conn.close()
        self._raise_unavailable_for(exc)

    @staticmethod
    def _raise_unavailable_for(exc: BaseException | None) -> None:
        if exc is not None and is_connection_error(exc):
            log.error("db.unavailable error=%s", type(exc).__name__)
            raise Unavailable(DATABASE_UNAVAILABLE) from exc

    async def commit(self) -> None:
        assert self._conn is not None, "commit outside 'async with'"
        assert not self._read_only, "commit in a read-only unit of work"
        jobs, self.outbox.pending = self.outbox.pending, []
        assert not (jobs and self._single_write), "a single write carries its own jobs"
        if jobs:
            now = self._clock.now()
            plain = [outbox_row(job, now) for job in jobs if job.coalesce_key is None]
            keyed = [outbox_row(job, now) for job in jobs if job.coalesce_key is not None]
            if plain:
                await self._conn.execute(t.outbox.insert(), plain)
            if keyed:
                await self._conn.execute(INSERT_JOB, keyed)
        if self._raw is not None:
            if not self._single_write:  # autocommit: each statement committed on its own
                await self._raw.commit()  # psycopg begins the next transaction itself
        else:
            await self._conn.commit()
            await self._conn.begin()

    async def rollback(self) -> None:
        assert self._conn is not None, "rollback outside 'async with'"
        self.outbox.pending = []
        if self._raw is not None:
            await self._raw.rollback()
        else:
            await self._conn.rollback()
            await self._conn.begin()
