"""The one typed settings object, read from the environment (and ``.env`` if present).

This is the only module that reads ``os.environ``. Every variable is declared once in
:data:`VARIABLES`; ``docs/configuration.md`` must list the same names (a test checks it).
"""

from __future__ import annotations

import ipaddress
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from dotenv import dotenv_values

DEV_SECRET_KEY = "dev-insecure-secret-key-change-me"
EMBEDDED_DB_PATH = Path("var") / "viarah.sqlite3"
EMBEDDED_SECRET_PATH = Path("var") / "secret_key"
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


@dataclass(frozen=True, slots=True)
class Variable:
    """One environment variable: its name, legacy alias, default and meaning."""

    name: str
    default: str
    meaning: str
    alias: str | None = None
    compose_only: bool = False


VARIABLES: tuple[Variable, ...] = (
    Variable(
        "DATABASE_URL",
        "",
        "postgres://, postgresql:// or sqlite:///path; empty = ./var/viarah.sqlite3",
    ),
    Variable(
        "DATABASE_POOL_SIZE",
        "10",
        "PostgreSQL connections each process keeps for requests and jobs (at least 1)",
    ),
    Variable(
        "BROKER_URL",
        "",
        "redis://host:6379/0; empty = in-process queue (viarah serve only)",
        alias="CELERY_BROKER_URL",
    ),
    Variable(
        "WORKER_HEARTBEAT_SECONDS",
        "30",
        "worker heartbeat interval in seconds (at least 1)",
        alias="CELERY_HEARTBEAT_SECONDS",
    ),
    Variable(
        "WORKER_METRICS_PORT",
        "",
        "port on which viarah worker serves /metrics (1-65535); empty = no metrics server",
    ),
    Variable(
        "VIA_RAH_SECRET_KEY",
        "",
        "server secret for keyed hashes; required unless debug",
        alias="DJANGO_SECRET_KEY",
    ),
    Variable(
        "VIA_RAH_DEBUG", "0", "debug mode: 1/0, true/false, yes/no, on/off", alias="DJANGO_DEBUG"
    ),
    Variable(
        "ALLOWED_HOSTS",
        "localhost,127.0.0.1",
        "comma-separated Host header allowlist (* allows any; .example.com allows subdomains)",
    ),
    Variable(
        "CSRF_TRUSTED_ORIGINS",
        "",
        "comma-separated extra origins allowed for cookie-authenticated writes",
    ),
    Variable("VIA_RAH_ENCRYPTION_KEY", "", "Fernet key(s), comma-separated, newest first"),
    Variable(
        "GITLAB_METADATA_TTL_SECONDS",
        "3600",
        "age after which cached GitLab link metadata is refreshed",
    ),
    Variable(
        "WEBHOOK_DELIVERY_RETENTION_DAYS",
        "30",
        "days finished webhook deliveries are kept (0 = forever)",
    ),
    Variable(
        "WEBPUSH_VAPID_PUBLIC_KEY",
        "",
        "VAPID public key (base64url); push is disabled without all three VAPID settings",
    ),
    Variable("WEBPUSH_VAPID_PRIVATE_KEY", "", "VAPID private key (base64url)"),
    Variable("WEBPUSH_VAPID_SUBJECT", "", "VAPID contact: a mailto: or https: URL"),
    Variable(
        "VIA_RAH_OUTBOUND_ALLOWLIST",
        "",
        "hosts/CIDRs that outbound calls may reach although private or loopback",
    ),
    Variable(
        "VIA_RAH_MAX_REQUEST_BYTES",
        "1048576",
        "largest accepted request body in bytes (larger: 413)",
    ),
    Variable("VIA_RAH_LOG_LEVEL", "INFO", "DEBUG, INFO, WARNING or ERROR"),
    Variable("POSTGRES_DB", "viarah", "database name of the compose db service", compose_only=True),
    Variable("POSTGRES_USER", "viarah", "user of the compose db service", compose_only=True),
    Variable("POSTGRES_PASSWORD", "", "password of the compose db service", compose_only=True),
)


