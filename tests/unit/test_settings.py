from __future__ import annotations

import stat
from pathlib import Path

import pytest

from viarah.settings import DEV_SECRET_KEY, VARIABLES, SettingsError, load_settings

GOOD = {"VIA_RAH_SECRET_KEY": "a-long-enough-production-secret"}


def test_defaults_are_the_embedded_setup() -> None:
    settings = load_settings(GOOD).require_valid()
    assert settings.database_url == "sqlite:///var/viarah.sqlite3"
    assert settings.embedded_database
    assert settings.broker_url == ""
    assert settings.worker_heartbeat_seconds == 30
    assert settings.allowed_hosts == ("localhost", "127.0.0.1")
    assert settings.debug is False
    assert settings.gitlab_metadata_ttl_seconds == 3600
    assert settings.webhook_delivery_retention_days == 30
    assert not settings.push_enabled


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgres://u:p@db:5432/v", "postgresql+psycopg://u:p@db:5432/v"),
        ("postgresql://u@db/v", "postgresql+psycopg://u@db/v"),
        ("sqlite:////data/v.sqlite3", "sqlite:////data/v.sqlite3"),
    ],
)
def test_database_urls(url: str, expected: str) -> None:
    assert load_settings({**GOOD, "DATABASE_URL": url}).require_valid().database_url == expected


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"DATABASE_URL": "mysql://x"}, "DATABASE_URL"),
        ({"BROKER_URL": "amqp://x"}, "BROKER_URL"),
        ({"WORKER_HEARTBEAT_SECONDS": "0"}, "WORKER_HEARTBEAT_SECONDS"),
        ({"WORKER_HEARTBEAT_SECONDS": "soon"}, "WORKER_HEARTBEAT_SECONDS"),
        ({"WEBHOOK_DELIVERY_RETENTION_DAYS": "-1"}, "WEBHOOK_DELIVERY_RETENTION_DAYS"),
        ({"WEBHOOK_DELIVERY_RETENTION_DAYS": "a month"}, "WEBHOOK_DELIVERY_RETENTION_DAYS"),
        ({"VIA_RAH_DEBUG": "maybe"}, "VIA_RAH_DEBUG"),
        ({"ALLOWED_HOSTS": " , "}, "ALLOWED_HOSTS"),
        ({"CSRF_TRUSTED_ORIGINS": "example.com"}, "CSRF_TRUSTED_ORIGINS"),
        ({"VIA_RAH_OUTBOUND_ALLOWLIST": "10.0.0.0/99"}, "VIA_RAH_OUTBOUND_ALLOWLIST"),
        ({"WEBPUSH_VAPID_SUBJECT": "ops@example.com"}, "WEBPUSH_VAPID_SUBJECT"),
        ({"VIA_RAH_LOG_LEVEL": "LOUD"}, "VIA_RAH_LOG_LEVEL"),
        ({"VIA_RAH_SECRET_KEY": ""}, "VIA_RAH_SECRET_KEY"),
        ({"VIA_RAH_SECRET_KEY": DEV_SECRET_KEY}, "VIA_RAH_SECRET_KEY"),
    ],
)
def test_each_problem_names_its_variable(env: dict[str, str], variable: str) -> None:
    settings = load_settings({**GOOD, **env})
    assert len(settings.problems) == 1
    assert settings.problems[0].startswith(f"{variable}:")
    with pytest.raises(SettingsError) as info:
        settings.require_valid()
    assert info.value.problems == list(settings.problems)


def test_all_problems_are_reported_together() -> None:
    settings = load_settings({"DATABASE_URL": "nope", "BROKER_URL": "nope"})
    names = {p.split(":", 1)[0] for p in settings.problems}
    assert names == {"DATABASE_URL", "BROKER_URL", "VIA_RAH_SECRET_KEY"}


@pytest.mark.parametrize(
    ("raw", "debug"), [("1", True), ("yes", True), ("On", True), ("off", False)]
)
def test_debug_spellings(raw: str, debug: bool) -> None:
    assert load_settings({**GOOD, "VIA_RAH_DEBUG": raw}).debug is debug


def test_debug_allows_the_dev_secret() -> None:
    settings = load_settings({"VIA_RAH_DEBUG": "true"}).require_valid()
    assert settings.secret_key == DEV_SECRET_KEY


def test_legacy_aliases_still_work_with_a_notice() -> None:
    settings = load_settings(
        {
            "DJANGO_SECRET_KEY": "legacy-secret-from-the-seed-env",
            "DJANGO_DEBUG": "0",
            "CELERY_BROKER_URL": "redis://localhost:6379/0",
            "CELERY_HEARTBEAT_SECONDS": "5",
        }
    ).require_valid()
    assert settings.secret_key == "legacy-secret-from-the-seed-env"
    assert settings.broker_url == "redis://localhost:6379/0"
    assert settings.worker_heartbeat_seconds == 5
    assert "CELERY_BROKER_URL is deprecated; rename it to BROKER_URL" in settings.notices
    assert len(settings.notices) == 4


def test_new_name_wins_over_alias() -> None:
    settings = load_settings(
        {**GOOD, "BROKER_URL": "redis://new/0", "CELERY_BROKER_URL": "redis://old/0"}
    )
    assert settings.broker_url == "redis://new/0"
    assert settings.notices == ()


def test_lists_are_split_and_trimmed() -> None:
    settings = load_settings(
        {**GOOD, "ALLOWED_HOSTS": " a.example , b.example ,", "VIA_RAH_ENCRYPTION_KEY": "k1,k2"}
    )
    assert settings.allowed_hosts == ("a.example", "b.example")
    assert settings.encryption_keys == ("k1", "k2")


def test_embedded_secret_is_created_once_and_private(tmp_path: Path) -> None:
    path = tmp_path / "var" / "secret_key"
    settings = load_settings({})
    assert settings.problems
    first = settings.with_embedded_secret(path)
    assert first.problems == ()
    assert len(first.secret_key) >= 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_settings({}).with_embedded_secret(path).secret_key == first.secret_key


def test_configured_secret_is_not_replaced(tmp_path: Path) -> None:
    settings = load_settings(GOOD).with_embedded_secret(tmp_path / "secret_key")
    assert settings.secret_key == GOOD["VIA_RAH_SECRET_KEY"]
    assert not (tmp_path / "secret_key").exists()


def test_dotenv_is_read_but_the_environment_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / ".env").write_text(
        "VIA_RAH_SECRET_KEY=from-dotenv-file-123\nALLOWED_HOSTS=dotenv.example\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ALLOWED_HOSTS", "env.example")
    monkeypatch.delenv("VIA_RAH_SECRET_KEY", raising=False)
    settings = load_settings()
    assert settings.secret_key == "from-dotenv-file-123"
    assert settings.allowed_hosts == ("env.example",)


def test_every_variable_is_unique() -> None:
    names = [v.name for v in VARIABLES] + [v.alias for v in VARIABLES if v.alias]
    assert len(names) == len(set(names))


def test_a_zero_delivery_retention_keeps_deliveries() -> None:
    settings = load_settings({**GOOD, "WEBHOOK_DELIVERY_RETENTION_DAYS": "0"}).require_valid()
    assert settings.webhook_delivery_retention_days == 0
