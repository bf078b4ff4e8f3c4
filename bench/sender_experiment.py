"""Where a push message's CPU goes: the production sender against the old httpx path.

    python -m bench.sender_experiment [--messages 2000] [--concurrency 4,16,64]

Starts the push fake in a child process (VAPID verified, bodies decrypted after the
clock stops), then sends the same messages from this process twice per concurrency:

* ``http11``: ``WebPushSender.send`` as the container builds it, i.e. encryption, the
  cached VAPID JWT and the guarded HTTP/1.1 keep-alive pool (``GuardedHttp11Clients``);
* ``httpx``: the same sender over the guarded httpx client the push path used before
  (``GuardedHttpClients``, httpcore's pool; kept here only for comparison).

Also prints what ``WebPushSender.prepare`` alone costs (encryption and headers, no
network). CPU per message is this process's CPU time divided by the messages sent.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Mapping
from typing import Any

import httpx

from bench.pipeline_runs import sample_message
from viarah.adapters.outbound.clients import GuardedHttpClients
from viarah.adapters.outbound.http11_parser import Http11Answer
from viarah.adapters.push.webpush import WebPushSender
from viarah.container import build_container, close_container, new_vapid_keypair
from viarah.domain.notifications.push import PushTarget
from viarah.domain.shared.outbound import OutboundPolicy
from viarah.settings import load_settings

_CHILD = """
import json, sys
from tests.push_fake import FakePushService
push = FakePushService(defer_decryption=True, fast=True).start()
subs = [push.new_subscription() for _ in range(int(sys.argv[1]))]
print(json.dumps({"origin": push.origin, "subs": subs}), flush=True)
sys.stdin.read()
print(json.dumps({"delivered": len(push.delivered), "undecryptable": push.decrypt_deferred()}))
"""


class HttpxTransport:
    """The ``PushTransport`` port over the guarded httpx clients (the old push path)."""

    def __init__(self, clients: GuardedHttpClients) -> None:
        self._clients = clients

    async def request(
        self,
        method: str,
        scheme: str,
        host: str,
        port: int,
        target: str,
        headers: Mapping[str, str],
        body: bytes = b"",
    ) -> Http11Answer:
        url = f"{scheme}://{host}:{port}{target}"
        client = self._clients.client()
        async with client.stream(method, url, content=body, headers=headers) as response:
            data = await response.aread()
        return Http11Answer(
            response.status_code, response.reason_phrase, response.headers, data[:4096]
        )

    async def aclose(self) -> None:
        await self._clients.aclose()


async def _run(env: dict[str, str], targets: list[PushTarget], mode: str, conc: int) -> str:
    container = build_container(load_settings(env).require_valid())
    sender = container.push_sender()
    if mode == "httpx":
        policy = OutboundPolicy(["127.0.0.1"])
        limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
        sender = WebPushSender(
            env["WEBPUSH_VAPID_PUBLIC_KEY"],
            env["WEBPUSH_VAPID_PRIVATE_KEY"],
            env["WEBPUSH_VAPID_SUBJECT"],
            http=HttpxTransport(GuardedHttpClients(policy, limits=limits)),
            outbound_allowlist=["127.0.0.1"],
        )
    message = sample_message()
    gate = asyncio.Semaphore(conc)

    async def one(target: PushTarget) -> bool:
        async with gate:
            return (await sender.send(target, message)).delivered

    await one(targets[0])  # connections, JWT cache
    cpu, wall = time.process_time(), time.perf_counter()
    done = await asyncio.gather(*(one(t) for t in targets))
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    await sender.aclose()
    await close_container(container)
    n = len(targets)
    return (
        f"{mode:6s} concurrency {conc:3d}: {sum(done)}/{n} delivered, {n / wall:6.0f} msg/s, "
        f"{cpu / n * 1000:.2f} ms CPU per message"
    )


def _prepare_only(env: dict[str, str], targets: list[PushTarget]) -> str:
    container = build_container(load_settings(env).require_valid())
    sender = container.push_sender()
    message = sample_message()
    sender.prepare(targets[0], message)
    cpu = time.process_time()
    for target in targets:
        sender.prepare(target, message)
    cpu = time.process_time() - cpu
    return (
        f"prepare only (encryption + headers): {cpu / len(targets) * 1000:.2f} ms CPU per message"
    )


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.sender_experiment")
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--concurrency", default="4,16,64")
    args = parser.parse_args()
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(args.messages)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    assert child.stdin is not None
    info: dict[str, Any] = json.loads(child.stdout.readline())
    vapid = new_vapid_keypair()
    env = {
        "VIA_RAH_SECRET_KEY": "sender-experiment-secret-key-0123456789",
        "VIA_RAH_OUTBOUND_ALLOWLIST": "127.0.0.1",
        "WEBPUSH_VAPID_PUBLIC_KEY": vapid.public_key,
        "WEBPUSH_VAPID_PRIVATE_KEY": vapid.private_key,
        "WEBPUSH_VAPID_SUBJECT": "mailto:bench@example.com",
        "DATABASE_URL": "sqlite:////tmp/viarah-sender-experiment.sqlite3",
    }
    targets = [
        PushTarget(s["endpoint"], s["keys"]["p256dh"], s["keys"]["auth"]) for s in info["subs"]
    ]
    try:
        print(_prepare_only(env, targets), flush=True)
        for conc in (int(c) for c in args.concurrency.split(",")):
            for mode in ("httpx", "http11"):
                print(asyncio.run(_run(env, targets, mode, conc)), flush=True)
    finally:
        child.stdin.close()
        summary = json.loads(child.stdout.readline() or "{}")
        child.wait(timeout=60)
    print(f"push fake: {summary}")


if __name__ == "__main__":
    main()
