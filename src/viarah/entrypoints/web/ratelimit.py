"""Login throttling: a small in-memory sliding window of failures per client IP and e-mail.

Per process, which is enough to make password guessing slow; a multi-worker deployment
gets one window per worker (documented), and a restart forgets the counts.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable

DEFAULT_MAX_FAILURES = 10
DEFAULT_WINDOW_SECONDS = 300.0
#: Distinct (ip, email) keys remembered at most; the stalest are forgotten first.
MAX_KEYS = 10_000


class LoginRateLimited(Exception):
    """Too many recent failures for this client and e-mail."""

    def __init__(self, retry_after: int) -> None:
        super().__init__("too many failed login attempts")
        self.retry_after = retry_after


class LoginThrottle:
    """At most ``max_failures`` failed logins per ``window_seconds`` for one (ip, email)."""

    def __init__(
        self,
        max_failures: int = DEFAULT_MAX_FAILURES,
        window_seconds: float = DEFAULT_WINDOW_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._max = max_failures
        self._window = window_seconds
        self._clock = clock
        self._failures: dict[tuple[str, str], deque[float]] = {}
        self._lock = threading.Lock()

    @staticmethod
    def key(client_ip: str, email: str) -> tuple[str, str]:
        return client_ip, email.strip().lower()

    def check(self, client_ip: str, email: str) -> None:
        """Raise :class:`LoginRateLimited` if this client may not try again yet."""
        key = self.key(client_ip, email)
        now = self._clock()
        with self._lock:
            failures = self._failures.get(key)
            if failures is None:
                return
            self._expire(failures, now)
            if not failures:
                del self._failures[key]
                return
            if len(failures) >= self._max:
                retry_after = failures[0] + self._window - now
                raise LoginRateLimited(max(1, math.ceil(retry_after)))

    def failed(self, client_ip: str, email: str) -> None:
        """Record one failed attempt."""
        key = self.key(client_ip, email)
        now = self._clock()
        with self._lock:
            failures = self._failures.pop(key, None) or deque()
            self._expire(failures, now)
            failures.append(now)
            self._failures[key] = failures  # re-inserted: dict order is least recent first
            while len(self._failures) > MAX_KEYS:
                del self._failures[next(iter(self._failures))]

    def succeeded(self, client_ip: str, email: str) -> None:
        """A successful login clears the failures of this client and e-mail."""
        with self._lock:
            self._failures.pop(self.key(client_ip, email), None)

    def _expire(self, failures: deque[float], now: float) -> None:
        while failures and failures[0] <= now - self._window:
            failures.popleft()
