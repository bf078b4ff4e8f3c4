"""The page at ``/`` in a real browser: Debian's Chromium, headless, driven over the Chrome
DevTools Protocol (its websocket), against a real ``viarah serve``.

Offline there is no browser push service (Chromium's is FCM): the real
``pushManager.subscribe()`` never answers. So the Enable test replaces that one browser
call with a stand-in that records its arguments and returns a subscription; everything
around it (permission, the VAPID key, the POST with the CSRF header, Disable's DELETE) is
the page's real code against the real server. A push message is handed to the real
service worker with ``ServiceWorker.deliverPushMessage``.

Missing Chromium skips these tests locally and fails them under CI (``.ci/run`` installs
Debian's ``chromium``).
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from websockets.sync.client import ClientConnection, connect

from tests.conftest import IN_CI
from tests.system.processes import VIARAH, Proc, clean_env, free_port, wait_http_ok
from viarah.container import new_vapid_keypair

pytestmark = [pytest.mark.system]

EMAIL = "bob@example.com"
PASSWORD = "correct horse battery staple"
INSECURE_HOST = "viarah.test"  # mapped to 127.0.0.1: plain http there is not a secure context
FAKE_ENDPOINT = "https://push.example.net/wpush/v2/browser-test"
# Replaces the browser's push service: records each subscribe() and answers like it would.
PUSH_SERVICE_STAND_IN = """
(() => {
  const state = { calls: [], current: null };
  window.__pushStandIn = state;
  PushManager.prototype.subscribe = async function (options) {
    const key = new Uint8Array(options.applicationServerKey).slice().buffer;
    const bytes = Array.from(new Uint8Array(key));
    state.calls.push({ userVisibleOnly: options.userVisibleOnly, key: bytes });
    state.current = {
      endpoint: ENDPOINT,
      expirationTime: null,
      options: { userVisibleOnly: true, applicationServerKey: key },
      toJSON: () => ({ endpoint: ENDPOINT, expirationTime: null, keys: KEYS }),
      unsubscribe: async () => { state.current = null; return true; },
    };
    return state.current;
  };
  PushManager.prototype.getSubscription = async function () { return state.current; };
})()
"""


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def push_service_stand_in() -> str:
    """The stand-in's script, answering with fresh keys (what PushSubscription.toJSON()
    holds: a P-256 public key and a 16-byte auth secret)."""
    public = ec.generate_private_key(ec.SECP256R1()).public_key()
    keys = {
        "p256dh": b64url(public.public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)),
        "auth": b64url(os.urandom(16)),
    }
    return PUSH_SERVICE_STAND_IN.replace("ENDPOINT", json.dumps(FAKE_ENDPOINT)).replace(
        "KEYS", json.dumps(keys)
    )


def chromium_binary() -> str:
    binary = shutil.which("chromium")
    if binary is None:
        message = "Debian's chromium is not installed (apt-get install chromium)"
        if IN_CI:
            pytest.fail(f"{message}; CI requires it", pytrace=False)
        pytest.skip(message)
    return binary


class ProtocolError(Exception):
    """A DevTools command failed (e.g. evaluating in a page that is navigating away)."""


class DevTools:
    """A minimal Chrome DevTools Protocol client: commands in order, events collected."""

    def __init__(self, websocket_url: str) -> None:
        self._stack = contextlib.ExitStack()
        self._ws: ClientConnection = self._stack.enter_context(
            connect(websocket_url, max_size=None, open_timeout=10)
        )
        self._ids = itertools.count(1)
        self.events: list[dict[str, Any]] = []

    def call(
        self,
        method: str,
        params: dict[str, Any] | None = None,
        *,
        session: str | None = None,
        timeout: float = 30,
    ) -> dict[str, Any]:
        message_id = next(self._ids)
        message: dict[str, Any] = {"id": message_id, "method": method, "params": params or {}}
        if session is not None:
            message["sessionId"] = session
        self._ws.send(json.dumps(message))
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                pytest.fail(f"no answer to {method} within {timeout} s")
            received = json.loads(self._ws.recv(timeout=remaining))
            if received.get("id") != message_id:
                self.events.append(received)
                continue
            if "error" in received:
                raise ProtocolError(f"{method} failed: {received['error']}")
            result: dict[str, Any] = received["result"]
            return result

    def close(self) -> None:
        self._stack.close()


class Chromium:
    """Headless Chromium with its own profile, remote debugging on a free port."""

    def __init__(self, binary: str, profile: Path, log: Path) -> None:
        self.port = free_port()
        self._log = log.open("w")
        self.proc = subprocess.Popen(
            [
                binary,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--no-first-run",
                "--disable-sync",
                f"--host-resolver-rules=MAP {INSECURE_HOST} 127.0.0.1",
                f"--user-data-dir={profile}",
                f"--remote-debugging-port={self.port}",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=self._log,
        )
        self.devtools = DevTools(self._websocket_url(log))

    def _websocket_url(self, log: Path) -> str:
        deadline = time.monotonic() + 30
        while True:
            try:
                version = httpx.get(f"http://127.0.0.1:{self.port}/json/version", timeout=1)
                return str(version.json()["webSocketDebuggerUrl"])
            except (httpx.TransportError, ValueError, KeyError):
                pass
            if time.monotonic() > deadline or self.proc.poll() is not None:
                tail = log.read_text(errors="replace")[-2000:]
                pytest.fail(f"chromium did not open its debugging port: {tail}")
            time.sleep(0.1)

    def open(self, url: str) -> Page:
        target = self.devtools.call("Target.createTarget", {"url": "about:blank"})
        attached = self.devtools.call(
            "Target.attachToTarget", {"targetId": target["targetId"], "flatten": True}
        )
        page = Page(self.devtools, attached["sessionId"])
        for domain in ("Runtime", "Log", "Page", "ServiceWorker"):
            page.call(f"{domain}.enable")
        page.call("Page.navigate", {"url": url})
        page.wait_loaded(url)
        return page

    def __enter__(self) -> Chromium:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # The browser may drop the connection before answering; it is waited for below.
        with contextlib.suppress(Exception, pytest.fail.Exception):
            self.devtools.call("Browser.close", timeout=5)
        self.devtools.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._log.close()


class Page:
    """One tab: evaluate JavaScript (promises awaited), wait for conditions."""

    def __init__(self, devtools: DevTools, session: str) -> None:
        self.devtools = devtools
        self.session = session

    def call(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        return self.devtools.call(method, params, session=self.session)

    def evaluate(self, expression: str, timeout: float = 30) -> Any:
        result = self.devtools.call(
            "Runtime.evaluate",
            {"expression": expression, "awaitPromise": True, "returnByValue": True},
            session=self.session,
            timeout=timeout,
        )
        if "exceptionDetails" in result:
            raise ProtocolError(f"{expression!r} threw: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_loaded(self, url: str, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        check = f"location.href === {json.dumps(url)} && document.readyState === 'complete'"
        while not self._settled(check):
            if time.monotonic() > deadline:
                pytest.fail(f"{url} did not load within {timeout} s")
            time.sleep(0.05)

    def _settled(self, check: str) -> bool:
        """``check`` holds; False while the page is between two documents."""
        try:
            return bool(self.evaluate(check, timeout=5))
        except ProtocolError:
            return False

    def reload(self) -> None:
        url = str(self.evaluate("location.href"))
        self.evaluate("document.documentElement.dataset.reloading = 'yes'")
        self.call("Page.reload")
        deadline = time.monotonic() + 20
        while not self._settled("document.documentElement.dataset.reloading !== 'yes'"):
            if time.monotonic() > deadline:
                pytest.fail("the page did not reload")
            time.sleep(0.05)
        self.wait_loaded(url)

    def state(self) -> tuple[str, str]:
        value = self.evaluate(
            "(e => [e.dataset.state, e.textContent])(document.getElementById('push-state'))"
        )
        return str(value[0]), str(value[1])

    def wait_for_state(self, *wanted: str, timeout: float = 20) -> str:
        """Wait until #push-state shows one of ``wanted``; return its text."""
        deadline = time.monotonic() + timeout
        while True:
            state, text = self.state()
            if state in wanted:
                return text
            if time.monotonic() > deadline:
                pytest.fail(f"push state is {state!r} ({text!r}), expected one of {wanted}")
            time.sleep(0.1)

    def click(self, element_id: str) -> None:
        self.evaluate(f"document.getElementById({json.dumps(element_id)}).click()")

    def log_in(self, email: str, password: str) -> None:
        self.evaluate(
            f"""(() => {{
              document.getElementById("login-email").value = {json.dumps(email)};
              document.getElementById("login-password").value = {json.dumps(password)};
              document.getElementById("login-form").requestSubmit();
            }})()"""
        )


