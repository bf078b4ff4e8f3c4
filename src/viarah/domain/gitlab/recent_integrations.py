"""The integrations that webhooks were checked against in the last second, per process.

Every webhook is authenticated against its organization's integration (the secret's
digest, the signing token). Reading that row was one of a webhook's two database round
trips; a busy GitLab sends many webhooks a second to one organization, so a process
keeps what it read for a second (:mod:`viarah.domain.shared.recent`).

What that means for the operator: a change to the webhook secret or signing token made
through this process applies at once; one made through another web process applies
there within a second.
"""

from __future__ import annotations

from viarah.domain.gitlab.model import GitLabIntegration
from viarah.domain.shared.ids import OrgId
from viarah.domain.shared.recent import RecentReads


class RecentIntegrations(RecentReads[OrgId, GitLabIntegration | None]):
    """An org's integration (None: it has none), as read for a recent webhook."""
