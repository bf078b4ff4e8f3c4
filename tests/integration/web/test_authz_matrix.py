"""Who may call what: every route of the app, for every kind of caller, against CONTRACT §3.

The routes come from the app's own route table, so a route added without a row in
``MATRIX`` fails :func:`test_every_route_has_a_row`. Each row says what each caller gets;
each cell is one real request on PostgreSQL with a valid body, so an allowed caller
reaches the use case (2xx) and a refused one is stopped by the guard or the role check.

Run with ``-s`` to see the matrix (route, caller → status; ``got≠want`` marks a miss).
"""

from __future__ import annotations

import itertools
import json
import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from litestar import HttpMethod, Litestar
from litestar.routes import HTTPRoute

from tests.factories import browser_keys
from tests.gitlab_fake import FakeGitLab
from tests.integration.web.conftest import PASSWORD, Caller, Web, web_settings
from tests.integration.web.gitlab_helpers import (
    WEBHOOK_SECRET,
    Org,
    configure,
    issue_event,
    issue_url,
    new_org,
)
from viarah.container import new_fernet_key, new_vapid_keypair
from viarah.domain.notifications.model import STATE_CHANGED
from viarah.settings import Settings

ANONYMOUS = "anonymous"
OTHER_ORG = "other-org"  # a member (admin, even) of another organization only
MEMBER = "member"
PM = "pm"
ADMIN = "admin"
READ_TOKEN = "read-token"  # an API token of the admin, read scope
WRITE_TOKEN = "write-token"  # an API token of the admin, write scope
NO_CSRF = "no-csrf"  # the admin's session cookie without the X-CSRF-Token header
ROLES = (ANONYMOUS, OTHER_ORG, MEMBER, PM, ADMIN, READ_TOKEN, WRITE_TOKEN, NO_CSRF)
SESSION_ROLES = (OTHER_ORG, MEMBER, PM, ADMIN)

#: Public by contract, left out of the matrix: probes, the Prometheus scrape target
#: (/metrics: no credentials, kept off the public proxy, see operator-basics.md#metrics),
#: the page and its static files (checked below to answer without credentials). Anything
#: under /schema is the OpenAPI document and its viewers. OPTIONS is litestar's automatic
#: answer (the allowed methods of a route, no data), checked separately not to tell an
#: existing org from an unknown one.
PUBLIC_ROUTES = {
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
    ("GET", "/"),
    ("GET", "/app.js"),
    ("GET", "/app.css"),
    ("GET", "/icon.svg"),
    ("GET", "/service-worker.js"),
}
SCHEMA_PREFIX = "/schema"
UNKNOWN_ORG = "00000000-0000-4000-8000-000000000000"
VAPID = new_vapid_keypair()


# -- what each caller gets --------------------------------------------------------------


@dataclass(frozen=True)
class Access:
    """The status each caller gets. The admin's API tokens and CSRF-less session get
    what the admin gets, except that a read-scope token, and a session without the CSRF
    header, are refused (403) anything but GET."""

    anonymous: int
    other_org: int
    member: int
    pm: int
    admin: int
    read_token: int | None = None
    write_token: int | None = None
    no_csrf: int | None = None

    def expected(self, method: str) -> dict[str, int]:
        read = self.read_token
        if read is None:
            read = self.admin if method == "GET" else 403
        no_csrf = self.no_csrf
        if no_csrf is None:
            no_csrf = self.admin if method == "GET" else 403
        return {
            ANONYMOUS: self.anonymous,
            OTHER_ORG: self.other_org,
            MEMBER: self.member,
            PM: self.pm,
            ADMIN: self.admin,
            READ_TOKEN: read,
            WRITE_TOKEN: self.admin if self.write_token is None else self.write_token,
            NO_CSRF: no_csrf,
        }


def anyone(ok: int) -> Access:
    """No API credentials needed (login; the webhook, which its own token authenticates)."""
    return Access(ok, ok, ok, ok, ok, read_token=ok, write_token=ok, no_csrf=ok)


def any_user(ok: int) -> Access:
    """Any authenticated caller, about their own things."""
    return Access(401, ok, ok, ok, ok)


