"""Seeding the benchmark's data through the container, in-process, as an operator's
script would: an org whose GitLab integration points at the fake (token encrypted with the
stack's Fernet key), tasks, links, watchers, push subscriptions and an API token."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from dependency_injector import providers
from tests.factories import seed_gitlab_org
from tests.gitlab_fake import FakeGitLab
from tests.push_fake import FakePushService

from bench.stack import WEBHOOK_SECRET
from viarah.adapters.crypto.passwords import Argon2PasswordHasher
from viarah.container import build_container, close_container
from viarah.domain.shared.actor import Actor
from viarah.settings import load_settings

PASSWORD = "bench correct horse battery"
#: Objects on the fake GitLab, one project per scenario.
LOAD_PROJECT = "bench/load"  # webhook ingest: each issue linked from one task
LINKS_PROJECT = "bench/links"  # link reads: 20 issues linked from one task
REFRESH_PROJECT = "bench/refresh"  # refresh fan-out: one issue linked from many tasks
PUSH_PROJECT = "bench/push"  # push fan-out: one issue, its task watched by many
T = TypeVar("T")


@dataclass
class Seeded:
    org_id: str
    admin_id: str
    api_token: str
    links_task_id: str
    load_issues: int
    refresh_tasks: int
    push_subscriptions: list[dict[str, Any]] = field(default_factory=list)
    total_links: int = 0


async def _bounded(jobs: Iterable[Awaitable[T]], limit: int = 8) -> list[T]:
    gate = asyncio.Semaphore(limit)

    async def one(job: Awaitable[T]) -> T:
        async with gate:
            return await job

    return list(await asyncio.gather(*(one(j) for j in jobs)))


async def _seed(
    env: dict[str, str],
    gitlab: FakeGitLab,
    push: FakePushService,
    *,
    load_issues: int,
    links_per_task: int,
    refresh_tasks: int,
    watchers: int,
    subscriptions_per_watcher: int,
) -> Seeded:
    container = build_container(load_settings(env).require_valid())
    # Cheap password hashing for the seeded users only: nobody logs in during the run.
    container.password_hasher.override(providers.Object(Argon2PasswordHasher(fast=True)))
    try:
        seeded = await seed_gitlab_org(
            container,
            gitlab,
            admin_email="admin@bench.example",
            password=PASSWORD,
            webhook_secret=WEBHOOK_SECRET,
            org_name="Bench",
            project_name="Bench",
        )
        admin, org_id, project_id = seeded.admin, seeded.org_id, seeded.project_id
        tasks = container.tasks()
        links = container.gitlab_links()

        async def linked_task(title: str, urls: list[str]) -> str:
            task = await tasks.create(admin, org_id, project_id, title)
            for url in urls:
                await links.link(admin, org_id, task.id, url)
            return str(task.id)

        def url(project_path: str, iid: int) -> str:
            return f"{gitlab.base_url}/{project_path}/-/issues/{iid}"

        # Webhook ingest: issues 1..N of bench/load, each linked from one task.
        await _bounded(
            linked_task(f"Load {iid}", [url(LOAD_PROJECT, iid)])
            for iid in range(1, load_issues + 1)
        )
        # Link reads: one task with `links_per_task` links.
        links_task_id = await linked_task(
            "Twenty links", [url(LINKS_PROJECT, iid) for iid in range(1, links_per_task + 1)]
        )
        # Refresh fan-out: one issue linked from `refresh_tasks` tasks.
        await _bounded(
            linked_task(f"Refresh {n}", [url(REFRESH_PROJECT, 1)]) for n in range(refresh_tasks)
        )
        # Push fan-out: a task linked to bench/push#1, watched by `watchers` members with
        # `subscriptions_per_watcher` browsers each (50 is the per-user cap).
        push_task_id = await linked_task("Push fan-out", [url(PUSH_PROJECT, 1)])
        subscriptions: list[dict[str, Any]] = []
        users = container.users()
        memberships = container.memberships()
        for n in range(watchers):
            email = f"watcher{n}@bench.example"
            watcher = await users.create(email, PASSWORD)
            await memberships.add(admin, org_id, email, "member")
            await tasks.watch(Actor(user_id=watcher.id), org_id, push_task_id)
            mine = [push.new_subscription() for _ in range(subscriptions_per_watcher)]
            subscriptions += mine
            service = container.push_subscriptions()
            await _bounded(
                service.subscribe(
                    Actor(user_id=watcher.id),
                    sub["endpoint"],
                    sub["keys"]["p256dh"],
                    sub["keys"]["auth"],
                )
                for sub in mine
            )
        issued = await container.api_tokens().issue(seeded.admin_id, "bench", "read")
        return Seeded(
            org_id=str(org_id),
            admin_id=str(seeded.admin_id),
            api_token=issued.plaintext,
            links_task_id=links_task_id,
            load_issues=load_issues,
            refresh_tasks=refresh_tasks,
            push_subscriptions=subscriptions,
            total_links=load_issues + links_per_task + refresh_tasks + 1,
        )
    finally:
        await close_container(container)


def seed(
    env: dict[str, str],
    gitlab: FakeGitLab,
    push: FakePushService,
    *,
    load_issues: int = 50,
    links_per_task: int = 20,
    refresh_tasks: int = 200,
    watchers: int = 20,
    subscriptions_per_watcher: int = 50,
) -> Seeded:
    """Put the objects on the fake GitLab, then seed ViaRah through its container."""
    for iid in range(1, load_issues + 1):
        gitlab.add_issue(LOAD_PROJECT, iid, title=f"Load issue {iid}", state="opened")
    for iid in range(1, links_per_task + 1):
        gitlab.add_issue(
            LINKS_PROJECT,
            iid,
            title=f"Linked issue {iid}",
            state="opened",
            labels=["bug", "backend"],
            assignees=[("alice", "Alice A."), ("bob", "Bob B.")],
        )
    gitlab.add_issue(REFRESH_PROJECT, 1, title="Shared issue", state="opened")
    gitlab.add_issue(PUSH_PROJECT, 1, title="Crash on login", state="opened")
    return asyncio.run(
        _seed(
            env,
            gitlab,
            push,
            load_issues=load_issues,
            links_per_task=links_per_task,
            refresh_tasks=refresh_tasks,
            watchers=watchers,
            subscriptions_per_watcher=subscriptions_per_watcher,
        )
    )
