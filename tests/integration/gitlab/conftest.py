"""Fixtures for the GitLab adapter: a local fake GitLab and a client allowed to reach it.

Other test packages can reuse the fake directly: ``with FakeGitLab() as gitlab: ...``
(``tests/gitlab_fake.py``), or copy these three fixtures.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from tests.gitlab_fake import FakeGitLab
from viarah.adapters.gitlab.http import HttpxGitLabClient
from viarah.adapters.outbound.clients import GuardedHttpClients
from viarah.domain.shared.outbound import OutboundPolicy

# Short timeouts keep the timeout tests fast; the production defaults are 3/10/10/5 s.
TEST_TIMEOUT = httpx.Timeout(5.0, connect=2.0, read=0.5, write=2.0, pool=2.0)


@pytest.fixture
def gitlab_fake() -> Iterator[FakeGitLab]:
    """A started fake GitLab on 127.0.0.1 (stopped after the test)."""
    with FakeGitLab() as fake:
        yield fake


@pytest.fixture
async def loopback_http() -> AsyncIterator[GuardedHttpClients]:
    """Guarded HTTP clients whose allowlist admits 127.0.0.1 (and nothing else)."""
    clients = GuardedHttpClients(OutboundPolicy(["127.0.0.1"]), timeout=TEST_TIMEOUT)
    yield clients
    await clients.aclose()


@pytest.fixture
def gitlab_client(loopback_http: GuardedHttpClients) -> HttpxGitLabClient:
    """The real adapter, allowed to reach the fake."""
    return HttpxGitLabClient(loopback_http)
