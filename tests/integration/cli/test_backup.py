"""``viarah db backup`` and ``viarah db restore`` on real PostgreSQL databases, in-process.

The test server trusts local connections, so URLs carry a password that is never needed
but must never be printed either.
"""

from __future__ import annotations

import asyncio
import stat
import subprocess
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.conftest import base_env
from tests.integration.cli.helpers import run
from viarah.adapters.db import migrate
from viarah.container import build_container, close_container, migration_state
from viarah.domain.shared.actor import Actor
from viarah.settings import load_settings

pytestmark = [pytest.mark.postgres]

PASSWORD = "s3cret-pw"
Snapshot = dict[str, list[tuple[str, ...]]]


def with_password(url: str) -> str:
    """``postgresql://postgres@host/db`` → ``postgresql://postgres:s3cret-pw@host/db``."""
    scheme, rest = url.split("://", 1)
    user, host = rest.split("@", 1)
    return f"{scheme}://{user}:{PASSWORD}@{host}"


def _seed(database_url: str) -> None:
    """Two orgs, three users, four memberships."""

    async def seed() -> None:
        container = build_container(load_settings(base_env(DATABASE_URL=database_url)))
        try:
            users = container.users()
            admin = await users.create("admin@example.com", "correct horse")
            await users.create("pm@example.com", "correct horse")
            await users.create("dev@example.com", "correct horse")
            actor = Actor(user_id=admin.id)
            for name in ("Acme", "Globex"):
                org = (await container.organizations().create(actor, name)).org
                await container.memberships().add(actor, org.id, "pm@example.com", "pm")
            await container.projects().create(actor, org.id, "App")
        finally:
            await close_container(container)

    asyncio.run(seed())


def _snapshot(database_url: str) -> Snapshot:
    """Ids (and a few columns) of users, orgs, memberships and projects, sorted."""
    queries = {
        "users": "SELECT id, email, password_hash FROM users",
        "organizations": "SELECT id, name FROM organizations",
        "memberships": "SELECT id, org_id, user_id, role FROM memberships",
        "projects": "SELECT id, org_id, name FROM projects",
    }
    engine = sa.create_engine(database_url.replace("postgresql://", "postgresql+psycopg://"))
    try:
        with engine.connect() as conn:
            return {
                table: sorted(tuple(str(v) for v in row) for row in conn.execute(sa.text(sql)))
                for table, sql in queries.items()
            }
    finally:
        engine.dispose()


def _tables(database_url: str) -> list[str]:
    engine = sa.create_engine(database_url.replace("postgresql://", "postgresql+psycopg://"))
    try:
        return sorted(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()


def _backup(
    env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], database_url: str, target: Path
) -> Path:
    env.setenv("DATABASE_URL", with_password(database_url))
    code, out, err = run(capsys, "db", "backup", "--output", str(target))
    assert code == 0, err
    assert f"backup written: {target}" in out
    assert PASSWORD not in out + err
    return target


def run_backup_default(
    env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], database_url: str
) -> tuple[int, str, str]:
    env.setenv("DATABASE_URL", with_password(database_url))
    return run(capsys, "db", "backup")


def test_backup_writes_one_file_with_its_manifest(
    env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], postgres_url: str, tmp_path: Path
) -> None:
    _seed(postgres_url)
    code, out, err = run_backup_default(env, capsys, postgres_url)
    assert code == 0, err
    written = list(tmp_path.glob("viarah-backup-*Z.sql"))
    assert len(written) == 1, list(tmp_path.iterdir())
    dump = written[0]
    assert f"backup written: {dump.name} (" in out
    assert "keys are NOT in the backup" in out
    assert err.startswith("backing up PostgreSQL 127.0.0.1:5432/")
    assert stat.S_IMODE(dump.stat().st_mode) == 0o600  # it holds password hashes
    head = dump.read_text().splitlines()[:14]
    assert head[0] == "-- ViaRah database backup (plain SQL from pg_dump)."
    revision = migration_state(postgres_url).head
    assert f"-- viarah-migration-revision: {revision}" in head
    assert "-- viarah-app-version: 0.1.0" in head
    assert "-- viarah-encryption-keys-included: no" in head
    assert any(line.startswith("-- viarah-postgres-server-version: 15") for line in head)
    assert any(line.startswith("-- viarah-created-at: 20") for line in head)
    assert any("ENCRYPTION KEYS ARE NOT INCLUDED" in line for line in head)
    assert not list(tmp_path.glob(".*partial"))
    assert PASSWORD not in out + err

    code, _, err = run(capsys, "db", "backup", "--output", str(dump))
    assert code == 1
    assert "already exists" in err

    (tmp_path / "backups").mkdir()
    code, out, err = run(capsys, "db", "backup", "--output", "backups")
    assert code == 0, err
    assert len(list((tmp_path / "backups").glob("viarah-backup-*Z.sql"))) == 1


