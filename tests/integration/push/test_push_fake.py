"""The fake push service is strict: it refuses what a real one refuses (so a sender that
passes against it passes for a reason)."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from tests.fakes import FakeClock
from tests.integration.push.helpers import target_of
from tests.push_fake import FakePushService
from viarah.adapters.push import WebPushSender
from viarah.domain.notifications.push import PushMessage


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def vapid_header(claims: dict[str, object], key: ec.EllipticCurvePrivateKey | None = None) -> str:
    """An ES256 VAPID header for any claims (the sender's signer refuses odd ones)."""
    key = key or ec.generate_private_key(ec.SECP256R1())
    head = _b64(b'{"typ":"JWT","alg":"ES256"}') + "." + _b64(json.dumps(claims).encode())
    r, s = decode_dss_signature(key.sign(head.encode(), ec.ECDSA(hashes.SHA256())))
    token = head + "." + _b64(r.to_bytes(32, "big") + s.to_bytes(32, "big"))
    public = key.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
    return f"vapid t={token}, k={_b64(public)}"


@pytest.fixture(params=["threaded", "asyncio"])
def push_service(request: pytest.FixtureRequest, clock: FakeClock) -> Iterator[FakePushService]:
    """Both servers of the fake (the threaded one of the tests, the asyncio one of the
    benchmark) judge every request the same way."""
    with FakePushService(
        aliases=("push.test",),
        now=lambda: clock.now().timestamp(),
        fast=request.param == "asyncio",
    ) as fake:
        yield fake


@pytest.fixture
async def raw() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


async def _post_variant(
    service: FakePushService,
    sender: WebPushSender,
    raw: httpx.AsyncClient,
    *,
    drop: str | None = None,
    set_headers: dict[str, str] | None = None,
    body: bytes | None = None,
    subscription: dict[str, object] | None = None,
) -> int:
    sub = subscription or service.new_subscription()
    prepared = sender.prepare(target_of(sub), PushMessage(b"hello"))
    headers = dict(prepared.headers)
    if drop:
        del headers[drop]
    headers.update(set_headers or {})
    answer = await raw.post(
        prepared.endpoint.url, content=prepared.body if body is None else body, headers=headers
    )
    return answer.status_code


async def test_a_correct_request_is_delivered(
    push_service: FakePushService, push_sender: WebPushSender, raw: httpx.AsyncClient
) -> None:
    assert await _post_variant(push_service, push_sender, raw) == 201
    assert [r.plaintext for r in push_service.delivered] == [b"hello"]


@pytest.mark.parametrize(
    ("variant", "status", "reason"),
    [
        ({"drop": "TTL"}, 400, "TTL"),
        ({"drop": "Authorization"}, 401, "missing Authorization"),
        ({"set_headers": {"Authorization": "WebPush abc"}}, 401, "missing Authorization"),
        ({"set_headers": {"Urgency": "now"}}, 400, "Urgency"),
        ({"set_headers": {"Topic": "t" * 33}}, 400, "Topic"),
        ({"drop": "Content-Encoding"}, 400, "Content-Encoding"),
        ({"set_headers": {"Content-Encoding": "aesgcm"}}, 400, "Content-Encoding"),
        ({"body": b"\0" * 200}, 400, "cannot decrypt"),
        ({"body": b"\0" * 4097}, 413, "over 4096"),
    ],
)
async def test_broken_requests_are_rejected_with_the_reason(
    push_service: FakePushService,
    push_sender: WebPushSender,
    raw: httpx.AsyncClient,
    variant: dict[str, Any],
    status: int,
    reason: str,
) -> None:
    assert await _post_variant(push_service, push_sender, raw, **variant) == status
    (rejected,) = push_service.rejected
    assert rejected.status == status
    assert reason in rejected.reason
    assert push_service.delivered == []


async def test_a_body_for_another_subscription_does_not_decrypt(
    push_service: FakePushService, push_sender: WebPushSender, raw: httpx.AsyncClient
) -> None:
    mine, other = push_service.new_subscription(), push_service.new_subscription()
    prepared = push_sender.prepare(target_of(other), PushMessage(b"not yours"))
    answer = await raw.post(mine["endpoint"], content=prepared.body, headers=prepared.headers)
    assert answer.status_code == 400


@pytest.mark.parametrize(
    ("claims", "why"),
    [
        ({"aud": "https://elsewhere.example", "exp": 3600, "sub": "mailto:a@b.c"}, "aud"),
        ({"aud": None, "exp": -60, "sub": "mailto:a@b.c"}, "expired"),
        ({"aud": None, "exp": 25 * 3600, "sub": "mailto:a@b.c"}, "24 hours"),
        ({"aud": None, "exp": 3600, "sub": "a@b.c"}, "sub"),
        ({"aud": None, "sub": "mailto:a@b.c"}, "exp"),
    ],
)
async def test_jwt_claims_are_verified(
    push_service: FakePushService,
    push_sender: WebPushSender,
    raw: httpx.AsyncClient,
    clock: FakeClock,
    claims: dict[str, Any],
    why: str,
) -> None:
    now = int(clock.now().timestamp())
    claims = dict(claims, aud=claims["aud"] or push_service.origin)
    if "exp" in claims:
        claims["exp"] = now + int(claims["exp"])
    header = {"Authorization": vapid_header(claims)}

    assert await _post_variant(push_service, push_sender, raw, set_headers=header) == 401
    assert why in push_service.rejected[0].reason


async def test_a_forged_signature_is_refused(
    push_service: FakePushService, push_sender: WebPushSender, raw: httpx.AsyncClient
) -> None:
    sub = push_service.new_subscription()
    good = push_sender.prepare(target_of(sub), PushMessage(b"x")).headers["Authorization"]
    token, key = good.removeprefix("vapid t=").split(", k=")
    head, claims, signature = token.split(".")
    forged_claims = _b64(
        b'{"aud":"%s","exp":%d,"sub":"mailto:evil@example.com"}'
        % (push_service.origin.encode(), json.loads(base64.urlsafe_b64decode(claims + "=="))["exp"])
    )
    forged = f"vapid t={head}.{forged_claims}.{signature}, k={key}"

    status = await _post_variant(
        push_service, push_sender, raw, subscription=sub, set_headers={"Authorization": forged}
    )

    assert status == 401
    assert "signature" in push_service.rejected[0].reason


async def test_a_subscription_bound_to_a_key_refuses_another_valid_key(
    push_service: FakePushService,
    push_sender: WebPushSender,
    raw: httpx.AsyncClient,
    clock: FakeClock,
) -> None:
    sub = push_service.new_subscription(application_server_key=push_sender.public_key)
    exp = int(clock.now().timestamp()) + 3600
    stranger = vapid_header({"aud": push_service.origin, "exp": exp, "sub": "mailto:x@y.z"})

    status = await _post_variant(
        push_service, push_sender, raw, subscription=sub, set_headers={"Authorization": stranger}
    )

    assert status == 403
    assert "VAPID key" in push_service.rejected[0].reason
    assert await _post_variant(push_service, push_sender, raw, subscription=sub) == 201
