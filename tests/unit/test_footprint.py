"""What a ViaRah process loads: nothing it never runs (each module costs memory)."""

from __future__ import annotations

import subprocess
import sys


def test_the_web_app_does_not_load_httpx_command_line_client() -> None:
    code = (
        "import sys, viarah.entrypoints.web.asgi, httpx\n"
        "print(sorted(m for m in ('httpx._main', 'rich', 'pygments') if sys.modules.get(m)))\n"
        "print(callable(httpx.get), callable(httpx.AsyncClient))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout.split("\n")
    assert out[0] == "[]"
    assert out[1] == "True True"