class SettingsError(Exception):
    """The configuration has problems; ``problems`` holds one line per problem."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass(frozen=True, slots=True)
class Settings:
    database_url: str
    broker_url: str
    worker_heartbeat_seconds: int
    worker_metrics_port: int | None
    secret_key: str
    debug: bool
    allowed_hosts: tuple[str, ...]
    csrf_trusted_origins: tuple[str, ...]
    encryption_keys: tuple[str, ...]
    gitlab_metadata_ttl_seconds: int
    webhook_delivery_retention_days: int
    vapid_public_key: str
    vapid_private_key: str
    vapid_subject: str
    outbound_allowlist: tuple[str, ...]
    max_request_bytes: int
    log_level: str
    database_pool_size: int = 10
    notices: tuple[str, ...] = field(default=(), compare=False)
    problems: tuple[str, ...] = field(default=(), compare=False)

    @property
    def embedded_database(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def push_enabled(self) -> bool:
        return bool(self.vapid_public_key and self.vapid_private_key and self.vapid_subject)

    def with_embedded_secret(self, path: Path = EMBEDDED_SECRET_PATH) -> Settings:
        """For ``viarah serve`` only: when no secret key is configured, use one kept in
        ``path`` (created with mode 0600 on first start), so the all-in-one default runs
        with no configuration and keeps its sessions across restarts."""
        if self.secret_key:
            return self
        if path.is_file():
            secret = path.read_text().strip()
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            secret = secrets.token_urlsafe(48)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(secret + "\n")
        problems = tuple(p for p in self.problems if not p.startswith("VIA_RAH_SECRET_KEY:"))
        return replace(self, secret_key=secret, problems=problems)

    def require_valid(self) -> Settings:
        """Self, or SettingsError listing every problem."""
        if self.problems:
            raise SettingsError(list(self.problems))
        return self


def read_environment(dotenv: Path | None = Path(".env")) -> dict[str, str]:
    """The process environment over the ``.env`` file's values (the environment wins)."""
    merged: dict[str, str] = {}
    if dotenv is not None and dotenv.is_file():
        merged.update({k: v for k, v in dotenv_values(dotenv).items() if v is not None})
    merged.update(os.environ)
    return merged


def _split(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(",") if part.strip())


