"""Malformed requests: bad JSON, wrong shapes, oversized bodies."""

from __future__ import annotations

from tests.integration.web.conftest import Web, assert_error


def test_malformed_json_is_400(web: Web) -> None:
    alice = web.member("alice@example.com")
    for content in (b"{not json", b'{"name": "x"', b"\xff\xfe"):
        response = alice.post(
            "/api/orgs", content=content, headers={"Content-Type": "application/json"}
        )
        error = assert_error(response, 400, "malformed_json")
        assert "JSON" in error["error"]
    assert alice.get("/api/orgs").json() == {"orgs": []}


def test_a_body_that_is_not_an_object_is_400(web: Web) -> None:
    alice = web.member("alice@example.com")
    bodies: tuple[object, ...] = ([], "name", 3, None)
    for body in bodies:
        error = assert_error(alice.post("/api/orgs", json=body), 400, "invalid_input")
        assert "body" in error["fields"]
    error = assert_error(alice.post("/api/orgs"), 400)
    assert "body" in error["fields"]


def test_wrong_types_and_unknown_fields_name_the_field(web: Web) -> None:
    web.user("alice@example.com")
    login = web.anon.post("/api/auth/login", json={"email": "alice@example.com", "password": 12})
    error = assert_error(login, 400, "invalid_input")
    assert list(error["fields"]) == ["password"]
    assert error["error"].startswith("password:")
    extra = web.anon.post(
        "/api/auth/login", json={"email": "a@example.com", "password": "x", "remember": True}
    )
    error = assert_error(extra, 400, "invalid_input")
    assert error["fields"] == {"remember": "is not a known field"}
    assert "remember" in error["error"]


def test_an_oversized_body_is_413(web: Web) -> None:
    alice = web.member("alice@example.com")
    limit = web.container.settings().max_request_bytes
    big = b'{"name": "' + b"x" * limit + b'"}'
    response = alice.post("/api/orgs", content=big, headers={"Content-Type": "application/json"})
    error = assert_error(response, 413, "too_large")
    assert "too large" in error["error"]
    anonymous = web.anon.post(
        "/api/auth/login", content=big, headers={"Content-Type": "application/json"}
    )
    assert_error(anonymous, 413, "too_large")
    assert alice.get("/api/orgs").json() == {"orgs": []}
