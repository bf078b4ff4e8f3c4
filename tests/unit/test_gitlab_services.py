from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.fakes import (
    FakeGitLab,
    FakeKeyedHasher,
    FakeLinks,
    FakeSecretBox,
    FakeUnitOfWork,
)
from tests.unit.conftest import App
from viarah.domain.gitlab import webhooks as webhooks_module
from viarah.domain.gitlab.client import GitLabCallFailed
from viarah.domain.gitlab.integrations import GitLabIntegrations
from viarah.domain.gitlab.links import REFRESH_JOB, GitLabLinks, GitLabRefresher
from viarah.domain.gitlab.model import DeliveryStatus, SyncStatus, TokenStatus
from viarah.domain.gitlab.recent_integrations import RecentIntegrations
from viarah.domain.gitlab.retention import PURGE_DELIVERIES_JOB, DeliveryRetention
from viarah.domain.gitlab.webhooks import DRAIN_JOB, REFRESH_SPACING, GitLabWebhooks, classify
from viarah.domain.shared.actor import Actor
from viarah.domain.shared.errors import Conflict, Forbidden, InvalidInput, NotFound, Unavailable
from viarah.domain.shared.ids import OrgId

BASE = "https://gitlab.example.com"
SECRET = "a-webhook-secret-of-some-length"


@dataclass
class GitLabApp:
    app: App
    box: FakeSecretBox
    gitlab: FakeGitLab
    integrations: GitLabIntegrations
    links: GitLabLinks
    refresher: GitLabRefresher
    webhooks: GitLabWebhooks
    org_id: str
    admin: Actor
    member: Actor
    outsider: Actor
    task_id: str

    def jobs(self, name: str) -> list[dict[str, Any]]:
        return [j.payload for j in self.app.db.jobs if j.name == name]

    async def run_refresh_jobs(self) -> None:
        jobs = [j for j in self.app.db.jobs if j.name == REFRESH_JOB]
        self.app.db.jobs = [j for j in self.app.db.jobs if j.name != REFRESH_JOB]
        for job in jobs:
            await self.refresher.refresh(**job.payload)

    async def run_drain_jobs(self) -> int:
        """Run the pending drain jobs (as the worker would); the deliveries processed."""
        jobs = [j for j in self.app.db.jobs if j.name == DRAIN_JOB]
        self.app.db.jobs = [j for j in self.app.db.jobs if j.name != DRAIN_JOB]
        return sum([await self.webhooks.process_waiting(**job.payload) for job in jobs])

    async def hook(self, body: dict[str, Any], **headers: str) -> str:
        raw = json.dumps(body).encode()
        merged = {"x-gitlab-token": SECRET, "x-gitlab-event": "Issue Hook", **headers}
        return await self.webhooks.receive(self.org_id, merged, raw)


def issue_hook(iid: int, path: str = "g/p", action: str = "close") -> dict[str, Any]:
    return {
        "object_kind": "issue",
        "project": {"path_with_namespace": path},
        "object_attributes": {"iid": iid, "action": action, "state": "closed"},
    }


@pytest.fixture
async def gl(app: App) -> GitLabApp:
    box = FakeSecretBox()
    gitlab = FakeGitLab()

    def uow() -> FakeUnitOfWork:
        return FakeUnitOfWork(app.db)

    refresher = GitLabRefresher(uow, app.clock, box, gitlab)
    _, admin = await app.user("admin@example.com")
    _, member = await app.user("member@example.com")
    _, outsider = await app.user("outsider@example.com")
    org = (await app.orgs.create(admin, "Acme")).org
    await app.memberships.add(admin, org.id, "member@example.com", "member")
    project = await app.projects.create(admin, org.id, "P")
    task = await app.tasks.create(admin, org.id, project.id, "T")
    return GitLabApp(
        app=app,
        box=box,
        gitlab=gitlab,
        integrations=GitLabIntegrations(uow, app.clock, box, FakeKeyedHasher(), gitlab),
        links=GitLabLinks(uow, app.clock, timedelta(hours=1)),
        refresher=refresher,
        webhooks=GitLabWebhooks(uow, app.clock, FakeKeyedHasher(), box, jitter=lambda: 0.5),
        org_id=org.id,
        admin=admin,
        member=member,
        outsider=outsider,
        task_id=task.id,
    )


async def configured(gl: GitLabApp) -> None:
    await gl.integrations.update(
        gl.admin, gl.org_id, base_url=BASE + "/", token="glpat-good", webhook_secret=SECRET
    )


# --- integration -----------------------------------------------------------------------


async def test_setup_encrypts_token_hashes_secret_and_audits(gl: GitLabApp) -> None:
    integration, validation = await gl.integrations.update(
        gl.admin, gl.org_id, base_url=BASE + "/", token="glpat-good", webhook_secret=SECRET
    )
    assert integration.base_url == BASE
    assert integration.token_ciphertext is not None
    assert "glpat-good" not in integration.token_ciphertext
    assert integration.webhook_secret_digest is not None
    assert SECRET not in integration.webhook_secret_digest
    assert integration.token_status is TokenStatus.VALID
    assert integration.token_scopes == ("read_api",)
    assert validation is not None
    assert validation.username == "ada"
    (event,) = gl.app.db.audit
    assert event.action == "gitlab.integration.created"
    assert event.actor_user_id == gl.admin.user_id
    assert "glpat-good" not in repr(event)
    assert SECRET not in repr(event)


