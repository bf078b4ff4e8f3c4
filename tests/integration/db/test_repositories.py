"""The use cases on the SQLAlchemy adapters, against real SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from viarah.adapters.db import tables as t
from viarah.container import Container
from viarah.domain.gitlab.webhooks import DRAIN_JOB, PROCESS_JOB, GitLabWebhooks
from viarah.domain.jobs.model import MAX_ATTEMPTS, Heartbeat
from viarah.domain.orgs.model import Role
from viarah.domain.shared.actor import Actor
from viarah.domain.shared.errors import Conflict, Forbidden, NotFound, Unavailable
from viarah.domain.shared.jobs import Job


async def _user(container: Container, email: str) -> Actor:
    user = await container.users().create(email, "correct horse")
    return Actor(user_id=user.id)


async def test_identity_round_trip(container: Container) -> None:
    actor = await _user(container, "ada@example.com")
    with pytest.raises(Conflict):
        await container.users().create("ADA@example.com", "correct horse")
    opened = await container.authentication().login("ada@example.com", "correct horse")
    resolved, session = await container.authentication().from_session(opened.cookie_value)
    assert resolved.user_id == actor.user_id
    assert session.created_at.tzinfo is not None
    assert session.expires_at - session.created_at == timedelta(days=14)

    issued = await container.api_tokens().create(resolved, "ci", "write", expires_days=7)
    token_actor = await container.authentication().from_api_token(issued.plaintext)
    assert token_actor.user_id == actor.user_id
    tokens = await container.api_tokens().list_tokens(resolved)
    assert tokens[0].last_used_at is not None
    assert tokens[0].last_used_at.tzinfo == UTC
    await container.api_tokens().revoke(resolved, issued.token.id)
    assert (await container.api_tokens().list_tokens(resolved))[0].revoked_at is not None

    await container.authentication().logout(resolved)
    with pytest.raises(Exception, match="log in again"):
        await container.authentication().from_session(opened.cookie_value)


async def test_secrets_are_stored_only_as_digests(container: Container) -> None:
    actor = await _user(container, "ada@example.com")
    issued = await container.api_tokens().create(actor, "ci")
    opened = await container.authentication().login("ada@example.com", "correct horse")
    secret = issued.plaintext.split(".", 1)[1]
    async with container.engine().connect() as conn:
        dump = repr((await conn.execute(sa.select(t.api_tokens))).all())
        dump += repr((await conn.execute(sa.select(t.login_sessions))).all())
        dump += repr((await conn.execute(sa.select(t.users))).all())
    assert secret not in dump
    assert opened.cookie_value not in dump
    assert "correct horse" not in dump


async def test_orgs_projects_tasks_round_trip(container: Container) -> None:
    admin = await _user(container, "admin@example.com")
    member = await _user(container, "member@example.com")
    org = (await container.organizations().create(admin, "Acme")).org
    added = await container.memberships().add(admin, org.id, "member@example.com", "member")
    assert added.user.email == "member@example.com"
    with pytest.raises(Conflict):
        await container.memberships().add(admin, org.id, "member@example.com", "pm")

    project = await container.projects().create(admin, org.id, "Alpha")
    task = await container.tasks().create(
        member, org.id, project.id, "Ship it", assignee_user_id=member.user_id
    )
    await container.tasks().watch(member, org.id, task.id)
    await container.tasks().watch(member, org.id, task.id)
    assert await container.tasks().watchers(admin, org.id, task.id) == [member.user_id]
    updated = await container.tasks().update(admin, org.id, task.id, status="done")
    assert updated.status.value == "done"
    fetched = await container.tasks().get(member, org.id, task.id)
    assert fetched == updated
    assert [x.id for x in await container.tasks().list_tasks(member, org.id, project.id)] == [
        task.id
    ]
    views = await container.organizations().list_orgs(member)
    assert [(v.org.id, v.role) for v in views] == [(org.id, Role.MEMBER)]

    outsider = await _user(container, "outsider@example.com")
    with pytest.raises(NotFound):
        await container.tasks().get(outsider, org.id, task.id)


async def test_last_admin_rule_holds_under_concurrency(container: Container) -> None:
    """Two admins demoting each other at once: exactly one succeeds."""
    first = await _user(container, "first@example.com")
    await _user(container, "second@example.com")
    org = (await container.organizations().create(first, "Acme")).org
    second_view = await container.memberships().add(first, org.id, "second@example.com", "admin")
    second = Actor(user_id=second_view.user.id)
    members = await container.memberships().list_members(first, org.id)
    by_user = {m.user.id: m.membership.id for m in members}

    results = await asyncio.gather(
        container.memberships().change_role(first, org.id, by_user[second.user_id], "member"),
        container.memberships().change_role(second, org.id, by_user[first.user_id], "member"),
        return_exceptions=True,
    )
    # SQLite serialises the transactions (the loser is no longer an admin: Forbidden);
    # on Postgres FOR UPDATE makes the loser see one admin left (Conflict).
    failures = [r for r in results if isinstance(r, BaseException)]
    assert len(failures) == 1, results
    assert isinstance(failures[0], Conflict | Forbidden)
    roles = [m.membership.role for m in await container.memberships().list_members(first, org.id)]
    assert roles.count(Role.ADMIN) == 1


async def test_failed_transaction_leaves_nothing(container: Container) -> None:
    admin = await _user(container, "admin@example.com")
    async with container.uow() as uow:
        await uow.users.get(admin.user_id)
        uow.outbox.add(Job("noop"))
        # leaving without commit
    async with container.engine().connect() as conn:
        assert (await conn.execute(sa.select(sa.func.count()).select_from(t.outbox))).scalar() == 0


async def test_outbox_rows_commit_with_the_data(container: Container) -> None:
    async with container.uow() as uow:
        uow.outbox.add(Job("identity.purge_expired_sessions", {"why": "test"}))
        await uow.commit()
    store = container.job_store()
    due = await store.due_for_dispatch(container.clock().now(), 10)
    assert [(r.job, r.payload) for r in due] == [
        ("identity.purge_expired_sessions", {"why": "test"})
    ]


async def test_a_job_whose_coalesce_key_is_pending_is_not_added(container: Container) -> None:
    async with container.uow() as uow:
        uow.outbox.add(Job("a", {"n": 1}, coalesce_key="k"))
        uow.outbox.add(Job("a", {"n": 2}, coalesce_key="k"))  # same commit: coalesced too
        uow.outbox.add(Job("a", {"n": 3}, coalesce_key="other"))
        uow.outbox.add(Job("a", {"n": 4}))
        uow.outbox.add(Job("a", {"n": 5}))  # no key: always added
        await uow.commit()
    async with container.uow() as uow:
        uow.outbox.add(Job("a", {"n": 6}, coalesce_key="k"))  # "k" still pending
        await uow.commit()
    store = container.job_store()
    now = container.clock().now()
    due = await store.due_for_dispatch(now, 10)
    assert sorted(r.payload["n"] for r in due) == [1, 3, 4, 5]
    (first,) = [r for r in due if r.payload["n"] == 1]
    assert await store.claim(first.id, now, now + timedelta(minutes=1))  # no longer pending
    async with container.uow() as uow:
        uow.outbox.add(Job("a", {"n": 7}, coalesce_key="k"))
        await uow.commit()
    due = await store.due_for_dispatch(container.clock().now(), 10)
    assert sorted(r.payload["n"] for r in due) == [3, 4, 5, 7]


async def test_job_store_claims_once_and_reclaims_expired(container: Container) -> None:
    async with container.uow() as uow:
        uow.outbox.add(Job("identity.purge_expired_sessions"))
        await uow.commit()
    store = container.job_store()
    now = container.clock().now()
    (record,) = await store.take_due(now, 10)
    assert await store.due_for_dispatch(now, 10) == []
    claimed = await asyncio.gather(
        *(store.claim(record.id, now, now + timedelta(minutes=5)) for _ in range(4))
    )
    assert sum(c is not None for c in claimed) == 1
    later = now + timedelta(minutes=6)
    assert [r.id for r in await store.due_for_dispatch(later, 10)] == [record.id]
    assert await store.claim(record.id, later, later + timedelta(minutes=5)) is not None
    await store.finish(record.id, later)
    assert await store.claim(record.id, later + timedelta(hours=1), later) is None
    assert (await store.counts())["done"] == 1


async def test_job_runner_executes_the_real_handler(container: Container) -> None:
    actor = await _user(container, "ada@example.com")
    await container.authentication().login("ada@example.com", "correct horse")
    async with container.engine().begin() as conn:
        await conn.execute(
            t.login_sessions.update().values(expires_at=container.clock().now() - timedelta(days=1))
        )
    async with container.uow() as uow:
        uow.outbox.add(Job("identity.purge_expired_sessions"))
        await uow.commit()
    (record,) = await container.job_store().due_for_dispatch(container.clock().now(), 10)
    assert await container.job_runner().run(record.id)
    async with container.engine().connect() as conn:
        remaining = (
            await conn.execute(sa.select(sa.func.count()).select_from(t.login_sessions))
        ).scalar()
    assert remaining == 0
    assert (await container.job_store().counts())["done"] == 1
    assert actor.user_id


async def test_heartbeats_and_readiness(container: Container) -> None:
    health = container.health()
    report = await health.readiness()
    assert report.database
    assert report.last_heartbeat_age is None
    started = container.clock().now()
    await container.presence().beat("w1", "host", 123, started)
    await container.presence().beat("w1", "host", 123, started)
    age = (await health.readiness()).last_heartbeat_age
    assert age is not None
    assert age < timedelta(seconds=5)


async def test_job_of_a_dead_worker_is_redispatched_and_reclaimed(container: Container) -> None:
    """A worker killed mid-job stops beating; its job becomes runnable again."""
    async with container.uow() as uow:
        uow.outbox.add(Job("identity.purge_expired_sessions"))
        await uow.commit()
    store = container.job_store()
    now = container.clock().now()
    (record,) = await store.due_for_dispatch(now, 10)
    dead_after = timedelta(seconds=5)
    beats = container.heartbeat_store()
    await beats.record(Heartbeat("alive", "host", 1, now, now))
    assert await store.claim(record.id, now, now + timedelta(minutes=5), "alive", dead_after)
    later = now + timedelta(seconds=3)
    assert await store.due_for_dispatch(later, 10, dead_after) == []  # holder still beats
    assert await store.claim(record.id, later, later, "other", dead_after) is None
    much_later = now + timedelta(seconds=30)  # "alive" has not beaten for 30 s: dead
    assert [r.id for r in await store.due_for_dispatch(much_later, 10, dead_after)] == [record.id]
    reclaimed = await store.claim(
        record.id, much_later, much_later + timedelta(minutes=5), "other", dead_after
    )
    assert reclaimed is not None
    await beats.record(Heartbeat("other", "host", 2, much_later, much_later))
    assert await store.due_for_dispatch(much_later, 10, dead_after) == []


async def test_a_read_only_unit_of_work_reads_without_holding_a_transaction(
    container: Container,
) -> None:
    actor = await _user(container, "ada@example.com")
    async with container.uow().read_only() as uow:
        assert await uow.users.get(actor.user_id) is not None
        # A writer is not held up by the reader (SQLite: no write lock taken; PostgreSQL:
        # autocommit, so no transaction stays open between reads).
        async with container.uow() as writer:
            user = await writer.users.get(actor.user_id)
            assert user is not None
            await writer.users.update(replace(user, display_name="Ada L."))
            await writer.commit()
        seen = await uow.users.get(actor.user_id)
        assert seen is not None
        if container.engine().dialect.name == "postgresql":
            assert seen.display_name == "Ada L."  # each read sees what was committed
            async with container.engine().connect() as conn:  # nobody idles in a transaction
                idle = await conn.scalar(
                    sa.text(
                        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                        " AND state = 'idle in transaction' AND pid <> pg_backend_pid()"
                    )
                )
            assert idle == 0
        with pytest.raises(AssertionError, match="read-only"):
            await uow.commit()


async def test_recording_a_token_use_never_undoes_a_revocation(container: Container) -> None:
    actor = await _user(container, "ada@example.com")
    issued = await container.api_tokens().create(actor, "ci")
    await container.api_tokens().revoke(actor, issued.token.id)
    async with container.uow() as uow:  # a request that read the token before the revocation
        await uow.api_tokens.touch(issued.token.id, issued.token.created_at + timedelta(hours=1))
        await uow.commit()
    (token,) = await container.api_tokens().list_tokens(actor)
    assert token.revoked_at is not None
    assert token.last_used_at == issued.token.created_at + timedelta(hours=1)


HOOK_SECRET = "hook-secret-of-sixteen-plus"


async def _org_with_a_delivery(container: Container) -> str:
    actor = await _user(container, "ada@example.com")
    org = (await container.organizations().create(actor, "Acme")).org
    await container.gitlab_integrations().update(
        actor, org.id, base_url="https://gitlab.example.com", webhook_secret=HOOK_SECRET
    )
    body = json.dumps(
        {
            "object_kind": "issue",
            "project": {"path_with_namespace": "g/p"},
            "object_attributes": {"iid": 1, "action": "close"},
        }
    ).encode()
    headers = {"x-gitlab-token": HOOK_SECRET, "x-gitlab-event": "Issue Hook"}
    assert await container.gitlab_webhooks().receive(org.id, headers, body) == "accepted"
    return org.id


async def _last_attempt_of(container: Container, name: str) -> str:
    """Make the job's next attempt its last; its id."""
    job = t.outbox.c
    async with container.engine().begin() as conn:
        await conn.execute(
            t.outbox.update().where(job.job == name).values(attempts=MAX_ATTEMPTS - 1)
        )
        return str((await conn.execute(sa.select(job.id).where(job.job == name))).scalar_one())


