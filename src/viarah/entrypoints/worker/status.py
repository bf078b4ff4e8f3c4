"""Operator-facing status lines (``worker: ready``, ``heartbeat: alive`` ...) and logging.

Status lines go to stdout, flushed at once, so that a supervisor, ``docker logs`` or a
test reading the pipe sees them as they happen. Log records go to stderr.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable

Say = Callable[[str], None]

_print_lock = threading.Lock()


def say(line: str) -> None:
    """Print one status line on stdout and flush it (safe from any thread)."""
    with _print_lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


class Outage:
    """Tracks one dependency; prints one line when it goes down and one when it is back.

    Repeated failures while down print nothing more, so an outage is two lines, not a flood.
    """

    def __init__(self, name: str, say: Say) -> None:
        self._name = name
        self._say = say
        self._down = False

    @property
    def is_down(self) -> bool:
        return self._down

    def down(self, why: str) -> None:
        if not self._down:
            self._down = True
            self._say(f"{self._name}: unreachable ({why}); retrying")

    def up(self) -> None:
        if self._down:
            self._down = False
            self._say(f"{self._name}: reachable again")


class _QuietBrokerErrors(logging.Filter):
    """Drops dramatiq's per-retry connection-error records (one every few seconds while
    Redis is down); the worker reports the outage itself with one line each way."""

    _NOISE = (
        "connection error",
        "Restarting consumer",
        "Failed to post_process_message",
        "Failed to requeue messages",
    )

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith("dramatiq"):
            return True
        message = str(record.msg)
        return not any(noise in message for noise in self._NOISE)


def configure_logging(level: str) -> None:
    """Records on stderr at ``level``; dramatiq's and alembic's chatter kept at WARNING."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    handler.addFilter(_QuietBrokerErrors())
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level)
    dramatiq_level = logging.DEBUG if level == "DEBUG" else logging.WARNING
    logging.getLogger("dramatiq").setLevel(dramatiq_level)
    logging.getLogger("alembic").setLevel(dramatiq_level)
    # httpx logs every request URL at INFO (a push endpoint URL is a capability) and
    # httpcore's DEBUG trace prints response headers: neither belongs in ViaRah's log.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)
