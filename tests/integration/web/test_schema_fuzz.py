"""No input makes the API answer 5xx: hostile values in every field, then schemathesis.

All tests here share one app and one PostgreSQL database (``live``), seeded with an org,
a member, a project, a task with a GitLab link, a push subscription and a spare API
token. The caller is the org's admin with a write-scope API token; the session-only
``/api/me/tokens`` routes get the admin's session cookie and CSRF header instead, so
their inputs are exercised too.

1. ``test_hostile_values``: for every operation with a body, a valid body (``VALID``) is
   sent, then the same body with ONE string or integer made hostile (``hostile``): a
   NUL character, a lone surrogate, a header injection, over-long strings, integers
   beyond 32/64 bits; and every path parameter made hostile. Deterministic: every field,
   every value, every run.
2. The webhook's raw body (GitLab's payloads, not in the document): a table of hostile
   payloads, then Hypothesis.
3. ``test_no_operation_answers_5xx``: schemathesis generates cases from the OpenAPI
   document the app serves (``/schema/openapi.json``): valid and invalid inputs,
   boundary values (its coverage phase) and random ones, at most ``MAX_EXAMPLES`` per
   operation and phase, derandomized. The document has no enums or formats (roles,
   scopes, URLs, e-mails are plain strings), so a body is also sent with its fields set
   to valid values (``KNOWN``), or valid but one field as generated: that way the use
   cases and the database are reached, not only the validators. Path parameters are
   generated or the ids of the seeded objects. NUL characters are left to (1), which
   covers them in every field deterministically (a known NUL bug would otherwise make
   this test fail on some code versions and not others: derandomized Hypothesis seeds
   from the test's code). The tests run in file order: (1) and (2) see the seeded
   objects before (3) changes them.

Checks in (3) (``CHECKS``): no 5xx; every status is one the document lists; a documented
response body matches its schema. schemathesis' other checks flag deliberate choices
(unknown query parameters are ignored, not refused; bad input is 400, not 422).

A 5xx found later goes into ``KNOWN_BUGS`` as a strict xfail, so its fix shows up as XPASS.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import hypothesis.strategies as st
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from litestar import Litestar
from litestar.testing import TestClient
from schemathesis.checks import not_a_server_error
from schemathesis.python import asgi
from schemathesis.specs.openapi.checks import (
    response_schema_conformance,
    status_code_conformance,
)

from tests.conftest import _admin_execute, _pg_url, base_env
from tests.factories import browser_keys
from tests.gitlab_fake import DEFAULT_TOKEN, FakeGitLab
from tests.integration.web.conftest import (
    BASE_URL,
    PASSWORD,
    ShiftedClock,
    Web,
    web_container,
)
from tests.integration.web.gitlab_helpers import (
    PROJECT,
    WEBHOOK_SECRET,
    configure,
    issue_event,
    issue_url,
    new_org,
)
from viarah.container import build_container, new_fernet_key, new_vapid_keypair
from viarah.domain.notifications.model import STATE_CHANGED
from viarah.entrypoints.web.app import create_app
from viarah.settings import Settings, load_settings

MAX_EXAMPLES = 15
CHECKS = [not_a_server_error, status_code_conformance, response_schema_conformance]
#: Routes only a login session may call (an API token gets 403 there).
SESSION_ONLY = {"/api/me/tokens", "/api/me/tokens/{token_id}"}
#: Placeholders, replaced by the live app's values when a request is sent.
SEEDED = "seeded-object-id"  # a path parameter: the seeded object of its kind
GITLAB_URL = "@gitlab@"
MEMBER_ID = "@member@"
FREE_EMAIL = "free@example.com"  # a user who belongs to no org
P256DH, AUTH = browser_keys()
VAPID = new_vapid_keypair()

#: A valid value for each body field, by name (the first one is used in ``VALID``).
KNOWN: dict[str, list[Any]] = {
    "email": [FREE_EMAIL, "admin@example.com"],
    "password": [PASSWORD],
    "name": ["Fuzzed name"],
    "logo_url": ["https://logo.example.net/logo.png"],
    "role": ["member", "pm", "admin"],
    "scope": ["read", "write"],
    "expires_days": [30],
    "title": ["Fuzzed title"],
    "status": ["todo", "in_progress", "blocked", "done"],
    "assignee_user_id": [MEMBER_ID],
    "base_url": [GITLAB_URL],
    "token": [DEFAULT_TOKEN],
    "webhook_secret": [WEBHOOK_SECRET],
    "signing_token": ["fuzz-signing-token-0123456789"],
    "url": [f"{GITLAB_URL}/{PROJECT}/-/issues/7"],
    "endpoint": ["https://push.example.net/wpush/fuzzed"],
    "p256dh": [P256DH],
    "auth": [AUTH],
    "user_agent": ["Fuzzer/1.0"],
    "event_type": [STATE_CHANGED],
    "channel": ["push"],
}


def valid(*fields: str, **extra: Any) -> dict[str, Any]:
    return {**{name: KNOWN[name][0] for name in fields}, **extra}


#: A body each operation accepts (409 allowed: e.g. adding the same member twice).
VALID: dict[str, Any] = {
    "POST /api/auth/login": valid("email", "password"),
    "POST /api/me/tokens": valid("name", "scope", "expires_days"),
    "POST /api/orgs": valid("name", "logo_url"),
    "POST /api/orgs/{org_id}/memberships": valid("email", "role"),
    "PATCH /api/orgs/{org_id}/memberships/{membership_id}": valid("role"),
    "POST /api/orgs/{org_id}/projects": valid("name"),
    "POST /api/orgs/{org_id}/projects/{project_id}/tasks": valid(
        "title", "status", "assignee_user_id"
    ),
    "PATCH /api/orgs/{org_id}/tasks/{task_id}": valid("title", "status", "assignee_user_id"),
    "PATCH /api/orgs/{org_id}/integrations/gitlab": valid(
        "base_url", "token", "webhook_secret", "signing_token"
    ),
    "POST /api/orgs/{org_id}/tasks/{task_id}/gitlab-links": valid("url"),
    "POST /api/push/subscriptions": {
        "subscription": valid("endpoint", keys=valid("p256dh", "auth"), expirationTime=None),
        "user_agent": KNOWN["user_agent"][0],
    },
    "PUT /api/me/notification-preferences": {
        "preferences": [valid("event_type", "channel", enabled=False)]
    },
}
HOSTILE_INTEGERS = (0, -1, 2**31, -(2**31) - 1, 2**63, 10**30)
HOSTILE_PATH_PARAMETERS = ("\x00", "a" * 3000, "..", "%", "00000000-0000-4000-8000-000000000000")


def hostile(good: Any) -> list[Any]:
    """A valid value made hostile: what a database, a parser or a header may choke on."""
    if isinstance(good, bool) or good is None:
        return []
    if isinstance(good, int):
        return list(HOSTILE_INTEGERS)
    return [
        good + "\x00",
        "\ud800" + good,  # a lone surrogate: not encodable as UTF-8
        good + "\r\nX-Injected: 1",
        good + "x" * 600,
        good + "/" + "a" * 5000,
        # a long path segment inside an otherwise valid URL (links: project path)
        good.replace(PROJECT, "g/" * 300 + "p") if PROJECT in good else good + "é" * 300,
    ]


#: Operations with a known 5xx: strict xfails, so the fix shows up as XPASS.
KNOWN_BUGS: dict[str, str] = {}


def fuzz_env(database_url: str) -> dict[str, str]:
    return base_env(
        DATABASE_URL=database_url,
        ALLOWED_HOSTS=f"{asgi.HOST},testserver.local",
        VIA_RAH_ENCRYPTION_KEY=new_fernet_key(),
        VIA_RAH_OUTBOUND_ALLOWLIST="127.0.0.1",
        WEBPUSH_VAPID_PUBLIC_KEY=VAPID.public_key,
        WEBPUSH_VAPID_PRIVATE_KEY=VAPID.private_key,
        WEBPUSH_VAPID_SUBJECT="mailto:ops@example.com",
    )


def _document_app() -> Litestar:
    """An app whose only use is its OpenAPI document (litestar renders it from the
    route table; no database is touched). Each test's requests go to the live app."""
    settings = load_settings(fuzz_env("postgresql://nobody@127.0.0.1:1/none")).require_valid()
    return create_app(build_container(settings))


