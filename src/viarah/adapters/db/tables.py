"""Table definitions (SQLAlchemy Core). Migrations in ``migrations/`` create the same schema."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect


class UTCDateTime(sa.TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite stores them naive)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

Id = sa.String(36)

users = sa.Table(
    "users",
    metadata,
    sa.Column("id", Id, primary_key=True),
    sa.Column("email", sa.String(254), nullable=False, unique=True),
    sa.Column("display_name", sa.String(200), nullable=False),
    sa.Column("password_hash", sa.String(255), nullable=False),
    sa.Column("platform_role", sa.String(16), nullable=False),
    sa.Column("is_active", sa.Boolean, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
)

login_sessions = sa.Table(
    "login_sessions",
    metadata,
    sa.Column("id", Id, primary_key=True),
    sa.Column("token_digest", sa.String(64), nullable=False, unique=True),
    sa.Column(
        "user_id", Id, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True
    ),
    sa.Column("csrf_token", sa.String(64), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("expires_at", UTCDateTime, nullable=False, index=True),
)

api_tokens = sa.Table(
    "api_tokens",
    metadata,
    sa.Column("id", Id, primary_key=True),
    sa.Column(
        "user_id", Id, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True
    ),
    sa.Column("name", sa.String(100), nullable=False),
    sa.Column("prefix", sa.String(32), nullable=False, unique=True),
    sa.Column("secret_digest", sa.String(64), nullable=False),
    sa.Column("scope", sa.String(8), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("expires_at", UTCDateTime, nullable=True),
    sa.Column("revoked_at", UTCDateTime, nullable=True),
    sa.Column("last_used_at", UTCDateTime, nullable=True),
)

organizations = sa.Table(
    "organizations",
    metadata,
    sa.Column("id", Id, primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("logo_url", sa.String(2000), nullable=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
)

memberships = sa.Table(
    "memberships",
    metadata,
    sa.Column("id", Id, primary_key=True),
    sa.Column("org_id", Id, sa.ForeignKey("organizations.id", ondelete="CASCADE"), nullable=False),
    sa.Column(
        "user_id", Id, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True
    ),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.UniqueConstraint("org_id", "user_id", name="uq_memberships_org_user"),
)

projects = sa.Table(
    "projects",
    metadata,
    sa.Column("id", Id, primary_key=True),
    sa.Column(
        "org_id",
        Id,
        sa.ForeignKey("organizations.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
)

tasks = sa.Table(
    "tasks",
    metadata,
    sa.Column("id", Id, primary_key=True),
    sa.Column("org_id", Id, sa.ForeignKey("organizations.id", ondelete="CASCADE"), nullable=False),
    sa.Column(
        "project_id",
        Id,
        sa.ForeignKey("projects.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    sa.Column("title", sa.String(500), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column(
        "assignee_user_id", Id, sa.ForeignKey("users.id", ondelete="SET NULL"), nullable=True
    ),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
)

task_watchers = sa.Table(
    "task_watchers",
    metadata,
    sa.Column("task_id", Id, sa.ForeignKey("tasks.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("user_id", Id, sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
)

outbox = sa.Table(
    "outbox",
    metadata,
    sa.Column("id", Id, primary_key=True),
    sa.Column("job", sa.String(100), nullable=False),
    sa.Column("payload", sa.JSON, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("available_at", UTCDateTime, nullable=False),
    sa.Column("dispatched_at", UTCDateTime, nullable=True),
    sa.Column("locked_until", UTCDateTime, nullable=True),
    sa.Column("locked_by", sa.String(100), nullable=True),
    sa.Column("finished_at", UTCDateTime, nullable=True),
    sa.Column("last_error", sa.String(1000), nullable=True),
    # Jobs that coalesce: at most one pending per key (migration 0005).
    sa.Column("coalesce_key", sa.String(200), nullable=True),
    sa.Index("ix_outbox_status_available_at", "status", "available_at"),
    # The relay's due-job search: dispatched jobs never claimed, running jobs whose claim
    # expired (migration 0004 says why).
    sa.Index(
        "ix_outbox_dispatched_at",
        "dispatched_at",
        postgresql_where=sa.text("status = 'dispatched'"),
        sqlite_where=sa.text("status = 'dispatched'"),
    ),
    sa.Index(
        "ix_outbox_running_locked_until",
        "locked_until",
        postgresql_where=sa.text("status = 'running'"),
        sqlite_where=sa.text("status = 'running'"),
    ),
    sa.Index(
        "ix_outbox_pending_coalesce_key",
        "coalesce_key",
        postgresql_where=sa.text("status = 'pending'"),
        sqlite_where=sa.text("status = 'pending'"),
    ),
)

worker_heartbeats = sa.Table(
    "worker_heartbeats",
    metadata,
    sa.Column("worker_id", sa.String(100), primary_key=True),
    sa.Column("hostname", sa.String(255), nullable=False),
    sa.Column("pid", sa.Integer, nullable=False),
    sa.Column("started_at", UTCDateTime, nullable=False),
    sa.Column("last_seen_at", UTCDateTime, nullable=False),
)

gitlab_integrations = sa.Table(
    "gitlab_integrations",
    metadata,
    sa.Column(
        "org_id", Id, sa.ForeignKey("organizations.id", ondelete="CASCADE"), primary_key=True
    ),
    sa.Column("base_url", sa.String(2048), nullable=False),
    sa.Column("token_ciphertext", sa.Text, nullable=True),
    sa.Column("token_set_at", UTCDateTime, nullable=True),
    sa.Column("token_status", sa.String(16), nullable=False),
    sa.Column("token_scopes", sa.JSON, nullable=False),
    sa.Column("token_expires_at", sa.Date, nullable=True),
    sa.Column("token_expiry_warned_days", sa.Integer, nullable=True),
    sa.Column("webhook_secret_digest", sa.String(128), nullable=True),
    sa.Column("webhook_secret_set_at", UTCDateTime, nullable=True),
    sa.Column("signing_token_ciphertext", sa.Text, nullable=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
)

gitlab_links = sa.Table(
    "gitlab_links",
    metadata,
    sa.Column("id", Id, primary_key=True),
    sa.Column("org_id", Id, sa.ForeignKey("organizations.id", ondelete="CASCADE"), nullable=False),
    sa.Column("task_id", Id, sa.ForeignKey("tasks.id", ondelete="CASCADE"), nullable=False),
    sa.Column("url", sa.String(2048), nullable=False),
    sa.Column("project_path", sa.String(500), nullable=False),
    sa.Column("project_key", sa.String(500), nullable=False),
    sa.Column("kind", sa.String(8), nullable=False),
    sa.Column("iid", sa.Integer, nullable=False),
    sa.Column("cached_title", sa.Text, nullable=True),
    sa.Column("cached_state", sa.String(32), nullable=True),
    sa.Column("cached_labels", sa.JSON, nullable=False),
    sa.Column("cached_assignees", sa.JSON, nullable=False),
    sa.Column("last_synced_at", UTCDateTime, nullable=True),
    sa.Column("error_code", sa.String(64), nullable=True),
    sa.Column("rate_limited_until", UTCDateTime, nullable=True),
    sa.Column("refresh_requested_at", UTCDateTime, nullable=True),
    sa.Column("last_attempt_at", UTCDateTime, nullable=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.UniqueConstraint(
        "task_id", "project_key", "kind", "iid", name="uq_gitlab_links_task_object"
    ),
    sa.Index("ix_gitlab_links_object", "org_id", "project_key", "kind", "iid"),
    sa.Index("ix_gitlab_links_task_id", "task_id"),
)

webhook_deliveries = sa.Table(
    "webhook_deliveries",
    metadata,
    sa.Column("id", Id, primary_key=True),
    sa.Column("org_id", Id, sa.ForeignKey("organizations.id", ondelete="CASCADE"), nullable=False),
    sa.Column("idempotency_key", sa.String(300), nullable=False),
    sa.Column("event_type", sa.String(100), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("received_at", UTCDateTime, nullable=False),
    sa.Column("processed_at", UTCDateTime, nullable=True),
    sa.Column("error", sa.String(1000), nullable=True),
    sa.Column("payload_hash", sa.String(64), nullable=False),
    sa.Column("project_path", sa.String(500), nullable=True),
    sa.Column("kind", sa.String(8), nullable=True),
    sa.Column("iid", sa.Integer, nullable=True),
    sa.Column("action", sa.String(50), nullable=True),
    sa.UniqueConstraint("org_id", "idempotency_key", name="uq_webhook_deliveries_org_key"),
    sa.Index("ix_webhook_deliveries_org_received", "org_id", "received_at", "id"),
    # The deliveries still waiting for the worker (migration 0005).
    sa.Index(
        "ix_webhook_deliveries_received",
        "org_id",
        "received_at",
        "id",
        postgresql_where=sa.text("status = 'received'"),
        sqlite_where=sa.text("status = 'received'"),
    ),
)

audit_events = sa.Table(
    "audit_events",
    metadata,
    sa.Column("id", Id, primary_key=True),
    sa.Column("org_id", Id, nullable=False, index=True),
    sa.Column("actor_user_id", Id, nullable=True),
    sa.Column("action", sa.String(100), nullable=False),
    sa.Column("details", sa.JSON, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
)

push_subscriptions = sa.Table(
    "push_subscriptions",
    metadata,
    sa.Column("id", Id, primary_key=True),
    sa.Column(
        "user_id", Id, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True
    ),
    sa.Column("endpoint", sa.String(2048), nullable=False),
    sa.Column("endpoint_digest", sa.String(64), nullable=False, unique=True),
    sa.Column("p256dh", sa.String(200), nullable=False),
    sa.Column("auth", sa.String(100), nullable=False),
    sa.Column("expiration_time", UTCDateTime, nullable=True),
    sa.Column("user_agent", sa.String(500), nullable=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.Column("last_success_at", UTCDateTime, nullable=True),
    sa.Column("last_failure_at", UTCDateTime, nullable=True),
    sa.Column("last_failure_reason", sa.String(300), nullable=True),
)

notification_preferences = sa.Table(
    "notification_preferences",
    metadata,
    sa.Column("user_id", Id, sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("event_type", sa.String(100), primary_key=True),
    sa.Column("channel", sa.String(16), primary_key=True),
    sa.Column("enabled", sa.Boolean, nullable=False),
)

notifications = sa.Table(
    "notifications",
    metadata,
    sa.Column("id", Id, primary_key=True),
    sa.Column("event_key", sa.String(100), nullable=False, unique=True),
    sa.Column("event_type", sa.String(100), nullable=False),
    sa.Column("org_id", Id, nullable=False),
    sa.Column("task_id", Id, nullable=True),
    sa.Column("title", sa.String(500), nullable=False),
    sa.Column("body", sa.String(2000), nullable=False),
    sa.Column("url", sa.String(2048), nullable=False),
    sa.Column("topic", sa.String(32), nullable=True),
    sa.Column("urgency", sa.String(16), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
)

push_deliveries = sa.Table(
    "push_deliveries",
    metadata,
    sa.Column("id", Id, primary_key=True),
    sa.Column(
        "notification_id", Id, sa.ForeignKey("notifications.id", ondelete="CASCADE"), nullable=False
    ),
    sa.Column("subscription_id", Id, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("next_attempt_at", UTCDateTime, nullable=False),
    sa.Column("last_status", sa.Integer, nullable=True),
    sa.Column("last_error", sa.String(300), nullable=True),
    sa.Column("sent_at", UTCDateTime, nullable=True),
    sa.UniqueConstraint("notification_id", "subscription_id", name="uq_push_deliveries_pair"),
    sa.Index("ix_push_deliveries_due", "notification_id", "status", "next_attempt_at"),
)