def _database_url(raw: str, problems: list[str]) -> str:
    if not raw:
        return f"sqlite:///{EMBEDDED_DB_PATH}"
    scheme = raw.split("://", 1)[0].lower() if "://" in raw else ""
    if scheme in ("postgres", "postgresql", "postgresql+psycopg"):
        return "postgresql+psycopg://" + raw.split("://", 1)[1]
    if scheme == "sqlite" and raw.startswith("sqlite:///") and len(raw) > len("sqlite:///"):
        return raw
    problems.append(
        "DATABASE_URL: must start with postgres://, postgresql:// or sqlite:/// "
        "(leave it empty for the embedded SQLite database)"
    )
    return raw


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Parse and validate the configuration; problems are collected, not raised.

    Call :meth:`Settings.require_valid` where an invalid configuration must stop the
    process; ``viarah check`` prints ``problems`` instead.
    """
    env = read_environment() if environ is None else dict(environ)
    problems: list[str] = []
    notices: list[str] = []

    def raw(name: str) -> str:
        var = next(v for v in VARIABLES if v.name == name)
        if name in env:
            return env[name].strip()
        if var.alias and var.alias in env:
            notices.append(f"{var.alias} is deprecated; rename it to {name}")
            return env[var.alias].strip()
        return var.default

    def integer(name: str, minimum: int) -> int:
        value = raw(name)
        try:
            number = int(value)
        except ValueError:
            problems.append(f"{name}: must be a whole number, got {value!r}")
            return int(next(v for v in VARIABLES if v.name == name).default)
        if number < minimum:
            problems.append(f"{name}: must be at least {minimum}, got {number}")
        return number

    debug_raw = raw("VIA_RAH_DEBUG").lower()
    if debug_raw not in _TRUE | _FALSE:
        problems.append(
            f"VIA_RAH_DEBUG: must be 1/0, true/false, yes/no or on/off, got {debug_raw!r}"
        )
    debug = debug_raw in _TRUE

    secret_key = raw("VIA_RAH_SECRET_KEY")
    if not secret_key:
        if debug:
            secret_key = DEV_SECRET_KEY
        else:
            problems.append("VIA_RAH_SECRET_KEY: is required when VIA_RAH_DEBUG is off")
    elif secret_key == DEV_SECRET_KEY and not debug:
        problems.append(
            "VIA_RAH_SECRET_KEY: the development value is refused when VIA_RAH_DEBUG is off"
        )
    elif len(secret_key) < 16 and not debug:
        problems.append("VIA_RAH_SECRET_KEY: must be at least 16 characters")

    metrics_port_raw = raw("WORKER_METRICS_PORT")
    worker_metrics_port: int | None = None
    if metrics_port_raw:
        try:
            worker_metrics_port = int(metrics_port_raw)
        except ValueError:
            problems.append(
                f"WORKER_METRICS_PORT: must be a port number (1-65535), got {metrics_port_raw!r}"
            )
        else:
            if not 1 <= worker_metrics_port <= 65535:
                problems.append(
                    f"WORKER_METRICS_PORT: must be between 1 and 65535, got {worker_metrics_port}"
                )
                worker_metrics_port = None

    broker_url = raw("BROKER_URL")
    if broker_url and not broker_url.startswith(("redis://", "rediss://", "unix://")):
        problems.append("BROKER_URL: must be a redis:// (or rediss://) URL")

    allowed_hosts = _split(raw("ALLOWED_HOSTS"))
    if not allowed_hosts:
        problems.append("ALLOWED_HOSTS: must name at least one host (or *)")

    origins = _split(raw("CSRF_TRUSTED_ORIGINS"))
    for origin in origins:
        if not origin.startswith(("http://", "https://")) or origin.count("/") != 2:
            problems.append(
                f"CSRF_TRUSTED_ORIGINS: {origin!r} is not an origin like https://host[:port]"
            )

    allowlist = _split(raw("VIA_RAH_OUTBOUND_ALLOWLIST"))
    for entry in allowlist:
        if "/" in entry:
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                problems.append(f"VIA_RAH_OUTBOUND_ALLOWLIST: {entry!r} is not a valid CIDR")

    log_level = raw("VIA_RAH_LOG_LEVEL").upper()
    if log_level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        problems.append(
            f"VIA_RAH_LOG_LEVEL: must be DEBUG, INFO, WARNING or ERROR, got {log_level!r}"
        )

    vapid = [raw(f"WEBPUSH_VAPID_{part}") for part in ("PUBLIC_KEY", "PRIVATE_KEY", "SUBJECT")]
    subject = vapid[2]
    if subject and not subject.startswith(("mailto:", "https://")):
        problems.append("WEBPUSH_VAPID_SUBJECT: must be a mailto: or https: URL")

    settings = Settings(
        database_url=_database_url(raw("DATABASE_URL"), problems),
        broker_url=broker_url,
        worker_heartbeat_seconds=integer("WORKER_HEARTBEAT_SECONDS", 1),
        worker_metrics_port=worker_metrics_port,
        secret_key=secret_key,
        debug=debug,
        allowed_hosts=allowed_hosts,
        csrf_trusted_origins=origins,
        encryption_keys=_split(raw("VIA_RAH_ENCRYPTION_KEY")),
        gitlab_metadata_ttl_seconds=integer("GITLAB_METADATA_TTL_SECONDS", 1),
        webhook_delivery_retention_days=integer("WEBHOOK_DELIVERY_RETENTION_DAYS", 0),
        vapid_public_key=vapid[0],
        vapid_private_key=vapid[1],
        vapid_subject=subject,
        outbound_allowlist=allowlist,
        max_request_bytes=integer("VIA_RAH_MAX_REQUEST_BYTES", 1024),
        log_level=log_level,
        database_pool_size=integer("DATABASE_POOL_SIZE", 1),
        notices=tuple(dict.fromkeys(notices)),
        problems=tuple(problems),
    )
    return settings
