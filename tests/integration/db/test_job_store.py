"""The outbox store's single-statement operations, on SQLite and PostgreSQL: taking due
jobs, releasing them, and claims and finishes grouped while others are in flight."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import sqlalchemy as sa

from viarah.adapters.db import tables as t
from viarah.container import Container
from viarah.domain.jobs.model import Heartbeat, JobStatus
from viarah.domain.shared.jobs import Job


async def _add_jobs(container: Container, count: int) -> None:
    async with container.uow() as uow:
        for n in range(count):
            uow.outbox.add(Job("identity.purge_expired_sessions", {"n": n}))
        await uow.commit()


async def _statuses(container: Container) -> dict[str, str]:
    async with container.engine().connect() as conn:
        rows = (await conn.execute(sa.select(t.outbox.c.id, t.outbox.c.status))).all()
    return {row.id: row.status for row in rows}


async def test_concurrent_relays_take_each_due_job_once(container: Container) -> None:
    await _add_jobs(container, 30)
    store = container.job_store()
    now = container.clock().now()
    taken = await asyncio.gather(*(store.take_due(now, 8) for _ in range(5)))
    ids = [record.id for batch in taken for record in batch]
    assert len(ids) == len(set(ids))  # nobody got a job another relay took
    ids += [record.id for record in await store.take_due(now, 100)]  # the rest, if any
    assert sorted(ids) == sorted(await _statuses(container))
    assert set((await _statuses(container)).values()) == {"dispatched"}
    assert await store.take_due(now, 100) == []  # dispatched, not due again yet
    later = now + timedelta(seconds=61)  # nobody claimed them: sent again
    assert len(await store.take_due(later, 100)) == 30


async def test_take_due_returns_records_oldest_first(container: Container) -> None:
    await _add_jobs(container, 5)
    store = container.job_store()
    records = await store.take_due(container.clock().now(), 10)
    assert sorted(r.payload["n"] for r in records) == [0, 1, 2, 3, 4]
    keys = [(r.available_at, r.id) for r in records]
    assert keys == sorted(keys)
    assert {r.job for r in records} == {"identity.purge_expired_sessions"}


async def test_release_puts_unsent_jobs_back_but_not_claimed_ones(container: Container) -> None:
    await _add_jobs(container, 3)
    store = container.job_store()
    now = container.clock().now()
    first, second, third = await store.take_due(now, 10)
    # An older message for ``first`` reached a worker meanwhile: it is running.
    assert await store.claim(first.id, now, now + timedelta(minutes=5)) is not None
    await store.release([first.id, second.id], now)
    statuses = await _statuses(container)
    assert statuses == {first.id: "running", second.id: "pending", third.id: "dispatched"}
    assert [r.id for r in await store.take_due(now, 10)] == [second.id]


async def test_concurrent_claims_of_one_job_give_it_to_one_caller(container: Container) -> None:
    await _add_jobs(container, 1)
    store = container.job_store()
    now = container.clock().now()
    (record,) = await store.take_due(now, 10)
    claims = await asyncio.gather(
        *(store.claim(record.id, now, now + timedelta(minutes=5), f"w{n}") for n in range(6))
    )
    winners = [claim for claim in claims if claim is not None]
    assert len(winners) == 1
    assert winners[0].status is JobStatus.RUNNING
    assert winners[0].payload == {"n": 0}


async def test_grouped_claims_and_finishes_write_every_job(container: Container) -> None:
    await _add_jobs(container, 40)
    store = container.job_store()
    now = container.clock().now()
    records = await store.take_due(now, 100)
    dead_after = timedelta(seconds=30)
    await container.heartbeat_store().record(Heartbeat("w1", "host", 1, now, now))

    async def run(job_id: str) -> None:
        claimed = await store.claim(job_id, now, now + timedelta(minutes=5), "w1", dead_after)
        assert claimed is not None
        assert claimed.id == job_id
        await store.finish(job_id, container.clock().now())

    await asyncio.gather(*(run(record.id) for record in records))
    assert set((await _statuses(container)).values()) == {"done"}
    assert (await store.counts())["done"] == 40
    # Claims of finished jobs (a late duplicate message) find nothing, grouped or not.
    again = await asyncio.gather(
        *(store.claim(r.id, now, now + timedelta(minutes=5), "w1", dead_after) for r in records)
    )
    assert again == [None] * 40


async def test_a_claim_held_by_a_live_worker_is_refused_in_a_group(container: Container) -> None:
    await _add_jobs(container, 2)
    store = container.job_store()
    now = container.clock().now()
    first, second = await store.take_due(now, 10)
    dead_after = timedelta(seconds=30)
    await container.heartbeat_store().record(Heartbeat("alive", "host", 1, now, now))
    assert await store.claim(first.id, now, now + timedelta(minutes=5), "alive", dead_after)
    later = now + timedelta(seconds=5)
    claims = await asyncio.gather(
        store.claim(first.id, later, later + timedelta(minutes=5), "other", dead_after),
        store.claim(second.id, later, later + timedelta(minutes=5), "other", dead_after),
    )
    assert claims[0] is None
    assert claims[1] is not None
    assert claims[1].id == second.id


async def test_purge_deletes_only_done_jobs_finished_before_the_cutoff(
    container: Container,
) -> None:
    await _add_jobs(container, 6)
    store = container.job_store()
    now = container.clock().now()
    records = await store.take_due(now, 10)
    old_done, older_done, new_done, failed, running = records[:5]
    for record in records[:5]:
        assert await store.claim(record.id, now, now + timedelta(minutes=5)) is not None
    two_days_ago = now - timedelta(days=2)
    await store.finish(old_done.id, two_days_ago)
    await store.finish(older_done.id, two_days_ago - timedelta(hours=1))
    await store.finish(new_done.id, now)
    await store.give_up(failed.id, "gave up", two_days_ago)
    cutoff = now - timedelta(days=1)

    assert await store.purge_done(cutoff, 1) == 1  # the limit holds
    assert await store.purge_done(cutoff, 100) == 1
    assert await store.purge_done(cutoff, 100) == 0
    statuses = await _statuses(container)
    assert old_done.id not in statuses
    assert older_done.id not in statuses
    assert statuses[new_done.id] == "done"  # too recent
    assert statuses[failed.id] == "failed"  # kept to explain what went wrong
    assert statuses[running.id] == "running"
    assert sorted(statuses.values()).count("dispatched") == 1
