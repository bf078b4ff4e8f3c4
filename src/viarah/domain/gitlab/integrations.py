"""Managing an organization's GitLab integration: URL, encrypted token, webhook secret."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from viarah.domain.gitlab.access import require_manager
from viarah.domain.gitlab.client import GitLabCallFailed, GitLabClient, TokenInfo
from viarah.domain.gitlab.model import (
    AUTH_FAILED_EVENT,
    EXPIRY_WARNING_DAYS,
    TOKEN_EXPIRING_EVENT,
    AuditEvent,
    GitLabIntegration,
    TokenStatus,
)
from viarah.domain.gitlab.ports import GitLabUnitOfWork
from viarah.domain.gitlab.recent_integrations import RecentIntegrations
from viarah.domain.gitlab.urls import normalize_base_url
from viarah.domain.shared.actor import Actor
from viarah.domain.shared.clock import Clock
from viarah.domain.shared.errors import Conflict, InvalidInput
from viarah.domain.shared.ids import OrgId, UserId, new_id
from viarah.domain.shared.jobs import Job
from viarah.domain.shared.secrets import KeyedHasher, SecretBox, SecretUndecryptable

UowFactory = Callable[[], GitLabUnitOfWork]
ENCRYPTION_KEY_MISSING = (
    "cannot store a GitLab token: VIA_RAH_ENCRYPTION_KEY is not set on the server "
    "(generate one with 'viarah keys fernet')"
)
MAX_SECRET_LENGTH = 1024


class Unset:
    """Marks a field the caller did not send (as opposed to an explicit null)."""


UNSET = Unset()


@dataclass(frozen=True, slots=True)
class Validation:
    status: str  # valid | invalid | not_validated
    error_code: str | None
    username: str | None


def event_job(event_type: str, payload: dict[str, Any]) -> Job:
    """A notification event, delivered by the worker through the outbox."""
    body = {"event_id": new_id(), "event_type": event_type, **payload}
    return Job(name=f"event.{event_type}", payload=body)


def _secret(field: str, value: str) -> str:
    value = value.strip()
    if len(value) > MAX_SECRET_LENGTH:
        raise InvalidInput(field, f"must be at most {MAX_SECRET_LENGTH} characters")
    if any(ord(ch) < 33 for ch in value):
        raise InvalidInput(field, "must not contain spaces or control characters")
    return value


def audit(
    org_id: OrgId, actor: UserId | None, action: str, now: datetime, **details: Any
) -> AuditEvent:
    return AuditEvent(new_id(), org_id, actor, action, details, now)


class GitLabIntegrations:
    """Set up, inspect, validate and remove an organization's GitLab integration."""

    def __init__(
        self,
        uow: UowFactory,
        clock: Clock,
        box: SecretBox,
        hasher: KeyedHasher,
        client: GitLabClient,
        recent: RecentIntegrations | None = None,
    ) -> None:
        self._uow = uow
        self._clock = clock
        self._box = box
        self._hasher = hasher
        self._client = client
        self._recent = recent

    async def get(self, actor: Actor, org_id: str) -> GitLabIntegration | None:
        """The integration (None when not set up). Admin or PM."""
        async with self._uow() as uow:
            await require_manager(uow, actor, org_id)
            return await uow.gitlab_integrations.get(OrgId(org_id))

    async def update(
        self,
        actor: Actor,
        org_id: str,
        *,
        base_url: str | Unset = UNSET,
        token: str | Unset | None = UNSET,
        webhook_secret: str | Unset | None = UNSET,
        signing_token: str | Unset | None = UNSET,
    ) -> tuple[GitLabIntegration, Validation | None]:
        """Change the given fields (null clears a secret). A new token is validated
        against GitLab first and refused if GitLab rejects it."""
        async with self._uow() as uow:
            await require_manager(uow, actor, org_id)
            current = await uow.gitlab_integrations.get(OrgId(org_id))
        url = normalize_base_url(base_url) if isinstance(base_url, str) else None
        if current is None and url is None:
            raise InvalidInput("base_url", "is required to set up the GitLab integration")
        effective_url = url or (current.base_url if current else "")

        validation: Validation | None = None
        info: TokenInfo | None = None
        new_token = _secret("token", token) if isinstance(token, str) else None
        if isinstance(token, str) and not new_token:
            raise InvalidInput("token", "must not be empty (send null to remove the token)")
        if new_token:
            if not self._box.available:
                raise Conflict(ENCRYPTION_KEY_MISSING, code="encryption_key_missing")
            validation, info = await self._check_token(effective_url, new_token)
            if validation.status == "invalid":
                raise InvalidInput(
                    "token",
                    "GitLab rejected this token (check that it is active and has the "
                    "api or read_api scope)",
                    code="invalid_token",
                )

        now = self._clock.now()
        changed: list[str] = []
        async with self._uow() as uow:
            await require_manager(uow, actor, org_id)
            current = await uow.gitlab_integrations.get(OrgId(org_id), for_update=True)
            integration = current or GitLabIntegration(
                org_id=OrgId(org_id),
                base_url=effective_url,
                token_ciphertext=None,
                token_set_at=None,
                token_status=TokenStatus.UNKNOWN,
                token_scopes=(),
                token_expires_at=None,
                token_expiry_warned_days=None,
                webhook_secret_digest=None,
                webhook_secret_set_at=None,
                signing_token_ciphertext=None,
                created_at=now,
                updated_at=now,
            )
            if url is not None and url != integration.base_url:
                integration = replace(integration, base_url=url)
                changed.append("base_url")
            if new_token:
                integration = replace(
                    integration,
                    token_ciphertext=self._box.encrypt(new_token),
                    token_set_at=now,
                    token_status=TokenStatus.VALID
                    if validation and validation.status == "valid"
                    else TokenStatus.UNKNOWN,
                    token_scopes=info.scopes if info else (),
                    token_expires_at=info.expires_at if info else None,
                    token_expiry_warned_days=None,
                )
                changed.append("token")
            elif token is None:
                integration = replace(
                    integration,
                    token_ciphertext=None,
                    token_set_at=None,
                    token_status=TokenStatus.UNKNOWN,
                    token_scopes=(),
                    token_expires_at=None,
                    token_expiry_warned_days=None,
                )
                changed.append("token_removed")
            if isinstance(webhook_secret, str):
                secret = _secret("webhook_secret", webhook_secret)
                if len(secret) < 16:
                    raise InvalidInput("webhook_secret", "must be at least 16 characters")
                integration = replace(
                    integration,
                    webhook_secret_digest=self._hasher.digest(secret),
                    webhook_secret_set_at=now,
                )
                changed.append("webhook_secret")
            elif webhook_secret is None:
                integration = replace(
                    integration, webhook_secret_digest=None, webhook_secret_set_at=None
                )
                changed.append("webhook_secret_removed")
            if isinstance(signing_token, str):
                if not self._box.available:
                    raise Conflict(ENCRYPTION_KEY_MISSING, code="encryption_key_missing")
                value = _secret("signing_token", signing_token)
                integration = replace(
                    integration, signing_token_ciphertext=self._box.encrypt(value)
                )
                changed.append("signing_token")
            elif signing_token is None:
                integration = replace(integration, signing_token_ciphertext=None)
                changed.append("signing_token_removed")
            integration = replace(integration, updated_at=now)
            await uow.gitlab_integrations.save(integration)
            action = (
                "gitlab.integration.created" if current is None else "gitlab.integration.updated"
            )
            await uow.audit.add(audit(OrgId(org_id), actor.user_id, action, now, changed=changed))
            await uow.commit()
        self._forget(org_id)
        return integration, validation

    async def delete(self, actor: Actor, org_id: str) -> None:
        async with self._uow() as uow:
            await require_manager(uow, actor, org_id)
            if await uow.gitlab_integrations.get(OrgId(org_id)) is not None:
                await uow.gitlab_integrations.delete(OrgId(org_id))
                await uow.audit.add(
                    audit(
                        OrgId(org_id),
                        actor.user_id,
                        "gitlab.integration.deleted",
                        self._clock.now(),
                    )
                )
                await uow.commit()
        self._forget(org_id)

    def _forget(self, org_id: str) -> None:
        """Webhooks received by this process see the change at once (others within
        a second: :mod:`viarah.domain.shared.recent`)."""
        if self._recent is not None:
            self._recent.forget(OrgId(org_id))

    async def validate(self, actor: Actor, org_id: str) -> Validation:
        """Ask GitLab whether the stored token works; records the outcome."""
        async with self._uow() as uow:
            await require_manager(uow, actor, org_id)
            integration = await uow.gitlab_integrations.get(OrgId(org_id))
        if integration is None:
            return Validation("not_validated", "missing_integration", None)
        if integration.token_ciphertext is None:
            return Validation("not_validated", "missing_token", None)
        try:
            token = self._box.decrypt(integration.token_ciphertext)
        except SecretUndecryptable:
            return Validation("not_validated", "encryption_key_missing", None)
        validation, info = await self._check_token(integration.base_url, token)
        if validation.status != "not_validated":
            await self.record_token_status(
                OrgId(org_id),
                TokenStatus.VALID if validation.status == "valid" else TokenStatus.INVALID,
                info,
            )
        return validation

    async def record_token_status(
        self, org_id: OrgId, status: TokenStatus, info: TokenInfo | None = None
    ) -> None:
        """Store what GitLab said of the token; tell admins when it starts being rejected."""
        now = self._clock.now()
        async with self._uow() as uow:
            integration = await uow.gitlab_integrations.get(org_id, for_update=True)
            if integration is None or (integration.token_status is status and info is None):
                return
            updated = replace(integration, token_status=status, updated_at=now)
            if info is not None:
                updated = replace(
                    updated, token_scopes=info.scopes, token_expires_at=info.expires_at
                )
            await uow.gitlab_integrations.save(updated)
            if (
                status is TokenStatus.INVALID
                and integration.token_status is not TokenStatus.INVALID
            ):
                await self._notify_admins(
                    uow, org_id, AUTH_FAILED_EVENT, {"base_url": integration.base_url}
                )
                await uow.audit.add(audit(org_id, None, "gitlab.token.rejected", now))
            await uow.commit()

    async def warn_expiring_tokens(self) -> int:
        """Tell admins about tokens expiring within 30 and 7 days (once per threshold)."""
        now = self._clock.now()
        warned = 0
        after: OrgId | None = None
        while True:
            async with self._uow() as uow:
                batch = await uow.gitlab_integrations.with_ciphertexts(after, 200)
                for integration in batch:
                    days = self._due_warning(integration, now)
                    if days is None:
                        continue
                    await uow.gitlab_integrations.save(
                        replace(integration, token_expiry_warned_days=days)
                    )
                    await self._notify_admins(
                        uow,
                        integration.org_id,
                        TOKEN_EXPIRING_EVENT,
                        {"days": days, "expires_at": str(integration.token_expires_at)},
                    )
                    warned += 1
                await uow.commit()
            if len(batch) < 200:
                return warned
            after = batch[-1].org_id

    @staticmethod
    def _due_warning(integration: GitLabIntegration, now: datetime) -> int | None:
        if integration.token_expires_at is None or integration.token_ciphertext is None:
            return None
        left = (integration.token_expires_at - now.date()).days
        due = [d for d in EXPIRY_WARNING_DAYS if left <= d]
        if not due:
            return None
        threshold = min(due)
        already = integration.token_expiry_warned_days
        return None if already is not None and already <= threshold else threshold

    async def _notify_admins(
        self, uow: GitLabUnitOfWork, org_id: OrgId, event_type: str, payload: dict[str, Any]
    ) -> None:
        admins = await uow.org_access.admins(org_id)
        uow.outbox.add(
            event_job(event_type, {"org_id": org_id, "recipients": list(admins), **payload})
        )

    async def _check_token(self, base_url: str, token: str) -> tuple[Validation, TokenInfo | None]:
        try:
            user = await self._client.current_user(base_url, token)
        except GitLabCallFailed as exc:
            if exc.code == "auth_error":
                return Validation(
                    "invalid", f"http_{exc.status}" if exc.status else "auth_error", None
                ), None
            return Validation("not_validated", exc.code, None), None
        try:
            info: TokenInfo | None = await self._client.token_info(base_url, token)
        except GitLabCallFailed:
            info = None  # project/group tokens may not read /personal_access_tokens/self
        return Validation("valid", None, user.username), info
