"""Keys, the JWT and the endpoint's capability path never reach a log line or a result."""

from __future__ import annotations

import logging
import socket

import pytest

from tests.integration.push.helpers import target_of
from tests.push_fake import Answer, FakePushService
from viarah.adapters.push import WebPushSender
from viarah.domain.notifications.push import PushMessage, PushResult


async def test_no_secret_appears_in_logs_results_or_reprs(
    push_service: FakePushService,
    push_sender: WebPushSender,
    vapid_pair: tuple[str, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    sub = push_service.new_subscription()
    sub_id = push_service.subscription_id(sub)
    target = target_of(sub)
    results: list[PushResult] = []

    results.append(await push_sender.send(target, PushMessage(b"ok")))
    jwt = push_service.delivered[0].jwt
    assert jwt is not None
    # A hostile or chatty service echoes our credentials back in its error text.
    echo = f'{{"error": "bad", "auth": "{jwt}", "key": "{sub["keys"]["auth"]}"}}'
    for status in (400, 413, 429, 500, 410):
        push_service.script(sub_id, Answer(status, body=echo))
        results.append(await push_sender.send(target, PushMessage(b"x")))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    results.append(
        await push_sender.send(
            target_of(dict(sub, endpoint=f"http://127.0.0.1:{closed}/push/{sub_id}")),
            PushMessage(b"x"),
        )
    )
    results.append(
        await push_sender.send(
            target_of(dict(sub, endpoint=f"https://169.254.169.254/push/{sub_id}")),
            PushMessage(b"x"),
        )
    )
    with pytest.raises(ValueError) as too_big:
        await push_sender.send(target, PushMessage(b"x" * 5000))

    _public, private = vapid_pair
    secrets = {
        "VAPID private key": private,
        "JWT": jwt,
        "JWT signature": jwt.rsplit(".", 1)[1],
        "p256dh": sub["keys"]["p256dh"],
        "auth": sub["keys"]["auth"],
    }
    ours = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("viarah"))
    # httpx itself logs every request URL at INFO (the app's logging setup should raise
    # the "httpx" logger to WARNING); the endpoint's capability path is checked in OUR
    # log lines, keys and the JWT in every line of every library at DEBUG.
    assert sub_id not in ours, "endpoint path leaked into viarah logs"
    assert all(sub_id not in (r.reason or "") for r in results)
    texts = {
        "logs": caplog.text,
        "results": " | ".join(repr(r) for r in results),
        "repr": repr(push_sender) + repr(target),
        "error": str(too_big.value),
    }
    assert "push.not_delivered" in caplog.text  # something was logged at all
    assert any("[redacted]" in (r.reason or "") for r in results)
    for where, text in texts.items():
        for name, secret in secrets.items():
            assert secret not in text, f"{name} leaked into {where}"


def test_malformed_subscription_keys_are_refused_without_showing_them(
    push_sender: WebPushSender, push_service: FakePushService
) -> None:
    from viarah.adapters.push.encryption import encrypt

    sub = push_service.new_subscription()
    broken = sub["keys"]["p256dh"][:-8] + "AAAAAAAA"
    with pytest.raises(ValueError, match="p256dh") as caught:
        encrypt(b"x", broken, sub["keys"]["auth"])
    assert broken not in str(caught.value)
    with pytest.raises(ValueError, match="auth secret") as caught:
        encrypt(b"x", sub["keys"]["p256dh"], "c2hvcnQ")
    assert "c2hvcnQ" not in str(caught.value)