def session_only(ok: int) -> Access:
    """A login session; API tokens are refused."""
    return Access(401, ok, ok, ok, ok, read_token=403, write_token=403)


def org_member(ok: int) -> Access:
    """Any member of the org; a non-member cannot tell the org exists."""
    return Access(401, 404, ok, ok, ok)


def org_manager(ok: int) -> Access:
    """The org's admins and PMs."""
    return Access(401, 404, 403, ok, ok)


def org_admin(ok: int) -> Access:
    """The org's admins only."""
    return Access(401, 404, 403, 403, ok)


# -- the callers and their world ---------------------------------------------------------


@dataclass
class Call:
    """One request of a cell: path parameters, JSON body, extra headers, and the caller
    to use instead of the role's usual one (a fresh session, for logout)."""

    params: dict[str, str] = field(default_factory=dict)
    json: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    caller: Caller | None = None


@dataclass
class World:
    web: Web
    gitlab: FakeGitLab
    org: Org  # its admin is ADMIN; PM and MEMBER belong to it, OTHER_ORG does not
    elsewhere: Org  # OTHER_ORG's own org, with a project and a task
    callers: dict[str, Caller]
    emails: dict[str, str]  # the user each session role is
    counter: Iterator[int] = field(default_factory=itertools.count)

    def unique(self) -> int:
        return next(self.counter)

    def defaults(self) -> dict[str, str]:
        org = self.org
        return {"org_id": org.org_id, "project_id": org.project_id, "task_id": org.task_id}

    def owner(self, role: str) -> Caller:
        """The session of the user ``role`` acts as (the admin, for tokens and nobody)."""
        return self.callers[role] if role in SESSION_ROLES else self.callers[ADMIN]

    def fresh_session(self, role: str) -> Caller:
        if role not in SESSION_ROLES:
            return self.callers[role]
        caller = self.web.login(self.emails[role])
        caller.user = self.callers[role].user
        return caller

    def fresh_user(self) -> str:
        email = f"user{self.unique()}@example.com"
        self.web.user(email)
        return email

    def fresh_membership(self) -> str:
        admin = self.org.admin
        response = admin.post(
            f"/api/orgs/{self.org.org_id}/memberships",
            json={"email": self.fresh_user(), "role": "member"},
        )
        assert response.status_code == 201, response.text
        return str(response.json()["membership"]["id"])

    def fresh_link(self) -> str:
        response = self.org.admin.post(
            self.org.links(), json={"url": issue_url(self.gitlab, 1000 + self.unique())}
        )
        assert response.status_code == 201, response.text
        return str(response.json()["link"]["id"])

    def fresh_org(self) -> str:
        """Another org like the main one: same admin, PM and member, GitLab set up."""
        admin = self.org.admin
        org_id = self.web.org(admin, f"Org {self.unique()}")
        self.web.add_member(admin, org_id, self.callers[PM], role="pm")
        self.web.add_member(admin, org_id, self.callers[MEMBER])
        configure(Org(admin, org_id, "", ""), self.gitlab)
        return org_id


Builder = Callable[[World, str], Call]


def plain(world: World, role: str) -> Call:
    return Call()


def body(payload: Any) -> Builder:
    return lambda world, role: Call(json=payload)


def login(world: World, role: str) -> Call:
    return Call(json={"email": world.emails[MEMBER], "password": PASSWORD})


def logout(world: World, role: str) -> Call:
    return Call(caller=world.fresh_session(role))


def own_token(world: World, role: str) -> Call:
    response = world.owner(role).post("/api/me/tokens", json={"name": f"t{world.unique()}"})
    assert response.status_code == 201, response.text
    return Call(params={"token_id": response.json()["api_token"]["id"]})


def new_org_body(world: World, role: str) -> Call:
    return Call(json={"name": f"New {world.unique()}"})


def new_member(world: World, role: str) -> Call:
    return Call(json={"email": world.fresh_user(), "role": "member"})


def membership(payload: Any = None) -> Builder:
    return lambda world, role: Call(
        params={"membership_id": world.fresh_membership()}, json=payload
    )


def new_link(world: World, role: str) -> Call:
    return Call(json={"url": issue_url(world.gitlab, world.unique())})


