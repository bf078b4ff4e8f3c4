"""What the application measures: a closed catalogue of metrics and the port that records them.

Use cases and adapters record through :class:`Telemetry` (the container hands them one);
they never know how the numbers are exported. Every metric is declared in
:data:`METRICS` with its labels: recording an undeclared name, or the wrong labels, is a
programming error. Label values must come from small, fixed sets (a job name, an outcome
word, a route template), never from ids or user input.

:class:`Backlog` is what the database says about work waiting at one instant (read at
scrape time, not recorded by anyone).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol


class MetricKind(StrEnum):
    COUNTER = "counter"  # only goes up: count(name, amount)
    HISTOGRAM = "histogram"  # a distribution of durations in seconds: observe(name, seconds)


@dataclass(frozen=True, slots=True)
class Metric:
    """One declared metric: its name, kind, label names and meaning."""

    name: str
    kind: MetricKind
    labels: tuple[str, ...]
    meaning: str


#: Names, used by the code that records them.
JOBS = "jobs"
JOB_SECONDS = "job_seconds"
OUTBOX_RELAYED = "outbox_relayed"
GITLAB_CALLS = "gitlab_calls"
GITLAB_CALL_SECONDS = "gitlab_call_seconds"
PUSH_MESSAGES = "push_messages"
PUSH_SEND_SECONDS = "push_send_seconds"
HTTP_REQUESTS = "http_requests"
HTTP_REQUEST_SECONDS = "http_request_seconds"

_C, _H = MetricKind.COUNTER, MetricKind.HISTOGRAM

METRICS: Mapping[str, Metric] = {
    metric.name: metric
    for metric in (
        Metric(
            JOBS,
            _C,
            ("job", "outcome"),
            "Outbox jobs run, by job name and outcome (done, retry, failed, unknown).",
        ),
        Metric(JOB_SECONDS, _H, ("job",), "Time a job's handler ran, in seconds."),
        Metric(OUTBOX_RELAYED, _C, (), "Outbox jobs handed to the broker by the relay."),
        Metric(
            GITLAB_CALLS,
            _C,
            ("call", "outcome"),
            "Calls to GitLab's API, by call (issue, merge_request, user, token_info) and "
            "outcome (ok or the GitLab error code).",
        ),
        Metric(GITLAB_CALL_SECONDS, _H, ("call",), "Duration of GitLab API calls, in seconds."),
        Metric(
            PUSH_MESSAGES,
            _C,
            ("outcome",),
            "Web Push messages sent, by outcome (delivered, gone, retryable, failed, refused).",
        ),
        Metric(PUSH_SEND_SECONDS, _H, (), "Duration of one push service request, in seconds."),
        Metric(
            HTTP_REQUESTS,
            _C,
            ("method", "route", "status"),
            "HTTP requests answered, by method, route template and status code.",
        ),
        Metric(
            HTTP_REQUEST_SECONDS,
            _H,
            ("method", "route"),
            "Time to answer HTTP requests, in seconds, by method and route template.",
        ),
    )
}

#: Job outcomes (the ``outcome`` label of ``jobs``).
JOB_DONE, JOB_RETRY, JOB_FAILED, JOB_UNKNOWN = "done", "retry", "failed", "unknown"


def check(name: str, kind: MetricKind, labels: Mapping[str, str]) -> Metric:
    """The declared metric ``name``; ValueError when it is not declared as ``kind`` with
    exactly these label names (a programming error, never a runtime condition)."""
    metric = METRICS.get(name)
    if metric is None:
        raise ValueError(f"undeclared metric {name!r} (declare it in telemetry.METRICS)")
    if metric.kind is not kind:
        raise ValueError(f"metric {name!r} is a {metric.kind.value}, not a {kind.value}")
    if set(labels) != set(metric.labels):
        raise ValueError(
            f"metric {name!r} takes labels {sorted(metric.labels)}, got {sorted(labels)}"
        )
    return metric


class Telemetry(Protocol):
    """Records measurements. Implementations are thread-safe and never block on I/O."""

    def count(self, name: str, amount: float = 1, **labels: str) -> None:
        """Add ``amount`` to the counter ``name`` for these label values."""
        ...

    def observe(self, name: str, seconds: float, **labels: str) -> None:
        """Record one duration of ``seconds`` in the histogram ``name``."""
        ...


class NullTelemetry:
    """Records nothing (the default where no telemetry is wired, e.g. in tests)."""

    def count(self, name: str, amount: float = 1, **labels: str) -> None:
        return None

    def observe(self, name: str, seconds: float, **labels: str) -> None:
        return None


@dataclass(frozen=True, slots=True)
class Backlog:
    """Work waiting, as the database tells it at one instant.

    Counts stop at ``cap`` (a value equal to ``cap`` means "at least that many").
    """

    #: Outbox jobs by status (pending, dispatched, running, failed).
    outbox: Mapping[str, int]
    #: Seconds since the oldest pending job became due (0 when none is waiting).
    oldest_due_seconds: float
    #: GitLab webhook deliveries by status (received = not processed yet, failed).
    webhook_deliveries: Mapping[str, int]
    #: Push deliveries by status (pending, failed).
    push_deliveries: Mapping[str, int]
    #: Workers whose heartbeat is recent enough to be counted alive.
    workers_alive: int
    cap: int
