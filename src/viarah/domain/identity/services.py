"""Identity use cases: users, logging in and out, API tokens."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from viarah.domain.identity.model import (
    ApiToken,
    LoginSession,
    User,
    check_password_rules,
    split_api_token,
)
from viarah.domain.identity.ports import IdentityUnitOfWork, PasswordHasher
from viarah.domain.shared.actor import Actor, PlatformRole, TokenScope
from viarah.domain.shared.clock import Clock
from viarah.domain.shared.errors import Conflict, Forbidden, InvalidInput, NotFound, Unauthenticated
from viarah.domain.shared.ids import ApiTokenId, UserId, is_valid_id, new_id
from viarah.domain.shared.recent import RecentReads, recall
from viarah.domain.shared.secrets import KeyedHasher
from viarah.domain.shared.text import clean_text, normalize_email

UowFactory = Callable[[], IdentityUnitOfWork]
MAX_TOKEN_LIFETIME_DAYS = 3650
INVALID_LOGIN = "email or password is incorrect"
#: Session cookies are stored as the server secret's HMAC of this prefix + the cookie.
SESSION_DIGEST_PREFIX = "session:"


@dataclass(frozen=True, slots=True)
class OpenedSession:
    session: LoginSession
    cookie_value: str
    user: User


@dataclass(frozen=True, slots=True)
class IssuedToken:
    token: ApiToken
    plaintext: str


class Users:
    """Creating and reading user accounts."""

    def __init__(self, uow: UowFactory, clock: Clock, hasher: PasswordHasher) -> None:
        self._uow = uow
        self._clock = clock
        self._hasher = hasher

    async def create(
        self,
        email: str,
        password: str,
        display_name: str = "",
        *,
        platform_admin: bool = False,
    ) -> User:
        """Register a user; Conflict when the e-mail is already registered."""
        email = normalize_email(email)
        check_password_rules(password)
        name = clean_text("display_name", display_name, max_length=200, required=False)
        user = User(
            id=UserId(new_id()),
            email=email,
            display_name=name or email.split("@", 1)[0],
            password_hash=self._hasher.hash(password),
            platform_role=PlatformRole.ADMIN if platform_admin else PlatformRole.USER,
            is_active=True,
            created_at=self._clock.now(),
        )
        async with self._uow() as uow:
            if await uow.users.get_by_email(email) is not None:
                raise Conflict(f"a user with email {email} already exists")
            await uow.users.add(user)
            await uow.commit()
        return user

    async def get(self, user_id: UserId) -> User:
        async with self._uow() as uow:
            user = await uow.users.get(user_id)
        if user is None or not user.is_active:
            raise NotFound("user not found")
        return user


class RecentTokens(RecentReads[str, tuple[ApiToken, User] | None]):
    """API tokens (with their user) by prefix, as read for a recent request: a client
    sending many requests costs one token lookup a second, not one per request. A token
    revoked through this process is forgotten at once; other processes refuse it within
    a second. Unknown prefixes are not remembered (a new token works at once)."""


class Authentication:
    """Turning credentials (password, session cookie, API token) into an :class:`Actor`."""

    def __init__(
        self,
        uow: UowFactory,
        clock: Clock,
        hasher: PasswordHasher,
        signer: KeyedHasher,
        recent_tokens: RecentTokens | None = None,
    ) -> None:
        self._uow = uow
        self._clock = clock
        self._hasher = hasher
        self._signer = signer
        self._recent_tokens = recent_tokens
        # Verifying against a real hash when the user is unknown keeps the response time
        # the same, so login timing does not reveal which e-mails are registered.
        self._dummy_hash = hasher.hash(new_id())

    async def login(self, email: str, password: str) -> OpenedSession:
        """Open a server-side session; Unauthenticated on any mismatch."""
        try:
            email = normalize_email(email)
        except InvalidInput:
            raise Unauthenticated(INVALID_LOGIN) from None
        now = self._clock.now()
        async with self._uow() as uow:
            user = await uow.users.get_by_email(email)
            if user is None or not user.is_active:
                self._hasher.verify(self._dummy_hash, password)
                raise Unauthenticated(INVALID_LOGIN)
            if not self._hasher.verify(user.password_hash, password):
                raise Unauthenticated(INVALID_LOGIN)
            if self._hasher.needs_rehash(user.password_hash):
                user = replace(user, password_hash=self._hasher.hash(password))
                await uow.users.update(user)
            session, cookie_value = LoginSession.open(user.id, now, self._cookie_digest)
            await uow.sessions.add(session)
            await uow.commit()
        return OpenedSession(session=session, cookie_value=cookie_value, user=user)

    def _cookie_digest(self, cookie_value: str) -> str:
        """The session cookie's digest, keyed with the server secret (``VIA_RAH_SECRET_KEY``)
        and kept apart from the other keyed digests by its prefix."""
        return self._signer.digest(SESSION_DIGEST_PREFIX + cookie_value)

    async def logout(self, actor: Actor) -> None:
        """End the actor's cookie session server-side; later use of the cookie fails."""
        if actor.session_id is None:
            raise Forbidden("logout ends a cookie session; revoke API tokens instead")
        async with self._uow() as uow:
            await uow.sessions.delete(actor.session_id)
            await uow.commit()

    async def from_session(self, cookie_value: str) -> tuple[Actor, LoginSession]:
        """The actor behind a session cookie, and the session (for its CSRF token)."""
        now = self._clock.now()
        async with self._uow().read_only() as uow:
            found = await uow.sessions.get_with_user(self._cookie_digest(cookie_value))
        session, user = found if found is not None else (None, None)
        if session is None or user is None or not session.is_live(now) or not user.is_active:
            raise Unauthenticated("session expired or invalid; log in again")
        actor = Actor(user_id=user.id, platform_role=user.platform_role, session_id=session.id)
        return actor, session

    async def from_api_token(self, raw: str) -> Actor:
        """The actor behind ``vrak_<prefix>.<secret>``; records ``last_used_at``."""
        parts = split_api_token(raw)
        if parts is None:
            raise Unauthenticated("malformed API token")
        prefix, secret = parts
        now = self._clock.now()
        found = await self._token_with_user(prefix, now)
        token, user = found if found is not None else (None, None)
        if token is None or user is None or not token.secret_matches(secret):
            raise Unauthenticated("invalid API token")
        if not token.is_usable(now):
            raise Unauthenticated("API token expired or revoked")
        if not user.is_active:
            raise Unauthenticated("invalid API token")
        touched = token.used(now)
        if touched is not None:  # at most once per LAST_USED_RESOLUTION
            async with self._uow() as uow:
                await uow.api_tokens.touch(token.id, now)
                await uow.commit()
            if self._recent_tokens is not None:
                self._recent_tokens.put(prefix, (touched, user), now)
        return Actor(
            user_id=user.id,
            platform_role=user.platform_role,
            scope=token.scope,
            api_token_id=token.id,
        )

    async def _token_with_user(self, prefix: str, now: datetime) -> tuple[ApiToken, User] | None:
        async def read() -> tuple[ApiToken, User] | None:
            async with self._uow().read_only() as uow:
                return await uow.api_tokens.get_with_user(prefix)

        # Unknown prefixes are not remembered: a token created elsewhere works at once.
        return await recall(self._recent_tokens, prefix, now, read, remember=bool)

    async def purge_expired_sessions(self) -> int:
        """Delete sessions past their expiry; returns how many were removed."""
        async with self._uow() as uow:
            removed = await uow.sessions.delete_expired(self._clock.now())
            await uow.commit()
        return removed


