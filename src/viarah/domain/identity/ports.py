"""What the identity context needs from the outside world."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from viarah.domain.identity.model import ApiToken, LoginSession, User
from viarah.domain.shared.ids import ApiTokenId, UserId
from viarah.domain.shared.uow import UnitOfWork


class UserRepository(Protocol):
    async def add(self, user: User) -> None:
        """Store a new user; Conflict if the e-mail is taken."""
        ...

    async def get(self, user_id: UserId) -> User | None: ...

    async def get_by_email(self, email: str) -> User | None: ...

    async def update(self, user: User) -> None: ...


class SessionRepository(Protocol):
    async def add(self, session: LoginSession) -> None: ...

    async def get_with_user(self, token_digest: str) -> tuple[LoginSession, User] | None:
        """The session and its user, in one lookup (every cookie-authenticated request)."""
        ...

    async def delete(self, session_id: str) -> None: ...

    async def delete_expired(self, before: datetime) -> int:
        """Remove sessions that expired before the given instant; returns how many."""
        ...


class ApiTokenRepository(Protocol):
    async def add(self, token: ApiToken) -> None: ...

    async def get(self, token_id: ApiTokenId) -> ApiToken | None: ...

    async def get_with_user(self, prefix: str) -> tuple[ApiToken, User] | None:
        """The token and its user, in one lookup (every token-authenticated request)."""
        ...

    async def list_for_user(self, user_id: UserId) -> list[ApiToken]: ...

    async def update(self, token: ApiToken) -> None: ...

    async def touch(self, token_id: ApiTokenId, when: datetime) -> None:
        """Record ``last_used_at`` only (never rewrites a revocation made meanwhile)."""
        ...


class IdentityUnitOfWork(UnitOfWork, Protocol):
    users: UserRepository
    sessions: SessionRepository
    api_tokens: ApiTokenRepository


class PasswordHasher(Protocol):
    """Slow, salted password hashing (argon2 in production)."""

    def hash(self, password: str) -> str: ...

    def verify(self, password_hash: str, password: str) -> bool:
        """True when ``password`` matches; False (never an exception) otherwise."""
        ...

    def needs_rehash(self, password_hash: str) -> bool: ...
