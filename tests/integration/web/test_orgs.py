"""Organizations and memberships: shapes, roles, the last admin, visibility."""

from __future__ import annotations

from tests.integration.web.conftest import Web, assert_error

UNKNOWN_ID = "00000000-0000-4000-8000-000000000000"


def test_create_list_and_get_orgs(web: Web) -> None:
    alice = web.member("alice@example.com")
    created = alice.post(
        "/api/orgs", json={"name": "  Acme  ", "logo_url": "https://cdn.example.com/a.png"}
    )
    assert created.status_code == 201, created.text
    org = created.json()["org"]
    assert set(org) == {"id", "name", "logo_url", "created_at", "role"}
    assert org["name"] == "Acme"
    assert org["role"] == "admin"
    assert org["logo_url"] == "https://cdn.example.com/a.png"
    assert org["created_at"].endswith("Z")
    second = alice.post("/api/orgs", json={"name": "Beta"}).json()["org"]
    assert second["logo_url"] is None

    listing = alice.get("/api/orgs")
    assert listing.status_code == 200
    assert [o["id"] for o in listing.json()["orgs"]] == [org["id"], second["id"]]
    assert alice.get(f"/api/orgs/{org['id']}").json() == {"org": org}


def test_invalid_org_input_is_400_naming_the_field(web: Web) -> None:
    alice = web.member("alice@example.com")
    cases: tuple[tuple[dict[str, object], str], ...] = (
        ({"name": ""}, "name"),
        ({"name": 42}, "name"),
        ({"name": "X", "logo_url": "ftp://x"}, "logo_url"),
        ({"name": "X", "owner": "me"}, "owner"),
        ({}, "name"),
    )
    for body, field in cases:
        error = assert_error(alice.post("/api/orgs", json=body), 400)
        assert field in error["fields"], error
    assert alice.get("/api/orgs").json() == {"orgs": []}


def test_memberships_add_list_change_and_remove(web: Web) -> None:
    alice = web.member("alice@example.com", display_name="Alice")
    bob = web.member("bob@example.com", display_name="Bob")
    org_id = web.org(alice)

    added = alice.post(
        f"/api/orgs/{org_id}/memberships", json={"email": "BOB@example.com", "role": "pm"}
    )
    assert added.status_code == 201, added.text
    membership = added.json()["membership"]
    assert set(membership) == {"id", "user", "role", "created_at"}
    assert membership["user"] == {
        "id": bob.user_id,
        "email": "bob@example.com",
        "display_name": "Bob",
    }
    assert membership["role"] == "pm"

    listing = bob.get(f"/api/orgs/{org_id}/memberships")
    assert listing.status_code == 200
    members = {m["user"]["email"]: m for m in listing.json()["memberships"]}
    assert set(members) == {"alice@example.com", "bob@example.com"}
    assert members["alice@example.com"]["role"] == "admin"

    patched = alice.patch(
        f"/api/orgs/{org_id}/memberships/{membership['id']}", json={"role": "admin"}
    )
    assert patched.status_code == 200
    assert patched.json()["membership"]["role"] == "admin"
    assert bob.get("/api/me").json()["memberships"][0]["role"] == "admin"

    removed = alice.delete(f"/api/orgs/{org_id}/memberships/{membership['id']}")
    assert removed.status_code == 204
    assert_error(bob.get(f"/api/orgs/{org_id}"), 404, "not_found")


def test_membership_conflicts_and_bad_input(web: Web) -> None:
    alice = web.member("alice@example.com")
    bob = web.member("bob@example.com")
    org_id = web.org(alice)
    path = f"/api/orgs/{org_id}/memberships"
    web.add_member(alice, org_id, bob)

    duplicate = alice.post(path, json={"email": "bob@example.com", "role": "pm"})
    assert_error(duplicate, 409, "conflict")
    error = assert_error(alice.post(path, json={"email": "bob@example.com", "role": "owner"}), 400)
    assert "role" in error["fields"]
    error = assert_error(alice.post(path, json={"email": "ghost@example.com", "role": "pm"}), 400)
    assert "email" in error["fields"]
    error = assert_error(alice.post(path, json={"email": "bob@example.com"}), 400)
    assert error["fields"] == {"role": "is required"}

    own_id = next(
        m["id"]
        for m in alice.get(path).json()["memberships"]
        if m["user"]["email"] == "alice@example.com"
    )
    error = assert_error(alice.patch(f"{path}/{own_id}", json={"role": "member"}), 409)
    assert "last admin" in error["error"]
    assert_error(alice.delete(f"{path}/{own_id}"), 409, "conflict")
    error = assert_error(alice.patch(f"{path}/{own_id}", json={"role": "boss"}), 400)
    assert "role" in error["fields"]
    assert_error(alice.patch(f"{path}/{UNKNOWN_ID}", json={"role": "pm"}), 404)
    assert_error(alice.delete(f"{path}/not-a-uuid"), 404)


