"""Dramatiq on Redis: the broker that carries outbox job ids to worker processes."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import dramatiq
import redis
from dramatiq.brokers.redis import RedisBroker
from dramatiq.middleware import AsyncIO

from viarah.domain.jobs.ports import BrokerUnavailable

QUEUE_NAME = "viarah"
RUN_JOB_ACTOR = "run_outbox_job"


def create_redis_broker(broker_url: str) -> RedisBroker:
    """A Redis broker with the AsyncIO middleware (async actors) added explicitly."""
    broker = RedisBroker(  # type: ignore[no-untyped-call]
        url=broker_url,
        socket_connect_timeout=3,
        socket_timeout=10,
        health_check_interval=15,
    )
    broker.add_middleware(AsyncIO())
    return broker


def declare_job_actor(
    broker: dramatiq.Broker,
    run_job: Callable[[str], Awaitable[None]],
    *,
    time_limit_ms: int,
) -> dramatiq.Actor[[str], None]:
    """Declare the one actor, ``run_outbox_job(job_id)``, on ``broker`` (worker side).

    ``run_job`` is an async callable; the AsyncIO middleware runs it on the worker
    process's event-loop thread. ``max_retries=0``: a failed job is retried by the outbox
    (with its backoff and attempt count), never by dramatiq.
    """

    async def run_outbox_job(job_id: str) -> None:
        await run_job(job_id)

    decorate = dramatiq.actor(
        broker=broker,
        actor_name=RUN_JOB_ACTOR,
        queue_name=QUEUE_NAME,
        max_retries=0,
        time_limit=time_limit_ms,
    )
    return decorate(run_outbox_job)


class DramatiqJobQueue:
    """Sends ``run_outbox_job(job_id)`` messages; retries belong to the outbox, not dramatiq."""

    def __init__(self, broker: dramatiq.Broker) -> None:
        self._broker = broker

    def send(self, job_id: str, job_name: str) -> None:
        message: dramatiq.Message[None] = dramatiq.Message(
            queue_name=QUEUE_NAME,
            actor_name=RUN_JOB_ACTOR,
            args=(job_id,),
            kwargs={},
            options={"job_name": job_name},
        )
        try:
            self._broker.enqueue(message)
        except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
            raise BrokerUnavailable(type(exc).__name__) from exc

    def ping(self) -> bool:
        """True when Redis answers (readiness checks)."""
        client = getattr(self._broker, "client", None)
        if client is None:
            return True
        try:
            return bool(client.ping())
        except (redis.RedisError, OSError):
            return False