DOCUMENT_APP = _document_app()
DOCUMENT = DOCUMENT_APP.openapi_schema.to_schema()
OPERATIONS = {
    f"{method.upper()} {path}": operation
    for path, methods in DOCUMENT["paths"].items()
    for method, operation in methods.items()
    if method != "parameters"
}


# -- the live app ----------------------------------------------------------------------


@dataclass(frozen=True)
class Live:
    """The app under test, the seeded objects' ids and the admin's credentials."""

    app: Litestar
    gitlab_url: str
    ids: dict[str, str]
    bearer: dict[str, str]
    session: dict[str, str]

    def headers_for(self, path: str) -> dict[str, str]:
        return self.session if path in SESSION_ONLY else self.bearer

    def fill(self, value: Any) -> Any:
        """``value`` with the placeholders replaced by this app's values."""
        if isinstance(value, dict):
            return {key: self.fill(item) for key, item in value.items()}
        if isinstance(value, list):
            return [self.fill(item) for item in value]
        if isinstance(value, str):
            return value.replace(GITLAB_URL, self.gitlab_url).replace(MEMBER_ID, self.ids["user"])
        return value

    def send(self, method: str, path: str, **kwargs: Any) -> Any:
        """One request to the live app, in schemathesis' event loop."""
        with asgi.get_client(self.app) as client:  # type: ignore[arg-type]
            return client.request(method, path, **kwargs)

    def configure_gitlab(self) -> None:
        """(Re)set the integration, as a previous operation may have removed it."""
        response = self.send(
            "PATCH",
            f"/api/orgs/{self.ids['org_id']}/integrations/gitlab",
            json={
                "base_url": self.gitlab_url,
                "token": DEFAULT_TOKEN,
                "webhook_secret": WEBHOOK_SECRET,
                "signing_token": None,
            },
            headers=self.bearer,
        )
        assert response.status_code == 200, response.text


