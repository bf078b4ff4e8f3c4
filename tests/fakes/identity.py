"""In-memory identity repositories and a fast password hasher."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import TypeVar

from tests.fakes.memory import MemoryDatabase, _Repo
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


Held = TypeVar("Held", LoginSession, ApiToken)


def _with_user(db: MemoryDatabase, found: Held | None) -> tuple[Held, User] | None:
    user = db.users.get(found.user_id) if found is not None else None
    return (found, user) if found is not None and user is not None else None


class FakeSessions(_Repo):
    async def add(self, session: LoginSession) -> None:
        self.db.sessions[session.id] = session

    async def get_with_user(self, token_digest: str) -> tuple[LoginSession, User] | None:
        found = next((s for s in self.db.sessions.values() if s.token_digest == token_digest), None)
        return _with_user(self.db, found)

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

    async def get_with_user(self, prefix: str) -> tuple[ApiToken, User] | None:
        found = next((t for t in self.db.api_tokens.values() if t.prefix == prefix), None)
        return _with_user(self.db, found)

    async def list_for_user(self, user_id: UserId) -> list[ApiToken]:
        return sorted(
            (t for t in self.db.api_tokens.values() if t.user_id == user_id),
            key=lambda t: (t.created_at, t.id),
        )

    async def touch(self, token_id: ApiTokenId, when: datetime) -> None:
        token = self.db.api_tokens.get(token_id)
        if token is not None:
            self.db.api_tokens[token_id] = replace(token, last_used_at=when)

    async def update(self, token: ApiToken) -> None:
        self.db.api_tokens[token.id] = token
