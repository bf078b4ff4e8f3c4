"""Message checks and aes128gcm encryption for Web Push (RFC 8291 over RFC 8188).

Every message gets a fresh ephemeral P-256 key and a random 16-byte salt (RFC 8291 §3):

- ``ecdh_secret = ECDH(as_private, ua_public)``;
- ``IKM = HKDF(salt=auth_secret, ikm=ecdh_secret, info="WebPush: info" 0x00 ua_public
  as_public, L=32)``;
- ``PRK = HMAC-SHA-256(salt, IKM)``; ``CEK`` and ``NONCE`` are the first 16 and 12 bytes
  of ``HMAC-SHA-256(PRK, "Content-Encoding: aes128gcm" 0x00 0x01)`` and ``(…nonce…)``;
- body = ``salt || rs (4096) || idlen (65) || as_public`` then one record,
  ``AES-128-GCM(CEK, NONCE, plaintext || 0x02)``.

The elliptic-curve work and AES-GCM are pyca/cryptography's; the HKDF steps, each one
HMAC block here, are the standard library's ``hmac.digest``. This is what pywebpush's
``WebPusher.encode(data, "aes128gcm")`` produces (through ``http_ece``), at about half
its CPU: ``http_ece`` builds its HKDF and cipher objects per call and re-derives what a
single record does not need. ``tests/`` check it byte for byte against RFC 8291's
Appendix A and decrypt its output with ``http_ece``; the benchmark's push fake decrypts
every message with ``http_ece`` too. The browser's key is parsed once per subscription
(a small cache), and validated properly (pywebpush's check accepts any p256dh).

A plaintext of at most :data:`MAX_PLAINTEXT_BYTES` (3993) gives one record and a body of
at most 4096 bytes: 86 bytes of header (salt, record size, key id = the 65-byte
ephemeral public key) + plaintext + 1 delimiter byte + 16 bytes of GCM tag.
"""

from __future__ import annotations

import functools
import hmac
import os
import re
import struct

from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from viarah.adapters.push.vapid_jwt import b64url_decode
from viarah.domain.notifications.push import MAX_PLAINTEXT_BYTES, MAX_TOPIC_LENGTH, PushMessage

URGENCIES = ("very-low", "low", "normal", "high")
MAX_BODY_BYTES = 4096
RECORD_SIZE = 4096
_CURVE = ec.SECP256R1()
_ECDH = ec.ECDH()
_KEY_INFO = b"WebPush: info\x00"
_CEK_INFO = b"Content-Encoding: aes128gcm\x00\x01"
_NONCE_INFO = b"Content-Encoding: nonce\x00\x01"
_LAST_RECORD = b"\x02"
#: Subscriptions whose parsed keys are kept (a fan-out to more browsers parses the rest).
KEY_CACHE_SIZE = 4096
_TOPIC = re.compile(rf"^[A-Za-z0-9_-]{{1,{MAX_TOPIC_LENGTH}}}$")


def _refuse_oversized(plaintext: bytes) -> None:
    if len(plaintext) > MAX_PLAINTEXT_BYTES:
        raise ValueError(
            f"push payload too large: {len(plaintext)} bytes of plaintext, at most "
            f"{MAX_PLAINTEXT_BYTES} fit in a 4096-byte Web Push message"
        )


def check_message(message: PushMessage) -> None:
    """ValueError when the message breaks a rule of the protocol (a caller's bug).

    Plaintext at most 3993 bytes (checked BEFORE any encryption), TTL a whole number of
    seconds ≥ 1 (a TTL of 0 lets the push service drop the message when the browser is
    offline), urgency one of RFC 8030's four, topic at most 32 base64url characters.
    """
    _refuse_oversized(message.plaintext)
    if isinstance(message.ttl, bool) or not isinstance(message.ttl, int) or message.ttl < 1:
        raise ValueError(f"push TTL must be a whole number of seconds ≥ 1, got {message.ttl!r}")
    if message.urgency not in URGENCIES:
        raise ValueError(f"push urgency must be one of {', '.join(URGENCIES)}")
    if message.topic is not None and not _TOPIC.match(message.topic):
        raise ValueError(
            f"push topic must be 1 to {MAX_TOPIC_LENGTH} characters of the base64url "
            "alphabet (A-Z a-z 0-9 - _)"
        )


@functools.lru_cache(maxsize=KEY_CACHE_SIZE)
def _receiver(p256dh: str, auth: str) -> tuple[ec.EllipticCurvePublicKey, bytes, bytes]:
    """The browser's key, its 65 uncompressed bytes and its auth secret. ValueError (never
    showing a key) when malformed: the domain checks them when a subscription is stored;
    this is defence. Errors are raised, never cached."""
    raw = b64url_decode(p256dh, "the subscription's p256dh key")
    if len(raw) != 65 or raw[0] != 0x04:
        raise ValueError("the subscription's p256dh key is not an uncompressed P-256 point")
    try:
        public = ec.EllipticCurvePublicKey.from_encoded_point(_CURVE, raw)
    except ValueError:
        raise ValueError("the subscription's p256dh key is not on the P-256 curve") from None
    secret = b64url_decode(auth, "the subscription's auth secret")
    if len(secret) != 16:
        raise ValueError("the subscription's auth secret must be 16 bytes")
    return public, raw, secret


def encrypt(
    plaintext: bytes,
    p256dh: str,
    auth: str,
    *,
    ephemeral: ec.EllipticCurvePrivateKey | None = None,
    salt: bytes | None = None,
) -> bytes:
    """The aes128gcm body for one browser. A fresh ephemeral key and salt every call;
    ``ephemeral`` and ``salt`` are given only to reproduce RFC 8291's example."""
    receiver, ua_public, auth_secret = _receiver(p256dh, auth)
    _refuse_oversized(plaintext)
    private = ephemeral if ephemeral is not None else ec.generate_private_key(_CURVE)
    as_public = private.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
    salt = salt if salt is not None else os.urandom(16)
    ecdh_secret = private.exchange(_ECDH, receiver)
    # HKDF with a 32-byte output is Extract plus one Expand block (RFC 5869).
    key_prk = hmac.digest(auth_secret, ecdh_secret, "sha256")
    ikm = hmac.digest(key_prk, _KEY_INFO + ua_public + as_public + b"\x01", "sha256")
    prk = hmac.digest(salt, ikm, "sha256")
    cek = hmac.digest(prk, _CEK_INFO, "sha256")[:16]
    nonce = hmac.digest(prk, _NONCE_INFO, "sha256")[:12]
    record = AESGCM(cek).encrypt(nonce, plaintext + _LAST_RECORD, None)
    return salt + struct.pack("!IB", RECORD_SIZE, len(as_public)) + as_public + record
