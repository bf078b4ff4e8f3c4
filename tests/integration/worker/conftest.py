"""Worker fixtures: a real dramatiq worker on real Redis and PostgreSQL, in this process.

The worker's container lives on the worker's event-loop thread (dramatiq's AsyncIO
middleware); test data goes through that same container on that loop (``worker.run``).
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlsplit

import psycopg
import pytest
from dependency_injector import providers

from tests.conftest import base_env
from viarah.container import Container, build_container, close_container
from viarah.domain.jobs.ports import JobHandler
from viarah.domain.shared.jobs import Job
from viarah.entrypoints.worker.runtime import DramatiqWorkerRuntime
from viarah.settings import load_settings

T = TypeVar("T")


def wait_for(predicate: Callable[[], bool], timeout: float = 15.0, what: str = "") -> None:
    """Poll ``predicate`` until true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what or predicate}")
        time.sleep(0.05)


def outbox_rows(postgres_url: str) -> list[dict[str, Any]]:
    """Every outbox row, read directly from the database."""
    with psycopg.connect(postgres_url) as conn:
        cursor = conn.execute("SELECT job, status, attempts, last_error FROM outbox ORDER BY job")
        names = [column.name for column in cursor.description or ()]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def with_container(database_url: str, use: Callable[[Container], Awaitable[T]]) -> T:
    """Run ``use`` with a throwaway container on a throwaway loop (test setup)."""

    async def run() -> T:
        container = build_container(load_settings(base_env(DATABASE_URL=database_url)))
        try:
            return await use(container)
        finally:
            await close_container(container)

    return asyncio.run(run())


@dataclass
class RunningWorker:
    """A started :class:`DramatiqWorkerRuntime` plus what the tests observe of it."""

    runtime: DramatiqWorkerRuntime
    lines: list[str] = field(default_factory=list)

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 10) -> T:
        """Run ``coro`` on the worker's event loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.runtime.loop).result(timeout)

    def commit_job(self, name: str, payload: dict[str, Any] | None = None) -> None:
        """Commit one job through a unit of work's outbox, as a use case would."""

        async def commit() -> None:
            async with self.runtime.container.uow() as uow:
                uow.outbox.add(Job(name, payload or {}))
                await uow.commit()

        self.run(commit())


class WorkerFactory:
    """Starts runtimes with test handlers; stops them all at teardown."""

    def __init__(self, postgres_url: str, redis_url: str) -> None:
        self.postgres_url = postgres_url
        self.redis_url = redis_url
        self._running: list[RunningWorker] = []

    def start(
        self, handlers: dict[str, JobHandler], *, broker_url: str | None = None
    ) -> RunningWorker:
        settings = load_settings(
            base_env(DATABASE_URL=self.postgres_url, BROKER_URL=broker_url or self.redis_url)
        ).require_valid()
        lines: list[str] = []
        lock = threading.Lock()

        def say(line: str) -> None:
            with lock:
                lines.append(line)

        runtime = DramatiqWorkerRuntime(
            settings,
            threads=2,
            say=say,
            on_ready=lambda: say("worker: ready"),
            on_heartbeat=lambda: say("heartbeat: alive"),
        )
        runtime.container.job_handlers.override(providers.Object(handlers))
        running = RunningWorker(runtime, lines)
        runtime.start()
        self._running.append(running)
        return running

    def stop_all(self) -> None:
        for running in self._running:
            running.runtime.stop(timeout=5)
        self._running.clear()


@pytest.fixture
def workers(postgres_url: str, redis_url: str) -> Iterator[WorkerFactory]:
    factory = WorkerFactory(postgres_url, redis_url)
    yield factory
    factory.stop_all()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class TcpForwarder:
    """Forwards 127.0.0.1:``port`` to Redis once started: a broker that comes back."""

    def __init__(self, port: int, target_url: str) -> None:
        target = urlsplit(target_url)
        self.port = port
        self.target_host = target.hostname or "127.0.0.1"
        self.target_port = target.port or 6379
        #: The same Redis database as ``target_url``, reached through this forwarder.
        self.url = f"redis://127.0.0.1:{port}{target.path}"
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection(
            self.target_host, self.target_port
        )
        await asyncio.gather(
            self._pipe(reader, upstream_writer), self._pipe(upstream_reader, writer)
        )

    def start(self) -> None:
        async def listen() -> None:
            self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)

        self._thread.start()
        asyncio.run_coroutine_threadsafe(listen(), self._loop).result(5)

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def stop(self) -> None:
        if self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(5)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)
        self._loop.close()
