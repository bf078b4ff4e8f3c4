"""PostgreSQL backups as one plain-SQL file: ``pg_dump`` out, ``psql`` back in.

The file opens with a manifest written as SQL comments (app version, migration revision,
server version, creation time), so a backup stays one file that plain ``psql -f`` can
also restore. The client tools get the password through ``PGPASSWORD``, never on their
command line (where ``ps`` would show it), and their error lines are shown with the
password masked.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO

import sqlalchemy as sa
from sqlalchemy.engine import URL, make_url

from viarah.adapters.db.engine import create_sync_engine
from viarah.domain.shared.errors import Conflict, Unavailable

MANIFEST_FORMAT = "1"
_MANIFEST_LINE = re.compile(r"^-- viarah-([a-z0-9-]+): (.*)$")
_DUMP_COMPLETE = b"-- PostgreSQL database dump complete"
_ALEMBIC_COPY = "COPY public.alembic_version (version_num) FROM stdin;"
_CHUNK = 1 << 20
_HEADER_LINES = 40  # the manifest is within the file's first lines
_TAIL_BYTES = 8192


@dataclass(frozen=True, slots=True)
class Manifest:
    """What a backup says about itself."""

    app_version: str
    revision: str | None
    server_version: str
    pg_dump_version: str
    created_at: str  # ISO 8601, UTC

    def header(self) -> str:
        """The leading SQL comment block of a backup file."""
        return "\n".join(
            [
                "-- ViaRah database backup (plain SQL from pg_dump).",
                "-- Restore with `viarah db restore FILE` (checks, migrates), or into an empty",
                "-- database with `psql --set ON_ERROR_STOP=1 --single-transaction -f FILE`.",
                "-- ENCRYPTION KEYS ARE NOT INCLUDED: VIA_RAH_ENCRYPTION_KEY, VIA_RAH_SECRET_KEY",
                "-- and the VAPID keys live only in .env. Keep a copy of it apart from this",
                "-- file: stored GitLab tokens cannot be decrypted without the same key.",
                f"-- viarah-manifest-format: {MANIFEST_FORMAT}",
                f"-- viarah-app-version: {self.app_version}",
                f"-- viarah-migration-revision: {self.revision or 'none'}",
                f"-- viarah-postgres-server-version: {self.server_version}",
                f"-- viarah-pg-dump-version: {self.pg_dump_version}",
                f"-- viarah-created-at: {self.created_at}",
                "-- viarah-encryption-keys-included: no",
                "",
                "",
            ]
        )


@dataclass(frozen=True, slots=True)
class BackupFile:
    """A backup that was written."""

    path: Path
    size: int
    manifest: Manifest


@dataclass(frozen=True, slots=True)
class BackupContents:
    """What a file offered for restore holds.

    ``manifest`` is None for a plain pg_dump made by hand; ``revision`` then comes from
    the dump's ``alembic_version`` data (None: the dumped database was never migrated).
    """

    path: Path
    size: int
    manifest: Manifest | None
    revision: str | None


Progress = Callable[[int], None]


# --- the client tools ------------------------------------------------------------------


def _tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise Unavailable(
            f"{name} not found: install the PostgreSQL client tools (postgresql-client)"
        )
    return found


def _postgres_url(database_url: str) -> URL:
    url = make_url(database_url)
    if url.get_backend_name() != "postgresql":
        raise Conflict("backup and restore work on PostgreSQL only")
    return url


def _conninfo(url: URL) -> str:
    """A libpq connection URI without the password (query options such as sslmode kept)."""
    return url.set(drivername="postgresql", password=None).render_as_string(hide_password=False)


def _client_env(url: URL) -> dict[str, str]:
    # The child inherits the environment (PATH, locale, PG* settings of the operator) plus
    # the password; an explicit one in DATABASE_URL wins over an inherited PGPASSWORD.
    env = dict(os.environ)
    if url.password is not None:
        env["PGPASSWORD"] = str(url.password)
    return env


def _first_error_line(url: URL, captured: IO[bytes], tool: str) -> str:
    captured.seek(0)
    lines = [line.strip() for line in captured.read().decode("utf-8", "replace").splitlines()]
    lines = [line for line in lines if line]
    errors = [line for line in lines if "ERROR" in line or "error:" in line or "FATAL" in line]
    line = (errors or lines or [f"{tool} exited without a message"])[0][:300]
    if url.password:
        line = line.replace(str(url.password), "***")
    return line


def _tool_version(binary: str) -> str:
    try:
        out = subprocess.run(
            [binary, "--version"], capture_output=True, text=True, timeout=10, check=False
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    match = re.search(r"\d+(?:\.\d+)+", out)
    return match.group(0) if match else "unknown"


# --- what the database holds ------------------------------------------------------------


def server_facts(database_url: str) -> tuple[str, str | None]:
    """The server's version and the database's migration revision (None: never migrated)."""
    engine = create_sync_engine(database_url)
    try:
        with engine.connect() as conn:
            version = str(conn.execute(sa.text("SHOW server_version")).scalar_one())
            has_table = conn.execute(
                sa.text("SELECT to_regclass('public.alembic_version') IS NOT NULL")
            ).scalar_one()
            revision = None
            if has_table:
                revision = conn.execute(
                    sa.text("SELECT version_num FROM public.alembic_version LIMIT 1")
                ).scalar_one_or_none()
    finally:
        engine.dispose()
    return version, None if revision is None else str(revision)


def public_relations(database_url: str) -> list[str]:
    """Tables, views and sequences in the public schema (an empty database has none)."""
    query = sa.text(
        "SELECT c.relname FROM pg_catalog.pg_class c "
        "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f') "
        "ORDER BY c.relkind <> 'r', c.relname"
    )
    engine = create_sync_engine(database_url)
    try:
        with engine.connect() as conn:
            return [str(name) for name in conn.execute(query).scalars()]
    finally:
        engine.dispose()


# --- backup ------------------------------------------------------------------------------


def write_backup(
    database_url: str,
    destination: Path,
    *,
    app_version: str,
    created_at: datetime,
    progress: Progress | None = None,
) -> BackupFile:
    """Dump the database into ``destination`` (created 0600, written atomically).

    Unavailable when pg_dump is missing, the database cannot be reached or pg_dump fails;
    a failed backup leaves no file behind.
    """
    url = _postgres_url(database_url)
    pg_dump = _tool("pg_dump")
    server_version, revision = server_facts(database_url)
    manifest = Manifest(
        app_version=app_version,
        revision=revision,
        server_version=server_version,
        pg_dump_version=_tool_version(pg_dump),
        created_at=created_at.isoformat().replace("+00:00", "Z"),
    )
    argv = [
        pg_dump,
        "--format=plain",
        "--no-owner",
        "--no-privileges",
        "--encoding=UTF8",
        "--dbname",
        _conninfo(url),
    ]
    # mkstemp creates the file with mode 0600: a backup holds password hashes.
    fd, partial = tempfile.mkstemp(
        prefix=f".{destination.name}.", suffix=".partial", dir=destination.parent
    )
    proc: subprocess.Popen[bytes] | None = None
    try:
        with os.fdopen(fd, "wb") as out, tempfile.TemporaryFile() as errors:
            header = manifest.header().encode()
            out.write(header)
            written = len(header)
            proc = subprocess.Popen(
                argv, stdout=subprocess.PIPE, stderr=errors, env=_client_env(url)
            )
            assert proc.stdout is not None
            while chunk := proc.stdout.read(_CHUNK):
                out.write(chunk)
                written += len(chunk)
                if progress is not None:
                    progress(written)
            if proc.wait() != 0:
                raise Unavailable(f"pg_dump failed: {_first_error_line(url, errors, 'pg_dump')}")
            out.flush()
            os.fsync(out.fileno())
        os.replace(partial, destination)
    except BaseException:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(partial)
        raise
    return BackupFile(destination, destination.stat().st_size, manifest)


# --- restore -----------------------------------------------------------------------------


def _leading_lines(path: Path) -> Iterator[str]:
    with path.open("r", encoding="utf-8", errors="replace") as handle:
        for _ in range(_HEADER_LINES):
            line = handle.readline()
            if not line:
                return
            yield line.rstrip("\r\n")


def _manifest(path: Path) -> Manifest | None:
    fields: dict[str, str] = {}
    for line in _leading_lines(path):
        if line and not line.startswith("--"):
            break
        match = _MANIFEST_LINE.match(line)
        if match:
            fields[match.group(1)] = match.group(2).strip()
    if "manifest-format" not in fields:
        return None
    revision = fields.get("migration-revision", "none")
    return Manifest(
        app_version=fields.get("app-version", "unknown"),
        revision=None if revision == "none" else revision,
        server_version=fields.get("postgres-server-version", "unknown"),
        pg_dump_version=fields.get("pg-dump-version", "unknown"),
        created_at=fields.get("created-at", "unknown"),
    )


def _dumped_revision(path: Path) -> str | None:
    """The row of ``alembic_version`` in a plain dump (None when there is none)."""
    with path.open("r", encoding="utf-8", errors="replace") as handle:
        for line in handle:
            if line.startswith(_ALEMBIC_COPY):
                row = handle.readline().strip()
                return None if row in ("", "\\.") else row
    return None


def read_backup(path: Path) -> BackupContents:
    """Check that ``path`` is a complete plain-SQL dump and read its manifest.

    Conflict (with what to do instead) for an archive, a compressed file, a truncated
    dump or a file that is no dump at all.
    """
    size = path.stat().st_size
    with path.open("rb") as handle:
        start = handle.read(5)
        handle.seek(max(0, size - _TAIL_BYTES))
        tail = handle.read()
    if start == b"PGDMP":
        raise Conflict(
            f"{path} is a pg_dump archive (-Fc); restore it with pg_restore, "
            "or make a plain-SQL backup with `viarah db backup`"
        )
    if start[:2] == b"\x1f\x8b":
        raise Conflict(f"{path} is gzip-compressed; decompress it first (gunzip -k {path})")
    if _DUMP_COMPLETE not in tail:
        raise Conflict(
            f"{path} is not a complete plain-SQL pg_dump (it does not end with "
            "'PostgreSQL database dump complete'): is the file truncated?"
        )
    manifest = _manifest(path)
    revision = manifest.revision if manifest is not None else _dumped_revision(path)
    return BackupContents(path=path, size=size, manifest=manifest, revision=revision)


def run_restore(database_url: str, path: Path, *, drop_existing: bool) -> None:
    """Load the dump with psql in one transaction: on any error nothing changes.

    With ``drop_existing`` the public schema is dropped and recreated first, in the same
    transaction.
    """
    url = _postgres_url(database_url)
    psql = _tool("psql")
    argv = [
        psql,
        "--no-psqlrc",
        "--quiet",
        "--set",
        "ON_ERROR_STOP=1",
        "--single-transaction",
        "--dbname",
        _conninfo(url),
        "-c",
        # A running web or worker holding locks makes the drop fail after a while
        # instead of waiting forever; the dump itself resets lock_timeout.
        "SET client_min_messages = warning; SET lock_timeout = '15s'",
    ]
    if drop_existing:
        argv += ["-c", "DROP SCHEMA IF EXISTS public CASCADE; CREATE SCHEMA public"]
    argv += ["-f", str(path)]
    with tempfile.TemporaryFile() as errors:
        # stdout only carries the rows of the dump's set_config() calls.
        code = subprocess.run(
            argv, stdout=subprocess.DEVNULL, stderr=errors, env=_client_env(url), check=False
        ).returncode
        if code != 0:
            why = _first_error_line(url, errors, "psql")
            if "lock timeout" in why:
                why += " (another connection holds a lock: stop `viarah web` and `viarah worker`)"
            raise Unavailable(f"psql failed, nothing was restored: {why}")