def seed(settings: Settings, gitlab: FakeGitLab) -> Live:
    """Test data made through the API of a first app (in its own event loop)."""
    clock = ShiftedClock()
    container = web_container(settings, clock)
    with TestClient(create_app(container), base_url=BASE_URL) as client:
        web = Web(client, container, clock)
        org = new_org(web, "admin@example.com")
        configure(org, gitlab)
        member = web.member("member@example.com")
        membership_id = web.add_member(org.admin, org.org_id, member)
        web.user(FREE_EMAIL)
        link = org.admin.post(org.links(), json={"url": issue_url(gitlab)}).json()["link"]
        subscription = org.admin.post(
            "/api/push/subscriptions",
            json={
                "endpoint": "https://push.example.net/wpush/seeded",
                "keys": {"p256dh": P256DH, "auth": AUTH},
            },
        ).json()["subscription"]
        spare = org.admin.post("/api/me/tokens", json={"name": "spare"}).json()["api_token"]
        writer = web.bearer(org.admin, scope="write")
    return Live(
        app=create_app(web_container(settings)),
        gitlab_url=gitlab.base_url,
        ids={
            "org_id": org.org_id,
            "project_id": org.project_id,
            "task_id": org.task_id,
            "membership_id": membership_id,
            "link_id": link["id"],
            "subscription_id": subscription["id"],
            "token_id": spare["id"],
            "user": member.user_id,
        },
        bearer={**writer.headers, "X-Gitlab-Token": WEBHOOK_SECRET},
        session=dict(org.admin.headers),
    )