def existing_link(world: World, role: str) -> Call:
    return Call(params={"link_id": world.fresh_link()})


def fresh_org(world: World, role: str) -> Call:
    return Call(params={"org_id": world.fresh_org()})


def integration_patch(world: World, role: str) -> Call:
    return Call(json={"base_url": world.gitlab.base_url})


def subscription_body() -> dict[str, Any]:
    p256dh, auth = browser_keys()
    endpoint = f"https://push.example.net/wpush/{uuid.uuid4().hex}"
    return {"endpoint": endpoint, "expirationTime": None, "keys": {"p256dh": p256dh, "auth": auth}}


def new_subscription(world: World, role: str) -> Call:
    return Call(json=subscription_body())


def own_subscription(world: World, role: str) -> Call:
    response = world.owner(role).post("/api/push/subscriptions", json=subscription_body())
    assert response.status_code == 201, response.text
    return Call(params={"subscription_id": response.json()["subscription"]["id"]})


def webhook(world: World, role: str) -> Call:
    return Call(
        json=issue_event(),
        headers={
            "X-Gitlab-Token": WEBHOOK_SECRET,
            "X-Gitlab-Event": "Issue Hook",
            "Idempotency-Key": f"matrix-{world.unique()}",
        },
    )


@dataclass(frozen=True)
class Row:
    method: str
    route: str  # as litestar lists it, e.g. "/api/orgs/{org_id:str}"
    access: Access
    call: Builder = plain

    @property
    def key(self) -> tuple[str, str]:
        return (self.method, self.route)


ORG = "/api/orgs/{org_id:str}"
MEMBERSHIP = f"{ORG}/memberships/{{membership_id:str}}"
TASK = f"{ORG}/tasks/{{task_id:str}}"
GITLAB = f"{ORG}/integrations/gitlab"
PREFS = {"preferences": [{"event_type": STATE_CHANGED, "enabled": True}]}

MATRIX: list[Row] = [
    Row("POST", "/api/auth/login", anyone(200), login),
    Row("POST", "/api/auth/logout", session_only(204), logout),
    Row("GET", "/api/me", any_user(200)),
    Row("GET", "/api/me/tokens", session_only(200)),
    Row("POST", "/api/me/tokens", session_only(201), body({"name": "ci", "scope": "read"})),
    Row("DELETE", "/api/me/tokens/{token_id:str}", session_only(204), own_token),
    Row("GET", "/api/me/notification-preferences", any_user(200)),
    Row("PUT", "/api/me/notification-preferences", any_user(200), body(PREFS)),
    Row("GET", "/api/push/vapid_public_key", any_user(200)),
    Row("GET", "/api/push/subscriptions", any_user(200)),
    Row("POST", "/api/push/subscriptions", any_user(201), new_subscription),
    Row("DELETE", "/api/push/subscriptions/{subscription_id:str}", any_user(204), own_subscription),
    Row("GET", "/api/orgs", any_user(200)),
    Row("POST", "/api/orgs", any_user(201), new_org_body),
    Row("GET", ORG, org_member(200)),
    Row("GET", f"{ORG}/memberships", org_member(200)),
    Row("POST", f"{ORG}/memberships", org_admin(201), new_member),
    Row("PATCH", MEMBERSHIP, org_admin(200), membership({"role": "pm"})),
    Row("DELETE", MEMBERSHIP, org_admin(204), membership()),
    Row("GET", f"{ORG}/projects", org_member(200)),
    Row("POST", f"{ORG}/projects", org_manager(201), body({"name": "Backend"})),
    Row("GET", f"{ORG}/projects/{{project_id:str}}/tasks", org_member(200)),
    Row("POST", f"{ORG}/projects/{{project_id:str}}/tasks", org_member(201), body({"title": "T"})),
    Row("GET", TASK, org_member(200)),
    Row("PATCH", TASK, org_member(200), body({"title": "Renamed", "status": "in_progress"})),
    Row("PUT", f"{TASK}/watch", org_member(204)),
    Row("DELETE", f"{TASK}/watch", org_member(204)),
    Row("GET", f"{TASK}/gitlab-links", org_member(200)),
    Row("POST", f"{TASK}/gitlab-links", org_member(201), new_link),
    Row("DELETE", f"{TASK}/gitlab-links/{{link_id:str}}", org_member(204), existing_link),
    Row("GET", GITLAB, org_manager(200)),
    Row("PATCH", GITLAB, org_manager(200), integration_patch),
    Row("DELETE", GITLAB, org_manager(204), fresh_org),
    Row("POST", f"{GITLAB}/validate", org_manager(200)),
    Row("GET", f"{GITLAB}/webhook-deliveries", org_manager(200)),
    # Outside the authenticated router: X-Gitlab-Token is the credential, whoever sends it
    # (see test_the_webhook_is_authenticated_by_its_token for the refusals).
    Row("POST", f"{GITLAB}/webhook", anyone(202), webhook),
]


