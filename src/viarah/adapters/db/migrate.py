"""Schema migrations (alembic), packaged with the app and run through ``viarah migrate``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from viarah.adapters.db.engine import create_sync_engine

MIGRATIONS = Path(__file__).with_name("migrations")


@dataclass(frozen=True, slots=True)
class MigrationState:
    current: str | None
    head: str
    pending: list[str]

    @property
    def up_to_date(self) -> bool:
        return not self.pending


def _config(connection: sa.Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def state(database_url: str) -> MigrationState:
    """Where the database stands compared with the code's migrations."""
    script = ScriptDirectory.from_config(_config())
    head = script.get_current_head()
    assert head is not None
    engine = create_sync_engine(database_url)
    try:
        with engine.connect() as conn:
            current = MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()
    pending = [
        rev.revision
        for rev in reversed(list(script.walk_revisions(base="base", head="heads")))
        if current is None or not _is_applied(script, rev.revision, current)
    ]
    return MigrationState(current=current, head=head, pending=pending)


def _is_applied(script: ScriptDirectory, revision: str, current: str) -> bool:
    return revision == current or revision in {
        r.revision for r in script.iterate_revisions(current, "base")
    }


def known_revision(revision: str | None) -> bool:
    """True when the code knows ``revision`` (a newer database would not be)."""
    if revision is None:
        return True
    script = ScriptDirectory.from_config(_config())
    try:
        return script.get_revision(revision) is not None
    except Exception:
        return False


def _run(database_url: str, action: str, target: str) -> None:
    engine = create_sync_engine(database_url)
    try:
        with engine.begin() as conn:
            config = _config(conn)
            if action == "upgrade":
                command.upgrade(config, target)
            else:
                command.downgrade(config, target)
    finally:
        engine.dispose()


def upgrade(database_url: str, target: str = "head") -> None:
    """Apply every pending migration; a database at head is left untouched."""
    _run(database_url, "upgrade", target)


def downgrade(database_url: str, target: str) -> None:
    _run(database_url, "downgrade", target)
