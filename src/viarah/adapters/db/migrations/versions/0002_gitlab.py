"""GitLab integrations, task links, webhook deliveries and the audit log.

Revision ID: 0002_gitlab
Revises: 0001_initial
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_gitlab"
down_revision = "0001_initial"
branch_labels = None
depends_on = None

Id = sa.String(36)


def ts(name: str, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "gitlab_integrations",
        sa.Column("org_id", Id),
        sa.Column("base_url", sa.String(2048), nullable=False),
        sa.Column("token_ciphertext", sa.Text, nullable=True),
        ts("token_set_at", nullable=True),
        sa.Column("token_status", sa.String(16), nullable=False),
        sa.Column("token_scopes", sa.JSON, nullable=False),
        sa.Column("token_expires_at", sa.Date, nullable=True),
        sa.Column("token_expiry_warned_days", sa.Integer, nullable=True),
        sa.Column("webhook_secret_digest", sa.String(128), nullable=True),
        ts("webhook_secret_set_at", nullable=True),
        sa.Column("signing_token_ciphertext", sa.Text, nullable=True),
        ts("created_at"),
        ts("updated_at"),
        sa.PrimaryKeyConstraint("org_id", name="pk_gitlab_integrations"),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organizations.id"],
            ondelete="CASCADE",
            name="fk_gitlab_integrations_org_id_organizations",
        ),
    )
    op.create_table(
        "gitlab_links",
        sa.Column("id", Id),
        sa.Column("org_id", Id, nullable=False),
        sa.Column("task_id", Id, nullable=False),
        sa.Column("url", sa.String(2048), nullable=False),
        sa.Column("project_path", sa.String(500), nullable=False),
        sa.Column("project_key", sa.String(500), nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("iid", sa.Integer, nullable=False),
        sa.Column("cached_title", sa.Text, nullable=True),
        sa.Column("cached_state", sa.String(32), nullable=True),
        sa.Column("cached_labels", sa.JSON, nullable=False),
        sa.Column("cached_assignees", sa.JSON, nullable=False),
        ts("last_synced_at", nullable=True),
        sa.Column("error_code", sa.String(64), nullable=True),
        ts("rate_limited_until", nullable=True),
        ts("refresh_requested_at", nullable=True),
        ts("last_attempt_at", nullable=True),
        ts("created_at"),
        sa.PrimaryKeyConstraint("id", name="pk_gitlab_links"),
        sa.UniqueConstraint(
            "task_id", "project_key", "kind", "iid", name="uq_gitlab_links_task_object"
        ),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organizations.id"],
            ondelete="CASCADE",
            name="fk_gitlab_links_org_id_organizations",
        ),
        sa.ForeignKeyConstraint(
            ["task_id"], ["tasks.id"], ondelete="CASCADE", name="fk_gitlab_links_task_id_tasks"
        ),
    )
    op.create_index(
        "ix_gitlab_links_object", "gitlab_links", ["org_id", "project_key", "kind", "iid"]
    )
    op.create_index("ix_gitlab_links_task_id", "gitlab_links", ["task_id"])
    op.create_table(
        "webhook_deliveries",
        sa.Column("id", Id),
        sa.Column("org_id", Id, nullable=False),
        sa.Column("idempotency_key", sa.String(300), nullable=False),
        sa.Column("event_type", sa.String(100), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        ts("received_at"),
        ts("processed_at", nullable=True),
        sa.Column("error", sa.String(1000), nullable=True),
        sa.Column("payload_hash", sa.String(64), nullable=False),
        sa.Column("project_path", sa.String(500), nullable=True),
        sa.Column("kind", sa.String(8), nullable=True),
        sa.Column("iid", sa.Integer, nullable=True),
        sa.Column("action", sa.String(50), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_webhook_deliveries"),
        sa.UniqueConstraint("org_id", "idempotency_key", name="uq_webhook_deliveries_org_key"),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organizations.id"],
            ondelete="CASCADE",
            name="fk_webhook_deliveries_org_id_organizations",
        ),
    )
    op.create_index(
        "ix_webhook_deliveries_org_received",
        "webhook_deliveries",
        ["org_id", "received_at", "id"],
    )
    op.create_table(
        "audit_events",
        sa.Column("id", Id),
        sa.Column("org_id", Id, nullable=False),
        sa.Column("actor_user_id", Id, nullable=True),
        sa.Column("action", sa.String(100), nullable=False),
        sa.Column("details", sa.JSON, nullable=False),
        ts("created_at"),
        sa.PrimaryKeyConstraint("id", name="pk_audit_events"),
    )
    op.create_index("ix_audit_events_org_id", "audit_events", ["org_id"])


def downgrade() -> None:
    op.drop_table("audit_events")
    op.drop_table("webhook_deliveries")
    op.drop_table("gitlab_links")
    op.drop_table("gitlab_integrations")
