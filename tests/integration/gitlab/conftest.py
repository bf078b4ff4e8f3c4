"""Fixtures for the GitLab adapter: a local fake GitLab and a client allowed to reach it.

Other test packages can reuse the fake directly: ``with FakeGitLab() as gitlab: ...``
(``tests/gitlab_fake.py``), or copy these three fixtures.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from tests.gitlab_fake import FakeGitLab
from viarah.adapters.gitlab.http import Http11GitLabClient
from viarah.adapters.outbound.http11 import GuardedHttp11Clients
from viarah.domain.shared.outbound import OutboundPolicy

# Short timeouts keep the timeout tests fast; the production defaults are 3/10/5 s.
TEST_READ_TIMEOUT = 0.5


def guarded_http(policy: OutboundPolicy, max_body: int = 2 * 1024 * 1024) -> GuardedHttp11Clients:
    """The kind of client the container gives the GitLab adapter, with short timeouts."""
    return GuardedHttp11Clients(
        policy,
        connect_timeout=2.0,
        read_timeout=TEST_READ_TIMEOUT,
        pool_timeout=2.0,
        max_body=max_body,
    )


@pytest.fixture
def gitlab_fake() -> Iterator[FakeGitLab]:
    """A started fake GitLab on 127.0.0.1 (stopped after the test)."""
    with FakeGitLab() as fake:
        yield fake


@pytest.fixture
async def loopback_http() -> AsyncIterator[GuardedHttp11Clients]:
    """Guarded HTTP clients whose allowlist admits 127.0.0.1 (and nothing else)."""
    clients = guarded_http(OutboundPolicy(["127.0.0.1"]))
    yield clients
    await clients.aclose()


@pytest.fixture
def gitlab_client(loopback_http: GuardedHttp11Clients) -> Http11GitLabClient:
    """The real adapter, allowed to reach the fake."""
    return Http11GitLabClient(loopback_http)
