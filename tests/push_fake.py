"""A real, local Web Push service for tests: HTTP(S) on loopback, speaking RFC 8030/8291/8292
like Mozilla autopush or FCM — it verifies the VAPID JWT and DECRYPTS every message.

    with FakePushService() as push:                     # listens on 127.0.0.1:<free port>
        sub = push.new_subscription()                   # PushSubscription.toJSON() shape
        ... send to sub["endpoint"] with sub["keys"] (allowlist 127.0.0.1) ...
        assert push.messages_for(push.subscription_id(sub)) == [b"hello"]
        push.add_rule(429, fraction=0.1, attempts=1, retry_after=30)  # throttle 10 %, once
        push.script(sub_id, Answer(500))                # next attempt of sub_id gets a 500
        assert push.jwt_signatures == 1                 # distinct VAPID JWTs seen

For each ``POST /push/<id>`` (in this order; the first failure decides the answer):

1. unknown id → 404, expired (:meth:`expire`) → 410 (both recorded as ``gone``);
2. ``TTL`` must be a whole number ≥ 0 → else 400;
3. ``Authorization: vapid t=<JWT>, k=<key>`` → else 401; the JWT must be ES256 signed by
   ``k``, ``aud`` one of :attr:`origins`, ``exp`` in the future and ≤ 24 h away, ``sub``
   ``mailto:``/``https:`` → else 401; a subscription made with an
   ``application_server_key`` refuses any other ``k`` → 403 (like FCM);
4. ``Urgency`` one of very-low/low/normal/high, ``Topic`` ≤ 32 base64url chars → else 400;
5. body ≤ 4096 bytes → else 413; a body needs ``Content-Encoding: aes128gcm`` → else 400
   and must decrypt with the subscription's private key and auth secret → else 400;
6. a scripted answer (:meth:`script`) or a matching rule (:meth:`add_rule`) is given now:
   the message was valid, it is recorded as ``scripted`` but not delivered;
7. otherwise 201 Created with a ``Location``, recorded as ``delivered``.

Checks that fail record ``rejected`` with the reason. Everything is in :attr:`requests`.

A VAPID JWT's ES256 signature is verified once per distinct (token, key) pair (a sender
reuses its cached JWT for many messages; the same bytes always verify the same way); the
claims (``aud``, ``exp``, ``sub``) are checked on every request. For load tests,
``FakePushService(defer_decryption=True)`` checks everything above except the decryption
before answering, keeps each encrypted body, and decrypts them all when
:meth:`decrypt_deferred` is called (after the clock has stopped): a body that does not
decrypt then turns its record into ``rejected``, though it was answered 201.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import socket
import ssl
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

import http_ece
import httptools  # type: ignore[import-untyped]
import uvloop
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

MAX_BODY = 4096
MAX_JWT_LIFETIME = 24 * 3600
URGENCIES = {"very-low", "low", "normal", "high"}
_TOPIC = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
_VAPID = re.compile(r"^vapid\s+(.*)$", re.IGNORECASE)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    if not re.fullmatch(r"[A-Za-z0-9_-]*", text):
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class Answer:
    """One canned answer (after the message passed every check)."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: str = ""
    delay: float = 0.0  # seconds before answering (timeout tests)


@dataclass
class Rule:
    """Answer ``status`` to the first ``attempts`` attempts (None: every attempt) of a
    deterministic ``fraction`` of the subscriptions (by creation order: exactly
    floor(n * fraction) of the first n), or of the given ``subscriptions``."""

    status: int
    fraction: float = 1.0
    attempts: int | None = 1
    headers: dict[str, str] = field(default_factory=dict)
    subscriptions: frozenset[str] | None = None


@dataclass(frozen=True)
class PushRequest:
    """One request as the fake judged it."""

    subscription_id: str | None
    status: int
    outcome: str  # delivered | scripted | rejected | gone
    reason: str
    headers: dict[str, str]  # lower-case names
    plaintext: bytes | None = None
    jwt: str | None = None
    claims: dict[str, Any] | None = None
    body_size: int = 0
    client_port: int = 0  # the sender's source port: one per TCP connection


