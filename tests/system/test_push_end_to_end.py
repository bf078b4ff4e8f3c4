"""From a GitLab state change to a decrypted message in the browser's push service.

Real ``viarah web`` and ``viarah worker`` processes on PostgreSQL and Redis, a local fake
GitLab and a local push service that verifies each VAPID JWT and decrypts each message
(``tests/push_fake.py``). 127.0.0.1 is in VIA_RAH_OUTBOUND_ALLOWLIST, so the push
service's ``http://127.0.0.1`` endpoints are accepted.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from cryptography.fernet import Fernet
from dependency_injector import providers

from tests.conftest import base_env
from tests.factories import seed_gitlab_org
from tests.gitlab_fake import FakeGitLab
from tests.push_fake import FakePushService
from tests.system.processes import SECRET, Proc, clean_env, free_port, wait_http_ok
from viarah.adapters.crypto.passwords import Argon2PasswordHasher
from viarah.container import build_container, close_container, new_vapid_keypair
from viarah.domain.notifications.model import STATE_CHANGED
from viarah.domain.shared.actor import Actor
from viarah.domain.shared.ids import UserId
from viarah.settings import load_settings

pytestmark = [pytest.mark.system, pytest.mark.postgres, pytest.mark.redis]

WEBHOOK_SECRET = "push-e2e-webhook-secret-0123"
PROJECT = "group/sub/app"
PASSWORD = "correct horse battery staple"
TASK_TITLE = "Fix the login page"
#: Jobs of the notification pipeline (periodic housekeeping jobs are left out).
PIPELINE_JOBS = "(job LIKE 'gitlab.%' OR job LIKE 'event.%' OR job = 'push.deliver')"


def wait_until(check: Callable[[], bool], *, timeout: float, what: str) -> float:
    """Poll ``check`` until it holds; returns the seconds it took."""
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)
    return time.monotonic() - started


@dataclass(frozen=True)
class Seeded:
    org_id: str
    task_id: str
    watchers: list[UserId]


@dataclass
class Stack:
    url: str
    env: dict[str, str]
    engine: sa.Engine
    gitlab: FakeGitLab
    push: FakePushService
    seeded: Seeded

    def hook(self, iid: int, action: str) -> None:
        body = {
            "object_kind": "issue",
            "event_type": "issue",
            "project": {"path_with_namespace": PROJECT},
            "object_attributes": {"iid": iid, "action": action},
        }
        response = httpx.post(
            f"{self.url}/api/orgs/{self.seeded.org_id}/integrations/gitlab/webhook",
            content=json.dumps(body),
            headers={
                "Content-Type": "application/json",
                "X-Gitlab-Token": WEBHOOK_SECRET,
                "X-Gitlab-Event": "Issue Hook",
                "Idempotency-Key": str(uuid.uuid4()),
            },
            timeout=5,
        )
        assert response.status_code == 202, response.text

    def scalar(self, sql: str, **params: Any) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(sa.text(sql), params).scalar_one())

    def settled(self) -> bool:
        """No notification-pipeline job is due, queued or running. The backstop
        ``push.deliver`` job of each fan-out (due when the inline delivery's claims would
        have expired) is first brought forward: when it runs, it must find nothing to send.
        """
        with self.engine.begin() as conn:
            conn.execute(
                sa.text(
                    "UPDATE outbox SET available_at = now() WHERE job = 'push.deliver' "
                    "AND status = 'pending' AND available_at > now() + interval '90 seconds'"
                )
            )
        return (
            self.scalar(
                f"SELECT count(*) FROM outbox WHERE {PIPELINE_JOBS} "
                "AND status NOT IN ('done', 'failed')"
            )
            == 0
        )

    def login(self, email: str) -> dict[str, str]:
        """Cookie-session headers (session cookie + CSRF token), as the page sends them."""
        response = httpx.post(
            f"{self.url}/api/auth/login", json={"email": email, "password": PASSWORD}, timeout=10
        )
        assert response.status_code == 200, response.text
        return {
            "Cookie": f"viarah_session={response.cookies['viarah_session']}",
            "X-CSRF-Token": response.headers["X-CSRF-Token"],
        }

    def api(self, method: str, path: str, headers: dict[str, str], **kwargs: Any) -> Any:
        response = httpx.request(method, f"{self.url}{path}", headers=headers, timeout=10, **kwargs)
        assert response.is_success, response.text
        return response.json()


async def _seed(env: dict[str, str], gitlab: FakeGitLab, iid: int, watchers: int) -> Seeded:
    """An org on the fake GitLab, a task linked to issue ``iid`` and watched by
    ``watchers`` members (``watcher<n>@example.com``), through the container."""
    container = build_container(load_settings(env).require_valid())
    # Test-strength password hashing: seeding 21 users stays fast (logins still verify).
    container.password_hasher.override(providers.Object(Argon2PasswordHasher(fast=True)))
    try:
        made = await seed_gitlab_org(
            container,
            gitlab,
            admin_email="admin@example.com",
            password=PASSWORD,
            webhook_secret=WEBHOOK_SECRET,
        )
        admin, org_id = made.admin, made.org_id
        task = await container.tasks().create(admin, org_id, made.project_id, TASK_TITLE)
        await container.gitlab_links().link(
            admin, org_id, task.id, f"{gitlab.base_url}/{PROJECT}/-/issues/{iid}"
        )
        ids: list[UserId] = []
        for n in range(watchers):
            email = f"watcher{n}@example.com"
            watcher = await container.users().create(email, PASSWORD)
            await container.memberships().add(admin, org_id, email, "member")
            await container.tasks().watch(Actor(user_id=watcher.id), org_id, task.id)
            ids.append(watcher.id)
        return Seeded(org_id, task.id, ids)
    finally:
        await close_container(container)


@pytest.fixture
def stack_for(
    postgres_url: str, redis_url: str, tmp_path: Path, procs: list[Proc]
) -> Iterator[Callable[..., Stack]]:
    gitlab = FakeGitLab().start()
    push = FakePushService().start()
    engine = sa.create_engine(postgres_url.replace("postgresql://", "postgresql+psycopg://"))
    vapid = new_vapid_keypair()

    def build(
        *, iid: int, watchers: int, before_start: Callable[[Stack], None] | None = None
    ) -> Stack:
        gitlab.add_issue(PROJECT, iid, title=f"Crash {iid}", state="opened")
        env = clean_env(
            **base_env(
                DATABASE_URL=postgres_url,
                BROKER_URL=redis_url,
                VIA_RAH_ENCRYPTION_KEY=Fernet.generate_key().decode(),
                VIA_RAH_OUTBOUND_ALLOWLIST="127.0.0.1",
                VIA_RAH_SECRET_KEY=SECRET,
                ALLOWED_HOSTS="127.0.0.1,localhost",
                WEBPUSH_VAPID_PUBLIC_KEY=vapid.public_key,
                WEBPUSH_VAPID_PRIVATE_KEY=vapid.private_key,
                WEBPUSH_VAPID_SUBJECT="mailto:ops@example.com",
            )
        )
        seeded = asyncio.run(_seed(env, gitlab, iid, watchers))
        port = free_port()
        stack = Stack(f"http://127.0.0.1:{port}", env, engine, gitlab, push, seeded)
        if before_start is not None:
            before_start(stack)
        web = Proc(["web", "--port", str(port)], env, tmp_path)
        procs.append(web)
        wait_http_ok(f"{stack.url}/healthz", web)
        worker = Proc(["worker"], env, tmp_path)
        procs.append(worker)
        worker.wait_for_line(lambda lines: "worker: ready" in lines, timeout=30)
        wait_until(
            lambda: (
                stack.scalar("SELECT count(*) FROM gitlab_links WHERE cached_state = 'opened'") == 1
            ),
            timeout=30,
            what="the link's first sync",
        )
        return stack

    yield build
    for proc in procs:
        proc.kill()
    push.stop()
    gitlab.stop()
    engine.dispose()


def _messages(push: FakePushService, subscription: dict[str, Any]) -> list[dict[str, Any]]:
    sub_id = push.subscription_id(subscription)
    return [json.loads(m) for m in push.messages_for(sub_id)]


def test_a_closed_issue_reaches_each_browser_once_unless_turned_off(
    stack_for: Callable[..., Stack],
) -> None:
    stack = stack_for(iid=7, watchers=1)
    push = stack.push
    wendy = stack.login("watcher0@example.com")
    laptop, phone = push.new_subscription(), push.new_subscription()
    created = stack.api("POST", "/api/push/subscriptions", wendy, json=laptop)
    assert created["subscription"]["endpoint"] == laptop["endpoint"]
    stack.api(
        "POST",
        "/api/push/subscriptions",
        wendy,
        json={"subscription": phone, "user_agent": "Firefox for Android"},
    )
    listed = stack.api("GET", "/api/push/subscriptions", wendy)["subscriptions"]
    assert {s["endpoint"] for s in listed} == {laptop["endpoint"], phone["endpoint"]}

    stack.gitlab.add_issue(PROJECT, 7, title="Crash 7", state="closed")
    started = time.monotonic()
    stack.hook(7, "close")
    wait_until(
        lambda: all(_messages(push, s) for s in (laptop, phone)),
        timeout=30,
        what="a message on both subscriptions",
    )
    took = time.monotonic() - started
    wait_until(stack.settled, timeout=30, what="the pipeline to finish")
    for subscription in (laptop, phone):
        messages = _messages(push, subscription)
        assert len(messages) == 1, messages
        message = messages[0]
        assert message["title"] == "Issue closed: Crash 7"
        assert TASK_TITLE in message["body"]
        assert message["event_type"] == STATE_CHANGED
        assert message["task_id"] == stack.seeded.task_id
        assert message["org_id"] == stack.seeded.org_id
        assert message["url"] == f"{stack.gitlab.base_url}/{PROJECT}/-/issues/7"
    assert push.rejected == []
    print(f"webhook → decrypted message on 2 subscriptions in {took:.2f} s")
    listed = stack.api("GET", "/api/push/subscriptions", wendy)["subscriptions"]
    assert all(s["last_success_at"] is not None for s in listed)

    # Wendy turns state-change notifications off: the reopen reaches nobody.
    preferences = stack.api(
        "PUT",
        "/api/me/notification-preferences",
        wendy,
        json={"preferences": [{"event_type": STATE_CHANGED, "enabled": False}]},
    )["preferences"]
    assert {"event_type": STATE_CHANGED, "channel": "push", "enabled": False} in preferences
    seen = len(push.requests)
    stack.gitlab.add_issue(PROJECT, 7, title="Crash 7", state="opened")
    stack.hook(7, "reopen")
    wait_until(
        lambda: stack.scalar("SELECT count(*) FROM notifications") == 2 and stack.settled(),
        timeout=30,
        what="the reopen notification to be handled",
    )
    reopened = stack.scalar(
        "SELECT count(*) FROM push_deliveries d JOIN notifications n "
        "ON n.id = d.notification_id WHERE n.title LIKE 'Issue reopened%'"
    )
    assert reopened == 0
    assert len(push.requests) == seen
    assert all(len(_messages(push, s)) == 1 for s in (laptop, phone))


def test_fan_out_to_1000_subscriptions_with_throttling_delivers_each_once(
    stack_for: Callable[..., Stack],
) -> None:
    watchers, per_watcher = 20, 50  # 50 is the per-user cap

    def subscribe_all(stack: Stack) -> None:
        async def add() -> None:
            container = build_container(load_settings(stack.env).require_valid())
            try:
                gate = asyncio.Semaphore(16)

                async def one(user_id: UserId) -> None:
                    sub = stack.push.new_subscription()
                    async with gate:
                        await container.push_subscriptions().subscribe(
                            Actor(user_id=user_id),
                            sub["endpoint"],
                            sub["keys"]["p256dh"],
                            sub["keys"]["auth"],
                        )

                await asyncio.gather(
                    *(one(u) for u in stack.seeded.watchers for _ in range(per_watcher))
                )
            finally:
                await close_container(container)

        asyncio.run(add())

    stack = stack_for(iid=9, watchers=watchers, before_start=subscribe_all)
    total = watchers * per_watcher
    assert stack.scalar("SELECT count(*) FROM push_subscriptions") == total
    stack.push.add_rule(429, fraction=0.1, attempts=1, retry_after=1)

    stack.gitlab.add_issue(PROJECT, 9, title="Crash 9", state="closed")
    started = time.monotonic()
    stack.hook(9, "close")

    def delivered() -> int:
        return len({r.subscription_id for r in stack.push.delivered})

    wait_until(lambda: delivered() == total, timeout=60, what=f"{total} deliveries")
    took = time.monotonic() - started
    wait_until(stack.settled, timeout=30, what="the pipeline to finish")
    deliveries = stack.push.delivered
    throttled = stack.push.by_outcome("scripted")
    print(
        f"fan-out: {len(deliveries)} deliveries to {total} subscriptions in {took:.2f} s "
        f"({len(throttled)} answered 429 first)"
    )
    assert len(deliveries) == total  # no duplicates
    assert len({r.subscription_id for r in deliveries}) == total
    assert len(throttled) == total // 10
    assert all(r.status == 429 for r in throttled)
    assert stack.push.rejected == []
    assert stack.scalar("SELECT count(*) FROM push_deliveries WHERE status = 'sent'") == total
