"""The outbox relay and the job runner through the real Redis broker and a real dramatiq
worker, on real PostgreSQL."""

from __future__ import annotations

import asyncio
import threading
from datetime import timedelta
from typing import Any

import pytest

from tests.integration.worker.conftest import (
    TcpForwarder,
    WorkerFactory,
    free_port,
    outbox_rows,
    wait_for,
    with_container,
)
from viarah.container import Container
from viarah.domain.jobs.model import JobStatus
from viarah.domain.shared.jobs import Job

pytestmark = [pytest.mark.postgres, pytest.mark.redis]


def _statuses(url: str) -> list[str]:
    return [row["status"] for row in outbox_rows(url)]


def test_a_committed_job_runs_exactly_once(workers: WorkerFactory) -> None:
    calls: list[dict[str, Any]] = []

    async def handler(payload: dict[str, Any]) -> None:
        calls.append(payload)

    worker = workers.start({"test.record": handler})
    wait_for(lambda: "worker: ready" in worker.lines, what="worker: ready")
    worker.commit_job("test.record", {"n": 1})

    wait_for(lambda: _statuses(workers.postgres_url) == ["done"], what="the job to finish")
    # Several more relay passes (every 0.2 s) must not hand the finished job out again.
    background = worker.runtime.background
    assert background is not None
    passes = [worker.run(background.relay_once()) for _ in range(3)]
    assert passes == [0, 0, 0]
    assert calls == [{"n": 1}]
    assert outbox_rows(workers.postgres_url)[0]["attempts"] == 0
    assert worker.lines.count("worker: ready") == 1
    wait_for(lambda: "heartbeat: alive" in worker.lines, what="a heartbeat")


def test_jobs_run_on_uvloop(workers: WorkerFactory) -> None:
    loops: list[str] = []

    async def handler(_payload: dict[str, Any]) -> None:
        loops.append(type(asyncio.get_running_loop()).__module__)

    worker = workers.start({"test.loop": handler})
    wait_for(lambda: "worker: ready" in worker.lines, what="worker: ready")
    worker.commit_job("test.loop", {})
    wait_for(lambda: bool(loops), what="the job to run")
    assert loops == ["uvloop"]
    assert type(worker.runtime.loop).__module__ == "uvloop"


def test_a_failing_job_is_retried_later_with_its_attempts_recorded(
    workers: WorkerFactory,
) -> None:
    calls: list[str] = []

    async def flaky(_payload: dict[str, Any]) -> None:
        calls.append("called")
        if len(calls) == 1:
            raise RuntimeError("first attempt fails")

    worker = workers.start({"test.flaky": flaky})
    worker.commit_job("test.flaky")

    wait_for(lambda: len(calls) == 1, what="the first attempt")
    wait_for(lambda: _statuses(workers.postgres_url) == ["pending"], what="the retry to be due")
    row = outbox_rows(workers.postgres_url)[0]
    assert row["attempts"] == 1
    assert row["last_error"] == "RuntimeError"

    # retry_delay(1) is 2 s: the relay hands the job out again after it.
    wait_for(lambda: _statuses(workers.postgres_url) == ["done"], what="the retry to succeed")
    assert len(calls) == 2
    assert outbox_rows(workers.postgres_url)[0]["attempts"] == 1


def test_a_job_whose_claim_expired_runs_again(workers: WorkerFactory) -> None:
    calls: list[str] = []

    async def handler(_payload: dict[str, Any]) -> None:
        calls.append("called")

    async def orphan(container: Container) -> None:
        # A worker claimed the job and died: it is "running" and its claim has expired.
        async with container.uow() as uow:
            uow.outbox.add(Job("test.orphan"))
            await uow.commit()
        store = container.job_store()
        now = container.clock().now()
        (record,) = await store.due_for_dispatch(now, 10)
        claimed = await store.claim(record.id, now, now - timedelta(seconds=1))
        assert claimed is not None
        assert claimed.status is JobStatus.RUNNING

    with_container(workers.postgres_url, orphan)  # before any worker runs
    assert _statuses(workers.postgres_url) == ["running"]

    workers.start({"test.orphan": handler})
    wait_for(lambda: _statuses(workers.postgres_url) == ["done"], what="the orphan to re-run")
    assert calls == ["called"]


