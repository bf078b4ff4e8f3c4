"""Shared fixtures: real PostgreSQL, SQLite and Redis for integration and system tests.

Outside CI a missing service skips the tests that need it (the README's quick start works
on a laptop with nothing installed); with ``CI`` set, a missing service FAILS them.
Override the targets with VIARAH_TEST_POSTGRES (an admin URL) and VIARAH_TEST_REDIS.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

IN_CI = bool(os.environ.get("CI"))
POSTGRES_ADMIN_URL = os.environ.get(
    "VIARAH_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("VIARAH_TEST_REDIS", "redis://127.0.0.1:6379/15")
TEMPLATE_DB = f"viarah_tpl_{os.getpid()}"


def unavailable(service: str, why: str) -> None:
    """Skip locally, fail under CI: CI must run every integration test."""
    message = f"{service} is not reachable ({why})"
    if IN_CI:
        pytest.fail(f"{message}; CI requires it", pytrace=False)
    pytest.skip(message)


def base_env(**overrides: str) -> dict[str, str]:
    """A complete, valid environment for load_settings()."""
    env = {
        "VIA_RAH_SECRET_KEY": "test-secret-key-0123456789abcdef",
        "VIA_RAH_DEBUG": "0",
        "ALLOWED_HOSTS": "testserver,localhost,127.0.0.1",
        "WORKER_HEARTBEAT_SECONDS": "1",
    }
    env.update(overrides)
    return env


def _pg_url(database: str) -> str:
    return POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + "/" + database


def _admin_execute(*statements: str) -> None:
    import psycopg

    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True, connect_timeout=3) as conn:
        for statement in statements:
            conn.execute(statement)


@pytest.fixture(scope="session")
def postgres_template() -> Iterator[str]:
    """A migrated template database; each test copies it (fast) instead of migrating."""
    try:
        _admin_execute(
            f'DROP DATABASE IF EXISTS "{TEMPLATE_DB}"', f'CREATE DATABASE "{TEMPLATE_DB}"'
        )
    except Exception as exc:
        unavailable("PostgreSQL", f"{POSTGRES_ADMIN_URL}: {type(exc).__name__}: {exc}")
    from viarah.adapters.db import migrate

    migrate.upgrade(_pg_url(TEMPLATE_DB))
    yield TEMPLATE_DB
    _admin_execute(f'DROP DATABASE IF EXISTS "{TEMPLATE_DB}" WITH (FORCE)')


@pytest.fixture
def postgres_url(postgres_template: str) -> Iterator[str]:
    """A fresh, migrated PostgreSQL database for one test (dropped afterwards)."""
    name = f"viarah_t_{uuid.uuid4().hex[:12]}"
    _admin_execute(f'CREATE DATABASE "{name}" TEMPLATE "{postgres_template}"')
    yield _pg_url(name)
    _admin_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def empty_postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database with no schema (migration tests)."""
    name = f"viarah_e_{uuid.uuid4().hex[:12]}"
    try:
        _admin_execute(f'CREATE DATABASE "{name}"')
    except Exception as exc:
        unavailable("PostgreSQL", f"{POSTGRES_ADMIN_URL}: {type(exc).__name__}: {exc}")
    yield _pg_url(name)
    _admin_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A migrated SQLite database file for one test."""
    from viarah.adapters.db import migrate

    url = f"sqlite:///{tmp_path / 'viarah.sqlite3'}"
    migrate.upgrade(url)
    return url


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest) -> str:
    """Runs the test once on SQLite and once on PostgreSQL."""
    if request.param == "sqlite":
        return str(request.getfixturevalue("sqlite_url"))
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def redis_url() -> str:
    """The test Redis database, flushed before the test."""
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        client.flushdb()
    except Exception as exc:
        unavailable("Redis", f"{REDIS_URL}: {type(exc).__name__}")
    finally:
        client.close()
    return REDIS_URL