@dataclass
class _Subscription:
    id: str
    index: int
    private_key: ec.EllipticCurvePrivateKey
    auth: bytes
    endpoint: str
    server_key: str | None
    expired: bool = False
    attempts: int = 0
    script: deque[Answer] = field(default_factory=deque)


class _Reject(Exception):
    def __init__(self, status: int, reason: str, outcome: str = "rejected") -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.outcome = outcome


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # socketserver's default listen backlog is 5: a sender opening 64 connections at once
    # would see SYNs dropped and retransmitted a second later.
    request_queue_size = 1024

    def __init__(self, fake: FakePushService, host: str) -> None:
        if ":" in host:
            self.address_family = socket.AF_INET6
        self.fake = fake
        super().__init__((host, 0), _Handler)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: the sender's pooling is exercised
    timeout = 5
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        return None

    def do_POST(self) -> None:
        fake = self.server.fake
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        answer = fake._judge(self.command, self.path, headers, body, int(self.client_address[1]))
        if answer.delay and fake._stopping.wait(answer.delay):
            return
        self.answer(answer.status, answer.headers, answer.body)

    do_GET = do_PUT = do_DELETE = do_POST

    def answer(self, status: int, headers: dict[str, str], body: str = "") -> None:
        payload = body.encode()
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


class _FastProtocol(asyncio.Protocol):
    """One connection of the asyncio server: httptools parses, :meth:`FakePushService._judge`
    decides, keep-alive as the client asks."""

    def __init__(self, fake: FakePushService) -> None:
        self.fake = fake
        self.parser = httptools.HttpRequestParser(self)
        self.transport: Any = None  # uvloop's TCPTransport is not an asyncio.Transport
        self.port = 0
        self.url = b""
        self.headers: dict[str, str] = {}
        self.body: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.port = int(transport.get_extra_info("peername")[1])

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            assert self.transport is not None
            self.transport.close()

    def on_message_begin(self) -> None:
        self.url, self.headers, self.body = b"", {}, []

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        method = self.parser.get_method().decode("ascii")
        body = b"".join(self.body)
        answer = self.fake._judge(method, self.url.decode("latin-1"), self.headers, body, self.port)
        keep = self.parser.should_keep_alive()
        if answer.delay:
            asyncio.get_running_loop().call_later(answer.delay, self._write, answer, keep)
        else:
            self._write(answer, keep)

    def _write(self, answer: Answer, keep_alive: bool) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        payload = answer.body.encode()
        try:
            phrase = HTTPStatus(answer.status).phrase
        except ValueError:
            phrase = "Status"
        lines = [f"HTTP/1.1 {answer.status} {phrase}"]
        lines += [f"{name}: {value}" for name, value in answer.headers.items()]
        lines.append(f"Content-Length: {len(payload)}")
        if not keep_alive:
            lines.append("Connection: close")
        self.transport.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + payload)
        if not keep_alive:
            self.transport.close()


