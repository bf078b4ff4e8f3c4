"""The Web Push port: what sending one encrypted message to one browser needs and returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

#: RFC 8291: a 4096-byte record minus the 86-byte aes128gcm header and 16-byte tag, minus
#: the 1-byte padding delimiter leaves 3993 bytes of plaintext.
MAX_PLAINTEXT_BYTES = 3993
DEFAULT_TTL_SECONDS = 24 * 3600
MAX_TOPIC_LENGTH = 32


@dataclass(frozen=True, slots=True)
class PushTarget:
    """One browser's push subscription (keys are base64url, as the browser gives them)."""

    endpoint: str
    p256dh: str = field(repr=False)
    auth: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class PushMessage:
    plaintext: bytes
    ttl: int = DEFAULT_TTL_SECONDS
    urgency: str = "normal"  # very-low | low | normal | high
    topic: str | None = None


#: ``PushResult.reason`` prefixes (status 0) that no retry can fix.
FINAL_REASONS = ("refused", "invalid", "push disabled")


@dataclass(frozen=True, slots=True)
class PushResult:
    """The push service's answer: ``status`` is its HTTP status, 0 when none came."""

    status: int
    retry_after: float | None = None
    reason: str | None = None

    @property
    def delivered(self) -> bool:
        return 200 <= self.status < 300

    @property
    def gone(self) -> bool:
        """404/410: the subscription no longer exists and must be deleted."""
        return self.status in (404, 410)

    @property
    def retryable(self) -> bool:
        """429, 5xx and network failures; never a refused endpoint or a refused message."""
        if self.status == 0:
            return not (self.reason or "").startswith(FINAL_REASONS)
        return self.status == 429 or self.status >= 500


class PushSender(Protocol):
    """Encrypts (aes128gcm, RFC 8291), signs (VAPID, RFC 8292) and POSTs one message."""

    @property
    def enabled(self) -> bool:
        """False when VAPID keys are not configured."""
        ...

    @property
    def public_key(self) -> str:
        """The VAPID application server key browsers subscribe with (base64url)."""
        ...

    async def send(self, target: PushTarget, message: PushMessage) -> PushResult:
        """Never raises for an HTTP or network failure: the result says what happened.

        Status 0 with ``reason`` ``"push disabled"`` (VAPID not configured), ``"refused:
        ..."`` (the outbound policy refuses the endpoint; nothing was sent) or ``"network
        error: <type>"``. Raises ``ValueError``, before anything is encrypted or sent,
        for a caller's bug: plaintext over MAX_PLAINTEXT_BYTES, TTL < 1, an urgency
        other than very-low/low/normal/high, a topic that is not 1-32 base64url
        characters, or malformed subscription keys.
        """
        ...
