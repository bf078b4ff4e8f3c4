"""Web Push routes (VAPID key, subscriptions, preferences) and the page at ``/``."""

from __future__ import annotations

import base64
import os
import re
from datetime import UTC, datetime
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from litestar.testing import TestClient

from tests.integration.web.conftest import (
    BASE_URL,
    Caller,
    ShiftedClock,
    Web,
    assert_error,
    web_container,
    web_settings,
)
from viarah.container import new_vapid_keypair
from viarah.domain.notifications.model import AUTH_FAILED, EVENT_TYPES, STATE_CHANGED
from viarah.entrypoints.web.app import create_app
from viarah.settings import Settings

SUBSCRIPTION_KEYS = {
    "id",
    "endpoint",
    "expiration_time",
    "user_agent",
    "created_at",
    "updated_at",
    "last_success_at",
    "last_failure_at",
    "last_failure_reason",
}
VAPID = new_vapid_keypair()
PUSH_ORIGIN = "https://push.example.net"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def browser_subscription(endpoint: str | None = None) -> dict[str, Any]:
    """What ``PushSubscription.toJSON()`` gives: a fresh P-256 key and auth secret."""
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    return {
        "endpoint": endpoint or f"{PUSH_ORIGIN}/wpush/v2/{os.urandom(12).hex()}",
        "expirationTime": None,
        "keys": {
            "p256dh": _b64url(key.public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)),
            "auth": _b64url(os.urandom(16)),
        },
    }


def assert_no_keys(response_text: str, *subscriptions: dict[str, Any]) -> None:
    for sub in subscriptions:
        assert sub["keys"]["p256dh"] not in response_text
        assert sub["keys"]["auth"] not in response_text
    assert "p256dh" not in response_text
    assert '"auth"' not in response_text
    assert '"keys"' not in response_text


@pytest.fixture
def settings(postgres_url: str) -> Settings:
    """Push configured, as an operator would with ``viarah keys vapid``."""
    return web_settings(
        postgres_url,
        WEBPUSH_VAPID_PUBLIC_KEY=VAPID.public_key,
        WEBPUSH_VAPID_PRIVATE_KEY=VAPID.private_key,
        WEBPUSH_VAPID_SUBJECT="mailto:ops@example.com",
    )


# --- the VAPID key --------------------------------------------------------------------


def test_vapid_public_key_when_configured(web: Web) -> None:
    bob = web.member("bob@example.com")
    response = bob.get("/api/push/vapid_public_key")
    assert response.status_code == 200, response.text
    assert response.json() == {"public_key": VAPID.public_key}
    assert re.fullmatch(r"[A-Za-z0-9_-]{87}", VAPID.public_key)  # 65 bytes, no padding
    assert VAPID.private_key not in response.text
    reader = web.bearer(bob, scope="read")
    assert reader.get("/api/push/vapid_public_key").json() == {"public_key": VAPID.public_key}
    assert_error(web.anon.get("/api/push/vapid_public_key"), 401, "unauthenticated")


def test_vapid_public_key_is_503_when_push_is_not_configured(postgres_url: str) -> None:
    container = web_container(web_settings(postgres_url))
    with TestClient(create_app(container), base_url=BASE_URL) as client:
        web = Web(client, container, ShiftedClock())
        bob = web.member("bob@example.com")
        body = assert_error(bob.get("/api/push/vapid_public_key"), 503, "push_not_configured")
        for variable in (
            "WEBPUSH_VAPID_PUBLIC_KEY",
            "WEBPUSH_VAPID_PRIVATE_KEY",
            "WEBPUSH_VAPID_SUBJECT",
        ):
            assert variable in body["error"]
        # Subscriptions and preferences still answer: the page shows "not configured".
        assert bob.get("/api/push/subscriptions").json() == {"subscriptions": []}
        assert bob.get("/api/me/notification-preferences").status_code == 200


# --- subscriptions --------------------------------------------------------------------


