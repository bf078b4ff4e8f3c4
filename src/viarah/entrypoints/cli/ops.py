"""Operator commands around a running installation: ``db backup``, ``db restore``, ``smoke``."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from viarah.container import (
    backup_database,
    database_relations,
    migrate_database,
    migration_state,
    read_backup,
    restore_database,
    revision_known,
)
from viarah.domain.jobs.model import dead_worker_after
from viarah.domain.shared.errors import DomainError
from viarah.entrypoints.cli.common import (
    CommandFailed,
    describe_database,
    err,
    load,
    sqlite_path,
)
from viarah.settings import Settings

log = logging.getLogger("viarah.cli")

DATABASE_ONLY = ("DATABASE_URL",)
SMOKE_NEEDS = ("DATABASE_URL", "WORKER_HEARTBEAT_SECONDS")
DEFAULT_URL = "http://127.0.0.1:8000"
KEYS_REMINDER = (
    "keys: stored secrets decrypt only with the VIA_RAH_ENCRYPTION_KEY in use when the "
    "backup was made; `viarah doctor secrets` checks them"
)


def size_text(size: int) -> str:
    """``812 B``, ``52.1 KiB``, ``1.4 GiB``."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{size} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def _require_postgres(settings: Settings, action: str) -> None:
    path = sqlite_path(settings.database_url)
    if path is None:
        return
    shown = str(path) if path.is_absolute() else f"./{path}"
    if action == "backup":
        raise CommandFailed(
            f"db backup works on PostgreSQL only; the SQLite database is one file: "
            f"stop `viarah serve` and copy {shown} (with any {path.name}-wal file next to it)"
        )
    raise CommandFailed(
        f"db restore works on PostgreSQL only; to restore the SQLite database, "
        f"stop `viarah serve` and copy the saved file back to {shown}"
    )


class _DumpProgress:
    """Bytes written so far, redrawn on a terminal at most twice a second."""

    def __init__(self) -> None:
        self.shown = False
        self._last = 0.0
        self._tty = sys.stderr.isatty()

    def __call__(self, written: int) -> None:
        now = time.monotonic()
        if self._tty and now - self._last >= 0.5:
            self._last = now
            self.shown = True
            print(f"\rbackup: {size_text(written)} written", end="", file=sys.stderr, flush=True)

    def finish(self) -> None:
        if self.shown:
            print(file=sys.stderr, flush=True)


# --- viarah db backup ----------------------------------------------------------------------


def db_backup(args: argparse.Namespace) -> int:
    """``viarah db backup [--output FILE]``: pg_dump plus a manifest, as one SQL file."""
    settings = load(DATABASE_ONLY)
    _require_postgres(settings, "backup")
    default_name = f"viarah-backup-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.sql"
    destination = Path(args.output) if args.output else Path(default_name)
    if destination.is_dir():  # --output /backups: the default name in that directory
        destination = destination / default_name
    if destination.exists():
        raise CommandFailed(f"{destination} already exists; remove it or choose another --output")
    if not destination.parent.is_dir():
        raise CommandFailed(f"the directory {destination.parent} does not exist")
    err(f"backing up {describe_database(settings)} to {destination} ...")
    progress = _DumpProgress()
    try:
        written = backup_database(settings.database_url, destination, progress)
    finally:
        progress.finish()
    manifest = written.manifest
    print(
        f"backup written: {written.path} ({size_text(written.size)}; ViaRah "
        f"{manifest.app_version}, migration revision {manifest.revision or 'none'}, "
        f"PostgreSQL {manifest.server_version.split(' ', 1)[0]})"
    )
    print("keys are NOT in the backup: keep a copy of .env (VIA_RAH_ENCRYPTION_KEY) apart from it")
    return 0


# --- viarah db restore ---------------------------------------------------------------------


def _relations_text(relations: list[str]) -> str:
    shown = ", ".join(relations[:3])
    more = ", ..." if len(relations) > 3 else ""
    return f"{len(relations)} relation(s): {shown}{more}"


