"""Outbox records and worker presence."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

#: A dispatched job not claimed within this time is handed to the broker again.
DISPATCH_TIMEOUT = timedelta(seconds=60)
#: A claimed job is claimable again after this time, even if its worker still beats.
CLAIM_TIMEOUT = timedelta(minutes=5)
#: A worker with no heartbeat for this long is dead; its running jobs are re-sent.
DEFAULT_DEAD_WORKER_AFTER = timedelta(seconds=90)


def dead_worker_after(heartbeat_seconds: float) -> timedelta:
    """Three missed heartbeats (plus slack) mean the worker is gone."""
    return timedelta(seconds=3 * heartbeat_seconds + 2)


MAX_ATTEMPTS = 12

#: The relay hands jobs to the broker in messages of up to this many ids: a broker message
#: costs the worker about as much CPU as a database statement, whatever it carries.
JOBS_PER_MESSAGE = 8
#: Done jobs are kept this long (to answer "did it run?"), then purged in batches.
DONE_JOB_RETENTION = timedelta(hours=24)
PURGE_BATCH = 5000
#: One purge run deletes at most this many; the next hourly run continues.
PURGE_MAX_PER_RUN = 200_000


class JobStatus(StrEnum):
    PENDING = "pending"  # committed, not yet handed to the broker (or handed back)
    DISPATCHED = "dispatched"  # sent to the broker, not yet claimed by a worker
    RUNNING = "running"  # claimed by a worker
    DONE = "done"
    FAILED = "failed"  # gave up after MAX_ATTEMPTS


@dataclass(frozen=True, slots=True)
class JobRecord:
    id: str
    job: str
    payload: dict[str, Any]
    status: JobStatus
    attempts: int
    created_at: datetime
    available_at: datetime


def retry_delay(attempts: int) -> timedelta:
    """Exponential backoff: 2 s, 4 s, 8 s ... capped at 10 minutes."""
    return timedelta(seconds=min(600, 2 ** max(1, attempts)))


@dataclass(frozen=True, slots=True)
class Heartbeat:
    worker_id: str
    hostname: str
    pid: int
    started_at: datetime
    last_seen_at: datetime