async def test_first_setup_needs_a_base_url(gl: GitLabApp) -> None:
    with pytest.raises(InvalidInput) as info:
        await gl.integrations.update(gl.admin, gl.org_id, token="glpat-good")
    assert info.value.field == "base_url"


async def test_token_refused_without_encryption_key(gl: GitLabApp) -> None:
    gl.box.keys = ()
    with pytest.raises(Conflict, match="VIA_RAH_ENCRYPTION_KEY") as info:
        await gl.integrations.update(gl.admin, gl.org_id, base_url=BASE, token="glpat-good")
    assert info.value.code == "encryption_key_missing"
    assert gl.app.db.gitlab_integrations == {}


async def test_token_gitlab_rejects_is_not_stored(gl: GitLabApp) -> None:
    with pytest.raises(InvalidInput) as info:
        await gl.integrations.update(gl.admin, gl.org_id, base_url=BASE, token="glpat-bad")
    assert info.value.field == "token"
    assert gl.app.db.gitlab_integrations == {}


async def test_only_admins_and_pms_manage(gl: GitLabApp) -> None:
    with pytest.raises(Forbidden):
        await gl.integrations.update(gl.member, gl.org_id, base_url=BASE)
    with pytest.raises(NotFound):
        await gl.integrations.get(gl.outsider, gl.org_id)


async def test_validate_reports_each_outcome(gl: GitLabApp) -> None:
    v = await gl.integrations.validate(gl.admin, gl.org_id)
    assert (v.status, v.error_code) == ("not_validated", "missing_integration")
    await gl.integrations.update(gl.admin, gl.org_id, base_url=BASE)
    v = await gl.integrations.validate(gl.admin, gl.org_id)
    assert (v.status, v.error_code) == ("not_validated", "missing_token")
    await configured(gl)
    v = await gl.integrations.validate(gl.admin, gl.org_id)
    assert (v.status, v.username) == ("valid", "ada")
    gl.gitlab.failures.append(GitLabCallFailed("rate_limited", "slow down", status=429))
    v = await gl.integrations.validate(gl.admin, gl.org_id)
    assert (v.status, v.error_code) == ("not_validated", "rate_limited")
    gl.gitlab.failures.append(GitLabCallFailed("network_error", "timeout"))
    assert (await gl.integrations.validate(gl.admin, gl.org_id)).error_code == "network_error"
    gl.box.keys = ("other",)
    v = await gl.integrations.validate(gl.admin, gl.org_id)
    assert (v.status, v.error_code) == ("not_validated", "encryption_key_missing")


async def test_rejected_token_notifies_admins_once(gl: GitLabApp) -> None:
    await configured(gl)
    gl.gitlab.token = "rotated-away"
    for _ in range(2):
        v = await gl.integrations.validate(gl.admin, gl.org_id)
        assert (v.status, v.error_code) == ("invalid", "http_401")
    events = gl.jobs("event.gitlab_integration.auth_failed")
    assert len(events) == 1
    assert events[0]["recipients"] == [gl.admin.user_id]
    assert gl.app.db.gitlab_integrations[gl.org_id].token_status is TokenStatus.INVALID


async def test_expiring_token_warnings_at_30_and_7_days(gl: GitLabApp) -> None:
    gl.gitlab.token_info_result = type(gl.gitlab.token_info_result)(
        scopes=("api",), expires_at=(gl.app.clock.now() + timedelta(days=40)).date()
    )
    await configured(gl)
    assert await gl.integrations.warn_expiring_tokens() == 0
    gl.app.clock.advance(days=11)
    assert await gl.integrations.warn_expiring_tokens() == 1
    assert await gl.integrations.warn_expiring_tokens() == 0
    gl.app.clock.advance(days=23)
    assert await gl.integrations.warn_expiring_tokens() == 1
    days = [p["days"] for p in gl.jobs("event.gitlab_integration.token_expiring")]
    assert days == [30, 7]


async def test_secrets_can_be_cleared_and_integration_deleted(gl: GitLabApp) -> None:
    await configured(gl)
    integration, _ = await gl.integrations.update(
        gl.admin, gl.org_id, token=None, webhook_secret=None
    )
    assert not integration.has_token
    assert not integration.webhook_configured
    await gl.integrations.delete(gl.admin, gl.org_id)
    assert await gl.integrations.get(gl.admin, gl.org_id) is None
    assert [e.action for e in gl.app.db.audit][-1] == "gitlab.integration.deleted"


@pytest.mark.parametrize(
    ("field", "value"), [("webhook_secret", "short"), ("token", ""), ("token", "has space")]
)
async def test_secret_validation(gl: GitLabApp, field: str, value: str) -> None:
    with pytest.raises(InvalidInput) as info:
        await gl.integrations.update(gl.admin, gl.org_id, base_url=BASE, **{field: value})
    assert info.value.field == field


# --- links and refresh -----------------------------------------------------------------


async def test_link_is_refreshed_at_once_and_read_with_sync_status(gl: GitLabApp) -> None:
    await configured(gl)
    gl.gitlab.put("g/p", "issue", 12, "opened", "Login broken")
    view = await gl.links.link(gl.member, gl.org_id, gl.task_id, f"{BASE}/g/p/-/issues/12#note_1")
    assert view.link.url == f"{BASE}/g/p/-/issues/12"
    assert view.sync.status is SyncStatus.NEVER
    assert len(gl.jobs(REFRESH_JOB)) == 1
    await gl.run_refresh_jobs()
    (read,) = await gl.links.list_links(gl.member, gl.org_id, gl.task_id)
    assert read.link.cached_title == "Login broken"
    assert read.link.cached_state == "opened"
    assert read.link.cached_labels == ("bug",)
    assert read.sync.status is SyncStatus.OK
    assert gl.jobs(REFRESH_JOB) == []  # fresh: no refresh queued on read


