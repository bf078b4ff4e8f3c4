"""``WebPushSender``: the domain's ``PushSender`` port over RFC 8030/8291/8292.

One ``send`` = check the message (ValueError for a caller's bug, before any encryption),
check the endpoint against the outbound policy, encrypt (aes128gcm), attach the cached
VAPID header, POST once through a pooled keep-alive connection (no redirects), map the
answer:

=====================  ==================================================================
2xx (201 Created)      delivered
404, 410               gone: the subscription must be deleted
429                    retryable, ``retry_after`` from ``Retry-After`` (seconds or date)
5xx                    retryable (``retry_after`` when the service gives one)
3xx, other 4xx         failed, not retryable (400 bad request, 403 VAPID, 413 too big)
no answer              status 0, ``network error: <type>`` (retryable)
refused endpoint       status 0, ``refused: <why>``: nothing was sent
push not configured    status 0, ``push disabled``
=====================  ==================================================================

Never in a log line, an exception or a result: the subscription's keys, its endpoint path
(a capability URL), the VAPID private key or the JWT. Logs name the origin only.
"""

from __future__ import annotations

import email.utils
import logging
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass

import httpx

from viarah.adapters.push.encryption import check_message, encrypt
from viarah.adapters.push.transport import Endpoint, EndpointParser, PushAnswer, PushTransport
from viarah.adapters.push.vapid_jwt import VapidSigner
from viarah.domain.notifications.push import PushMessage, PushResult, PushTarget
from viarah.domain.shared.clock import Clock, SystemClock
from viarah.domain.shared.outbound import OutboundPolicy, OutboundRefused
from viarah.domain.shared.telemetry import (
    PUSH_MESSAGES,
    PUSH_SEND_SECONDS,
    NullTelemetry,
    Telemetry,
)

log = logging.getLogger("viarah.push")

MAX_ANSWER_BYTES = 4096  # what we keep of the push service's answer (error text only)
# Anything that looks like a token or key: JWTs and long base64url runs.
_SECRETISH = re.compile(r"[A-Za-z0-9_-]{20,}(?:\.[A-Za-z0-9_-]+){0,2}")
_UNPRINTABLE = re.compile(r"[^\x20-\x7e]+")


@dataclass(frozen=True, slots=True)
class PreparedRequest:
    """What goes on the wire for one message (see :func:`crypto_floor_operation`)."""

    endpoint: Endpoint
    headers: dict[str, str]
    body: bytes


