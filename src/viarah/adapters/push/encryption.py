"""Message checks and aes128gcm encryption for Web Push (RFC 8291 over RFC 8188).

Encryption is the exact call pywebpush's ``WebPusher.encode(data, "aes128gcm")`` makes:
``http_ece.encrypt`` with a fresh ephemeral P-256 key, a random 16-byte salt, the
browser's ``p256dh`` and ``auth`` secret, and the default 4096-byte record size. Calling
``http_ece`` (pywebpush's own dependency) directly skips pywebpush's per-message deep
copies and its import of aiohttp and requests (~0.5 s at start-up), and lets this module
validate the subscription keys properly (pywebpush's check accepts any p256dh).

A plaintext of at most :data:`MAX_PLAINTEXT_BYTES` (3993) gives one record and a body of
at most 4096 bytes: 86 bytes of header (salt, record size, key id = the 65-byte
ephemeral public key) + plaintext + 1 delimiter byte + 16 bytes of GCM tag.
"""

from __future__ import annotations

import re
from typing import cast

import http_ece
from cryptography.hazmat.primitives.asymmetric import ec

from viarah.adapters.push.vapid_jwt import b64url_decode
from viarah.domain.notifications.push import MAX_PLAINTEXT_BYTES, MAX_TOPIC_LENGTH, PushMessage

URGENCIES = ("very-low", "low", "normal", "high")
MAX_BODY_BYTES = 4096
_TOPIC = re.compile(rf"^[A-Za-z0-9_-]{{1,{MAX_TOPIC_LENGTH}}}$")


def check_message(message: PushMessage) -> None:
    """ValueError when the message breaks a rule of the protocol (a caller's bug).

    Plaintext at most 3993 bytes (checked BEFORE any encryption), TTL a whole number of
    seconds ≥ 1 (a TTL of 0 lets the push service drop the message when the browser is
    offline), urgency one of RFC 8030's four, topic at most 32 base64url characters.
    """
    size = len(message.plaintext)
    if size > MAX_PLAINTEXT_BYTES:
        raise ValueError(
            f"push payload too large: {size} bytes of plaintext, at most "
            f"{MAX_PLAINTEXT_BYTES} fit in a 4096-byte Web Push message"
        )
    if isinstance(message.ttl, bool) or not isinstance(message.ttl, int) or message.ttl < 1:
        raise ValueError(f"push TTL must be a whole number of seconds ≥ 1, got {message.ttl!r}")
    if message.urgency not in URGENCIES:
        raise ValueError(f"push urgency must be one of {', '.join(URGENCIES)}")
    if message.topic is not None and not _TOPIC.match(message.topic):
        raise ValueError(
            f"push topic must be 1 to {MAX_TOPIC_LENGTH} characters of the base64url "
            "alphabet (A-Z a-z 0-9 - _)"
        )


def subscription_keys(p256dh: str, auth: str) -> tuple[ec.EllipticCurvePublicKey, bytes]:
    """The browser's public key and auth secret; ValueError (never showing a key) when
    malformed. The domain checks them when a subscription is stored; this is defence."""
    raw = b64url_decode(p256dh, "the subscription's p256dh key")
    if len(raw) != 65 or raw[0] != 0x04:
        raise ValueError("the subscription's p256dh key is not an uncompressed P-256 point")
    try:
        public = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), raw)
    except ValueError:
        raise ValueError("the subscription's p256dh key is not on the P-256 curve") from None
    secret = b64url_decode(auth, "the subscription's auth secret")
    if len(secret) != 16:
        raise ValueError("the subscription's auth secret must be 16 bytes")
    return public, secret


def encrypt(plaintext: bytes, p256dh: str, auth: str) -> bytes:
    """The aes128gcm body for one browser (fresh ephemeral key and salt every call)."""
    receiver, secret = subscription_keys(p256dh, auth)
    ephemeral = ec.generate_private_key(ec.SECP256R1())
    body = http_ece.encrypt(
        plaintext,
        private_key=ephemeral,
        dh=receiver,
        auth_secret=secret,
        version="aes128gcm",
    )
    return cast(bytes, body)