def test_restore_into_an_empty_database_gives_back_the_same_rows(
    env: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    postgres_url: str,
    empty_postgres_url: str,
    tmp_path: Path,
) -> None:
    _seed(postgres_url)
    before = _snapshot(postgres_url)
    dump = _backup(env, capsys, postgres_url, tmp_path / "acme.sql")

    env.setenv("DATABASE_URL", with_password(empty_postgres_url))
    code, out, err = run(capsys, "db", "restore", str(dump))
    assert code == 0, err
    assert "by ViaRah 0.1.0 at migration revision" in out
    assert "restored:" in out
    assert "up to date:" in out
    assert "viarah doctor secrets" in out
    assert PASSWORD not in out + err
    after = _snapshot(empty_postgres_url)
    counts = {table: len(rows) for table, rows in after.items()}
    print(f"restored rows: {counts}")
    assert counts == {"users": 3, "organizations": 2, "memberships": 4, "projects": 1}
    assert after == before
    assert _tables(empty_postgres_url) == _tables(postgres_url)

    code, out, _ = run(capsys, "migrate", "--check")
    assert code == 0
    assert "up to date" in out


def test_restore_into_a_database_with_tables_needs_yes(
    env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], postgres_url: str, tmp_path: Path
) -> None:
    _seed(postgres_url)
    before = _snapshot(postgres_url)
    dump = _backup(env, capsys, postgres_url, tmp_path / "acme.sql")

    code, out, err = run(capsys, "db", "restore", str(dump))
    assert code == 1
    assert "is not empty" in err
    assert "--yes" in err
    assert "restored" not in out

    code, out, err = run(capsys, "db", "restore", str(dump), "--yes")
    assert code == 0, err
    assert "--yes: dropping the public schema" in out
    assert _snapshot(postgres_url) == before
    assert PASSWORD not in out + err


def test_a_failed_restore_changes_nothing(
    env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], postgres_url: str, tmp_path: Path
) -> None:
    _seed(postgres_url)
    before = _snapshot(postgres_url)
    good = _backup(env, capsys, postgres_url, tmp_path / "acme.sql").read_text()
    broken = tmp_path / "broken.sql"
    cut = good.index("COPY public.users")
    broken.write_text(good[:cut] + "SELECT no_such_function();\n" + good[cut:])

    code, _, err = run(capsys, "db", "restore", str(broken), "--yes")
    assert code == 1
    assert "psql failed, nothing was restored" in err
    assert "no_such_function" in err
    assert _snapshot(postgres_url) == before  # the schema drop was rolled back too


def test_a_backup_from_a_newer_release_is_refused(
    env: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    postgres_url: str,
    empty_postgres_url: str,
    tmp_path: Path,
) -> None:
    dump = _backup(env, capsys, postgres_url, tmp_path / "now.sql")
    head = migration_state(postgres_url).head
    future = tmp_path / "future.sql"
    future.write_text(
        dump.read_text().replace(
            f"-- viarah-migration-revision: {head}", "-- viarah-migration-revision: 0099_future"
        )
    )
    env.setenv("DATABASE_URL", empty_postgres_url)
    code, _, err = run(capsys, "db", "restore", str(future), "--yes")
    assert code == 1
    assert err.strip() == (
        "viarah: this backup was made by a newer ViaRah (revision 0099_future); "
        "upgrade ViaRah first"
    )
    assert _tables(empty_postgres_url) == []


def test_an_older_backup_is_migrated_after_restore(
    env: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    empty_postgres_url: str,
    tmp_path: Path,
) -> None:
    source = empty_postgres_url
    migrate.upgrade(source, "0001_initial")
    dump = _backup(env, capsys, source, tmp_path / "old.sql")
    assert "-- viarah-migration-revision: 0001_initial" in dump.read_text()
    subprocess.run(
        [
            "psql",
            "-X",
            "-q",
            "-d",
            source,
            "-c",
            "DROP SCHEMA public CASCADE; CREATE SCHEMA public",
        ],
        check=True,
        capture_output=True,
    )
    code, out, err = run(capsys, "db", "restore", str(dump))
    assert code == 0, err
    head = migration_state(source).head
    assert "the backup is at revision 0001_initial, older than this code" in out
    assert f"migrated: PostgreSQL 127.0.0.1:5432/{source.rsplit('/', 1)[1]}" in out
    assert migration_state(source).current == head