def db_restore(args: argparse.Namespace) -> int:
    """``viarah db restore FILE [--yes]``: into an empty database, then migrate if older."""
    settings = load(DATABASE_ONLY)
    _require_postgres(settings, "restore")
    path = Path(args.file)
    if not path.is_file():
        raise CommandFailed(f"{path}: no such file")
    where = describe_database(settings)
    contents = read_backup(path)
    manifest = contents.manifest
    revision = contents.revision
    if manifest is None:
        print(
            f"backup: {path} ({size_text(contents.size)}), a plain pg_dump without a ViaRah "
            f"manifest; its migration revision is {revision or 'none'}"
        )
    else:
        print(
            f"backup: {path} ({size_text(contents.size)}), made {manifest.created_at} by "
            f"ViaRah {manifest.app_version} at migration revision {revision or 'none'} "
            f"(PostgreSQL {manifest.server_version.split(' ', 1)[0]})"
        )
    if not revision_known(revision):
        raise CommandFailed(
            f"this backup was made by a newer ViaRah (revision {revision}); upgrade ViaRah first"
        )
    relations = database_relations(settings.database_url)
    if relations and not args.yes:
        raise CommandFailed(
            f"{where} is not empty ({_relations_text(relations)}); restore into an empty "
            "database, or pass --yes to drop everything in its public schema first"
        )
    if relations:
        print(
            f"--yes: dropping the public schema of {where} ({_relations_text(relations)}) "
            "and recreating it, in the same transaction as the restore"
        )
    err(f"restoring {path} into {where} ...")
    restore_database(settings.database_url, path, drop_existing=bool(relations))
    print(f"restored: {path} into {where}")
    state = migration_state(settings.database_url)
    if state.pending:
        print(
            f"the backup is at revision {state.current or 'none'}, older than this code "
            f"({state.head}): running `viarah migrate` ({len(state.pending)} migration(s))"
        )
        state = migrate_database(settings.database_url)
        print(f"migrated: {where} is at revision {state.current} (head)")
    else:
        print(f"up to date: {where} is at revision {state.current} (head)")
    print(KEYS_REMINDER)
    return 0


# --- viarah smoke --------------------------------------------------------------------------


class StepFailed(Exception):
    """A smoke step saw something wrong; the message says what."""


class StepSkipped(Exception):
    """A smoke step does not apply to this installation; the message says why."""


_TIMEOUT = httpx.Timeout(5.0, connect=3.0)


def smoke_url(text: str) -> str:
    """``--url``: an http(s) base URL (argparse type)."""
    url = text.rstrip("/")
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, ValueError):
        raise argparse.ArgumentTypeError(f"not a URL: {text!r}") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise argparse.ArgumentTypeError(f"must be an http:// or https:// URL, got {text!r}")
    return url


def _get(url: str) -> tuple[int, Any, str]:
    """GET ``url``: (status, parsed JSON or None, body text); StepFailed when no answer."""
    try:
        response = httpx.get(url, timeout=_TIMEOUT, follow_redirects=False)
    except httpx.ConnectError:
        raise StepFailed(f"cannot connect to {url} (is `viarah web` running there?)") from None
    except httpx.TimeoutException:
        raise StepFailed(f"no answer from {url} within {_TIMEOUT.read:.0f} s") from None
    except httpx.HTTPError as exc:
        raise StepFailed(f"{url}: {type(exc).__name__}: {exc}") from None
    body: Any
    try:
        body = response.json()
    except ValueError:
        body = None
    return response.status_code, body, response.text.strip()[:200]


def _check_healthz(base: str) -> str:
    status, body, text = _get(f"{base}/healthz")
    if status != 200 or body != {"status": "ok"}:
        raise StepFailed(f"HTTP {status} {text}")
    return f"HTTP 200 {json.dumps(body, separators=(',', ':'))}"