class FakePushService:
    """See the module docstring. ``aliases`` are extra host names (resolved to ``host``
    by the test's resolver) whose origins the JWT ``aud`` may name; ``now`` is the fake's
    clock (epoch seconds) for ``exp`` checks; pass a server ``ssl_context`` for HTTPS."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        aliases: tuple[str, ...] = (),
        now: Callable[[], float] = time.time,
        ssl_context: ssl.SSLContext | None = None,
        defer_decryption: bool = False,
        fast: bool = False,
    ) -> None:
        if fast and ssl_context is not None:
            raise ValueError("the fast (asyncio) server speaks plain HTTP only")
        self.host = host
        self.defer_decryption = defer_decryption
        self.fast = fast
        self.aliases = aliases
        self.now = now
        self.requests: list[PushRequest] = []
        self._ssl_context = ssl_context
        self._subs: dict[str, _Subscription] = {}
        self._rules: list[Rule] = []
        self._global_script: deque[Answer] = deque()
        self._jwts: set[str] = set()
        self._verified: set[tuple[str, str]] = set()
        #: (index in requests, body, subscription) of messages whose decryption is deferred
        self._deferred: list[tuple[int, bytes, _Subscription]] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._port = 0

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> FakePushService:
        if self.fast:
            return self._start_fast()
        server = _Server(self, self.host)
        if self._ssl_context is not None:
            server.socket = self._ssl_context.wrap_socket(server.socket, server_side=True)
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        self._port = int(server.server_address[1])
        return self

    def _start_fast(self) -> FakePushService:
        """Serve from an event loop (uvloop, httptools) in a thread of its own: a load
        test's sender then measures itself, not this fake's threads and HTTP parsing."""
        loop = uvloop.new_event_loop()
        server = loop.run_until_complete(
            loop.create_server(lambda: _FastProtocol(self), self.host, 0, backlog=1024)
        )
        self._port = int(server.sockets[0].getsockname()[1])
        self._loop = loop
        self._thread = threading.Thread(target=loop.run_forever, daemon=True)
        self._thread.start()

        def close() -> None:
            server.close()
            loop.stop()

        self._close_fast = close
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._close_fast)
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FakePushService:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._port, "start() the fake first"
        return self._port

    def origin_for(self, host: str) -> str:
        scheme = "https" if self._ssl_context is not None else "http"
        shown = f"[{host}]" if ":" in host else host
        return f"{scheme}://{shown}:{self.port}"

    @property
    def origin(self) -> str:
        return self.origin_for(self.host)

    @property
    def origins(self) -> set[str]:
        """The ``aud`` values this service accepts: its own origin under each name."""
        return {self.origin_for(h) for h in (self.host, *self.aliases)}

    # -- subscriptions and scripting ---------------------------------------------------

    def new_subscription(
        self, *, host: str | None = None, application_server_key: str | None = None
    ) -> dict[str, Any]:
        """A browser-side subscription; returns ``PushSubscription.toJSON()``'s shape."""
        key = ec.generate_private_key(ec.SECP256R1())
        auth = os.urandom(16)
        sub_id = uuid.uuid4().hex
        endpoint = f"{self.origin_for(host or self.host)}/push/{sub_id}"
        public = key.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
        with self._lock:
            self._subs[sub_id] = _Subscription(
                sub_id, len(self._subs), key, auth, endpoint, application_server_key
            )
        return {
            "endpoint": endpoint,
            "expirationTime": None,
            "keys": {"p256dh": b64url(public), "auth": b64url(auth)},
        }

    @staticmethod
    def subscription_id(subscription: dict[str, Any] | str) -> str:
        """The id in a subscription's (or an endpoint's) URL."""
        endpoint = subscription if isinstance(subscription, str) else subscription["endpoint"]
        return str(endpoint).rstrip("/").rsplit("/", 1)[-1]

    def expire(self, subscription_id: str) -> None:
        """The browser unsubscribed: 410 Gone from now on."""
        with self._lock:
            self._subs[subscription_id].expired = True

    def forget(self, subscription_id: str) -> None:
        """The service never heard of it: 404 from now on."""
        with self._lock:
            self._subs.pop(subscription_id, None)

    def script(self, subscription_id: str | None, *answers: Answer) -> None:
        """The next valid attempts (of ``subscription_id``, or of any subscription when
        None) get ``answers``, in order; scripts win over rules."""
        with self._lock:
            queue = (
                self._global_script
                if subscription_id is None
                else self._subs[subscription_id].script
            )
            queue.extend(answers)

    def add_rule(
        self,
        status: int,
        *,
        fraction: float = 1.0,
        attempts: int | None = 1,
        retry_after: int | str | None = None,
        headers: dict[str, str] | None = None,
        subscriptions: list[str] | None = None,
    ) -> None:
        """E.g. ``add_rule(429, fraction=0.1, attempts=1, retry_after=30)``."""
        extra = dict(headers or {})
        if retry_after is not None:
            extra["Retry-After"] = str(retry_after)
        chosen = frozenset(subscriptions) if subscriptions is not None else None
        with self._lock:
            self._rules.append(Rule(status, fraction, attempts, extra, chosen))

    def clear_rules(self) -> None:
        with self._lock:
            self._rules.clear()
            self._global_script.clear()

    # -- what happened -----------------------------------------------------------------

    def by_outcome(self, outcome: str) -> list[PushRequest]:
        with self._lock:
            return [r for r in self.requests if r.outcome == outcome]

    @property
    def delivered(self) -> list[PushRequest]:
        return self.by_outcome("delivered")

    @property
    def rejected(self) -> list[PushRequest]:
        return self.by_outcome("rejected")

    def messages_for(self, subscription_id: str) -> list[bytes]:
        """Plaintexts delivered to one subscription, in arrival order."""
        return [r.plaintext or b"" for r in self.delivered if r.subscription_id == subscription_id]

    def attempts(self, subscription_id: str) -> int:
        with self._lock:
            return self._subs[subscription_id].attempts

    @property
    def jwt_signatures(self) -> int:
        """Distinct, validly signed VAPID JWTs seen: proves the sender caches them."""
        with self._lock:
            return len(self._jwts)

    # -- serving -----------------------------------------------------------------------

    def _judge(
        self, method: str, target: str, headers: dict[str, str], body: bytes, port: int
    ) -> Answer:
        """Check one request (headers with lower-case names), record it, and say what to
        answer; the same for the threaded and the asyncio server."""
        path = target.split("?", 1)[0]
        sub_id = path[len("/push/") :] if path.startswith("/push/") else None
        answer: Answer | None = None
        plaintext: bytes | None = None
        jwt: str | None = None
        claims: dict[str, Any] | None = None
        try:
            if sub_id is None:
                raise _Reject(404, "not a push resource", "gone")
            if method != "POST":
                raise _Reject(405, "push resources take POST only")
            sub = self._subscription(sub_id)
            jwt, claims = self._check_headers(headers, sub)
            plaintext = self._decrypt(headers, body, sub)
            answer = self._scripted(sub)
        except _Reject as rejected:
            record = PushRequest(
                sub_id,
                rejected.status,
                rejected.outcome,
                rejected.reason,
                headers,
                plaintext,
                jwt,
                claims,
                len(body),
                port,
            )
            with self._lock:
                self.requests.append(record)
            error = {"code": rejected.status, "errno": 999, "message": rejected.reason}
            return Answer(rejected.status, {"Content-Type": "application/json"}, json.dumps(error))
        if answer is None:
            answer = Answer(
                201, {"Location": f"{self.origin}/m/{uuid.uuid4().hex}", "TTL": headers["ttl"]}
            )
            outcome, reason = "delivered", "ok"
        else:
            outcome, reason = "scripted", f"scripted {answer.status}"
        record = PushRequest(
            sub_id, answer.status, outcome, reason, headers, plaintext, jwt, claims, len(body), port
        )
        with self._lock:
            if plaintext is None and body:  # defer_decryption: decrypted later
                self._deferred.append((len(self.requests), body, sub))
            self.requests.append(record)
        return answer

    def _subscription(self, sub_id: str) -> _Subscription:
        with self._lock:
            sub = self._subs.get(sub_id)
            if sub is None:
                raise _Reject(404, "no such subscription", "gone")
            if sub.expired:
                raise _Reject(410, "subscription expired", "gone")
            sub.attempts += 1
            return sub

    def _check_headers(
        self, headers: dict[str, str], sub: _Subscription
    ) -> tuple[str, dict[str, Any]]:
        ttl = headers.get("ttl")
        if ttl is None or not ttl.isdigit():
            raise _Reject(400, "missing or invalid TTL header")
        jwt, key, claims = self._check_vapid(headers.get("authorization"))
        if sub.server_key is not None and key != sub.server_key.rstrip("="):
            raise _Reject(403, "the VAPID key is not the one this subscription was made with")
        urgency = headers.get("urgency")
        if urgency is not None and urgency not in URGENCIES:
            raise _Reject(400, f"invalid Urgency {urgency!r}")
        topic = headers.get("topic")
        if topic is not None and not _TOPIC.match(topic):
            raise _Reject(400, "invalid Topic (at most 32 base64url characters)")
        return jwt, claims

    def _check_vapid(self, value: str | None) -> tuple[str, str, dict[str, Any]]:
        match = _VAPID.match(value or "")
        if match is None:
            raise _Reject(401, "missing Authorization: vapid t=..., k=...")
        params: dict[str, str] = {}
        for part in match.group(1).split(","):
            name, _, val = part.strip().partition("=")
            params[name.strip().lower()] = val.strip()
        token, key = params.get("t", ""), params.get("k", "")
        try:
            public = ec.EllipticCurvePublicKey.from_encoded_point(
                ec.SECP256R1(), b64url_decode(key.rstrip("="))
            )
            head_b64, claims_b64, sig_b64 = token.split(".")
            header = json.loads(b64url_decode(head_b64))
            claims = json.loads(b64url_decode(claims_b64))
            signature = b64url_decode(sig_b64)
        except (ValueError, TypeError):
            raise _Reject(401, "malformed VAPID token or key") from None
        if header.get("alg") != "ES256" or len(signature) != 64:
            raise _Reject(401, "the VAPID JWT is not ES256")
        with self._lock:
            verified = (token, key) in self._verified
        if not verified:
            r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
            try:
                public.verify(
                    encode_dss_signature(r, s),
                    f"{head_b64}.{claims_b64}".encode(),
                    ec.ECDSA(hashes.SHA256()),
                )
            except InvalidSignature:
                raise _Reject(401, "bad VAPID signature") from None
        with self._lock:
            self._verified.add((token, key))
            self._jwts.add(token)
        now = self.now()
        exp = claims.get("exp")
        if claims.get("aud") not in self.origins:
            raise _Reject(401, f"aud {claims.get('aud')!r} is not this push service's origin")
        if not isinstance(exp, int) or exp <= now:
            raise _Reject(401, "the VAPID JWT has expired (or has no exp)")
        if exp > now + MAX_JWT_LIFETIME:
            raise _Reject(401, "the VAPID JWT expires more than 24 hours from now")
        sub = claims.get("sub")
        if not isinstance(sub, str) or not sub.startswith(("mailto:", "https:")):
            raise _Reject(401, "the VAPID sub must be a mailto: or https: URI")
        return token, key.rstrip("="), claims

    def _decrypt(self, headers: dict[str, str], body: bytes, sub: _Subscription) -> bytes | None:
        if len(body) > MAX_BODY:
            raise _Reject(413, f"body of {len(body)} bytes is over {MAX_BODY}")
        if not body:
            return b""
        if headers.get("content-encoding", "").lower() != "aes128gcm":
            raise _Reject(400, "a body needs Content-Encoding: aes128gcm")
        if self.defer_decryption:
            return None
        try:
            plaintext = http_ece.decrypt(
                body, private_key=sub.private_key, auth_secret=sub.auth, version="aes128gcm"
            )
        except Exception as exc:
            raise _Reject(400, f"cannot decrypt: {type(exc).__name__}") from None
        return bytes(plaintext)

    def decrypt_deferred(self) -> int:
        """Decrypt the bodies kept by ``defer_decryption``; returns how many did not decrypt
        (their records become ``rejected``)."""
        with self._lock:
            pending, self._deferred = self._deferred, []
        failed = 0
        for index, body, sub in pending:
            try:
                plaintext = bytes(
                    http_ece.decrypt(
                        body, private_key=sub.private_key, auth_secret=sub.auth, version="aes128gcm"
                    )
                )
            except Exception as exc:
                failed += 1
                with self._lock:
                    self.requests[index] = replace(
                        self.requests[index],
                        status=400,
                        outcome="rejected",
                        reason=f"cannot decrypt: {type(exc).__name__}",
                    )
                continue
            with self._lock:
                self.requests[index] = replace(self.requests[index], plaintext=plaintext)
        return failed

    def _scripted(self, sub: _Subscription) -> Answer | None:
        with self._lock:
            if sub.script:
                return sub.script.popleft()
            if self._global_script:
                return self._global_script.popleft()
            for rule in self._rules:
                if rule.attempts is not None and sub.attempts > rule.attempts:
                    continue
                if rule.subscriptions is not None:
                    chosen = sub.id in rule.subscriptions
                else:
                    chosen = int((sub.index + 1) * rule.fraction) > int(sub.index * rule.fraction)
                if chosen:
                    return Answer(rule.status, dict(rule.headers))
        return None