@pytest.fixture(scope="module")
def module_postgres_url(postgres_template: str) -> Iterator[str]:
    """A fresh, migrated PostgreSQL database for this module (dropped afterwards)."""
    name = f"viarah_f_{uuid.uuid4().hex[:12]}"
    _admin_execute(f'CREATE DATABASE "{name}" TEMPLATE "{postgres_template}"')
    yield _pg_url(name)
    _admin_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module")
def live(module_postgres_url: str) -> Iterator[Live]:
    app_settings = load_settings(fuzz_env(module_postgres_url)).require_valid()
    with FakeGitLab() as gitlab:
        seeded = seed(app_settings, gitlab)
        try:
            yield seeded
        finally:
            # schemathesis runs the app's lifespan in its own event loop; ending it runs
            # the app's shutdown there, which closes the container (engine, HTTP pools).
            asgi.shutdown_lifespans()


@pytest.fixture
def app(live: Live) -> Live:
    """The live app, with the GitLab integration set up again (once per test)."""
    live.configure_gitlab()
    return live


def test_the_document_is_the_served_one_and_every_body_has_a_valid_example(live: Live) -> None:
    served = live.send("GET", "/schema/openapi.json")
    assert served.status_code == 200
    assert served.json() == DOCUMENT
    with_body = {label for label, operation in OPERATIONS.items() if "requestBody" in operation}
    # The webhook's body is GitLab's, not in the document (see its tests below).
    assert with_body == set(VALID), "VALID needs a body for each operation that takes one"
    assert set(KNOWN_BUGS) <= set(OPERATIONS)


# -- 1. hostile values in every field --------------------------------------------------


