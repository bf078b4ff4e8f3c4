"""The HTTP scenarios: /healthz, link reads and webhook ingest, closed loop (wrk) and
open loop (:mod:`bench.openloop`), and the worker's drain of the accepted deliveries."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bench.seed import LOAD_PROJECT, Seeded
from bench.stack import WEBHOOK_SECRET, Stack, StackFailed, wait_for
from bench.wrk import WrkResult, get_script, run_wrk, webhook_script


def issue_hook_body() -> str:
    """A realistic Issue Hook payload (about 1.5 KB) with ``__IID__`` for the issue's iid."""
    payload = {
        "object_kind": "issue",
        "event_type": "issue",
        "user": {
            "id": 1,
            "name": "Administrator",
            "username": "root",
            "avatar_url": "https://www.gravatar.com/avatar/e64c7d89f26bd1972efa854d13d7dd61",
            "email": "admin@example.com",
        },
        "project": {
            "id": 42,
            "name": "load",
            "description": "Benchmark project",
            "web_url": f"https://gitlab.example.com/{LOAD_PROJECT}",
            "git_ssh_url": f"git@gitlab.example.com:{LOAD_PROJECT}.git",
            "git_http_url": f"https://gitlab.example.com/{LOAD_PROJECT}.git",
            "namespace": "bench",
            "visibility_level": 0,
            "path_with_namespace": LOAD_PROJECT,
            "default_branch": "main",
        },
        "object_attributes": {
            "id": 990000,
            "iid": "__IID__",
            "title": "Mass label change from the release script",
            "description": "Moved to the next milestone by the release automation.",
            "state": "opened",
            "action": "update",
            "created_at": "2024-05-01 10:00:00 UTC",
            "updated_at": "2024-05-02 11:00:00 UTC",
            "labels": [{"id": 206, "title": "release::next", "color": "#dc143c"}],
            "assignee_ids": [51],
            "confidential": False,
            "url": f"https://gitlab.example.com/{LOAD_PROJECT}/-/issues/__IID__",
        },
        "labels": [{"id": 206, "title": "release::next", "color": "#dc143c"}],
        "changes": {
            "labels": {
                "previous": [{"id": 205, "title": "release::current", "color": "#009966"}],
                "current": [{"id": 206, "title": "release::next", "color": "#dc143c"}],
            },
            "updated_at": {
                "previous": "2024-05-01 10:00:00 UTC",
                "current": "2024-05-02 11:00:00 UTC",
            },
        },
        "repository": {"name": "load", "url": f"git@gitlab.example.com:{LOAD_PROJECT}.git"},
    }
    # iid must be a JSON number: the placeholder is substituted without quotes.
    return json.dumps(payload, separators=(",", ":")).replace('"__IID__"', "__IID__")


@dataclass
class Endpoints:
    healthz: str
    links: str
    webhook: str
    auth: dict[str, str]


def endpoints(stack: Stack, seeded: Seeded) -> Endpoints:
    return Endpoints(
        healthz="/healthz",
        links=f"/api/orgs/{seeded.org_id}/tasks/{seeded.links_task_id}/gitlab-links",
        webhook=f"/api/orgs/{seeded.org_id}/integrations/gitlab/webhook",
        auth={"Authorization": f"Bearer {seeded.api_token}"},
    )


def check_links_fresh(stack: Stack, ep: Endpoints, expected: int) -> None:
    """The task's links answer 200 with ``expected`` fresh (synced, non-stale) links."""
    response = httpx.get(stack.url + ep.links, headers=ep.auth, timeout=10)
    if response.status_code != 200:
        raise StackFailed(f"link read answered {response.status_code}: {response.text[:200]}")
    links = response.json()["links"]
    fresh = [lk for lk in links if lk["sync"]["status"] == "ok" and not lk["sync"]["stale"]]
    if len(links) != expected or len(fresh) != expected:
        raise StackFailed(f"expected {expected} fresh links, got {len(fresh)} of {len(links)}")


