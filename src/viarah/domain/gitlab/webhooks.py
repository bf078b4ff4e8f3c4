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
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from viarah.domain.gitlab.access import require_manager
from viarah.domain.gitlab.links import ObjectKey, refresh_job
from viarah.domain.gitlab.model import (
    DeliveryStatus,
    GitLabIntegration,
    RefreshQueued,
    WebhookDelivery,
)
from viarah.domain.gitlab.ports import GitLabUnitOfWork
from viarah.domain.gitlab.recent_integrations import RecentIntegrations
from viarah.domain.gitlab.urls import MAX_IID, MAX_PROJECT_PATH_LENGTH, ObjectKind
from viarah.domain.shared.actor import Actor
from viarah.domain.shared.clock import Clock
from viarah.domain.shared.errors import (
    DomainError,
    Forbidden,
    InvalidInput,
    NotFound,
    Unavailable,
)
from viarah.domain.shared.ids import OrgId, is_valid_id, new_id
from viarah.domain.shared.jobs import Job
from viarah.domain.shared.recent import recall
from viarah.domain.shared.secrets import KeyedHasher, SecretBox, SecretUndecryptable
from viarah.domain.shared.text import storable

log = logging.getLogger("viarah.gitlab.webhooks")
UowFactory = Callable[[], GitLabUnitOfWork]
#: Processes one delivery. Webhooks no longer add it (they add :data:`DRAIN_JOB`); it
#: stays for the jobs an older version left in the outbox.
PROCESS_JOB = "gitlab.process_delivery"
#: Processes an organization's waiting deliveries in batches; one per burst (coalesced).
DRAIN_JOB = "gitlab.process_deliveries"
#: Periodic: a drain for deliveries left waiting (see :meth:`GitLabWebhooks.requeue_waiting`).
SWEEP_JOB = "gitlab.sweep_deliveries"
#: Deliveries processed in one transaction.
DRAIN_BATCH = 500
#: Batches one drain job runs before handing the rest to a follow-up job (a job that ran
#: for minutes would outlive its claim).
DRAIN_MAX_BATCHES = 20
#: Refreshes of one object that webhooks ask for start at least this far apart (2-3 s,
#: jittered so that objects refreshed together drift apart instead of refreshing in step:
#: in step, 50 refreshes every 2 s made a CPU spike that other requests queued behind): a
#: burst about one issue (a label edited over and over) costs one GitLab call per 2-3 s,
#: and every delivery is still followed by a refresh that starts after it arrived. (A
#: burst about 50 issues then stays under 1,500 calls a minute, below GitLab.com's 2,000
#: per user.)
REFRESH_SPACING = timedelta(seconds=2)
#: The latest such a refresh starts after the previous one (the jitter's upper end).
REFRESH_SPACING_LATEST = REFRESH_SPACING * 3 / 2
#: A delivery still waiting after this long is given a drain job of its own.
WAITING_TOO_LONG = timedelta(seconds=30)
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


