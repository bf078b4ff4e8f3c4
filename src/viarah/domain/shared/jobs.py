"""Background jobs as domain values.

A use case that needs work done later adds a :class:`Job` to its unit of work's outbox;
the job commits in the same transaction as the data, and the worker runs it afterwards.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class Job:
    """``name`` selects the handler; ``payload`` is JSON-serialisable.

    ``coalesce_key``: adding a job while another job with the same key is still pending
    (committed, not yet handed to the broker) adds nothing: the pending one will do the
    work of both. Best effort: two writers racing may both add one, so a coalesced job's
    handler must (like every handler) cope with finding its work already done.
    """

    name: str
    payload: dict[str, Any] = field(default_factory=dict)
    not_before: datetime | None = None
    coalesce_key: str | None = None


class Outbox(Protocol):
    """Jobs recorded inside the current transaction."""

    def add(self, job: Job) -> None: ...


async def purge_in_batches(
    delete_batch: Callable[[int], Awaitable[int]], batch: int, max_total: int
) -> int:
    """Call ``delete_batch(n)`` (deletes up to ``n`` rows in one short statement and says
    how many) until a batch comes back short or ``max_total`` rows are gone. Returns the
    number deleted; when it equals ``max_total`` there may be more left."""
    deleted = 0
    while deleted < max_total:
        count = await delete_batch(min(batch, max_total - deleted))
        deleted += count
        if count < batch:
            break
    return deleted