# -- fixtures and helpers ----------------------------------------------------------------


@pytest.fixture
def gitlab() -> Iterator[FakeGitLab]:
    with FakeGitLab() as fake:
        yield fake


@pytest.fixture
def settings(postgres_url: str) -> Settings:
    """Everything configured: encryption key, loopback fake GitLab allowed, Web Push."""
    return web_settings(
        postgres_url,
        VIA_RAH_ENCRYPTION_KEY=new_fernet_key(),
        VIA_RAH_OUTBOUND_ALLOWLIST="127.0.0.1",
        WEBPUSH_VAPID_PUBLIC_KEY=VAPID.public_key,
        WEBPUSH_VAPID_PRIVATE_KEY=VAPID.private_key,
        WEBPUSH_VAPID_SUBJECT="mailto:ops@example.com",
    )


@pytest.fixture
def world(web: Web, gitlab: FakeGitLab) -> World:
    org = new_org(web, "admin@example.com")
    configure(org, gitlab)
    elsewhere = new_org(web, "outsider@example.com")
    configure(elsewhere, gitlab)
    outsider = elsewhere.admin
    pm = web.member("pm@example.com")
    member = web.member("member@example.com")
    web.add_member(org.admin, org.org_id, pm, role="pm")
    web.add_member(org.admin, org.org_id, member)
    callers = {
        ANONYMOUS: web.anon,
        OTHER_ORG: outsider,
        MEMBER: member,
        PM: pm,
        ADMIN: org.admin,
        READ_TOKEN: web.bearer(org.admin, scope="read"),
        WRITE_TOKEN: web.bearer(org.admin, scope="write"),
        NO_CSRF: Caller(
            web.client,
            headers={"Cookie": f"viarah_session={org.admin.session_cookie}"},
            user=org.admin.user,
        ),
    }
    emails = {role: callers[role].user.email for role in SESSION_ROLES}  # type: ignore[union-attr]
    return World(web, gitlab, org, elsewhere, callers, emails)


def app_routes(app: Litestar) -> set[tuple[str, str]]:
    """(method, path) of every route handler, OPTIONS (litestar's own) left out."""
    found: set[tuple[str, str]] = set()
    for route in app.routes:
        if not isinstance(route, HTTPRoute):
            continue
        for handler in route.route_handlers:
            for method in handler.http_methods:
                if method != "OPTIONS":
                    found.add((HttpMethod(method).value, route.path))
    return found


def matrix_routes(app: Litestar) -> set[tuple[str, str]]:
    return {
        (method, path)
        for method, path in app_routes(app)
        if (method, path) not in PUBLIC_ROUTES and not path.startswith(SCHEMA_PREFIX)
    }


_PARAM = re.compile(r"\{(\w+)(?::\w+)?\}")


def render(route: str, params: dict[str, str]) -> str:
    return _PARAM.sub(lambda match: params[match.group(1)], route)


def send(caller: Caller, method: str, path: str, call: Call) -> httpx.Response:
    if call.json is None:
        return caller.request(method, path, headers=call.headers)
    content = json.dumps(call.json).encode()
    headers = {"Content-Type": "application/json", **call.headers}
    return caller.request(method, path, content=content, headers=headers)