def drain_job(org_id: str) -> Job:
    """The job that processes an organization's waiting deliveries; while one is pending,
    adding another adds nothing."""
    return Job(DRAIN_JOB, {"org_id": org_id}, coalesce_key=f"{DRAIN_JOB}:{org_id}")


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
        jitter: Callable[[], float] = random.random,
        recent: RecentIntegrations | None = None,
    ) -> None:
        self._uow = uow
        self._clock = clock
        self._hasher = hasher
        self._box = box
        self._jitter = jitter
        self._recent = recent

    async def receive(self, org_id: str, headers: Mapping[str, str], body: bytes) -> str:
        """Authenticate and store a delivery, with a job that processes the organization's
        waiting deliveries unless one is pending already (a burst of webhooks is then
        processed in a few batches, not one job per delivery); ``accepted`` or
        ``duplicate``. ``headers`` must have lower-case names."""
        now = self._clock.now()
        # One read (none when this process read the integration in the last second), then
        # one atomic write (the delivery with its job): on PostgreSQL at most two round
        # trips and no transaction around them.
        async with self._uow().single_write() as uow:
            integration = await self._integration(uow, org_id, now)
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
            job = drain_job(org_id) if found.supported else None
            if not await uow.webhook_deliveries.add(delivery, job):
                return "duplicate"
            await uow.commit()
        return "accepted"

    async def _integration(
        self, uow: GitLabUnitOfWork, org_id: str, now: datetime
    ) -> GitLabIntegration | None:
        if not is_valid_id(org_id):
            return None
        key = OrgId(org_id)
        return await recall(self._recent, key, now, lambda: uow.gitlab_integrations.get(key))

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
            if delivery.ref_key is not None:
                await self._queue_refresh(uow, delivery.org_id, delivery.ref_key, now)
            await uow.commit()

    async def process_waiting(self, org_id: str) -> int:
        """Process the organization's waiting deliveries, oldest first, in batches of
        :data:`DRAIN_BATCH`: one transaction marks a batch processed and queues one
        refresh per distinct object it names (none for an object whose refresh is
        queued already). Returns how many were processed.

        A batch that fails for a reason other than the database is retried one delivery
        at a time, so one delivery that cannot be processed is marked ``failed`` instead
        of holding back the others. After :data:`DRAIN_MAX_BATCHES` full batches the rest
        goes to a follow-up job.
        """
        done = 0
        for _ in range(DRAIN_MAX_BATCHES):
            taken = await self._process_batch(OrgId(org_id))
            done += taken
            if taken < DRAIN_BATCH:
                return done
        async with self._uow() as uow:
            uow.outbox.add(drain_job(org_id))
            await uow.commit()
        return done

    async def _process_batch(self, org_id: OrgId) -> int:
        now = self._clock.now()
        failed: list[WebhookDelivery] = []
        async with self._uow() as uow:
            batch = await uow.webhook_deliveries.take_waiting(org_id, now, DRAIN_BATCH)
            keys = sorted({d.ref_key for d in batch if d.ref_key is not None})
            try:
                queued = await uow.gitlab_links.request_refreshes(org_id, keys, now)
                for key, refresh in queued.items():
                    uow.outbox.add(self._spaced_refresh(org_id, key, refresh, now))
                await uow.commit()
            except Unavailable:
                raise
            except Exception:
                log.exception("webhook.batch_failed org=%s deliveries=%d", org_id, len(batch))
                failed = batch
        for delivery in failed:  # rolled back: each on its own
            await self._process_alone(delivery.id)
        return len(batch)

    async def _queue_refresh(
        self, uow: GitLabUnitOfWork, org_id: OrgId, key: ObjectKey, now: datetime
    ) -> None:
        """Queue a refresh of the object unless one is queued already (not yet started: it
        will fetch the state this delivery announces). It starts at least
        :data:`REFRESH_SPACING` after the object's previous refresh."""
        queued = await uow.gitlab_links.request_refresh(org_id, key, now, min_attempt_interval=None)
        if queued is not None:
            uow.outbox.add(self._spaced_refresh(org_id, key, queued, now))

    def _spaced_refresh(
        self, org_id: OrgId, key: ObjectKey, queued: RefreshQueued, now: datetime
    ) -> Job:
        """The refresh job, starting at least :data:`REFRESH_SPACING` (jittered) after the
        object's previous refresh."""
        start = queued.start_at(now, REFRESH_SPACING, self._jitter())
        return refresh_job(org_id, key, not_before=start)

    async def _process_alone(self, delivery_id: str) -> None:
        try:
            await self.process(delivery_id)
        except Unavailable:
            raise
        except Exception as exc:
            reason = exc.message if isinstance(exc, DomainError) else type(exc).__name__
            log.error("webhook.delivery_failed id=%s error=%s", delivery_id, reason)
            await self.processing_gave_up(delivery_id, reason)

    async def requeue_waiting(self) -> int:
        """Give a drain job to every organization with a delivery waiting for longer than
        :data:`WAITING_TOO_LONG` (coalesced with a pending one). A webhook that arrives
        while the organization's drain is finishing its last batch may be left out of it;
        this periodic sweep picks it up. Returns the number of organizations."""
        before = self._clock.now() - WAITING_TOO_LONG
        async with self._uow() as uow:
            orgs = await uow.webhook_deliveries.orgs_waiting(before)
            for org_id in orgs:
                uow.outbox.add(drain_job(org_id))
            await uow.commit()
        if orgs:
            log.info("webhook.requeued orgs=%d", len(orgs))
        return len(orgs)

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
