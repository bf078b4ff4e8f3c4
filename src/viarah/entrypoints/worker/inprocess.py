"""The worker of ``viarah serve`` without a broker: asyncio tasks in the web server's loop.

The relay hands due job ids to the in-process queue; N consumer tasks take them and call
``JobRunner.run``. Jobs still live in the outbox table, so a restart loses nothing: what
was dispatched but not finished is re-sent after its dispatch or claim timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import Protocol

from viarah.container import Container, in_process_queue
from viarah.entrypoints.worker.background import PeriodicJob, WorkerBackground
from viarah.entrypoints.worker.status import Say, say

log = logging.getLogger("viarah.worker")


class JobIdSource(Protocol):
    """The consuming side of the in-process queue."""

    async def next_job_id(self) -> str: ...


class InProcessWorker:
    """Background loops plus ``consumers`` job-running tasks, started and stopped as hooks."""

    def __init__(
        self,
        container: Container,
        *,
        heartbeat_seconds: float,
        consumers: int = 4,
        periodic: Sequence[PeriodicJob] = (),
        stop_timeout: float = 8.0,
        say: Say = say,
    ) -> None:
        self._container = container
        self._consumers = consumers
        self._stop_timeout = stop_timeout
        self._source: JobIdSource = in_process_queue(container)
        self._stopping = False
        self._busy: set[asyncio.Task[None]] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self._background_task: asyncio.Task[None] | None = None
        self.background = WorkerBackground(
            relay=container.relay(),
            presence=container.presence(),
            uow=lambda: container.uow(),
            heartbeat_seconds=heartbeat_seconds,
            say=say,
            on_ready=lambda: None,
            on_heartbeat=lambda: None,
            periodic=periodic,
        )

    async def start(self) -> None:
        """Start the loops and consumers in the running event loop (a startup hook)."""
        self._stopping = False
        self._background_task = asyncio.create_task(self.background.run())
        self._tasks = [asyncio.create_task(self._consume()) for _ in range(self._consumers)]
        log.info("worker.started mode=in-process consumers=%d", self._consumers)

    async def stop(self) -> None:
        """Stop taking jobs, let running ones finish (up to the timeout), then cancel."""
        self._stopping = True
        if self._background_task is not None:
            self.background.stop()
            done, _ = await asyncio.wait([self._background_task], timeout=4)
            if not done:
                self._background_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._background_task
        idle = [task for task in self._tasks if task not in self._busy]
        for task in idle:
            task.cancel()
        busy = [task for task in self._tasks if task in self._busy]
        if busy:
            _, late = await asyncio.wait(busy, timeout=self._stop_timeout)
            for task in late:
                log.warning("worker.job_abandoned; its claim expires and it runs again")
                task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []
        log.info("worker.stopped mode=in-process")

    async def _consume(self) -> None:
        task = asyncio.current_task()
        assert task is not None
        while not self._stopping:
            job_id = await self._source.next_job_id()
            self._busy.add(task)
            try:
                await self._container.job_runner().run(job_id, holder=self.background.worker_id)
            except Exception as exc:  # the job stays in the outbox and is re-sent later
                log.warning("job.not_run id=%s error=%s", job_id, type(exc).__name__)
            finally:
                self._busy.discard(task)
