"""GitLab webhooks: accepted in milliseconds, stored before the answer, never lost.

Only the identity of the changed object is taken from a payload; its current state is
always fetched from GitLab by the refresh, so a forged or stale payload changes nothing.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from viarah.domain.gitlab.access import require_manager
from viarah.domain.gitlab.links import refresh_job
from viarah.domain.gitlab.model import DeliveryStatus, GitLabIntegration, WebhookDelivery
from viarah.domain.gitlab.ports import GitLabUnitOfWork
from viarah.domain.gitlab.urls import MAX_IID, MAX_PROJECT_PATH_LENGTH, ObjectKind
from viarah.domain.shared.actor import Actor
from viarah.domain.shared.clock import Clock
from viarah.domain.shared.errors import Forbidden, InvalidInput, NotFound
from viarah.domain.shared.ids import OrgId, is_valid_id, new_id
from viarah.domain.shared.jobs import Job
from viarah.domain.shared.secrets import KeyedHasher, SecretBox, SecretUndecryptable
from viarah.domain.shared.text import storable

log = logging.getLogger("viarah.gitlab.webhooks")
UowFactory = Callable[[], GitLabUnitOfWork]
PROCESS_JOB = "gitlab.process_delivery"
SIGNATURE_WINDOW = timedelta(minutes=5)
MAX_PAGE = 100
_KINDS = {"issue": ObjectKind.ISSUE, "work_item": ObjectKind.ISSUE, "merge_request": ObjectKind.MR}
_SUPPORTED_EVENTS = {
    "Issue Hook",
    "Merge Request Hook",
    "Confidential Issue Hook",
    "Work Item Hook",
}


@dataclass(frozen=True, slots=True)
class Classified:
    project_path: str | None
    kind: ObjectKind | None
    iid: int | None
    action: str | None

    @property
    def supported(self) -> bool:
        return self.project_path is not None and self.kind is not None and self.iid is not None


def classify(event_type: str, payload: Any) -> Classified:
    """Which issue/MR a payload is about; unsupported events identify nothing."""
    nothing = Classified(None, None, None, None)
    if event_type not in _SUPPORTED_EVENTS or not isinstance(payload, dict):
        return nothing
    kind = _KINDS.get(str(payload.get("object_kind", "")))
    project = payload.get("project")
    attributes = payload.get("object_attributes")
    if kind is None or not isinstance(project, dict) or not isinstance(attributes, dict):
        return nothing
    path = project.get("path_with_namespace")
    iid = attributes.get("iid")
    if not isinstance(path, str) or not path or len(path) > MAX_PROJECT_PATH_LENGTH:
        return nothing
    if not storable(path):
        return nothing
    if not isinstance(iid, int) or isinstance(iid, bool) or not 1 <= iid <= MAX_IID:
        return nothing
    action = attributes.get("action")
    if not isinstance(action, str) or not storable(action):
        action = None
    return Classified(path, kind, iid, action)


def idempotency_key(headers: Mapping[str, str], body: bytes) -> str:
    """GitLab's ``Idempotency-Key`` (stable across retries and "Resend"); else the event
    UUID plus the payload hash (recursive hooks share one event UUID)."""
    key = headers.get("idempotency-key", "").strip()
    if key:
        return f"key:{key[:200]}"
    event_uuid = headers.get("x-gitlab-event-uuid", "").strip()[:100]
    return f"uuid:{event_uuid}:{hashlib.sha256(body).hexdigest()}"


def verify_signature(secret: str, headers: Mapping[str, str], body: bytes, now: datetime) -> None:
    """Check GitLab's ``webhook-signature`` (HMAC-SHA256 of ``id.timestamp.body``)."""
    webhook_id = headers.get("webhook-id", "")
    stamp = headers.get("webhook-timestamp", "")
    signatures = headers.get("webhook-signature", "")
    if not webhook_id or not stamp or not signatures:
        raise Forbidden("webhook signature headers are missing")
    try:
        sent_at = datetime.fromtimestamp(int(stamp), UTC)
    except (ValueError, OverflowError, OSError):
        raise Forbidden("webhook-timestamp is not a Unix time") from None
    if abs(now - sent_at) > SIGNATURE_WINDOW:
        raise Forbidden("webhook-timestamp is outside the 5-minute window")
    if secret.startswith("whsec_"):
        try:
            key = base64.b64decode(secret[len("whsec_") :], validate=True)
        except (binascii.Error, ValueError):
            key = secret.encode()
    else:
        key = secret.encode()
    expected = base64.b64encode(
        hmac.new(key, f"{webhook_id}.{stamp}.".encode() + body, hashlib.sha256).digest()
    ).decode()
    for candidate in signatures.split():
        version, _, value = candidate.partition(",")
        if version == "v1" and hmac.compare_digest(value, expected):
            return
    raise Forbidden("webhook signature does not match")


def encode_cursor(delivery: WebhookDelivery) -> str:
    raw = f"{delivery.received_at.isoformat()}|{delivery.id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        stamp, _, delivery_id = raw.partition("|")
        when = datetime.fromisoformat(stamp)
    except (ValueError, UnicodeDecodeError, binascii.Error):
        raise InvalidInput("cursor", "is not a cursor returned by this endpoint") from None
    if when.tzinfo is None or not is_valid_id(delivery_id):
        raise InvalidInput("cursor", "is not a cursor returned by this endpoint")
    return when, delivery_id


