"""HttpxGitLabClient against the local fake GitLab: requests, parsing, every failure code."""

from __future__ import annotations

import logging
import socket
from datetime import UTC, date, datetime, timedelta

import pytest

from tests.fakes import FakeClock
from tests.gitlab_fake import FakeGitLab, Scripted, http_date
from tests.integration.gitlab.conftest import TEST_TIMEOUT
from viarah.adapters.gitlab.http import HttpxGitLabClient
from viarah.adapters.outbound.clients import GuardedHttpClients
from viarah.domain.gitlab.client import Assignee, GitLabCallFailed
from viarah.domain.gitlab.urls import GitLabRef, ObjectKind
from viarah.domain.shared.outbound import OutboundPolicy

PROJECT = "group/sub/project"


def ref_to(gitlab: FakeGitLab, kind: ObjectKind = ObjectKind.ISSUE, iid: int = 12) -> GitLabRef:
    return GitLabRef(origin=gitlab.base_url, project_path=PROJECT, kind=kind, iid=iid)


async def test_fetches_an_issue_with_the_token_header_and_an_encoded_project_path(
    gitlab_fake: FakeGitLab, gitlab_client: HttpxGitLabClient
) -> None:
    gitlab_fake.add_issue(
        PROJECT,
        12,
        title="Crash on save",
        state="closed",
        labels=["bug", "P1"],
        assignees=[("ada", "Ada Lovelace"), ("alan", "Alan Turing")],
        updated_at="2024-05-01T10:00:00.123Z",
    )
    found = await gitlab_client.fetch_object(
        gitlab_fake.base_url, gitlab_fake.token, ref_to(gitlab_fake)
    )
    assert found.title == "Crash on save"
    assert found.state == "closed"
    assert found.labels == ("bug", "P1")
    assert found.assignees == (Assignee("ada", "Ada Lovelace"), Assignee("alan", "Alan Turing"))
    assert found.web_url == f"{gitlab_fake.base_url}/{PROJECT}/-/issues/12"
    assert found.updated_at == datetime(2024, 5, 1, 10, 0, 0, 123000, tzinfo=UTC)
    request = gitlab_fake.requests[-1]
    assert request.path == "/api/v4/projects/group%2Fsub%2Fproject/issues/12"
    assert request.headers["private-token"] == gitlab_fake.token
    assert request.headers["accept"] == "application/json"


async def test_fetches_a_merge_request_with_only_the_legacy_assignee_field(
    gitlab_fake: FakeGitLab, gitlab_client: HttpxGitLabClient
) -> None:
    gitlab_fake.add_merge_request(
        PROJECT,
        7,
        title="Fix crash",
        state="merged",
        assignees=[("grace", "Grace Hopper")],
        legacy_assignee=True,
        labels=[{"id": 1, "name": "backend", "color": "#fff"}],
        updated_at="2024-05-02T12:30:00+02:00",
    )
    found = await gitlab_client.fetch_object(
        gitlab_fake.base_url, gitlab_fake.token, ref_to(gitlab_fake, ObjectKind.MR, 7)
    )
    assert found.state == "merged"
    assert found.assignees == (Assignee("grace", "Grace Hopper"),)
    assert found.labels == ("backend",)
    assert found.updated_at == datetime(2024, 5, 2, 10, 30, tzinfo=UTC)
    path = gitlab_fake.object_path(PROJECT, "mr", 7)
    assert path.endswith("/merge_requests/7")
    assert gitlab_fake.calls(path) == 1


async def test_current_user_and_token_info(
    gitlab_fake: FakeGitLab, gitlab_client: HttpxGitLabClient
) -> None:
    user = await gitlab_client.current_user(gitlab_fake.base_url, gitlab_fake.token)
    info = await gitlab_client.token_info(gitlab_fake.base_url, gitlab_fake.token)
    assert user.username == "fake.admin"
    assert info.scopes == ("read_api",)
    assert info.expires_at == date(2099, 12, 31)
    gitlab_fake.token_self["expires_at"] = None
    assert (
        await gitlab_client.token_info(gitlab_fake.base_url, gitlab_fake.token)
    ).expires_at is None


