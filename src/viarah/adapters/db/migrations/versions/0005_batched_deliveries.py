"""Webhook deliveries are processed in batches: a coalescing key on outbox jobs and an
index of the deliveries still waiting.

- ``outbox.coalesce_key``: a job added while another with the same key is still pending
  is not added (one "process this organization's deliveries" job serves a whole burst).
  Looked up among pending jobs only, through a partial index.
- ``ix_webhook_deliveries_received``: the worker takes the oldest waiting deliveries of an
  organization, and the sweep finds deliveries left waiting, without reading the
  processed ones (the table keeps every delivery).

Revision ID: 0005_batched_deliveries
Revises: 0004_outbox_due_indexes
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_batched_deliveries"
down_revision = "0004_outbox_due_indexes"
branch_labels = None
depends_on = None

PENDING = sa.text("status = 'pending'")
RECEIVED = sa.text("status = 'received'")


def upgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.add_column(sa.Column("coalesce_key", sa.String(200), nullable=True))
    op.create_index(
        "ix_outbox_pending_coalesce_key",
        "outbox",
        ["coalesce_key"],
        postgresql_where=PENDING,
        sqlite_where=PENDING,
    )
    op.create_index(
        "ix_webhook_deliveries_received",
        "webhook_deliveries",
        ["org_id", "received_at", "id"],
        postgresql_where=RECEIVED,
        sqlite_where=RECEIVED,
    )


def downgrade() -> None:
    op.drop_index("ix_webhook_deliveries_received", table_name="webhook_deliveries")
    op.drop_index("ix_outbox_pending_coalesce_key", table_name="outbox")
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("coalesce_key")