def errors(devtools: DevTools) -> list[dict[str, Any]]:
    """JavaScript exceptions and error log entries (CSP violations included) of every
    attached target. Failed HTTP answers are left out: the page expects a 401 from
    /api/me when logged out and a 503 from the VAPID key when push is not configured."""
    found = []
    for event in devtools.events:
        params = event.get("params", {})
        if event.get("method") == "Runtime.exceptionThrown":
            found.append(params)
        elif event.get("method") == "Log.entryAdded":
            entry = params.get("entry", {})
            if entry.get("level") == "error" and entry.get("source") != "network":
                found.append(entry)
        elif event.get("method") == "Runtime.consoleAPICalled" and params.get("type") == "error":
            found.append(params)
    return found


def start_serve(tmp: Path, procs: list[Proc], **env: str) -> str:
    """``viarah serve`` (embedded SQLite, in-process queue) in ``tmp``, with one user."""
    port = free_port()
    environment = clean_env(**env)
    serve = Proc(["serve", "--port", str(port)], environment, tmp)
    procs.append(serve)
    url = f"http://127.0.0.1:{port}"
    wait_http_ok(f"{url}/healthz", serve)
    subprocess.run(
        [str(VIARAH), "users", "create", "--email", EMAIL, "--password-stdin"],
        input=PASSWORD,
        env=environment,
        cwd=tmp,
        text=True,
        capture_output=True,
        check=True,
        timeout=60,
    )
    return url


