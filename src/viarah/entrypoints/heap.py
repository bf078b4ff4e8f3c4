"""Short garbage-collector pauses in the long-running processes (web and worker).

CPython's full (generation 2) collection walks every tracked object. In the web process
about 156,000 of them exist once the app is loaded (modules, the app, the container,
SQLAlchemy's and Litestar's structures), so each full collection paused the event loop
for 80-100 ms, every few seconds under load: every request in flight waited it out, and
the fixed-rate benchmark's p99 showed it (link reads at 800/s: p50 1.9 ms, p99 60 ms).
Frozen once the process is ready, those objects are left out of every collection; a full
collection then takes ~2 ms (`bench/` and docs/performance.md).
"""

from __future__ import annotations

import gc
import logging

log = logging.getLogger("viarah.heap")


def freeze_startup_objects() -> int:
    """Collect once, then move every surviving object to the permanent generation (never
    scanned again; they live as long as the process anyway). Returns how many."""
    gc.collect()
    gc.freeze()
    frozen = gc.get_freeze_count()
    log.debug("heap.frozen objects=%d", frozen)
    return frozen


async def freeze_when_started() -> None:
    """The same, as a web app's last startup hook."""
    freeze_startup_objects()