async def test_link_errors(gl: GitLabApp) -> None:
    with pytest.raises(Conflict, match="no GitLab integration"):
        await gl.links.link(gl.member, gl.org_id, gl.task_id, f"{BASE}/g/p/-/issues/1")
    await configured(gl)
    with pytest.raises(InvalidInput):
        await gl.links.link(
            gl.member, gl.org_id, gl.task_id, "https://evil.example.com/g/p/-/issues/1"
        )
    await gl.links.link(gl.member, gl.org_id, gl.task_id, f"{BASE}/g/p/-/issues/1")
    with pytest.raises(Conflict):
        await gl.links.link(gl.member, gl.org_id, gl.task_id, f"{BASE}/G/P/-/issues/1/")
    with pytest.raises(NotFound, match="organization"):
        await gl.links.list_links(gl.outsider, gl.org_id, gl.task_id)
    with pytest.raises(NotFound, match="task"):
        await gl.links.list_links(gl.member, gl.org_id, "00000000-0000-4000-8000-000000000000")


async def test_unlink(gl: GitLabApp) -> None:
    await configured(gl)
    view = await gl.links.link(gl.member, gl.org_id, gl.task_id, f"{BASE}/g/p/-/issues/1")
    await gl.links.unlink(gl.member, gl.org_id, gl.task_id, view.link.id)
    assert await gl.links.list_links(gl.member, gl.org_id, gl.task_id) == []
    with pytest.raises(NotFound):
        await gl.links.unlink(gl.member, gl.org_id, gl.task_id, view.link.id)


async def test_stale_read_queues_one_refresh_per_object(gl: GitLabApp) -> None:
    await configured(gl)
    gl.gitlab.put("g/p", "issue", 1, "opened")
    await gl.links.link(gl.member, gl.org_id, gl.task_id, f"{BASE}/g/p/-/issues/1")
    await gl.run_refresh_jobs()
    gl.app.clock.advance(hours=2)
    (view,) = await gl.links.list_links(gl.member, gl.org_id, gl.task_id)
    assert view.sync.status is SyncStatus.STALE
    assert view.sync.stale
    for _ in range(3):
        await gl.links.list_links(gl.member, gl.org_id, gl.task_id)
    assert len(gl.jobs(REFRESH_JOB)) == 1


