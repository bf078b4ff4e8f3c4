"""ViaRah."""

import sys

# httpx imports its command-line client (click, rich, pygments) on every ``import httpx``
# when those are installed, as they are here (Litestar needs click and rich): ~4 MB of
# every ViaRah process's memory for a tool ViaRah never runs (encode/httpx#3547). Marking
# the module absent makes httpx fall back to its stub ``httpx.main``. Nothing else changes.
sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]
