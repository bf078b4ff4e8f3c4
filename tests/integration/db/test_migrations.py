"""The same alembic migrations on PostgreSQL and SQLite: idempotent, reversible, complete."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from viarah.adapters.db import migrate
from viarah.adapters.db.engine import create_sync_engine
from viarah.adapters.db.tables import metadata


@pytest.fixture(params=["sqlite", "postgres"])
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'fresh.sqlite3'}"
    return str(request.getfixturevalue("empty_postgres_url"))


def _tables(url: str) -> set[str]:
    engine = create_sync_engine(url)
    try:
        return set(sa.inspect(engine).get_table_names()) - {"alembic_version"}
    finally:
        engine.dispose()


def test_upgrade_downgrade_upgrade(empty_url: str) -> None:
    before = migrate.state(empty_url)
    assert before.current is None
    assert before.pending[-1] == before.head
    assert before.pending[0] == "0001_initial"

    migrate.upgrade(empty_url)
    assert migrate.state(empty_url).up_to_date
    assert _tables(empty_url) == set(metadata.tables)

    migrate.upgrade(empty_url)  # idempotent
    assert migrate.state(empty_url).current == before.head

    migrate.downgrade(empty_url, "base")
    assert _tables(empty_url) == set()
    assert not migrate.state(empty_url).up_to_date

    migrate.upgrade(empty_url)
    assert migrate.state(empty_url).up_to_date


def test_migrations_match_the_table_definitions(empty_url: str) -> None:
    """Nothing in tables.py is missing from the migrations (and vice versa)."""
    migrate.upgrade(empty_url)
    engine = create_sync_engine(empty_url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            diff = compare_metadata(context, metadata)
    finally:
        engine.dispose()
    assert diff == []


def test_every_migration_has_a_downgrade() -> None:
    for path in (migrate.MIGRATIONS / "versions").glob("*.py"):
        if path.name == "__init__.py":
            continue
        source = path.read_text()
        assert "def downgrade() -> None:" in source, path.name
        body = source.split("def downgrade() -> None:", 1)[1]
        assert body.strip() not in ("", "pass"), f"{path.name} has an empty downgrade"


def test_unknown_revision_is_detected() -> None:
    assert migrate.known_revision("0001_initial")
    assert not migrate.known_revision("9999_from_the_future")
    assert migrate.known_revision(None)


def _revisions() -> list[str]:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(migrate.MIGRATIONS))
    script = ScriptDirectory.from_config(config)
    return [rev.revision for rev in reversed(list(script.walk_revisions("base", "heads")))]


def test_data_survives_every_step_up_and_down(empty_url: str) -> None:
    """Rows written at the first revision survive each upgrade step to head and each
    downgrade step back to the first revision."""
    revisions = _revisions()
    migrate.upgrade(empty_url, revisions[0])
    engine = create_sync_engine(empty_url)
    seed = [
        "INSERT INTO users VALUES ('u1','ada@example.com','Ada','h','user',true,"
        "'2026-01-01 00:00:00+00')",
        "INSERT INTO organizations VALUES ('o1','Acme',NULL,'2026-01-01 00:00:00+00')",
        "INSERT INTO memberships VALUES ('m1','o1','u1','admin','2026-01-01 00:00:00+00')",
        "INSERT INTO projects VALUES ('p1','o1','P','2026-01-01 00:00:00+00')",
        "INSERT INTO tasks VALUES ('t1','o1','p1','T','todo','u1',"
        "'2026-01-01 00:00:00+00','2026-01-01 00:00:00+00')",
    ]
    counts = "SELECT (SELECT count(*) FROM users) + (SELECT count(*) FROM tasks)"
    try:
        with engine.begin() as conn:
            for statement in seed:
                conn.execute(sa.text(statement))
        for revision in revisions[1:]:
            migrate.upgrade(empty_url, revision)
            with engine.connect() as conn:
                assert conn.execute(sa.text(counts)).scalar() == 2, revision
        assert migrate.state(empty_url).up_to_date
        for revision in reversed(revisions[:-1]):
            migrate.downgrade(empty_url, revision)
            with engine.connect() as conn:
                assert conn.execute(sa.text(counts)).scalar() == 2, revision
        assert migrate.state(empty_url).current == revisions[0]
    finally:
        engine.dispose()
