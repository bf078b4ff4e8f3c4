"""``viarah serve`` cold start: a fresh temporary directory, the embedded defaults (no
DATABASE_URL, no BROKER_URL: SQLite created and migrated on start, in-process queue), and
the time from launching the command to the first 200 on /healthz."""

from __future__ import annotations

import signal
import subprocess
import tempfile
import time
from pathlib import Path
from statistics import median
from typing import Any

import httpx
from tests.system.processes import VIARAH, clean_env, free_port


def cold_start_once(timeout: float = 60) -> float:
    with tempfile.TemporaryDirectory(prefix="viarah-cold-") as tmp:
        port = free_port()
        url = f"http://127.0.0.1:{port}/healthz"
        log = (Path(tmp) / "serve.log").open("wb")
        started = time.monotonic()
        proc = subprocess.Popen(
            [str(VIARAH), "serve", "--port", str(port)],
            env=clean_env(),
            cwd=tmp,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            with httpx.Client(timeout=1) as client:
                while True:
                    try:
                        if client.get(url).status_code == 200:
                            return time.monotonic() - started
                    except httpx.TransportError:
                        pass
                    if proc.poll() is not None or time.monotonic() - started > timeout:
                        log.flush()
                        raise RuntimeError(
                            "viarah serve did not answer: "
                            + (Path(tmp) / "serve.log").read_text(errors="replace")[-500:]
                        )
                    time.sleep(0.01)
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            log.close()


def cold_start(runs: int = 3) -> dict[str, Any]:
    times = [cold_start_once() for _ in range(runs)]
    return {
        "runs": [round(t, 3) for t in times],
        "median_seconds": round(median(times), 3),
        "max_seconds": round(max(times), 3),
    }