def test_graceful_stop_lets_the_running_job_finish(workers: WorkerFactory) -> None:
    started = threading.Event()

    async def slow(_payload: dict[str, Any]) -> None:
        started.set()
        await asyncio.sleep(1.0)

    worker = workers.start({"test.slow": slow})
    worker.commit_job("test.slow")
    wait_for(started.is_set, what="the slow job to start")
    worker.runtime.stop(timeout=5)
    assert _statuses(workers.postgres_url) == ["done"]


def test_broker_outage_keeps_jobs_in_the_outbox_until_redis_is_back(
    workers: WorkerFactory,
) -> None:
    calls: list[str] = []

    async def handler(_payload: dict[str, Any]) -> None:
        calls.append("called")

    forwarder = TcpForwarder(free_port(), workers.redis_url)  # nothing listens there yet
    worker = workers.start({"test.delayed": handler}, broker_url=forwarder.url)
    worker.commit_job("test.delayed")
    try:
        wait_for(
            lambda: any(line.startswith("broker: unreachable") for line in worker.lines),
            what="the outage to be reported",
        )
        relay = worker.runtime.container.relay()

        def relayed_nothing_and_found_the_broker_down() -> bool:
            # A pass that ran beside one of the worker's own may find the job taken by
            # that pass: it sends nothing and learns nothing about the broker. Try again.
            return worker.run(relay.relay_once()) == 0 and relay.broker_down

        wait_for(relayed_nothing_and_found_the_broker_down, what="a pass to find Redis away")
        wait_for(lambda: _statuses(workers.postgres_url) == ["pending"], what="the job back")
        assert calls == []

        forwarder.start()  # Redis is reachable again on the same URL
        wait_for(lambda: _statuses(workers.postgres_url) == ["done"], what="the job to run")
        wait_for(lambda: "broker: reachable again" in worker.lines, what="the recovery line")
    finally:
        workers.stop_all()
        forwarder.stop()
    assert calls == ["called"]
    outage_lines = [line for line in worker.lines if line.startswith("broker:")]
    assert len(outage_lines) == 2, outage_lines


def test_jobs_sharing_a_message_all_run_once(workers: WorkerFactory) -> None:
    """The relay packs several job ids into one broker message; each runs exactly once."""
    calls: list[int] = []

    async def handler(payload: dict[str, Any]) -> None:
        await asyncio.sleep(0.05)
        calls.append(payload["n"])

    worker = workers.start({"test.many": handler})

    async def commit_many() -> None:
        async with worker.runtime.container.uow() as uow:
            for n in range(20):
                uow.outbox.add(Job("test.many", {"n": n}))
            await uow.commit()

    worker.run(commit_many())
    wait_for(lambda: _statuses(workers.postgres_url) == ["done"] * 20, what="every job to finish")
    assert sorted(calls) == list(range(20))


def test_a_stopping_worker_hands_unstarted_jobs_back(workers: WorkerFactory) -> None:
    """Jobs of an in-flight message that have not started when the stop begins go back to
    the broker (the stop waits only for running ones) and another worker runs them."""
    started: list[int] = []
    two_running = threading.Event()

    async def slow(payload: dict[str, Any]) -> None:
        started.append(payload["n"])
        if len(started) == 2:
            two_running.set()
        await asyncio.sleep(1.0)

    first = workers.start({"test.slow": slow})  # two threads: two jobs at a time

    async def commit_four() -> None:
        async with first.runtime.container.uow() as uow:
            for n in range(4):
                uow.outbox.add(Job("test.slow", {"n": n}))
            await uow.commit()

    first.run(commit_four())
    assert two_running.wait(10), "two jobs should have started"
    first.runtime.stop(timeout=5)
    statuses = sorted(_statuses(workers.postgres_url))
    assert statuses == ["dispatched", "dispatched", "done", "done"]
    assert len(started) == 2

    workers.start({"test.slow": slow})
    wait_for(lambda: _statuses(workers.postgres_url) == ["done"] * 4, what="the rest to run")
    assert sorted(started) == [0, 1, 2, 3]
