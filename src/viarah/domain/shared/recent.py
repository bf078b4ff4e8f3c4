"""A process's memory of rows it read in the last second, for the hottest authentication
reads (a webhook's integration, an API token): one database round trip fewer per request
while the same credentials keep arriving.

The price, which each user documents: a change made through another process is seen
here up to :data:`RECENT_FOR` late. A change made through this process calls
:meth:`RecentReads.forget` and applies at once.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")

#: How long a read value (or its absence) is used.
RECENT_FOR = timedelta(seconds=1)
#: Entries kept at most (requests with made-up keys cannot grow the process's memory
#: without bound); the oldest goes first.
MAX_ENTRIES = 10_000


class RecentReads(Generic[K, V]):
    """Values by key, each usable for ``recent_for`` after it was read (by the Clock)."""

    def __init__(self, recent_for: timedelta = RECENT_FOR, max_entries: int = MAX_ENTRIES) -> None:
        self._recent_for = recent_for
        self._max_entries = max_entries
        self._seen: dict[K, tuple[datetime, V]] = {}

    def get(self, key: K, now: datetime) -> tuple[bool, V | None]:
        """(known, value): ``known`` is False when it was not read recently."""
        entry = self._seen.get(key)
        if entry is None:
            return False, None
        read_at, value = entry
        if not read_at <= now < read_at + self._recent_for:
            self._seen.pop(key, None)
            return False, None
        return True, value

    def put(self, key: K, value: V, now: datetime) -> None:
        self._seen.pop(key, None)  # re-inserted last: the dict's order is the age order
        if len(self._seen) >= self._max_entries:
            try:
                oldest = next(iter(self._seen), None)
            except RuntimeError:  # another thread changed the dict just then: skip
                oldest = None
            if oldest is not None:
                self._seen.pop(oldest, None)
        self._seen[key] = (now, value)

    def forget(self, key: K) -> None:
        """The row changed: the next request reads it again."""
        self._seen.pop(key, None)


async def recall(
    recent: RecentReads[K, V] | None,
    key: K,
    now: datetime,
    read: Callable[[], Awaitable[V]],
    *,
    remember: Callable[[V], bool] = lambda _value: True,
) -> V:
    """``key``'s value as read in the last second, else ``read()`` (remembered when
    ``remember`` says so). ``recent`` None: always ``read()``."""
    if recent is None:
        return await read()
    known, value = recent.get(key, now)
    if known:
        return value  # type: ignore[return-value]  # stored by put(): a V
    value = await read()
    if remember(value):
        recent.put(key, value, now)
    return value
