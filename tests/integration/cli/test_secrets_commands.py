"""``viarah keys rotate`` and ``viarah doctor secrets`` on real data in PostgreSQL."""

from __future__ import annotations

import asyncio

import pytest
from cryptography.fernet import Fernet
from dependency_injector import providers

from tests.conftest import base_env
from tests.fakes import FakeGitLab
from tests.integration.cli.helpers import run
from viarah.container import build_container, close_container
from viarah.domain.shared.actor import Actor
from viarah.settings import load_settings


def _seed(database_url: str, key: str, orgs: int) -> None:
    """``orgs`` organizations, each with a GitLab token and a signing token under ``key``."""

    async def seed() -> None:
        settings = load_settings(base_env(DATABASE_URL=database_url, VIA_RAH_ENCRYPTION_KEY=key))
        container = build_container(settings.require_valid())
        container.gitlab_client.override(providers.Object(FakeGitLab()))
        try:
            user = await container.users().create("admin@example.com", "correct horse")
            admin = Actor(user_id=user.id)
            for n in range(orgs):
                org = (await container.organizations().create(admin, f"Org {n}")).org
                await container.gitlab_integrations().update(
                    admin,
                    org.id,
                    base_url="https://gitlab.example.com",
                    token="glpat-good",
                    signing_token=f"signing-{n}",
                )
        finally:
            await close_container(container)

    asyncio.run(seed())


@pytest.mark.postgres
def test_rotate_then_doctor(
    env: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    postgres_url: str,
) -> None:
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    _seed(postgres_url, old, orgs=3)
    env.setenv("DATABASE_URL", postgres_url)

    env.setenv("VIA_RAH_ENCRYPTION_KEY", new)
    code, out, err = run(capsys, "doctor", "secrets")
    assert code == 1
    assert out.count("✗") == 6
    assert "6 of 6 stored secret(s) cannot be decrypted" in err

    env.setenv("VIA_RAH_ENCRYPTION_KEY", f"{new},{old}")
    code, out, err = run(capsys, "keys", "rotate")
    assert code == 0, err
    assert "rotated 3 of 3" in out
    assert "rotating [##############################] 3/3" in err
    code, out, _ = run(capsys, "keys", "rotate")  # rerun: nothing left to do
    assert code == 0
    assert "rotated 0 of 3" in out

    env.setenv("VIA_RAH_ENCRYPTION_KEY", new)  # the old key retired
    code, out, err = run(capsys, "doctor", "secrets")
    assert (code, err) == (0, "")
    assert "all 6 stored secret(s) decrypt" in out
    assert "glpat-good" not in out + err


@pytest.mark.postgres
def test_rotate_refuses_without_a_key(
    env: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    postgres_url: str,
) -> None:
    env.setenv("DATABASE_URL", postgres_url)
    env.delenv("VIA_RAH_ENCRYPTION_KEY", raising=False)
    code, _, err = run(capsys, "keys", "rotate")
    assert code == 1
    assert "VIA_RAH_ENCRYPTION_KEY" in err
    env.setenv("VIA_RAH_ENCRYPTION_KEY", "not-a-fernet-key")
    code, _, err = run(capsys, "doctor", "secrets")
    assert code == 1
    assert "VIA_RAH_ENCRYPTION_KEY: key #1" in err
    assert "Traceback" not in err
