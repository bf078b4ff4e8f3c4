"""Personal API tokens: issuing, listing, revoking, scopes, expiry."""

from __future__ import annotations

from datetime import datetime

from tests.integration.web.conftest import Web, assert_error

TOKEN_KEYS = {
    "id",
    "name",
    "prefix",
    "scope",
    "created_at",
    "expires_at",
    "revoked_at",
    "last_used_at",
}


def _utc(value: str) -> datetime:
    assert value.endswith("Z"), value  # ISO 8601, UTC
    return datetime.fromisoformat(value)


def test_issue_list_and_revoke_a_token(web: Web) -> None:
    bob = web.member("bob@example.com")
    created = bob.post("/api/me/tokens", json={"name": "ci", "scope": "write", "expires_days": 30})
    assert created.status_code == 201, created.text
    assert created.headers["cache-control"] == "no-store"
    body = created.json()
    assert set(body) == {"token", "api_token"}
    api_token = body["api_token"]
    assert set(api_token) == TOKEN_KEYS
    assert body["token"].startswith(f"vrak_{api_token['prefix']}.")
    assert api_token["name"] == "ci"
    assert api_token["scope"] == "write"
    assert api_token["revoked_at"] is None
    assert api_token["last_used_at"] is None
    days = (_utc(api_token["expires_at"]) - _utc(api_token["created_at"])).days
    assert days == 30

    default = bob.post("/api/me/tokens", json={"name": "reader"}).json()["api_token"]
    assert default["scope"] == "read"
    assert default["expires_at"] is None

    secret = body["token"].split(".", 1)[1]
    listing = bob.get("/api/me/tokens")
    assert listing.status_code == 200
    assert secret not in listing.text
    tokens = listing.json()["tokens"]
    assert {t["id"] for t in tokens} == {api_token["id"], default["id"]}
    assert all(set(t) == TOKEN_KEYS for t in tokens)

    headers = {"Authorization": f"Bearer {body['token']}"}
    assert web.anon.get("/api/me", headers=headers).status_code == 200
    used = {t["id"]: t for t in bob.get("/api/me/tokens").json()["tokens"]}
    assert used[api_token["id"]]["last_used_at"] is not None

    assert bob.delete(f"/api/me/tokens/{api_token['id']}").status_code == 204
    revoked = {t["id"]: t for t in bob.get("/api/me/tokens").json()["tokens"]}
    assert revoked[api_token["id"]]["revoked_at"] is not None
    assert_error(web.anon.get("/api/me", headers=headers), 401, "unauthenticated")
    assert bob.delete(f"/api/me/tokens/{api_token['id']}").status_code == 204  # idempotent


def test_someone_elses_or_unknown_token_is_404(web: Web) -> None:
    bob = web.member("bob@example.com")
    eve = web.member("eve@example.com")
    token_id = bob.post("/api/me/tokens", json={"name": "x"}).json()["api_token"]["id"]
    assert_error(eve.delete(f"/api/me/tokens/{token_id}"), 404, "not_found")
    assert_error(eve.delete("/api/me/tokens/not-an-id"), 404, "not_found")
    assert eve.get("/api/me/tokens").json() == {"tokens": []}


def test_token_routes_are_session_only(web: Web) -> None:
    bob = web.member("bob@example.com")
    token = web.bearer(bob, scope="write")
    token_id = bob.get("/api/me/tokens").json()["tokens"][0]["id"]
    assert_error(token.get("/api/me/tokens"), 403, "forbidden")
    assert_error(token.post("/api/me/tokens", json={"name": "y"}), 403, "forbidden")
    assert_error(token.delete(f"/api/me/tokens/{token_id}"), 403, "forbidden")
    assert len(bob.get("/api/me/tokens").json()["tokens"]) == 1


def test_read_scope_token_can_only_read(web: Web) -> None:
    bob = web.member("bob@example.com")
    org_id = web.org(bob)
    reader = web.bearer(bob, scope="read")
    assert reader.get(f"/api/orgs/{org_id}").status_code == 200
    for method, path, body in (
        ("POST", "/api/orgs", {"name": "X"}),
        ("POST", f"/api/orgs/{org_id}/projects", {"name": "P"}),
        ("PATCH", f"/api/orgs/{org_id}/tasks/x", {"title": "t"}),
        ("PUT", f"/api/orgs/{org_id}/tasks/x/watch", None),
        ("DELETE", f"/api/orgs/{org_id}/memberships/x", None),
    ):
        response = reader.request(method, path, json=body)
        error = assert_error(response, 403, "read_scope")
        assert "read scope" in error["error"]
    assert len(bob.get("/api/orgs").json()["orgs"]) == 1

    writer = web.bearer(bob, scope="write")
    assert writer.post("/api/orgs", json={"name": "X"}).status_code == 201


def test_an_expired_token_is_401(web: Web) -> None:
    bob = web.member("bob@example.com")
    token = web.bearer(bob, expires_days=1)
    assert token.get("/api/me").status_code == 200
    web.clock.advance(days=1, seconds=1)
    body = assert_error(token.get("/api/me"), 401, "unauthenticated")
    assert "expired" in body["error"]


def test_invalid_token_requests_are_400(web: Web) -> None:
    bob = web.member("bob@example.com")
    for body, field in (
        ({"name": "x", "scope": "admin"}, "scope"),
        ({"name": "x", "expires_days": 0}, "expires_days"),
        ({"name": "x", "expires_days": "soon"}, "expires_days"),
        ({"name": ""}, "name"),
        ({}, "name"),
        ({"name": "x", "secret": "mine"}, "secret"),
    ):
        error = assert_error(bob.post("/api/me/tokens", json=body), 400)
        assert field in error["fields"], error
        assert field in error["error"]
    assert bob.get("/api/me/tokens").json() == {"tokens": []}
