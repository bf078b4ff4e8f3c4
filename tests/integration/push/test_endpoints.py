"""The endpoint parser's per-origin shortcut gives exactly what a full parse gives."""

from __future__ import annotations

import pytest

from viarah.adapters.push.transport import EndpointParser, parse_endpoint
from viarah.domain.shared.outbound import OutboundPolicy, OutboundRefused

POLICY = OutboundPolicy(["127.0.0.1", "push.test"])
SAME = [
    "https://fcm.googleapis.com/fcm/send/dQw4w9WgXcQ:APA91bH-xyz_123",
    "https://updates.push.services.mozilla.com/wpush/v2/gAAAAABk-9x_Z",
    "https://web.push.apple.com/QGx1Zm9v.bar~baz",
    "https://FCM.GoogleAPIs.com:443/fcm/send/abc",
    "https://fcm.googleapis.com:8443/fcm/send/abc",
    "http://127.0.0.1:8080/push/abc",
    "http://push.test/push/abc",
    "https://[2606:4700::1111]/push/abc",
    "https://push.example.com/a/./b/../c",
    "https://push.example.com/a%2Fb?x=1",
    "https://push.example.com/caf\u00e9",
    "https://push.example.com",
    "  https://push.example.com/padded  ",
]


@pytest.mark.parametrize("endpoint", SAME)
def test_the_shortcut_agrees_with_the_full_parse(endpoint: str) -> None:
    parse = EndpointParser(POLICY)
    parse("https://fcm.googleapis.com/warm/the/cache")
    assert parse(endpoint) == parse_endpoint(endpoint, POLICY)
    assert parse(endpoint) == parse_endpoint(endpoint, POLICY)  # from the cache too


@pytest.mark.parametrize(
    "endpoint",
    [
        "http://push.example.com/x",
        "https://user:pw@push.example.com/x",
        "https://169.254.169.254/x",
        "https://10.0.0.1/x",
        "https://2130706433/x",
        "ftp://push.example.com/x",
    ],
)
def test_refusals_are_never_cached(endpoint: str) -> None:
    parse = EndpointParser(POLICY)
    for _ in range(2):
        with pytest.raises(OutboundRefused):
            parse(endpoint)