async def test_pooled_connection_is_reused_across_calls(
    gitlab_fake: FakeGitLab, gitlab_client: HttpxGitLabClient
) -> None:
    for _ in range(3):
        await gitlab_client.current_user(gitlab_fake.base_url, gitlab_fake.token)
    assert len({r.client_port for r in gitlab_fake.requests}) == 1


async def expect_failure(client: HttpxGitLabClient, gitlab: FakeGitLab) -> GitLabCallFailed:
    with pytest.raises(GitLabCallFailed) as failed:
        await client.fetch_object(gitlab.base_url, gitlab.token, ref_to(gitlab))
    return failed.value


async def test_wrong_token_is_auth_error(
    gitlab_fake: FakeGitLab, gitlab_client: HttpxGitLabClient
) -> None:
    with pytest.raises(GitLabCallFailed) as failed:
        await gitlab_client.current_user(gitlab_fake.base_url, "glpat-wrong")
    assert (failed.value.code, failed.value.status) == ("auth_error", 401)


async def test_forbidden_is_auth_error(
    gitlab_fake: FakeGitLab, gitlab_client: HttpxGitLabClient
) -> None:
    gitlab_fake.add_issue(PROJECT, 12)
    path = gitlab_fake.object_path(PROJECT, "issue", 12)
    gitlab_fake.script(path, Scripted(403, {"message": "403 Forbidden"}))
    failed = await expect_failure(gitlab_client, gitlab_fake)
    assert (failed.code, failed.status) == ("auth_error", 403)


async def test_unknown_object_is_not_found(
    gitlab_fake: FakeGitLab, gitlab_client: HttpxGitLabClient
) -> None:
    failed = await expect_failure(gitlab_client, gitlab_fake)
    assert (failed.code, failed.status) == ("not_found", 404)
    assert "404" in str(failed)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Retry-After": "30"}, 30.0),
        ({"Retry-After": " 0 "}, 0.0),
        ({"Retry-After": "999999999"}, 86400.0),  # capped at a day
        ({"Retry-After": "soon"}, None),
        ({}, None),
    ],
)
async def test_rate_limited_with_retry_after_seconds(
    gitlab_fake: FakeGitLab,
    gitlab_client: HttpxGitLabClient,
    headers: dict[str, str],
    expected: float | None,
) -> None:
    path = gitlab_fake.object_path(PROJECT, "issue", 12)
    gitlab_fake.script(path, Scripted(429, {"message": "Retry later"}, headers=headers))
    failed = await expect_failure(gitlab_client, gitlab_fake)
    assert (failed.code, failed.status, failed.retry_after) == ("rate_limited", 429, expected)


async def test_rate_limited_with_an_http_date_or_ratelimit_reset(
    gitlab_fake: FakeGitLab, loopback_http: GuardedHttpClients
) -> None:
    now = datetime(2024, 6, 1, 12, 0, 0, tzinfo=UTC)
    client = HttpxGitLabClient(loopback_http, clock=FakeClock(now))
    path = gitlab_fake.object_path(PROJECT, "issue", 12)
    later = http_date(now + timedelta(seconds=120))
    reset = str(int((now + timedelta(seconds=45)).timestamp()))
    gitlab_fake.script(
        path,
        Scripted(429, {}, headers={"Retry-After": later}),
        Scripted(429, {}, headers={"RateLimit-Reset": reset}),
        Scripted(429, {}, headers={"Retry-After": http_date(now - timedelta(minutes=5))}),
    )
    assert (await expect_failure(client, gitlab_fake)).retry_after == 120.0
    assert (await expect_failure(client, gitlab_fake)).retry_after == 45.0
    assert (await expect_failure(client, gitlab_fake)).retry_after == 0.0


@pytest.mark.parametrize("status", [500, 502, 503, 418])
async def test_other_statuses_are_http_n(
    gitlab_fake: FakeGitLab, gitlab_client: HttpxGitLabClient, status: int
) -> None:
    path = gitlab_fake.object_path(PROJECT, "issue", 12)
    gitlab_fake.script(path, Scripted(status, {"message": "oops"}))
    failed = await expect_failure(gitlab_client, gitlab_fake)
    assert (failed.code, failed.status) == (f"http_{status}", status)


