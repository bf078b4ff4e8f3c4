"""GitLab webhooks through real processes: one GitLab call per object, nothing lost.

``viarah web`` and ``viarah worker`` run as an operator runs them, on PostgreSQL and a
private Redis the tests stop and start, against a local fake GitLab.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from cryptography.fernet import Fernet

from tests.conftest import base_env
from tests.factories import seed_gitlab_org
from tests.gitlab_fake import FakeGitLab, Scripted
from tests.system.processes import (
    SECRET,
    PrivateRedis,
    Proc,
    clean_env,
    free_port,
    wait_http_ok,
    wait_until,
)
from viarah.container import build_container, close_container
from viarah.settings import load_settings

pytestmark = [pytest.mark.system, pytest.mark.postgres]

WEBHOOK_SECRET = "system-webhook-secret-0123"
PROJECT = "group/sub/app"


@dataclass
class Stack:
    url: str
    org_id: str
    env: dict[str, str]
    engine: sa.Engine
    gitlab: FakeGitLab
    redis: PrivateRedis
    tmp: Path
    procs: list[Proc]
    worker: Proc | None = None

    def start_worker(self) -> Proc:
        worker = Proc(["worker"], self.env, self.tmp)
        self.procs.append(worker)
        worker.wait_for_line(lambda lines: "worker: ready" in lines, timeout=30)
        self.worker = worker
        return worker

    def hook(self, iid: int, key: str | None = None) -> httpx.Response:
        body = {
            "object_kind": "issue",
            "event_type": "issue",
            "project": {"path_with_namespace": PROJECT},
            "object_attributes": {"iid": iid, "action": "close", "state": "closed"},
        }
        return httpx.post(
            f"{self.url}/api/orgs/{self.org_id}/integrations/gitlab/webhook",
            content=json.dumps(body),
            headers={
                "Content-Type": "application/json",
                "X-Gitlab-Token": WEBHOOK_SECRET,
                "X-Gitlab-Event": "Issue Hook",
                "Idempotency-Key": key or str(uuid.uuid4()),
            },
            timeout=5,
        )

    def scalar(self, sql: str) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(sa.text(sql)).scalar_one())


def _seed(env: dict[str, str], gitlab: FakeGitLab, tasks_per_issue: dict[int, int]) -> str:
    """An org whose integration points at the fake, and tasks linked to its issues."""

    async def seed() -> str:
        container = build_container(load_settings(env).require_valid())
        try:
            made = await seed_gitlab_org(
                container,
                gitlab,
                admin_email="admin@example.com",
                password="correct horse",
                webhook_secret=WEBHOOK_SECRET,
            )
            admin, org_id = made.admin, made.org_id
            for iid, count in tasks_per_issue.items():
                for n in range(count):
                    title = f"T{iid}.{n}"
                    task = await container.tasks().create(admin, org_id, made.project_id, title)
                    await container.gitlab_links().link(
                        admin, org_id, task.id, f"{gitlab.base_url}/{PROJECT}/-/issues/{iid}"
                    )
            return org_id
        finally:
            await close_container(container)

    return asyncio.run(seed())


@pytest.fixture
def stack_for(
    postgres_url: str, tmp_path: Path, procs: list[Proc]
) -> Iterator[Callable[[dict[int, int]], Stack]]:
    gitlab = FakeGitLab().start()
    redis = PrivateRedis()
    redis.start()
    engine = sa.create_engine(postgres_url.replace("postgresql://", "postgresql+psycopg://"))

    def build(tasks_per_issue: dict[int, int]) -> Stack:
        for iid in tasks_per_issue:
            gitlab.add_issue(PROJECT, iid, title=f"Issue {iid}", state="opened")
        port = free_port()
        env = clean_env(
            **base_env(
                DATABASE_URL=postgres_url,
                BROKER_URL=redis.url,
                VIA_RAH_ENCRYPTION_KEY=Fernet.generate_key().decode(),
                VIA_RAH_OUTBOUND_ALLOWLIST="127.0.0.1",
                VIA_RAH_SECRET_KEY=SECRET,
                ALLOWED_HOSTS="127.0.0.1,localhost",
            )
        )
        org_id = _seed(env, gitlab, tasks_per_issue)
        web = Proc(["web", "--port", str(port)], env, tmp_path)
        procs.append(web)
        url = f"http://127.0.0.1:{port}"
        wait_http_ok(f"{url}/healthz", web)
        stack = Stack(url, org_id, env, engine, gitlab, redis, tmp_path, procs)
        stack.start_worker()
        return stack

    yield build
    for proc in procs:
        proc.kill()
    redis.stop()
    gitlab.stop()
    engine.dispose()


def _all_links_synced(stack: Stack, total: int) -> bool:
    return (
        stack.scalar("SELECT count(*) FROM gitlab_links WHERE last_synced_at IS NOT NULL") == total
    )


def test_webhook_refreshes_20_links_with_one_gitlab_call(stack_for: Callable[..., Stack]) -> None:
    stack = stack_for({7: 20})
    wait_until(lambda: _all_links_synced(stack, 20), timeout=30, what="the first sync")
    path = FakeGitLab.object_path(PROJECT, "issue", 7)
    before = stack.gitlab.calls(path)
    stack.gitlab.add_issue(PROJECT, 7, title="Issue 7", state="closed")

    response = stack.hook(7)
    assert response.status_code == 202
    assert response.json() == {"status": "accepted"}
    took = wait_until(
        lambda: (
            stack.scalar("SELECT count(*) FROM gitlab_links WHERE cached_state = 'closed'") == 20
        ),
        timeout=30,
        what="20 links to show the closed state",
    )
    calls = stack.gitlab.calls(path) - before
    print(f"webhook → 20 links closed in {took:.2f} s with {calls} GitLab call(s)")
    assert calls == 1
    assert stack.hook(7, key="same").json() == {"status": "accepted"}
    assert stack.hook(7, key="same").json() == {"status": "duplicate"}


def test_webhooks_accepted_while_redis_is_down_are_all_processed(
    stack_for: Callable[..., Stack],
) -> None:
    stack = stack_for({1: 1, 2: 1, 3: 1})
    wait_until(lambda: _all_links_synced(stack, 3), timeout=30, what="the first sync")
    stack.redis.stop()
    outage_started = time.monotonic()
    accepted = 0
    for n in range(150):  # webhook load while Redis is down
        response = stack.hook(1 + n % 3)
        assert response.status_code == 202, response.text
        accepted += 1
    # Redis stays down for 10 s in all; the worker keeps running without its broker.
    time.sleep(max(0.0, 10.0 - (time.monotonic() - outage_started)))
    assert stack.worker is not None
    assert stack.worker.popen.poll() is None
    outage = time.monotonic() - outage_started
    stack.redis.start()
    took = wait_until(
        lambda: (
            stack.scalar("SELECT count(*) FROM webhook_deliveries WHERE status = 'processed'")
            == accepted
        ),
        timeout=90,
        what="every accepted delivery to be processed",
    )
    print(
        f"Redis down {outage:.1f} s: {accepted} webhooks accepted, all {accepted} processed "
        f"{took:.1f} s after it returned"
    )
    stack.worker.wait_for_line(lambda lines: any("broker" in line for line in lines), timeout=5)


def test_worker_killed_mid_job_leaves_nothing_unprocessed(stack_for: Callable[..., Stack]) -> None:
    stack = stack_for({5: 2})
    wait_until(lambda: _all_links_synced(stack, 2), timeout=30, what="the first sync")
    path = FakeGitLab.object_path(PROJECT, "issue", 5)
    stack.gitlab.add_issue(PROJECT, 5, title="Issue 5", state="closed")
    stack.gitlab.script(path, Scripted(status=200, delay=8.0, body=None))  # the first call hangs
    assert stack.hook(5).status_code == 202
    wait_until(
        lambda: (
            stack.scalar(
                "SELECT count(*) FROM outbox WHERE job = 'gitlab.refresh_object' "
                "AND status = 'running'"
            )
            == 1
        ),
        timeout=30,
        what="the worker to start the refresh the delivery queued",
    )
    assert stack.worker is not None
    stack.worker.kill()  # SIGKILL mid-job
    stack.start_worker()
    took = wait_until(
        lambda: (
            stack.scalar("SELECT count(*) FROM gitlab_links WHERE cached_state = 'closed'") == 2
        ),
        timeout=60,
        what="the restarted worker to finish the job",
    )
    processed = stack.scalar("SELECT count(*) FROM webhook_deliveries WHERE status = 'processed'")
    unfinished = stack.scalar(
        "SELECT count(*) FROM outbox WHERE job IN ('gitlab.process_deliveries', "
        "'gitlab.refresh_object') AND status NOT IN ('done', 'failed')"
    )
    print(f"killed mid-job; the restarted worker finished it {took:.1f} s later")
    assert (processed, unfinished) == (1, 0)
