"""The composition root: reads settings, picks adapters, builds services.

Entrypoints ask this container for services; nothing else constructs adapters.
Services and units of work are Factories (a fresh one per call); shared clients
(engine, broker, hashers) are thread-safe singletons, one per container. Build one
container per process (per event loop): async engines belong to the loop that uses them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from dependency_injector import containers, providers

from viarah.adapters.crypto.passwords import Argon2PasswordHasher
from viarah.adapters.db.engine import create_engine
from viarah.adapters.db.jobs import SqlHeartbeatStore, SqlJobStore, database_answers
from viarah.adapters.db.uow import SqlUnitOfWork
from viarah.adapters.queue.dramatiq import DramatiqJobQueue, create_redis_broker
from viarah.adapters.queue.inprocess import InProcessJobQueue
from viarah.domain.identity.services import ApiTokens, Authentication, Users
from viarah.domain.jobs.ports import JobHandler
from viarah.domain.jobs.services import (
    JobRunner,
    OutboxRelay,
    SystemHealth,
    WorkerPresence,
)
from viarah.domain.orgs.services import Memberships, Organizations, Projects, Tasks
from viarah.domain.shared.clock import SystemClock
from viarah.settings import Settings

PURGE_SESSIONS_JOB = "identity.purge_expired_sessions"


def _job_queue(settings: Settings) -> DramatiqJobQueue | InProcessJobQueue:
    if settings.broker_url:
        return DramatiqJobQueue(create_redis_broker(settings.broker_url))
    return InProcessJobQueue()


def _job_handlers(authentication: Authentication) -> dict[str, JobHandler]:
    async def purge_expired_sessions(_payload: dict[str, Any]) -> None:
        await authentication.purge_expired_sessions()

    return {PURGE_SESSIONS_JOB: purge_expired_sessions}


def _database_probe(engine: Any) -> Callable[[], Any]:
    async def probe() -> bool:
        return await database_answers(engine)

    return probe


def _broker_probe(queue: DramatiqJobQueue | InProcessJobQueue) -> Callable[[], Any]:
    async def probe() -> bool:
        import asyncio

        return await asyncio.to_thread(queue.ping)

    return probe


class Container(containers.DeclarativeContainer):
    settings = providers.Dependency(instance_of=Settings)

    clock = providers.ThreadSafeSingleton(SystemClock)
    engine = providers.ThreadSafeSingleton(
        create_engine, database_url=settings.provided.database_url
    )
    password_hasher = providers.ThreadSafeSingleton(Argon2PasswordHasher)
    job_queue = providers.ThreadSafeSingleton(_job_queue, settings=settings)

    uow = providers.Factory(SqlUnitOfWork, engine=engine, clock=clock)

    users = providers.Factory(Users, uow=uow.provider, clock=clock, hasher=password_hasher)
    authentication = providers.ThreadSafeSingleton(
        Authentication, uow=uow.provider, clock=clock, hasher=password_hasher
    )
    api_tokens = providers.Factory(ApiTokens, uow=uow.provider, clock=clock)
    organizations = providers.Factory(Organizations, uow=uow.provider, clock=clock)
    memberships = providers.Factory(Memberships, uow=uow.provider, clock=clock)
    projects = providers.Factory(Projects, uow=uow.provider, clock=clock)
    tasks = providers.Factory(Tasks, uow=uow.provider, clock=clock)

    job_store = providers.ThreadSafeSingleton(SqlJobStore, engine=engine)
    heartbeat_store = providers.ThreadSafeSingleton(SqlHeartbeatStore, engine=engine)
    job_handlers = providers.Callable(_job_handlers, authentication=authentication)
    relay = providers.ThreadSafeSingleton(
        OutboxRelay, store=job_store, queue=job_queue, clock=clock
    )
    job_runner = providers.Factory(JobRunner, store=job_store, clock=clock, handlers=job_handlers)
    presence = providers.Factory(WorkerPresence, store=heartbeat_store, clock=clock)
    health = providers.Factory(
        SystemHealth,
        database=providers.Callable(_database_probe, engine=engine),
        broker=providers.Callable(_broker_probe, queue=job_queue),
        presence=presence,
    )


def build_container(settings: Settings) -> Container:
    """A container for ``settings``; call :func:`close_container` when the process stops."""
    container = Container(settings=settings)
    return container


async def close_container(container: Container) -> None:
    """Dispose of pooled connections."""
    engine = container.engine()
    await engine.dispose()
