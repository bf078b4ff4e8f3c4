"""``viarah smoke`` against real ``viarah web`` and ``viarah worker`` processes.

All four steps pass on a healthy stack; a stopped worker fails the readiness step once
its heartbeat is older than three intervals (plus 2 s); with nothing to talk to, every
step fails with a line that says why, and no traceback.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.system.processes import SECRET, VIARAH, Proc, clean_env, free_port, wait_http_ok

pytestmark = [pytest.mark.system, pytest.mark.postgres, pytest.mark.redis]

STEPS = ("healthz", "readyz", "migrations", "backup")


def smoke(url: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(VIARAH), "smoke", "--url", url],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


def marks(result: subprocess.CompletedProcess[str]) -> dict[str, str]:
    """``{"healthz": "✓", ...}`` from the step lines."""
    found: dict[str, str] = {}
    for line in result.stdout.splitlines():
        mark, _, rest = line.partition(" ")
        name = rest.split(":", 1)[0]
        if mark in ("✓", "✗", "-") and name in STEPS:
            found[name] = mark
    return found


def heartbeat_age(url: str) -> float:
    age = httpx.get(f"{url}/readyz", timeout=5).json()["worker"]["last_heartbeat_age_seconds"]
    return float(age)


def test_smoke_passes_then_names_the_stopped_worker(
    postgres_url: str, redis_url: str, tmp_path: Path, procs: list[Proc]
) -> None:
    env = clean_env(
        DATABASE_URL=postgres_url,
        BROKER_URL=redis_url,
        VIA_RAH_SECRET_KEY=SECRET,
        WORKER_HEARTBEAT_SECONDS="1",
    )
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    web = Proc(["web", "--port", str(port)], env, tmp_path)
    worker = Proc(["worker", "--threads", "2"], env, tmp_path)
    procs.extend([web, worker])
    wait_http_ok(f"{url}/healthz", web)
    worker.wait_for_line(lambda lines: "heartbeat: alive" in lines)

    passed = smoke(url, env, tmp_path)
    print(passed.stdout)
    assert passed.returncode == 0, passed.stdout + passed.stderr
    assert marks(passed) == dict.fromkeys(STEPS, "✓")
    assert [line[0] for line in passed.stdout.splitlines()].count("✓") == 4
    assert '✓ healthz: HTTP 200 {"status":"ok"}' in passed.stdout
    assert passed.stderr == ""
    assert list(tmp_path.glob("*.sql")) == []  # the test backup went to a temporary dir

    worker.stop_cleanly()
    started = time.monotonic()
    while heartbeat_age(url) <= 5.5:  # 3 x WORKER_HEARTBEAT_SECONDS + 2 s
        assert time.monotonic() - started < 20, "the heartbeat never aged"
        time.sleep(0.25)
    failed = smoke(url, env, tmp_path)
    print(failed.stdout + failed.stderr)
    assert failed.returncode == 1
    assert marks(failed) == {"healthz": "✓", "readyz": "✗", "migrations": "✓", "backup": "✓"}
    readyz = next(line for line in failed.stdout.splitlines() if line.startswith("✗ readyz"))
    assert "the last worker heartbeat is" in readyz
    assert "is `viarah worker` running?" in readyz
    assert failed.stderr.strip().splitlines() == [f"viarah: smoke: 1 of 4 step(s) failed at {url}"]
    web.stop_cleanly()


def test_smoke_with_nothing_listening_fails_every_step_without_a_traceback(
    tmp_path: Path,
) -> None:
    nowhere = f"postgresql://postgres@127.0.0.1:{free_port()}/viarah"
    env = clean_env(DATABASE_URL=nowhere, VIA_RAH_SECRET_KEY=SECRET)
    url = f"http://127.0.0.1:{free_port()}"
    result = smoke(url, env, tmp_path)
    print(result.stdout + result.stderr)
    assert result.returncode == 1
    assert marks(result) == dict.fromkeys(STEPS, "✗")
    assert f"✗ healthz: cannot connect to {url}/healthz" in result.stdout
    assert "✗ migrations: cannot reach the database" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr
    assert result.stderr.strip() == f"viarah: smoke: 4 of 4 step(s) failed at {url}"

    usage = subprocess.run(
        [str(VIARAH), "smoke", "--url", "127.0.0.1:8000"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert usage.returncode == 2
    assert "must be an http:// or https:// URL" in usage.stderr
