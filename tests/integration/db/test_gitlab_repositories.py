"""The GitLab use cases on the SQL adapters and real Fernet keys (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta

import pytest
import sqlalchemy as sa
from cryptography.fernet import Fernet
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.fakes import FakeGitLab, FakePasswordHasher
from viarah.adapters.crypto.secrets import FernetSecretBox, HmacKeyedHasher
from viarah.adapters.db import tables as t
from viarah.adapters.db.engine import create_engine
from viarah.adapters.db.native import NativePool, native_pool_for
from viarah.adapters.db.uow import SqlUnitOfWork
from viarah.domain.gitlab.integrations import GitLabIntegrations
from viarah.domain.gitlab.keys import StoredSecrets
from viarah.domain.gitlab.links import REFRESH_JOB, GitLabLinks, GitLabRefresher
from viarah.domain.gitlab.model import DeliveryStatus, SyncStatus
from viarah.domain.gitlab.webhooks import GitLabWebhooks
from viarah.domain.identity.services import Users
from viarah.domain.orgs.services import Organizations, Projects, Tasks
from viarah.domain.shared.actor import Actor
from viarah.domain.shared.clock import SystemClock
from viarah.domain.shared.errors import Conflict

BASE = "https://gitlab.example.com"
SECRET = "webhook-secret-0123456789"


@dataclass
class Services:
    integrations: GitLabIntegrations
    links: GitLabLinks
    refresher: GitLabRefresher
    webhooks: GitLabWebhooks
    secrets: StoredSecrets


def services(
    engine: AsyncEngine, native: NativePool | None, keys: tuple[str, ...], gitlab: FakeGitLab
) -> Services:
    """The GitLab use cases on the SQL unit of work with real Fernet keys."""
    clock = SystemClock()

    def uow() -> SqlUnitOfWork:
        return SqlUnitOfWork(engine, clock, native=native)

    box = FernetSecretBox(keys)
    hasher = HmacKeyedHasher("server-secret-for-tests")
    refresher = GitLabRefresher(uow, clock, box, gitlab)
    return Services(
        integrations=GitLabIntegrations(uow, clock, box, hasher, gitlab),
        links=GitLabLinks(uow, clock, timedelta(hours=1)),
        refresher=refresher,
        webhooks=GitLabWebhooks(uow, clock, hasher, box),
        secrets=StoredSecrets(uow, clock, box),
    )


@dataclass
class World(Services):
    engine: AsyncEngine
    native: NativePool | None
    key: str
    gitlab: FakeGitLab
    admin: Actor
    org_id: str
    project_id: str
    tasks: Tasks

    async def jobs(self, name: str) -> list[dict[str, object]]:
        query = sa.select(t.outbox.c.payload).where(t.outbox.c.job == name)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [dict(r.payload) for r in rows]


@pytest.fixture
async def world(database_url: str) -> AsyncIterator[World]:
    engine = create_engine(database_url)
    native = native_pool_for(engine, size=4)
    clock = SystemClock()

    def uow() -> SqlUnitOfWork:
        return SqlUnitOfWork(engine, clock, native=native)

    user = await Users(uow, clock, FakePasswordHasher()).create(
        "admin@example.com", "correct horse"
    )
    admin = Actor(user_id=user.id)
    org = (await Organizations(uow, clock).create(admin, "Acme")).org
    project = await Projects(uow, clock).create(admin, org.id, "P")
    gitlab = FakeGitLab()
    key = Fernet.generate_key().decode()
    parts = services(engine, native, (key,), gitlab)
    yield World(
        **vars(parts),
        engine=engine,
        native=native,
        key=key,
        gitlab=gitlab,
        admin=admin,
        org_id=org.id,
        project_id=project.id,
        tasks=Tasks(uow, clock),
    )
    if native is not None:
        await native.close()
    await engine.dispose()


def issue_hook(project_path: str, iid: int) -> bytes:
    """The parts of an Issue Hook payload that ViaRah reads: the issue was closed."""
    return json.dumps(
        {
            "object_kind": "issue",
            "project": {"path_with_namespace": project_path},
            "object_attributes": {"iid": iid, "action": "close"},
        }
    ).encode()


async def _configure(w: World) -> None:
    await w.integrations.update(
        w.admin, w.org_id, base_url=BASE, token="glpat-good", webhook_secret=SECRET
    )


async def test_integration_is_stored_encrypted(world: World) -> None:
    await _configure(world)
    async with world.engine.connect() as conn:
        row = (await conn.execute(sa.select(t.gitlab_integrations))).one()
        audit = (await conn.execute(sa.select(t.audit_events))).all()
    assert "glpat-good" not in repr(row)
    assert SECRET not in repr(row)
    assert row.token_scopes == ["read_api"]
    assert [a.action for a in audit] == ["gitlab.integration.created"]
    assert "glpat" not in repr(audit)
    got = await world.integrations.get(world.admin, world.org_id)
    assert got is not None
    assert got.has_token
    assert got.webhook_configured


async def test_links_refresh_and_duplicates(world: World) -> None:
    await _configure(world)
    world.gitlab.put("g/p", "issue", 3, "opened", "Crash")
    tasks = [
        await world.tasks.create(world.admin, world.org_id, world.project_id, f"T{n}")
        for n in range(3)
    ]
    for task in tasks:
        await world.links.link(world.admin, world.org_id, task.id, f"{BASE}/g/p/-/issues/3")
    with pytest.raises(Conflict):
        await world.links.link(world.admin, world.org_id, tasks[0].id, f"{BASE}/G/P/-/issues/3/")
    assert len(await world.jobs(REFRESH_JOB)) == 1  # one queued refresh serves all three
    world.gitlab.calls.clear()
    assert await world.refresher.refresh(world.org_id, "g/p", "issue", 3) == "ok"
    assert world.gitlab.calls == ["object:g/p:issue:3"]
    for task in tasks:
        (view,) = await world.links.list_links(world.admin, world.org_id, task.id)
        assert view.link.cached_title == "Crash"
        assert view.sync.status is SyncStatus.OK
        assert view.link.last_synced_at is not None
        assert view.link.last_synced_at.tzinfo is not None


async def test_request_refresh_has_one_winner_under_concurrency(world: World) -> None:
    await _configure(world)
    task = await world.tasks.create(world.admin, world.org_id, world.project_id, "T")
    await world.links.link(world.admin, world.org_id, task.id, f"{BASE}/g/p/-/issues/3")
    uow = SqlUnitOfWork(world.engine, SystemClock(), native=world.native)
    async with uow:
        await uow.gitlab_links.start_refresh(world.org_id, ("g/p", "issue", 3), SystemClock().now())
        await uow.commit()

    async def request() -> bool:
        async with SqlUnitOfWork(world.engine, SystemClock(), native=world.native) as u:
            won = await u.gitlab_links.request_refresh(
                world.org_id, ("g/p", "issue", 3), SystemClock().now(), min_attempt_interval=None
            )
            await u.commit()
            return won

    results = await asyncio.gather(*(request() for _ in range(6)))
    assert sorted(results) == [False] * 5 + [True]


async def test_webhooks_dedupe_process_and_page(world: World) -> None:
    await _configure(world)
    world.gitlab.put("g/p", "issue", 3, "opened")
    task = await world.tasks.create(world.admin, world.org_id, world.project_id, "T")
    await world.links.link(world.admin, world.org_id, task.id, f"{BASE}/g/p/-/issues/3")
    await world.refresher.refresh(world.org_id, "g/p", "issue", 3)
    world.gitlab.put("g/p", "issue", 3, "closed")
    body = issue_hook("g/p", 3)
    headers = {"x-gitlab-token": SECRET, "x-gitlab-event": "Issue Hook", "idempotency-key": "k-1"}
    assert await world.webhooks.receive(world.org_id, headers, body) == "accepted"
    assert await world.webhooks.receive(world.org_id, headers, body) == "duplicate"
    for n in range(4):
        await world.webhooks.receive(
            world.org_id,
            {**headers, "idempotency-key": f"other-{n}", "x-gitlab-event": "Push Hook"},
            b"{}",
        )
    (job,) = await world.jobs("gitlab.process_delivery")
    await world.webhooks.process(str(job["delivery_id"]))
    refreshes = await world.jobs(REFRESH_JOB)
    await world.refresher.refresh(**refreshes[-1])  # type: ignore[arg-type]
    (view,) = await world.links.list_links(world.admin, world.org_id, task.id)
    assert view.link.cached_state == "closed"
    assert len(await world.jobs("event.gitlab_link.state_changed")) == 1

    first, cursor = await world.webhooks.list_deliveries(world.admin, world.org_id, limit=3)
    rest, end = await world.webhooks.list_deliveries(
        world.admin, world.org_id, limit=3, cursor=cursor
    )
    assert end is None
    assert len(first) + len(rest) == 5
    assert len({d.id for d in first + rest}) == 5
    stamps = [d.received_at for d in first + rest]
    assert stamps == sorted(stamps, reverse=True)
    statuses = {d.status for d in first + rest}
    assert statuses == {DeliveryStatus.PROCESSED, DeliveryStatus.IGNORED}


async def test_concurrent_redeliveries_store_one_delivery_and_one_job(world: World) -> None:
    """The delivery and its job are one atomic write: racing retries of one GitLab
    delivery (same Idempotency-Key) store it once, queue it once, and lose nothing."""
    await _configure(world)
    body = issue_hook("g/p", 9)
    headers = {"x-gitlab-token": SECRET, "x-gitlab-event": "Issue Hook", "idempotency-key": "r"}
    answers = await asyncio.gather(
        *(world.webhooks.receive(world.org_id, headers, body) for _ in range(6))
    )
    assert sorted(answers) == ["accepted"] + ["duplicate"] * 5
    async with world.engine.connect() as conn:
        deliveries = (await conn.execute(sa.select(t.webhook_deliveries))).all()
        jobs = (await conn.execute(sa.select(t.outbox))).all()
    (delivery,) = deliveries
    (job,) = [j for j in jobs if j.job == "gitlab.process_delivery"]
    assert dict(job.payload) == {"delivery_id": delivery.id}
    assert (job.status, job.attempts) == ("pending", 0)
    assert job.created_at == job.available_at == delivery.received_at


async def test_key_rotation_on_real_ciphertexts(world: World) -> None:
    await _configure(world)
    await world.integrations.update(world.admin, world.org_id, signing_token="whsec_c2lnbmluZw==")
    new_key = Fernet.generate_key().decode()
    # The operator puts the new key first and keeps the old one after it, then rotates.
    rotated = services(world.engine, world.native, (new_key, world.key), world.gitlab)
    progress: list[tuple[int, int]] = []
    report = await rotated.secrets.rotate(lambda done, total: progress.append((done, total)))
    assert (report.examined, report.rotated, report.failed) == (1, 1, [])
    assert progress[-1] == (1, 1)
    assert (await rotated.secrets.rotate()).rotated == 0  # idempotent
    # With the old key retired, every secret still decrypts and the token still validates.
    only_new = services(world.engine, world.native, (new_key,), world.gitlab)
    assert await only_new.secrets.undecryptable() == (2, [])
    validation = await only_new.integrations.validate(world.admin, world.org_id)
    assert (validation.status, validation.username) == ("valid", "ada")
    # ...while a server with only the old key can no longer read them.
    only_old = services(world.engine, world.native, (world.key,), world.gitlab)
    checked, broken = await only_old.secrets.undecryptable()
    assert checked == 2
    assert {b.field for b in broken} == {"token_ciphertext", "signing_token_ciphertext"}
