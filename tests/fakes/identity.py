"""In-memory identity repositories and a fast password hasher."""

from __future__ import annotations

from datetime import datetime

from tests.fakes.memory import _Repo
from viarah.domain.identity.model import ApiToken, LoginSession, User
from viarah.domain.shared.errors import Conflict
from viarah.domain.shared.ids import ApiTokenId, UserId


class FakePasswordHasher:
    """Reversible 'hashing' that keeps the hasher's contract, fast enough for unit tests."""

    def __init__(self) -> None:
        self.version = "v1"

    def hash(self, password: str) -> str:
        return f"fake-{self.version}${password[::-1]}"

    def verify(self, password_hash: str, password: str) -> bool:
        return password_hash.split("$", 1)[-1] == password[::-1]

    def needs_rehash(self, password_hash: str) -> bool:
        return not password_hash.startswith(f"fake-{self.version}$")


class FakeUsers(_Repo):
    async def add(self, user: User) -> None:
        if any(u.email == user.email for u in self.db.users.values()):
            raise Conflict("email taken")
        self.db.users[user.id] = user

    async def get(self, user_id: UserId) -> User | None:
        return self.db.users.get(user_id)

    async def get_by_email(self, email: str) -> User | None:
        return next((u for u in self.db.users.values() if u.email == email), None)

    async def update(self, user: User) -> None:
        self.db.users[user.id] = user


class FakeSessions(_Repo):
    async def add(self, session: LoginSession) -> None:
        self.db.sessions[session.id] = session

    async def get_by_digest(self, token_digest: str) -> LoginSession | None:
        return next((s for s in self.db.sessions.values() if s.token_digest == token_digest), None)

    async def delete(self, session_id: str) -> None:
        self.db.sessions.pop(session_id, None)

    async def delete_expired(self, before: datetime) -> int:
        expired = [k for k, s in self.db.sessions.items() if s.expires_at < before]
        for key in expired:
            del self.db.sessions[key]
        return len(expired)


class FakeApiTokens(_Repo):
    async def add(self, token: ApiToken) -> None:
        self.db.api_tokens[token.id] = token

    async def get(self, token_id: ApiTokenId) -> ApiToken | None:
        return self.db.api_tokens.get(token_id)

    async def get_by_prefix(self, prefix: str) -> ApiToken | None:
        return next((t for t in self.db.api_tokens.values() if t.prefix == prefix), None)

    async def list_for_user(self, user_id: UserId) -> list[ApiToken]:
        return sorted(
            (t for t in self.db.api_tokens.values() if t.user_id == user_id),
            key=lambda t: (t.created_at, t.id),
        )

    async def update(self, token: ApiToken) -> None:
        self.db.api_tokens[token.id] = token
