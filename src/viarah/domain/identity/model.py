"""Users, login sessions and API tokens."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from viarah.domain.shared.actor import PlatformRole, TokenScope
from viarah.domain.shared.errors import InvalidInput
from viarah.domain.shared.ids import ApiTokenId, UserId, new_id

API_TOKEN_PREFIX = "vrak_"
SESSION_LIFETIME = timedelta(days=14)
#: ``last_used_at`` is written at most this often, so a busy token does not write per request.
LAST_USED_RESOLUTION = timedelta(minutes=1)
MIN_PASSWORD_LENGTH = 8
MAX_PASSWORD_LENGTH = 1024


def digest(secret: str) -> str:
    """SHA-256 hex digest of a high-entropy secret (tokens, session ids)."""
    return hashlib.sha256(secret.encode()).hexdigest()


def check_password_rules(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidInput("password", f"must be at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise InvalidInput("password", f"must be at most {MAX_PASSWORD_LENGTH} characters")


@dataclass(frozen=True, slots=True)
class User:
    id: UserId
    email: str
    display_name: str
    password_hash: str = field(repr=False)
    platform_role: PlatformRole
    is_active: bool
    created_at: datetime


@dataclass(frozen=True, slots=True)
class LoginSession:
    """A server-side cookie session. Only a keyed digest of the cookie value is stored
    (HMAC with ``VIA_RAH_SECRET_KEY``): a session, and the CSRF token that belongs to it,
    are valid only under the key they were issued with."""

    id: str
    token_digest: str = field(repr=False)
    user_id: UserId
    csrf_token: str = field(repr=False)
    created_at: datetime
    expires_at: datetime

    @staticmethod
    def open(
        user_id: UserId, now: datetime, cookie_digest: Callable[[str], str]
    ) -> tuple[LoginSession, str]:
        """A new session and the cookie value (shown to the browser once); the session is
        stored under ``cookie_digest(cookie value)``."""
        raw = secrets.token_urlsafe(32)
        session = LoginSession(
            id=new_id(),
            token_digest=cookie_digest(raw),
            user_id=user_id,
            csrf_token=secrets.token_urlsafe(32),
            created_at=now,
            expires_at=now + SESSION_LIFETIME,
        )
        return session, raw

    def is_live(self, now: datetime) -> bool:
        return now < self.expires_at

    def csrf_matches(self, presented: str | None) -> bool:
        return presented is not None and hmac.compare_digest(presented, self.csrf_token)


@dataclass(frozen=True, slots=True)
class ApiToken:
    """A bearer token ``vrak_<prefix>.<secret>``; only the secret's digest is stored."""

    id: ApiTokenId
    user_id: UserId
    name: str
    prefix: str
    secret_digest: str = field(repr=False)
    scope: TokenScope
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None

    @staticmethod
    def issue(
        user_id: UserId,
        name: str,
        scope: TokenScope,
        now: datetime,
        expires_at: datetime | None,
    ) -> tuple[ApiToken, str]:
        """A new token and its plaintext (shown once, never stored)."""
        prefix = secrets.token_hex(6)
        secret = secrets.token_urlsafe(32)
        token = ApiToken(
            id=ApiTokenId(new_id()),
            user_id=user_id,
            name=name,
            prefix=prefix,
            secret_digest=digest(secret),
            scope=scope,
            created_at=now,
            expires_at=expires_at,
            revoked_at=None,
            last_used_at=None,
        )
        return token, f"{API_TOKEN_PREFIX}{prefix}.{secret}"

    def is_usable(self, now: datetime) -> bool:
        if self.revoked_at is not None:
            return False
        return self.expires_at is None or now < self.expires_at

    def secret_matches(self, secret: str) -> bool:
        return hmac.compare_digest(digest(secret), self.secret_digest)

    def used(self, now: datetime) -> ApiToken | None:
        """The token with ``last_used_at`` advanced, or None if the stored value is recent."""
        if self.last_used_at is not None and now - self.last_used_at < LAST_USED_RESOLUTION:
            return None
        return replace(self, last_used_at=now)


def split_api_token(raw: str) -> tuple[str, str] | None:
    """``vrak_<prefix>.<secret>`` → (prefix, secret); None when malformed."""
    if not raw.startswith(API_TOKEN_PREFIX):
        return None
    prefix, dot, secret = raw[len(API_TOKEN_PREFIX) :].partition(".")
    if not dot or not prefix or not secret or len(prefix) > 32 or len(secret) > 128:
        return None
    return prefix, secret