async def test_reads_of_a_stale_link_whose_refresh_is_pending_take_no_lock(
    gl: GitLabApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    await configured(gl)
    gl.gitlab.put("g/p", "issue", 1, "opened")
    await gl.links.link(gl.member, gl.org_id, gl.task_id, f"{BASE}/g/p/-/issues/1")
    await gl.run_refresh_jobs()
    gl.app.clock.advance(hours=2)
    requests: list[object] = []
    original = FakeLinks.request_refresh

    async def counted(self: FakeLinks, *args: Any, **kwargs: Any) -> bool:
        requests.append(args)
        return await original(self, *args, **kwargs)

    monkeypatch.setattr(FakeLinks, "request_refresh", counted)
    for _ in range(3):
        (view,) = await gl.links.list_links(gl.member, gl.org_id, gl.task_id)
        assert view.sync.stale
    assert len(requests) == 1  # the first read queued it; the others saw it pending
    assert len(gl.jobs(REFRESH_JOB)) == 1


async def test_one_gitlab_call_refreshes_every_link_to_the_object(gl: GitLabApp) -> None:
    await configured(gl)
    gl.gitlab.put("g/p", "issue", 7, "opened")
    project = (await gl.app.projects.list_projects(gl.admin, gl.org_id))[0]
    for n in range(20):
        task = await gl.app.tasks.create(gl.admin, gl.org_id, project.id, f"T{n}")
        await gl.links.link(gl.admin, gl.org_id, task.id, f"{BASE}/g/p/-/issues/7")
    gl.app.db.jobs.clear()
    gl.gitlab.calls.clear()
    await gl.refresher.refresh(gl.org_id, "g/p", "issue", 7)
    assert gl.gitlab.calls == ["object:g/p:issue:7"]
    states = {link.cached_state for link in gl.app.db.gitlab_links.values()}
    assert states == {"opened"}


@pytest.mark.parametrize(
    ("failure", "code"),
    [
        (GitLabCallFailed("auth_error", "no", status=401), "auth_error"),
        (GitLabCallFailed("auth_error", "no", status=403), "auth_error"),
        (GitLabCallFailed("not_found", "gone", status=404), "not_found"),
        (GitLabCallFailed("http_418", "teapot", status=418), "http_418"),
    ],
)
async def test_refresh_failures_are_stored_on_links(
    gl: GitLabApp, failure: GitLabCallFailed, code: str
) -> None:
    await configured(gl)
    await gl.links.link(gl.member, gl.org_id, gl.task_id, f"{BASE}/g/p/-/issues/1")
    gl.gitlab.failures.append(failure)
    assert await gl.refresher.refresh(gl.org_id, "g/p", "issue", 1) == code
    (view,) = await gl.links.list_links(gl.member, gl.org_id, gl.task_id)
    assert view.sync.status is SyncStatus.ERROR
    assert view.sync.error_code == code


async def test_auth_error_pauses_refreshes_and_tells_admins(gl: GitLabApp) -> None:
    await configured(gl)
    await gl.links.link(gl.member, gl.org_id, gl.task_id, f"{BASE}/g/p/-/issues/1")
    gl.gitlab.failures.append(GitLabCallFailed("auth_error", "no", status=401))
    await gl.refresher.refresh(gl.org_id, "g/p", "issue", 1)
    assert len(gl.jobs("event.gitlab_integration.auth_failed")) == 1
    gl.gitlab.calls.clear()
    assert await gl.refresher.refresh(gl.org_id, "g/p", "issue", 1) == "auth_error"
    assert gl.gitlab.calls == []  # paused: GitLab is not hammered


async def test_rate_limit_honours_retry_after(gl: GitLabApp) -> None:
    await configured(gl)
    await gl.links.link(gl.member, gl.org_id, gl.task_id, f"{BASE}/g/p/-/issues/1")
    gl.app.db.jobs.clear()
    gl.gitlab.failures.append(GitLabCallFailed("rate_limited", "429", status=429, retry_after=120))
    assert await gl.refresher.refresh(gl.org_id, "g/p", "issue", 1) == "rate_limited"
    (view,) = await gl.links.list_links(gl.member, gl.org_id, gl.task_id)
    assert view.sync.rate_limited
    assert view.sync.rate_limited_until == gl.app.clock.now() + timedelta(seconds=120)
    (job,) = [j for j in gl.app.db.jobs if j.name == REFRESH_JOB]
    assert job.not_before == gl.app.clock.now() + timedelta(seconds=120)
    gl.gitlab.calls.clear()
    assert await gl.refresher.refresh(gl.org_id, "g/p", "issue", 1) == "rate_limited"
    assert gl.gitlab.calls == []


async def test_transient_failures_raise_for_retry(gl: GitLabApp) -> None:
    await configured(gl)
    await gl.links.link(gl.member, gl.org_id, gl.task_id, f"{BASE}/g/p/-/issues/1")
    for failure in (
        GitLabCallFailed("network_error", "t"),
        GitLabCallFailed("http_502", "b", status=502),
    ):
        gl.gitlab.failures.append(failure)
        with pytest.raises(Unavailable):
            await gl.refresher.refresh(gl.org_id, "g/p", "issue", 1)


@pytest.mark.parametrize(
    ("old", "new", "events"),
    [("opened", "closed", 1), ("opened", "opened", 0), ("opened", "merged", 1)],
)
async def test_state_change_emits_an_event(gl: GitLabApp, old: str, new: str, events: int) -> None:
    await configured(gl)
    gl.gitlab.put("g/p", "mr", 3, old, "Add login")
    await gl.links.link(gl.member, gl.org_id, gl.task_id, f"{BASE}/g/p/-/merge_requests/3")
    await gl.run_refresh_jobs()
    assert gl.jobs("event.gitlab_link.state_changed") == []  # first sync is not a change
    gl.gitlab.put("g/p", "mr", 3, new, "Add login")
    await gl.refresher.refresh(gl.org_id, "g/p", "mr", 3)
    emitted = gl.jobs("event.gitlab_link.state_changed")
    assert len(emitted) == events
    if events:
        assert emitted[0]["task_id"] == gl.task_id
        assert (emitted[0]["old_state"], emitted[0]["new_state"]) == (old, new)


# --- webhooks --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("event", "payload", "supported"),
    [
        ("Issue Hook", issue_hook(4), True),
        ("Merge Request Hook", {**issue_hook(4), "object_kind": "merge_request"}, True),
        ("Issue Hook", {**issue_hook(4), "object_kind": "work_item"}, True),
        ("Push Hook", {"object_kind": "push"}, False),
        ("Issue Hook", {"object_kind": "issue"}, False),
        ("Issue Hook", {**issue_hook(4), "object_attributes": {"iid": "4"}}, False),
        ("Issue Hook", [1, 2], False),
        ("Note Hook", issue_hook(4), False),
        ("Issue Hook", issue_hook(2**31), False),
        ("Issue Hook", issue_hook(4, path="g/\x00p"), False),
        ("Issue Hook", issue_hook(4, path="g/\ud800"), False),
    ],
)
def test_classification(event: str, payload: Any, supported: bool) -> None:
    assert classify(event, payload).supported is supported


async def test_webhook_is_stored_with_its_job_and_deduplicated(gl: GitLabApp) -> None:
    await configured(gl)
    assert await gl.hook(issue_hook(4), **{"idempotency-key": "abc"}) == "accepted"
    assert await gl.hook(issue_hook(4), **{"idempotency-key": "abc"}) == "duplicate"
    assert len(gl.app.db.deliveries) == 1
    (delivery,) = gl.app.db.deliveries.values()
    assert (delivery.project_path, delivery.iid, delivery.action) == ("g/p", 4, "close")
    assert gl.jobs(DRAIN_JOB) == [{"org_id": gl.org_id}]
    # While that job is pending, more webhooks add no job: it processes them all.
    assert await gl.hook(issue_hook(5), **{"idempotency-key": "def"}) == "accepted"
    assert gl.jobs(DRAIN_JOB) == [{"org_id": gl.org_id}]
    assert await gl.run_drain_jobs() == 2
    assert await gl.hook(issue_hook(6), **{"idempotency-key": "ghi"}) == "accepted"
    assert gl.jobs(DRAIN_JOB) == [{"org_id": gl.org_id}]  # none pending: a new one