def _leaves(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], Any]]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _leaves(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _leaves(item, (*path, index))
    else:
        yield path, value


def _replaced(value: Any, path: tuple[Any, ...], new: Any) -> Any:
    if not path:
        return new
    head, rest = path[0], path[1:]
    if isinstance(value, dict):
        return {**value, head: _replaced(value[head], rest, new)}
    return [_replaced(item, rest, new) if i == head else item for i, item in enumerate(value)]


def _path_parameters(label: str) -> list[str]:
    return [part[1:-1] for part in label.split("/") if part.startswith("{")]


def _label_params(label: str) -> Any:
    reason = KNOWN_BUGS.get(label)
    marks = [pytest.mark.xfail(reason=reason, strict=True)] if reason else []
    return pytest.param(label, marks=marks, id=label)


@pytest.mark.parametrize(
    "label",
    [
        _label_params(label)
        for label in OPERATIONS
        if (label in VALID or _path_parameters(label)) and not label.endswith("/webhook")
    ],
)
def test_hostile_values(app: Live, label: str) -> None:
    method, template = label.split(" ", 1)
    names = _path_parameters(label)
    headers = {**app.headers_for(template), "Content-Type": "application/json"}

    def send(params: dict[str, str], body: Any) -> Any:
        path = template
        for name in names:
            path = path.replace(f"{{{name}}}", quote(params[name], safe=""))
        content = None if body is None else json.dumps(body).encode()
        return app.send(method, path, data=content, headers=headers)

    good_params = {name: app.ids[name] for name in names}
    good_body = app.fill(VALID.get(label))
    # A valid DELETE would remove a seeded object that later tests use.
    cases: list[tuple[str, dict[str, str], Any]] = (
        [] if method == "DELETE" else [("valid", good_params, good_body)]
    )
    for path, value in _leaves(good_body):
        for bad in hostile(value):
            where = ".".join(map(str, path))
            cases.append((f"{where}={bad!r:.40}", good_params, _replaced(good_body, path, bad)))
    for name in names:
        for bad in HOSTILE_PATH_PARAMETERS:
            cases.append((f"{{{name}}}={bad!r:.40}", {**good_params, name: bad}, good_body))

    server_errors = []
    for case, params, body in cases:
        response = send(params, body)
        if case == "valid":
            assert response.status_code < 400 or response.status_code == 409, response.text
        if response.status_code >= 500:
            server_errors.append(f"{label} with {case}: {response.status_code} {response.text}")
    assert not server_errors, "\n".join(server_errors)


# -- 2. the webhook's raw body ---------------------------------------------------------


def _event(**attributes: Any) -> dict[str, Any]:
    event = issue_event()
    path = attributes.pop("path", PROJECT)
    event["project"]["path_with_namespace"] = path
    event["object_attributes"].update(attributes)
    return event


WEBHOOK_CASES = [
    pytest.param(_event(), id="a valid issue event"),
    pytest.param(_event(iid=2**31 - 1), id="iid 2**31-1"),
    pytest.param(
        _event(iid=10**30),
        id="iid 10**30",
    ),
    pytest.param(
        _event(iid=2**31),
        id="iid 2**31",
    ),
    pytest.param(
        _event(path="g/\x00p"),
        id="NUL in path",
    ),
    pytest.param(
        _event(action="clo\x00se"),
        id="NUL in action",
    ),
    pytest.param(
        _event(path="g/\ud800"),
        id="lone surrogate in path",
    ),
    pytest.param(_event(path="g/" * 300 + "p"), id="path over 500 characters"),
    pytest.param(_event(action="x" * 5000), id="long action"),
    pytest.param({"\x00": ["\ud800"]}, id="NUL key, surrogate value"),
    pytest.param([1, 2, 3], id="a JSON array"),
]


@pytest.mark.parametrize("payload", WEBHOOK_CASES)
def test_the_webhook_stores_any_json(app: Live, payload: Any) -> None:
    """GitLab disables a hook that keeps failing: any JSON with the right token is
    stored and answered 202 (what it is not about is stored as ignored)."""
    response = _hook(app, json.dumps(payload).encode(), "Issue Hook", str(uuid.uuid4()))
    assert response.status_code == 202, response.text


def _hook(live: Live, body: bytes, event: str, key: str) -> Any:
    headers = {
        "X-Gitlab-Token": WEBHOOK_SECRET,
        "X-Gitlab-Event": event,
        "Content-Type": "application/json",
    }
    if key:
        headers["Idempotency-Key"] = key
    path = f"/api/orgs/{live.ids['org_id']}/integrations/gitlab/webhook"
    return live.send("POST", path, data=body, headers=headers)


# NUL, lone surrogates and iids beyond 32 bits are covered by the table above; this
# explores everything else.
TEXT = st.text(st.characters(exclude_characters="\x00"), max_size=30)
NASTY_TEXT = st.sampled_from(["", "x" * 600, "é" * 300, "../.."]) | TEXT
INT32 = st.integers(min_value=-(2**31), max_value=2**31 - 1)
NASTY_INT = st.sampled_from([0, -1, 1, 2**31 - 1]) | INT32
JSON = st.recursive(
    st.none() | st.booleans() | INT32 | st.floats(allow_nan=False) | TEXT,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=6,
)
#: Mostly well-formed issue/MR events with odd values where GitLab puts its own.
EVENTS = st.builds(
    lambda kind, path, iid, action: {
        "object_kind": kind,
        "project": {"path_with_namespace": path},
        "object_attributes": {"iid": iid, "action": action},
    },
    kind=st.sampled_from(["issue", "merge_request", "work_item"]) | JSON,
    path=st.just(PROJECT) | NASTY_TEXT | JSON,
    iid=NASTY_INT | JSON,
    action=st.sampled_from(["close", "reopen", "merge"]) | NASTY_TEXT | JSON,
)
HOOK_NAMES = st.sampled_from(
    ["Issue Hook", "Merge Request Hook", "Work Item Hook", "Confidential Issue Hook", "Push Hook"]
) | st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=120)


@settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    body=EVENTS.map(json.dumps) | JSON.map(json.dumps) | st.binary(max_size=40),
    event=HOOK_NAMES,
    key=st.uuids().map(str) | st.just(""),
)
def test_the_webhook_never_answers_5xx(app: Live, body: str | bytes, event: str, key: str) -> None:
    """Any JSON is stored (202), anything else is refused as malformed (400)."""
    raw = body.encode() if isinstance(body, str) else body
    try:
        json.loads(raw)
        expected = 202
    except ValueError:
        expected = 400
    response = _hook(app, raw, event, key)
    assert response.status_code == expected, (response.status_code, response.text, raw)


# -- 3. schemathesis ---------------------------------------------------------------------

schema = schemathesis.openapi.from_dict(
    DOCUMENT,
    config=schemathesis.Config.from_dict(
        {
            "generation": {
                "max-examples": MAX_EXAMPLES,
                "deterministic": True,
                # NUL characters are covered by test_hostile_values (see the docstring).
                "allow-x00": False,
                # The test sends the admin's credentials; generated ones would only 401.
                "with-security-parameters": False,
            }
        }
    ),
)
# The ASGI transport calls an app in process; every call passes the live one (``app=``).
schema.app = DOCUMENT_APP


@schema.hook
def flatmap_path_parameters(context: Any, path_parameters: dict[str, Any] | None) -> Any:
    """Each path parameter: the generated value, or the seeded object's id."""
    if not path_parameters:
        return st.just(path_parameters)
    return st.fixed_dictionaries(
        {name: st.sampled_from([value, SEEDED]) for name, value in path_parameters.items()}
    )


@schema.hook
def flatmap_body(context: Any, body: Any) -> Any:
    """The generated body; or its known fields all valid; or all valid but one."""
    leaves = [
        (path, KNOWN[str(path[-1])])
        for path, value in _leaves(body)
        if path and str(path[-1]) in KNOWN and type(value) is type(KNOWN[str(path[-1])][0])
    ]
    if not leaves:
        return st.just(body)

    def all_valid(choices: tuple[Any, ...]) -> Any:
        result = body
        for (path, _), choice in zip(leaves, choices, strict=True):
            result = _replaced(result, path, choice)
        return result

    valid_bodies = st.tuples(*(st.sampled_from(goods) for _, goods in leaves)).map(all_valid)
    one_as_generated = st.tuples(valid_bodies, st.sampled_from([path for path, _ in leaves])).map(
        lambda pair: _replaced(pair[0], pair[1], dict(_leaves(body))[pair[1]])
    )
    return st.one_of(st.just(body), valid_bodies, one_as_generated)


#: Checks left out for one operation (none: every answered status is documented).
EXCLUDED_CHECKS: dict[str, list[Any]] = {}


def test_every_status_an_operation_answers_is_documented(app: Live) -> None:
    body = app.fill(VALID["POST /api/push/subscriptions"])
    body["subscription"]["endpoint"] += uuid.uuid4().hex
    seen = {  # a new endpoint, then the same one again
        app.send("POST", "/api/push/subscriptions", json=body, headers=app.bearer).status_code
        for _ in range(2)
    }
    assert seen <= {200, 201}, seen
    documented = OPERATIONS["POST /api/push/subscriptions"]["responses"]
    assert {str(status) for status in seen} <= set(documented), (seen, sorted(documented))


@schema.parametrize()
# One app and database for all examples of all operations, on purpose (see above).
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_no_operation_answers_5xx(case: Any, app: Live) -> None:
    case.path_parameters = {
        name: app.ids[name] if value == SEEDED else value
        for name, value in (case.path_parameters or {}).items()
    }
    case.body = app.fill(case.body)
    case.call_and_validate(
        app=app.app,
        headers=app.headers_for(case.path),
        checks=CHECKS,
        excluded_checks=EXCLUDED_CHECKS.get(case.operation.label, []),
    )
