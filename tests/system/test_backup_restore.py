"""Backup, drop the database, restore: a working instance comes back (CONTRACT §4).

Real processes, as an operator runs them: ``viarah db backup`` → the database is dropped
and created again, empty → ``viarah db restore`` → ``viarah migrate --check`` → ``viarah
web`` and ``viarah worker``. The same rows are back, the GitLab token stored encrypted
still decrypts and validates against a local fake GitLab, and a job left pending in the
outbox at backup time is run by the worker.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg
import pytest
from cryptography.fernet import Fernet

from tests.conftest import POSTGRES_ADMIN_URL, base_env
from tests.factories import browser_keys
from tests.gitlab_fake import FakeGitLab
from tests.system.processes import SECRET, VIARAH, Proc, clean_env, free_port, wait_http_ok
from viarah.container import PURGE_SESSIONS_JOB, build_container, close_container
from viarah.domain.shared.actor import Actor
from viarah.domain.shared.jobs import Job
from viarah.settings import load_settings

pytestmark = [pytest.mark.system, pytest.mark.postgres, pytest.mark.redis]

PROJECT = "group/app"
PUSH_ENDPOINT = "https://push.example.com/send/backup-restore-test"


@dataclass(frozen=True)
class Seeded:
    org_id: str
    job_id: str


def _viarah(env: dict[str, str], cwd: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(VIARAH), *argv], env=env, cwd=cwd, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, f"viarah {' '.join(argv)}: {result.stdout}{result.stderr}"
    return result


def _query(url: str, sql: str) -> list[tuple[object, ...]]:
    with psycopg.connect(url, connect_timeout=5) as conn:
        return list(conn.execute(sql).fetchall())


def _rows(url: str) -> dict[str, list[tuple[str, ...]]]:
    """Every row of every table in the public schema, as text, sorted."""
    tables = [
        str(row[0])
        for row in _query(
            url, "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1"
        )
    ]
    return {
        table: sorted(tuple(str(v) for v in row) for row in _query(url, f'SELECT * FROM "{table}"'))
        for table in tables
    }


def _seed(env: dict[str, str], gitlab: FakeGitLab) -> Seeded:
    """An org with three members, a GitLab integration with an encrypted token, a linked
    task, a push subscription, and one job left pending in the outbox."""

    async def seed() -> str:
        container = build_container(load_settings(env).require_valid())
        try:
            users = container.users()
            admin = await users.create("admin@example.com", "correct horse", "Admin")
            await users.create("pm@example.com", "correct horse", "PM")
            dev = await users.create("dev@example.com", "correct horse", "Dev")
            actor = Actor(user_id=admin.id)
            org = (await container.organizations().create(actor, "Acme")).org
            await container.memberships().add(actor, org.id, "pm@example.com", "pm")
            await container.memberships().add(actor, org.id, "dev@example.com", "member")
            await container.gitlab_integrations().update(
                actor, org.id, base_url=gitlab.base_url, token=gitlab.token
            )
            project = await container.projects().create(actor, org.id, "App")
            task = await container.tasks().create(actor, org.id, project.id, "Fix the crash")
            await container.gitlab_links().link(
                actor, org.id, task.id, f"{gitlab.base_url}/{PROJECT}/-/issues/12"
            )
            p256dh, auth = browser_keys()
            await container.push_subscriptions().subscribe(
                Actor(user_id=dev.id), PUSH_ENDPOINT, p256dh, auth, user_agent="Firefox"
            )
            async with container.uow() as uow:  # not run: no worker is up yet
                uow.outbox.add(Job(PURGE_SESSIONS_JOB))
                await uow.commit()
            return str(org.id)
        finally:
            await close_container(container)

    org_id = asyncio.run(seed())
    [(job_id,)] = _query(
        env["DATABASE_URL"],
        f"SELECT id FROM outbox WHERE job = '{PURGE_SESSIONS_JOB}' AND status = 'pending'",
    )
    return Seeded(org_id=org_id, job_id=str(job_id))


def _drop_and_create(database_url: str) -> None:
    name = database_url.rsplit("/", 1)[1]
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def test_backup_drop_restore_gives_back_a_working_instance(
    postgres_url: str, redis_url: str, tmp_path: Path, procs: list[Proc]
) -> None:
    gitlab = FakeGitLab().start()
    try:
        gitlab.add_issue(PROJECT, 12, title="Crash", state="opened")
        env = clean_env(
            **base_env(
                DATABASE_URL=postgres_url,
                BROKER_URL=redis_url,
                VIA_RAH_SECRET_KEY=SECRET,
                VIA_RAH_ENCRYPTION_KEY=Fernet.generate_key().decode(),
                VIA_RAH_OUTBOUND_ALLOWLIST="127.0.0.1",
                ALLOWED_HOSTS="127.0.0.1,localhost",
            )
        )
        seeded = _seed(env, gitlab)
        before = _rows(postgres_url)
        [(token_ciphertext,)] = _query(
            postgres_url, "SELECT token_ciphertext FROM gitlab_integrations"
        )
        pending = _query(postgres_url, "SELECT count(*) FROM outbox WHERE status = 'pending'")
        members_before = [
            (str(i), str(e), str(r))
            for i, e, r in _query(
                postgres_url,
                "SELECT m.id, u.email, m.role FROM memberships m JOIN users u ON u.id = m.user_id",
            )
        ]

        backup = tmp_path / "viarah.sql"
        made = _viarah(env, tmp_path, "db", "backup", "--output", str(backup))
        print(made.stdout.strip())
        dump = backup.read_text()
        assert "-- viarah-encryption-keys-included: no" in dump
        assert gitlab.token not in dump  # the token is in the backup only encrypted
        assert env["VIA_RAH_ENCRYPTION_KEY"] not in dump

        _drop_and_create(postgres_url)
        assert _query(
            postgres_url, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
        ) == [(0,)]
        restored = _viarah(env, tmp_path, "db", "restore", str(backup))
        print(restored.stdout.strip())
        assert "restored:" in restored.stdout
        _viarah(env, tmp_path, "migrate", "--check")

        after = _rows(postgres_url)
        assert after == before
        assert _query(postgres_url, "SELECT token_ciphertext FROM gitlab_integrations") == [
            (token_ciphertext,)
        ]
        counted = {table: len(rows) for table, rows in after.items() if rows}
        print(f"restored rows per table: {counted}; pending jobs: {pending[0][0]}")
        assert counted["users"] == 3
        assert counted["memberships"] == 3
        assert counted["push_subscriptions"] == 1
        assert counted["gitlab_integrations"] == 1

        doctor = _viarah(env, tmp_path, "doctor", "secrets")
        assert "decrypt with the configured keys" in doctor.stdout

        port = free_port()
        url = f"http://127.0.0.1:{port}"
        web = Proc(["web", "--port", str(port)], env, tmp_path)
        worker = Proc(["worker", "--threads", "2"], env, tmp_path)
        worker_started = time.monotonic()
        procs.extend([web, worker])
        token = _viarah(
            env,
            tmp_path,
            *("tokens", "create", "--email", "admin@example.com", "--name", "restore-check"),
            *("--scope", "write", "--expires-days", "1"),
        ).stdout.strip()
        wait_http_ok(f"{url}/healthz", web)
        api = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=10)

        orgs = api.get("/api/orgs")
        assert orgs.status_code == 200, orgs.text
        assert [(o["id"], o["name"], o["role"]) for o in orgs.json()["orgs"]] == [
            (seeded.org_id, "Acme", "admin")
        ]
        members = api.get(f"/api/orgs/{seeded.org_id}/memberships")
        assert members.status_code == 200, members.text
        assert sorted(
            (m["id"], m["user"]["email"], m["role"]) for m in members.json()["memberships"]
        ) == sorted(members_before)

        validated = api.post(f"/api/orgs/{seeded.org_id}/integrations/gitlab/validate")
        assert validated.status_code == 200, validated.text
        assert validated.json()["status"] == "valid"
        assert validated.json()["user"]["username"] == gitlab.user["username"]

        while _query(postgres_url, f"SELECT status FROM outbox WHERE id = '{seeded.job_id}'") != [
            ("done",)
        ]:
            assert time.monotonic() - worker_started < 40, "the pending job was never run"
            time.sleep(0.2)
        ran = time.monotonic() - worker_started
        print(f"the job left pending at backup time was done {ran:.1f} s after `viarah worker`")

        api.close()
        worker.stop_cleanly()
        web.stop_cleanly()
        assert not any("Traceback" in line for line in web.stderr + worker.stderr)
    finally:
        gitlab.stop()
