"""The GitLab API as the domain sees it: the port and the values it returns."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Protocol

from viarah.domain.gitlab.urls import GitLabRef


@dataclass(frozen=True, slots=True)
class Assignee:
    username: str
    name: str


@dataclass(frozen=True, slots=True)
class GitLabObject:
    """The fields of an issue or merge request that links cache."""

    title: str
    state: str  # opened | closed | merged | locked
    labels: tuple[str, ...]
    assignees: tuple[Assignee, ...]
    web_url: str
    updated_at: datetime | None


@dataclass(frozen=True, slots=True)
class GitLabUser:
    username: str


@dataclass(frozen=True, slots=True)
class TokenInfo:
    scopes: tuple[str, ...]
    expires_at: date | None


class GitLabCallFailed(Exception):
    """A GitLab call that did not succeed; ``code`` is stable and safe to show.

    Codes: ``auth_error`` (401/403), ``not_found`` (404), ``rate_limited`` (429, with
    ``retry_after`` seconds), ``network_error`` (no answer, timeout, refused address),
    ``http_<n>`` (any other status), ``bad_response`` (not the JSON GitLab sends).
    The token never appears in the message.
    """

    def __init__(
        self,
        code: str,
        message: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.status = status
        self.retry_after = retry_after


class GitLabClient(Protocol):
    """Calls to one GitLab instance (``base_url``) with a personal/project access token."""

    async def fetch_object(self, base_url: str, token: str, ref: GitLabRef) -> GitLabObject:
        """``GET /api/v4/projects/:path/(issues|merge_requests)/:iid``."""
        ...

    async def current_user(self, base_url: str, token: str) -> GitLabUser:
        """``GET /api/v4/user`` — proves the token works."""
        ...

    async def token_info(self, base_url: str, token: str) -> TokenInfo:
        """``GET /api/v4/personal_access_tokens/self`` — scopes and expiry."""
        ...
