"""How long finished webhook deliveries are kept.

A delivery row is small, but a busy GitLab sends many: at 1,000 webhooks a second the
table grows by ~86 million rows a day. Deliveries are listed for admins to debug their
hook (GitLab keeps its own hook log for 7 days), so finished ones are kept for a
configurable number of days and then deleted in batches. A delivery still ``received``
(waiting for the worker) is never deleted, whatever its age.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta

from viarah.domain.gitlab.ports import GitLabUnitOfWork
from viarah.domain.shared.clock import Clock
from viarah.domain.shared.jobs import Job, purge_in_batches

log = logging.getLogger("viarah.gitlab.retention")

#: Periodic (hourly), and its own follow-up when one run could not delete everything due.
PURGE_DELIVERIES_JOB = "gitlab.purge_deliveries"
#: Default of ``WEBHOOK_DELIVERY_RETENTION_DAYS``.
DEFAULT_RETENTION_DAYS = 30
#: Rows deleted per statement (each its own short transaction).
PURGE_BATCH = 5000
#: Rows one job deletes before handing the rest to a follow-up job, so that a job never
#: runs for minutes (it would outlive its claim) yet a backlog keeps shrinking.
PURGE_MAX_PER_JOB = 200_000


def purge_deliveries_job() -> Job:
    """The purge job; while one is pending, adding another adds nothing."""
    return Job(PURGE_DELIVERIES_JOB, coalesce_key=PURGE_DELIVERIES_JOB)


class DeliveryRetention:
    """Deletes finished deliveries (processed, ignored, failed) that were received more
    than ``retention_days`` ago. ``retention_days`` 0 keeps every delivery."""

    def __init__(
        self,
        uow: Callable[[], GitLabUnitOfWork],
        clock: Clock,
        retention_days: int = DEFAULT_RETENTION_DAYS,
        batch: int = PURGE_BATCH,
        max_per_job: int = PURGE_MAX_PER_JOB,
    ) -> None:
        self._uow = uow
        self._clock = clock
        self._retention_days = retention_days
        self._batch = batch
        self._max = max_per_job

    async def purge(self) -> int:
        """How many deliveries were deleted. When this job hit its limit, a follow-up
        job is queued for the rest."""
        if self._retention_days <= 0:
            return 0
        before = self._clock.now() - timedelta(days=self._retention_days)

        async def delete_batch(limit: int) -> int:
            async with self._uow() as uow:
                count = await uow.webhook_deliveries.purge_finished(before, limit)
                await uow.commit()
            return count

        deleted = await purge_in_batches(delete_batch, self._batch, self._max)
        more = deleted >= self._max  # this job's limit: maybe more to delete
        if more:
            async with self._uow() as uow:
                uow.outbox.add(purge_deliveries_job())
                await uow.commit()
        if deleted:
            log.info(
                "webhook.deliveries_purged count=%d received_before=%s more=%s",
                deleted,
                before.isoformat(),
                more,
            )
        return deleted