def envelope_problem(response: httpx.Response) -> str | None:
    """Why an error response is not the contract's JSON error envelope (None if it is)."""
    try:
        payload = response.json()
    except ValueError:
        return "not JSON"
    if not isinstance(payload, dict) or not isinstance(payload.get("error"), str):
        return f"no 'error' sentence: {payload!r}"
    if not set(payload) <= {"error", "code", "fields"} or "Traceback" in response.text:
        return f"unexpected content: {payload!r}"
    return None


def print_matrix(rows: list[Row], got: dict[tuple[str, str], dict[str, str]]) -> None:
    width = max(len(f"{row.method} {row.route}") for row in rows)
    print()
    print(f"{'route':<{width}} | " + " | ".join(f"{role:>11}" for role in ROLES))
    print("-" * width + "-+-" + "-+-".join("-" * 11 for _ in ROLES))
    for row in rows:
        cells = got[row.key]
        label = f"{row.method} {row.route}"
        print(f"{label:<{width}} | " + " | ".join(f"{cells[role]:>11}" for role in ROLES))


# -- the tests ---------------------------------------------------------------------------


def test_every_route_has_a_row(web: Web) -> None:
    app = web.client.app
    rows = [row.key for row in MATRIX]
    assert len(rows) == len(set(rows)), "a route has two rows"
    routes = matrix_routes(app)
    missing = sorted(routes - set(rows))
    assert not missing, f"routes without a row in MATRIX (say who may call them): {missing}"
    stale = sorted(set(rows) - routes)
    assert not stale, f"rows for routes the app does not have: {stale}"
    exempt = sorted(PUBLIC_ROUTES - app_routes(app))
    assert not exempt, f"exempted public routes the app does not have: {exempt}"


def test_the_authorization_matrix(world: World) -> None:
    got: dict[tuple[str, str], dict[str, str]] = {}
    misses: list[str] = []
    for row in MATRIX:
        expected = row.access.expected(row.method)
        cells: dict[str, str] = {}
        for role in ROLES:
            call = row.call(world, role)
            params = {**world.defaults(), **call.params}
            caller = call.caller or world.callers[role]
            response = send(caller, row.method, render(row.route, params), call)
            status, want = response.status_code, expected[role]
            cells[role] = str(status) if status == want else f"{status}≠{want}"
            where = f"{row.method} {row.route} as {role}"
            if status != want:
                misses.append(f"{where}: {status} (want {want}) {response.text[:200]}")
            elif status >= 400 and (problem := envelope_problem(response)):
                misses.append(f"{where}: {problem}")
            if role == OTHER_ORG and want == 404:
                # A non-member must not learn that the org exists: the answer is the
                # same as for an org that does not exist.
                unknown = render(row.route, {**params, "org_id": UNKNOWN_ORG})
                same = send(caller, row.method, unknown, call)
                if (same.status_code, same.content) != (status, response.content):
                    misses.append(
                        f"{where}: {status} {response.text[:120]} but for an unknown org "
                        f"{same.status_code} {same.text[:120]}"
                    )
        got[row.key] = cells
    print_matrix(MATRIX, got)
    assert not misses, "\n".join(misses)


def test_the_webhook_is_authenticated_by_its_token(world: World) -> None:
    """Anyone with the org's webhook secret may deliver; the route never asks for a
    session or an API token, and a session or token does not replace the secret."""
    web, org = world.web, world.org
    unconfigured = new_org(web, "carol@example.com")
    wrong = "wrong-secret-0123456789"
    cases: list[tuple[str, str, str | None, str, int]] = [
        # (case, org, X-Gitlab-Token, sent by, status)
        ("right token", org.org_id, WEBHOOK_SECRET, ANONYMOUS, 202),
        ("right token, read-scope bearer too", org.org_id, WEBHOOK_SECRET, READ_TOKEN, 202),
        ("wrong token", org.org_id, wrong, ANONYMOUS, 403),
        ("wrong token, admin session", org.org_id, wrong, ADMIN, 403),
        ("wrong token, write-scope bearer", org.org_id, wrong, WRITE_TOKEN, 403),
        ("no token", org.org_id, None, ANONYMOUS, 403),
        ("no webhook secret configured", unconfigured.org_id, WEBHOOK_SECRET, ANONYMOUS, 404),
        ("unknown org", UNKNOWN_ORG, WEBHOOK_SECRET, ANONYMOUS, 404),
    ]
    print()
    misses = []
    for label, org_id, token, who, want in cases:
        caller = world.callers[who]
        headers = {"X-Gitlab-Event": "Issue Hook", "Idempotency-Key": f"k-{world.unique()}"}
        if token is not None:
            headers["X-Gitlab-Token"] = token
        path = f"/api/orgs/{org_id}/integrations/gitlab/webhook"
        response = send(caller, "POST", path, Call(json=issue_event(), headers=headers))
        print(f"webhook, {label:<36} → {response.status_code}")
        if response.status_code != want:
            misses.append(f"{label}: {response.status_code} (want {want}) {response.text}")
    assert not misses, "\n".join(misses)