@pytest.fixture
def chromium(tmp_path: Path) -> Iterator[Chromium]:
    binary = chromium_binary()
    with Chromium(binary, tmp_path / "profile", tmp_path / "chromium.log") as browser:
        yield browser


def _server_subscriptions(url: str) -> list[dict[str, Any]]:
    login = httpx.post(f"{url}/api/auth/login", json={"email": EMAIL, "password": PASSWORD})
    assert login.status_code == 200, login.text
    cookie = {"Cookie": f"viarah_session={login.cookies['viarah_session']}"}
    listing = httpx.get(f"{url}/api/push/subscriptions", headers=cookie)
    assert listing.status_code == 200, listing.text
    subscriptions: list[dict[str, Any]] = listing.json()["subscriptions"]
    return subscriptions


def _b64url_bytes(text: str) -> list[int]:
    return list(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))


def test_the_page_registers_its_worker_and_turns_push_on_and_off(
    tmp_path: Path, procs: list[Proc], chromium: Chromium
) -> None:
    vapid = new_vapid_keypair()
    home = tmp_path / "home"
    home.mkdir()
    url = start_serve(
        home,
        procs,
        WEBPUSH_VAPID_PUBLIC_KEY=vapid.public_key,
        WEBPUSH_VAPID_PRIVATE_KEY=vapid.private_key,
        WEBPUSH_VAPID_SUBJECT="mailto:ops@example.com",
    )
    chromium.devtools.call(
        "Browser.grantPermissions", {"origin": url, "permissions": ["notifications"]}
    )
    page = chromium.open(f"{url}/")

    scope = page.evaluate("navigator.serviceWorker.ready.then(r => r.scope)")
    assert urlsplit(scope).path == "/"
    worker = page.evaluate("navigator.serviceWorker.ready.then(r => r.active.scriptURL)")
    assert worker == f"{url}/service-worker.js"
    assert "Not logged in" in page.wait_for_state("logged-out")

    page.log_in(EMAIL, PASSWORD)
    assert "Not subscribed" in page.wait_for_state("not-subscribed")
    assert page.evaluate("document.getElementById('enable').hidden") is False

    page.evaluate(push_service_stand_in())
    page.click("enable")
    assert "Subscribed" in page.wait_for_state("subscribed")
    calls = page.evaluate("window.__pushStandIn.calls")
    assert calls == [{"userVisibleOnly": True, "key": _b64url_bytes(vapid.public_key)}]
    stored = _server_subscriptions(url)
    assert [s["endpoint"] for s in stored] == [FAKE_ENDPOINT]
    assert "HeadlessChrome" in stored[0]["user_agent"]

    page.click("disable")
    assert "Not subscribed" in page.wait_for_state("not-subscribed")
    assert _server_subscriptions(url) == []

    # Logging out turns this browser's notifications off too (shared computers).
    page.click("enable")
    page.wait_for_state("subscribed")
    assert len(_server_subscriptions(url)) == 1
    page.click("logout")
    page.wait_for_state("logged-out")
    assert _server_subscriptions(url) == []
    assert page.evaluate("window.__pushStandIn.current") is None
    page.log_in(EMAIL, PASSWORD)
    page.wait_for_state("not-subscribed")

    # The real service worker shows a pushed message (payload as the worker sends it).
    registration = next(
        r
        for event in reversed(chromium.devtools.events)
        if event.get("method") == "ServiceWorker.workerRegistrationUpdated"
        for r in event["params"]["registrations"]
        if r["scopeURL"] == f"{url}/" and not r["isDeleted"]
    )
    payload = {
        "title": "Issue closed: Crash on login",
        "body": "Linked to task “Fix login”",
        "url": "https://gitlab.example.com/group/app/-/issues/7",
        "event_type": "gitlab_link.state_changed",
        "org_id": "org-1",
        "task_id": "task-1",
    }
    page.call(
        "ServiceWorker.deliverPushMessage",
        {
            "origin": url,
            "registrationId": registration["registrationId"],
            "data": json.dumps(payload),
        },
    )
    shown = page.evaluate(
        """(async () => {
          const registration = await navigator.serviceWorker.ready;
          for (let i = 0; i < 100; i++) {
            const shown = await registration.getNotifications();
            if (shown.length) return shown.map(n => ({title: n.title, body: n.body, data: n.data}));
            await new Promise(resolve => setTimeout(resolve, 50));
          }
          return [];
        })()"""
    )
    assert shown == [
        {
            "title": payload["title"],
            "body": payload["body"],
            "data": {
                "url": payload["url"],
                "event_type": payload["event_type"],
                "org_id": "org-1",
                "task_id": "task-1",
            },
        }
    ]

    chromium.devtools.call(
        "Browser.setPermission",
        {"origin": url, "permission": {"name": "notifications"}, "setting": "denied"},
    )
    page.reload()
    assert "Permission denied" in page.wait_for_state("denied")
    assert errors(chromium.devtools) == []


def test_the_page_says_why_push_cannot_be_used(
    tmp_path: Path, procs: list[Proc], chromium: Chromium
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    url = start_serve(home, procs, ALLOWED_HOSTS=f"127.0.0.1,localhost,{INSECURE_HOST}")
    page = chromium.open(f"{url}/")
    page.wait_for_state("logged-out")
    page.log_in(EMAIL, PASSWORD)
    text = page.wait_for_state("not-configured")
    assert "Push not configured on the server" in text
    assert "WEBPUSH_VAPID_PUBLIC_KEY" in text
    assert page.evaluate("document.getElementById('enable').hidden") is True

    port = urlsplit(url).port
    insecure = chromium.open(f"http://{INSECURE_HOST}:{port}/")
    assert "HTTPS" in insecure.wait_for_state("unsupported")
    assert errors(chromium.devtools) == []
