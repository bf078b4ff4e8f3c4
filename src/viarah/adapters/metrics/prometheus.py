"""``PrometheusTelemetry``: the domain's ``Telemetry`` port over a prometheus_client registry.

Each telemetry object owns one :class:`CollectorRegistry` (never the library's global
one) holding exactly the families :data:`viarah.domain.shared.telemetry.METRICS`
declares, named ``viarah_<name>`` (counters get the ``_total`` suffix), plus the standard
``process_*`` and ``python_info`` metrics. Recording an undeclared name or the wrong
labels raises ValueError: it is a programming error.

Backlog gauges (queue depth and friends) are not recorded by anyone: each scrape reads
them through a function given to :meth:`PrometheusTelemetry.exposition` or
:meth:`PrometheusTelemetry.serve`. When that function fails (database away, too slow),
the scrape still succeeds and says ``viarah_database_up 0``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar
from wsgiref.simple_server import WSGIServer

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
    start_http_server,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import Metric as PrometheusMetric
from prometheus_client.registry import Collector

from viarah.domain.shared.telemetry import (
    GITLAB_CALL_SECONDS,
    HTTP_REQUEST_SECONDS,
    JOB_SECONDS,
    METRICS,
    PUSH_SEND_SECONDS,
    Backlog,
    MetricKind,
    check,
)

log = logging.getLogger("viarah.metrics")

PREFIX = "viarah_"
#: Histogram buckets (seconds) by metric; the library's defaults (5 ms .. 10 s) otherwise.
BUCKETS: dict[str, tuple[float, ...]] = {
    HTTP_REQUEST_SECONDS: (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
    JOB_SECONDS: (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0),
    GITLAB_CALL_SECONDS: (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
    PUSH_SEND_SECONDS: (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
}

BacklogReader = Callable[[], Backlog | None]

#: The gauges read at scrape time: name → (label names, meaning).
BACKLOG_GAUGES: dict[str, tuple[tuple[str, ...], str]] = {
    "viarah_database_up": ((), "1 when the backlog queries answered during this scrape, else 0"),
    "viarah_outbox_jobs": (
        ("status",),
        "Outbox jobs by status: pending, dispatched, running, failed (capped)",
    ),
    "viarah_outbox_oldest_due_seconds": (
        (),
        "Seconds since the oldest pending outbox job became due (0 when none waits)",
    ),
    "viarah_webhook_deliveries": (
        ("status",),
        "GitLab webhook deliveries by status: received (not processed yet), failed (capped)",
    ),
    "viarah_push_deliveries": (("status",), "Push deliveries by status: pending, failed (capped)"),
    "viarah_workers_alive": ((), "Workers whose heartbeat is recent enough to count as alive"),
}


def _help(name: str) -> str:
    return BACKLOG_GAUGES[name][1]


class BacklogCollector:
    """Reads the backlog once per collection and turns it into gauges."""

    def __init__(self, read: BacklogReader) -> None:
        self._read = read

    def collect(self) -> Iterable[PrometheusMetric]:
        try:
            backlog = self._read()
        except Exception as exc:
            log.warning("metrics.backlog_unreadable error=%s", type(exc).__name__)
            backlog = None
        up = "viarah_database_up"
        yield GaugeMetricFamily(up, _help(up), value=0 if backlog is None else 1)
        if backlog is None:
            return
        by_status = (
            ("viarah_outbox_jobs", backlog.outbox),
            ("viarah_webhook_deliveries", backlog.webhook_deliveries),
            ("viarah_push_deliveries", backlog.push_deliveries),
        )
        for name, counts in by_status:
            family = GaugeMetricFamily(name, _help(name), labels=["status"])
            for status, count in sorted(counts.items()):
                family.add_metric([status], count)
            yield family
        oldest = "viarah_outbox_oldest_due_seconds"
        yield GaugeMetricFamily(oldest, _help(oldest), value=backlog.oldest_due_seconds)
        alive = "viarah_workers_alive"
        yield GaugeMetricFamily(alive, _help(alive), value=backlog.workers_alive)


class _Scrape:
    """One scrape: the recorded families, then the backlog gauges."""

    def __init__(self, *collectors: Collector) -> None:
        self._collectors = collectors

    def collect(self) -> Iterator[PrometheusMetric]:
        for collector in self._collectors:
            yield from collector.collect()


class MetricsServer:
    """A running ``/metrics`` HTTP server (prometheus_client's, in a daemon thread)."""

    def __init__(self, server: WSGIServer, thread: threading.Thread) -> None:
        self._server = server
        self._thread = thread

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def close(self) -> None:
        """Stop serving and release the port (idempotent)."""
        if not self._thread.is_alive():
            return
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


_Family = TypeVar("_Family", Counter, Histogram)


def _series(
    known: dict[tuple[object, ...], _Family],
    families: dict[str, _Family],
    kind: MetricKind,
    name: str,
    labels: dict[str, str],
) -> _Family:
    """The series of family ``name`` for these label values, checked the first time."""
    key = (name, *labels.items())
    series = known.get(key)
    if series is None:
        check(name, kind, labels)
        family = families[name]
        series = known[key] = family.labels(**labels) if labels else family
    return series


class PrometheusTelemetry:
    """Counters and histograms of the catalogue in a registry of their own (thread-safe)."""

    def __init__(self, *, process_metrics: bool = True) -> None:
        # No *_created series: they would double every family. (A process-wide switch of
        # prometheus_client; ViaRah never wants them.)
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = CollectorRegistry()
        self._counters: dict[str, Counter] = {}
        self._histograms: dict[str, Histogram] = {}
        #: Each series, by (name, *label items), checked once: a push message or a request
        #: records two or three series, and ``labels()`` costs more than ``inc()``.
        self._counter_series: dict[tuple[object, ...], Counter] = {}
        self._histogram_series: dict[tuple[object, ...], Histogram] = {}
        for metric in METRICS.values():
            name = PREFIX + metric.name
            if metric.kind is MetricKind.COUNTER:
                self._counters[metric.name] = Counter(
                    name, metric.meaning, metric.labels, registry=self.registry
                )
            else:
                self._histograms[metric.name] = Histogram(
                    name,
                    metric.meaning,
                    metric.labels,
                    registry=self.registry,
                    buckets=BUCKETS.get(metric.name, Histogram.DEFAULT_BUCKETS),
                )
        if process_metrics:
            ProcessCollector(registry=self.registry)
            PlatformCollector(registry=self.registry)

    def __repr__(self) -> str:
        return f"PrometheusTelemetry(families={len(METRICS)})"

    def count(self, name: str, amount: float = 1, **labels: str) -> None:
        counters = self._counter_series, self._counters
        _series(*counters, MetricKind.COUNTER, name, labels).inc(amount)

    def observe(self, name: str, seconds: float, **labels: str) -> None:
        histograms = self._histogram_series, self._histograms
        _series(*histograms, MetricKind.HISTOGRAM, name, labels).observe(max(0.0, seconds))

    def exposition(self, backlog: BacklogReader, accept: str = "") -> tuple[bytes, str]:
        """The text exposition (format chosen from an ``Accept`` header, the classic
        ``text/plain; version=0.0.4`` by default) and its Content-Type."""
        encoder, content_type = choose_encoder(accept)
        return encoder(_Scrape(self.registry, BacklogCollector(backlog))), content_type

    def serve(self, host: str, port: int, backlog: BacklogReader) -> MetricsServer:
        """Serve the metrics over HTTP on ``host:port`` from a daemon thread; each scrape
        calls ``backlog`` in that thread. OSError when the address cannot be bound."""
        server, thread = start_http_server(
            port, addr=host, registry=_Scrape(self.registry, BacklogCollector(backlog))
        )
        return MetricsServer(server, thread)
