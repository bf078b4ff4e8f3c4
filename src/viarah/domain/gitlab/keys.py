"""Operator tasks on stored secrets: re-encrypt under the newest key, find undecryptable ones."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from viarah.domain.gitlab.model import GitLabIntegration
from viarah.domain.gitlab.ports import GitLabUnitOfWork
from viarah.domain.shared.clock import Clock
from viarah.domain.shared.errors import Unavailable
from viarah.domain.shared.ids import OrgId
from viarah.domain.shared.secrets import SecretBox, SecretUndecryptable

UowFactory = Callable[[], GitLabUnitOfWork]
Progress = Callable[[int, int], None]
BATCH = 100
_FIELDS = ("token_ciphertext", "signing_token_ciphertext")


@dataclass(frozen=True, slots=True)
class RotationReport:
    examined: int
    rotated: int
    failed: list[str]  # "org <id>: <field>" for secrets no configured key decrypts


@dataclass(frozen=True, slots=True)
class BrokenSecret:
    org_id: OrgId
    field: str


class StoredSecrets:
    """Key rotation and diagnosis over every encrypted secret in the database."""

    def __init__(self, uow: UowFactory, clock: Clock, box: SecretBox) -> None:
        self._uow = uow
        self._clock = clock
        self._box = box

    async def rotate(self, progress: Progress | None = None) -> RotationReport:
        """Re-encrypt every secret under the newest key, one batch per transaction.

        Safe to interrupt and rerun: secrets already under the newest key are skipped.
        """
        if not self._box.available:
            raise Unavailable("VIA_RAH_ENCRYPTION_KEY is not set: there is no key to rotate to")
        async with self._uow() as uow:
            total = await uow.gitlab_integrations.count_with_ciphertexts()
        examined = rotated = 0
        failed: list[str] = []
        after: OrgId | None = None
        while True:
            async with self._uow() as uow:
                batch = await uow.gitlab_integrations.with_ciphertexts(after, BATCH)
                for integration in batch:
                    examined += 1
                    changes: dict[str, str] = {}
                    for field in _FIELDS:
                        value = getattr(integration, field)
                        if value is None or self._box.is_current(value):
                            continue
                        try:
                            changes[field] = self._box.rotate(value)
                        except SecretUndecryptable:
                            failed.append(f"org {integration.org_id}: {field}")
                    if changes:
                        updated = replace(integration, **changes, updated_at=self._clock.now())  # type: ignore[arg-type]
                        await uow.gitlab_integrations.save(updated)
                        rotated += 1
                await uow.commit()
            if progress is not None:
                progress(examined, max(total, examined))
            if len(batch) < BATCH:
                return RotationReport(examined, rotated, failed)
            after = batch[-1].org_id

    async def undecryptable(self) -> tuple[int, list[BrokenSecret]]:
        """How many secrets were checked, and those that no configured key decrypts."""
        checked = 0
        broken: list[BrokenSecret] = []
        after: OrgId | None = None
        while True:
            async with self._uow() as uow:
                batch: list[GitLabIntegration] = await uow.gitlab_integrations.with_ciphertexts(
                    after, BATCH
                )
            for integration in batch:
                for field in _FIELDS:
                    value = getattr(integration, field)
                    if value is None:
                        continue
                    checked += 1
                    try:
                        self._box.decrypt(value)
                    except SecretUndecryptable:
                        broken.append(BrokenSecret(integration.org_id, field))
            if len(batch) < BATCH:
                return checked, broken
            after = batch[-1].org_id
