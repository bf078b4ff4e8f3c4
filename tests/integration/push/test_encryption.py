"""aes128gcm for Web Push (RFC 8291): the RFC's own example byte for byte, and every
output opened by an independent implementation (``http_ece``, pywebpush's)."""

from __future__ import annotations

import base64
import os

import http_ece
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from tests.factories import b64url, browser
from viarah.adapters.push.encryption import MAX_BODY_BYTES, encrypt
from viarah.domain.notifications.push import MAX_PLAINTEXT_BYTES

# RFC 8291, Appendix A (the message, the keys and the salt of the example).
RFC_PLAINTEXT = b"When I grow up, I want to be a watermelon"
RFC_AS_PRIVATE = "yfWPiYE-n46HLnH0KqZOF1fJJU3MYrct3AELtAQ-oRw"
RFC_UA_PUBLIC = (
    "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4"
)
RFC_AUTH = "BTBZMqHH6r4Tts7J_aSIgg"
RFC_SALT = "DGv6ra1nlYgDCS1FRnbzlw"
RFC_BODY = (
    "DGv6ra1nlYgDCS1FRnbzlwAAEABBBP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYW"
    "AmS6TlzAC8wEqKK6PBru3jl7A_yl95bQpu6cVPTpK4Mqgkf1CXztLVBSt2Ks3oZwbuwXPXLWyouBWLVWGNWQexSgSx"
    "sj_Qulcy4a-fN"
)


def b64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def test_reproduces_rfc_8291_appendix_a_byte_for_byte() -> None:
    ephemeral = ec.derive_private_key(int.from_bytes(b64(RFC_AS_PRIVATE), "big"), ec.SECP256R1())
    body = encrypt(RFC_PLAINTEXT, RFC_UA_PUBLIC, RFC_AUTH, ephemeral=ephemeral, salt=b64(RFC_SALT))
    assert body == b64(RFC_BODY)


@pytest.mark.parametrize("size", [1, 15, 16, 17, 200, 1000, MAX_PLAINTEXT_BYTES])
def test_http_ece_opens_every_size(size: int) -> None:
    key, p256dh, auth = browser()
    plaintext = os.urandom(size)
    body = encrypt(plaintext, p256dh, b64url(auth))
    assert len(body) == 86 + size + 1 + 16
    assert len(body) <= MAX_BODY_BYTES
    opened = http_ece.decrypt(body, private_key=key, auth_secret=auth, version="aes128gcm")
    assert opened == plaintext


def test_every_message_has_its_own_key_and_salt() -> None:
    key, p256dh, auth = browser()
    bodies = [encrypt(b"same", p256dh, b64url(auth)) for _ in range(3)]
    assert len({body[:16] for body in bodies}) == 3  # salts
    assert len({body[21:86] for body in bodies}) == 3  # ephemeral public keys
    for body in bodies:
        assert http_ece.decrypt(body, private_key=key, auth_secret=auth, version="aes128gcm")


def test_another_browser_cannot_open_it() -> None:
    _, p256dh, auth = browser()
    other, _, _ = browser()
    body = encrypt(b"for one browser only", p256dh, b64url(auth))
    with pytest.raises(http_ece.ECEException):
        http_ece.decrypt(body, private_key=other, auth_secret=auth, version="aes128gcm")


@pytest.mark.parametrize(
    ("p256dh", "auth", "says"),
    [
        ("not base64!", b64url(b"a" * 16), "p256dh"),
        (b64url(b"\x04" + b"\x01" * 64), b64url(b"a" * 16), "not on the P-256 curve"),
        (b64url(b"\x02" + b"\x01" * 32), b64url(b"a" * 16), "uncompressed"),
        (None, b64url(b"a" * 15), "16 bytes"),
    ],
)
def test_malformed_keys_are_refused_every_time(p256dh: str | None, auth: str, says: str) -> None:
    p256dh = p256dh if p256dh is not None else browser()[1]
    for _ in range(2):  # refusals are never cached
        with pytest.raises(ValueError, match=says) as raised:
            encrypt(b"x", p256dh, auth)
        assert p256dh not in str(raised.value)
