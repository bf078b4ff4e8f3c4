"""Real processes from the console script, as an operator runs them.

``viarah migrate`` + ``viarah web`` + ``viarah worker`` on PostgreSQL and Redis, and the
all-in-one ``viarah serve`` with nothing configured. Each process must come up, report
what the contract says, and exit 0 within seconds of SIGTERM.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import httpx
import pytest

from tests.system.processes import SECRET, VIARAH, Proc, clean_env, free_port, wait_http_ok

pytestmark = [pytest.mark.system]


@pytest.mark.postgres
@pytest.mark.redis
def test_web_and_worker_on_postgres_and_redis(
    empty_postgres_url: str, redis_url: str, tmp_path: Path, procs: list[Proc]
) -> None:
    env = clean_env(
        DATABASE_URL=empty_postgres_url,
        BROKER_URL=redis_url,
        VIA_RAH_SECRET_KEY=SECRET,
        WORKER_HEARTBEAT_SECONDS="1",
    )
    migrated = subprocess.run(
        [str(VIARAH), "migrate"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert migrated.returncode == 0, migrated.stderr

    port = free_port()
    web = Proc(["web", "--port", str(port)], env, tmp_path)
    worker = Proc(["worker", "--threads", "2"], env, tmp_path)
    procs.extend([web, worker])

    wait_http_ok(f"http://127.0.0.1:{port}/healthz", web)
    worker.wait_for_line(lambda lines: lines.count("heartbeat: alive") >= 2)
    assert worker.lines.count("worker: ready") == 1
    assert worker.lines.index("worker: ready") < worker.lines.index("heartbeat: alive")

    ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5)
    assert ready.status_code == 200, ready.text
    body = ready.json()
    assert body["database"] == body["broker"] == "ok"
    assert 0 <= body["worker"]["last_heartbeat_age_seconds"] < 5

    worker.stop_cleanly()
    web.stop_cleanly()
    assert worker.lines[-1] == "worker: stopped"
    assert worker.lines.count("worker: ready") == 1
    assert not any("Traceback" in line for line in web.stderr + worker.stderr)


@pytest.mark.postgres
@pytest.mark.redis
def test_worker_group_starts_and_stops_as_one(
    postgres_url: str, redis_url: str, tmp_path: Path, procs: list[Proc]
) -> None:
    env = clean_env(
        DATABASE_URL=postgres_url,
        BROKER_URL=redis_url,
        VIA_RAH_SECRET_KEY=SECRET,
        WORKER_HEARTBEAT_SECONDS="1",
    )
    group = Proc(["worker", "--processes", "2", "--threads", "1"], env, tmp_path)
    procs.append(group)
    group.wait_for_line(lambda lines: "heartbeat: alive" in lines, timeout=30)
    group.stop_cleanly(timeout=25)
    assert group.lines.count("worker: ready") == 1
    assert group.lines[-1] == "worker: stopped"


def test_serve_with_nothing_configured(tmp_path: Path, procs: list[Proc]) -> None:
    port = free_port()
    serve = Proc(["serve", "--port", str(port)], clean_env(), tmp_path)
    procs.append(serve)
    response = wait_http_ok(f"http://127.0.0.1:{port}/healthz", serve)
    assert response.json() == {"status": "ok"}
    assert (tmp_path / "var" / "viarah.sqlite3").is_file()
    assert any(
        "embedded SQLite ./var/viarah.sqlite3, in-process queue" in line for line in serve.lines
    )
    serve.stop_cleanly()