def test_only_admins_change_memberships(web: Web) -> None:
    alice = web.member("alice@example.com")
    pm = web.member("pm@example.com")
    carol = web.member("carol@example.com")
    org_id = web.org(alice)
    path = f"/api/orgs/{org_id}/memberships"
    pm_membership = web.add_member(alice, org_id, pm, role="pm")
    alice_membership = next(
        m["id"] for m in alice.get(path).json()["memberships"] if m["role"] == "admin"
    )

    assert pm.get(path).status_code == 200
    for response in (
        pm.post(path, json={"email": "carol@example.com", "role": "member"}),
        pm.patch(f"{path}/{pm_membership}", json={"role": "admin"}),
        pm.patch(f"{path}/{alice_membership}", json={"role": "member"}),
        pm.delete(f"{path}/{alice_membership}"),
    ):
        assert_error(response, 403, "forbidden")
    roles = {m["user"]["email"]: m["role"] for m in alice.get(path).json()["memberships"]}
    assert roles == {"alice@example.com": "admin", "pm@example.com": "pm"}
    assert_error(carol.get(path), 404)


def test_a_membership_of_another_org_is_404(web: Web) -> None:
    alice = web.member("alice@example.com")
    bob = web.member("bob@example.com")
    acme = web.org(alice, "Acme")
    beta = web.org(bob, "Beta")
    web.add_member(bob, beta, alice, role="admin")
    bob_in_beta = next(
        m["id"]
        for m in bob.get(f"/api/orgs/{beta}/memberships").json()["memberships"]
        if m["user"]["email"] == "bob@example.com"
    )
    response = alice.patch(f"/api/orgs/{acme}/memberships/{bob_in_beta}", json={"role": "pm"})
    assert_error(response, 404, "not_found")
    assert_error(alice.delete(f"/api/orgs/{acme}/memberships/{bob_in_beta}"), 404)


def test_non_members_get_404_on_every_org_route(web: Web) -> None:
    alice = web.member("alice@example.com")
    org_id = web.org(alice)
    project_id = web.project(alice, org_id)
    task_id = web.task(alice, org_id, project_id)["id"]
    membership_id = alice.get(f"/api/orgs/{org_id}/memberships").json()["memberships"][0]["id"]

    outsider_session = web.member("mallory@example.com")
    outsider_token = web.bearer(outsider_session)
    routes = [
        ("GET", f"/api/orgs/{org_id}", None),
        ("GET", f"/api/orgs/{org_id}/memberships", None),
        (
            "POST",
            f"/api/orgs/{org_id}/memberships",
            {"email": "mallory@example.com", "role": "admin"},
        ),
        ("PATCH", f"/api/orgs/{org_id}/memberships/{membership_id}", {"role": "member"}),
        ("DELETE", f"/api/orgs/{org_id}/memberships/{membership_id}", None),
        ("GET", f"/api/orgs/{org_id}/projects", None),
        ("POST", f"/api/orgs/{org_id}/projects", {"name": "Mine"}),
        ("GET", f"/api/orgs/{org_id}/projects/{project_id}/tasks", None),
        ("POST", f"/api/orgs/{org_id}/projects/{project_id}/tasks", {"title": "x"}),
        ("GET", f"/api/orgs/{org_id}/tasks/{task_id}", None),
        ("PATCH", f"/api/orgs/{org_id}/tasks/{task_id}", {"title": "pwned"}),
        ("PUT", f"/api/orgs/{org_id}/tasks/{task_id}/watch", None),
        ("DELETE", f"/api/orgs/{org_id}/tasks/{task_id}/watch", None),
    ]
    for caller in (outsider_session, outsider_token):
        for method, path, body in routes:
            response = caller.request(method, path, json=body)
            error = assert_error(response, 404, "not_found")
            assert error["error"] == "organization not found", (method, path)
    for method, path, body in routes[:2]:
        assert_error(
            outsider_token.request(method, path.replace(org_id, UNKNOWN_ID), json=body), 404
        )

    assert alice.get(f"/api/orgs/{org_id}/tasks/{task_id}").json()["task"]["title"] == "Ship it"
    assert len(alice.get(f"/api/orgs/{org_id}/memberships").json()["memberships"]) == 1
