"""``GET /metrics`` through the real app on PostgreSQL: route templates, backlog, outages."""

from __future__ import annotations

from typing import Any

import pytest
from litestar.testing import TestClient
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.web.conftest import (
    BASE_URL,
    Caller,
    Web,
    assert_error,
    web_container,
    web_settings,
)
from viarah.domain.shared.jobs import Job
from viarah.entrypoints.web.app import create_app

DEAD_DATABASE = "postgresql://postgres@127.0.0.1:1/viarah"
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def samples(text: str) -> Samples:
    """{(sample name, sorted labels): value}."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def scrape(caller: Caller) -> tuple[str, Samples]:
    response = caller.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert response.headers["cache-control"] == "no-store"
    return response.text, samples(response.text)


def requests_total(found: Samples, method: str, route: str, status: int) -> float:
    labels = (("method", method), ("route", route), ("status", str(status)))
    return found.get(("viarah_http_requests_total", labels), 0)


def test_requests_are_counted_by_route_template_never_by_raw_path(web: Web) -> None:
    admin = web.member("admin@example.com")
    org_id = web.org(admin)
    project_id = web.project(admin, org_id)
    task = web.task(admin, org_id, project_id)
    for _ in range(3):
        assert admin.get(f"/api/orgs/{org_id}/tasks/{task['id']}").status_code == 200
    assert web.anon.get(f"/api/orgs/{org_id}").status_code == 401

    text, found = scrape(web.anon)

    assert requests_total(found, "GET", "/api/orgs/{org_id}/tasks/{task_id}", 200) == 3
    assert requests_total(found, "POST", "/api/orgs/{org_id}/projects", 201) == 1
    assert requests_total(found, "GET", "/api/orgs/{org_id}", 401) == 1
    assert requests_total(found, "POST", "/api/auth/login", 200) == 1
    seconds = (
        "viarah_http_request_seconds_count",
        (("method", "GET"), ("route", "/api/orgs/{org_id}/tasks/{task_id}")),
    )
    assert found[seconds] == 3
    for secret_or_id in (org_id, project_id, task["id"], "admin@example.com"):
        assert secret_or_id not in text
    routes = {dict(labels).get("route") for name, labels in found if name.startswith("viarah_http")}
    assert all(route is None or route.startswith("/") for route in routes), routes


def test_the_outbox_gauges_show_a_pending_job(web: Web) -> None:
    async def add_job() -> None:
        async with web.container.uow() as uow:
            uow.outbox.add(Job("identity.purge_expired_sessions"))
            await uow.commit()

    web.run(add_job)

    _, found = scrape(web.anon)

    assert found[("viarah_database_up", ())] == 1
    assert found[("viarah_outbox_jobs", (("status", "pending"),))] == 1
    assert found[("viarah_outbox_jobs", (("status", "failed"),))] == 0
    assert found[("viarah_workers_alive", ())] == 0

    assert web.run_due_jobs() == ["identity.purge_expired_sessions"]
    _, found = scrape(web.anon)
    assert found[("viarah_outbox_jobs", (("status", "pending"),))] == 0
    done = (("job", "identity.purge_expired_sessions"), ("outcome", "done"))
    assert found[("viarah_jobs_total", done)] == 1


def test_a_dead_database_still_answers_metrics_with_database_up_0() -> None:
    container = web_container(web_settings(DEAD_DATABASE))
    with TestClient(create_app(container), base_url=BASE_URL) as client:
        anon = Caller(client)
        assert anon.get("/healthz").status_code == 503
        _, found = scrape(anon)
    assert found[("viarah_database_up", ())] == 0
    assert ("viarah_outbox_jobs", (("status", "pending"),)) not in found
    assert requests_total(found, "GET", "/healthz", 503) == 1


def test_metrics_is_public_unlisted_and_behind_the_host_allowlist(web: Web) -> None:
    for _ in range(20):  # no throttle
        assert web.anon.get("/metrics").status_code == 200
    schema: dict[str, Any] = web.anon.get("/schema/openapi.json").json()
    assert "/metrics" not in schema["paths"]
    assert_error(web.anon.get("/metrics", headers={"Host": "evil.example"}), 400, "invalid_host")
    assert web.anon.post("/metrics").status_code == 405


@pytest.mark.parametrize(
    ("accept", "content_type"),
    [
        ("application/openmetrics-text; version=1.0.0", "application/openmetrics-text"),
        ("text/plain", "text/plain; version=0.0.4"),
    ],
)
def test_the_format_follows_the_accept_header(web: Web, accept: str, content_type: str) -> None:
    response = web.anon.get("/metrics", headers={"Accept": accept})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith(content_type)
