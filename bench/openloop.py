"""A fixed-rate (open-loop) HTTP/1.1 load generator, run as its own process.

wrk 4.1 has no rate mode: a closed loop slows down with the server and hides the wait of
the requests it did not send (coordinated omission). Here request *i* is due at
``start + i / rate`` whatever happened before; a free keep-alive connection sends it
(or it waits in the queue for one, which counts), and its latency is measured from the
time it was DUE, not from when it was finally written.

    python -m bench.openloop < spec.json > result.json

spec: ``{"host", "port", "rate", "seconds", "connections", "timeout_s", "requests"}``
where ``requests`` is ``{"kind": "get", "path", "headers"}`` or ``{"kind": "webhook",
"path", "headers", "body_template", "objects", "key_prefix"}``.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections import Counter
from typing import Any


def percentile(sorted_values: list[float], p: float) -> float:
    """Nearest-rank percentile of an ascending list (0.0 for an empty one)."""
    if not sorted_values:
        return 0.0
    rank = max(1, min(len(sorted_values), round(p / 100 * len(sorted_values) + 0.5)))
    return sorted_values[rank - 1]


class RequestMaker:
    def __init__(self, spec: dict[str, Any], host: str, port: int) -> None:
        self.kind = spec["kind"]
        self.path = spec["path"]
        self.head = f"Host: {host}:{port}\r\n" + "".join(
            f"{k}: {v}\r\n" for k, v in spec.get("headers", {}).items()
        )
        self.bodies = (
            [
                spec["body_template"].replace("__IID__", str(iid)).encode()
                for iid in range(1, int(spec.get("objects", 1)) + 1)
            ]
            if self.kind == "webhook"
            else []
        )
        self.key_prefix = spec.get("key_prefix", "ol")

    def make(self, n: int) -> bytes:
        if self.kind == "get":
            return f"GET {self.path} HTTP/1.1\r\n{self.head}\r\n".encode()
        body = self.bodies[n % len(self.bodies)]
        return (
            f"POST {self.path} HTTP/1.1\r\n{self.head}"
            f"Idempotency-Key: {self.key_prefix}-{n}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode() + body


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bool]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    length = 0
    close = False
    for line in lines[1:]:
        name, _, value = line.partition(":")
        name = name.strip().lower()
        if name == "content-length":
            length = int(value.strip())
        elif name == "connection" and value.strip().lower() == "close":
            close = True
        elif name == "transfer-encoding":
            raise ValueError("chunked answers are not supported by this generator")
    if length:
        await reader.readexactly(length)
    return status, close


async def run(spec: dict[str, Any]) -> dict[str, Any]:
    host, port = spec["host"], int(spec["port"])
    rate, seconds = float(spec["rate"]), float(spec["seconds"])
    timeout = float(spec.get("timeout_s", 10))
    maker = RequestMaker(spec["requests"], host, port)
    total = int(rate * seconds)
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[int, float] | None] = asyncio.Queue()
    latencies: list[float] = []
    service: list[float] = []
    statuses: Counter[int] = Counter()
    errors: Counter[str] = Counter()
    max_backlog = 0

    async def connection() -> None:
        reader: asyncio.StreamReader | None = None
        writer: asyncio.StreamWriter | None = None
        while True:
            item = await queue.get()
            if item is None:
                break
            n, due = item
            try:
                if writer is None or reader is None:
                    reader, writer = await asyncio.open_connection(host, port)
                sent = loop.time()
                writer.write(maker.make(n))
                status, close = await asyncio.wait_for(_read_response(reader), timeout)
            except (
                OSError,
                asyncio.IncompleteReadError,
                asyncio.LimitOverrunError,
                ValueError,
                TimeoutError,
            ) as exc:
                errors[type(exc).__name__] += 1
                if writer is not None:
                    writer.close()
                reader = writer = None
                continue
            finished = loop.time()
            statuses[status] += 1
            latencies.append(finished - due)
            service.append(finished - sent)
            if close:
                writer.close()
                reader = writer = None
        if writer is not None:
            writer.close()

    workers = [asyncio.create_task(connection()) for _ in range(int(spec["connections"]))]
    await asyncio.sleep(0.2)  # connections are opened lazily; let the tasks start
    start = loop.time() + 0.05
    wall_start = time.time()
    n = 0
    while n < total:
        now = loop.time()
        while n < total and start + n / rate <= now:
            queue.put_nowait((n, start + n / rate))
            n += 1
        max_backlog = max(max_backlog, queue.qsize())
        if n < total:
            await asyncio.sleep(max(0.0, start + n / rate - loop.time()))
    for _ in workers:
        queue.put_nowait(None)
    _, pending = await asyncio.wait(workers, timeout=timeout + 5)
    for task in pending:
        task.cancel()
    elapsed = loop.time() - start
    latencies.sort()
    service.sort()
    completed = len(latencies)
    ok = sum(c for s, c in statuses.items() if 200 <= s < 300)
    return {
        "rate": rate,
        "seconds": round(elapsed, 2),
        "connections": int(spec["connections"]),
        "scheduled": total,
        "completed": completed,
        "ok": ok,
        "achieved_rps": round(completed / elapsed, 1) if elapsed else 0.0,
        "errors": total - ok,  # non-2xx answers, socket errors, timeouts, unfinished
        "error_kinds": dict(errors),
        "statuses": {str(k): v for k, v in statuses.items()},
        "max_backlog": max_backlog,
        "started_at": wall_start,
        "p50_ms": round(percentile(latencies, 50) * 1000, 2),
        "p90_ms": round(percentile(latencies, 90) * 1000, 2),
        "p99_ms": round(percentile(latencies, 99) * 1000, 2),
        "p999_ms": round(percentile(latencies, 99.9) * 1000, 2),
        "max_ms": round((latencies[-1] if latencies else 0.0) * 1000, 2),
        "service_p50_ms": round(percentile(service, 50) * 1000, 2),
        "service_p99_ms": round(percentile(service, 99) * 1000, 2),
    }


def main() -> None:
    spec = json.load(sys.stdin)
    json.dump(asyncio.run(run(spec)), sys.stdout)


if __name__ == "__main__":
    main()
