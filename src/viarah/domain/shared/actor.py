"""Who is acting: the authenticated principal handed to every use case."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from viarah.domain.shared.ids import UserId


class PlatformRole(StrEnum):
    ADMIN = "admin"
    USER = "user"


class TokenScope(StrEnum):
    READ = "read"
    WRITE = "write"


@dataclass(frozen=True, slots=True)
class Actor:
    """An authenticated user, and how they authenticated.

    ``scope`` is ``None`` for a cookie session (full rights of the user) and the API
    token's scope otherwise.
    """

    user_id: UserId
    platform_role: PlatformRole = PlatformRole.USER
    scope: TokenScope | None = None
    session_id: str | None = None
    api_token_id: str | None = None

    @property
    def can_write(self) -> bool:
        return self.scope is None or self.scope is TokenScope.WRITE
