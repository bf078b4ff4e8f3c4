"""Fixtures for the Web Push adapter: a local push service and a sender allowed to reach it.

Other test packages can reuse the fake directly (``tests/push_fake.py``):
``with FakePushService() as push: ...``, or copy these fixtures. The sender and the fake
share one FakeClock, so tests can move time (JWT expiry) without sleeping.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from tests.fakes import FakeClock
from tests.fakes.resolver import FakeResolver
from tests.integration.push.helpers import LOOPBACK, make_sender
from tests.push_fake import FakePushService
from viarah.adapters.crypto.vapid import generate_vapid_keypair
from viarah.adapters.push import WebPushSender


@pytest.fixture(scope="session")
def vapid_pair() -> tuple[str, str]:
    pair = generate_vapid_keypair()
    return pair.public_key, pair.private_key


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def resolver() -> FakeResolver:
    return FakeResolver({"push.test": ["127.0.0.1"]})


@pytest.fixture
def push_service(clock: FakeClock) -> Iterator[FakePushService]:
    """A started push service on 127.0.0.1 (also reachable as ``push.test``)."""
    with FakePushService(aliases=("push.test",), now=lambda: clock.now().timestamp()) as fake:
        yield fake


@pytest.fixture
async def push_sender(
    vapid_pair: tuple[str, str], clock: FakeClock, resolver: FakeResolver
) -> AsyncIterator[WebPushSender]:
    """The real adapter, with 127.0.0.1 allowlisted (so http:// is accepted there)."""
    sender = make_sender(vapid_pair, clock, resolver, LOOPBACK)
    yield sender
    await sender.aclose()
