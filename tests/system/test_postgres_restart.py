"""PostgreSQL restarted under a running ``viarah web``: 503 while it is down, then back.

The test runs a private PostgreSQL cluster (initdb into a temporary directory, as the
``postgres`` system user) so that stopping it disturbs nothing else on the machine.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import IN_CI
from tests.system.processes import (
    SECRET,
    VIARAH,
    Proc,
    clean_env,
    free_port,
    wait_http_ok,
    wait_until,
)

pytestmark = [pytest.mark.system, pytest.mark.postgres]


def _unavailable(why: str) -> None:
    if IN_CI:
        pytest.fail(f"a private PostgreSQL cannot be started: {why}", pytrace=False)
    pytest.skip(why)


class PrivatePostgres:
    """A throwaway cluster on a free port, owned by the ``postgres`` user."""

    def __init__(self) -> None:
        bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
        if not bins or os.geteuid() != 0 or shutil.which("runuser") is None:
            _unavailable("needs root, runuser and the PostgreSQL server binaries")
        self.bin = Path(bins[-1]).parent
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="viarah-pg-"))
        shutil.chown(self.dir, "postgres", "postgres")
        self.data = self.dir / "data"
        self._as_postgres(
            str(self.bin / "initdb"),
            "-D",
            str(self.data),
            "-A",
            "trust",
            "-U",
            "postgres",
            "--no-sync",
        )

    def _as_postgres(self, *argv: str) -> None:
        done = subprocess.run(
            ["runuser", "-u", "postgres", "--", *argv],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if done.returncode != 0:
            _unavailable(f"{argv[0]} failed: {done.stderr.strip()[:300]}")

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._as_postgres(
            str(self.bin / "pg_ctl"),
            "-D",
            str(self.data),
            "-o",
            options,
            "-w",
            "-l",
            str(self.dir / "log"),
            "start",
        )

    def stop(self) -> None:
        self._as_postgres(
            str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop"
        )

    def remove(self) -> None:
        subprocess.run(
            [
                "runuser",
                "-u",
                "postgres",
                "--",
                str(self.bin / "pg_ctl"),
                "-D",
                str(self.data),
                "-m",
                "immediate",
                "stop",
            ],
            capture_output=True,
            check=False,
        )
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    pg = PrivatePostgres()
    pg.start()
    yield pg
    pg.remove()


def test_web_answers_503_while_postgres_is_down_and_recovers(
    private_postgres: PrivatePostgres, tmp_path: Path, procs: list[Proc]
) -> None:
    env = clean_env(
        DATABASE_URL=private_postgres.url, VIA_RAH_SECRET_KEY=SECRET, ALLOWED_HOSTS="127.0.0.1"
    )
    migrated = subprocess.run(
        [str(VIARAH), "migrate"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert migrated.returncode == 0, migrated.stderr
    port = free_port()
    web = Proc(["web", "--port", str(port)], env, tmp_path)
    procs.append(web)
    url = f"http://127.0.0.1:{port}"
    wait_http_ok(f"{url}/healthz", web)

    private_postgres.stop()
    down = httpx.get(f"{url}/healthz", timeout=10)
    api = httpx.get(f"{url}/api/me", headers={"Authorization": "Bearer vrak_abc.def"}, timeout=10)
    print(f"database down: /healthz {down.status_code}, /api/me {api.status_code}")
    assert down.status_code == 503
    assert "error" in down.json()
    assert api.status_code == 503
    assert "database" in api.json()["error"]
    assert "Traceback" not in api.text

    private_postgres.start()
    took = wait_until(
        lambda: httpx.get(f"{url}/healthz", timeout=5).status_code == 200,
        timeout=30,
        what="/healthz to answer 200 again",
    )
    back = httpx.get(f"{url}/api/me", headers={"Authorization": "Bearer vrak_abc.def"}, timeout=10)
    print(f"database back: /healthz 200 after {took:.1f} s, /api/me {back.status_code}")
    assert back.status_code == 401  # the database answers again: a bad token is just bad
    assert web.popen.poll() is None
    assert any("db.unavailable" in line for line in web.stderr)
    web.stop_cleanly()
