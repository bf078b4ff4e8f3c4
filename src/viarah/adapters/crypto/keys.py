"""Generating and checking the operator's keys: Fernet keys and the VAPID keypair.

VAPID keys use the encoding browsers and push services expect: base64url without
padding; the public key is the uncompressed P-256 point (65 bytes, ``0x04 || X || Y``),
the private key the 32-byte big-endian scalar.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

from cryptography.fernet import Fernet
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

_P256_PUBLIC_LENGTH = 65
_P256_PRIVATE_LENGTH = 32


@dataclass(frozen=True, slots=True)
class VapidKeypair:
    """A VAPID keypair in its ``.env`` form (base64url, no padding)."""

    public_key: str
    private_key: str


def b64url_encode(data: bytes) -> str:
    """Base64url without padding."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Inverse of :func:`b64url_encode`; accepts missing padding; ValueError if invalid."""
    padded = text.strip() + "=" * (-len(text.strip()) % 4)
    try:
        return base64.urlsafe_b64decode(padded.encode("ascii"))
    except (binascii.Error, UnicodeEncodeError) as exc:
        raise ValueError("not base64url") from exc


def generate_fernet_key() -> str:
    """A fresh Fernet key (32 random bytes, url-safe base64)."""
    return Fernet.generate_key().decode("ascii")


def fernet_key_problem(key: str) -> str | None:
    """None when ``key`` is a usable Fernet key, else why it is not."""
    try:
        Fernet(key.encode("ascii"))
    except (ValueError, UnicodeEncodeError, binascii.Error):
        return "is not a Fernet key (32 bytes, url-safe base64; `viarah keys fernet` makes one)"
    return None


def generate_vapid_keypair() -> VapidKeypair:
    """A fresh P-256 keypair for VAPID (RFC 8292)."""
    private = ec.generate_private_key(ec.SECP256R1())
    scalar = private.private_numbers().private_value.to_bytes(_P256_PRIVATE_LENGTH, "big")
    point = private.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
    return VapidKeypair(public_key=b64url_encode(point), private_key=b64url_encode(scalar))


def vapid_keypair_problems(public_key: str, private_key: str) -> list[str]:
    """Problems with a configured VAPID keypair, one line each naming the variable."""
    problems: list[str] = []
    public_point: bytes | None = None
    try:
        raw = b64url_decode(public_key)
        if len(raw) != _P256_PUBLIC_LENGTH or raw[0] != 4:
            raise ValueError("wrong length")
        ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), raw)
        public_point = raw
    except ValueError:
        problems.append(
            "WEBPUSH_VAPID_PUBLIC_KEY: is not an uncompressed P-256 point in base64url "
            "(`viarah keys vapid` makes a pair)"
        )
    try:
        raw = b64url_decode(private_key)
        if len(raw) != _P256_PRIVATE_LENGTH:
            raise ValueError("wrong length")
        private = ec.derive_private_key(int.from_bytes(raw, "big"), ec.SECP256R1())
    except ValueError:
        problems.append(
            "WEBPUSH_VAPID_PRIVATE_KEY: is not a 32-byte P-256 private key in base64url "
            "(`viarah keys vapid` makes a pair)"
        )
        return problems
    if public_point is not None:
        derived = private.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
        if derived != public_point:
            problems.append(
                "WEBPUSH_VAPID_PUBLIC_KEY: does not belong to WEBPUSH_VAPID_PRIVATE_KEY"
            )
    return problems
