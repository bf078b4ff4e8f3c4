"""Alembic environment: runs on the connection handed in by viarah.adapters.db.migrate."""

from __future__ import annotations

from alembic import context

from viarah.adapters.db.tables import metadata

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - always called through migrate.py
    raise RuntimeError("run migrations through 'viarah migrate'")

context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
