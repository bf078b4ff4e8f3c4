"""PostgreSQL units of work on psycopg directly, with SQLAlchemy as the SQL compiler only.

Why: on the benchmark machine a statement through SQLAlchemy's async layer costs ~136 µs
of CPU and a pool checkout ~41 µs; the same statement on a psycopg connection costs
~50 µs and a checkout from the pool below a few µs (``python -m bench.db_costs``). A link read
is three statements and a webhook five, so that layer was most of a request's CPU.

What stays SQLAlchemy's: every statement is still a Core construct (``tables.py``, the
repositories), compiled by SQLAlchemy's PostgreSQL compiler into its statement cache,
with SQLAlchemy's own bind and result processors applied (``UTCDateTime``, JSON). The
repositories therefore run unchanged on this connection and on SQLAlchemy's (SQLite, and
the operator commands), and the integration tests run them on both.

What this module does instead of SQLAlchemy's execution layer: it sends the compiled SQL
with psycopg, builds light rows (a named tuple per statement shape, with ``_mapping``),
and raises psycopg's errors as SQLAlchemy's (``IntegrityError``, ``OperationalError``),
so callers see the same exceptions on both backends.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque, namedtuple
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

import msgspec
import psycopg
import psycopg.types.json
import sqlalchemy as sa
from psycopg.pq import TransactionStatus
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.sql import ClauseElement
from sqlalchemy.util import LRUCache

log = logging.getLogger("viarah.db")

#: A pooled connection idle longer than this is pinged before it is handed out (a dead
#: one, after a PostgreSQL restart, is replaced instead of failing a request).
PING_IDLE_AFTER_SECONDS = 2.0
#: Compiled statement shapes kept (each repository statement is one or a few shapes).
STATEMENT_CACHE_SIZE = 500
#: How long a unit of work waits for a free connection before answering "unavailable".
CHECKOUT_TIMEOUT_SECONDS = 5.0


class NativePool:
    """Up to ``size`` psycopg connections, opened on demand and kept (no connect/close
    churn under load; SQLAlchemy's overflow connections were opened and closed by the
    thousand in a busy minute). No background task: nothing outlives the event loop,
    and after :meth:`close` the pool starts afresh on its next use."""

    def __init__(self, engine: AsyncEngine, size: int) -> None:
        args, kwargs = engine.dialect.create_connect_args(engine.url)
        self._conninfo = " ".join(str(arg) for arg in args)
        self._kwargs = {**kwargs, "connect_timeout": 5}
        self._size = size
        self.dialect: Dialect = engine.dialect
        self.statements = StatementCache(engine.dialect)
        self._idle: deque[tuple[psycopg.AsyncConnection[Any], float]] = deque()
        self._slots = asyncio.Semaphore(size)

    async def _connect(self) -> psycopg.AsyncConnection[Any]:
        conn = await psycopg.AsyncConnection.connect(self._conninfo, **self._kwargs)
        # msgspec decodes json/jsonb at a fraction of json.loads' cost.
        psycopg.types.json.set_json_loads(msgspec.json.decode, context=conn)
        return conn

    async def _usable(self, conn: psycopg.AsyncConnection[Any], idle_since: float) -> bool:
        if conn.closed or conn.broken:
            return False
        if time.monotonic() - idle_since < PING_IDLE_AFTER_SECONDS:
            return True
        try:  # an empty query, outside a transaction: one round trip, nothing to parse
            await conn.set_autocommit(True)
            await conn.execute("")
            await conn.set_autocommit(False)
        except psycopg.Error:
            await conn.close()
            return False
        return True

    async def acquire(self, *, autocommit: bool = False) -> psycopg.AsyncConnection[Any]:
        """A connection, in a transaction from its first statement unless ``autocommit``
        (each statement on its own: one round trip per read, no ``BEGIN``/``ROLLBACK``)."""
        if self._slots.locked():
            await asyncio.wait_for(self._slots.acquire(), CHECKOUT_TIMEOUT_SECONDS)
        else:
            await self._slots.acquire()
        try:
            conn = None
            while self._idle:
                candidate, idle_since = self._idle.pop()  # the most recently used
                if await self._usable(candidate, idle_since):
                    conn = candidate
                    break
            if conn is None:
                conn = await self._connect()
            if autocommit:
                await conn.set_autocommit(True)
        except BaseException:
            self._slots.release()
            raise
        return conn

    async def release(self, conn: psycopg.AsyncConnection[Any]) -> None:
        """Back to the pool: an open transaction is rolled back, autocommit switched off;
        a broken connection is closed instead."""
        try:
            if not conn.closed and not conn.broken:
                if conn.info.transaction_status is not TransactionStatus.IDLE:
                    await conn.rollback()
                if conn.autocommit:
                    await conn.set_autocommit(False)
                self._idle.append((conn, time.monotonic()))
                return
        except psycopg.Error:
            log.debug("db.reset_failed", exc_info=True)
        finally:
            self._slots.release()
        await conn.close()

    @asynccontextmanager
    async def statement(self) -> AsyncIterator[NativeConnection]:
        """A connection for statements that each commit on their own (autocommit)."""
        raw = await self.acquire(autocommit=True)
        try:
            yield NativeConnection(raw, self)
        finally:
            await self.release(raw)

    async def close(self) -> None:
        """Close the idle connections (those in use close when they come back broken,
        or are kept: call this once nothing runs)."""
        idle, self._idle = self._idle, deque()
        self._slots = asyncio.Semaphore(self._size)
        for conn, _ in idle:
            await conn.close()


def native_pool_for(engine: AsyncEngine, size: int) -> NativePool | None:
    """The native pool for a PostgreSQL engine; None for SQLite."""
    return NativePool(engine, size) if engine.dialect.name == "postgresql" else None


class Prepared:
    """One compiled statement shape: its SQL, its processors and its row type."""

    __slots__ = (
        "_text_rows",
        "bind_processors",
        "compiled",
        "escaped",
        "processed_columns",
        "result_processors",
        "row_type",
        "sql",
    )

    def __init__(self, compiled: Any, dialect: Dialect) -> None:
        self.compiled = compiled
        self.sql: str = compiled.string
        self.bind_processors: Mapping[str, Callable[[Any], Any]] = compiled._bind_processors
        self.escaped: Mapping[str, str] = compiled.escaped_bind_names or {}
        columns = compiled._result_columns or []
        self.row_type: type[tuple[Any, ...]] | None = (
            _row_type([c.keyname for c in columns]) if columns else None
        )
        self.result_processors: list[Callable[[Any], Any] | None] = [
            c.type._cached_result_processor(dialect, None) for c in columns
        ]
        #: (index, processor) of the columns that have a result processor.
        self.processed_columns = tuple(
            (index, process)
            for index, process in enumerate(self.result_processors)
            if process is not None
        )
        self._text_rows: tuple[tuple[str, ...], type[tuple[Any, ...]]] | None = None
        if compiled.insert_prefetch or compiled.update_prefetch:
            raise NotImplementedError("Python-side column defaults are not supported here")

    def text_row_type(self, description: Sequence[Any]) -> type[tuple[Any, ...]]:
        """The row type of a textual statement, named as the driver describes it."""
        names = tuple(column.name for column in description)
        if self._text_rows is None or self._text_rows[0] != names:
            self._text_rows = (names, _row_type(names))
        return self._text_rows[1]


def _row_type(names: Sequence[str]) -> type[tuple[Any, ...]]:
    base = namedtuple("Row", names, rename=True)  # type: ignore[misc]

    class Row(base):
        """A result row: attributes by column name, indexes, and ``_mapping``."""

        __slots__ = ()

        @property
        def _mapping(self) -> dict[str, Any]:
            return dict(zip(names, self, strict=True))

    return Row


class StatementCache:
    """SQLAlchemy's compiler and statement cache, keyed as SQLAlchemy keys them."""

    def __init__(self, dialect: Dialect) -> None:
        self._dialect = dialect
        self._compiled: LRUCache[Any, Any] = LRUCache(STATEMENT_CACHE_SIZE)
        self._prepared: dict[int, Prepared] = {}

    def prepare(
        self, statement: ClauseElement, params: Sequence[Mapping[str, Any]]
    ) -> tuple[Prepared, list[dict[str, Any]], str]:
        """The statement's shape and the driver's parameters (one dict per execution)."""
        keys = sorted(params[0]) if params else []
        compiled: Any
        compiled, extracted, collected, _ = statement._compile_w_cache(
            dialect=self._dialect,
            compiled_cache=self._compiled,
            column_keys=keys,
            for_executemany=len(params) > 1,
            linting=0,
        )
        prepared = self._prepared.get(id(compiled))
        if prepared is None or prepared.compiled is not compiled:
            prepared = Prepared(compiled, self._dialect)
            if len(self._prepared) > 2 * STATEMENT_CACHE_SIZE:
                self._prepared.clear()
            self._prepared[id(compiled)] = prepared
        one_each: Sequence[Mapping[str, Any] | None] = params or (None,)
        constructed: list[dict[str, Any]] = [
            compiled.construct_params(
                one,
                escape_names=False,
                _group_number=group,
                extracted_parameters=extracted,
                _collected_params=collected,
            )
            for group, one in enumerate(one_each)
        ]
        sql = prepared.sql
        processors = prepared.bind_processors
        if compiled.literal_execute_params or compiled.post_compile_params:
            if len(constructed) > 1:
                raise sa.exc.InvalidRequestError("expanding parameters with executemany")
            expanded = compiled._process_parameters_for_postcompile(constructed[0])
            sql = expanded.statement
            processors = {**processors, **expanded.processors}
        escaped = prepared.escaped
        driver = [
            {
                escaped.get(key, key): (processors[key](value) if key in processors else value)
                for key, value in values.items()
            }
            for values in constructed
        ]
        return prepared, driver, sql


