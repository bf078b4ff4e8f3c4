"""VAPID (RFC 8292): the ``Authorization: vapid t=<JWT>, k=<public key>`` header.

The JWT is ES256 (ECDSA P-256 + SHA-256, signature as raw ``r || s``) with the claims
``aud`` (the push resource's origin), ``exp`` (now + 12 h by default; RFC 8292 allows at
most 24 h) and ``sub`` (the operator's ``mailto:`` or ``https:`` contact).

Signing costs an ECDSA operation, so one header is cached per origin and re-signed only
when less than ``renew_before`` (1 h) of validity remains: one signature per push
service origin every ~11 h. The cache is thread-safe (dramatiq runs threads) and its
notion of time comes from a :class:`~viarah.domain.shared.clock.Clock`.

The private key lives only in a ``cryptography`` key object: never in a repr, a log line
or an exception message (this module does not log at all).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import timedelta

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from viarah.domain.shared.clock import Clock, SystemClock

DEFAULT_LIFETIME = timedelta(hours=12)
DEFAULT_RENEW_BEFORE = timedelta(hours=1)
MAX_LIFETIME = timedelta(hours=24)
MAX_CACHED_ORIGINS = 1024
_B64URL = re.compile(r"^[A-Za-z0-9_-]+={0,2}$")
_HEADER = b'{"typ":"JWT","alg":"ES256"}'


def b64url(data: bytes) -> str:
    """Base64url without padding."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str, what: str) -> bytes:
    """Strict base64url (padding optional); ValueError naming ``what`` (never the value)."""
    value = text.strip()
    if not _B64URL.match(value) or len(value.rstrip("=")) % 4 == 1:
        raise ValueError(f"{what} is not base64url")
    value = value.rstrip("=")
    try:
        return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError):
        raise ValueError(f"{what} is not base64url") from None


def load_keypair(public_key: str, private_key: str) -> ec.EllipticCurvePrivateKey:
    """The signing key; ValueError (naming the variable, never the key) when a key is
    malformed or the public key does not belong to the private key."""
    raw_private = b64url_decode(private_key, "WEBPUSH_VAPID_PRIVATE_KEY")
    if len(raw_private) != 32:
        raise ValueError("WEBPUSH_VAPID_PRIVATE_KEY must be a 32-byte P-256 private key")
    try:
        key = ec.derive_private_key(int.from_bytes(raw_private, "big"), ec.SECP256R1())
    except ValueError:
        raise ValueError("WEBPUSH_VAPID_PRIVATE_KEY is not a valid P-256 private key") from None
    raw_public = b64url_decode(public_key, "WEBPUSH_VAPID_PUBLIC_KEY")
    derived = key.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
    if raw_public != derived:
        raise ValueError(
            "WEBPUSH_VAPID_PUBLIC_KEY does not belong to WEBPUSH_VAPID_PRIVATE_KEY "
            "(`viarah keys vapid` makes a matching pair)"
        )
    return key


def validate_subject(subject: str) -> str:
    """The ``sub`` claim: a ``mailto:`` or ``https:`` URI (RFC 8292 §2.1)."""
    value = subject.strip()
    if not value.startswith(("mailto:", "https://")) or len(value) <= len("mailto:"):
        raise ValueError("WEBPUSH_VAPID_SUBJECT must be a mailto: or https: URL")
    return value


@dataclass(frozen=True, slots=True)
class _Cached:
    header: str
    expires_at: int  # epoch seconds, the JWT's exp


class VapidSigner:
    """Signs VAPID JWTs and caches the resulting ``Authorization`` header per origin."""

    def __init__(
        self,
        public_key: str,
        private_key: str,
        subject: str,
        *,
        clock: Clock | None = None,
        lifetime: timedelta = DEFAULT_LIFETIME,
        renew_before: timedelta = DEFAULT_RENEW_BEFORE,
        max_origins: int = MAX_CACHED_ORIGINS,
    ) -> None:
        if not timedelta(0) < renew_before < lifetime <= MAX_LIFETIME:
            raise ValueError("VAPID lifetime must be ≤ 24 h and longer than renew_before")
        self._key = load_keypair(public_key, private_key)
        self._public_key = public_key.strip().rstrip("=")
        self._subject = validate_subject(subject)
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._lifetime = int(lifetime.total_seconds())
        self._renew_before = int(renew_before.total_seconds())
        self._max_origins = max_origins
        self._cache: OrderedDict[str, _Cached] = OrderedDict()
        self._lock = threading.Lock()
        self._signatures = 0

    def __repr__(self) -> str:
        return f"VapidSigner(subject={self._subject!r}, origins_cached={len(self._cache)})"

    @property
    def public_key(self) -> str:
        """The application server key (base64url, no padding)."""
        return self._public_key

    @property
    def signatures(self) -> int:
        """How many JWTs this signer has made (cache misses and fresh signatures)."""
        return self._signatures

    def authorization(self, origin: str) -> str:
        """The cached ``vapid t=..., k=...`` header for ``origin``, re-signed when less
        than ``renew_before`` of its validity remains. Beyond ``max_origins`` the origin
        signed longest ago is forgotten."""
        now = int(self._clock.now().timestamp())
        cached = self._cache.get(origin)  # the common case, without the lock
        if cached is not None and cached.expires_at - now > self._renew_before:
            return cached.header
        with self._lock:
            cached = self._cache.get(origin)
            if cached is not None and cached.expires_at - now > self._renew_before:
                return cached.header
            header = self._header(origin, now)
            self._cache[origin] = _Cached(header, now + self._lifetime)
            self._cache.move_to_end(origin)
            while len(self._cache) > self._max_origins:
                self._cache.popitem(last=False)
            return header

    def fresh_authorization(self, origin: str) -> str:
        """A newly signed header, bypassing (and not filling) the cache: for benchmarks
        that measure the signing cost."""
        now = int(self._clock.now().timestamp())
        with self._lock:
            return self._header(origin, now)

    def _header(self, origin: str, now: int) -> str:
        """Sign one JWT; the caller holds the lock (the counter and one signature per
        origin are guaranteed by it)."""
        claims = {"aud": origin, "exp": now + self._lifetime, "sub": self._subject}
        payload = json.dumps(claims, separators=(",", ":"), sort_keys=True).encode()
        signing_input = f"{b64url(_HEADER)}.{b64url(payload)}".encode("ascii")
        der = self._key.sign(signing_input, ec.ECDSA(hashes.SHA256()))
        r, s = decode_dss_signature(der)
        signature = r.to_bytes(32, "big") + s.to_bytes(32, "big")
        self._signatures += 1
        token = f"{signing_input.decode('ascii')}.{b64url(signature)}"
        return f"vapid t={token}, k={self._public_key}"
