"""Where a request's CPU goes, without sockets: the ASGI app called directly.

    python -m bench.inprocess [--n 2000] [--profile links|webhook|healthz|delivery]

Creates a benchmark database (seeded as ``python -m bench`` seeds it, links marked
fresh), builds the web app on the production container in this process, and calls it
with hand-built ASGI requests: CPU time (``time.process_time``) per request for
``/healthz``, a task's 20 links and a webhook. Then ``delivery``: the worker's side of the
webhooks without the broker, their drain jobs run by the container's ``JobRunner``
(claim, batches, finish), as CPU per delivery processed. ``--profile`` adds a cProfile
of one scenario (cProfile slows everything; read its shares, not its times).
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import pstats
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from bench.http_runs import issue_hook_body
from bench.seed import seed
from bench.stack import WEBHOOK_SECRET, Stack, os_environ_admin_url
from viarah.container import build_container
from viarah.domain.gitlab.webhooks import DRAIN_JOB
from viarah.domain.shared.ids import new_id
from viarah.entrypoints.web.app import create_app
from viarah.settings import load_settings

Call = Callable[[], Awaitable[int]]


def _asgi_call(
    app: Any, method: str, path: str, headers: list[tuple[str, str]], body: bytes
) -> Call:
    raw_headers = [(k.lower().encode(), v.encode()) for k, v in headers]
    raw_headers.append((b"host", b"127.0.0.1"))
    if body:
        raw_headers.append((b"content-length", str(len(body)).encode()))

    async def call() -> int:
        status = 0
        sent = False

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if sent:
                return {"type": "http.disconnect"}
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]

        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": method,
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "root_path": "",
            "headers": raw_headers,
            "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 8000),
            "state": {},
        }
        await app(scope, receive, send)
        return status

    return call


_gc_time = [0.0, 0]
_gc_started = [0.0]


def _gc_clock(phase: str, info: dict[str, int]) -> None:
    if phase == "start":
        _gc_started[0] = time.process_time()
    else:
        _gc_time[0] += time.process_time() - _gc_started[0]
        _gc_time[1] += info["generation"] == 2


async def _measure(name: str, call: Call, n: int) -> float:
    for _ in range(min(200, n)):
        status = await call()
        assert status < 300, f"{name}: {status}"
    _gc_time[:] = [0.0, 0]
    cpu = time.process_time()
    for _ in range(n):
        await call()
    per_call = (time.process_time() - cpu) / n * 1e3
    print(
        f"{name:30s} {per_call:6.3f} ms CPU per request"
        f" (garbage collection {_gc_time[0] / n * 1e3:.3f} ms, {_gc_time[1]} full)",
        flush=True,
    )
    return per_call


async def _run(stack: Stack, seeded: Any, n: int, profile: str | None) -> None:
    container = build_container(load_settings(stack.env).require_valid())
    app = create_app(container)
    calls: dict[str, Call] = {}
    gc.callbacks.append(_gc_clock)
    async with app.lifespan():
        calls["healthz"] = _asgi_call(app, "GET", "/healthz", [], b"")
        calls["links"] = _asgi_call(
            app,
            "GET",
            f"/api/orgs/{seeded.org_id}/tasks/{seeded.links_task_id}/gitlab-links",
            [("Authorization", f"Bearer {seeded.api_token}")],
            b"",
        )
        hook = issue_hook_body().replace("__IID__", "1").encode()
        webhook_path = f"/api/orgs/{seeded.org_id}/integrations/gitlab/webhook"

        async def webhook() -> int:
            return await _asgi_call(
                app,
                "POST",
                webhook_path,
                [
                    ("Content-Type", "application/json"),
                    ("X-Gitlab-Event", "Issue Hook"),
                    ("X-Gitlab-Token", WEBHOOK_SECRET),
                    ("Idempotency-Key", new_id()),
                ],
                hook,
            )()

        calls["webhook"] = webhook
        for name, call in calls.items():
            await _measure(name, call, n)
        if profile in calls:
            await _profile(calls[profile], n)
        # The webhooks above stored deliveries and (coalesced) drain jobs: run those as
        # the worker does, until every delivery is processed; CPU per delivery.
        await _drain(stack, container, profile == "delivery")


async def _drain(stack: Stack, container: Any, profile: bool) -> None:
    runner = container.job_runner()
    waiting = int(stack.scalar("SELECT count(*) FROM webhook_deliveries WHERE status = 'received'"))
    prof = cProfile.Profile() if profile else None
    jobs = 0
    cpu = time.process_time()
    if prof is not None:
        prof.enable()
    while True:
        pending = [
            row[0]
            for row in stack.rows(
                f"SELECT id FROM outbox WHERE job = '{DRAIN_JOB}' AND status = 'pending'"
            )
        ]
        if not pending:
            break
        for job_id in pending:
            assert await runner.run(job_id)
            jobs += 1
    if prof is not None:
        prof.disable()
    per_delivery = (time.process_time() - cpu) / max(1, waiting) * 1e3
    left = int(stack.scalar("SELECT count(*) FROM webhook_deliveries WHERE status = 'received'"))
    assert left == 0, f"{left} deliveries left waiting"
    print(
        f"{'delivery (worker, no broker)':30s} {per_delivery:6.3f} ms CPU per delivery"
        f" ({waiting} deliveries, {jobs} drain jobs; this process's SQL client side only)",
        flush=True,
    )
    if prof is not None:
        pstats.Stats(prof).sort_stats("cumulative").print_stats(60)


async def _profile(call: Call, n: int) -> None:
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(n):
        await call()
    prof.disable()
    pstats.Stats(prof).sort_stats("cumulative").print_stats(60)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.inprocess")
    parser.add_argument("--postgres-admin-url", default=os_environ_admin_url())
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/13")
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--profile", choices=["healthz", "links", "webhook", "delivery"])
    args = parser.parse_args()
    stack = Stack(
        Path(tempfile.mkdtemp(prefix="viarah-inprocess-")), args.postgres_admin_url, args.redis_url
    )
    try:
        stack.prepare()
        assert stack.gitlab is not None
        assert stack.push is not None
        seeded = seed(stack.env, stack.gitlab, stack.push)
        stack.rows(
            "UPDATE gitlab_links SET last_synced_at = now(), cached_state = 'opened',"
            " refresh_requested_at = NULL RETURNING id"
        )
        import uvloop

        uvloop.run(_run(stack, seeded, args.n, args.profile))
    finally:
        stack.close()


if __name__ == "__main__":
    main()
