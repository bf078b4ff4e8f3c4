"""Dramatiq on Redis: the broker that carries outbox job ids to worker processes."""

from __future__ import annotations

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
