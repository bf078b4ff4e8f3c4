"""``viarah worker --metrics-port``: a real worker serves /metrics, as Prometheus sees it."""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.system.processes import SECRET, VIARAH, Proc, clean_env, free_port

pytestmark = [pytest.mark.system, pytest.mark.postgres, pytest.mark.redis]

PURGE_DONE = ("identity.purge_expired_sessions", "done")


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def jobs_done(found: dict[tuple[str, tuple[tuple[str, str], ...]], float], job: str) -> float:
    return found.get(("viarah_jobs_total", (("job", job), ("outcome", "done"))), 0)


def scrape_until(url: str, proc: Proc, ready: str, timeout: float = 30) -> str:
    """Scrape ``url`` until the text contains ``ready`` (a scheduled job has run)."""
    deadline = time.monotonic() + timeout
    text = ""
    while time.monotonic() < deadline and proc.popen.poll() is None:
        try:
            text = httpx.get(url, timeout=5).text
        except httpx.TransportError:
            text = ""
        if ready in text:
            return text
        time.sleep(0.2)
    pytest.fail(f"{url} never showed {ready!r}; last scrape: {text[-2000:]} {proc.stderr[-20:]}")


def worker_env(postgres_url: str, redis_url: str, **extra: str) -> dict[str, str]:
    return clean_env(
        DATABASE_URL=postgres_url,
        BROKER_URL=redis_url,
        VIA_RAH_SECRET_KEY=SECRET,
        WORKER_HEARTBEAT_SECONDS="1",
        **extra,
    )


def test_the_worker_serves_job_outcomes_and_its_backlog(
    postgres_url: str, redis_url: str, tmp_path: Path, procs: list[Proc]
) -> None:
    port = free_port()
    worker = Proc(
        ["worker", "--threads", "2", "--metrics-port", str(port)],
        worker_env(postgres_url, redis_url),
        tmp_path,
    )
    procs.append(worker)
    url = f"http://127.0.0.1:{port}/metrics"

    # The worker schedules the session purge at start; the scrape shows it ran.
    text = scrape_until(url, worker, 'job="identity.purge_expired_sessions",outcome="done"')
    found = samples(text)

    assert jobs_done(found, "identity.purge_expired_sessions") == 1
    assert found[("viarah_outbox_relayed_total", ())] >= 1
    assert found[("viarah_database_up", ())] == 1
    assert found[("viarah_workers_alive", ())] == 1
    assert found[("viarah_outbox_jobs", (("status", "failed"),))] == 0
    seconds = ("viarah_job_seconds_count", (("job", "identity.purge_expired_sessions"),))
    assert found[seconds] == 1
    assert ("process_resident_memory_bytes", ()) in found

    worker.stop_cleanly()
    assert worker.lines[-1] == "worker: stopped"
    with socket.socket() as sock:  # the port is free again
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
    assert not any("Traceback" in line for line in worker.stderr)


def neighbouring_free_ports() -> int:
    """A port P such that P and P + 1 are both free right now."""
    for _ in range(50):
        port = free_port()
        with socket.socket() as next_one:
            try:
                next_one.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    pytest.fail("no two neighbouring free ports")


def test_each_process_of_a_group_serves_on_its_own_port(
    postgres_url: str, redis_url: str, tmp_path: Path, procs: list[Proc]
) -> None:
    port = neighbouring_free_ports()
    env = worker_env(postgres_url, redis_url, WORKER_METRICS_PORT=str(port))  # the setting
    group = Proc(["worker", "--processes", "2", "--threads", "1"], env, tmp_path)
    procs.append(group)
    group.wait_for_line(lambda lines: "worker: ready" in lines, timeout=30)

    for each in (port, port + 1):
        text = scrape_until(f"http://127.0.0.1:{each}/metrics", group, "viarah_database_up 1.0")
        assert "viarah_jobs_total" in text
    group.stop_cleanly(timeout=25)


def test_a_taken_metrics_port_stops_the_start_with_one_line(
    postgres_url: str, redis_url: str, tmp_path: Path
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [str(VIARAH), "worker", "--metrics-port", str(port)],
            env=worker_env(postgres_url, redis_url),
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 1
    assert f"viarah: --metrics-port: cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("queue", ["in-process", "redis"])
def test_serve_shows_its_worker_in_the_web_metrics(
    queue: str, postgres_url: str, redis_url: str, tmp_path: Path, procs: list[Proc]
) -> None:
    """One process, one set of metrics: the worker's jobs appear on the web's /metrics,
    whether they run in-process or in the dramatiq worker (a container of its own)."""
    port = free_port()
    env = worker_env(postgres_url, redis_url)
    if queue == "in-process":
        del env["BROKER_URL"]
    serve = Proc(["serve", "--port", str(port)], env, tmp_path)
    procs.append(serve)

    text = scrape_until(
        f"http://127.0.0.1:{port}/metrics",
        serve,
        'job="identity.purge_expired_sessions",outcome="done"',
    )

    found = samples(text)
    assert jobs_done(found, "identity.purge_expired_sessions") == 1
    assert found[("viarah_database_up", ())] == 1
    serve.stop_cleanly()
