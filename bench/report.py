"""The issue's targets, the printed table and the JSON file."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: Issue #6's targets (2-core machine, everything local, one web and one worker process).
WEBHOOK_RPS = 600
WEBHOOK_P99_MS = 50
WEBHOOK_HEALTHZ_RATIO = 0.40
LINKS_RPS = 800
LINKS_P99_MS = 50
PUSH_FLOOR_RATIO = 0.70
REFRESH_CALLS = 1
REFRESH_SECONDS = 2.0
WEB_RSS_MB = 120
COLD_START_SECONDS = 3.0


@dataclass(frozen=True)
class Target:
    name: str
    wanted: str
    measured: str
    met: bool | None  # None: not measured in this run
    margin: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "target": self.wanted,
            "measured": self.measured,
            "met": self.met,
            "margin": self.margin,
        }


def _pct(value: float, wanted: float, *, lower_is_better: bool = False) -> str:
    if wanted == 0:
        return ""
    change = (value - wanted) / wanted * 100
    if lower_is_better:
        change = -change
    return f"{change:+.0f} %"


def _at(results: dict[str, Any], *path: str) -> Any:
    node: Any = results
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node


def _open_loop_at(results: dict[str, Any], what: str, rate: float) -> dict[str, Any] | None:
    for run in _at(results, "open_loop", what) or []:
        if run.get("purpose") == "target" and "skipped" not in run and abs(run["rate"] - rate) < 1:
            return dict(run)
    return None


def evaluate(results: dict[str, Any]) -> list[Target]:
    targets: list[Target] = []

    def add(name: str, wanted: str, value: float | None, ok: bool, shown: str, margin: str) -> None:
        targets.append(
            Target(
                name,
                wanted,
                shown if value is not None else "not run",
                ok if value is not None else None,
                margin if value is not None else "",
            )
        )

    def rate_targets(key: str, label: str, rps_target: int, p99_target: float) -> None:
        """Throughput at 64 connections, and p99 at the target rate (open loop)."""
        rps = _at(results, key, "64", "rps")
        add(
            f"{label} throughput (64 conn)",
            f">= {rps_target} req/s",
            rps,
            rps is not None and rps >= rps_target,
            f"{rps} req/s",
            _pct(rps or 0, rps_target),
        )
        name = f"{label} p99 at {rps_target} req/s (fixed rate, 64 conn)"
        ol = _open_loop_at(results, key, rps_target)
        if ol is None:
            add(
                name,
                f"<= {p99_target} ms",
                0 if rps is not None else None,
                False,
                "rate not reachable",
                "",
            )
            return
        add(
            name,
            f"<= {p99_target} ms",
            ol["p99_ms"],
            ol["p99_ms"] <= p99_target and ol["errors"] == 0,
            f"{ol['p99_ms']} ms",
            _pct(ol["p99_ms"], p99_target, lower_is_better=True),
        )

    rate_targets("webhook", "webhook ingest", WEBHOOK_RPS, WEBHOOK_P99_MS)
    ratio = _at(results, "webhook", "64", "ratio_to_healthz")
    add(
        "webhook ingest vs /healthz (64 conn)",
        f">= {WEBHOOK_HEALTHZ_RATIO:.0%}",
        ratio,
        ratio is not None and ratio >= WEBHOOK_HEALTHZ_RATIO,
        f"{(ratio or 0):.0%}",
        _pct(ratio or 0, WEBHOOK_HEALTHZ_RATIO),
    )
    lost = [d for d in _drains(results) if not d.get("nothing_lost")]
    drains = _drains(results)
    add(
        "webhook deliveries: accepted == stored == processed",
        "nothing lost",
        len(drains) if drains else None,
        not lost,
        "nothing lost" if not lost else f"{len(lost)} run(s) lost deliveries",
        "",
    )
    rate_targets("links", "link reads", LINKS_RPS, LINKS_P99_MS)
    push_ratio = _at(results, "push", "ratio_to_floor")
    add(
        "push fan-out vs crypto floor",
        f">= {PUSH_FLOOR_RATIO:.0%}",
        push_ratio,
        push_ratio is not None
        and push_ratio >= PUSH_FLOOR_RATIO
        and bool(_at(results, "push", "fanout", "all_checks_pass")),
        f"{(push_ratio or 0):.0%}",
        _pct(push_ratio or 0, PUSH_FLOOR_RATIO),
    )
    calls = _at(results, "refresh", "gitlab_calls")
    add(
        "refresh fan-out GitLab calls",
        f"== {REFRESH_CALLS}",
        calls,
        calls == REFRESH_CALLS,
        str(calls),
        "",
    )

    def at_most(name: str, value: float | None, limit: float, unit: str) -> None:
        add(
            name,
            f"<= {limit} {unit}",
            value,
            value is not None and value <= limit,
            f"{value} {unit}",
            _pct(value or 0, limit, lower_is_better=True),
        )

    at_most(
        "refresh fan-out: all links updated",
        _at(results, "refresh", "seconds_until_all_links_updated"),
        REFRESH_SECONDS,
        "s",
    )
    at_most("web RSS after the runs", _at(results, "memory", "web_rss_mb"), WEB_RSS_MB, "MB")
    at_most(
        "viarah serve cold start (worst run)",
        _at(results, "cold_start", "max_seconds"),
        COLD_START_SECONDS,
        "s",
    )
    return targets


def _drains(results: dict[str, Any]) -> list[dict[str, Any]]:
    found = [
        run["drain"]
        for key in ("webhook", "webhook_worker_paused")
        for run in (results.get(key) or {}).values()
        if "drain" in run
    ]
    found += [run["drain"] for run in _at(results, "open_loop", "webhook") or [] if "drain" in run]
    return found


# -- printing --------------------------------------------------------------------------


def _row(cells: list[str], widths: list[int]) -> str:
    return "  ".join(
        c.ljust(w) if i == 0 else c.rjust(w)
        for i, (c, w) in enumerate(zip(cells, widths, strict=True))
    )


def table(results: dict[str, Any]) -> str:
    """The human summary: one line per measurement, then the targets."""
    lines: list[str] = []
    head = ["measurement", "conn", "req/s", "p50 ms", "p99 ms", "errors", "vs healthz"]
    widths = [48, 5, 9, 8, 8, 7, 10]
    lines.append(_row(head, widths))
    lines.append("-" * (sum(widths) + 2 * (len(widths) - 1)))
    healthz = results.get("healthz") or {}
    for label, key in (
        ("GET /healthz", "healthz"),
        ("POST webhook (Issue Hook)", "webhook"),
        ("POST webhook, worker paused (web alone)", "webhook_worker_paused"),
        ("GET task gitlab-links (20 links)", "links"),
    ):
        for conns, run in (results.get(key) or {}).items():
            base = healthz.get(conns, {}).get("rps")
            ratio = f"{run['rps'] / base:.0%}" if base and key != "healthz" else ""
            lines.append(
                _row(
                    [
                        label,
                        str(conns),
                        f"{run['rps']:.0f}",
                        f"{run['p50_ms']:.1f}",
                        f"{run['p99_ms']:.1f}",
                        str(run["errors"]),
                        ratio,
                    ],
                    widths,
                )
            )
    for what, label in (("webhook", "webhook, fixed rate"), ("links", "gitlab-links, fixed rate")):
        for run in _at(results, "open_loop", what) or []:
            if "skipped" in run:
                lines.append(f"{label} {run['rate']}/s ({run['purpose']}): {run['skipped']}")
                continue
            lines.append(
                _row(
                    [
                        f"{label} {run['rate']:.0f}/s ({run['purpose']})",
                        str(run["connections"]),
                        f"{run['achieved_rps']:.0f}",
                        f"{run['p50_ms']:.1f}",
                        f"{run['p99_ms']:.1f}",
                        str(run["errors"]),
                        "",
                    ],
                    widths,
                )
            )
    lines.append("")
    drained = [(f"{c} conn", r) for c, r in (results.get("webhook") or {}).items()]
    drained += [
        (f"{c} conn, worker paused during the load", r)
        for c, r in (results.get("webhook_worker_paused") or {}).items()
    ]
    for conns, run in drained:
        d = run.get("drain")
        if d:
            lines.append(
                f"webhook drain ({conns}): accepted {d['accepted']}, stored {d['stored']}, "
                f"processed {d['processed']}, failed {d['failed']}; drained "
                f"{d['drain_seconds_after_load']} s after the load stopped; "
                f"{'nothing lost' if d['nothing_lost'] else 'LOST DELIVERIES'}"
            )
    for run in _at(results, "open_loop", "webhook") or []:
        d = run.get("drain")
        if d:
            lines.append(
                f"webhook drain (fixed rate {run['rate']:.0f}/s): accepted {d['accepted']}, "
                f"stored {d['stored']}, processed {d['processed']}; drained "
                f"{d['drain_seconds_after_load']} s after; "
                f"{'nothing lost' if d['nothing_lost'] else 'LOST DELIVERIES'}"
            )
    push = results.get("push") or {}
    if push:
        floor = push.get("crypto_floor", {})
        lines.append(
            f"push crypto floor (pywebpush encode + fresh VAPID signature): "
            f"{floor.get('ops_per_second')} ops/s on one core (ViaRah's preparation with a "
            f"fresh signature: {floor.get('viarah_prepare_fresh_signature_per_second')}/s, "
            f"with its cached JWT: {floor.get('send_path_prepare_per_second')}/s)"
        )
        for cap in push.get("fake_capacity", []):
            lines.append(
                f"push fake capacity ({cap['mode']}): {cap['messages_per_second']} msg/s, "
                f"errors {cap['errors']}"
            )
        for label, what in (
            ("fanout", "first, connections opened during the run"),
            ("fanout_warm", "second, connections open"),
        ):
            fan = push.get(label)
            if not fan:
                continue
            lines.append(
                f"push fan-out ({what}): {fan['delivered']}/{fan['subscriptions']} delivered, "
                f"{fan['decrypted_and_correct']} decrypted and correct, {fan['duplicates']} "
                f"duplicates, in {fan['seconds_enqueue_to_last_sent']} s = "
                f"{fan['messages_per_second']} msg/s = {fan.get('ratio_to_floor', 0):.0%} of "
                f"the floor (webhook → last message {fan['seconds_webhook_to_last_sent']} s, "
                f"{fan['sender_connections']} connections)"
            )
    refresh = results.get("refresh")
    if refresh:
        lines.append(
            f"refresh fan-out: {refresh['links']} links, {refresh['gitlab_calls']} GitLab "
            f"call(s), all updated {refresh['seconds_until_all_links_updated']} s after the webhook"
        )
    memory = results.get("memory")
    if memory:
        lines.append(
            f"memory after the runs: web {memory['web_rss_mb']} MB, "
            f"worker {memory['worker_rss_mb']} MB RSS"
        )
    cold = results.get("cold_start")
    if cold:
        lines.append(
            f"viarah serve cold start to first 200: {cold['median_seconds']} s median "
            f"(runs {cold['runs']})"
        )
    lines.append("")
    lines.append("targets (issue #6):")
    for target in results.get("targets", []):
        mark = {True: "MET   ", False: "MISSED", None: "n/a   "}[target["met"]]
        margin = f" ({target['margin']})" if target["margin"] else ""
        lines.append(
            f"  {mark} {target['name']}: {target['measured']} (target {target['target']}){margin}"
        )
    return "\n".join(lines)


def write_json(results: dict[str, Any], directory: Path, stamp: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{stamp}.json"
    path.write_text(json.dumps(results, indent=2, default=str) + "\n")
    return path