def _check_readyz(base: str, heartbeat_seconds: int) -> str:
    status, body, text = _get(f"{base}/readyz")
    if not isinstance(body, dict):
        raise StepFailed(f"HTTP {status} {text}")
    limit = dead_worker_after(heartbeat_seconds).total_seconds()
    problems: list[str] = []
    for part in ("database", "broker"):
        if body.get(part) != "ok":
            problems.append(f"{part} {body.get(part)!r}")
    worker = body.get("worker")
    age = worker.get("last_heartbeat_age_seconds") if isinstance(worker, dict) else None
    if not isinstance(age, int | float):
        problems.append("no worker has ever written a heartbeat (is `viarah worker` running?)")
        heartbeat = "none"
    else:
        heartbeat = f"{age:.1f} s ago"
        if age >= limit:
            problems.append(
                f"the last worker heartbeat is {age:.1f} s old, over the {limit:.0f} s limit "
                f"(3 x WORKER_HEARTBEAT_SECONDS={heartbeat_seconds}, plus 2 s): "
                "is `viarah worker` running?"
            )
    if status != 200:
        problems.insert(0, f"HTTP {status}")
    if problems:
        raise StepFailed("; ".join(problems))
    return f"HTTP 200, database ok, broker ok, worker heartbeat {heartbeat} (limit {limit:.0f} s)"


def _check_migrations(settings: Settings) -> str:
    where = describe_database(settings)
    path = sqlite_path(settings.database_url)
    if path is not None and not path.exists():
        raise StepFailed(f"the database {path} does not exist; run `viarah migrate`")
    try:
        state = migration_state(settings.database_url)
    except DomainError as exc:
        raise StepFailed(exc.message) from None
    if state.pending:
        raise StepFailed(
            f"{len(state.pending)} pending migration(s) on {where}; run `viarah migrate`"
        )
    return f"{where} is at revision {state.current} (head)"


def _check_backup(settings: Settings) -> str:
    if sqlite_path(settings.database_url) is not None:
        raise StepSkipped("SQLite")
    with tempfile.TemporaryDirectory(prefix="viarah-smoke-") as directory:
        target = Path(directory) / "smoke-backup.sql"
        try:
            written = backup_database(settings.database_url, target)
        except DomainError as exc:
            raise StepFailed(exc.message) from None
        if written.size <= len(written.manifest.header()):
            raise StepFailed(f"pg_dump wrote only {written.size} bytes")
        size = size_text(written.size)
    return f"pg_dump wrote {size} to a temporary file (deleted again)"


def smoke(args: argparse.Namespace) -> int:
    """``viarah smoke [--url U]``: the operator smoke checklist, one ✓/✗ line per step."""
    settings = load(SMOKE_NEEDS)
    base: str = args.url
    steps: list[tuple[str, Callable[[], str]]] = [
        ("healthz", lambda: _check_healthz(base)),
        ("readyz", lambda: _check_readyz(base, settings.worker_heartbeat_seconds)),
        ("migrations", lambda: _check_migrations(settings)),
        ("backup", lambda: _check_backup(settings)),
    ]
    failed = skipped = 0
    for name, check in steps:
        try:
            saw = check()
        except StepSkipped as why:
            skipped += 1
            print(f"- {name}: skipped ({why})", flush=True)
        except StepFailed as problem:
            failed += 1
            print(f"✗ {name}: {problem}", flush=True)
        except Exception as exc:  # one broken step must not hide the others
            failed += 1
            log.debug("smoke step %s failed", name, exc_info=True)
            print(f"✗ {name}: unexpected error ({type(exc).__name__})", flush=True)
        else:
            print(f"✓ {name}: {saw}", flush=True)
    if failed:
        raise CommandFailed(f"smoke: {failed} of {len(steps)} step(s) failed at {base}")
    passed = len(steps) - skipped
    print(f"smoke: {passed} step(s) passed" + (f", {skipped} skipped" if skipped else ""))
    return 0
