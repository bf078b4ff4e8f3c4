"""Optional sampling profiles with py-spy (``pip install py-spy``; needs ptrace rights).

``python -m bench --profile`` records the web process during the 64-connection webhook and
link runs and the worker during the push fan-out, as collapsed stacks
(``bench/results/<stamp>-profiles/<name>.txt``; feed them to any flame-graph tool), and
puts the top frames of each in the JSON. ``python -m bench.profile FILE`` prints them again.
Only the thread holding the GIL is sampled (``--gil``), 250 times a second: the samples
are CPU, not threads parked on a lock, a socket or the GIL (which py-spy otherwise counts
as busy in the frame they wait in).
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def _py_spy() -> str | None:
    """py-spy on PATH, or next to this interpreter (installed in the venv)."""
    beside = Path(sys.executable).with_name("py-spy")
    return shutil.which("py-spy") or (str(beside) if beside.exists() else None)


def available() -> bool:
    return _py_spy() is not None


@contextlib.contextmanager
def record(pid: int, out: Path, enabled: bool, rate: int = 250) -> Iterator[None]:
    """Sample ``pid`` while the block runs (a no-op when not ``enabled``)."""
    if not enabled:
        yield
        return
    proc = subprocess.Popen(
        [
            _py_spy() or "py-spy",
            "record",
            "--pid",
            str(pid),
            "--format",
            "raw",
            "--rate",
            str(rate),
            "--nonblocking",
            "--gil",
            "-o",
            str(out),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        yield
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _short(frame: str) -> str:
    """``func (path/to/module.py:123)`` → ``func (module.py)``; site-packages trimmed."""
    name, _, where = frame.partition(" (")
    where = where.rstrip(")")
    file = where.rsplit(":", 1)[0]
    for marker in ("site-packages/", "src/", "lib/python3"):
        if marker in file:
            file = file.split(marker, 1)[1]
            break
    return f"{name} ({file})"


def summarize(path: Path, top: int = 15) -> dict[str, Any]:
    """Self time (where the CPU is spent) and inclusive time (what it is spent for) of
    the hottest frames of a collapsed-stack file, in % of all samples."""
    self_time: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    packages: Counter[str] = Counter()
    total = 0
    if not path.exists():
        return {"samples": 0}
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [
            _short(f)
            for f in stack.split(";")
            if f and not f.startswith("process ") and not f.startswith("thread ")
        ]
        if not frames:
            continue
        total += count
        self_time[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
        leaf_file = frames[-1].rsplit("(", 1)[-1].rstrip(")")
        packages[leaf_file.split("/", 1)[0]] += count

    def pct(counter: Counter[str]) -> list[tuple[str, float]]:
        return (
            [(k, round(v / total * 100, 1)) for k, v in counter.most_common(top)] if total else []
        )

    return {
        "samples": total,
        "self": pct(self_time),
        "inclusive": pct(inclusive),
        "by_package_self": pct(packages),
    }


def main() -> None:
    for name in sys.argv[1:]:
        summary = summarize(Path(name))
        print(f"== {name}: {summary['samples']} samples")
        for section in ("by_package_self", "self", "inclusive"):
            print(f"-- {section}")
            for frame, share in summary.get(section, []):
                print(f"{share:6.1f} %  {frame}")


if __name__ == "__main__":
    main()