def test_public_routes_need_no_credentials_and_options_reveal_nothing(world: World) -> None:
    web = world.web
    for method, path in sorted(PUBLIC_ROUTES):
        response = web.anon.request(method, path)
        assert response.status_code not in (401, 403), (method, path, response.text)
    for row in MATRIX:
        if not row.route.startswith(ORG):
            continue
        params = {**world.defaults(), "membership_id": "x", "link_id": "x"}
        real = web.anon.request("OPTIONS", render(row.route, params))
        unknown = web.anon.request("OPTIONS", render(row.route, {**params, "org_id": UNKNOWN_ORG}))
        assert real.status_code < 300, (row.route, real.status_code)
        assert real.content == b"", (row.route, real.text)
        assert (real.status_code, real.content) == (unknown.status_code, unknown.content)


def test_objects_of_another_org_or_user_are_out_of_reach(world: World) -> None:
    """The other org's admin names OUR objects through THEIR org (or, for personal
    things, from their own account): every such request is 404, and nothing changes."""
    org, theirs = world.org, world.elsewhere
    outsider, admin = world.callers[OTHER_ORG], world.callers[ADMIN]
    task_path = f"/api/orgs/{org.org_id}/tasks/{org.task_id}"
    members_path = f"/api/orgs/{org.org_id}/memberships"
    members = admin.get(members_path).json()["memberships"]
    ours = {
        "org_id": theirs.org_id,
        "project_id": org.project_id,
        "task_id": org.task_id,
        "membership_id": next(m["id"] for m in members if m["role"] == "member"),
        "link_id": world.fresh_link(),
        "token_id": own_token(world, ADMIN).params["token_id"],
        "subscription_id": own_subscription(world, ADMIN).params["subscription_id"],
    }
    task_before = admin.get(task_path).json()
    attempts = [
        (row, params)
        for row in MATRIX
        if set(_PARAM.findall(row.route)) - {"org_id"}
        # A link of ours is also tried under a task of theirs.
        for params in (
            [ours, {**ours, "task_id": theirs.task_id}] if "{link_id" in row.route else [ours]
        )
    ]
    misses = []
    for row, params in attempts:
        call = row.call(world, OTHER_ORG)  # for the body; its path parameters are replaced
        path = render(row.route, params)
        response = send(outsider, row.method, path, Call(json=call.json, headers=call.headers))
        print(f"{row.method} {path} as the other org's admin → {response.status_code}")
        if response.status_code != 404:
            misses.append(f"{row.method} {path}: {response.status_code} {response.text[:200]}")
    assert len(attempts) == 14, [f"{row.method} {row.route}" for row, _ in attempts]
    assert not misses, "\n".join(misses)

    assert admin.get(task_path).json() == task_before
    links = admin.get(org.links()).json()["links"]
    assert ours["link_id"] in {link["id"] for link in links}
    roles = {m["id"]: m["role"] for m in admin.get(members_path).json()["memberships"]}
    assert roles[ours["membership_id"]] == "member"
    tokens = {t["id"]: t for t in admin.get("/api/me/tokens").json()["tokens"]}
    assert tokens[ours["token_id"]]["revoked_at"] is None
    subscriptions = admin.get("/api/push/subscriptions").json()["subscriptions"]
    assert ours["subscription_id"] in {sub["id"] for sub in subscriptions}
