"""The GitLab use cases on the SQL adapters and real Fernet keys (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
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
from viarah.domain.gitlab.model import DeliveryStatus, RefreshQueued, SyncStatus
from viarah.domain.gitlab.webhooks import DRAIN_JOB, GitLabWebhooks
from viarah.domain.identity.services import Users
from viarah.domain.orgs.services import Organizations, Projects, Tasks
from viarah.domain.shared.actor import Actor
from viarah.domain.shared.clock import SystemClock
from viarah.domain.shared.errors import Conflict
from viarah.domain.shared.ids import OrgId, TaskId

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
    async with _world(database_url) as made:
        yield made


@pytest.fixture
async def pg_world(postgres_url: str) -> AsyncIterator[World]:
    """The same on PostgreSQL only (behaviour SQLite's single writer cannot show)."""
    async with _world(postgres_url) as made:
        yield made


@asynccontextmanager
async def _world(database_url: str) -> AsyncIterator[World]:
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


async def test_a_task_page_reads_role_task_and_links_in_one_lookup(world: World) -> None:
    await _configure(world)
    task = await world.tasks.create(world.admin, world.org_id, world.project_id, "T")
    bare = await world.tasks.create(world.admin, world.org_id, world.project_id, "U")
    for iid in (5, 2, 9):
        await world.links.link(world.admin, world.org_id, task.id, f"{BASE}/g/p/-/issues/{iid}")
    clock = SystemClock()
    outsider = await Users(
        lambda: SqlUnitOfWork(world.engine, clock, native=world.native),
        clock,
        FakePasswordHasher(),
    ).create("outsider@example.com", "correct horse")
    other_org = (
        await Organizations(lambda: SqlUnitOfWork(world.engine, clock), clock).create(
            Actor(user_id=outsider.id), "Elsewhere"
        )
    ).org
    org, admin = OrgId(world.org_id), world.admin.user_id
    async with SqlUnitOfWork(world.engine, clock, native=world.native).read_only() as uow:
        role, found, links = await uow.gitlab_links.list_for_task_as(org, TaskId(task.id), admin)
        assert (role, found) == ("admin", True)
        assert [link.iid for link in links] == [5, 2, 9]  # oldest first
        assert await uow.gitlab_links.list_for_task_as(org, TaskId(bare.id), admin) == (
            "admin",
            True,
            [],
        )
        assert await uow.gitlab_links.list_for_task_as(org, TaskId(task.id), outsider.id) == (
            None,
            False,
            [],
        )  # a non-member learns nothing
        foreign = await uow.gitlab_links.list_for_task_as(
            OrgId(other_org.id), TaskId(task.id), outsider.id
        )
        assert foreign == ("admin", False, [])  # the task is not in that org


async def test_request_refreshes_marks_the_objects_with_no_refresh_queued(world: World) -> None:
    await _configure(world)
    task = await world.tasks.create(world.admin, world.org_id, world.project_id, "T")
    other = await world.tasks.create(world.admin, world.org_id, world.project_id, "U")
    for iid in (1, 2):
        for linked in (task, other):  # two links per object
            await world.links.link(
                world.admin, world.org_id, linked.id, f"{BASE}/g/p/-/issues/{iid}"
            )
    issue = ("g/p", "issue")
    attempted = SystemClock().now()
    async with SqlUnitOfWork(world.engine, SystemClock(), native=world.native) as uow:
        # Linking queued a refresh of both; the one of issue 1 has started since.
        await uow.gitlab_links.start_refresh(world.org_id, (*issue, 1), attempted)
        await uow.commit()
    now = SystemClock().now()
    keys = [(*issue, 1), (*issue, 2), (*issue, 3)]  # 3: no link points at it

    async def request() -> dict[tuple[str, str, int], RefreshQueued]:
        async with SqlUnitOfWork(world.engine, SystemClock(), native=world.native) as u:
            queued = await u.gitlab_links.request_refreshes(world.org_id, keys, now)
            await u.commit()
            return queued

    first, second = await asyncio.gather(request(), request())  # one waits for the other
    assert [first, second] in (
        [{(*issue, 1): RefreshQueued(attempted)}, {}],
        [{}, {(*issue, 1): RefreshQueued(attempted)}],
    )
    async with SqlUnitOfWork(world.engine, SystemClock(), native=world.native) as uow:
        links = await uow.gitlab_links.for_object(world.org_id, (*issue, 1))
    assert [link.refresh_requested_at for link in links] == [now, now]
    async with SqlUnitOfWork(world.engine, SystemClock(), native=world.native) as uow:
        assert await uow.gitlab_links.request_refreshes(world.org_id, [], now) == {}


async def test_request_refresh_has_one_winner_under_concurrency(world: World) -> None:
    await _configure(world)
    task = await world.tasks.create(world.admin, world.org_id, world.project_id, "T")
    await world.links.link(world.admin, world.org_id, task.id, f"{BASE}/g/p/-/issues/3")
    uow = SqlUnitOfWork(world.engine, SystemClock(), native=world.native)
    attempted = SystemClock().now()
    async with uow:
        await uow.gitlab_links.start_refresh(world.org_id, ("g/p", "issue", 3), attempted)
        await uow.commit()

    async def request() -> RefreshQueued | None:
        async with SqlUnitOfWork(world.engine, SystemClock(), native=world.native) as u:
            won = await u.gitlab_links.request_refresh(
                world.org_id, ("g/p", "issue", 3), SystemClock().now(), min_attempt_interval=None
            )
            await u.commit()
            return won

    results = await asyncio.gather(*(request() for _ in range(6)))
    (winner,) = [won for won in results if won is not None]
    assert results.count(None) == 5
    assert winner.last_attempt_at == attempted  # when the queued refresh may start


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
    (job,) = await world.jobs(DRAIN_JOB)
    assert job == {"org_id": world.org_id}
    assert await world.webhooks.process_waiting(world.org_id) == 1
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
    (job,) = [j for j in jobs if j.job == DRAIN_JOB]
    assert dict(job.payload) == {"org_id": world.org_id}
    assert (job.status, job.attempts) == ("pending", 0)
    assert job.coalesce_key == f"{DRAIN_JOB}:{world.org_id}"
    assert job.created_at == job.available_at == delivery.received_at


async def _receive_many(world: World, count: int, start: int = 0) -> None:
    for n in range(start, start + count):
        headers = {
            "x-gitlab-token": SECRET,
            "x-gitlab-event": "Issue Hook",
            "idempotency-key": f"k{n}",
        }
        await world.webhooks.receive(world.org_id, headers, issue_hook("g/p", 1 + n % 3))


async def _statuses(world: World) -> dict[str, int]:
    query = sa.select(t.webhook_deliveries.c.status, sa.func.count()).group_by(
        t.webhook_deliveries.c.status
    )
    async with world.engine.connect() as conn:
        return {row[0]: row[1] for row in (await conn.execute(query)).all()}


async def test_a_burst_shares_one_pending_job_and_is_processed_in_batches(world: World) -> None:
    await _configure(world)
    await _receive_many(world, 12)
    assert await world.jobs(DRAIN_JOB) == [{"org_id": world.org_id}]  # one for the burst
    async with world.engine.begin() as conn:  # the relay hands it to the broker...
        await conn.execute(t.outbox.update().values(status="dispatched"))
    await _receive_many(world, 1, start=12)  # ...so the next webhook adds a new one
    assert len(await world.jobs(DRAIN_JOB)) == 2
    assert await world.webhooks.process_waiting(world.org_id) == 13
    assert await _statuses(world) == {"processed": 13}
    assert await world.webhooks.process_waiting(world.org_id) == 0


async def test_waiting_deliveries_are_taken_oldest_first_and_swept(world: World) -> None:
    await _configure(world)
    await _receive_many(world, 5)
    later = SystemClock().now() + timedelta(minutes=1)
    async with SqlUnitOfWork(world.engine, SystemClock(), world.native) as uow:
        assert await uow.webhook_deliveries.orgs_waiting(later) == [world.org_id]
        first = await uow.webhook_deliveries.take_waiting(world.org_id, later, 3)
        rest = await uow.webhook_deliveries.take_waiting(world.org_id, later, 3)
        assert await uow.webhook_deliveries.orgs_waiting(later) == []
        await uow.rollback()  # nothing happened
    assert [d.status for d in first + rest] == [DeliveryStatus.RECEIVED] * 5
    assert [d.idempotency_key for d in first + rest] == [f"key:k{n}" for n in range(5)]
    stamps = [(d.received_at, d.id) for d in first + rest]
    assert stamps == sorted(stamps)
    async with world.engine.begin() as conn:  # as if their drain ran before they committed
        await conn.execute(t.outbox.delete())
    assert await world.webhooks.requeue_waiting() == 0  # not waiting for long yet
    async with world.engine.begin() as conn:
        await conn.execute(
            t.webhook_deliveries.update().values(received_at=later - timedelta(minutes=3))
        )
    assert await world.webhooks.requeue_waiting() == 1
    assert await world.webhooks.requeue_waiting() == 1
    assert await world.jobs(DRAIN_JOB) == [{"org_id": world.org_id}]  # coalesced
    assert await world.webhooks.process_waiting(world.org_id) == 5


async def test_two_drains_take_disjoint_batches_without_waiting(pg_world: World) -> None:
    world = pg_world
    await _configure(world)
    await _receive_many(world, 10)
    now = SystemClock().now()
    async with SqlUnitOfWork(world.engine, SystemClock(), world.native) as first:
        mine = await first.webhook_deliveries.take_waiting(world.org_id, now, 6)
        async with SqlUnitOfWork(world.engine, SystemClock(), world.native) as second:
            theirs = await asyncio.wait_for(
                second.webhook_deliveries.take_waiting(world.org_id, now, 6), timeout=5
            )
            await second.commit()
        await first.commit()
    assert (len(mine), len(theirs)) == (6, 4)
    assert not {d.id for d in mine} & {d.id for d in theirs}
    assert await _statuses(world) == {"processed": 10}


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
