"""The integrations that webhooks were checked against in the last second, per process.

Every webhook is authenticated against its organization's integration (the secret's
digest, the signing token). Reading that row was one of a webhook's two database round
trips; a busy GitLab sends many webhooks a second to one organization, so a process
keeps what it read for :data:`RECENT_FOR`.

What that means for the operator: a change to the webhook secret or signing token made
through this process applies at once (:meth:`RecentIntegrations.forget`); one made
through another web process applies there within :data:`RECENT_FOR`.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from viarah.domain.gitlab.model import GitLabIntegration
from viarah.domain.shared.ids import OrgId

#: How long a read integration (or its absence) is used for webhooks.
RECENT_FOR = timedelta(seconds=1)
#: Organizations remembered at most (webhooks for made-up organization ids cannot grow
#: the process's memory without bound); the oldest entry goes first.
MAX_ORGS = 10_000


class RecentIntegrations:
    """A small clock-bound memory of integrations (None: the org has none), by org."""

    def __init__(self, recent_for: timedelta = RECENT_FOR, max_orgs: int = MAX_ORGS) -> None:
        self._recent_for = recent_for
        self._max_orgs = max_orgs
        self._seen: dict[OrgId, tuple[datetime, GitLabIntegration | None]] = {}

    def get(self, org_id: OrgId, now: datetime) -> tuple[bool, GitLabIntegration | None]:
        """(known, integration): ``known`` is False when it was not read recently."""
        entry = self._seen.get(org_id)
        if entry is None:
            return False, None
        read_at, integration = entry
        if not read_at <= now < read_at + self._recent_for:
            self._seen.pop(org_id, None)
            return False, None
        return True, integration

    def put(self, org_id: OrgId, integration: GitLabIntegration | None, now: datetime) -> None:
        self._seen.pop(org_id, None)  # re-inserted last: the dict's order is the age order
        if len(self._seen) >= self._max_orgs:
            oldest = next(iter(self._seen), None)
            if oldest is not None:
                self._seen.pop(oldest, None)
        self._seen[org_id] = (now, integration)

    def forget(self, org_id: OrgId) -> None:
        """The integration changed: the next webhook reads it again."""
        self._seen.pop(org_id, None)
