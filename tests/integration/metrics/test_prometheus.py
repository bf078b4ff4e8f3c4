"""PrometheusTelemetry: the declared families, refusals, backlog gauges, its HTTP server."""

from __future__ import annotations

import socket

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from viarah.adapters.metrics.prometheus import BACKLOG_GAUGES, PrometheusTelemetry
from viarah.domain.shared.telemetry import (
    GITLAB_CALLS,
    HTTP_REQUEST_SECONDS,
    JOBS,
    METRICS,
    OUTBOX_RELAYED,
    PUSH_SEND_SECONDS,
    Backlog,
    MetricKind,
)

BACKLOG = Backlog(
    outbox={"pending": 3, "dispatched": 1, "running": 2, "failed": 0},
    oldest_due_seconds=12.5,
    webhook_deliveries={"received": 4, "failed": 1},
    push_deliveries={"pending": 5, "failed": 0},
    workers_alive=2,
    cap=10_000,
)


def families(text: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """{family: {sorted labels: value}} of every sample (histograms: their _count)."""
    found: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(text):
        samples = found.setdefault(family.name, {})
        for sample in family.samples:
            if family.type == "histogram" and not sample.name.endswith("_count"):
                continue
            samples[tuple(sorted(sample.labels.items()))] = sample.value
    return found


def scrape(telemetry: PrometheusTelemetry, backlog: Backlog | None = BACKLOG) -> str:
    body, content_type = telemetry.exposition(lambda: backlog)
    assert content_type == "text/plain; version=0.0.4; charset=utf-8"
    return body.decode()


def test_every_declared_metric_is_exported_with_its_prefix_and_type() -> None:
    text = scrape(PrometheusTelemetry())
    types = {family.name: family.type for family in text_string_to_metric_families(text)}
    for metric in METRICS.values():
        name = "viarah_" + metric.name
        expected = "counter" if metric.kind is MetricKind.COUNTER else "histogram"
        assert types.get(name) == expected, (name, types.get(name))
        assert f"# HELP {name}" in text
    assert "_created" not in text
    assert "process_cpu_seconds_total" in text  # the standard process metrics come along


def test_counts_and_observations_appear_under_their_labels() -> None:
    telemetry = PrometheusTelemetry(process_metrics=False)
    telemetry.count(JOBS, job="gitlab.refresh", outcome="done")
    telemetry.count(JOBS, job="gitlab.refresh", outcome="done")
    telemetry.count(JOBS, job="gitlab.refresh", outcome="retry")
    telemetry.count(OUTBOX_RELAYED, 5)
    telemetry.observe(HTTP_REQUEST_SECONDS, 0.02, method="GET", route="/api/orgs/{org_id}")
    telemetry.observe(PUSH_SEND_SECONDS, 0.3)

    found = families(scrape(telemetry))

    jobs = found["viarah_jobs"]
    assert jobs[(("job", "gitlab.refresh"), ("outcome", "done"))] == 2
    assert jobs[(("job", "gitlab.refresh"), ("outcome", "retry"))] == 1
    assert found["viarah_outbox_relayed"][()] == 5
    seconds = found["viarah_http_request_seconds"]
    assert seconds[(("method", "GET"), ("route", "/api/orgs/{org_id}"))] == 1
    assert found["viarah_push_send_seconds"][()] == 1


def test_undeclared_names_and_wrong_labels_are_programming_errors() -> None:
    telemetry = PrometheusTelemetry(process_metrics=False)
    with pytest.raises(ValueError, match="undeclared metric"):
        telemetry.count("requests_made")
    with pytest.raises(ValueError, match="undeclared metric"):
        telemetry.observe("viarah_job_seconds", 1.0, job="x")  # the prefix is the adapter's
    with pytest.raises(ValueError, match="takes labels"):
        telemetry.count(GITLAB_CALLS, call="user")  # outcome missing
    with pytest.raises(ValueError, match="takes labels"):
        telemetry.count(OUTBOX_RELAYED, 1, org_id="x")
    with pytest.raises(ValueError, match="is a histogram"):
        telemetry.count(PUSH_SEND_SECONDS)


def test_backlog_gauges_come_from_the_reader_at_scrape_time() -> None:
    found = families(scrape(PrometheusTelemetry(process_metrics=False)))

    assert found["viarah_database_up"][()] == 1
    assert found["viarah_outbox_jobs"][(("status", "pending"),)] == 3
    assert found["viarah_outbox_jobs"][(("status", "running"),)] == 2
    assert found["viarah_outbox_oldest_due_seconds"][()] == 12.5
    assert found["viarah_webhook_deliveries"][(("status", "received"),)] == 4
    assert found["viarah_push_deliveries"][(("status", "pending"),)] == 5
    assert found["viarah_workers_alive"][()] == 2
    assert set(BACKLOG_GAUGES) <= set(found)


@pytest.mark.parametrize("failure", ["none", "raises"])
def test_an_unreadable_backlog_still_scrapes_with_database_up_0(failure: str) -> None:
    telemetry = PrometheusTelemetry(process_metrics=False)
    telemetry.count(OUTBOX_RELAYED)

    def reader() -> Backlog | None:
        if failure == "raises":
            raise ConnectionError("database away")
        return None

    body, _ = telemetry.exposition(reader)
    found = families(body.decode())

    assert found["viarah_database_up"][()] == 0
    assert "viarah_outbox_jobs" not in found
    assert found["viarah_outbox_relayed"][()] == 1


def test_openmetrics_is_served_to_a_scraper_that_asks_for_it() -> None:
    telemetry = PrometheusTelemetry(process_metrics=False)
    body, content_type = telemetry.exposition(
        lambda: BACKLOG, accept="application/openmetrics-text; version=1.0.0"
    )
    assert content_type.startswith("application/openmetrics-text; version=1.0.0")
    assert body.rstrip().endswith(b"# EOF")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_the_http_server_serves_metrics_and_releases_its_port() -> None:
    telemetry = PrometheusTelemetry(process_metrics=False)
    telemetry.count(JOBS, job="notify", outcome="done")
    reads: list[int] = []

    def reader() -> Backlog:
        reads.append(1)
        return BACKLOG

    port = free_port()
    server = telemetry.serve("127.0.0.1", port, reader)
    try:
        assert server.port == port
        response = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain")
        found = families(response.text)
        assert found["viarah_jobs"][(("job", "notify"), ("outcome", "done"))] == 1
        assert found["viarah_database_up"][()] == 1
        assert reads == [1]  # one backlog read per scrape
        with pytest.raises(OSError):  # the port is taken while it runs
            telemetry.serve("127.0.0.1", port, reader)
    finally:
        server.close()
    server.close()  # idempotent
    again = telemetry.serve("127.0.0.1", port, reader)  # the port was released
    again.close()
