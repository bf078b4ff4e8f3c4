"""The ``viarah`` operator commands, run in-process through ``main()`` on real services."""

from __future__ import annotations

import asyncio
import base64
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from tests.conftest import base_env
from tests.integration.cli.helpers import run
from viarah.container import build_container, close_container, migration_state
from viarah.domain.shared.actor import TokenScope
from viarah.settings import load_settings

VIARAH = Path(sys.executable).with_name("viarah")
PASSWORD = "correct horse battery"


def _b64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@pytest.mark.postgres
def test_migrate_check_then_migrate_is_idempotent(
    env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], empty_postgres_url: str
) -> None:
    env.setenv("DATABASE_URL", empty_postgres_url)
    code, _, err = run(capsys, "migrate", "--check")
    assert code == 1
    assert "pending migration" in err
    assert "0001_initial" in err

    for _ in range(2):
        code, out, _ = run(capsys, "migrate")
        assert code == 0
        head = migration_state(empty_postgres_url).head
        assert f"revision {head} (head)" in out

    code, out, err = run(capsys, "migrate", "--check")
    assert (code, err) == (0, "")
    assert "up to date" in out


@pytest.mark.postgres
def test_users_and_tokens(
    env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], postgres_url: str
) -> None:
    env.setenv("DATABASE_URL", postgres_url)
    argv = ("users", "create", "--email", "Ops@Example.com", "--password-stdin")
    code, out, _ = run(capsys, *argv, "--platform-admin", stdin=PASSWORD + "\n")
    assert code == 0
    assert "ops@example.com" in out

    code, out, err = run(capsys, *argv, stdin=PASSWORD + "\n")
    assert code == 1
    assert err.count("\n") == 1
    assert "already exists" in err

    short = ("users", "create", "--email", "x@example.com", "--password-stdin")
    code, _, err = run(capsys, *short, stdin="short\n")
    assert code == 1
    assert err.startswith("viarah: password:")

    code, out, err = run(
        capsys, "tokens", "create", "--email", "ops@example.com", "--name", "ci", "--scope", "write"
    )
    assert (code, err) == (0, "")
    token = out.strip()
    assert out == token + "\n"
    assert token.startswith("vrak_")

    async def authenticate() -> TokenScope | None:
        container = build_container(load_settings(base_env(DATABASE_URL=postgres_url)))
        try:
            actor = await container.authentication().from_api_token(token)
        finally:
            await close_container(container)
        return actor.scope

    assert asyncio.run(authenticate()) is TokenScope.WRITE

    code, out, err = run(capsys, "tokens", "create", "--email", "nobody@example.com", "--name", "x")
    assert (code, out) == (1, "")
    assert "nobody@example.com" in err


def test_keys_parse(env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "keys", "fernet")
    assert code == 0
    name, key = out.strip().split("=", 1)
    assert name == "VIA_RAH_ENCRYPTION_KEY"
    assert Fernet(key).decrypt(Fernet(key).encrypt(b"x")) == b"x"

    code, out, _ = run(capsys, "keys", "vapid")
    assert code == 0
    lines = dict(line.split("=", 1) for line in out.strip().splitlines())
    public, private = lines["WEBPUSH_VAPID_PUBLIC_KEY"], lines["WEBPUSH_VAPID_PRIVATE_KEY"]
    assert "=" not in public + private  # base64url without padding
    point, scalar = _b64url(public), _b64url(private)
    assert (len(point), point[0], len(scalar)) == (65, 4, 32)
    derived = ec.derive_private_key(int.from_bytes(scalar, "big"), ec.SECP256R1())
    assert derived.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint) == point


@pytest.mark.postgres
@pytest.mark.redis
def test_check_passes_on_a_good_configuration(
    env: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    postgres_url: str,
    redis_url: str,
) -> None:
    env.setenv("DATABASE_URL", postgres_url)
    env.setenv("CELERY_BROKER_URL", redis_url)  # a seed alias: accepted with a notice
    env.setenv("VIA_RAH_ENCRYPTION_KEY", Fernet.generate_key().decode())
    code, out, err = run(capsys, "check")
    assert code == 0, err
    assert out == "configuration OK\n"
    assert err.count("CELERY_BROKER_URL is deprecated") == 1


