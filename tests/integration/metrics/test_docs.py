"""docs/operator-basics.md lists exactly the metrics ViaRah exports, with their labels."""

from __future__ import annotations

import re
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from viarah.adapters.metrics.prometheus import BACKLOG_GAUGES, PrometheusTelemetry
from viarah.domain.shared.telemetry import METRICS, Backlog, MetricKind

DOC = Path(__file__).resolve().parents[3] / "docs" / "operator-basics.md"
ROW = re.compile(r"^\| `(viarah_\w+)` \| (\w+) \| ([^|]*) \|", re.MULTILINE)


def documented() -> dict[str, tuple[str, set[str]]]:
    text = DOC.read_text(encoding="utf-8")
    section = text.split("\n## Metrics\n", 1)[1].split("\n## ", 1)[0]
    return {
        name: (kind, set(re.findall(r"`(\w+)`", labels)))
        for name, kind, labels in ROW.findall(section)
    }


def exported() -> dict[str, tuple[str, set[str]]]:
    found: dict[str, tuple[str, set[str]]] = {}
    for metric in METRICS.values():
        suffix = "_total" if metric.kind is MetricKind.COUNTER else ""
        found[f"viarah_{metric.name}{suffix}"] = (metric.kind.value, set(metric.labels))
    for name, (labels, _meaning) in BACKLOG_GAUGES.items():
        found[name] = ("gauge", set(labels))
    return found


def test_the_metrics_table_matches_what_is_exported() -> None:
    assert documented() == exported()


def test_the_exported_families_are_the_declared_ones() -> None:
    backlog = Backlog({"pending": 1}, 0.0, {"received": 0}, {"pending": 0}, 1, 10_000)
    body, _ = PrometheusTelemetry(process_metrics=False).exposition(lambda: backlog)
    names = {family.name for family in text_string_to_metric_families(body.decode())}
    # the parser drops a counter's _total suffix
    assert names == {name.removesuffix("_total") for name in exported()}
