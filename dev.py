#!/usr/bin/env python3
"""Developer entry point: needs only Python 3.11+.

    python3 dev.py serve    # install into .venv, then run ViaRah (embedded SQLite, no services)
    python3 dev.py test     # install into .venv (with dev tools), then run the whole test suite
    python3 dev.py lint     # ruff (lint + format check), mypy, import-linter

Extra arguments are passed on: ``python3 dev.py test tests/unit -x``,
``python3 dev.py serve --port 9000``.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
STAMP = VENV / ".viarah-installed"


def run(*cmd: str | Path) -> int:
    return subprocess.call([str(c) for c in cmd], cwd=ROOT)


def ensure_installed(extras: str) -> None:
    """Create .venv and install the project (editable) when pyproject.toml changed."""
    if sys.version_info < (3, 11):  # noqa: UP036 - dev.py runs on whatever python3 is
        sys.exit(f"ViaRah needs Python 3.11 or newer; this is {sys.version.split()[0]}")
    if not (BIN / "python").exists():
        print("dev: creating .venv", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    installed = STAMP.read_text().split() if STAMP.exists() else []
    # An install with the dev extras also serves "serve".
    if installed and installed[0] == digest and (not extras or extras in installed[1:]):
        return
    print(f"dev: installing ViaRah{extras} into .venv", flush=True)
    pip = [BIN / "python", "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    if run(*pip, "--upgrade", "pip") or run(*pip, "-e", f".{extras}"):
        sys.exit("dev: installation failed (see pip's output above)")
    STAMP.write_text(f"{digest} {extras}".strip())


def main(argv: list[str]) -> int:
    command, rest = (argv[0], argv[1:]) if argv else ("help", [])
    if command == "serve":
        ensure_installed("")
        return run(BIN / "viarah", "serve", *rest)
    if command == "test":
        ensure_installed("[dev]")
        return run(BIN / "python", "-m", "pytest", *rest)
    if command == "lint":
        ensure_installed("[dev]")
        checks = [
            (BIN / "ruff", "check", "."),
            (BIN / "ruff", "format", "--check", "."),
            (BIN / "mypy",),
            (BIN / "lint-imports",),
        ]
        return max(run(*check) for check in checks)
    print(__doc__)
    return 0 if command == "help" else 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
