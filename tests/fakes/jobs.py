"""The outbox table and the broker, in memory."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta

from viarah.domain.jobs.model import DISPATCH_TIMEOUT, JobRecord, JobStatus
from viarah.domain.jobs.ports import BrokerUnavailable


class FakeJobStore:
    """The outbox table in memory, with the claim/redelivery rules of the SQL store."""

    def __init__(self) -> None:
        self.records: dict[str, JobRecord] = {}
        self.dispatched_at: dict[str, datetime] = {}
        self.locked_until: dict[str, datetime] = {}
        self.errors: dict[str, str] = {}
        self.finished_at: dict[str, datetime] = {}

    def put(self, job_id: str, name: str, payload: dict[str, object], now: datetime) -> None:
        self.records[job_id] = JobRecord(
            job_id, name, dict(payload), JobStatus.PENDING, 0, now, now
        )

    def status(self, job_id: str) -> str:
        return self.records[job_id].status.value

    def _redeliverable(self, job_id: str, now: datetime) -> bool:
        status = self.records[job_id].status
        if status in (JobStatus.PENDING, JobStatus.DISPATCHED):
            return True
        return status is JobStatus.RUNNING and self.locked_until[job_id] < now

    async def due_for_dispatch(
        self, now: datetime, limit: int, dead_after: timedelta | None = None
    ) -> list[JobRecord]:
        due = []
        for job_id, rec in self.records.items():
            if (
                (rec.status is JobStatus.PENDING and rec.available_at <= now)
                or (
                    rec.status is JobStatus.DISPATCHED
                    and self.dispatched_at[job_id] < now - DISPATCH_TIMEOUT
                )
                or (rec.status is JobStatus.RUNNING and self.locked_until[job_id] < now)
            ):
                due.append(rec)
        due.sort(key=lambda rec: (rec.available_at, rec.id))
        return due[:limit]

    async def take_due(
        self, now: datetime, limit: int, dead_after: timedelta | None = None
    ) -> list[JobRecord]:
        due = await self.due_for_dispatch(now, limit, dead_after)
        for rec in due:
            self.records[rec.id] = replace(rec, status=JobStatus.DISPATCHED)
            self.dispatched_at[rec.id] = now
        return [self.records[rec.id] for rec in due]

    async def release(self, job_ids: list[str], now: datetime) -> None:
        for job_id in job_ids:
            rec = self.records[job_id]
            if rec.status is JobStatus.DISPATCHED and self.dispatched_at.get(job_id) == now:
                self.records[job_id] = replace(rec, status=JobStatus.PENDING)
                del self.dispatched_at[job_id]

    async def claim(
        self,
        job_id: str,
        now: datetime,
        lock_until: datetime,
        holder: str | None = None,
        dead_after: timedelta | None = None,
    ) -> JobRecord | None:
        if job_id not in self.records or not self._redeliverable(job_id, now):
            return None
        self.records[job_id] = replace(self.records[job_id], status=JobStatus.RUNNING)
        self.locked_until[job_id] = lock_until
        return self.records[job_id]

    async def finish(self, job_id: str, now: datetime) -> None:
        self.records[job_id] = replace(self.records[job_id], status=JobStatus.DONE)
        self.finished_at[job_id] = now

    async def retry_later(self, job_id: str, error: str, available_at: datetime) -> None:
        rec = self.records[job_id]
        self.records[job_id] = replace(
            rec, status=JobStatus.PENDING, attempts=rec.attempts + 1, available_at=available_at
        )
        self.errors[job_id] = error

    async def give_up(self, job_id: str, error: str, now: datetime) -> None:
        rec = self.records[job_id]
        self.records[job_id] = replace(rec, status=JobStatus.FAILED, attempts=rec.attempts + 1)
        self.errors[job_id] = error

    async def counts(self) -> dict[str, int]:
        return dict(Counter(r.status.value for r in self.records.values()))

    async def purge_done(self, finished_before: datetime, limit: int) -> int:
        old = [
            job_id
            for job_id, rec in self.records.items()
            if rec.status is JobStatus.DONE and self.finished_at[job_id] < finished_before
        ][:limit]
        for job_id in old:
            del self.records[job_id]
        return len(old)


class FakeJobQueue:
    """A broker that records what it was sent and can be switched off."""

    def __init__(self) -> None:
        self.sent: list[str] = []
        self.messages: list[list[str]] = []
        self.down = False
        #: Accept this many messages, then act as if the broker went away.
        self.fail_after: int | None = None

    def send(self, job_ids: Sequence[str]) -> None:
        if self.down or (self.fail_after is not None and len(self.messages) >= self.fail_after):
            raise BrokerUnavailable("ConnectionError")
        self.messages.append(list(job_ids))
        self.sent.extend(job_ids)