class HttpRuns:
    """wrk and open-loop runs against one stack; scripts go to the run directory."""

    def __init__(self, stack: Stack, seeded: Seeded, *, wrk_threads: int = 1) -> None:
        self.stack = stack
        self.seeded = seeded
        self.ep = endpoints(stack, seeded)
        self.wrk_threads = wrk_threads
        self.body = issue_hook_body()
        self.scripts = stack.run_dir / "wrk"
        self.scripts.mkdir(exist_ok=True)

    # -- closed loop -------------------------------------------------------------------

    def healthz(self, connections: int, seconds: float) -> WrkResult:
        script = get_script(self.scripts / "healthz.lua")
        return self._wrk(self.ep.healthz, script, connections, seconds)

    def links(self, connections: int, seconds: float) -> WrkResult:
        script = get_script(self.scripts / "links.lua", self.ep.auth)
        return self._wrk(self.ep.links, script, connections, seconds)

    def webhook(self, connections: int, seconds: float, key_prefix: str) -> WrkResult:
        script = webhook_script(
            self.scripts / f"webhook-{connections}.lua",
            secret=WEBHOOK_SECRET,
            body_template=self.body,
            objects=self.seeded.load_issues,
            key_prefix=key_prefix,
        )
        return self._wrk(self.ep.webhook, script, connections, seconds)

    def _wrk(self, path: str, script: Path, connections: int, seconds: float) -> WrkResult:
        self.stack.check_alive()
        result = run_wrk(
            self.stack.url + path,
            script,
            connections=connections,
            seconds=seconds,
            threads=self.wrk_threads,
        )
        self.stack.check_alive()
        return result

    # -- open loop ---------------------------------------------------------------------

    def open_loop(
        self, what: str, rate: float, seconds: float, connections: int, key_prefix: str = ""
    ) -> dict[str, Any]:
        """A fixed-rate run of ``what`` (``links`` or ``webhook``) in its own process."""
        if what == "links":
            requests: dict[str, Any] = {
                "kind": "get",
                "path": self.ep.links,
                "headers": self.ep.auth,
            }
        else:
            requests = {
                "kind": "webhook",
                "path": self.ep.webhook,
                "headers": {
                    "Content-Type": "application/json",
                    "X-Gitlab-Event": "Issue Hook",
                    "X-Gitlab-Token": WEBHOOK_SECRET,
                },
                "body_template": self.body,
                "objects": self.seeded.load_issues,
                "key_prefix": key_prefix,
            }
        spec = {
            "host": "127.0.0.1",
            "port": self.stack.port,
            "rate": rate,
            "seconds": seconds,
            "connections": connections,
            "timeout_s": 10,
            "requests": requests,
        }
        self.stack.check_alive()
        done = subprocess.run(
            [sys.executable, "-m", "bench.openloop"],
            input=json.dumps(spec),
            capture_output=True,
            text=True,
            timeout=seconds + 60,
            check=False,
        )
        if done.returncode != 0:
            raise StackFailed(f"open-loop generator failed: {done.stderr.strip()[-800:]}")
        self.stack.check_alive()
        result: dict[str, Any] = json.loads(done.stdout)
        return result

    # -- deliveries --------------------------------------------------------------------

    def delivery_counts(self, key_prefix: str) -> dict[str, int]:
        rows = self.stack.rows(
            "SELECT status, count(*) FROM webhook_deliveries "
            "WHERE idempotency_key LIKE %s GROUP BY status",
            f"key:{key_prefix}-%",
        )
        return {str(status): int(count) for status, count in rows}

    def drain(self, key_prefix: str, accepted: int, in_flight_bound: int) -> dict[str, Any]:
        """Wait until the worker has processed every delivery stored under ``key_prefix``;
        the time that took after the load stopped, and the nothing-lost check.

        ``accepted`` is what the client saw answered 202. wrk drops the requests still in
        flight when its time is up, so up to one per connection (``in_flight_bound``) may
        be stored without wrk having counted the answer; the open-loop generator waits
        for every answer (bound 0).
        """
        at_stop = self.delivery_counts(key_prefix)

        def drained() -> bool:
            self.stack.check_alive()
            return self.delivery_counts(key_prefix).get("received", 0) == 0

        took = wait_for(drained, timeout=600, what="the worker to drain the deliveries", every=0.2)
        counts = self.delivery_counts(key_prefix)
        stored = sum(counts.values())
        processed = counts.get("processed", 0)
        lost = accepted > stored or processed != stored
        return {
            "accepted": accepted,
            "stored": stored,
            "processed": processed,
            "failed": counts.get("failed", 0),
            "processed_when_load_stopped": at_stop.get("processed", 0),
            "drain_seconds_after_load": round(took, 2),
            "worker_deliveries_per_second_while_draining": round(
                (processed - at_stop.get("processed", 0)) / took, 1
            )
            if took > 0
            else None,
            "in_flight_when_stopped_max": in_flight_bound,
            "nothing_lost": not lost and stored - accepted <= in_flight_bound,
        }


def new_prefix(label: str) -> str:
    return f"bench-{label}-{secrets.token_hex(3)}"
