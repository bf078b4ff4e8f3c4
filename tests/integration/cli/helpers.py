"""Running ``viarah`` in-process."""

from __future__ import annotations

import io
import sys

import pytest

from viarah.entrypoints.cli.main import main


def run(
    capsys: pytest.CaptureFixture[str], *argv: str, stdin: str | None = None
) -> tuple[int, str, str]:
    """``viarah *argv`` in-process: (exit code, stdout, stderr)."""
    saved = sys.stdin
    if stdin is not None:
        sys.stdin = io.StringIO(stdin)
    try:
        code = main(list(argv))
    finally:
        sys.stdin = saved
    out, err = capsys.readouterr()
    return code, out, err