def test_a_plain_pg_dump_without_manifest_is_restored(
    env: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    postgres_url: str,
    empty_postgres_url: str,
    tmp_path: Path,
) -> None:
    _seed(postgres_url)
    dump = tmp_path / "by-hand.sql"
    subprocess.run(
        ["pg_dump", "--no-owner", "--no-privileges", "-f", str(dump), "-d", postgres_url],
        check=True,
    )
    env.setenv("DATABASE_URL", empty_postgres_url)
    code, out, err = run(capsys, "db", "restore", str(dump))
    assert code == 0, err
    head = migration_state(postgres_url).head
    assert f"without a ViaRah manifest; its migration revision is {head}" in out
    assert _snapshot(empty_postgres_url) == _snapshot(postgres_url)


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (b"PGDMP\x01\x0e\x00", "is a pg_dump archive (-Fc); restore it with pg_restore"),
        (b"\x1f\x8b\x08\x00", "is gzip-compressed"),
        (b"-- viarah-manifest-format: 1\nCREATE TABLE t (x int);\n", "is the file truncated?"),
    ],
)
def test_files_that_are_not_complete_backups_are_refused(
    env: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    empty_postgres_url: str,
    tmp_path: Path,
    content: bytes,
    why: str,
) -> None:
    bad = tmp_path / "bad.sql"
    bad.write_bytes(content)
    env.setenv("DATABASE_URL", empty_postgres_url)
    code, _, err = run(capsys, "db", "restore", str(bad))
    assert code == 1
    assert why in err
    code, _, err = run(capsys, "db", "restore", str(tmp_path / "missing.sql"))
    assert code == 1
    assert "missing.sql: no such file" in err


def test_missing_client_tools_are_named_with_the_package_to_install(
    env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], postgres_url: str, tmp_path: Path
) -> None:
    dump = _backup(env, capsys, postgres_url, tmp_path / "ok.sql")
    env.setenv("PATH", "/nonexistent")
    code, _, err = run(capsys, "db", "backup", "--output", str(tmp_path / "x.sql"))
    assert code == 1
    assert (
        "viarah: pg_dump not found: install the PostgreSQL client tools (postgresql-client)"
        in err.splitlines()
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ok.sql"]

    code, _, err = run(capsys, "db", "restore", str(dump), "--yes")
    assert code == 1
    assert "viarah: psql not found: install the PostgreSQL client tools (postgresql-client)" in err


def test_a_failing_pg_dump_is_reported_without_the_password(
    env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], postgres_url: str, tmp_path: Path
) -> None:
    tools = tmp_path / "bin"
    tools.mkdir()
    fake = tools / "pg_dump"
    fake.write_text(
        "#!/bin/sh\n"
        'case "$*" in *--version*) echo "pg_dump (PostgreSQL) 15.0"; exit 0;; esac\n'
        "echo 'partial output'\n"
        'echo "pg_dump: error: query failed: password was $PGPASSWORD" >&2\n'
        "echo 'pg_dump: detail: second line' >&2\n"
        "exit 1\n"
    )
    fake.chmod(0o755)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    env.setenv("PATH", f"{tools}:/usr/bin:/bin")
    env.setenv("DATABASE_URL", with_password(postgres_url))
    code, out, err = run(capsys, "db", "backup", "--output", str(out_dir / "x.sql"))
    assert code == 1
    assert "viarah: pg_dump failed: pg_dump: error: query failed: password was ***" in err
    assert "second line" not in err
    assert PASSWORD not in out + err
    assert list(out_dir.iterdir()) == []  # no partial file left behind


def test_sqlite_is_refused_with_what_to_do_instead(
    env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], sqlite_url: str
) -> None:
    env.setenv("DATABASE_URL", sqlite_url)
    code, _, err = run(capsys, "db", "backup")
    assert code == 1
    assert "db backup works on PostgreSQL only" in err
    assert "viarah.sqlite3" in err
    code, _, err = run(capsys, "db", "restore", "x.sql")
    assert code == 1
    assert "db restore works on PostgreSQL only" in err
