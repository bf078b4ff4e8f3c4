"""The system under test: a fresh PostgreSQL database, a flushed Redis database, the GitLab
and Web Push fakes of ``tests/``, and ``viarah web`` + ``viarah worker`` as real processes
with production settings (debug off, INFO logging, default pool and worker sizes).

Process output goes to log files in the run directory (not to pipes the benchmark would
have to read while it measures).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
import redis
from cryptography.fernet import Fernet
from tests.gitlab_fake import FakeGitLab
from tests.push_fake import FakePushService
from tests.system.processes import VIARAH, clean_env, free_port

from viarah.container import new_vapid_keypair

WEBHOOK_SECRET = "bench-webhook-secret-0123456789"
#: Tables a webhook burst writes tens of thousands of row versions to.
CHURNED_TABLES = ("outbox", "webhook_deliveries", "gitlab_links")


class StackFailed(Exception):
    """Something the benchmark needs did not start; the message says what and where."""


def wait_for(check: Callable[[], bool], *, timeout: float, what: str, every: float = 0.05) -> float:
    """Poll ``check`` until it holds; the seconds it took, or StackFailed."""
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout:
            raise StackFailed(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)
    return time.monotonic() - started


class Service:
    """A running ``viarah`` command whose stdout and stderr go to ``<log_dir>/<name>.log``."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], cwd: Path) -> None:
        self.name = name
        self.log_path = cwd / f"{name}.log"
        self._log = self.log_path.open("ab")
        self.popen = subprocess.Popen(
            [str(VIARAH), *argv], env=env, cwd=cwd, stdout=self._log, stderr=subprocess.STDOUT
        )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def output(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def tail(self, lines: int = 15) -> str:
        return "\n".join(self.output().splitlines()[-lines:])

    def wait_for_output(self, text: str, timeout: float) -> None:
        def seen() -> bool:
            if not self.alive():
                raise StackFailed(f"{self.name} exited ({self.popen.returncode}):\n{self.tail()}")
            return text in self.output()

        wait_for(seen, timeout=timeout, what=f"{self.name} to print {text!r}", every=0.1)

    def stop(self, timeout: float = 15) -> None:
        if self.alive():
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        self._log.close()


@dataclass
class Stack:
    """Everything the scenarios talk to; :meth:`close` stops and removes it all."""

    run_dir: Path
    admin_url: str
    redis_url: str
    db_name: str = field(default_factory=lambda: f"viarah_bench_{secrets.token_hex(4)}")
    keep_database: bool = False
    env: dict[str, str] = field(default_factory=dict)
    gitlab: FakeGitLab | None = None
    push: FakePushService | None = None
    web: Service | None = None
    worker: Service | None = None
    port: int = 0
    _sql: psycopg.Connection[Any] | None = None

    # -- set-up ------------------------------------------------------------------------

    @property
    def database_url(self) -> str:
        return self.admin_url.rsplit("/", 1)[0] + "/" + self.db_name

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def prepare(self) -> None:
        """Database (created, migrated by ``viarah migrate``), Redis, fakes, environment."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with psycopg.connect(self.admin_url, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'CREATE DATABASE "{self.db_name}"')
        client = redis.Redis.from_url(self.redis_url, socket_connect_timeout=3)
        try:
            client.flushdb()
        finally:
            client.close()
        self.gitlab = FakeGitLab().start()
        self.push = FakePushService(defer_decryption=True, fast=True).start()
        for fake in (self.gitlab, self.push):
            _quiet_disconnects(fake)
        vapid = new_vapid_keypair()
        # Production settings: debug off, INFO logs, default heartbeat, TTL and pools.
        self.env = clean_env(
            DATABASE_URL=self.database_url,
            BROKER_URL=self.redis_url,
            VIA_RAH_SECRET_KEY=secrets.token_urlsafe(32),
            VIA_RAH_DEBUG="0",
            VIA_RAH_ENCRYPTION_KEY=Fernet.generate_key().decode(),
            VIA_RAH_OUTBOUND_ALLOWLIST="127.0.0.1",
            ALLOWED_HOSTS="127.0.0.1,localhost",
            WEBPUSH_VAPID_PUBLIC_KEY=vapid.public_key,
            WEBPUSH_VAPID_PRIVATE_KEY=vapid.private_key,
            WEBPUSH_VAPID_SUBJECT="mailto:bench@example.com",
        )
        migrate = subprocess.run(
            [str(VIARAH), "migrate"],
            env=self.env,
            cwd=self.run_dir,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if migrate.returncode != 0:
            raise StackFailed(f"viarah migrate failed: {migrate.stderr.strip()[-500:]}")
        self._sql = psycopg.connect(self.database_url, autocommit=True)

    def start_processes(self) -> None:
        """``viarah web`` (one process) and ``viarah worker`` (one process), both ready."""
        self.port = free_port()
        self.web = Service(
            "web", ["web", "--host", "127.0.0.1", "--port", str(self.port)], self.env, self.run_dir
        )
        self.worker = Service("worker", ["worker"], self.env, self.run_dir)
        wait_for(self._web_answers, timeout=60, what="viarah web to answer /healthz")
        self.worker.wait_for_output("worker: ready", timeout=60)

    def _web_answers(self) -> bool:
        assert self.web is not None
        if not self.web.alive():
            raise StackFailed(f"viarah web exited:\n{self.web.tail()}")
        try:
            return httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    # -- observation -------------------------------------------------------------------

    def scalar(self, sql: str, *params: Any) -> Any:
        assert self._sql is not None, "prepare() first"
        row = self._sql.execute(sql, params).fetchone()
        return None if row is None else row[0]

    def rows(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        assert self._sql is not None, "prepare() first"
        return list(self._sql.execute(sql, params).fetchall())

    def pipeline_idle(self) -> bool:
        """No job is due, queued or running (periodic housekeeping included). A job
        scheduled more than 10 s ahead does not count: e.g. the backstop ``push.deliver``
        that a fan-out's own job schedules for when the sending worker's lease ends (2 min),
        which finds everything sent."""
        return (
            self.scalar(
                "SELECT count(*) FROM outbox WHERE status NOT IN ('done', 'failed') AND NOT "
                "(status = 'pending' AND available_at > now() + interval '10 seconds')"
            )
            == 0
        )

    def settle_database(self) -> float:
        """``VACUUM (ANALYZE)`` the tables a webhook burst churns, then ``CHECKPOINT``: the
        next scenario then does not share the 2 cores with autovacuum and the checkpointer
        catching up on the previous one's tens of thousands of rows. Seconds taken."""
        assert self._sql is not None, "prepare() first"
        started = time.monotonic()
        for table in CHURNED_TABLES:
            self._sql.execute(f"VACUUM (ANALYZE) {table}")
        # Not a superuser: the checkpointer catches up on its own schedule.
        with contextlib.suppress(psycopg.errors.InsufficientPrivilege):
            self._sql.execute("CHECKPOINT")
        return time.monotonic() - started

    def check_alive(self) -> None:
        for service in (self.web, self.worker):
            if service is not None and not service.alive():
                raise StackFailed(f"{service.name} died:\n{service.tail()}")

    # -- tear-down ---------------------------------------------------------------------

    def close(self) -> None:
        for service in (self.worker, self.web):
            if service is not None:
                service.stop()
        for fake in (self.push, self.gitlab):
            if fake is not None:
                fake.stop()
        if self._sql is not None:
            self._sql.close()
        if not self.keep_database:
            try:
                with psycopg.connect(self.admin_url, autocommit=True, connect_timeout=5) as conn:
                    conn.execute(f'DROP DATABASE IF EXISTS "{self.db_name}" WITH (FORCE)')
            except psycopg.Error:
                pass
        try:
            client = redis.Redis.from_url(self.redis_url, socket_connect_timeout=3)
            client.flushdb()
            client.close()
        except redis.RedisError:
            pass


def _quiet_disconnects(fake: Any) -> None:
    """A load generator hanging up mid-keep-alive is normal here: no traceback for it."""
    server = getattr(fake, "_server", None)
    if server is None:
        return
    default = server.handle_error

    def handle_error(request: Any, client_address: Any) -> None:
        import sys

        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        default(request, client_address)

    server.handle_error = handle_error


def server_versions(admin_url: str, redis_url: str) -> tuple[str, str]:
    """PostgreSQL's and Redis's versions, as their servers report them."""
    with psycopg.connect(admin_url, autocommit=True, connect_timeout=5) as conn:
        row = conn.execute("SHOW server_version").fetchone()
        postgres = str(row[0]) if row else "unknown"
    client = redis.Redis.from_url(redis_url, socket_connect_timeout=3)
    try:
        info: dict[str, Any] = client.info("server")  # type: ignore[assignment]
        redis_version = str(info.get("redis_version", "unknown"))
    finally:
        client.close()
    return postgres, redis_version


def os_environ_admin_url() -> str:
    """Where to create the benchmark database (the test suite's variable, same default)."""
    return os.environ.get("VIARAH_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")
