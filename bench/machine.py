"""The tools the benchmark needs, and a description of the machine it ran on."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

INSTALL_HINT = {
    "wrk": "apt-get install wrk   (Debian/Ubuntu; macOS: brew install wrk)",
}


class MissingTool(Exception):
    """A tool the benchmark drives is not installed; the message says how to get it."""


def require_tools() -> dict[str, str]:
    """Paths of the external tools, or MissingTool naming how to install each missing one.

    The benchmark never installs anything itself.
    """
    found: dict[str, str] = {}
    missing: list[str] = []
    for tool, hint in INSTALL_HINT.items():
        path = shutil.which(tool)
        if path is None:
            missing.append(f"{tool} is not installed: {hint}")
        else:
            found[tool] = path
    if missing:
        raise MissingTool("; ".join(missing))
    return found


def _first_line(argv: list[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    text = (done.stdout or done.stderr).strip().splitlines()
    return text[0] if text else "unknown"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _mem_total_gib() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return 0.0


def load_average() -> float:
    """The 1-minute load average (0.0 where unknown)."""
    try:
        return os.getloadavg()[0]
    except OSError:
        return 0.0


def describe_machine(postgres_version: str, redis_version: str) -> dict[str, Any]:
    """What a reader needs to compare a result with their own machine."""
    return {
        "nproc": len(os.sched_getaffinity(0))
        if hasattr(os, "sched_getaffinity")
        else os.cpu_count(),
        "cpu_model": _cpu_model(),
        "ram_gib": _mem_total_gib(),
        "kernel": platform.release(),
        "os": _os_name(),
        "python": sys.version.split()[0],
        "postgresql": postgres_version,
        "redis": redis_version,
        "wrk": _first_line(["wrk", "--version"]).split(" [")[0],
        "load_average_1m_at_start": round(load_average(), 2),
        "code": _git_state(),
    }


def _git_state() -> str:
    """The commit measured, and whether the working tree had uncommitted changes."""
    head = _first_line(["git", "rev-parse", "--short", "HEAD"])
    try:
        changed = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", "src"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        ).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return head
    return f"{head} + uncommitted changes in src/" if changed else head


def _os_name() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip('"')
    except OSError:
        pass
    return platform.platform()


def rss_mb(pid: int) -> float | None:
    """Resident memory of ``pid`` in MB (psutil when installed, else /proc/<pid>/status)."""
    try:
        import psutil  # type: ignore[import-not-found]

        return round(psutil.Process(pid).memory_info().rss / 1e6, 1)
    except ImportError:
        pass
    except Exception:
        return None
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) * 1024 / 1e6, 1)
    except OSError:
        return None
    return None


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time ``pid`` has used so far (from /proc/<pid>/stat)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def postgres_cpu_seconds() -> float:
    """CPU time of every ``postgres`` process of this machine we can read (the server's
    backends come and go; summing them before and after a run gives its share)."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "comm").read_text().strip() != "postgres":
                continue
        except OSError:
            continue
        used = cpu_seconds(int(entry.name))
        total += used or 0.0
    return total


class CpuMeter:
    """CPU used by named processes between :meth:`start` and :meth:`stop`, in cores
    (1.0 = one core busy the whole time)."""

    def __init__(self, pids: dict[str, int], *, postgres: bool = True) -> None:
        self._pids = pids
        self._postgres = postgres
        self._start: dict[str, float] = {}
        self._t0 = 0.0

    def _sample(self) -> dict[str, float]:
        sample = {name: cpu_seconds(pid) or 0.0 for name, pid in self._pids.items()}
        if self._postgres:
            sample["postgres"] = postgres_cpu_seconds()
        return sample

    def start(self) -> CpuMeter:
        import time

        self._t0 = time.monotonic()
        self._start = self._sample()
        return self

    def stop(self) -> dict[str, float]:
        import time

        wall = time.monotonic() - self._t0
        end = self._sample()
        if wall <= 0:
            return {}
        used = {name: round((end[name] - self._start.get(name, 0.0)) / wall, 2) for name in end}
        used["load_1m_at_end"] = round(load_average(), 2)  # other work on the machine shows here
        return used
