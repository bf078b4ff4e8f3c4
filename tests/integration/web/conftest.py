"""The web API through litestar's TestClient, on a fresh real PostgreSQL database per test.

The app runs in the TestClient's portal thread with its own event loop; test data is set
up through the same container *in that loop* (``web.run``), because async database
connections belong to the loop that opened them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import httpx
import pytest
from dependency_injector import providers
from litestar.testing import TestClient

from tests.conftest import base_env
from viarah.adapters.crypto.passwords import Argon2PasswordHasher
from viarah.container import Container, build_container
from viarah.domain.identity.model import User
from viarah.entrypoints.web.app import create_app
from viarah.settings import Settings, load_settings

HOST = "testserver.local"
BASE_URL = f"https://{HOST}"
PASSWORD = "correct horse battery"
#: No worker runs in these tests: no job is held by a dead worker.
DEAD_AFTER = timedelta(minutes=5)
T = TypeVar("T")


class ShiftedClock:
    """The real clock, moved forward on demand (expiry tests)."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def now(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def advance(self, **kwargs: float) -> None:
        self.offset += timedelta(**kwargs)


def web_settings_env(database_url: str, **overrides: str) -> dict[str, str]:
    env = base_env(DATABASE_URL=database_url, ALLOWED_HOSTS=f"{HOST},localhost")
    env.update(overrides)
    return env


def web_settings(database_url: str, **overrides: str) -> Settings:
    return load_settings(web_settings_env(database_url, **overrides)).require_valid()


def web_container(settings: Settings, clock: ShiftedClock | None = None) -> Container:
    container = build_container(settings)
    container.password_hasher.override(providers.Object(Argon2PasswordHasher(fast=True)))
    if clock is not None:
        container.clock.override(providers.Object(clock))
    return container


