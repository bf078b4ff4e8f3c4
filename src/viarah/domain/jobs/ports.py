"""What background work needs: the job store (outbox table), the broker, presence."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from typing import Any, Protocol

from viarah.domain.jobs.model import Heartbeat, JobRecord


class JobStore(Protocol):
    """The outbox table. Each method is one short, atomic operation."""

    async def take_due(
        self, now: datetime, limit: int, dead_after: timedelta | None = None
    ) -> list[JobRecord]:
        """Mark ``dispatched`` (at ``now``) and return, oldest first, up to ``limit`` jobs
        due for the broker: pending jobs that are due, dispatched ones nobody claimed in
        time, and running ones whose claim expired or whose worker has not beaten for
        ``dead_after``. Concurrent callers (one relay per worker) never get the same job."""
        ...

    async def release(self, job_ids: list[str], now: datetime) -> None:
        """Jobs :meth:`take_due` returned at ``now`` that never reached the broker: back
        to ``pending`` (unless a worker claimed one meanwhile), to be sent again."""
        ...

    async def claim(
        self,
        job_id: str,
        now: datetime,
        lock_until: datetime,
        holder: str | None = None,
        dead_after: timedelta | None = None,
    ) -> JobRecord | None:
        """Atomically take a job to run for worker ``holder``; None if it is done, failed
        or held by a live worker (one that beat within ``dead_after``)."""
        ...

    async def finish(self, job_id: str, now: datetime) -> None: ...

    async def retry_later(self, job_id: str, error: str, available_at: datetime) -> None: ...

    async def give_up(self, job_id: str, error: str, now: datetime) -> None: ...

    async def counts(self) -> dict[str, int]:
        """How many jobs are in each status."""
        ...

    async def purge_done(self, finished_before: datetime, limit: int) -> int:
        """Delete up to ``limit`` jobs that finished ``done`` before ``finished_before``;
        how many were deleted. Failed jobs are kept (they explain what went wrong)."""
        ...


class JobQueue(Protocol):
    """The broker: carries job ids to workers."""

    def send(self, job_ids: Sequence[str]) -> None:
        """Hand these jobs to the broker as one message (workers run each id);
        raises :class:`BrokerUnavailable` when down: then none of them was sent."""
        ...


class BrokerUnavailable(Exception):
    """The broker could not be reached; the job stays in the outbox."""


class HeartbeatStore(Protocol):
    async def record(self, heartbeat: Heartbeat) -> None: ...

    async def latest(self) -> Heartbeat | None: ...


JobHandler = Callable[[dict[str, Any]], Awaitable[None]]
#: Told that a job failed for good: its payload and the last error.
GiveUpHandler = Callable[[dict[str, Any], str], Awaitable[None]]


class Probe(Protocol):
    """Answers whether one dependency (database, broker) is reachable right now."""

    async def __call__(self) -> bool: ...
