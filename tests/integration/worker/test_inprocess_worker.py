"""The in-process queue of ``viarah serve``: relay and consumers as asyncio tasks, on SQLite."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from dependency_injector import providers

from tests.conftest import base_env
from viarah.container import PURGE_SESSIONS_JOB, Container, build_container, close_container
from viarah.domain.shared.jobs import Job
from viarah.entrypoints.worker.background import PeriodicJob
from viarah.entrypoints.worker.inprocess import InProcessWorker
from viarah.settings import load_settings


@pytest.fixture
async def container(sqlite_url: str) -> AsyncIterator[Container]:
    container = build_container(load_settings(base_env(DATABASE_URL=sqlite_url)).require_valid())
    yield container
    await close_container(container)


async def _eventually(predicate: Callable[[], Awaitable[bool]]) -> None:
    async with asyncio.timeout(10):
        while not await predicate():  # noqa: ASYNC110 - polls database state
            await asyncio.sleep(0.05)


async def test_jobs_run_once_in_process_and_heartbeats_are_recorded(
    container: Container,
) -> None:
    calls: list[dict[str, Any]] = []

    async def handler(payload: dict[str, Any]) -> None:
        calls.append(payload)

    container.job_handlers.override(
        providers.Object({"test.record": handler, PURGE_SESSIONS_JOB: handler})
    )
    worker = InProcessWorker(
        container,
        heartbeat_seconds=1,
        consumers=2,
        periodic=(PeriodicJob(PURGE_SESSIONS_JOB, 3600),),
        say=lambda _line: None,
    )
    await worker.start()
    try:
        async with container.uow() as uow:
            uow.outbox.add(Job("test.record", {"n": 7}))
            await uow.commit()

        async def both_done() -> bool:
            return (await container.job_store().counts())["done"] == 2

        await _eventually(both_done)
        age = await container.presence().last_heartbeat_age()
        assert age is not None
        assert age.total_seconds() < 5
    finally:
        await worker.stop()
    assert sorted(map(str, calls)) == ["{'n': 7}", "{}"]  # the job and the scheduled purge
    counts = await container.job_store().counts()
    assert counts["done"] == 2
    assert counts["pending"] == counts["dispatched"] == counts["running"] == 0


async def test_stop_lets_a_running_job_finish(container: Container) -> None:
    started = asyncio.Event()

    async def slow(_payload: dict[str, Any]) -> None:
        started.set()
        await asyncio.sleep(0.5)

    container.job_handlers.override(providers.Object({"test.slow": slow}))
    worker = InProcessWorker(container, heartbeat_seconds=30, say=lambda _line: None)
    await worker.start()
    async with container.uow() as uow:
        uow.outbox.add(Job("test.slow"))
        await uow.commit()
    await asyncio.wait_for(started.wait(), timeout=10)
    await worker.stop()
    assert (await container.job_store().counts())["done"] == 1
