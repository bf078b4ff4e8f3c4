"""A real, local GitLab API server for tests: HTTP(S) on loopback, GitLab's JSON shapes.

    with FakeGitLab() as gitlab:                       # listens on 127.0.0.1:<free port>
        gitlab.add_issue("group/sub/project", 12, title="Crash", labels=["bug"])
        gitlab.script(gitlab.user_path, Scripted(429, headers={"Retry-After": "30"}))
        ... call gitlab.base_url with gitlab.token ...
        assert gitlab.calls(gitlab.object_path("group/sub/project", "issue", 12)) == 1

What it serves (``PRIVATE-TOKEN`` or ``Authorization: Bearer`` must carry ``token``, else
401 like GitLab): ``GET /api/v4/user``, ``GET /api/v4/personal_access_tokens/self``,
``GET /api/v4/projects/:url-encoded-path/(issues|merge_requests)/:iid`` (404 "Project Not
Found" / "Not found" otherwise). Scripted responses (any status, headers, body, delay
before answering) take precedence over the normal behaviour, in order, per raw path.
Every request is recorded (method, raw path, headers) and counted per raw path.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import socket
import ssl
import tempfile
import threading
from collections import Counter, deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import quote, unquote, urlsplit

DEFAULT_TOKEN = "glpat-FAKE-s3cret-t0ken-9f8e7d"
KINDS = {"issue": "issues", "mr": "merge_requests"}


@dataclass
class Scripted:
    """One canned answer: ``body`` is JSON-encoded unless it is bytes or str."""

    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds to wait before answering (timeouts)


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str  # raw, as sent (percent-encoding kept)
    headers: dict[str, str]  # lower-cased names
    client_port: int  # the client's source port: one per TCP connection


def http_date(when: dt.datetime) -> str:
    """``Sun, 06 Nov 1994 08:49:37 GMT`` (for ``Retry-After``)."""
    return when.astimezone(dt.UTC).strftime("%a, %d %b %Y %H:%M:%S GMT")


def self_signed_tls(hostname: str) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A server context with a fresh self-signed certificate for ``hostname``, and a
    client context that trusts exactly that certificate (and checks the host name)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(hostname)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    with tempfile.TemporaryDirectory() as tmp:
        cert_file, key_file = Path(tmp, "cert.pem"), Path(tmp, "key.pem")
        cert_file.write_bytes(cert_pem)
        key_file.write_bytes(key_pem)
        server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        server.load_cert_chain(cert_file, key_file)
    client = ssl.create_default_context(cadata=cert_pem.decode())
    return server, client


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, fake: FakeGitLab, host: str) -> None:
        if ":" in host:
            self.address_family = socket.AF_INET6
        self.fake = fake
        super().__init__((host, 0), _Handler)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, so client-side pooling is exercised
    timeout = 5
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        return None

    def do_GET(self) -> None:
        self.server.fake._handle(self)

    do_POST = do_PUT = do_DELETE = do_HEAD = do_GET  # recorded, then answered 405

    def send(self, answer: Scripted) -> None:
        if answer.delay and self.server.fake._stopping.wait(answer.delay):
            return
        if isinstance(answer.body, bytes):
            payload = answer.body
        elif isinstance(answer.body, str):
            payload = answer.body.encode()
        else:
            payload = json.dumps(answer.body).encode()
        self.send_response(answer.status)
        headers = {"Content-Type": "application/json", **answer.headers}
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)


class FakeGitLab:
    """See the module docstring. ``host`` may be ``127.0.0.1`` or ``::1``; pass a server
    ``ssl_context`` (see :func:`self_signed_tls`) to speak HTTPS."""

    def __init__(
        self,
        *,
        token: str = DEFAULT_TOKEN,
        host: str = "127.0.0.1",
        ssl_context: ssl.SSLContext | None = None,
        username: str = "fake.admin",
        scopes: tuple[str, ...] = ("read_api",),
        expires_at: str | None = "2099-12-31",
    ) -> None:
        if not ipaddress.ip_address(host).is_loopback:
            raise ValueError("the fake GitLab listens on loopback addresses only")
        self.token = token
        self.host = host
        self.user: dict[str, Any] = {
            "id": 1,
            "username": username,
            "name": username.replace(".", " ").title(),
            "state": "active",
            "web_url": "",
        }
        self.token_self: dict[str, Any] = {
            "id": 7,
            "name": "viarah",
            "revoked": False,
            "created_at": "2024-01-01T00:00:00.000Z",
            "scopes": list(scopes),
            "user_id": 1,
            "active": True,
            "expires_at": expires_at,
        }
        self.requests: list[RecordedRequest] = []
        self._counts: Counter[str] = Counter()
        self._objects: dict[tuple[str, str, int], dict[str, Any]] = {}
        self._scripts: dict[str, deque[Scripted]] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._ssl_context = ssl_context
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> FakeGitLab:
        server = _Server(self, self.host)
        if self._ssl_context is not None:
            server.socket = self._ssl_context.wrap_socket(server.socket, server_side=True)
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FakeGitLab:
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
        assert self._server is not None, "start() the fake first"
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        scheme = "https" if self._ssl_context is not None else "http"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{host}:{self.port}"

    def url_for(self, host: str) -> str:
        """The base URL with another spelling of the host (``localhost``, ``0x7f.1``...)."""
        scheme = "https" if self._ssl_context is not None else "http"
        return f"{scheme}://{host}:{self.port}"

    # -- data --------------------------------------------------------------------------

    user_path = "/api/v4/user"
    token_path = "/api/v4/personal_access_tokens/self"

    @staticmethod
    def object_path(project_path: str, kind: str, iid: int) -> str:
        """The raw API path the client must request (project path URL-encoded)."""
        return f"/api/v4/projects/{quote(project_path, safe='')}/{KINDS[kind]}/{iid}"

    def add_issue(self, project_path: str, iid: int, **fields: Any) -> dict[str, Any]:
        return self.set_object(project_path, "issue", iid, **fields)

    def add_merge_request(self, project_path: str, iid: int, **fields: Any) -> dict[str, Any]:
        return self.set_object(project_path, "mr", iid, **fields)

    def set_object(
        self,
        project_path: str,
        kind: str,
        iid: int,
        *,
        title: str = "An object",
        state: str = "opened",
        labels: list[str] | None = None,
        assignees: list[tuple[str, str]] | None = None,
        updated_at: str = "2024-05-01T10:00:00.000Z",
        legacy_assignee: bool = False,
        **extra: Any,
    ) -> dict[str, Any]:
        """Create or replace one issue (``kind="issue"``) or merge request (``"mr"``).

        ``assignees`` are ``(username, name)`` pairs; ``legacy_assignee`` drops the
        ``assignees`` list and keeps only the old single ``assignee`` field.
        """
        people = [
            {"id": 100 + n, "username": u, "name": name, "state": "active"}
            for n, (u, name) in enumerate(assignees or [])
        ]
        payload: dict[str, Any] = {
            "id": 1000 + iid,
            "iid": iid,
            "project_id": 42,
            "title": title,
            "description": "",
            "state": state,
            "created_at": "2024-04-01T09:00:00.000Z",
            "updated_at": updated_at,
            "closed_at": None,
            "labels": list(labels or []),
            "milestone": None,
            "author": {"id": 1, "username": self.user["username"], "name": self.user["name"]},
            "assignees": people,
            "assignee": people[0] if people else None,
            "web_url": f"{self.base_url}/{project_path}/-/{KINDS[kind]}/{iid}",
        }
        if kind == "mr":
            payload.update(
                merged_at=None, source_branch="feature", target_branch="main", draft=False
            )
        else:
            payload.update(type="ISSUE", confidential=False)
        if legacy_assignee:
            del payload["assignees"]
        payload.update(extra)
        with self._lock:
            self._objects[(project_path.lower(), kind, iid)] = payload
        return payload

    def script(self, path: str, *answers: Scripted) -> None:
        """Answer the next requests for raw ``path`` with ``answers``, in order."""
        with self._lock:
            self._scripts.setdefault(path, deque()).extend(answers)

    def calls(self, path: str) -> int:
        """How many requests arrived for raw ``path`` (whatever the answer)."""
        with self._lock:
            return self._counts[path]

    # -- serving -----------------------------------------------------------------------

    def _handle(self, handler: _Handler) -> None:
        path = urlsplit(handler.path).path
        request = RecordedRequest(
            method=handler.command,
            path=path,
            headers={k.lower(): v for k, v in handler.headers.items()},
            client_port=int(handler.client_address[1]),
        )
        with self._lock:
            self.requests.append(request)
            self._counts[path] += 1
            queue = self._scripts.get(path)
            scripted = queue.popleft() if queue else None
        handler.send(scripted if scripted is not None else self._answer(request))

    def _authorized(self, request: RecordedRequest) -> bool:
        given = request.headers.get("private-token")
        bearer = request.headers.get("authorization", "")
        return given == self.token or bearer == f"Bearer {self.token}"

    def _answer(self, request: RecordedRequest) -> Scripted:
        if request.method != "GET":
            return Scripted(405, {"message": "405 Method Not Allowed"})
        if not self._authorized(request):
            return Scripted(401, {"message": "401 Unauthorized"})
        if request.path == self.user_path:
            return Scripted(200, self.user)
        if request.path == self.token_path:
            return Scripted(200, self.token_self)
        parts = request.path.split("/")
        # ['', 'api', 'v4', 'projects', '<encoded path>', 'issues', '<iid>']
        if len(parts) == 7 and parts[1:4] == ["api", "v4", "projects"]:
            project = unquote(parts[4]).lower()
            kind = {v: k for k, v in KINDS.items()}.get(parts[5])
            with self._lock:
                known = any(key[0] == project for key in self._objects)
                found = (
                    self._objects.get((project, kind, int(parts[6])))
                    if kind and parts[6].isdigit()
                    else None
                )
            if found is not None:
                return Scripted(200, found)
            if not known:
                return Scripted(404, {"message": "404 Project Not Found"})
            return Scripted(404, {"message": "404 Not found"})
        return Scripted(404, {"error": "404 Not Found"})