async def test_redirect_to_another_host_is_reported_not_followed(
    gitlab_fake: FakeGitLab, gitlab_client: HttpxGitLabClient
) -> None:
    with FakeGitLab(token=gitlab_fake.token) as other:
        other.add_issue(PROJECT, 12)
        target = other.base_url + other.object_path(PROJECT, "issue", 12)
        path = gitlab_fake.object_path(PROJECT, "issue", 12)
        gitlab_fake.script(path, Scripted(302, {}, headers={"Location": target}))
        failed = await expect_failure(gitlab_client, gitlab_fake)
        assert (failed.code, failed.status) == ("http_302", 302)
        assert "never followed" in str(failed)
        assert other.calls(other.object_path(PROJECT, "issue", 12)) == 0


async def test_timeout_is_network_error(
    gitlab_fake: FakeGitLab, gitlab_client: HttpxGitLabClient
) -> None:
    assert TEST_TIMEOUT.read is not None
    assert TEST_TIMEOUT.read < 1
    gitlab_fake.script(gitlab_fake.user_path, Scripted(200, gitlab_fake.user, delay=3.0))
    with pytest.raises(GitLabCallFailed) as failed:
        await gitlab_client.current_user(gitlab_fake.base_url, gitlab_fake.token)
    assert failed.value.code == "network_error"
    assert "timed out (read timeout)" in str(failed.value)


async def test_unreachable_port_is_network_error(gitlab_client: HttpxGitLabClient) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(GitLabCallFailed) as failed:
        await gitlab_client.current_user(f"http://127.0.0.1:{port}", "glpat-x")
    assert failed.value.code == "network_error"
    assert "cannot reach GitLab at 127.0.0.1" in str(failed.value)


async def test_address_not_allowlisted_is_network_error_naming_host_and_reason(
    gitlab_fake: FakeGitLab,
) -> None:
    clients = GuardedHttpClients(OutboundPolicy(), timeout=TEST_TIMEOUT)
    client = HttpxGitLabClient(clients)
    try:
        with pytest.raises(GitLabCallFailed) as failed:
            await client.current_user(gitlab_fake.base_url, gitlab_fake.token)
    finally:
        await clients.aclose()
    assert failed.value.code == "network_error"
    assert str(failed.value).startswith(
        "refused: 127.0.0.1 is a loopback address; add it to VIA_RAH_OUTBOUND_ALLOWLIST to allow it"
    )
    assert gitlab_fake.calls(gitlab_fake.user_path) == 0


async def test_localhost_is_refused_unless_allowlisted(gitlab_fake: FakeGitLab) -> None:
    clients = GuardedHttpClients(OutboundPolicy(), timeout=TEST_TIMEOUT)
    try:
        with pytest.raises(GitLabCallFailed) as failed:
            await HttpxGitLabClient(clients).current_user(
                gitlab_fake.url_for("localhost"), gitlab_fake.token
            )
    finally:
        await clients.aclose()
    assert failed.value.code == "network_error"
    assert "refused: localhost resolves to" in str(failed.value)
    assert gitlab_fake.calls(gitlab_fake.user_path) == 0


@pytest.mark.parametrize("host", ["2130706433", "0x7f.1", "0177.0.0.1", "127.1"])
async def test_numeric_spellings_of_loopback_are_network_errors(
    gitlab_fake: FakeGitLab, gitlab_client: HttpxGitLabClient, host: str
) -> None:
    with pytest.raises(GitLabCallFailed) as failed:
        await gitlab_client.current_user(gitlab_fake.url_for(host), gitlab_fake.token)
    assert failed.value.code == "network_error"
    assert host in str(failed.value)
    assert gitlab_fake.calls(gitlab_fake.user_path) == 0


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (b"<html>Sign in</html>", "did not answer JSON"),
        ([1, 2, 3], "is not a JSON object"),
        ({"state": "opened"}, "has no text field 'title'"),
        ({"title": "t", "state": "opened", "labels": "bug"}, "'labels' that is not a list"),
        ({"title": "t", "state": "opened", "assignees": [{"name": "x"}]}, "without a username"),
        ({"title": "t", "state": "opened", "updated_at": "yesterday"}, "not ISO 8601"),
    ],
)
async def test_unexpected_bodies_are_bad_response(
    gitlab_fake: FakeGitLab, gitlab_client: HttpxGitLabClient, body: object, why: str
) -> None:
    path = gitlab_fake.object_path(PROJECT, "issue", 12)
    gitlab_fake.script(path, Scripted(200, body))
    failed = await expect_failure(gitlab_client, gitlab_fake)
    assert failed.code == "bad_response"
    assert why in str(failed)


