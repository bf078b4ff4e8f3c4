"""Logging in and out, /api/me, cookies, CSRF and Origin checks, login throttling."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from litestar.testing import TestClient

from tests.integration.web.conftest import (
    BASE_URL,
    PASSWORD,
    Caller,
    ShiftedClock,
    Web,
    assert_error,
    web_container,
    web_settings,
)
from viarah.entrypoints.web.app import create_app
from viarah.entrypoints.web.auth import origin_allowed

ME_KEYS = {"user", "memberships", "platform_role"}


def _set_cookies(response: Any) -> dict[str, str]:
    """Set-Cookie headers by cookie name."""
    cookies = {}
    for header in response.headers.get_list("set-cookie"):
        name = header.split("=", 1)[0]
        cookies[name] = header
    return cookies


def test_login_returns_the_user_memberships_and_cookies(web: Web) -> None:
    alice = web.user("Alice@Example.com", display_name="Alice")
    response = web.anon.post(
        "/api/auth/login", json={"email": "alice@example.com", "password": PASSWORD}
    )
    assert response.status_code == 200, response.text
    assert response.json() == {
        "user": {"id": alice.id, "email": "alice@example.com", "display_name": "Alice"},
        "memberships": [],
        "platform_role": "user",
    }
    assert response.headers["cache-control"] == "no-store"

    csrf = response.headers["x-csrf-token"]
    cookies = _set_cookies(response)
    session = cookies["viarah_session"]
    assert "HttpOnly" in session
    assert "Secure" in session
    assert "Path=/" in session
    assert "samesite=lax" in session.lower()
    readable = cookies["viarah_csrf"]
    assert readable.startswith(f"viarah_csrf={csrf};")
    assert "HttpOnly" not in readable
    assert "Secure" in readable
    assert PASSWORD not in response.text


def test_login_cookies_are_not_secure_in_debug_mode(postgres_url: str) -> None:
    settings = web_settings(postgres_url, VIA_RAH_DEBUG="1")
    container = web_container(settings)
    with TestClient(create_app(container), base_url="http://testserver.local") as client:
        client.blocking_portal.call(lambda: container.users().create("d@example.com", PASSWORD))
        response = client.post(
            "/api/auth/login", json={"email": "d@example.com", "password": PASSWORD}
        )
    assert response.status_code == 200
    for header in response.headers.get_list("set-cookie"):
        assert "Secure" not in header


def test_me_shows_memberships_and_platform_role(web: Web) -> None:
    admin = web.member("root@example.com", platform_admin=True, display_name="Root")
    org_id = web.org(admin, "Acme")
    response = admin.get("/api/me")
    assert response.status_code == 200
    assert response.json() == {
        "user": {"id": admin.user_id, "email": "root@example.com", "display_name": "Root"},
        "memberships": [{"org_id": org_id, "org_name": "Acme", "role": "admin"}],
        "platform_role": "admin",
    }
    again = web.login("root@example.com")
    assert again.post("/api/auth/login", json={}).status_code == 400  # public: validates
    relogin = web.anon.post(
        "/api/auth/login", json={"email": "root@example.com", "password": PASSWORD}
    )
    assert relogin.json()["memberships"] == [
        {"org_id": org_id, "org_name": "Acme", "role": "admin"}
    ]


def test_wrong_password_and_unknown_email_are_the_same_401(web: Web) -> None:
    web.user("bob@example.com")
    wrong = web.anon.post(
        "/api/auth/login", json={"email": "bob@example.com", "password": "not-the-password"}
    )
    unknown = web.anon.post(
        "/api/auth/login", json={"email": "nobody@example.com", "password": PASSWORD}
    )
    malformed = web.anon.post("/api/auth/login", json={"email": "nope", "password": PASSWORD})
    bodies = [assert_error(r, 401, "unauthenticated") for r in (wrong, unknown, malformed)]
    assert bodies[0] == bodies[1] == bodies[2]
    assert "not-the-password" not in wrong.text
    assert "set-cookie" not in wrong.headers


def test_logout_kills_the_session_server_side(web: Web) -> None:
    bob = web.member("bob@example.com")
    assert bob.get("/api/me").status_code == 200
    response = bob.post("/api/auth/logout")
    assert response.status_code == 204
    cleared = _set_cookies(response)
    assert "Max-Age=0" in cleared["viarah_session"]
    assert "Max-Age=0" in cleared["viarah_csrf"]
    assert_error(bob.get("/api/me"), 401, "unauthenticated")
    assert_error(bob.post("/api/auth/logout"), 401)


def test_logout_needs_a_session_and_csrf(web: Web) -> None:
    bob = web.member("bob@example.com")
    token = web.bearer(bob)
    assert_error(token.post("/api/auth/logout"), 403, "forbidden")
    no_csrf = Caller(web.client, headers={"Cookie": f"viarah_session={bob.session_cookie}"})
    assert_error(no_csrf.post("/api/auth/logout"), 403, "csrf_failed")
    assert bob.get("/api/me").status_code == 200


def test_missing_or_invalid_credentials_are_401(web: Web) -> None:
    web.member("bob@example.com")
    response = web.anon.get("/api/me")
    body = assert_error(response, 401, "unauthenticated")
    assert "log in" in body["error"]
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert_error(web.anon.get("/api/orgs"), 401)
    assert_error(web.anon.post("/api/orgs", content=b"{not json"), 401)  # before the body
    for headers in (
        {"Cookie": "viarah_session=forged-value"},
        {"Authorization": "Bearer nope"},
        {"Authorization": "Bearer vrak_"},
        {"Authorization": "Bearer vrak_abc.def"},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": ""},
    ):
        assert_error(web.anon.get("/api/me", headers=headers), 401, "unauthenticated")


def test_cookie_writes_need_the_csrf_header(web: Web) -> None:
    bob = web.member("bob@example.com")
    cookie_only = Caller(web.client, headers={"Cookie": f"viarah_session={bob.session_cookie}"})
    assert cookie_only.get("/api/orgs").status_code == 200  # safe methods need no token

    body = assert_error(cookie_only.post("/api/orgs", json={"name": "X"}), 403, "csrf_failed")
    assert body["error"] == "CSRF token missing or incorrect"
    wrong = cookie_only.post("/api/orgs", json={"name": "X"}, headers={"X-CSRF-Token": "wrong"})
    assert_error(wrong, 403, "csrf_failed")
    other = web.member("eve@example.com")
    assert other.csrf != bob.csrf
    mixed = cookie_only.post("/api/orgs", json={"name": "X"}, headers={"X-CSRF-Token": other.csrf})
    assert_error(mixed, 403, "csrf_failed")
    assert bob.get("/api/orgs").json() == {"orgs": []}  # nothing was created

    assert bob.post("/api/orgs", json={"name": "X"}).status_code == 201


def test_a_foreign_origin_is_refused_for_cookie_writes(postgres_url: str) -> None:
    settings = web_settings(postgres_url, CSRF_TRUSTED_ORIGINS="https://app.example.com")
    container = web_container(settings)
    with TestClient(create_app(container), base_url=BASE_URL) as client:
        web = Web(client, container, ShiftedClock())
        bob = web.member("bob@example.com")
        evil = bob.post("/api/orgs", json={"name": "X"}, headers={"Origin": "https://evil.example"})
        assert_error(evil, 403, "csrf_failed")
        assert_error(bob.post("/api/orgs", json={"name": "X"}, headers={"Origin": "null"}), 403)
        for origin in (BASE_URL, "https://app.example.com"):
            ok = bob.post("/api/orgs", json={"name": origin}, headers={"Origin": origin})
            assert ok.status_code == 201, ok.text

        token = web.bearer(bob)
        scripted = token.post(
            "/api/orgs", json={"name": "Y"}, headers={"Origin": "https://evil.example"}
        )
        assert scripted.status_code == 201  # bearer tokens are not ambient credentials

        login = client.post(
            "/api/auth/login",
            json={"email": "bob@example.com", "password": PASSWORD},
            headers={"Origin": "https://evil.example"},
        )
        assert_error(login, 403, "csrf_failed")


def test_failed_logins_are_throttled_per_client_and_email(web: Web) -> None:
    web.user("carol@example.com")
    web.user("dave@example.com")
    bad = {"email": "carol@example.com", "password": "wrong-password"}
    for _ in range(10):
        assert web.anon.post("/api/auth/login", json=bad).status_code == 401
    limited = web.anon.post("/api/auth/login", json=bad)
    assert_error(limited, 429, "rate_limited")
    assert 1 <= int(limited.headers["retry-after"]) <= 300
    good = {"email": "CAROL@example.com", "password": PASSWORD}
    assert web.anon.post("/api/auth/login", json=good).status_code == 429
    other = {"email": "dave@example.com", "password": PASSWORD}
    assert web.anon.post("/api/auth/login", json=other).status_code == 200


def test_no_secret_reaches_a_response_or_a_log_line(
    web: Web, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    bob = web.member("bob@example.com")
    token = web.bearer(bob)
    assert token.token is not None
    assert bob.session_cookie
    assert bob.csrf
    secret = token.token.split(".", 1)[1]
    responses = [
        bob.get("/api/me"),
        bob.get("/api/me/tokens"),
        token.get("/api/me"),
        token.get("/api/orgs"),
        web.anon.post("/api/auth/login", json={"email": "bob@example.com", "password": "x" * 9}),
    ]
    for response in responses:
        for value in (PASSWORD, secret, bob.session_cookie):
            assert value not in response.text
    for value in (PASSWORD, secret, token.token, bob.session_cookie, bob.csrf, "x" * 9):
        assert value not in caplog.text
    assert "http.request method=GET path=/api/me status=200" in caplog.text


def test_origin_rules() -> None:
    def own(origin: str, scheme: str = "http", trusted: tuple[str, ...] = ()) -> bool:
        return origin_allowed(origin, scheme=scheme, host="viarah.example.com", trusted=trusted)

    assert own("http://viarah.example.com")
    assert own("https://viarah.example.com")  # TLS ends at a reverse proxy
    assert own("https://viarah.example.com:443")
    assert not own("http://viarah.example.com:8080")
    assert not own("https://evil.example.com")
    assert not own("null")
    assert not own("ftp://viarah.example.com")
    assert not own("http://viarah.example.com", scheme="https")  # downgrade refused
    assert own("https://APP.example.com/", trusted=("https://app.example.com",))
