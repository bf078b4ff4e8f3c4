"""Repositories of the identity context: users, login sessions, API tokens."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa

from viarah.adapters.db import tables as t
from viarah.adapters.db.base import SqlRepository
from viarah.domain.identity.model import ApiToken, LoginSession, User
from viarah.domain.shared.actor import PlatformRole, TokenScope
from viarah.domain.shared.ids import (
    ApiTokenId,
    UserId,
)


def _user(row: sa.Row[Any], prefix: str = "") -> User:
    m = row._mapping
    return User(
        id=UserId(m[prefix + "id"]),
        email=m[prefix + "email"],
        display_name=m[prefix + "display_name"],
        password_hash=m[prefix + "password_hash"],
        platform_role=PlatformRole(m[prefix + "platform_role"]),
        is_active=m[prefix + "is_active"],
        created_at=m[prefix + "created_at"],
    )


#: The user's columns, labelled ``holder_*``, to select beside a row that belongs to them.
_HOLDER = [column.label(f"holder_{column.name}") for column in t.users.c]


def _with_holder(table: sa.Table, where: sa.ColumnElement[bool]) -> sa.Select[Any]:
    """``table``'s row and its user's (``holder_*``), in one query."""
    return sa.select(table, *_HOLDER).join(t.users, t.users.c.id == table.c.user_id).where(where)


# Built once: they run on every authenticated request.
_SESSION_WITH_USER = _with_holder(
    t.login_sessions, t.login_sessions.c.token_digest == sa.bindparam("token_digest")
)
_TOKEN_WITH_USER = _with_holder(t.api_tokens, t.api_tokens.c.prefix == sa.bindparam("prefix"))


def _user_values(user: User) -> dict[str, Any]:
    return {
        "id": user.id,
        "email": user.email,
        "display_name": user.display_name,
        "password_hash": user.password_hash,
        "platform_role": user.platform_role.value,
        "is_active": user.is_active,
        "created_at": user.created_at,
    }


class SqlUserRepository(SqlRepository):
    async def add(self, user: User) -> None:
        await self._insert(
            t.users, _user_values(user), f"a user with email {user.email} already exists"
        )

    async def get(self, user_id: UserId) -> User | None:
        row = await self._one(sa.select(t.users).where(t.users.c.id == user_id))
        return _user(row) if row else None

    async def get_by_email(self, email: str) -> User | None:
        row = await self._one(sa.select(t.users).where(t.users.c.email == email))
        return _user(row) if row else None

    async def update(self, user: User) -> None:
        values = _user_values(user)
        await self._conn.execute(t.users.update().where(t.users.c.id == user.id).values(**values))


def _session(row: sa.Row[Any]) -> LoginSession:
    return LoginSession(
        id=row.id,
        token_digest=row.token_digest,
        user_id=UserId(row.user_id),
        csrf_token=row.csrf_token,
        created_at=row.created_at,
        expires_at=row.expires_at,
    )


class SqlSessionRepository(SqlRepository):
    async def add(self, session: LoginSession) -> None:
        await self._conn.execute(
            t.login_sessions.insert().values(
                id=session.id,
                token_digest=session.token_digest,
                user_id=session.user_id,
                csrf_token=session.csrf_token,
                created_at=session.created_at,
                expires_at=session.expires_at,
            )
        )

    async def get_with_user(self, token_digest: str) -> tuple[LoginSession, User] | None:
        row = (await self._conn.execute(_SESSION_WITH_USER, {"token_digest": token_digest})).first()
        return (_session(row), _user(row, "holder_")) if row else None

    async def delete(self, session_id: str) -> None:
        await self._conn.execute(
            t.login_sessions.delete().where(t.login_sessions.c.id == session_id)
        )

    async def delete_expired(self, before: datetime) -> int:
        result = await self._conn.execute(
            t.login_sessions.delete().where(t.login_sessions.c.expires_at < before)
        )
        return int(result.rowcount or 0)


def _token(row: sa.Row[Any]) -> ApiToken:
    return ApiToken(
        id=ApiTokenId(row.id),
        user_id=UserId(row.user_id),
        name=row.name,
        prefix=row.prefix,
        secret_digest=row.secret_digest,
        scope=TokenScope(row.scope),
        created_at=row.created_at,
        expires_at=row.expires_at,
        revoked_at=row.revoked_at,
        last_used_at=row.last_used_at,
    )


class SqlApiTokenRepository(SqlRepository):
    async def add(self, token: ApiToken) -> None:
        await self._insert(
            t.api_tokens,
            {
                "id": token.id,
                "user_id": token.user_id,
                "name": token.name,
                "prefix": token.prefix,
                "secret_digest": token.secret_digest,
                "scope": token.scope.value,
                "created_at": token.created_at,
                "expires_at": token.expires_at,
                "revoked_at": token.revoked_at,
                "last_used_at": token.last_used_at,
            },
            "token prefix collision; try again",
        )

    async def get(self, token_id: ApiTokenId) -> ApiToken | None:
        row = await self._one(sa.select(t.api_tokens).where(t.api_tokens.c.id == token_id))
        return _token(row) if row else None

    async def get_with_user(self, prefix: str) -> tuple[ApiToken, User] | None:
        row = (await self._conn.execute(_TOKEN_WITH_USER, {"prefix": prefix})).first()
        return (_token(row), _user(row, "holder_")) if row else None

    async def list_for_user(self, user_id: UserId) -> list[ApiToken]:
        rows = await self._all(
            sa.select(t.api_tokens)
            .where(t.api_tokens.c.user_id == user_id)
            .order_by(t.api_tokens.c.created_at, t.api_tokens.c.id)
        )
        return [_token(r) for r in rows]

    async def touch(self, token_id: ApiTokenId, when: datetime) -> None:
        await self._conn.execute(
            t.api_tokens.update().where(t.api_tokens.c.id == token_id).values(last_used_at=when)
        )

    async def update(self, token: ApiToken) -> None:
        await self._conn.execute(
            t.api_tokens.update()
            .where(t.api_tokens.c.id == token.id)
            .values(
                name=token.name,
                revoked_at=token.revoked_at,
                last_used_at=token.last_used_at,
                expires_at=token.expires_at,
            )
        )