async def test_a_delivery_whose_processing_gave_up_is_marked_failed(gl: GitLabApp) -> None:
    await configured(gl)
    assert await gl.hook(issue_hook(4)) == "accepted"
    (delivery,) = gl.app.db.deliveries.values()
    await gl.webhooks.processing_gave_up(delivery.id, "the database is unavailable")
    failed = gl.app.db.deliveries[delivery.id]
    assert failed.status is DeliveryStatus.FAILED
    assert failed.error == "processing failed: the database is unavailable"
    assert failed.processed_at is not None
    ignored_id = "x"
    await gl.webhooks.processing_gave_up(ignored_id, "whatever")  # unknown: nothing happens
    assert await gl.hook({"object_kind": "push"}, **{"x-gitlab-event": "Push Hook"}) == "accepted"
    (ignored,) = [d for d in gl.app.db.deliveries.values() if d.id != delivery.id]
    await gl.webhooks.processing_gave_up(ignored.id, "late")  # only a received one changes
    assert gl.app.db.deliveries[ignored.id].status is DeliveryStatus.IGNORED


async def test_fallback_key_is_event_uuid_plus_payload_hash(gl: GitLabApp) -> None:
    await configured(gl)
    assert await gl.hook(issue_hook(4), **{"x-gitlab-event-uuid": "u1"}) == "accepted"
    assert await gl.hook(issue_hook(5), **{"x-gitlab-event-uuid": "u1"}) == "accepted"
    assert await gl.hook(issue_hook(5), **{"x-gitlab-event-uuid": "u1"}) == "duplicate"


async def test_unsupported_event_is_stored_as_ignored(gl: GitLabApp) -> None:
    await configured(gl)
    assert await gl.hook({"object_kind": "push"}, **{"x-gitlab-event": "Push Hook"}) == "accepted"
    (delivery,) = gl.app.db.deliveries.values()
    assert delivery.status is DeliveryStatus.IGNORED
    assert gl.jobs(DRAIN_JOB) == []


async def test_webhook_authentication(gl: GitLabApp) -> None:
    with pytest.raises(NotFound):
        await gl.hook(issue_hook(1))
    await configured(gl)
    with pytest.raises(Forbidden):
        await gl.hook(issue_hook(1), **{"x-gitlab-token": "wrong"})
    with pytest.raises(Forbidden):
        await gl.webhooks.receive(gl.org_id, {"x-gitlab-event": "Issue Hook"}, b"{}")
    with pytest.raises(InvalidInput):
        await gl.webhooks.receive(gl.org_id, {"x-gitlab-token": SECRET}, b"{not json")
    assert gl.app.db.deliveries == {}


def _signed(secret: str, body: bytes, webhook_id: str, stamp: int) -> dict[str, str]:
    mac = hmac.new(secret.encode(), f"{webhook_id}.{stamp}.".encode() + body, hashlib.sha256)
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(stamp),
        "webhook-signature": "v1," + base64.b64encode(mac.digest()).decode(),
    }


async def test_signing_token_is_verified_when_set(gl: GitLabApp) -> None:
    await configured(gl)
    await gl.integrations.update(gl.admin, gl.org_id, signing_token="sign-me-please")
    body = json.dumps(issue_hook(9)).encode()
    now = int(gl.app.clock.now().timestamp())
    base = {"x-gitlab-token": SECRET, "x-gitlab-event": "Issue Hook"}
    good = {**base, **_signed("sign-me-please", body, "id-1", now)}
    assert await gl.webhooks.receive(gl.org_id, good, body) == "accepted"
    for bad in (
        {**base, **_signed("wrong", body, "id-2", now)},
        {**base, **_signed("sign-me-please", body, "id-3", now - 600)},
        base,
    ):
        with pytest.raises(Forbidden):
            await gl.webhooks.receive(gl.org_id, bad, body)


async def test_processing_refreshes_the_links(gl: GitLabApp) -> None:
    await configured(gl)
    gl.gitlab.put("g/p", "issue", 4, "opened")
    await gl.links.link(gl.member, gl.org_id, gl.task_id, f"{BASE}/g/p/-/issues/4")
    await gl.run_refresh_jobs()
    gl.gitlab.put("g/p", "issue", 4, "closed")
    await gl.hook(issue_hook(4), **{"idempotency-key": "k1"})
    gl.gitlab.calls.clear()
    assert await gl.run_drain_jobs() == 1
    (delivery,) = gl.app.db.deliveries.values()
    assert delivery.status is DeliveryStatus.PROCESSED
    assert delivery.processed_at == gl.app.clock.now()
    assert len(gl.jobs(REFRESH_JOB)) == 1  # queued with the delivery's outcome
    assert await gl.webhooks.process_waiting(gl.org_id) == 0  # a redelivered job: no-op
    await gl.webhooks.process(delivery.id)  # an older version's per-delivery job: no-op
    assert len(gl.jobs(REFRESH_JOB)) == 1
    await gl.run_refresh_jobs()
    assert gl.gitlab.calls == ["object:g/p:issue:4"]
    assert {lk.cached_state for lk in gl.app.db.gitlab_links.values()} == {"closed"}
    assert len(gl.jobs("event.gitlab_link.state_changed")) == 1