def test_subscribe_bare_and_wrapped_and_repost_updates(web: Web) -> None:
    bob = web.member("bob@example.com")
    bare = browser_subscription()
    bare["expirationTime"] = 1_893_456_000_000  # 2030-01-01T00:00:00Z, in ms
    created = bob.post(
        "/api/push/subscriptions", json=bare, headers={"User-Agent": "Firefox/130.0 (bare)"}
    )
    assert created.status_code == 201, created.text
    assert set(created.json()) == {"subscription"}
    first = created.json()["subscription"]
    assert set(first) == SUBSCRIPTION_KEYS
    assert first["endpoint"] == bare["endpoint"]
    assert first["user_agent"] == "Firefox/130.0 (bare)"
    assert datetime.fromisoformat(first["expiration_time"]) == datetime(2030, 1, 1, tzinfo=UTC)
    assert first["last_success_at"] is None
    assert_no_keys(created.text, bare)

    wrapped = browser_subscription()
    answer = bob.post(
        "/api/push/subscriptions",
        json={"subscription": wrapped, "user_agent": "Chrome/129 (wrapped)"},
        headers={"User-Agent": "python-httpx"},
    )
    assert answer.status_code == 201, answer.text
    second = answer.json()["subscription"]
    assert second["user_agent"] == "Chrome/129 (wrapped)"
    assert second["expiration_time"] is None
    assert second["id"] != first["id"]

    # The browser re-sends the same endpoint (new keys after a key refresh): one row, updated.
    again = browser_subscription(wrapped["endpoint"])
    updated = bob.post(
        "/api/push/subscriptions", json={"subscription": again, "user_agent": "Chrome/130"}
    )
    assert updated.status_code == 201, updated.text  # CONTRACT: 201 either way
    body = updated.json()["subscription"]
    assert body["id"] == second["id"]
    assert body["user_agent"] == "Chrome/130"
    assert body["created_at"] == second["created_at"]
    assert body["updated_at"] > second["updated_at"]
    assert_no_keys(updated.text, again)

    listing = bob.get("/api/push/subscriptions")
    assert listing.status_code == 200
    subscriptions = listing.json()["subscriptions"]
    assert sorted(s["id"] for s in subscriptions) == sorted([first["id"], second["id"]])
    assert all(set(s) == SUBSCRIPTION_KEYS for s in subscriptions)
    assert_no_keys(listing.text, bare, wrapped, again)


def test_a_long_user_agent_header_is_cut(web: Web) -> None:
    bob = web.member("bob@example.com")
    response = bob.post(
        "/api/push/subscriptions",
        json=browser_subscription(),
        headers={"User-Agent": "Mozilla/5.0 " + "x" * 900},
    )
    assert response.status_code == 201, response.text
    stored = response.json()["subscription"]["user_agent"]
    assert stored.startswith("Mozilla/5.0 ")
    assert len(stored) == 500


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda s: s.pop("endpoint"), "endpoint"),
        (lambda s: s.update(endpoint=""), "endpoint"),
        (lambda s: s.update(endpoint="ftp://push.example.net/x"), "endpoint"),
        (lambda s: s.update(endpoint="http://push.example.net/x"), "endpoint"),  # not https
        (lambda s: s.update(endpoint="https://169.254.169.254/x"), "endpoint"),
        (lambda s: s.update(endpoint=12), "endpoint"),
        (lambda s: s.pop("keys"), "keys.p256dh"),
        (lambda s: s["keys"].pop("p256dh"), "keys.p256dh"),
        (lambda s: s["keys"].update(p256dh="not base64!"), "keys.p256dh"),
        (lambda s: s["keys"].update(p256dh=_b64url(b"\x04" + b"\x01" * 64)), "keys.p256dh"),
        (lambda s: s["keys"].update(p256dh=7), "keys.p256dh"),
        (lambda s: s["keys"].pop("auth"), "keys.auth"),
        (lambda s: s["keys"].update(auth=_b64url(os.urandom(8))), "keys.auth"),
        (lambda s: s.update(expirationTime="tomorrow"), "expirationTime"),
        (lambda s: s.update(expirationTime=-5), "expirationTime"),
    ],
)
def test_a_bad_subscription_is_400_naming_the_field(web: Web, mutate: Any, field: str) -> None:
    bob = web.member("bob@example.com")
    subscription = browser_subscription()
    mutate(subscription)
    body = assert_error(bob.post("/api/push/subscriptions", json=subscription), 400)
    assert field in body.get("fields", {}), body
    assert bob.get("/api/push/subscriptions").json() == {"subscriptions": []}