class NativeResult:
    """The part of SQLAlchemy's ``CursorResult`` the repositories use."""

    __slots__ = ("_rows", "rowcount")

    def __init__(self, rows: list[Any], rowcount: int) -> None:
        self._rows = rows
        self.rowcount = rowcount

    def first(self) -> Any:
        return self._rows[0] if self._rows else None

    def all(self) -> list[Any]:
        return self._rows

    def one(self) -> Any:
        if len(self._rows) != 1:
            raise sa.exc.NoResultFound() if not self._rows else sa.exc.MultipleResultsFound()
        return self._rows[0]

    def scalar(self) -> Any:
        return self._rows[0][0] if self._rows else None

    def scalar_one(self) -> Any:
        return self.one()[0]

    def scalars(self) -> NativeResult:
        return NativeResult([row[0] for row in self._rows], self.rowcount)

    def __iter__(self) -> Any:
        return iter(self._rows)


def _as_sqlalchemy_error(exc: psycopg.Error, sql: str, params: Any) -> sa.exc.DBAPIError:
    """psycopg's error as the SQLAlchemy exception the same failure raises there."""
    error = sa.exc.DBAPIError.instance(
        sql,
        params,
        exc,
        psycopg.Error,
        hide_parameters=True,
        connection_invalidated=isinstance(exc, psycopg.OperationalError),
    )
    assert isinstance(error, sa.exc.DBAPIError)
    return error


