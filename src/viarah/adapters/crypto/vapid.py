"""VAPID key helpers (RFC 8292): generate a keypair, derive and check the public key.

Encoding, as browsers (``applicationServerKey``) and push services expect it: base64url
without padding; the public key is the uncompressed P-256 point (65 bytes,
``0x04 || X || Y``), the private key the 32-byte big-endian scalar.

Errors are :class:`VapidKeyError` (a ``ValueError``) whose message names the variable
that is wrong and never contains key material.
"""

from __future__ import annotations

import base64
import binascii
import re

from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from viarah.adapters.crypto.keys import VapidKeypair, b64url_encode
from viarah.adapters.crypto.keys import generate_vapid_keypair as _generate

PUBLIC_KEY_VARIABLE = "WEBPUSH_VAPID_PUBLIC_KEY"
PRIVATE_KEY_VARIABLE = "WEBPUSH_VAPID_PRIVATE_KEY"
PUBLIC_KEY_LENGTH = 65
PRIVATE_KEY_LENGTH = 32
_B64URL = re.compile(r"^[A-Za-z0-9_-]*={0,2}$")

__all__ = [
    "VapidKeyError",
    "VapidKeypair",
    "derive_vapid_public_key",
    "generate_vapid_keypair",
    "load_vapid_private_key",
    "load_vapid_public_key",
    "validate_vapid_keypair",
    "vapid_keys_match",
]


class VapidKeyError(ValueError):
    """A VAPID key is malformed, or the public key does not belong to the private key."""


def _strict_b64url(text: str, variable: str) -> bytes:
    """Base64url (padding optional) with nothing outside the alphabet: the lenient stdlib
    decoder would silently drop stray characters and accept a damaged key."""
    value = text.strip()
    if not value or not _B64URL.match(value):
        raise VapidKeyError(f"{variable}: is not base64url (A-Z a-z 0-9 - _)")
    value = value.rstrip("=")
    if len(value) % 4 == 1:
        raise VapidKeyError(f"{variable}: is not base64url (truncated)")
    try:
        return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError):
        raise VapidKeyError(f"{variable}: is not base64url") from None


def generate_vapid_keypair() -> VapidKeypair:
    """A fresh P-256 keypair in its ``.env`` form (base64url, no padding)."""
    return _generate()


def load_vapid_private_key(private_key: str) -> ec.EllipticCurvePrivateKey:
    """The signing key from its 32-byte base64url scalar."""
    raw = _strict_b64url(private_key, PRIVATE_KEY_VARIABLE)
    if len(raw) != PRIVATE_KEY_LENGTH:
        raise VapidKeyError(
            f"{PRIVATE_KEY_VARIABLE}: must be a {PRIVATE_KEY_LENGTH}-byte P-256 private key, "
            f"got {len(raw)} bytes (`viarah keys vapid` makes a pair)"
        )
    try:
        return ec.derive_private_key(int.from_bytes(raw, "big"), ec.SECP256R1())
    except ValueError:
        raise VapidKeyError(
            f"{PRIVATE_KEY_VARIABLE}: is not a valid P-256 private key (out of range)"
        ) from None


def load_vapid_public_key(public_key: str) -> ec.EllipticCurvePublicKey:
    """The public key from its 65-byte uncompressed-point base64url form."""
    raw = _strict_b64url(public_key, PUBLIC_KEY_VARIABLE)
    if len(raw) != PUBLIC_KEY_LENGTH or raw[0] != 0x04:
        raise VapidKeyError(
            f"{PUBLIC_KEY_VARIABLE}: must be an uncompressed P-256 point "
            f"({PUBLIC_KEY_LENGTH} bytes starting with 0x04)"
        )
    try:
        return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), raw)
    except ValueError:
        raise VapidKeyError(f"{PUBLIC_KEY_VARIABLE}: is not a point on the P-256 curve") from None


def _encode_public(key: ec.EllipticCurvePublicKey) -> str:
    return b64url_encode(key.public_bytes(Encoding.X962, PublicFormat.UncompressedPoint))


def derive_vapid_public_key(private_key: str) -> str:
    """The public key (base64url, uncompressed point) that belongs to ``private_key``."""
    return _encode_public(load_vapid_private_key(private_key).public_key())


def vapid_keys_match(public_key: str, private_key: str) -> bool:
    """True when ``public_key`` belongs to ``private_key``; VapidKeyError if either is
    malformed."""
    derived = load_vapid_private_key(private_key).public_key()
    given = load_vapid_public_key(public_key)
    return _encode_public(derived) == _encode_public(given)


def validate_vapid_keypair(public_key: str, private_key: str) -> None:
    """Return if the pair is well-formed and matching; VapidKeyError saying what is wrong."""
    if not vapid_keys_match(public_key, private_key):
        raise VapidKeyError(
            f"{PUBLIC_KEY_VARIABLE}: does not belong to {PRIVATE_KEY_VARIABLE} "
            "(browsers subscribe with the public key; every push would be refused)"
        )
