"""Push subscriptions, notification preferences, notifications and push deliveries.

Revision ID: 0003_notifications
Revises: 0002_gitlab
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_notifications"
down_revision = "0002_gitlab"
branch_labels = None
depends_on = None

Id = sa.String(36)


def ts(name: str, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "push_subscriptions",
        sa.Column("id", Id),
        sa.Column("user_id", Id, nullable=False),
        sa.Column("endpoint", sa.String(2048), nullable=False),
        sa.Column("endpoint_digest", sa.String(64), nullable=False),
        sa.Column("p256dh", sa.String(200), nullable=False),
        sa.Column("auth", sa.String(100), nullable=False),
        ts("expiration_time", nullable=True),
        sa.Column("user_agent", sa.String(500), nullable=True),
        ts("created_at"),
        ts("updated_at"),
        ts("last_success_at", nullable=True),
        ts("last_failure_at", nullable=True),
        sa.Column("last_failure_reason", sa.String(300), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_push_subscriptions"),
        sa.UniqueConstraint("endpoint_digest", name="uq_push_subscriptions_endpoint_digest"),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            ondelete="CASCADE",
            name="fk_push_subscriptions_user_id_users",
        ),
    )
    op.create_index("ix_push_subscriptions_user_id", "push_subscriptions", ["user_id"])
    op.create_table(
        "notification_preferences",
        sa.Column("user_id", Id, nullable=False),
        sa.Column("event_type", sa.String(100), nullable=False),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("enabled", sa.Boolean, nullable=False),
        sa.PrimaryKeyConstraint(
            "user_id", "event_type", "channel", name="pk_notification_preferences"
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            ondelete="CASCADE",
            name="fk_notification_preferences_user_id_users",
        ),
    )
    op.create_table(
        "notifications",
        sa.Column("id", Id),
        sa.Column("event_key", sa.String(100), nullable=False),
        sa.Column("event_type", sa.String(100), nullable=False),
        sa.Column("org_id", Id, nullable=False),
        sa.Column("task_id", Id, nullable=True),
        sa.Column("title", sa.String(500), nullable=False),
        sa.Column("body", sa.String(2000), nullable=False),
        sa.Column("url", sa.String(2048), nullable=False),
        sa.Column("topic", sa.String(32), nullable=True),
        sa.Column("urgency", sa.String(16), nullable=False),
        ts("created_at"),
        sa.PrimaryKeyConstraint("id", name="pk_notifications"),
        sa.UniqueConstraint("event_key", name="uq_notifications_event_key"),
    )
    op.create_table(
        "push_deliveries",
        sa.Column("id", Id),
        sa.Column("notification_id", Id, nullable=False),
        sa.Column("subscription_id", Id, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        ts("next_attempt_at"),
        sa.Column("last_status", sa.Integer, nullable=True),
        sa.Column("last_error", sa.String(300), nullable=True),
        ts("sent_at", nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_push_deliveries"),
        sa.UniqueConstraint("notification_id", "subscription_id", name="uq_push_deliveries_pair"),
        sa.ForeignKeyConstraint(
            ["notification_id"],
            ["notifications.id"],
            ondelete="CASCADE",
            name="fk_push_deliveries_notification_id_notifications",
        ),
    )
    op.create_index(
        "ix_push_deliveries_due",
        "push_deliveries",
        ["notification_id", "status", "next_attempt_at"],
    )


def downgrade() -> None:
    op.drop_table("push_deliveries")
    op.drop_table("notifications")
    op.drop_table("notification_preferences")
    op.drop_table("push_subscriptions")
