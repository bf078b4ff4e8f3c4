"""What every ``viarah`` command shares: settings loading, failures, running with a container."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable, Collection
from pathlib import Path
from typing import TypeVar

from viarah.container import (
    Container,
    build_container,
    close_container,
    database_location,
    key_problems,
    migration_state,
)
from viarah.entrypoints.worker.status import configure_logging
from viarah.settings import EMBEDDED_DB_PATH, Settings, SettingsError, load_settings

T = TypeVar("T")


class CommandFailed(Exception):
    """An operator-facing failure: printed as ``viarah: <message>``, exit code 1."""


def err(line: str) -> None:
    """One line on stderr."""
    print(line, file=sys.stderr, flush=True)


def load(only: Collection[str] | None = None, *, settings: Settings | None = None) -> Settings:
    """Settings with their deprecation notices printed once.

    ``only`` limits validation to the variables a command uses (``viarah migrate`` does
    not need a secret key); None validates everything.
    """
    settings = load_settings() if settings is None else settings
    for notice in settings.notices:
        err(f"viarah: notice: {notice}")
    problems = [
        problem for problem in settings.problems if only is None or problem.split(":", 1)[0] in only
    ]
    if only is None:  # the long-running commands also refuse keys that do not parse
        problems += key_problems(settings)
    if problems:
        raise SettingsError(problems)
    # Long-running commands reconfigure at their level; one-shot ones stay quiet.
    configure_logging("DEBUG" if settings.log_level == "DEBUG" else "WARNING")
    return settings


def sqlite_path(database_url: str) -> Path | None:
    """The file of an SQLite URL (``sqlite:///path``), else None."""
    prefix = "sqlite:///"
    return Path(database_url[len(prefix) :]) if database_url.startswith(prefix) else None


def describe_database(settings: Settings) -> str:
    """``embedded SQLite ./var/viarah.sqlite3`` or ``PostgreSQL host:port/name``."""
    path = sqlite_path(settings.database_url)
    if path is not None and path == EMBEDDED_DB_PATH:
        return f"embedded SQLite ./{EMBEDDED_DB_PATH}"
    return database_location(settings.database_url)


def require_migrated(settings: Settings) -> None:
    """CommandFailed unless the database exists and is at the code's head revision."""
    path = sqlite_path(settings.database_url)
    if path is not None and not path.exists():
        raise CommandFailed(f"the database {path} does not exist yet; run `viarah migrate` first")
    state = migration_state(settings.database_url)
    if state.pending:
        raise CommandFailed(
            f"the database has {len(state.pending)} pending migration(s); "
            "run `viarah migrate` first"
        )


def with_container(settings: Settings, use: Callable[[Container], Awaitable[T]]) -> T:
    """Run ``use(container)`` in a fresh event loop, closing the container afterwards."""

    async def run() -> T:
        container = build_container(settings)
        try:
            return await use(container)
        finally:
            await close_container(container)

    return asyncio.run(run())