async def test_oversized_bodies_are_bad_response(
    gitlab_fake: FakeGitLab, loopback_http: GuardedHttpClients
) -> None:
    client = HttpxGitLabClient(loopback_http, max_body_bytes=1024)
    gitlab_fake.script(gitlab_fake.user_path, Scripted(200, {"username": "x" * 5000}))
    with pytest.raises(GitLabCallFailed) as failed:
        await client.current_user(gitlab_fake.base_url, gitlab_fake.token)
    assert failed.value.code == "bad_response"
    assert "larger than 1024 bytes" in str(failed.value)


async def test_token_that_cannot_be_a_header_is_refused_before_sending(
    gitlab_fake: FakeGitLab, gitlab_client: HttpxGitLabClient
) -> None:
    for token in ("", "glpat-abc\r\nX-Injected: 1", "glpat-ünïcode", "two words"):
        with pytest.raises(GitLabCallFailed) as failed:
            await gitlab_client.current_user(gitlab_fake.base_url, token)
        assert failed.value.code == "auth_error"
        if token:
            assert token not in str(failed.value)
    assert gitlab_fake.calls(gitlab_fake.user_path) == 0


async def test_the_token_never_appears_in_errors_logs_or_reprs(
    gitlab_fake: FakeGitLab,
    gitlab_client: HttpxGitLabClient,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)  # httpx, httpcore and viarah loggers, everything
    token = gitlab_fake.token
    path = gitlab_fake.object_path(PROJECT, "issue", 12)
    gitlab_fake.script(
        path,
        Scripted(401, {"message": "401 Unauthorized"}),
        Scripted(429, {"message": token}, headers={"Retry-After": "5"}),
        Scripted(500, {"message": f"internal error with {token}"}),
        Scripted(302, {}, headers={"Location": "http://169.254.169.254/latest/meta-data/"}),
        Scripted(200, f"not json {token}"),
        Scripted(200, {"state": token}),
        Scripted(200, {}, delay=3.0),
    )
    errors = [await expect_failure(gitlab_client, gitlab_fake) for _ in range(7)]
    refused = HttpxGitLabClient(GuardedHttpClients(OutboundPolicy(), timeout=TEST_TIMEOUT))
    with pytest.raises(GitLabCallFailed) as blocked:
        await refused.current_user(gitlab_fake.base_url, token)
    errors.append(blocked.value)
    assert [e.code for e in errors] == [
        "auth_error",
        "rate_limited",
        "http_500",
        "http_302",
        "bad_response",
        "bad_response",
        "network_error",
        "network_error",
    ]
    assert gitlab_fake.calls(path) == 7
    assert caplog.records, "the calls were logged"
    for error in errors:
        assert token not in str(error)
        assert token not in repr(error)
        assert token not in str(error.args)
    assert token not in caplog.text
    assert token not in repr(gitlab_client)


async def test_a_redirect_echoing_the_token_does_not_leak_it(
    gitlab_fake: FakeGitLab,
    gitlab_client: HttpxGitLabClient,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A server that echoes the token back in a header: httpcore's DEBUG trace prints
    # response headers (keep the httpcore logger above DEBUG in production); nothing at
    # INFO or above, and nothing in the error, may carry it.
    caplog.set_level(logging.INFO)
    token = gitlab_fake.token
    location = f"http://127.0.0.1:1/?private_token={token}"
    gitlab_fake.script(gitlab_fake.user_path, Scripted(302, {}, headers={"Location": location}))
    with pytest.raises(GitLabCallFailed) as failed:
        await gitlab_client.current_user(gitlab_fake.base_url, token)
    assert failed.value.code == "http_302"
    assert token not in str(failed.value)
    assert token not in repr(failed.value)
    assert "gitlab.call_failed" in caplog.text
    assert token not in caplog.text
