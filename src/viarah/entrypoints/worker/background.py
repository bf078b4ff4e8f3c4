"""The loops every worker runs beside its consumers, on the worker's event loop.

- relay: every ~0.2 s hand due outbox jobs to the broker (and re-send unacknowledged ones);
- heartbeat: record :class:`WorkerPresence` every ``WORKER_HEARTBEAT_SECONDS``;
- schedule: add periodic jobs (session purge) to the outbox;
- broker watch: ping the broker so an outage is reported even when no job is due.

Each loop survives database and broker outages: it reports one line when a dependency
goes away and one when it is back, and keeps retrying.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Protocol, Self

from viarah.domain.jobs.services import OutboxRelay, WorkerPresence
from viarah.domain.shared.errors import DomainError
from viarah.domain.shared.jobs import Job, Outbox
from viarah.entrypoints.worker.status import Outage, Say

log = logging.getLogger("viarah.worker")

RELAY_INTERVAL_SECONDS = 0.2
#: Slower polling while the database or the broker is away.
OUTAGE_INTERVAL_SECONDS = 2.0
BROKER_WATCH_SECONDS = 1.0
#: The session purge is scheduled this often (and once at worker start).
PURGE_INTERVAL_SECONDS = 3600.0


@dataclass(frozen=True, slots=True)
class PeriodicJob:
    """A job added to the outbox every ``every_seconds`` (first at start), unless one is
    pending already."""

    name: str
    every_seconds: float


class OutboxWriter(Protocol):
    """The part of a unit of work the scheduler uses: add jobs, commit."""

    @property
    def outbox(self) -> Outbox: ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    async def commit(self) -> None: ...


def describe(exc: BaseException) -> str:
    """A short, secret-free reason: a domain message or just the exception type."""
    return exc.message if isinstance(exc, DomainError) else type(exc).__name__


def new_worker_id() -> str:
    """``host:pid:random``, unique per worker process start."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class WorkerBackground:
    """Runs the relay, heartbeat, schedule and broker-watch loops until cancelled."""

    def __init__(
        self,
        *,
        relay: OutboxRelay,
        presence: WorkerPresence,
        uow: Callable[[], OutboxWriter],
        heartbeat_seconds: float,
        say: Say,
        on_ready: Callable[[], None],
        on_heartbeat: Callable[[], None],
        broker_ping: Callable[[], bool] | None = None,
        periodic: Sequence[PeriodicJob] = (),
        relay_interval: float = RELAY_INTERVAL_SECONDS,
        worker_id: str | None = None,
    ) -> None:
        self._relay = relay
        self._presence = presence
        self._uow = uow
        self._heartbeat_seconds = heartbeat_seconds
        self._on_ready = on_ready
        self._on_heartbeat = on_heartbeat
        self._broker_ping = broker_ping
        self._periodic = tuple(periodic)
        self._relay_interval = relay_interval
        self.database = Outage("database", say)
        self.broker = Outage("broker", say)
        self.worker_id = worker_id or new_worker_id()
        self._started_at = datetime.now(UTC)
        self._stopping = asyncio.Event()
        #: Last answer of the broker watch; while Redis does not answer the relay skips its
        #: (blocking) sends instead of stalling the event loop on connect timeouts.
        self._broker_answers = True

    def stop(self) -> None:
        """Ask every loop to finish at its next pause (call on the worker's loop); loops are
        not cancelled mid-query, so no connection is torn down half-way."""
        self._stopping.set()

    async def _pause(self, seconds: float) -> bool:
        """Sleep ``seconds``; True when asked to stop meanwhile."""
        try:
            await asyncio.wait_for(self._stopping.wait(), timeout=seconds)
        except TimeoutError:
            return False
        return True

    async def run(self) -> None:
        """Announce readiness, then run every loop until :meth:`stop` (or cancellation)."""
        self._on_ready()
        loops = [self._relay_loop(), self._heartbeat_loop()]
        if self._broker_ping is not None:
            loops.append(self._broker_watch_loop())
        if self._periodic:
            loops.append(self._schedule_loop())
        tasks = [asyncio.create_task(loop) for loop in loops]
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    async def relay_once(self) -> int:
        """One relay pass; database and broker outages are reported, not raised."""
        try:
            sent = await self._relay.relay_once()
        except Exception as exc:
            self.database.down(describe(exc))
            log.debug("relay.failed", exc_info=True)
            return 0
        self.database.up()
        if self._broker_ping is None:  # no watch loop: the relay's view is the only one
            if self._relay.broker_down:
                self.broker.down("jobs wait in the outbox")
            else:
                self.broker.up()
        return sent

    async def _relay_loop(self) -> None:
        while not self._stopping.is_set():
            if self._broker_answers:
                await self.relay_once()
            slow = self.database.is_down or self._relay.broker_down or not self._broker_answers
            if await self._pause(OUTAGE_INTERVAL_SECONDS if slow else self._relay_interval):
                return

    async def beat(self) -> None:
        """Record one heartbeat (a database outage is reported, not raised)."""
        try:
            await self._presence.beat(
                self.worker_id, socket.gethostname(), os.getpid(), self._started_at
            )
        except Exception as exc:
            self.database.down(describe(exc))
            log.debug("heartbeat.failed", exc_info=True)
        else:
            self.database.up()

    async def _heartbeat_loop(self) -> None:
        while not self._stopping.is_set():
            await self.beat()
            self._on_heartbeat()
            if await self._pause(self._heartbeat_seconds):
                return

    async def _broker_watch_loop(self) -> None:
        assert self._broker_ping is not None
        while not self._stopping.is_set():
            answers = self._broker_answers = await asyncio.to_thread(self._broker_ping)
            if not answers or self._relay.broker_down:
                self.broker.down("jobs wait in the outbox")
            else:
                self.broker.up()
            if await self._pause(BROKER_WATCH_SECONDS):
                return

    async def schedule(self, name: str) -> bool:
        """Add one job to the outbox; False (reported) when the database is away."""
        try:
            async with self._uow() as uow:
                # Coalesced: several workers (or a worker that was away) add one.
                uow.outbox.add(Job(name, coalesce_key=name))
                await uow.commit()
        except Exception as exc:
            self.database.down(describe(exc))
            log.debug("schedule.failed job=%s", name, exc_info=True)
            return False
        log.info("schedule.added job=%s", name)
        return True

    async def _schedule_loop(self) -> None:
        loop = asyncio.get_running_loop()
        next_at = {job.name: loop.time() for job in self._periodic}
        while not self._stopping.is_set():
            now = loop.time()
            for job in self._periodic:
                if next_at[job.name] <= now:
                    done = await self.schedule(job.name)
                    delay = job.every_seconds if done else OUTAGE_INTERVAL_SECONDS
                    next_at[job.name] = now + delay
            if await self._pause(max(0.05, min(next_at.values()) - loop.time())):
                return
