"""HttpxGitLabClient counts every call by kind and outcome, and times it."""

from __future__ import annotations

import socket

import pytest

from tests.gitlab_fake import FakeGitLab, Scripted
from viarah.adapters.gitlab.http import HttpxGitLabClient
from viarah.adapters.metrics.prometheus import PrometheusTelemetry
from viarah.adapters.outbound.clients import GuardedHttpClients
from viarah.domain.gitlab.client import GitLabCallFailed
from viarah.domain.gitlab.urls import GitLabRef, ObjectKind

PROJECT = "group/project"


@pytest.fixture
def telemetry() -> PrometheusTelemetry:
    return PrometheusTelemetry(process_metrics=False)


@pytest.fixture
def client(loopback_http: GuardedHttpClients, telemetry: PrometheusTelemetry) -> HttpxGitLabClient:
    return HttpxGitLabClient(loopback_http, telemetry=telemetry)


def calls(telemetry: PrometheusTelemetry, call: str, outcome: str) -> float:
    value = telemetry.registry.get_sample_value(
        "viarah_gitlab_calls_total", {"call": call, "outcome": outcome}
    )
    return value or 0.0


def timed(telemetry: PrometheusTelemetry, call: str) -> float:
    value = telemetry.registry.get_sample_value("viarah_gitlab_call_seconds_count", {"call": call})
    return value or 0.0


def ref(gitlab: FakeGitLab, kind: ObjectKind = ObjectKind.ISSUE, iid: int = 12) -> GitLabRef:
    return GitLabRef(origin=gitlab.base_url, project_path=PROJECT, kind=kind, iid=iid)


async def test_a_404_counts_as_not_found_and_a_success_as_ok(
    gitlab_fake: FakeGitLab, client: HttpxGitLabClient, telemetry: PrometheusTelemetry
) -> None:
    gitlab_fake.add_issue(PROJECT, 12)
    await client.fetch_object(gitlab_fake.base_url, gitlab_fake.token, ref(gitlab_fake))
    with pytest.raises(GitLabCallFailed):
        await client.fetch_object(gitlab_fake.base_url, gitlab_fake.token, ref(gitlab_fake, iid=99))
    with pytest.raises(GitLabCallFailed):
        await client.fetch_object(
            gitlab_fake.base_url, gitlab_fake.token, ref(gitlab_fake, ObjectKind.MR)
        )

    assert calls(telemetry, "issue", "ok") == 1
    assert calls(telemetry, "issue", "not_found") == 1
    assert calls(telemetry, "merge_request", "not_found") == 1
    assert timed(telemetry, "issue") == 2


async def test_auth_rate_limit_and_status_failures_are_counted_by_code(
    gitlab_fake: FakeGitLab, client: HttpxGitLabClient, telemetry: PrometheusTelemetry
) -> None:
    with pytest.raises(GitLabCallFailed):
        await client.current_user(gitlab_fake.base_url, "glpat-wrong")
    gitlab_fake.script(
        gitlab_fake.token_path,
        Scripted(429, {"message": "slow down"}, {"Retry-After": "30"}),
        Scripted(502, "bad gateway"),
    )
    for _ in range(2):
        with pytest.raises(GitLabCallFailed):
            await client.token_info(gitlab_fake.base_url, gitlab_fake.token)
    await client.current_user(gitlab_fake.base_url, gitlab_fake.token)

    assert calls(telemetry, "user", "auth_error") == 1
    assert calls(telemetry, "user", "ok") == 1
    assert calls(telemetry, "token_info", "rate_limited") == 1
    assert calls(telemetry, "token_info", "http_502") == 1


async def test_no_answer_counts_as_network_error(
    client: HttpxGitLabClient, telemetry: PrometheusTelemetry
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    with pytest.raises(GitLabCallFailed):
        await client.current_user(f"http://127.0.0.1:{closed}", "glpat-token")

    assert calls(telemetry, "user", "network_error") == 1


async def test_labels_never_carry_the_project_path_or_token(
    gitlab_fake: FakeGitLab, client: HttpxGitLabClient, telemetry: PrometheusTelemetry
) -> None:
    with pytest.raises(GitLabCallFailed):
        await client.fetch_object(gitlab_fake.base_url, gitlab_fake.token, ref(gitlab_fake))
    body, _ = telemetry.exposition(lambda: None)
    assert PROJECT.encode() not in body
    assert gitlab_fake.token.encode() not in body
    assert str(gitlab_fake.port).encode() not in body
