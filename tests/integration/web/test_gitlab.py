"""The GitLab integration, links and webhook through the HTTP API, against a local fake
GitLab (``tests/gitlab_fake.py``) reached by the app's real HttpxGitLabClient.

Every response of every test here is recorded; the teardown of ``client`` fails the test
if a GitLab token, webhook secret or signing token ever appears in one.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
from litestar.testing import TestClient

from tests.gitlab_fake import DEFAULT_TOKEN, FakeGitLab
from tests.integration.web.conftest import (
    Recorded,
    ShiftedClock,
    Web,
    assert_error,
    recording_client,
    web_container,
    web_settings,
)
from tests.integration.web.gitlab_helpers import (
    PROJECT,
    SIGNING_TOKEN,
    WEBHOOK_SECRET,
    configure,
    issue_event,
    issue_url,
    new_org,
    run_gitlab_jobs,
    send_hook,
)
from viarah.container import Container, new_fernet_key
from viarah.domain.gitlab.links import REFRESH_JOB
from viarah.domain.gitlab.webhooks import DRAIN_JOB, REFRESH_SPACING_LATEST
from viarah.settings import Settings

REJECTED_TOKEN = "glpat-REJECTED-by-gitlab-0000"
SECRETS = (DEFAULT_TOKEN, WEBHOOK_SECRET, SIGNING_TOKEN, REJECTED_TOKEN)
UNKNOWN_ID = "00000000-0000-4000-8000-000000000000"
GITLAB_KEYS = {
    "base_url",
    "has_token",
    "token_set_at",
    "token_status",
    "token_scopes",
    "token_expires_at",
    "webhook_configured",
    "webhook_secret_set_at",
    "signing_token_configured",
    "created_at",
    "updated_at",
}
LINK_KEYS = {
    "id",
    "url",
    "project_path",
    "gitlab_type",
    "gitlab_iid",
    "cached_title",
    "cached_state",
    "cached_labels",
    "cached_assignees",
    "last_synced_at",
    "sync",
}
SYNC_KEYS = {"status", "stale", "rate_limited", "rate_limited_until", "error_code"}
DELIVERY_KEYS = {
    "id",
    "event_type",
    "status",
    "received_at",
    "processed_at",
    "error",
    "action",
    "project_path",
    "gitlab_type",
    "gitlab_iid",
}


# -- fixtures --------------------------------------------------------------------------


@pytest.fixture
def gitlab() -> Iterator[FakeGitLab]:
    with FakeGitLab() as fake:
        yield fake


@pytest.fixture
def settings(postgres_url: str) -> Settings:
    """An encryption key, and outbound calls allowed to the loopback fake GitLab."""
    return web_settings(
        postgres_url,
        VIA_RAH_ENCRYPTION_KEY=new_fernet_key(),
        VIA_RAH_OUTBOUND_ALLOWLIST="127.0.0.1",
    )


def assert_no_secrets(seen: list[Recorded]) -> None:
    assert seen, "no response was recorded"
    for secret in SECRETS:
        assert not any(secret in r.text for r in seen), "a secret appeared in a response"


@pytest.fixture
def client(container: Container) -> Iterator[TestClient[Any]]:
    test_client, seen = recording_client(container)
    with test_client:
        yield test_client
    assert_no_secrets(seen)


# -- the integration -------------------------------------------------------------------


def test_setting_up_changing_and_removing_the_integration(
    web: Web, gitlab: FakeGitLab, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    org = new_org(web)

    empty = org.admin.get(org.integration)
    assert empty.status_code == 200, empty.text
    assert set(empty.json()) == {"gitlab"}
    blank = empty.json()["gitlab"]
    assert set(blank) == GITLAB_KEYS
    assert blank["base_url"] is None
    assert blank["has_token"] is False
    assert blank["webhook_configured"] is False
    error = assert_error(org.admin.patch(org.integration, json={"token": gitlab.token}), 400)
    assert error["fields"] == {"base_url": "is required to set up the GitLab integration"}

    body = configure(org, gitlab)
    assert body["validation"] == {
        "status": "valid",
        "error_code": None,
        "user": {"username": "fake.admin"},
    }
    shown = body["gitlab"]
    assert set(shown) == GITLAB_KEYS
    assert shown["base_url"] == gitlab.base_url
    assert shown["has_token"] is True
    assert shown["token_status"] == "valid"
    assert shown["token_scopes"] == ["read_api"]
    assert shown["token_expires_at"] == "2099-12-31"
    assert shown["token_set_at"] is not None
    assert shown["webhook_configured"] is True
    assert shown["webhook_secret_set_at"] is not None
    assert shown["signing_token_configured"] is False
    assert gitlab.calls(gitlab.user_path) == 1
    assert org.admin.get(org.integration).json() == {"gitlab": shown}

    # Absent fields are kept, null clears a secret; no token sent → no validation.
    cleared = org.admin.patch(org.integration, json={"webhook_secret": None})
    assert set(cleared.json()) == {"gitlab"}
    assert cleared.json()["gitlab"]["webhook_configured"] is False
    assert cleared.json()["gitlab"]["webhook_secret_set_at"] is None
    assert cleared.json()["gitlab"]["has_token"] is True
    assert cleared.json()["gitlab"]["base_url"] == gitlab.base_url
    signed = org.admin.patch(org.integration, json={"signing_token": SIGNING_TOKEN})
    assert signed.json()["gitlab"]["signing_token_configured"] is True
    untokened = org.admin.patch(org.integration, json={"token": None}).json()["gitlab"]
    assert untokened["has_token"] is False
    assert untokened["token_set_at"] is None
    assert untokened["token_scopes"] == []
    assert untokened["signing_token_configured"] is True

    rejected = org.admin.patch(org.integration, json={"token": REJECTED_TOKEN})
    error = assert_error(rejected, 400, "invalid_token")
    assert "token" in error["fields"]
    assert org.admin.get(org.integration).json()["gitlab"]["has_token"] is False
    for patch_body, field in (
        ({"base_url": None}, "base_url"),
        ({"base_url": "ftp://gitlab.example.com"}, "base_url"),
        ({"token": 7}, "token"),
        ({"webhook_secret": "short"}, "webhook_secret"),
        ({"password": "x"}, "password"),
    ):
        error = assert_error(org.admin.patch(org.integration, json=patch_body), 400)
        assert field in error["fields"], (patch_body, error)

    assert org.admin.delete(org.integration).status_code == 204
    assert org.admin.get(org.integration).json() == empty.json()
    assert org.admin.delete(org.integration).status_code == 204  # idempotent
    assert "gitlab.integration_updated" in caplog.text  # the app's log lines are captured
    for secret in SECRETS:
        assert secret not in caplog.text, "a secret appeared in a log line"


def test_storing_a_token_without_an_encryption_key_is_409(
    postgres_url: str, gitlab: FakeGitLab
) -> None:
    settings = web_settings(postgres_url, VIA_RAH_OUTBOUND_ALLOWLIST="127.0.0.1")
    clock = ShiftedClock()
    container = web_container(settings, clock)
    test_client, seen = recording_client(container)
    with test_client:
        web = Web(test_client, container, clock)
        org = new_org(web)
        for body in (
            {"base_url": gitlab.base_url, "token": gitlab.token},
            {"base_url": gitlab.base_url, "signing_token": SIGNING_TOKEN},
        ):
            error = assert_error(
                org.admin.patch(org.integration, json=body), 409, "encryption_key_missing"
            )
            assert "VIA_RAH_ENCRYPTION_KEY" in error["error"]
        assert org.admin.get(org.integration).json()["gitlab"]["base_url"] is None
        # What needs no encryption still works: the webhook secret is stored hashed.
        hashed = org.admin.patch(
            org.integration, json={"base_url": gitlab.base_url, "webhook_secret": WEBHOOK_SECRET}
        )
        assert hashed.status_code == 200, hashed.text
        assert hashed.json()["gitlab"]["webhook_configured"] is True
        assert hashed.json()["gitlab"]["has_token"] is False
        assert send_hook(web, org, key="k1").json() == {"status": "accepted"}
    assert_no_secrets(seen)


def test_validate_reports_valid_invalid_and_not_validated(web: Web, gitlab: FakeGitLab) -> None:
    org = new_org(web)
    validate = f"{org.integration}/validate"
    not_set_up = org.admin.post(validate)
    assert not_set_up.status_code == 200, not_set_up.text
    assert not_set_up.json() == {
        "status": "not_validated",
        "error_code": "missing_integration",
        "user": None,
    }
    org.admin.patch(org.integration, json={"base_url": gitlab.base_url})
    assert org.admin.post(validate).json() == {
        "status": "not_validated",
        "error_code": "missing_token",
        "user": None,
    }

    configure(org, gitlab)
    assert org.admin.post(validate).json() == {
        "status": "valid",
        "error_code": None,
        "user": {"username": "fake.admin"},
    }
    gitlab.token = "glpat-rotated-on-gitlab"  # the stored token stops working
    assert org.admin.post(validate).json() == {
        "status": "invalid",
        "error_code": "http_401",
        "user": None,
    }
    assert org.admin.get(org.integration).json()["gitlab"]["token_status"] == "invalid"


def test_roles_scopes_and_visibility(web: Web, gitlab: FakeGitLab) -> None:
    org = new_org(web)
    configure(org, gitlab)
    pm = web.member("pm@example.com")
    bob = web.member("bob@example.com")
    outsider = web.member("out@example.com")
    web.add_member(org.admin, org.org_id, pm, role="pm")
    web.add_member(org.admin, org.org_id, bob)
    manager_routes: list[tuple[str, str, Any]] = [
        ("GET", org.integration, None),
        ("PATCH", org.integration, {"base_url": gitlab.base_url}),
        ("DELETE", org.integration, None),
        ("POST", f"{org.integration}/validate", None),
        ("GET", org.deliveries, None),
    ]
    for method, path, body in manager_routes:
        assert_error(bob.request(method, path, json=body), 403, "forbidden")
        assert_error(outsider.request(method, path, json=body), 404, "not_found")
        assert_error(web.anon.request(method, path, json=body), 401)
    for method, path, body in (
        ("GET", org.links(), None),
        ("POST", org.links(), {"url": issue_url(gitlab)}),
        ("DELETE", f"{org.links()}/{UNKNOWN_ID}", None),
    ):
        assert_error(outsider.request(method, path, json=body), 404, "not_found")
    assert_error(outsider.get(f"/api/orgs/{UNKNOWN_ID}/integrations/gitlab"), 404, "not_found")

    assert pm.get(org.integration).status_code == 200
    assert pm.patch(org.integration, json={"base_url": gitlab.base_url}).status_code == 200
    assert pm.get(org.deliveries).status_code == 200
    reader = web.bearer(org.admin, scope="read")
    assert reader.get(org.integration).json()["gitlab"]["has_token"] is True
    assert reader.get(org.deliveries).status_code == 200
    assert_error(reader.patch(org.integration, json={"token": None}), 403, "read_scope")
    assert_error(reader.post(f"{org.integration}/validate"), 403, "read_scope")
    assert_error(reader.post(org.links(), json={"url": issue_url(gitlab)}), 403, "read_scope")
    assert reader.get(org.integration).json()["gitlab"]["has_token"] is True


# -- links -----------------------------------------------------------------------------


def test_linking_a_task_and_refreshing_the_link(web: Web, gitlab: FakeGitLab) -> None:
    org = new_org(web)
    configure(org, gitlab)
    bob = web.member("bob@example.com")
    web.add_member(org.admin, org.org_id, bob)
    gitlab.add_issue(
        PROJECT,
        12,
        title="Crash on save",
        labels=["bug", "P1"],
        assignees=[("ada", "Ada Lovelace")],
    )
    gitlab.add_merge_request(PROJECT, 7, title="Fix crash", state="merged")

    created = bob.post(org.links(), json={"url": issue_url(gitlab) + "/?x=1#note_5"})
    assert created.status_code == 201, created.text
    link = created.json()["link"]
    assert set(created.json()) == {"link"}
    assert set(link) == LINK_KEYS
    assert set(link["sync"]) == SYNC_KEYS
    assert link["url"] == issue_url(gitlab)  # canonical: no slash, query or fragment
    assert link["project_path"] == PROJECT
    assert link["gitlab_type"] == "issue"
    assert link["gitlab_iid"] == 12
    assert link["cached_title"] is None
    assert link["cached_labels"] == []
    assert link["cached_assignees"] == []
    assert link["last_synced_at"] is None
    assert link["sync"] == {
        "status": "never",
        "stale": True,
        "rate_limited": False,
        "rate_limited_until": None,
        "error_code": None,
    }
    mr_url = f"{gitlab.base_url}/{PROJECT}/-/merge_requests/7/diffs"
    mr = bob.post(org.links(), json={"url": mr_url}).json()["link"]
    assert mr["url"] == f"{gitlab.base_url}/{PROJECT}/-/merge_requests/7"
    assert mr["gitlab_type"] == "mr"

    assert_error(bob.post(org.links(), json={"url": issue_url(gitlab)}), 409)
    foreign = bob.post(org.links(), json={"url": f"https://gitlab.com/{PROJECT}/-/issues/12"})
    error = assert_error(foreign, 400, "invalid_input")
    assert error["fields"]["url"] == f"must be on this organization's GitLab ({gitlab.base_url})"
    for bad in (f"{gitlab.base_url}/{PROJECT}/-/pipelines/3", "not a url", ""):
        error = assert_error(bob.post(org.links(), json={"url": bad}), 400)
        assert "url" in error["fields"], error
    assert_error(bob.post(org.links(), json={}), 400)

    listed = bob.get(org.links()).json()["links"]
    assert [entry["id"] for entry in listed] == [link["id"], mr["id"]]
    assert {entry["sync"]["status"] for entry in listed} == {"never"}

    assert sorted(run_gitlab_jobs(web)) == [REFRESH_JOB, REFRESH_JOB]
    fresh = {entry["id"]: entry for entry in bob.get(org.links()).json()["links"]}
    issue = fresh[link["id"]]
    assert issue["cached_title"] == "Crash on save"
    assert issue["cached_state"] == "opened"
    assert issue["cached_labels"] == ["bug", "P1"]
    assert issue["cached_assignees"] == [{"username": "ada", "name": "Ada Lovelace"}]
    assert issue["last_synced_at"] is not None
    assert issue["sync"]["status"] == "ok"
    assert issue["sync"]["stale"] is False
    assert fresh[mr["id"]]["cached_state"] == "merged"
    assert gitlab.calls(gitlab.object_path(PROJECT, "issue", 12)) == 1

    assert bob.delete(f"{org.links()}/{link['id']}").status_code == 204
    assert [entry["id"] for entry in bob.get(org.links()).json()["links"]] == [mr["id"]]
    assert_error(bob.delete(f"{org.links()}/{link['id']}"), 404, "not_found")
    assert_error(bob.delete(f"{org.links()}/not-an-id"), 404, "not_found")
    other_task = web.task(org.admin, org.org_id, org.project_id)["id"]
    assert_error(bob.delete(f"{org.links(other_task)}/{mr['id']}"), 404, "not_found")
    assert_error(bob.get(org.links(UNKNOWN_ID)), 404, "not_found")

    unconfigured = new_org(web, "carol@example.com")
    missing = unconfigured.admin.post(unconfigured.links(), json={"url": issue_url(gitlab)})
    assert_error(missing, 409, "missing_integration")


# -- the webhook -----------------------------------------------------------------------


def test_webhook_accepts_deduplicates_and_refuses(web: Web, gitlab: FakeGitLab) -> None:
    org = new_org(web)
    configure(org, gitlab)

    first = send_hook(web, org, key="delivery-1", headers={"Origin": "https://elsewhere.example"})
    assert first.status_code == 202, first.text
    assert first.json() == {"status": "accepted"}
    again = send_hook(web, org, key="delivery-1")
    assert again.status_code == 202
    assert again.json() == {"status": "duplicate"}
    # Without Idempotency-Key: the event UUID plus the payload hash.
    by_uuid = {"X-Gitlab-Event-UUID": "7f7a1c2e-uuid"}
    assert send_hook(web, org, headers=by_uuid).json() == {"status": "accepted"}
    assert send_hook(web, org, headers=by_uuid).json() == {"status": "duplicate"}
    push = send_hook(web, org, {"object_kind": "push"}, event="Push Hook", key="push-1")
    assert push.status_code == 202
    assert push.json() == {"status": "accepted"}
    # A session cookie or API token changes nothing: the webhook is authenticated by token.
    assert send_hook(web, org, key="delivery-2", headers=org.admin.headers).status_code == 202

    assert_error(send_hook(web, org, token="wrong-secret-0123456789", key="w"), 403)
    assert_error(send_hook(web, org, token="", key="w"), 403)
    error = assert_error(send_hook(web, org, content=b"{not json", key="bad"), 400)
    assert "JSON" in error["error"]
    limit = web.container.settings().max_request_bytes
    oversized = send_hook(web, org, content=b'{"x": "' + b"x" * limit + b'"}', key="big")
    assert_error(oversized, 413, "too_large")

    unconfigured = new_org(web, "carol@example.com")
    assert_error(send_hook(web, unconfigured, key="k"), 404, "not_found")
    unconfigured.admin.patch(unconfigured.integration, json={"base_url": gitlab.base_url})
    assert_error(send_hook(web, unconfigured, key="k"), 404, "not_found")  # no secret
    for org_id in (UNKNOWN_ID, "not-an-id"):
        assert_error(
            web.anon.post(
                f"/api/orgs/{org_id}/integrations/gitlab/webhook",
                content=b"{}",
                headers={"X-Gitlab-Token": WEBHOOK_SECRET},
            ),
            404,
            "not_found",
        )

    deliveries = org.admin.get(org.deliveries).json()["deliveries"]
    assert len(deliveries) == 4  # refused and duplicate requests store nothing
    by_event = {d["event_type"]: d for d in deliveries}
    assert by_event["Push Hook"]["status"] == "ignored"
    assert by_event["Push Hook"]["processed_at"] is not None
    assert by_event["Push Hook"]["gitlab_type"] is None
    issue = next(d for d in deliveries if d["event_type"] == "Issue Hook")
    assert set(issue) == DELIVERY_KEYS
    assert issue["status"] == "received"
    assert issue["action"] == "close"
    assert issue["project_path"] == PROJECT
    assert issue["gitlab_type"] == "issue"
    assert issue["gitlab_iid"] == 12
    assert issue["processed_at"] is None


def test_webhook_deliveries_are_paged_newest_first(web: Web, gitlab: FakeGitLab) -> None:
    org = new_org(web)
    configure(org, gitlab)
    for iid in range(1, 6):
        web.clock.advance(seconds=1)
        assert send_hook(web, org, issue_event(iid), key=f"k{iid}").status_code == 202

    everything = org.admin.get(org.deliveries).json()
    assert [d["gitlab_iid"] for d in everything["deliveries"]] == [5, 4, 3, 2, 1]
    assert everything["next_cursor"] is None

    pages: list[list[int]] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = org.admin.get(org.deliveries, params=params)
        assert page.status_code == 200, page.text
        pages.append([d["gitlab_iid"] for d in page.json()["deliveries"]])
        cursor = page.json()["next_cursor"]
        if cursor is None:
            break
    assert pages == [[5, 4], [3, 2], [1]]

    for params, field in (
        ({"limit": 0}, "limit"),
        ({"limit": 101}, "limit"),
        ({"limit": "many"}, "limit"),
        ({"cursor": "not-a-cursor"}, "cursor"),
    ):
        error = assert_error(org.admin.get(org.deliveries, params=params), 400)
        assert field in error["error"], (params, error)


def test_a_webhook_refreshes_every_link_to_its_issue_with_one_call(
    web: Web, gitlab: FakeGitLab
) -> None:
    org = new_org(web)
    configure(org, gitlab)
    second_task = web.task(org.admin, org.org_id, org.project_id, title="Also")["id"]
    gitlab.add_issue(PROJECT, 12, title="Crash on save", state="opened")
    for task_id in (org.task_id, second_task):
        created = org.admin.post(org.links(task_id), json={"url": issue_url(gitlab)})
        assert created.status_code == 201, created.text
        run_gitlab_jobs(web)
    for task_id in (org.task_id, second_task):
        assert org.admin.get(org.links(task_id)).json()["links"][0]["cached_state"] == "opened"

    gitlab.add_issue(PROJECT, 12, title="Crash on save (fixed)", state="closed")
    issue_path = gitlab.object_path(PROJECT, "issue", 12)
    calls_before = gitlab.calls(issue_path)
    web.clock.advance(seconds=1)
    hook = send_hook(web, org, issue_event(12, "close"), key="close-12")
    assert hook.json() == {"status": "accepted"}
    assert gitlab.calls(issue_path) == calls_before  # the answer does not wait for GitLab

    # The delivery queues one refresh, 2-3 s (REFRESH_SPACING, jittered) after the object's last.
    assert run_gitlab_jobs(web) == [DRAIN_JOB]
    assert gitlab.calls(issue_path) == calls_before
    web.clock.advance(seconds=REFRESH_SPACING_LATEST.total_seconds())
    assert run_gitlab_jobs(web) == [REFRESH_JOB]
    assert gitlab.calls(issue_path) == calls_before + 1
    for task_id in (org.task_id, second_task):
        link = org.admin.get(org.links(task_id)).json()["links"][0]
        assert link["cached_state"] == "closed"
        assert link["cached_title"] == "Crash on save (fixed)"
        assert link["sync"]["status"] == "ok"
    delivery = org.admin.get(org.deliveries).json()["deliveries"][0]
    assert delivery["status"] == "processed"
    assert delivery["processed_at"] is not None
    assert delivery["error"] is None