@dataclass
class Caller:
    """Sends requests with one identity: a session (cookie + CSRF), a token, or nobody."""

    client: TestClient[Any]
    headers: dict[str, str] = field(default_factory=dict)
    user: User | None = None
    session_cookie: str | None = None
    csrf: str | None = None
    token: str | None = None

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {**self.headers, **kwargs.pop("headers", {})}
        self.client.cookies.clear()
        return self.client.request(method, path, headers=headers, **kwargs)

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", path, **kwargs)

    def patch(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("PATCH", path, **kwargs)

    def put(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("PUT", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("DELETE", path, **kwargs)

    @property
    def user_id(self) -> str:
        assert self.user is not None
        return self.user.id


class Web:
    """Test data and callers for one app."""

    def __init__(self, client: TestClient[Any], container: Container, clock: ShiftedClock):
        self.client = client
        self.container = container
        self.clock = clock
        self.anon = Caller(client)

    def run(self, fn: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
        """Run a coroutine function in the app's event loop."""

        async def call() -> T:
            return await fn(*args, **kwargs)

        return self.client.blocking_portal.call(call)

    def user(
        self,
        email: str,
        *,
        platform_admin: bool = False,
        display_name: str = "",
        password: str = PASSWORD,
    ) -> User:
        users = self.container.users()
        return self.run(users.create, email, password, display_name, platform_admin=platform_admin)

    def login(self, email: str, password: str = PASSWORD) -> Caller:
        self.client.cookies.clear()
        response = self.client.post("/api/auth/login", json={"email": email, "password": password})
        assert response.status_code == 200, response.text
        cookie = response.cookies["viarah_session"]
        csrf = response.headers["X-CSRF-Token"]
        self.client.cookies.clear()
        return Caller(
            self.client,
            headers={"Cookie": f"viarah_session={cookie}", "X-CSRF-Token": csrf},
            session_cookie=cookie,
            csrf=csrf,
        )

    def member(self, email: str, **kwargs: Any) -> Caller:
        """A new user, logged in with a cookie session."""
        user = self.user(email, **kwargs)
        caller = self.login(email, kwargs.get("password", PASSWORD))
        caller.user = user
        return caller

    def bearer(self, session: Caller, scope: str = "write", **body: Any) -> Caller:
        """An API-token caller for the same user as ``session``."""
        response = session.post("/api/me/tokens", json={"name": "test", "scope": scope, **body})
        assert response.status_code == 201, response.text
        token = response.json()["token"]
        return Caller(
            self.client,
            headers={"Authorization": f"Bearer {token}"},
            user=session.user,
            token=token,
        )

    def org(self, admin: Caller, name: str = "Acme") -> str:
        response = admin.post("/api/orgs", json={"name": name})
        assert response.status_code == 201, response.text
        return str(response.json()["org"]["id"])

    def add_member(self, admin: Caller, org_id: str, who: Caller, role: str = "member") -> str:
        assert who.user is not None
        response = admin.post(
            f"/api/orgs/{org_id}/memberships", json={"email": who.user.email, "role": role}
        )
        assert response.status_code == 201, response.text
        return str(response.json()["membership"]["id"])

    def project(self, manager: Caller, org_id: str, name: str = "Website") -> str:
        response = manager.post(f"/api/orgs/{org_id}/projects", json={"name": name})
        assert response.status_code == 201, response.text
        return str(response.json()["project"]["id"])

    def task(self, caller: Caller, org_id: str, project_id: str, **body: Any) -> dict[str, Any]:
        response = caller.post(
            f"/api/orgs/{org_id}/projects/{project_id}/tasks", json={"title": "Ship it", **body}
        )
        assert response.status_code == 201, response.text
        task: dict[str, Any] = response.json()["task"]
        return task

    def run_due_jobs(self, jobs: Collection[str] | None = None) -> list[str]:
        """Run every due job in the outbox (of ``jobs`` only, when given) as a worker
        would, until none is due; the names of the jobs run, in order."""

        async def run() -> list[str]:
            store, runner = self.container.job_store(), self.container.job_runner()
            ran: list[str] = []
            while True:
                due = [
                    record
                    for record in await store.due_for_dispatch(self.clock.now(), 100, DEAD_AFTER)
                    if jobs is None or record.job in jobs
                ]
                if not due:
                    return ran
                for record in due:
                    assert await runner.run(record.id)
                    ran.append(record.job)

        return self.run(run)


@dataclass(frozen=True)
class Recorded:
    """One response as a recording client received it."""

    method: str
    path: str
    status: int
    headers: list[tuple[str, str]]
    body: str

    @property
    def text(self) -> str:
        """Every header line and the body."""
        lines = [f"{name}: {value}" for name, value in self.headers]
        return "\n".join([*lines, self.body])


def recording_client(container: Container) -> tuple[TestClient[Any], list[Recorded]]:
    """A TestClient on a new app that keeps every response it receives (headers, body)."""
    seen: list[Recorded] = []

    def record(response: httpx.Response) -> None:
        response.read()
        seen.append(
            Recorded(
                method=response.request.method,
                path=response.request.url.path,
                status=response.status_code,
                headers=list(response.headers.multi_items()),
                body=response.text,
            )
        )

    client = TestClient(create_app(container), base_url=BASE_URL)
    client.event_hooks["response"].append(record)
    return client, seen


@pytest.fixture
def clock() -> ShiftedClock:
    return ShiftedClock()


@pytest.fixture
def settings(postgres_url: str) -> Settings:
    return web_settings(postgres_url)


@pytest.fixture
def container(settings: Settings, clock: ShiftedClock) -> Container:
    return web_container(settings, clock)


@pytest.fixture
def client(container: Container) -> Iterator[TestClient[Any]]:
    with TestClient(create_app(container), base_url=BASE_URL) as test_client:
        yield test_client


@pytest.fixture
def web(client: TestClient[Any], container: Container, clock: ShiftedClock) -> Web:
    return Web(client, container, clock)


def assert_error(response: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    """The response is our JSON error envelope with this status (and code)."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body: dict[str, Any] = response.json()
    assert isinstance(body.get("error"), str), body
    assert body["error"], body
    assert set(body) <= {"error", "code", "fields"}, body
    assert "Traceback" not in response.text
    if code is not None:
        assert body.get("code") == code, body
    return body
