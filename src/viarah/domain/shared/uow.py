"""The unit-of-work contract shared by every bounded context.

Each context declares the repositories it needs in its own ``ports.py`` as a Protocol
that extends :class:`UnitOfWork`; one adapter implements them all.
"""

from __future__ import annotations

from types import TracebackType
from typing import Protocol, Self

from viarah.domain.shared.jobs import Outbox


class UnitOfWork(Protocol):
    """One transaction. ``async with uow:`` opens it; leaving without commit rolls back."""

    outbox: Outbox

    def read_only(self) -> Self:
        """Declare (before ``async with``) that this unit of work only reads: the adapter
        may run each read on its own, seeing what was committed when it ran, and
        refuses ``commit()``."""
        ...

    def single_write(self) -> Self:
        """Declare (before ``async with``) that this unit of work reads, then makes at most
        one write: a single repository call that is atomic by itself and carries its own
        jobs (the outbox stays empty). The adapter may then run every statement on its own,
        without a transaction around them; ``commit()`` still ends the work."""
        ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    async def commit(self) -> None: ...

    async def rollback(self) -> None: ...