class ApiTokens:
    """Personal API tokens: issue, list, revoke."""

    def __init__(
        self, uow: UowFactory, clock: Clock, recent_tokens: RecentTokens | None = None
    ) -> None:
        self._uow = uow
        self._clock = clock
        self._recent_tokens = recent_tokens

    async def create(
        self,
        actor: Actor,
        name: str,
        scope: str = "read",
        expires_days: int | None = None,
    ) -> IssuedToken:
        """Issue a token for the actor; the plaintext is returned once and never stored."""
        if actor.scope is not None:
            raise Forbidden("API tokens can only be created from a login session")
        return await self.issue(actor.user_id, name, scope, expires_days)

    async def issue(
        self, user_id: UserId, name: str, scope: str = "read", expires_days: int | None = None
    ) -> IssuedToken:
        """Issue a token for ``user_id`` (operators use this through the CLI)."""
        name = clean_text("name", name, max_length=100)
        try:
            token_scope = TokenScope(scope)
        except ValueError:
            raise InvalidInput("scope", "must be 'read' or 'write'") from None
        now = self._clock.now()
        expires_at = None
        if expires_days is not None:
            if not 1 <= expires_days <= MAX_TOKEN_LIFETIME_DAYS:
                raise InvalidInput(
                    "expires_days", f"must be between 1 and {MAX_TOKEN_LIFETIME_DAYS}"
                )
            expires_at = now + timedelta(days=expires_days)
        token, plaintext = ApiToken.issue(user_id, name, token_scope, now, expires_at)
        async with self._uow() as uow:
            if await uow.users.get(user_id) is None:
                raise NotFound("user not found")
            await uow.api_tokens.add(token)
            await uow.commit()
        return IssuedToken(token=token, plaintext=plaintext)

    async def issue_for_email(
        self, email: str, name: str, scope: str = "read", expires_days: int | None = None
    ) -> IssuedToken:
        async with self._uow() as uow:
            user = await uow.users.get_by_email(normalize_email(email))
        if user is None:
            raise NotFound(f"no user with email {normalize_email(email)}")
        return await self.issue(user.id, name, scope, expires_days)

    async def list_tokens(self, actor: Actor) -> list[ApiToken]:
        async with self._uow() as uow:
            return await uow.api_tokens.list_for_user(actor.user_id)

    async def revoke(self, actor: Actor, token_id: str) -> None:
        """Revoke one of the actor's own tokens (idempotent); NotFound for anyone else's."""
        async with self._uow() as uow:
            token = (
                await uow.api_tokens.get(ApiTokenId(token_id)) if is_valid_id(token_id) else None
            )
            if token is None or token.user_id != actor.user_id:
                raise NotFound("API token not found")
            if token.revoked_at is None:
                await uow.api_tokens.update(replace(token, revoked_at=self._clock.now()))
                await uow.commit()
        if self._recent_tokens is not None:
            self._recent_tokens.forget(token.prefix)