class NativeConnection:
    """Runs SQLAlchemy Core statements on one psycopg connection (one unit of work)."""

    def __init__(self, raw: psycopg.AsyncConnection[Any], pool: NativePool) -> None:
        self.raw = raw
        self.dialect = pool.dialect
        self._statements = pool.statements
        self._savepoints = 0

    async def execute(
        self,
        statement: ClauseElement,
        parameters: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
    ) -> NativeResult:
        params: Sequence[Mapping[str, Any]]
        if parameters is None:
            params = []
        elif isinstance(parameters, Mapping):
            params = [parameters]
        else:
            params = parameters
        prepared, driver, sql = self._statements.prepare(statement, params)
        try:
            async with self.raw.cursor() as cursor:
                if len(driver) > 1:
                    await cursor.executemany(sql, driver)
                    return NativeResult([], cursor.rowcount)
                await cursor.execute(sql, driver[0] if driver else None)
                result = cursor.pgresult  # not .description: it builds column objects
                if result is None or not result.nfields:
                    return NativeResult([], cursor.rowcount)
                rows = await cursor.fetchall()
                return NativeResult(self._rows(prepared, cursor, rows), cursor.rowcount)
        except psycopg.Error as exc:
            raise _as_sqlalchemy_error(exc, sql, driver) from exc

    @staticmethod
    def _rows(prepared: Prepared, cursor: Any, rows: list[Any]) -> list[Any]:
        row_type = prepared.row_type
        if row_type is None:  # text(): names from the driver, values as they come
            row_type = prepared.text_row_type(cursor.description)
            return [row_type(*row) for row in rows]
        processed = prepared.processed_columns
        if not processed:
            return [row_type(*row) for row in rows]
        typed = []
        for row in rows:
            values = list(row)
            for index, process in processed:
                value = values[index]
                if value is not None:
                    values[index] = process(value)
            typed.append(row_type(*values))
        return typed

    async def exec_driver_sql(self, sql: str) -> None:
        try:
            await self.raw.execute(sql)
        except psycopg.Error as exc:
            raise _as_sqlalchemy_error(exc, sql, None) from exc

    @asynccontextmanager
    async def begin_nested(self) -> AsyncIterator[None]:
        """A savepoint: rolled back to (and the error re-raised) when the block fails."""
        self._savepoints += 1
        name = f"viarah_sp_{self._savepoints}"
        await self.exec_driver_sql(f"SAVEPOINT {name}")
        try:
            yield
        except BaseException:
            await self.exec_driver_sql(f"ROLLBACK TO SAVEPOINT {name}")
            raise
        await self.exec_driver_sql(f"RELEASE SAVEPOINT {name}")