def test_bare_and_wrapped_at_once_or_a_non_object_is_400(web: Web) -> None:
    bob = web.member("bob@example.com")
    sub = browser_subscription()
    body = assert_error(bob.post("/api/push/subscriptions", json={**sub, "subscription": sub}), 400)
    assert "subscription" in body["fields"]
    body = assert_error(bob.post("/api/push/subscriptions", json=["not", "an", "object"]), 400)
    assert "body" in body["fields"]
    wrapped = {"subscription": {**sub, "keys": {"p256dh": sub["keys"]["p256dh"], "auth": 3}}}
    body = assert_error(bob.post("/api/push/subscriptions", json=wrapped), 400)
    assert "subscription.keys.auth" in body["fields"]


def test_subscriptions_are_private_to_their_user(web: Web) -> None:
    bob = web.member("bob@example.com")
    eve = web.member("eve@example.com")
    sub = browser_subscription()
    sub_id = bob.post("/api/push/subscriptions", json=sub).json()["subscription"]["id"]

    listing = eve.get("/api/push/subscriptions")
    assert listing.json() == {"subscriptions": []}
    assert sub["endpoint"] not in listing.text
    assert_error(eve.delete(f"/api/push/subscriptions/{sub_id}"), 404, "not_found")
    assert_error(eve.delete("/api/push/subscriptions/not-an-id"), 404, "not_found")
    assert [s["id"] for s in bob.get("/api/push/subscriptions").json()["subscriptions"]] == [sub_id]

    assert bob.delete(f"/api/push/subscriptions/{sub_id}").status_code == 204
    assert bob.get("/api/push/subscriptions").json() == {"subscriptions": []}
    assert_error(bob.delete(f"/api/push/subscriptions/{sub_id}"), 404, "not_found")
    assert_error(web.anon.get("/api/push/subscriptions"), 401, "unauthenticated")


def test_tokens_read_scope_cannot_write_and_sessions_need_csrf(web: Web) -> None:
    bob = web.member("bob@example.com")
    reader = web.bearer(bob, scope="read")
    writer = web.bearer(bob, scope="write")
    sub = browser_subscription()

    assert reader.get("/api/push/subscriptions").status_code == 200
    assert_error(reader.post("/api/push/subscriptions", json=sub), 403, "read_scope")
    prefs = {"preferences": [{"event_type": STATE_CHANGED, "enabled": False}]}
    assert_error(reader.put("/api/me/notification-preferences", json=prefs), 403, "read_scope")

    created = writer.post("/api/push/subscriptions", json=sub)
    assert created.status_code == 201, created.text
    sub_id = created.json()["subscription"]["id"]
    assert_error(reader.delete(f"/api/push/subscriptions/{sub_id}"), 403, "read_scope")

    no_csrf = Caller(web.client, headers={"Cookie": f"viarah_session={bob.session_cookie}"})
    assert_error(no_csrf.post("/api/push/subscriptions", json=sub), 403, "csrf_failed")
    assert_error(no_csrf.delete(f"/api/push/subscriptions/{sub_id}"), 403, "csrf_failed")
    assert_error(no_csrf.put("/api/me/notification-preferences", json=prefs), 403, "csrf_failed")

    assert writer.delete(f"/api/push/subscriptions/{sub_id}").status_code == 204


# --- preferences ----------------------------------------------------------------------


def _prefs(caller: Caller) -> dict[str, bool]:
    response = caller.get("/api/me/notification-preferences")
    assert response.status_code == 200, response.text
    entries = response.json()["preferences"]
    assert all(set(e) == {"event_type", "channel", "enabled"} for e in entries)
    assert all(e["channel"] == "push" for e in entries)
    return {e["event_type"]: e["enabled"] for e in entries}


def test_preferences_default_on_and_put_changes_only_what_is_given(web: Web) -> None:
    bob = web.member("bob@example.com")
    eve = web.member("eve@example.com")
    assert _prefs(bob) == dict.fromkeys(EVENT_TYPES, True)

    response = bob.put(
        "/api/me/notification-preferences",
        json={"preferences": [{"event_type": STATE_CHANGED, "channel": "push", "enabled": False}]},
    )
    assert response.status_code == 200, response.text
    expected = {**dict.fromkeys(EVENT_TYPES, True), STATE_CHANGED: False}
    assert {p["event_type"]: p["enabled"] for p in response.json()["preferences"]} == expected
    assert [p["event_type"] for p in response.json()["preferences"]] == list(EVENT_TYPES)

    # "channel" may be left out; a second change keeps the first.
    response = bob.put(
        "/api/me/notification-preferences",
        json={"preferences": [{"event_type": AUTH_FAILED, "enabled": False}]},
    )
    assert response.status_code == 200, response.text
    assert _prefs(bob) == {**expected, AUTH_FAILED: False}

    bob.put(
        "/api/me/notification-preferences",
        json={"preferences": [{"event_type": STATE_CHANGED, "enabled": True}]},
    )
    assert _prefs(bob) == {**dict.fromkeys(EVENT_TYPES, True), AUTH_FAILED: False}
    assert _prefs(eve) == dict.fromkeys(EVENT_TYPES, True)  # per user
    assert bob.put("/api/me/notification-preferences", json={"preferences": []}).status_code == 200


