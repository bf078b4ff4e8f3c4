"""Real processes from the console script, as an operator runs them.

``viarah migrate`` + ``viarah web`` + ``viarah worker`` on PostgreSQL and Redis, and the
all-in-one ``viarah serve`` with nothing configured. Each process must come up, report
what the contract says, and exit 0 within seconds of SIGTERM.
"""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

pytestmark = [pytest.mark.system]

VIARAH = Path(sys.executable).with_name("viarah")
SECRET = "system-test-secret-key-0123456789"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def clean_env(**extra: str) -> dict[str, str]:
    """Only what the process needs: no stray ViaRah variables from the outside."""
    env = {key: os.environ[key] for key in ("PATH", "HOME", "LANG") if key in os.environ}
    env.update(extra)
    return env


class Proc:
    """A running ``viarah`` process whose stdout lines are collected as they come."""

    def __init__(self, argv: list[str], env: dict[str, str], cwd: Path) -> None:
        self.popen = subprocess.Popen(
            [str(VIARAH), *argv],
            env=env,
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        self.stderr: list[str] = []
        self._new: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read_stdout, daemon=True).start()
        threading.Thread(target=self._read_stderr, daemon=True).start()

    def _read_stdout(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            self.lines.append(line.rstrip("\n"))
            self._new.put(line)

    def _read_stderr(self) -> None:
        assert self.popen.stderr is not None
        for line in self.popen.stderr:
            self.stderr.append(line.rstrip("\n"))

    def wait_for_line(self, predicate: Callable[[list[str]], bool], timeout: float = 20) -> None:
        """Block until ``predicate(lines)`` holds; each new line wakes the check."""
        deadline = time.monotonic() + timeout
        while not predicate(self.lines):
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self.popen.poll() is not None:
                pytest.fail(
                    f"condition not met; exit={self.popen.poll()} stdout={self.lines} "
                    f"stderr={self.stderr[-20:]}"
                )
            with contextlib.suppress(queue.Empty):
                self._new.get(timeout=min(remaining, 0.5))

    def terminate(self, timeout: float = 10) -> int:
        """SIGTERM, then the exit code (fails the test if it takes longer than ``timeout``)."""
        self.popen.send_signal(signal.SIGTERM)
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()
            pytest.fail(f"no exit within {timeout} s of SIGTERM; stderr={self.stderr[-20:]}")

    def kill(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait()


@pytest.fixture
def procs() -> Iterator[list[Proc]]:
    started: list[Proc] = []
    yield started
    for proc in started:
        proc.kill()


def wait_http_ok(url: str, proc: Proc, timeout: float = 30) -> httpx.Response:
    """Poll ``url`` until it answers 200 (the server is up) or the deadline passes."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            response = httpx.get(url, timeout=2)
            if response.status_code == 200:
                return response
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline or proc.popen.poll() is not None:
            pytest.fail(f"{url} never answered 200; stderr={proc.stderr[-20:]}")
        time.sleep(0.1)


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

    assert worker.terminate() == 0
    assert web.terminate() == 0
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
    assert group.terminate(timeout=15) == 0
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
    assert serve.terminate() == 0