async def _delivery_and_job(container: Container, job_id: str) -> tuple[str, str | None, str]:
    async with container.engine().connect() as conn:
        status, error = (
            await conn.execute(
                sa.select(t.webhook_deliveries.c.status, t.webhook_deliveries.c.error)
            )
        ).one()
        job_status = (
            await conn.execute(sa.select(t.outbox.c.status).where(t.outbox.c.id == job_id))
        ).scalar_one()
    return status, error, job_status


async def test_a_drain_that_fails_for_good_leaves_its_deliveries_to_the_sweep(
    container: Container, monkeypatch: pytest.MonkeyPatch
) -> None:
    org_id = await _org_with_a_delivery(container)

    async def broken(_self: GitLabWebhooks, _org_id: str) -> int:
        raise Unavailable("the database is unavailable")

    monkeypatch.setattr(GitLabWebhooks, "process_waiting", broken)
    job_id = await _last_attempt_of(container, DRAIN_JOB)
    assert await container.job_runner().run(job_id)
    assert await _delivery_and_job(container, job_id) == ("received", None, "failed")
    # Nothing is lost: the sweep gives the delivery a new drain once it has waited long.
    monkeypatch.undo()
    async with container.engine().begin() as conn:
        await conn.execute(
            t.webhook_deliveries.update().values(received_at=datetime(2026, 1, 1, tzinfo=UTC))
        )
    assert await container.gitlab_webhooks().requeue_waiting() == 1
    assert await container.gitlab_webhooks().process_waiting(org_id) == 1


async def test_a_per_delivery_job_that_fails_for_good_marks_its_delivery_failed(
    container: Container, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The per-delivery job of an older version, left in the outbox at an upgrade."""
    await _org_with_a_delivery(container)
    async with container.engine().begin() as conn:
        delivery_id = (await conn.execute(sa.select(t.webhook_deliveries.c.id))).scalar_one()
        await conn.execute(
            t.outbox.update()
            .where(t.outbox.c.job == DRAIN_JOB)
            .values(job=PROCESS_JOB, payload={"delivery_id": delivery_id}, coalesce_key=None)
        )

    async def broken(_self: GitLabWebhooks, _delivery_id: str) -> None:
        raise Unavailable("GitLab is down")

    monkeypatch.setattr(GitLabWebhooks, "process", broken)
    job_id = await _last_attempt_of(container, PROCESS_JOB)
    assert await container.job_runner().run(job_id)
    status, error, job_status = await _delivery_and_job(container, job_id)
    assert (job_status, status) == ("failed", "failed")
    assert error == "processing failed: GitLab is down"