def test_bad_preferences_are_400_naming_the_entry(web: Web) -> None:
    bob = web.member("bob@example.com")
    body = assert_error(
        bob.put(
            "/api/me/notification-preferences",
            json={
                "preferences": [
                    {"event_type": STATE_CHANGED, "enabled": False},
                    {"event_type": "task.deleted", "enabled": False},
                ]
            },
        ),
        400,
        "invalid_input",
    )
    assert "preferences[1].event_type" in body["fields"]
    assert STATE_CHANGED in body["error"]  # the known types are listed
    assert _prefs(bob)[STATE_CHANGED] is True  # nothing changed

    body = assert_error(
        bob.put(
            "/api/me/notification-preferences",
            json={"preferences": [{"event_type": STATE_CHANGED, "channel": "email", "enabled": 0}]},
        ),
        400,
    )
    assert body["fields"]
    body = assert_error(
        bob.put(
            "/api/me/notification-preferences",
            json={
                "preferences": [{"event_type": STATE_CHANGED, "channel": "email", "enabled": True}]
            },
        ),
        400,
    )
    assert "preferences[0].channel" in body["fields"]
    assert_error(bob.put("/api/me/notification-preferences", json={"nope": []}), 400)
    assert_error(web.anon.get("/api/me/notification-preferences"), 401)


# --- the page -------------------------------------------------------------------------


def test_the_page_is_public_html_with_a_strict_csp(web: Web) -> None:
    response = web.anon.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    csp = response.headers["content-security-policy"]
    assert "default-src 'self'" in csp
    assert "script-src 'self'" in csp
    assert "unsafe-inline" not in csp
    assert response.headers["x-content-type-options"] == "nosniff"
    html = response.text
    assert 'id="push-state"' in html
    assert '<script src="/app.js"' in html
    # No inline scripts or styles, nothing from another origin.
    assert re.findall(r"<script\b[^>]*>", html) == ['<script src="/app.js" defer>']
    assert "<style" not in html
    assert " style=" not in html
    assert " on" + "click=" not in html
    assert not re.search(r"""(src|href)=["'](https?:)?//""", html)


def test_the_scripts_are_served_as_javascript(web: Web) -> None:
    worker = web.anon.get("/service-worker.js")
    assert worker.status_code == 200
    assert worker.headers["content-type"].startswith("application/javascript")
    assert worker.headers["service-worker-allowed"] == "/"
    assert 'addEventListener("push"' in worker.text
    assert 'addEventListener("notificationclick"' in worker.text

    script = web.anon.get("/app.js")
    assert script.status_code == 200
    assert script.headers["content-type"].startswith("application/javascript")
    assert "/service-worker.js" in script.text
    assert "/api/push/vapid_public_key" in script.text
    assert "X-CSRF-Token" in script.text

    assert web.anon.get("/app.css").headers["content-type"].startswith("text/css")
    assert web.anon.get("/icon.svg").headers["content-type"].startswith("image/svg+xml")


def test_the_page_needs_no_login_but_an_allowed_host(web: Web) -> None:
    bogus = {"Cookie": "viarah_session=bogus", "Authorization": "Bearer nonsense"}
    assert web.anon.get("/", headers=bogus).status_code == 200
    assert web.anon.get("/service-worker.js", headers=bogus).status_code == 200
    for path in ("/", "/app.js", "/service-worker.js"):
        body = assert_error(web.anon.get(path, headers={"Host": "evil.example"}), 400)
        assert body["code"] == "invalid_host"
    assert_error(web.anon.post("/", json={}), 405, "method_not_allowed")
    assert "/" not in web.anon.get("/schema/openapi.json").json()["paths"]
