"""Health probes, the schema, hosts, framework errors, the lifespan and a dead database."""

from __future__ import annotations

import gc
import logging
import os
from typing import Any, cast

import pytest
from dependency_injector import providers
from litestar.testing import TestClient

from tests.integration.web.conftest import (
    BASE_URL,
    PASSWORD,
    Caller,
    Web,
    assert_error,
    web_container,
    web_settings,
    web_settings_env,
)
from viarah.container import Container
from viarah.domain.orgs.services import Organizations
from viarah.entrypoints.web import app as app_module
from viarah.entrypoints.web.app import create_app
from viarah.entrypoints.web.middleware import host_allowed
from viarah.settings import Settings

DEAD_DATABASE = "postgresql://postgres@127.0.0.1:1/viarah"


def test_healthz_answers_ok_when_the_database_answers(web: Web) -> None:
    response = web.anon.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_reports_database_broker_and_worker_heartbeat(web: Web) -> None:
    response = web.anon.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {
        "database": "ok",
        "broker": "ok",
        "worker": {"last_heartbeat_age_seconds": None},
    }

    started = web.clock.now()
    web.run(web.container.presence().beat, "worker-1", "host", os.getpid(), started)
    web.clock.advance(seconds=5)
    body = web.anon.get("/readyz").json()
    age = body["worker"]["last_heartbeat_age_seconds"]
    assert isinstance(age, float)
    assert 4.5 <= age < 60


@pytest.mark.redis
def test_readyz_checks_a_real_redis_broker(postgres_url: str, redis_url: str) -> None:
    container = web_container(web_settings(postgres_url, BROKER_URL=redis_url))
    with TestClient(create_app(container), base_url=BASE_URL) as client:
        assert client.get("/readyz").json()["broker"] == "ok"

    down = web_container(web_settings(postgres_url, BROKER_URL="redis://127.0.0.1:1/0"))
    with TestClient(create_app(down), base_url=BASE_URL) as client:
        response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["broker"] == "unavailable"
    assert response.json()["database"] == "ok"


def test_openapi_schema_is_served(web: Web) -> None:
    page = web.anon.get("/schema")
    assert page.status_code == 200
    assert "text/html" in page.headers["content-type"]
    spec = web.anon.get("/schema/openapi.json")
    assert spec.status_code == 200
    paths = spec.json()["paths"]
    for path in (
        "/healthz",
        "/readyz",
        "/api/auth/login",
        "/api/me/tokens",
        "/api/orgs/{org_id}/memberships/{membership_id}",
        "/api/orgs/{org_id}/tasks/{task_id}/watch",
    ):
        assert path in paths


def test_unknown_route_and_wrong_method_get_the_envelope(web: Web) -> None:
    body = assert_error(web.anon.get("/no/such/route"), 404, "not_found")
    assert "/no/such/route" in body["error"]
    assert_error(web.anon.get("/api/nothing-here"), 404, "not_found")
    body = assert_error(web.anon.delete("/healthz"), 405, "method_not_allowed")
    assert "DELETE" in body["error"]
    assert_error(web.anon.put("/api/orgs", json={}), 405, "method_not_allowed")


def test_a_host_not_in_allowed_hosts_is_refused_with_the_envelope(web: Web) -> None:
    body = assert_error(web.anon.get("/healthz", headers={"Host": "evil.example"}), 400)
    assert body["code"] == "invalid_host"
    assert "Host" in body["error"]
    assert_error(web.anon.post("/api/auth/login", json={}, headers={"Host": "evil.example"}), 400)
    assert web.anon.get("/healthz", headers={"Host": "localhost:8000"}).status_code == 200


def test_allowed_hosts_patterns() -> None:
    assert host_allowed("example.com", [".example.com"])
    assert host_allowed("api.example.com:443", [".example.com"])
    assert not host_allowed("badexample.com", [".example.com"])
    assert host_allowed("a.example.com", ["*.example.com"])
    assert host_allowed("[::1]:8000", ["::1"])
    assert host_allowed("anything", ["*"])
    assert not host_allowed("", ["localhost"])
    assert not host_allowed("localhost.evil.com", ["localhost"])


def test_an_unexpected_exception_is_a_bare_500_logged_server_side(
    web: Web, container: Container, caplog: pytest.LogCaptureFixture
) -> None:
    admin = web.member("admin@example.com")

    secret = "-".join(["hunter2", "s3cr3t"])  # built at run time: not in the stack's source

    class BrokenOrganizations(Organizations):
        async def list_orgs(self, actor: Any) -> Any:
            raise RuntimeError(f"boom: password={secret}")

    broken = BrokenOrganizations(cast(Any, container.uow.provider), container.clock())
    container.organizations.override(providers.Object(broken))
    caplog.set_level(logging.ERROR, logger="viarah.web")
    response = admin.get("/api/orgs")
    assert_error(response, 500, "internal_error")
    assert response.json()["error"] == "internal error"
    assert secret not in response.text
    assert "boom" not in response.text
    assert "http.unhandled" in caplog.text
    assert "RuntimeError" in caplog.text
    assert secret not in caplog.text


def test_lifespan_hooks_run_in_order_and_the_container_is_closed(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []

    async def closed(container: Container) -> None:
        calls.append("closed")

    monkeypatch.setattr(app_module, "close_container", closed)

    def hook(name: str) -> Any:
        async def run() -> None:
            calls.append(name)

        return run

    async def failing() -> None:
        calls.append("failing")
        raise RuntimeError("shutdown hook failed")

    app = create_app(
        web_container(settings),
        on_startup=[hook("start1"), hook("start2")],
        on_shutdown=[hook("stop1"), failing, hook("stop2")],
    )
    with TestClient(app, base_url=BASE_URL) as client:
        assert calls == ["start1", "start2"]
        assert client.get("/healthz").status_code == 200
    assert calls == ["start1", "start2", "stop1", "failing", "stop2", "closed"]


def test_a_dead_database_gives_503_envelopes_not_tracebacks() -> None:
    container = web_container(web_settings(DEAD_DATABASE))
    with TestClient(create_app(container), base_url=BASE_URL) as client:
        anon = Caller(client)
        health = anon.get("/healthz")
        body = assert_error(health, 503)
        assert "database" in body["error"]

        ready = anon.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["database"] == "unavailable"

        login = anon.post("/api/auth/login", json={"email": "a@example.com", "password": PASSWORD})
        body = assert_error(login, 503, "unavailable")
        assert PASSWORD not in login.text

        token = "vrak_abcdef.secretsecretsecret"
        me = anon.get("/api/me", headers={"Authorization": f"Bearer {token}"})
        assert_error(me, 503, "unavailable")
        assert "secretsecret" not in me.text

        cookie = anon.get("/api/orgs", headers={"Cookie": "viarah_session=whatever"})
        assert_error(cookie, 503, "unavailable")


def test_the_asgi_factory_reads_the_environment(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from viarah.entrypoints.web.asgi import app_from_environment

    for name, value in web_settings_env(postgres_url).items():
        monkeypatch.setenv(name, value)
    gc.unfreeze()
    try:
        with TestClient(app_from_environment(), base_url=BASE_URL) as client:
            # Its last startup hook froze what startup built (entrypoints/heap.py).
            assert gc.get_freeze_count() > 10_000
            assert client.get("/healthz").json() == {"status": "ok"}
    finally:
        gc.unfreeze()