async def test_delivery_is_coalesced_with_a_queued_refresh(gl: GitLabApp) -> None:
    await configured(gl)
    gl.gitlab.put("g/p", "issue", 4, "opened")
    await gl.links.link(gl.member, gl.org_id, gl.task_id, f"{BASE}/g/p/-/issues/4")
    await gl.run_refresh_jobs()
    gl.app.clock.advance(hours=2)
    await gl.links.list_links(gl.member, gl.org_id, gl.task_id)  # stale: refresh queued
    for n in range(5):
        await gl.hook(issue_hook(4), **{"idempotency-key": f"k{n}"})
    gl.gitlab.calls.clear()
    assert await gl.run_drain_jobs() == 5
    assert gl.gitlab.calls == []  # the queued refresh will fetch the current state
    assert {d.status for d in gl.app.db.deliveries.values()} == {DeliveryStatus.PROCESSED}
    await gl.run_refresh_jobs()
    assert gl.gitlab.calls == ["object:g/p:issue:4"]


async def test_refresh_queued_by_a_delivery_is_retried_after_a_network_error(
    gl: GitLabApp,
) -> None:
    await configured(gl)
    gl.gitlab.put("g/p", "issue", 4, "opened")
    await gl.links.link(gl.member, gl.org_id, gl.task_id, f"{BASE}/g/p/-/issues/4")
    await gl.run_refresh_jobs()
    await gl.hook(issue_hook(4), **{"idempotency-key": "k1"})
    await gl.run_drain_jobs()
    (refresh,) = gl.jobs(REFRESH_JOB)
    gl.gitlab.failures.append(GitLabCallFailed("network_error", "timeout"))
    with pytest.raises(Unavailable):  # the job runner retries it with backoff
        await gl.refresher.refresh(**refresh)
    (link,) = gl.app.db.gitlab_links.values()
    assert link.error_code == "network_error"
    gl.gitlab.put("g/p", "issue", 4, "closed")
    assert await gl.refresher.refresh(**refresh) == "ok"
    assert next(iter(gl.app.db.gitlab_links.values())).cached_state == "closed"


async def test_delivery_for_unlinked_object_costs_no_call(gl: GitLabApp) -> None:
    await configured(gl)
    await gl.hook(issue_hook(77), **{"idempotency-key": "x"})
    gl.gitlab.calls.clear()
    assert await gl.run_drain_jobs() == 1
    assert gl.gitlab.calls == []
    assert next(iter(gl.app.db.deliveries.values())).status is DeliveryStatus.PROCESSED


async def _linked_issues(gl: GitLabApp, *iids: int) -> None:
    for iid in iids:
        gl.gitlab.put("g/p", "issue", iid, "opened")
        await gl.links.link(gl.member, gl.org_id, gl.task_id, f"{BASE}/g/p/-/issues/{iid}")
    await gl.run_refresh_jobs()


