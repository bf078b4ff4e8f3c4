"""A Telemetry that remembers what was recorded, and refuses what the catalogue does not
declare (as the Prometheus adapter does)."""

from __future__ import annotations

from collections import Counter

from viarah.domain.shared.telemetry import MetricKind, check

Labels = tuple[tuple[str, str], ...]


def _key(labels: dict[str, str]) -> Labels:
    return tuple(sorted(labels.items()))


class RecordingTelemetry:
    """``counts[(name, labels)]`` is a counter's total; ``observations`` every duration."""

    def __init__(self) -> None:
        self.counts: Counter[tuple[str, Labels]] = Counter()
        self.observations: list[tuple[str, Labels, float]] = []

    def count(self, name: str, amount: float = 1, **labels: str) -> None:
        check(name, MetricKind.COUNTER, labels)
        self.counts[(name, _key(labels))] += amount

    def observe(self, name: str, seconds: float, **labels: str) -> None:
        check(name, MetricKind.HISTOGRAM, labels)
        self.observations.append((name, _key(labels), seconds))

    def total(self, name: str, **labels: str) -> float:
        """The counter ``name`` summed over every series matching ``labels``."""
        wanted = set(labels.items())
        return sum(
            amount
            for (counted, key), amount in self.counts.items()
            if counted == name and wanted <= set(key)
        )

    def durations(self, name: str, **labels: str) -> list[float]:
        wanted = set(labels.items())
        return [
            seconds
            for observed, key, seconds in self.observations
            if observed == name and wanted <= set(key)
        ]