@pytest.mark.postgres
def test_check_names_every_bad_variable(
    env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], empty_postgres_url: str
) -> None:
    env.setenv("DATABASE_URL", empty_postgres_url)  # reachable, not migrated
    env.setenv("BROKER_URL", "redis://127.0.0.1:1/0")  # nothing listens there
    env.setenv("WORKER_HEARTBEAT_SECONDS", "0")
    env.setenv("VIA_RAH_ENCRYPTION_KEY", "not-a-fernet-key")
    env.setenv("WEBPUSH_VAPID_PUBLIC_KEY", "AAAA")
    env.setenv("WEBPUSH_VAPID_PRIVATE_KEY", "AAAA")
    env.delenv("VIA_RAH_SECRET_KEY")
    code, out, err = run(capsys, "check")
    assert (code, out) == (1, "")
    for variable in (
        "DATABASE_URL",
        "BROKER_URL",
        "WORKER_HEARTBEAT_SECONDS",
        "VIA_RAH_ENCRYPTION_KEY",
        "WEBPUSH_VAPID_PUBLIC_KEY",
        "WEBPUSH_VAPID_PRIVATE_KEY",
        "VIA_RAH_SECRET_KEY",
    ):
        assert any(line.startswith(f"{variable}: ") for line in err.splitlines()), variable
    assert "Traceback" not in err


def test_operator_mistakes_are_one_line(
    env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    env.setenv("DATABASE_URL", "mysql://db/viarah")
    code, _, err = run(capsys, "migrate")
    assert code == 1
    assert err.startswith("viarah: DATABASE_URL:")
    assert err.count("\n") == 1

    env.setenv("DATABASE_URL", "postgres://viarah:s3cret-pw@127.0.0.1:1/viarah")
    code, _, err = run(capsys, "migrate")
    assert code == 1
    assert err.startswith("viarah: cannot reach the database")
    assert err.count("\n") == 1
    assert "s3cret-pw" not in err

    env.delenv("DATABASE_URL")
    code, _, err = run(capsys, "worker")
    assert code == 1
    assert err.startswith("viarah: BROKER_URL:")

    assert run(capsys, "users", "create", "--email", "a@b.c")[0] == 2  # no --password-stdin
    assert run(capsys, "nonsense")[0] == 2


def test_the_console_script_prints_no_traceback(tmp_path: Path) -> None:
    env = {
        "PATH": "/usr/bin:/bin",
        "DATABASE_URL": "postgresql://viarah@127.0.0.1:1/viarah",
        "VIA_RAH_SECRET_KEY": "test-secret-key-0123456789abcdef",
    }
    done = subprocess.run(
        [str(VIARAH), "migrate", "--check"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 1
    assert done.stderr.startswith("viarah: cannot reach the database")
    assert done.stderr.count("\n") == 1
    assert "Traceback" not in done.stderr


@pytest.mark.postgres
def test_long_running_commands_refuse_to_start_misconfigured(
    env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], empty_postgres_url: str
) -> None:
    env.delenv("VIA_RAH_SECRET_KEY")
    env.setenv("ALLOWED_HOSTS", "")
    code, _, err = run(capsys, "web", "--port", "1")
    assert code == 1
    assert "viarah: VIA_RAH_SECRET_KEY:" in err
    assert "viarah: ALLOWED_HOSTS:" in err

    env.setenv("VIA_RAH_SECRET_KEY", "test-secret-key-0123456789abcdef")
    env.setenv("ALLOWED_HOSTS", "localhost")
    env.setenv("DATABASE_URL", empty_postgres_url)
    env.setenv("BROKER_URL", "redis://127.0.0.1:1/0")
    code, _, err = run(capsys, "worker")
    assert code == 1
    assert "run `viarah migrate` first" in err
