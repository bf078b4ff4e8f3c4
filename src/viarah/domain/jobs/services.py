"""Running the transactional outbox: relay, job execution, worker presence."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from viarah.domain.jobs.model import (
    CLAIM_TIMEOUT,
    DEFAULT_DEAD_WORKER_AFTER,
    DONE_JOB_RETENTION,
    JOBS_PER_MESSAGE,
    MAX_ATTEMPTS,
    PURGE_BATCH,
    PURGE_MAX_PER_RUN,
    Heartbeat,
    retry_delay,
)
from viarah.domain.jobs.ports import (
    BrokerUnavailable,
    GiveUpHandler,
    HeartbeatStore,
    JobHandler,
    JobQueue,
    JobStore,
    Probe,
)
from viarah.domain.shared.clock import Clock
from viarah.domain.shared.errors import DomainError
from viarah.domain.shared.jobs import purge_in_batches
from viarah.domain.shared.telemetry import (
    JOB_DONE,
    JOB_FAILED,
    JOB_RETRY,
    JOB_SECONDS,
    JOB_UNKNOWN,
    JOBS,
    OUTBOX_RELAYED,
    NullTelemetry,
    Telemetry,
)

log = logging.getLogger("viarah.jobs")


class OutboxRelay:
    """Hands committed jobs to the broker, and re-sends what no worker acknowledged.

    A broker outage only delays jobs: they stay ``pending`` and the next pass sends them.
    """

    def __init__(
        self,
        store: JobStore,
        queue: JobQueue,
        clock: Clock,
        batch: int = 500,
        dead_worker_after: timedelta = DEFAULT_DEAD_WORKER_AFTER,
        telemetry: Telemetry | None = None,
        jobs_per_message: int = JOBS_PER_MESSAGE,
    ) -> None:
        self._store = store
        self._queue = queue
        self._clock = clock
        self._batch = batch
        self._per_message = max(1, jobs_per_message)
        self._dead_after = dead_worker_after
        self._telemetry: Telemetry = telemetry if telemetry is not None else NullTelemetry()
        self._broker_down = False

    @property
    def broker_down(self) -> bool:
        return self._broker_down

    async def relay_once(self) -> int:
        """Dispatch every due job once; returns how many were handed to the broker.

        The due jobs are taken (marked ``dispatched``) before they are sent, so that
        several relays never send the same job; they go out ``jobs_per_message`` ids per
        broker message. Those the broker did not accept are released to ``pending`` at
        once; if even that fails (the database went away too), they are re-sent once
        their dispatch times out: delayed, never lost.
        """
        now = self._clock.now()
        due = await self._store.take_due(now, self._batch, self._dead_after)
        sent = 0
        failure: Exception | None = None
        try:
            for start in range(0, len(due), self._per_message):
                message = [record.id for record in due[start : start + self._per_message]]
                self._queue.send(message)
                sent += len(message)
        except BrokerUnavailable as exc:
            if not self._broker_down:
                log.warning("broker: unreachable, jobs wait in the outbox (%s)", exc)
            self._broker_down = True
            failure = exc
        except Exception as exc:  # unexpected: release what was not sent, then raise
            failure = exc
        else:
            if self._broker_down:
                log.warning("broker: reachable again, relaying pending jobs")
            self._broker_down = False
        if sent:
            self._telemetry.count(OUTBOX_RELAYED, sent)
        if failure is not None:
            await self._store.release([record.id for record in due[sent:]], now)
            if not isinstance(failure, BrokerUnavailable):
                raise failure
        return sent


class OutboxPurge:
    """Deletes done jobs older than :data:`DONE_JOB_RETENTION` from the outbox, in
    batches (each its own short statement), so that the table every relay pass and
    claim works on stays the size of the recent work instead of growing forever."""

    def __init__(
        self,
        store: JobStore,
        clock: Clock,
        retention: timedelta = DONE_JOB_RETENTION,
        batch: int = PURGE_BATCH,
        max_per_run: int = PURGE_MAX_PER_RUN,
    ) -> None:
        self._store = store
        self._clock = clock
        self._retention = retention
        self._batch = batch
        self._max = max_per_run

    async def purge(self) -> int:
        """How many done jobs were deleted (at most ``max_per_run``; the rest next time)."""
        before = self._clock.now() - self._retention

        async def delete_batch(limit: int) -> int:
            return await self._store.purge_done(before, limit)

        deleted = await purge_in_batches(delete_batch, self._batch, self._max)
        if deleted:
            log.info("outbox.purged jobs=%d finished_before=%s", deleted, before.isoformat())
        return deleted


class JobRunner:
    """Runs one job by id, at most once in effect, recording the outcome in the outbox.

    Each run that claims its job is counted in ``telemetry`` (``jobs`` by job name and
    outcome: done, retry, failed, unknown) and its handler's duration observed
    (``job_seconds``), once the outcome is stored.
    """

    def __init__(
        self,
        store: JobStore,
        clock: Clock,
        handlers: Mapping[str, JobHandler],
        dead_worker_after: timedelta = DEFAULT_DEAD_WORKER_AFTER,
        telemetry: Telemetry | None = None,
        on_give_up: Mapping[str, GiveUpHandler] | None = None,
    ) -> None:
        self._store = store
        self._clock = clock
        self._handlers = handlers
        self._on_give_up = on_give_up or {}
        self._dead_after = dead_worker_after
        self._telemetry: Telemetry = telemetry if telemetry is not None else NullTelemetry()

    async def run(self, job_id: str, holder: str | None = None) -> bool:
        """True if this call ran the job; False if it was done already or held elsewhere.

        ``holder`` is the running worker's id (the one its heartbeats carry): if that
        worker dies mid-job, others see its heartbeat stop and run the job again.
        """
        now = self._clock.now()
        record = await self._store.claim(job_id, now, now + CLAIM_TIMEOUT, holder, self._dead_after)
        if record is None:
            return False
        handler = self._handlers.get(record.job)
        if handler is None:
            await self._store.give_up(record.id, f"no handler for job {record.job!r}", now)
            log.error("job.unknown id=%s job=%s", record.id, record.job)
            self._telemetry.count(JOBS, job=record.job, outcome=JOB_UNKNOWN)
            return True
        started = time.perf_counter()
        try:
            await handler(record.payload)
        except Exception as exc:
            elapsed = time.perf_counter() - started
            attempts = record.attempts + 1
            reason = exc.message if isinstance(exc, DomainError) else type(exc).__name__
            later = self._clock.now()
            if attempts >= MAX_ATTEMPTS:
                await self._store.give_up(record.id, reason, later)
                outcome = JOB_FAILED
                log.error(
                    "job.failed id=%s job=%s attempts=%d error=%s",
                    record.id,
                    record.job,
                    attempts,
                    reason,
                )
                await self._gave_up(record.job, record.payload, reason)
            else:
                await self._store.retry_later(record.id, reason, later + retry_delay(attempts))
                outcome = JOB_RETRY
                log.warning(
                    "job.retry id=%s job=%s attempts=%d error=%s",
                    record.id,
                    record.job,
                    attempts,
                    reason,
                )
            self._record(record.job, outcome, elapsed)
            return True
        elapsed = time.perf_counter() - started
        await self._store.finish(record.id, self._clock.now())
        log.info("job.done id=%s job=%s", record.id, record.job)
        self._record(record.job, JOB_DONE, elapsed)
        return True

    async def _gave_up(self, job: str, payload: dict[str, Any], reason: str) -> None:
        """Tell the job's owner it failed for good (e.g. a webhook delivery is marked
        failed instead of staying received); a failure to tell is logged."""
        handler = self._on_give_up.get(job)
        if handler is None:
            return
        try:
            await handler(payload, reason)
        except Exception as exc:
            log.error("job.give_up_hook_failed job=%s error=%s", job, type(exc).__name__)

    def _record(self, job: str, outcome: str, seconds: float) -> None:
        self._telemetry.count(JOBS, job=job, outcome=outcome)
        self._telemetry.observe(JOB_SECONDS, seconds, job=job)


class WorkerPresence:
    """Heartbeats recorded by workers and read by ``/readyz``."""

    def __init__(self, store: HeartbeatStore, clock: Clock) -> None:
        self._store = store
        self._clock = clock

    async def beat(self, worker_id: str, hostname: str, pid: int, started_at: datetime) -> None:
        """Record that ``worker_id`` is alive now."""
        now = self._clock.now()
        await self._store.record(Heartbeat(worker_id, hostname, pid, started_at, now))

    async def last_heartbeat_age(self) -> timedelta | None:
        """Time since the freshest heartbeat of any worker; None if none ever beat."""
        latest = await self._store.latest()
        if latest is None:
            return None
        return max(timedelta(0), self._clock.now() - latest.last_seen_at)


@dataclass(frozen=True, slots=True)
class ReadinessReport:
    database: bool
    broker: bool
    last_heartbeat_age: timedelta | None

    @property
    def ready(self) -> bool:
        return self.database and self.broker


class SystemHealth:
    """Liveness and readiness of the whole stack, as the web API reports them."""

    def __init__(self, database: Probe, broker: Probe, presence: WorkerPresence) -> None:
        self._database = database
        self._broker = broker
        self._presence = presence

    async def database_ok(self) -> bool:
        return await self._database()

    async def readiness(self) -> ReadinessReport:
        database = await self._database()
        age = None
        if database:
            try:
                age = await self._presence.last_heartbeat_age()
            except Exception:
                log.warning("readiness.heartbeat_unreadable", exc_info=True)
        return ReadinessReport(
            database=database, broker=await self._broker(), last_heartbeat_age=age
        )