async def test_a_burst_is_processed_in_batches_oldest_first(
    gl: GitLabApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(webhooks_module, "DRAIN_BATCH", 3)
    await configured(gl)
    await _linked_issues(gl, 1, 2)
    for n in range(8):
        gl.app.clock.advance(seconds=1)
        await gl.hook(issue_hook(1 + n % 2), **{"idempotency-key": f"k{n}"})
    assert len(gl.jobs(DRAIN_JOB)) == 1
    assert await gl.run_drain_jobs() == 8  # batches of 3, 3 and 2
    statuses = {d.status for d in gl.app.db.deliveries.values()}
    assert statuses == {DeliveryStatus.PROCESSED}
    refreshes = sorted(job["iid"] for job in gl.jobs(REFRESH_JOB))
    assert refreshes == [1, 2]  # one per object, however many deliveries named it
    assert gl.jobs(DRAIN_JOB) == []


async def test_refreshes_asked_for_by_webhooks_are_spaced_per_object(gl: GitLabApp) -> None:
    await configured(gl)
    await _linked_issues(gl, 1)  # refreshed just now
    refreshed_at = gl.app.clock.now()
    await gl.hook(issue_hook(1), **{"idempotency-key": "k1"})
    await gl.run_drain_jobs()
    (job,) = [j for j in gl.app.db.jobs if j.name == REFRESH_JOB]
    # 2 s after the last one, plus the jitter's share (half of 0.5 x 2 s).
    assert job.not_before == refreshed_at + REFRESH_SPACING * 1.25
    await gl.run_refresh_jobs()
    gl.app.clock.advance(seconds=5)
    await gl.hook(issue_hook(1), **{"idempotency-key": "k2"})
    await gl.run_drain_jobs()
    (job,) = [j for j in gl.app.db.jobs if j.name == REFRESH_JOB]
    assert job.not_before is None  # the last refresh is long past: at once


async def test_finished_deliveries_are_purged_after_the_retention(gl: GitLabApp) -> None:
    await configured(gl)
    for n in range(3):
        await gl.hook(issue_hook(n + 1), **{"idempotency-key": f"old{n}"})
    await gl.run_drain_jobs()
    gl.app.clock.advance(days=1)
    await gl.hook(issue_hook(1), **{"idempotency-key": "waiting"})  # never drained
    gl.app.clock.advance(days=29, seconds=1)
    await gl.hook(issue_hook(1), **{"idempotency-key": "new"})
    await gl.run_drain_jobs()

    def uow() -> FakeUnitOfWork:
        return FakeUnitOfWork(gl.app.db)

    retention = DeliveryRetention(uow, gl.app.clock, retention_days=30, batch=2, max_per_job=2)
    assert await retention.purge() == 2  # the limit: a follow-up job is queued
    assert gl.jobs(PURGE_DELIVERIES_JOB) == [{}]
    assert await retention.purge() == 1
    left = sorted(d.idempotency_key for d in gl.app.db.deliveries.values())
    assert left == ["key:new", "key:waiting"]
    assert await DeliveryRetention(uow, gl.app.clock, retention_days=0).purge() == 0
    gl.app.clock.advance(days=3650)
    assert await DeliveryRetention(uow, gl.app.clock, retention_days=0).purge() == 0


async def test_a_long_drain_hands_the_rest_to_a_follow_up_job(
    gl: GitLabApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(webhooks_module, "DRAIN_BATCH", 2)
    monkeypatch.setattr(webhooks_module, "DRAIN_MAX_BATCHES", 2)
    await configured(gl)
    for n in range(5):
        gl.app.clock.advance(seconds=1)
        await gl.hook(issue_hook(n + 1), **{"idempotency-key": f"k{n}"})
    assert await gl.run_drain_jobs() == 4
    assert gl.jobs(DRAIN_JOB) == [{"org_id": gl.org_id}]
    waiting = [d for d in gl.app.db.deliveries.values() if d.status is DeliveryStatus.RECEIVED]
    assert [d.iid for d in waiting] == [5]  # the newest is left for the follow-up
    assert await gl.run_drain_jobs() == 1
    assert gl.jobs(DRAIN_JOB) == []


async def test_a_delivery_that_cannot_be_processed_does_not_hold_back_the_others(
    gl: GitLabApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    await configured(gl)
    await _linked_issues(gl, 1, 2, 3)
    real = FakeLinks.request_refresh

    async def poisoned(self: FakeLinks, org_id: Any, key: Any, *args: Any, **kw: Any) -> bool:
        if key[2] == 2:
            raise RuntimeError("a bug with this object")
        return await real(self, org_id, key, *args, **kw)

    monkeypatch.setattr(FakeLinks, "request_refresh", poisoned)
    for iid in (1, 2, 3):
        await gl.hook(issue_hook(iid), **{"idempotency-key": f"k{iid}"})
    assert await gl.run_drain_jobs() == 3
    by_iid = {d.iid: d for d in gl.app.db.deliveries.values()}
    assert by_iid[1].status is DeliveryStatus.PROCESSED
    assert by_iid[3].status is DeliveryStatus.PROCESSED
    assert by_iid[2].status is DeliveryStatus.FAILED
    assert by_iid[2].error == "processing failed: RuntimeError"
    assert sorted(job["iid"] for job in gl.jobs(REFRESH_JOB)) == [1, 3]


async def test_a_drain_with_the_database_away_keeps_every_delivery_waiting(
    gl: GitLabApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    await configured(gl)
    await _linked_issues(gl, 1)

    async def away(*_args: Any, **_kw: Any) -> bool:
        raise Unavailable("the database is unavailable")

    monkeypatch.setattr(FakeLinks, "request_refresh", away)
    await gl.hook(issue_hook(1), **{"idempotency-key": "k1"})
    with pytest.raises(Unavailable):  # the job runner retries the job later
        await gl.run_drain_jobs()
    (delivery,) = gl.app.db.deliveries.values()
    assert delivery.status is DeliveryStatus.RECEIVED


async def test_deliveries_left_waiting_get_a_drain_job_from_the_sweep(gl: GitLabApp) -> None:
    await configured(gl)
    await gl.hook(issue_hook(1), **{"idempotency-key": "k1"})
    gl.app.db.jobs.clear()  # its drain ran before the delivery committed (a lost race)
    assert await gl.webhooks.requeue_waiting() == 0  # not waiting for long yet
    assert gl.jobs(DRAIN_JOB) == []
    gl.app.clock.advance(seconds=31)
    assert await gl.webhooks.requeue_waiting() == 1
    assert await gl.webhooks.requeue_waiting() == 1  # coalesced with the pending one
    assert gl.jobs(DRAIN_JOB) == [{"org_id": gl.org_id}]
    assert await gl.run_drain_jobs() == 1
    assert await gl.webhooks.requeue_waiting() == 0


async def test_deliveries_are_listed_newest_first_with_cursor(gl: GitLabApp) -> None:
    await configured(gl)
    for n in range(5):
        await gl.hook(issue_hook(n + 1), **{"idempotency-key": f"k{n}"})
        gl.app.clock.advance(seconds=1)
    page, cursor = await gl.webhooks.list_deliveries(gl.admin, gl.org_id, limit=2)
    assert [d.iid for d in page] == [5, 4]
    assert cursor is not None
    page, cursor = await gl.webhooks.list_deliveries(gl.admin, gl.org_id, limit=2, cursor=cursor)
    assert [d.iid for d in page] == [3, 2]
    page, cursor = await gl.webhooks.list_deliveries(gl.admin, gl.org_id, limit=2, cursor=cursor)
    assert [d.iid for d in page] == [1]
    assert cursor is None
    with pytest.raises(InvalidInput):
        await gl.webhooks.list_deliveries(gl.admin, gl.org_id, cursor="garbage!")
    with pytest.raises(InvalidInput):
        await gl.webhooks.list_deliveries(gl.admin, gl.org_id, limit=0)
    with pytest.raises(Forbidden):
        await gl.webhooks.list_deliveries(gl.member, gl.org_id)


# --- stored secrets --------------------------------------------------------------------


async def test_rotation_reencrypts_under_the_newest_key_and_is_resumable(gl: GitLabApp) -> None:
    from viarah.domain.gitlab.keys import StoredSecrets

    def uow() -> FakeUnitOfWork:
        return FakeUnitOfWork(gl.app.db)

    await configured(gl)
    await gl.integrations.update(gl.admin, gl.org_id, signing_token="sign-me-please")
    gl.box.keys = ("k2", "k1")
    secrets = StoredSecrets(uow, gl.app.clock, gl.box)
    seen: list[tuple[int, int]] = []
    report = await secrets.rotate(lambda done, total: seen.append((done, total)))
    assert (report.examined, report.rotated, report.failed) == (1, 1, [])
    assert seen[-1] == (1, 1)
    integration = gl.app.db.gitlab_integrations[gl.org_id]
    assert integration.token_ciphertext is not None
    assert integration.token_ciphertext.startswith("enc[k2]:")
    assert gl.box.decrypt(integration.token_ciphertext) == "glpat-good"
    again = await secrets.rotate()
    assert again.rotated == 0
    gl.box.keys = ("k2",)  # old key retired: everything still decrypts
    assert await secrets.undecryptable() == (2, [])


async def test_doctor_finds_secrets_no_key_decrypts(gl: GitLabApp) -> None:
    from viarah.domain.gitlab.keys import StoredSecrets

    await configured(gl)
    gl.box.keys = ("unrelated",)
    secrets = StoredSecrets(lambda: FakeUnitOfWork(gl.app.db), gl.app.clock, gl.box)
    checked, broken = await secrets.undecryptable()
    assert checked == 1
    assert [(b.org_id, b.field) for b in broken] == [(gl.org_id, "token_ciphertext")]
    report = await secrets.rotate()
    assert report.failed == [f"org {gl.org_id}: token_ciphertext"]


# --- integrations remembered for webhooks ------------------------------------------------


def _remembering(gl: GitLabApp) -> tuple[GitLabWebhooks, GitLabIntegrations]:
    """This process's webhooks and integrations, sharing one RecentIntegrations."""

    def uow() -> FakeUnitOfWork:
        return FakeUnitOfWork(gl.app.db)

    recent = RecentIntegrations()
    hasher = FakeKeyedHasher()
    return (
        GitLabWebhooks(uow, gl.app.clock, hasher, gl.box, jitter=lambda: 0.5, recent=recent),
        GitLabIntegrations(uow, gl.app.clock, gl.box, hasher, gl.gitlab, recent=recent),
    )


async def _hook_with(webhooks: GitLabWebhooks, gl: GitLabApp, secret: str, key: str) -> str:
    headers = {"x-gitlab-token": secret, "x-gitlab-event": "Issue Hook", "idempotency-key": key}
    return await webhooks.receive(gl.org_id, headers, json.dumps(issue_hook(1)).encode())


async def test_a_secret_changed_elsewhere_applies_to_webhooks_within_a_second(
    gl: GitLabApp,
) -> None:
    webhooks, _ = _remembering(gl)
    await configured(gl)
    assert await _hook_with(webhooks, gl, SECRET, "k1") == "accepted"
    # Another process changes the secret: this one still knows the old one, for a second.
    stored = gl.app.db.gitlab_integrations[OrgId(gl.org_id)]
    new_digest = FakeKeyedHasher().digest("the-new-secret-0123456789")
    gl.app.db.gitlab_integrations[OrgId(gl.org_id)] = replace(
        stored, webhook_secret_digest=new_digest
    )
    gl.app.clock.advance(seconds=0.5)
    assert await _hook_with(webhooks, gl, SECRET, "k2") == "accepted"
    gl.app.clock.advance(seconds=0.5)
    with pytest.raises(Forbidden):
        await _hook_with(webhooks, gl, SECRET, "k3")
    assert await _hook_with(webhooks, gl, "the-new-secret-0123456789", "k4") == "accepted"


async def test_a_secret_changed_in_this_process_applies_at_once(gl: GitLabApp) -> None:
    webhooks, integrations = _remembering(gl)
    with pytest.raises(NotFound):  # not configured yet: remembered as such
        await _hook_with(webhooks, gl, SECRET, "k1")
    await integrations.update(gl.admin, gl.org_id, base_url=BASE, webhook_secret=SECRET)
    assert await _hook_with(webhooks, gl, SECRET, "k2") == "accepted"
    new = "another-secret-0123456789"
    await integrations.update(gl.admin, gl.org_id, webhook_secret=new)
    with pytest.raises(Forbidden):
        await _hook_with(webhooks, gl, SECRET, "k3")
    assert await _hook_with(webhooks, gl, new, "k4") == "accepted"
    await integrations.delete(gl.admin, gl.org_id)
    with pytest.raises(NotFound):
        await _hook_with(webhooks, gl, new, "k5")


def test_recent_integrations_forget_the_oldest_org_first() -> None:
    recent = RecentIntegrations(max_entries=2)
    now = datetime(2026, 1, 1, tzinfo=UTC)
    for org in ("a", "b", "c"):
        recent.put(OrgId(org), None, now)
    assert recent.get(OrgId("a"), now) == (False, None)
    assert recent.get(OrgId("b"), now) == (True, None)
    assert recent.get(OrgId("c"), now + timedelta(seconds=1)) == (False, None)  # too old
    assert recent.get(OrgId("b"), now - timedelta(seconds=1)) == (False, None)  # clock went back