class GitLabWebhooks:
    """Receiving, processing and listing webhook deliveries."""

    def __init__(
        self,
        uow: UowFactory,
        clock: Clock,
        hasher: KeyedHasher,
        box: SecretBox,
    ) -> None:
        self._uow = uow
        self._clock = clock
        self._hasher = hasher
        self._box = box

    async def receive(self, org_id: str, headers: Mapping[str, str], body: bytes) -> str:
        """Authenticate and store a delivery with its processing job; ``accepted`` or
        ``duplicate``. ``headers`` must have lower-case names."""
        now = self._clock.now()
        # One read, then one atomic write (the delivery with its job): on PostgreSQL two
        # round trips and no transaction around them.
        async with self._uow().single_write() as uow:
            integration = (
                await uow.gitlab_integrations.get(OrgId(org_id)) if is_valid_id(org_id) else None
            )
            if integration is None or integration.webhook_secret_digest is None:
                raise NotFound("no GitLab webhook is configured for this organization")
            self._authenticate(integration, headers, body, now)
            try:
                payload = json.loads(body)
            except (ValueError, UnicodeDecodeError):
                raise InvalidInput("body", "is not valid JSON") from None
            event_type = headers.get("x-gitlab-event", "").strip()[:100]
            event_type = event_type if event_type and storable(event_type) else "unknown"
            found = classify(event_type, payload)
            delivery = WebhookDelivery(
                id=new_id(),
                org_id=OrgId(org_id),
                idempotency_key=idempotency_key(headers, body),
                event_type=event_type,
                status=DeliveryStatus.RECEIVED if found.supported else DeliveryStatus.IGNORED,
                received_at=now,
                processed_at=None if found.supported else now,
                error=None,
                payload_hash=hashlib.sha256(body).hexdigest(),
                project_path=found.project_path,
                kind=found.kind,
                iid=found.iid,
                action=found.action[:50] if found.action else None,
            )
            job = Job(PROCESS_JOB, {"delivery_id": delivery.id}) if found.supported else None
            if not await uow.webhook_deliveries.add(delivery, job):
                return "duplicate"
            await uow.commit()
        return "accepted"

    def _authenticate(
        self, integration: GitLabIntegration, headers: Mapping[str, str], body: bytes, now: datetime
    ) -> None:
        token = headers.get("x-gitlab-token", "")
        digest = integration.webhook_secret_digest
        if not token or digest is None or not self._hasher.matches(token, digest):
            raise Forbidden("X-Gitlab-Token does not match this organization's webhook secret")
        if integration.signing_token_ciphertext is not None:
            try:
                secret = self._box.decrypt(integration.signing_token_ciphertext)
            except SecretUndecryptable:
                log.error("webhook.signing_token_undecryptable org=%s", integration.org_id)
                raise Forbidden(
                    "the webhook signing token cannot be decrypted on this server"
                ) from None
            verify_signature(secret, headers, body, now)

    async def processing_gave_up(self, delivery_id: str, reason: str) -> None:
        """The delivery's processing job failed for good: the delivery is marked
        ``failed`` with the reason (it would otherwise stay ``received`` forever)."""
        async with self._uow() as uow:
            delivery = await uow.webhook_deliveries.get(delivery_id)
            if delivery is None or delivery.status is not DeliveryStatus.RECEIVED:
                return
            await uow.webhook_deliveries.finish(
                delivery_id,
                DeliveryStatus.FAILED,
                self._clock.now(),
                f"processing failed: {reason}",
            )
            await uow.commit()

    async def process(self, delivery_id: str) -> None:
        """Queue a refresh of the object a delivery names (one refresh serves every link).

        A burst of deliveries about one object is coalesced: while a refresh of it is
        queued and not yet started, later deliveries are satisfied by that refresh. The
        mark and the refresh job commit together, so a crash never leaves a mark without
        the job that clears it.
        """
        now = self._clock.now()
        async with self._uow() as uow:
            # Marked processed first (one statement that also reads it); the refresh
            # request commits with the mark, or neither does.
            delivery = await uow.webhook_deliveries.take_received(delivery_id, now)
            if delivery is None:
                return
            key = delivery.ref_key
            if key is not None and await uow.gitlab_links.request_refresh(
                delivery.org_id, key, now, min_attempt_interval=None
            ):
                uow.outbox.add(refresh_job(delivery.org_id, key))
            await uow.commit()

    async def list_deliveries(
        self, actor: Actor, org_id: str, limit: int = 50, cursor: str | None = None
    ) -> tuple[list[WebhookDelivery], str | None]:
        """Newest first; the second value is the cursor of the next page (None at the end)."""
        if not 1 <= limit <= MAX_PAGE:
            raise InvalidInput("limit", f"must be between 1 and {MAX_PAGE}")
        before = decode_cursor(cursor) if cursor else None
        async with self._uow() as uow:
            await require_manager(uow, actor, org_id)
            page = await uow.webhook_deliveries.page(OrgId(org_id), limit + 1, before)
        more = len(page) > limit
        page = page[:limit]
        return page, encode_cursor(page[-1]) if more and page else None
