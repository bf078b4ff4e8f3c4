"""The in-process queue of ``viarah serve``: job ids go to asyncio tasks in the same loop."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence


class InProcessJobQueue:
    """An unbounded asyncio queue; consumers are started by the serve entrypoint."""

    def __init__(self) -> None:
        self._queue: asyncio.Queue[str] | None = None

    @property
    def queue(self) -> asyncio.Queue[str]:
        # Created lazily so it binds to the running loop, not the importing one.
        if self._queue is None:
            self._queue = asyncio.Queue()
        return self._queue

    def send(self, job_ids: Sequence[str]) -> None:
        for job_id in job_ids:
            self.queue.put_nowait(job_id)

    async def next_job_id(self) -> str:
        return await self.queue.get()

    def ping(self) -> bool:
        return True
