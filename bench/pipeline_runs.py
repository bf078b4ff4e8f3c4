"""The worker's pipelines: refresh fan-out (one webhook → every link of an object) and push
fan-out (one event → 1,000 browsers), plus the two yardsticks of the push figure: the
crypto floor (what one core can prepare) and the push fake's own capacity."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
from pywebpush import WebPusher
from tests.gitlab_fake import FakeGitLab

from bench.machine import CpuMeter
from bench.seed import PUSH_PROJECT, REFRESH_PROJECT, Seeded
from bench.stack import WEBHOOK_SECRET, Stack, StackFailed, wait_for
from bench.wrk import replay_script, run_wrk
from viarah.adapters.push.webpush import WebPushSender, crypto_floor_operation
from viarah.container import build_container, close_container
from viarah.domain.notifications.delivery import payload_for, topic_for
from viarah.domain.notifications.model import STATE_CHANGED, Notification
from viarah.domain.notifications.push import PushMessage, PushTarget
from viarah.domain.shared.ids import OrgId, new_id
from viarah.settings import load_settings


def send_hook(stack: Stack, org_id: str, project: str, iid: int, action: str) -> None:
    body = {
        "object_kind": "issue",
        "event_type": "issue",
        "project": {"path_with_namespace": project},
        "object_attributes": {"iid": iid, "action": action},
    }
    response = httpx.post(
        f"{stack.url}/api/orgs/{org_id}/integrations/gitlab/webhook",
        content=json.dumps(body),
        headers={
            "Content-Type": "application/json",
            "X-Gitlab-Token": WEBHOOK_SECRET,
            "X-Gitlab-Event": "Issue Hook",
            "Idempotency-Key": f"bench-{new_id()}",
        },
        timeout=10,
    )
    if response.status_code != 202:
        raise StackFailed(f"webhook answered {response.status_code}: {response.text[:200]}")


def wait_idle(stack: Stack, timeout: float = 300) -> float:
    return wait_for(stack.pipeline_idle, timeout=timeout, what="the worker to go idle", every=0.2)


def settle(stack: Stack) -> float:
    """After a webhook burst: the worker idle, then the database vacuumed and
    checkpointed, so that the next scenario starts on a quiet machine."""
    wait_idle(stack)
    return stack.settle_database()


# -- refresh fan-out -------------------------------------------------------------------


def refresh_fanout(stack: Stack, seeded: Seeded) -> dict[str, Any]:
    """A webhook for an issue linked from ``seeded.refresh_tasks`` tasks: GitLab calls for
    that object, and the time from sending the webhook until every link shows the new
    state (polled every 10 ms)."""
    assert stack.gitlab is not None
    wait_idle(stack)
    path = FakeGitLab.object_path(REFRESH_PROJECT, "issue", 1)
    before = stack.gitlab.calls(path)
    stack.gitlab.add_issue(REFRESH_PROJECT, 1, title="Shared issue", state="closed")
    started = time.monotonic()
    send_hook(stack, seeded.org_id, REFRESH_PROJECT, 1, "close")

    def all_closed() -> bool:
        closed = stack.scalar(
            "SELECT count(*) FROM gitlab_links WHERE project_path = %s AND cached_state = 'closed'",
            REFRESH_PROJECT,
        )
        return bool(closed == seeded.refresh_tasks)

    wait_for(all_closed, timeout=60, what="every link to show the new state", every=0.01)
    took = time.monotonic() - started
    wait_idle(stack)  # the state-change events it caused are handled too
    return {
        "links": seeded.refresh_tasks,
        "gitlab_calls": stack.gitlab.calls(path) - before,
        "seconds_until_all_links_updated": round(took, 3),
    }


# -- push yardsticks -------------------------------------------------------------------


def sample_message() -> PushMessage:
    """The message a state change produces (same size and shape as the real one)."""
    notification = Notification(
        id=new_id(),
        event_key=new_id(),
        event_type=STATE_CHANGED,
        org_id=OrgId(new_id()),
        task_id=new_id(),
        title="Issue closed: Crash on login",
        body="Linked to task “Push fan-out”",
        url="https://gitlab.example.com/bench/push/-/issues/1",
        topic=topic_for(STATE_CHANGED, new_id()),
        urgency="normal",
        created_at=datetime.now(UTC),
    )
    return PushMessage(
        plaintext=payload_for(notification), topic=notification.topic, urgency="normal"
    )


def target_of(subscription: dict[str, Any]) -> PushTarget:
    keys = subscription["keys"]
    return PushTarget(subscription["endpoint"], p256dh=keys["p256dh"], auth=keys["auth"])


class PushYardsticks:
    """A WebPushSender built by the container from the stack's settings (only ``prepare``
    and ``crypto_floor_operation`` are used: nothing is sent from this process)."""

    def __init__(self, stack: Stack) -> None:
        assert stack.push is not None
        self.stack = stack
        self.push = stack.push
        self.container = build_container(load_settings(stack.env).require_valid())
        self.sender: WebPushSender = self.container.push_sender()
        self.message = sample_message()
        self.targets = [target_of(self.push.new_subscription()) for _ in range(50)]

    def close(self) -> None:
        asyncio.run(close_container(self.container))

    def crypto_floor(self, seconds: float) -> dict[str, Any]:
        """The crypto floor as issue #6 defines it: pywebpush's ``WebPusher.encode``
        (aes128gcm, fresh ephemeral key; one ``WebPusher`` per subscription, built
        beforehand) plus a fresh VAPID ES256 signature, in a tight loop on one core.
        For comparison: ViaRah's own preparation with a fresh signature
        (``crypto_floor_operation``) and with its cached JWT (the send path)."""
        pushers = [
            (
                WebPusher({"endpoint": t.endpoint, "keys": {"p256dh": t.p256dh, "auth": t.auth}}),
                self.sender.prepare(t, self.message).endpoint.origin,
            )
            for t in self.targets
        ]
        signer = self.sender.vapid_signer
        plaintext = self.message.plaintext

        def loop(op: Any, items: list[Any], duration: float) -> tuple[float, float]:
            done = 0
            cpu0, wall0 = time.process_time(), time.perf_counter()
            deadline = wall0 + duration
            while time.perf_counter() < deadline:
                for item in items:
                    op(item)
                done += len(items)
            wall = time.perf_counter() - wall0
            cpu = time.process_time() - cpu0
            return done / wall, done / cpu if cpu else 0.0

        def reference(item: tuple[WebPusher, str]) -> None:
            pusher, origin = item
            pusher.encode(plaintext, content_encoding="aes128gcm")
            signer.fresh_authorization(origin)

        def own_fresh(target: PushTarget) -> None:
            crypto_floor_operation(self.sender, target, self.message)

        loop(reference, pushers, 0.5)  # warm up
        floor_wall, floor_cpu = loop(reference, pushers, seconds)
        own_wall, _ = loop(own_fresh, self.targets, seconds / 2)
        prep_wall, _ = loop(
            lambda t: self.sender.prepare(t, self.message), self.targets, seconds / 2
        )
        return {
            "operation": "pywebpush WebPusher.encode (aes128gcm) + a fresh VAPID signature",
            "ops_per_second": round(floor_wall, 1),
            "ops_per_cpu_second": round(floor_cpu, 1),
            "viarah_prepare_fresh_signature_per_second": round(own_wall, 1),
            "send_path_prepare_per_second": round(prep_wall, 1),
            "seconds": seconds,
        }

    def fake_capacity(
        self, run_dir: Path, *, connections: int, seconds: float, defer: bool
    ) -> dict[str, Any]:
        """wrk replays 1,000 pre-encrypted, VAPID-signed messages to the push fake: how
        many it verifies (and decrypts, unless ``defer``) per second on its own."""
        subs = [self.push.new_subscription() for _ in range(200)]
        lines = []
        for n in range(1000):
            prepared = self.sender.prepare(target_of(subs[n % len(subs)]), self.message)
            fields = [urlsplit(prepared.endpoint.url).path]
            fields += [f"{k}={v}" for k, v in prepared.headers.items()]
            fields.append(prepared.body.hex())
            lines.append("\t".join(fields))
        requests_file = run_dir / "push-requests.tsv"
        requests_file.write_text("\n".join(lines) + "\n")
        script = replay_script(run_dir / "wrk" / "push-replay.lua", requests_file)
        before = len(self.push.requests)
        self.push.defer_decryption = defer
        try:
            meter = CpuMeter({"bench_process_with_fakes": _own_pid()}, postgres=False).start()
            result = run_wrk(
                self.push.origin + "/", script, connections=connections, seconds=seconds
            )
            cpu = meter.stop()
        finally:
            self.push.defer_decryption = True
        undecryptable = self.push.decrypt_deferred()
        outcomes = Counter(r.outcome for r in self.push.requests[before:])
        return {
            "mode": "verify VAPID + headers, decrypt later" if defer else "verify + decrypt inline",
            "messages_per_second": result.rps,
            "p50_ms": result.p50_ms,
            "p99_ms": result.p99_ms,
            "errors": result.errors,
            "outcomes": dict(outcomes),
            "undecryptable": undecryptable,
            "cpu_cores": cpu,
            "connections": connections,
        }


def _own_pid() -> int:
    import os

    return os.getpid()


# -- push fan-out ----------------------------------------------------------------------


#: The push fan-out's state changes: the first closes the issue, the second reopens it.
PUSH_STATES = {"closed": ("close", "Issue closed"), "opened": ("reopen", "Issue reopened")}


def push_fanout(
    stack: Stack, seeded: Seeded, *, state: str = "closed", timeout: float = 300
) -> dict[str, Any]:
    """One state change → one notification → a message to each of the seeded browsers.

    Timed from the ``push.deliver`` job being committed to the outbox (by the fan-out that
    stored the deliveries) to the last delivery recorded as ``sent`` in the database;
    also from sending the webhook. Then every message is decrypted and checked.
    ``state`` is the issue's new state (see :data:`PUSH_STATES`).
    """
    assert stack.push is not None
    assert stack.gitlab is not None
    assert stack.web is not None
    assert stack.worker is not None
    push = stack.push
    wait_idle(stack)
    total = len(seeded.push_subscriptions)
    sub_ids = {push.subscription_id(s) for s in seeded.push_subscriptions}
    before = len(push.requests)
    action, words = PUSH_STATES[state]
    title = f"{words}: Crash on login"
    stack.gitlab.add_issue(PUSH_PROJECT, 1, title="Crash on login", state=state)
    meter = CpuMeter(
        {"worker": stack.worker.pid, "web": stack.web.pid, "bench_process_with_fakes": _own_pid()}
    ).start()
    sent_webhook = datetime.now(UTC)
    send_hook(stack, seeded.org_id, PUSH_PROJECT, 1, action)

    def sent() -> int:
        return int(
            stack.scalar(
                "SELECT count(*) FROM push_deliveries d JOIN notifications n "
                "ON n.id = d.notification_id WHERE n.title = %s AND d.status = 'sent'",
                title,
            )
        )

    def all_sent() -> bool:
        stack.check_alive()
        return sent() >= total

    wait_for(all_sent, timeout=timeout, what=f"{total} push deliveries", every=0.05)
    cpu = meter.stop()
    wait_idle(stack)
    notification_id = stack.scalar("SELECT id FROM notifications WHERE title = %s", title)
    enqueued = stack.scalar(
        "SELECT min(created_at) FROM outbox WHERE job = 'push.deliver' "
        "AND payload->>'notification_id' = %s",
        notification_id,
    )
    first_sent, last_sent = stack.rows(
        "SELECT min(sent_at), max(sent_at) FROM push_deliveries WHERE notification_id = %s",
        notification_id,
    )[0]
    undecryptable = push.decrypt_deferred()
    mine = [r for r in push.requests[before:] if r.subscription_id in sub_ids]
    delivered = [r for r in mine if r.outcome == "delivered"]
    readable = 0
    for record in delivered:
        try:
            message = json.loads(record.plaintext or b"")
        except ValueError:
            continue
        readable += message.get("title") == title and message.get("org_id") == seeded.org_id
    seconds = (last_sent - enqueued).total_seconds()
    return {
        "subscriptions": total,
        "delivered": len(delivered),
        "distinct_subscriptions": len({r.subscription_id for r in delivered}),
        "decrypted_and_correct": readable,
        "undecryptable": undecryptable,
        "rejected": sum(r.outcome == "rejected" for r in mine),
        "duplicates": len(delivered) - len({r.subscription_id for r in delivered}),
        "seconds_enqueue_to_last_sent": round(seconds, 3),
        "messages_per_second": round(total / seconds, 1) if seconds > 0 else 0.0,
        "seconds_webhook_to_first_sent": round((first_sent - sent_webhook).total_seconds(), 3),
        "seconds_webhook_to_last_sent": round((last_sent - sent_webhook).total_seconds(), 3),
        "sender_connections": len({r.client_port for r in delivered}),
        "cpu_cores": cpu,
    }