class WebPushSender:
    """Sends Web Push messages; ``enabled`` only when all three VAPID settings are set.

    ``outbound_allowlist`` is ``VIA_RAH_OUTBOUND_ALLOWLIST`` (hosts, IPs, CIDRs that may be
    loopback/private, and whose endpoints may be ``http://``). ``http`` is the SSRF-guarded
    HTTP/1.1 keep-alive pool (``GuardedHttp11Clients``: one pool per event loop, connect
    and read timeouts, answers capped, no redirects). ``clock`` drives the VAPID cache and
    HTTP-date ``Retry-After``.
    ``telemetry`` counts every ``send`` (``push_messages`` by :func:`outcome_of` the result)
    and times each request that went out (``push_send_seconds``).

    Raises ValueError (naming the variable, never showing a key) when the VAPID keys are
    malformed or do not belong together, or the subject is not ``mailto:``/``https:``.
    """

    def __init__(
        self,
        vapid_public_key: str,
        vapid_private_key: str,
        vapid_subject: str,
        *,
        http: PushTransport,
        outbound_allowlist: Iterable[str] = (),
        clock: Clock | None = None,
        telemetry: Telemetry | None = None,
    ) -> None:
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._telemetry: Telemetry = telemetry if telemetry is not None else NullTelemetry()
        self._policy = OutboundPolicy(tuple(outbound_allowlist))
        configured = all(v.strip() for v in (vapid_public_key, vapid_private_key, vapid_subject))
        self._signer = (
            VapidSigner(vapid_public_key, vapid_private_key, vapid_subject, clock=self._clock)
            if configured
            else None
        )
        self._http = http
        self._parse_endpoint = EndpointParser(self._policy)

    def __repr__(self) -> str:
        return f"WebPushSender(enabled={self.enabled}, policy={self._policy!r})"

    @property
    def enabled(self) -> bool:
        """False when any of the three VAPID settings is empty."""
        return self._signer is not None

    @property
    def public_key(self) -> str:
        """The VAPID application server key (base64url), empty when disabled."""
        return self._signer.public_key if self._signer is not None else ""

    @property
    def vapid_signer(self) -> VapidSigner:
        """The VAPID signer (benchmarks time its fresh signatures); push must be enabled."""
        if self._signer is None:
            raise RuntimeError("push is disabled: the VAPID settings are not configured")
        return self._signer

    @property
    def signatures(self) -> int:
        """How many VAPID JWTs were signed so far (the cache makes this small)."""
        return self._signer.signatures if self._signer is not None else 0

    async def aclose(self) -> None:
        """Close this event loop's pooled push connections."""
        await self._http.aclose()

    def prepare(
        self, target: PushTarget, message: PushMessage, *, fresh_signature: bool = False
    ) -> PreparedRequest:
        """Check, encrypt and sign one message without sending it.

        ValueError for a message that breaks the protocol's rules (plaintext over 3993
        bytes, TTL < 1, unknown urgency, bad topic) or malformed subscription keys;
        :class:`OutboundRefused` for an endpoint the policy refuses.
        """
        if self._signer is None:
            raise RuntimeError("push is disabled: the VAPID settings are not configured")
        check_message(message)  # before any encryption
        endpoint = self._parse_endpoint(target.endpoint)
        body = encrypt(message.plaintext, target.p256dh, target.auth) if message.plaintext else b""
        authorization = (
            self._signer.fresh_authorization(endpoint.origin)
            if fresh_signature
            else self._signer.authorization(endpoint.origin)
        )
        headers = {
            "TTL": str(message.ttl),
            "Urgency": message.urgency,
            "Authorization": authorization,
        }
        if message.topic is not None:
            headers["Topic"] = message.topic
        if body:
            headers["Content-Encoding"] = "aes128gcm"
            headers["Content-Type"] = "application/octet-stream"
        return PreparedRequest(endpoint, headers, body)

    async def send(self, target: PushTarget, message: PushMessage) -> PushResult:
        """POST one message; never raises for a refusal, an HTTP or a network failure.

        Raises ValueError, before encrypting anything, when the message breaks a rule
        (plaintext over 3993 bytes, TTL < 1, urgency, topic) or the subscription's keys
        are malformed: those are the caller's bugs, not delivery outcomes.
        """
        result = await self._send(target, message)
        self._telemetry.count(PUSH_MESSAGES, outcome=outcome_of(result))
        return result

    async def _send(self, target: PushTarget, message: PushMessage) -> PushResult:
        if self._signer is None:
            return PushResult(0, reason="push disabled")
        try:
            prepared = self.prepare(target, message)
        except OutboundRefused as refused:
            return self._refused(refused)
        endpoint = prepared.endpoint
        origin = endpoint.origin
        started = time.perf_counter()
        try:
            answer = await self._http.request(
                "POST",
                endpoint.scheme,
                endpoint.host,
                endpoint.port,
                endpoint.target,
                prepared.headers,
                prepared.body,
            )
        except OutboundRefused as refused:
            return self._refused(refused)
        except (httpx.HTTPError, OSError) as exc:
            self._telemetry.observe(PUSH_SEND_SECONDS, time.perf_counter() - started)
            reason = f"network error: {type(exc).__name__}"
            log.warning("push.network_error origin=%s error=%s", origin, type(exc).__name__)
            return PushResult(0, reason=reason)
        self._telemetry.observe(PUSH_SEND_SECONDS, time.perf_counter() - started)
        result = self._result(answer)
        if result.delivered:
            log.debug("push.delivered origin=%s status=%s", origin, result.status)
        else:
            log.warning(
                "push.not_delivered origin=%s status=%s retry_after=%s reason=%s",
                origin,
                result.status,
                result.retry_after,
                result.reason,
            )
        return result

    @staticmethod
    def _refused(refused: OutboundRefused) -> PushResult:
        log.warning("push.refused host=%s reason=%s", refused.host, refused.reason)
        return PushResult(0, reason=refused.message)

    def _result(self, answer: PushAnswer) -> PushResult:
        status = answer.status
        if 200 <= status < 300:
            return PushResult(status)
        said = _describe(status, answer.reason, answer.body[:MAX_ANSWER_BYTES])
        if status in (404, 410):
            return PushResult(status, reason=f"gone: {said}")
        if status == 429 or status >= 500:
            retry_after = parse_retry_after(answer.headers.get("retry-after"), self._clock)
            kind = "rate limited" if status == 429 else "push service error"
            return PushResult(status, retry_after=retry_after, reason=f"{kind}: {said}")
        if 300 <= status < 400:
            return PushResult(status, reason=f"redirect not followed: {said}")
        return PushResult(status, reason=f"rejected: {said}")


def outcome_of(result: PushResult) -> str:
    """The ``outcome`` label of one send: ``delivered`` (2xx), ``gone`` (404/410),
    ``refused`` (nothing was sent: the endpoint was refused or push is disabled),
    ``retryable`` (429, 5xx, no answer) or ``failed`` (any other answer)."""
    if result.delivered:
        return "delivered"
    if result.gone:
        return "gone"
    if result.status == 0 and not result.retryable:
        return "refused"
    if result.retryable:
        return "retryable"
    return "failed"


def _describe(status: int, phrase: str, answer: bytes) -> str:
    """``413 Payload Too Large: <first 200 characters of the answer>``, with anything
    token-like redacted (a push service must not be able to make us log a secret)."""
    text = _UNPRINTABLE.sub(" ", answer.decode("utf-8", "replace")).strip()
    text = _SECRETISH.sub("[redacted]", text)[:200]
    head = f"{status} {phrase}".strip()
    return f"{head}: {text}" if text else head


def parse_retry_after(value: str | None, clock: Clock) -> float | None:
    """``Retry-After`` as seconds from now: delta-seconds or an HTTP date (RFC 9110);
    None when absent or unreadable; never negative."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    if text.isdigit():
        return float(int(text))
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # "-0000" dates; HTTP dates are GMT
        return None
    return max(0.0, (when - clock.now()).total_seconds())


def crypto_floor_operation(
    sender: WebPushSender, target: PushTarget, message: PushMessage
) -> PreparedRequest:
    """The CPU work of one push with nothing cached: message checks, endpoint checks,
    aes128gcm encryption (fresh ephemeral ECDH key) AND a fresh VAPID ES256 signature.

    For benchmarks: ViaRah's own preparation timed beside the crypto floor (which is
    pywebpush's encode plus a fresh signature, ``bench/pipeline_runs.py``). ``send``
    reuses the cached signature, so real sends cost one ECDH key generation + ECDH +
    HKDF + AES-GCM, plus the network round trip.
    """
    return sender.prepare(target, message, fresh_signature=True)
