"""The composition root: reads settings, picks adapters, builds services.

Entrypoints ask this container for services; nothing else constructs adapters.
Services and units of work are Factories (a fresh one per call); shared clients
(engine, broker, hashers) are thread-safe singletons, one per container. Build one
container per process (per event loop): async engines belong to the loop that uses them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import dramatiq
from dependency_injector import containers, providers
from dramatiq.brokers.redis import RedisBroker
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from viarah.adapters.crypto import keys as crypto_keys
from viarah.adapters.crypto.passwords import Argon2PasswordHasher
from viarah.adapters.crypto.secrets import FernetSecretBox, HmacKeyedHasher
from viarah.adapters.db.engine import create_engine
from viarah.adapters.db.jobs import SqlHeartbeatStore, SqlJobStore, database_answers
from viarah.adapters.db.native import NativePool, native_pool_for
from viarah.adapters.db.stats import read_backlog
from viarah.adapters.db.uow import SqlUnitOfWork, is_connection_error
from viarah.adapters.gitlab.http import HttpxGitLabClient
from viarah.adapters.metrics.prometheus import MetricsServer as MetricsServer  # for the worker
from viarah.adapters.metrics.prometheus import PrometheusTelemetry
from viarah.adapters.outbound.clients import GuardedHttpClients
from viarah.adapters.outbound.http11 import GuardedHttp11Clients
from viarah.adapters.push.transport import PUSH_MAX_CONNECTIONS
from viarah.adapters.push.transport import USER_AGENT as PUSH_USER_AGENT
from viarah.adapters.push.webpush import WebPushSender
from viarah.adapters.queue.dramatiq import (
    QUEUE_NAME,
    DramatiqJobQueue,
    create_redis_broker,
    declare_job_actor,
)
from viarah.adapters.queue.inprocess import InProcessJobQueue
from viarah.domain.gitlab.integrations import GitLabIntegrations
from viarah.domain.gitlab.keys import StoredSecrets
from viarah.domain.gitlab.links import REFRESH_JOB, GitLabLinks, GitLabRefresher
from viarah.domain.gitlab.recent_integrations import RecentIntegrations
from viarah.domain.gitlab.retention import PURGE_DELIVERIES_JOB, DeliveryRetention
from viarah.domain.gitlab.webhooks import DRAIN_JOB, PROCESS_JOB, SWEEP_JOB, GitLabWebhooks
from viarah.domain.identity.services import ApiTokens, Authentication, RecentTokens, Users
from viarah.domain.jobs.model import dead_worker_after
from viarah.domain.jobs.ports import GiveUpHandler, JobHandler
from viarah.domain.jobs.services import (
    JobRunner,
    OutboxPurge,
    OutboxRelay,
    SystemHealth,
    WorkerPresence,
)
from viarah.domain.notifications.delivery import DELIVER_JOB, Notifier
from viarah.domain.notifications.dispatch import PushDispatcher, notify_and_deliver
from viarah.domain.notifications.model import EVENT_TYPES
from viarah.domain.notifications.services import (
    NotificationPreferences,
    PushSubscriptions,
)
from viarah.domain.orgs.services import Memberships, Organizations, Projects, Tasks
from viarah.domain.shared.clock import SystemClock
from viarah.domain.shared.errors import Conflict, Unavailable
from viarah.domain.shared.outbound import OutboundPolicy
from viarah.domain.shared.telemetry import Backlog
from viarah.settings import Settings

if TYPE_CHECKING:
    from viarah.adapters.db.migrate import MigrationState

log = logging.getLogger("viarah.metrics")

PURGE_SESSIONS_JOB = "identity.purge_expired_sessions"
CHECK_TOKEN_EXPIRY_JOB = "gitlab.check_token_expiry"
PURGE_OUTBOX_JOB = "jobs.purge_done"


def _broker(settings: Settings) -> RedisBroker | None:
    return create_redis_broker(settings.broker_url) if settings.broker_url else None


def _job_queue(
    settings: Settings, broker: RedisBroker | None
) -> DramatiqJobQueue | InProcessJobQueue:
    if broker is not None:
        return DramatiqJobQueue(broker)
    return InProcessJobQueue()


def _job_handlers(
    authentication: Authentication,
    refresher: GitLabRefresher,
    webhooks: GitLabWebhooks,
    integrations: GitLabIntegrations,
    notifier: Notifier,
    dispatcher: PushDispatcher,
    outbox_purge: OutboxPurge,
    delivery_retention: DeliveryRetention,
) -> dict[str, JobHandler]:
    """Every job the worker knows, by name; each handler is idempotent."""

    async def purge_expired_sessions(_payload: dict[str, Any]) -> None:
        await authentication.purge_expired_sessions()

    async def refresh_object(payload: dict[str, Any]) -> None:
        await refresher.refresh(
            str(payload["org_id"]),
            str(payload["project_path"]),
            str(payload["kind"]),
            int(payload["iid"]),
        )

    async def process_delivery(payload: dict[str, Any]) -> None:
        await webhooks.process(str(payload["delivery_id"]))

    async def process_deliveries(payload: dict[str, Any]) -> None:
        await webhooks.process_waiting(str(payload["org_id"]))

    async def sweep_deliveries(_payload: dict[str, Any]) -> None:
        await webhooks.requeue_waiting()

    async def check_token_expiry(_payload: dict[str, Any]) -> None:
        await integrations.warn_expiring_tokens()

    async def notify(payload: dict[str, Any]) -> None:
        await notify_and_deliver(notifier, dispatcher, payload)

    async def deliver_push(payload: dict[str, Any]) -> None:
        await dispatcher.deliver(str(payload["notification_id"]))

    async def purge_outbox(_payload: dict[str, Any]) -> None:
        await outbox_purge.purge()

    async def purge_deliveries(_payload: dict[str, Any]) -> None:
        await delivery_retention.purge()

    handlers: dict[str, JobHandler] = {
        PURGE_SESSIONS_JOB: purge_expired_sessions,
        REFRESH_JOB: refresh_object,
        PROCESS_JOB: process_delivery,
        DRAIN_JOB: process_deliveries,
        SWEEP_JOB: sweep_deliveries,
        CHECK_TOKEN_EXPIRY_JOB: check_token_expiry,
        DELIVER_JOB: deliver_push,
        PURGE_OUTBOX_JOB: purge_outbox,
        PURGE_DELIVERIES_JOB: purge_deliveries,
    }
    handlers.update({f"event.{event_type}": notify for event_type in EVENT_TYPES})
    return handlers


def _give_up_handlers(webhooks: GitLabWebhooks) -> dict[str, GiveUpHandler]:
    """Who hears that a job failed for good, by job name."""

    async def delivery_failed(payload: dict[str, Any], reason: str) -> None:
        await webhooks.processing_gave_up(str(payload["delivery_id"]), reason)

    return {PROCESS_JOB: delivery_failed}


def _dead_worker_after(settings: Settings) -> timedelta:
    return dead_worker_after(settings.worker_heartbeat_seconds)


def _ttl(settings: Settings) -> timedelta:
    return timedelta(seconds=settings.gitlab_metadata_ttl_seconds)


def _database_probe(engine: Any, native: NativePool | None) -> Callable[[], Any]:
    async def probe() -> bool:
        return await database_answers(engine, native)

    return probe


def _broker_probe(queue: DramatiqJobQueue | InProcessJobQueue) -> Callable[[], Any]:
    async def probe() -> bool:
        import asyncio

        return await asyncio.to_thread(queue.ping)

    return probe


def _native_pool(engine: AsyncEngine, settings: Settings) -> NativePool | None:
    return native_pool_for(engine, size=settings.database_pool_size)


class Container(containers.DeclarativeContainer):
    settings = providers.Dependency(instance_of=Settings)

    clock = providers.ThreadSafeSingleton(SystemClock)
    #: Counters and histograms of this process (``viarah serve`` shares one between the
    #: web's container and its worker's, see :func:`build_container`).
    telemetry = providers.ThreadSafeSingleton(PrometheusTelemetry)
    engine = providers.ThreadSafeSingleton(
        create_engine, database_url=settings.provided.database_url
    )
    password_hasher = providers.ThreadSafeSingleton(Argon2PasswordHasher)
    #: The dramatiq Redis broker (None without BROKER_URL); the worker declares its actor on it.
    broker = providers.ThreadSafeSingleton(_broker, settings=settings)
    job_queue = providers.ThreadSafeSingleton(_job_queue, settings=settings, broker=broker)

    #: PostgreSQL's units of work run on psycopg directly (None on SQLite).
    native_pool = providers.ThreadSafeSingleton(_native_pool, engine=engine, settings=settings)
    uow = providers.Factory(SqlUnitOfWork, engine=engine, clock=clock, native=native_pool)

    users = providers.Factory(Users, uow=uow.provider, clock=clock, hasher=password_hasher)
    keyed_hasher = providers.ThreadSafeSingleton(
        HmacKeyedHasher, secret_key=settings.provided.secret_key
    )
    # One per process: a client's requests cost one token lookup a second.
    recent_tokens = providers.ThreadSafeSingleton(RecentTokens)
    authentication = providers.ThreadSafeSingleton(
        Authentication,
        uow=uow.provider,
        clock=clock,
        hasher=password_hasher,
        signer=keyed_hasher,
        recent_tokens=recent_tokens,
    )
    api_tokens = providers.Factory(
        ApiTokens, uow=uow.provider, clock=clock, recent_tokens=recent_tokens
    )
    organizations = providers.Factory(Organizations, uow=uow.provider, clock=clock)
    memberships = providers.Factory(Memberships, uow=uow.provider, clock=clock)
    projects = providers.Factory(Projects, uow=uow.provider, clock=clock)
    tasks = providers.Factory(Tasks, uow=uow.provider, clock=clock)

    secret_box = providers.ThreadSafeSingleton(
        FernetSecretBox, keys=settings.provided.encryption_keys
    )
    outbound_policy = providers.ThreadSafeSingleton(
        OutboundPolicy, settings.provided.outbound_allowlist
    )
    outbound_http = providers.ThreadSafeSingleton(GuardedHttpClients, outbound_policy)
    gitlab_client = providers.ThreadSafeSingleton(
        HttpxGitLabClient, outbound_http, clock=clock, telemetry=telemetry
    )
    # One per process: webhooks skip reading an integration read in the last second.
    recent_integrations = providers.ThreadSafeSingleton(RecentIntegrations)
    gitlab_integrations = providers.Factory(
        GitLabIntegrations,
        uow=uow.provider,
        clock=clock,
        box=secret_box,
        hasher=keyed_hasher,
        client=gitlab_client,
        recent=recent_integrations,
    )
    gitlab_links = providers.Factory(
        GitLabLinks, uow=uow.provider, clock=clock, ttl=providers.Callable(_ttl, settings)
    )
    gitlab_refresher = providers.Factory(
        GitLabRefresher, uow=uow.provider, clock=clock, box=secret_box, client=gitlab_client
    )
    gitlab_webhooks = providers.Factory(
        GitLabWebhooks,
        uow=uow.provider,
        clock=clock,
        hasher=keyed_hasher,
        box=secret_box,
        recent=recent_integrations,
    )
    stored_secrets = providers.Factory(StoredSecrets, uow=uow.provider, clock=clock, box=secret_box)

    push_subscriptions = providers.Factory(
        PushSubscriptions, uow=uow.provider, clock=clock, policy=outbound_policy
    )
    notification_preferences = providers.Factory(NotificationPreferences, uow=uow.provider)
    notifier = providers.Factory(Notifier, uow=uow.provider, clock=clock)
    #: Push gets its own guarded pool: a lean HTTP/1.1 keep-alive client sized for fan-out
    #: (httpx's pool bookkeeping cost more CPU per message than the encryption).
    push_http = providers.ThreadSafeSingleton(
        GuardedHttp11Clients,
        outbound_policy,
        max_connections=PUSH_MAX_CONNECTIONS,
        user_agent=PUSH_USER_AGENT,
    )
    push_sender = providers.ThreadSafeSingleton(
        WebPushSender,
        settings.provided.vapid_public_key,
        settings.provided.vapid_private_key,
        settings.provided.vapid_subject,
        http=push_http,
        outbound_allowlist=settings.provided.outbound_allowlist,
        clock=clock,
        telemetry=telemetry,
    )
    push_dispatcher = providers.Factory(
        PushDispatcher, uow=uow.provider, clock=clock, sender=push_sender
    )

    job_store = providers.ThreadSafeSingleton(SqlJobStore, engine=engine, native=native_pool)
    heartbeat_store = providers.ThreadSafeSingleton(SqlHeartbeatStore, engine=engine)
    outbox_purge = providers.Factory(OutboxPurge, store=job_store, clock=clock)
    delivery_retention = providers.Factory(
        DeliveryRetention,
        uow=uow.provider,
        clock=clock,
        retention_days=settings.provided.webhook_delivery_retention_days,
    )
    job_handlers = providers.Callable(
        _job_handlers,
        authentication=authentication,
        refresher=gitlab_refresher,
        webhooks=gitlab_webhooks,
        integrations=gitlab_integrations,
        notifier=notifier,
        dispatcher=push_dispatcher,
        outbox_purge=outbox_purge,
        delivery_retention=delivery_retention,
    )
    relay = providers.ThreadSafeSingleton(
        OutboxRelay,
        store=job_store,
        queue=job_queue,
        clock=clock,
        dead_worker_after=providers.Callable(_dead_worker_after, settings),
        telemetry=telemetry,
    )
    job_runner = providers.Factory(
        JobRunner,
        store=job_store,
        clock=clock,
        handlers=job_handlers,
        on_give_up=providers.Callable(_give_up_handlers, webhooks=gitlab_webhooks),
        dead_worker_after=providers.Callable(_dead_worker_after, settings),
        telemetry=telemetry,
    )
    presence = providers.Factory(WorkerPresence, store=heartbeat_store, clock=clock)
    health = providers.Factory(
        SystemHealth,
        database=providers.Callable(_database_probe, engine=engine, native=native_pool),
        broker=providers.Callable(_broker_probe, queue=job_queue),
        presence=presence,
    )


def build_container(settings: Settings, *, telemetry_of: Container | None = None) -> Container:
    """A container for ``settings``; call :func:`close_container` when the process stops.

    ``telemetry_of``: record into that container's telemetry instead of a new one (two
    containers in one process, e.g. ``viarah serve``'s web and worker, export one set of
    metrics).
    """
    container = Container(settings=settings)
    if telemetry_of is not None:
        container.telemetry.override(providers.Object(telemetry_of.telemetry()))
    return container


async def close_container(container: Container) -> None:
    """Dispose of pooled connections (database engine, broker client, outbound HTTP)."""
    await container.push_http().aclose()
    await container.outbound_http().aclose()
    native = container.native_pool()
    if native is not None:
        await native.close()
    engine = container.engine()
    await engine.dispose()
    broker = container.broker()
    if broker is not None:
        broker.close()


# --- Metrics: ``GET /metrics`` of the web app and ``viarah worker --metrics-port``. ---

#: A scrape waits at most this long for the backlog counts (then: viarah_database_up 0).
BACKLOG_TIMEOUT_SECONDS = 3.0


async def _backlog(container: Container) -> Backlog | None:
    """The backlog counts now, on the running loop's engine; None when they cannot be read."""
    settings = container.settings()
    try:
        return await asyncio.wait_for(
            read_backlog(container.engine(), container.clock().now(), _dead_worker_after(settings)),
            timeout=BACKLOG_TIMEOUT_SECONDS,
        )
    except Exception as exc:
        log.debug("metrics.backlog_unavailable error=%s", type(exc).__name__)
        return None


async def metrics_exposition(container: Container, accept: str = "") -> tuple[bytes, str]:
    """This process's metrics in the text exposition format, and their Content-Type.

    Reads the backlog gauges from the database first (bounded by BACKLOG_TIMEOUT_SECONDS);
    a database that does not answer makes ``viarah_database_up 0``, never a failure.
    """
    backlog = await _backlog(container)
    return container.telemetry().exposition(lambda: backlog, accept)


def start_worker_metrics_server(
    container: Container,
    host: str,
    port: int,
    loop: Callable[[], asyncio.AbstractEventLoop | None],
) -> MetricsServer:
    """Serve the worker's metrics on ``host:port`` (a thread of its own).

    The backlog is read on ``loop()`` (the worker's event loop, where its database engine
    lives). Unavailable when the address cannot be bound.
    """

    def backlog() -> Backlog | None:
        running = loop()
        if running is None or not running.is_running():
            return None
        future = asyncio.run_coroutine_threadsafe(_backlog(container), running)
        try:
            return future.result(timeout=BACKLOG_TIMEOUT_SECONDS + 1)
        except Exception:
            future.cancel()
            return None

    try:
        return container.telemetry().serve(host, port, backlog)
    except OSError as exc:
        why = exc.strerror or type(exc).__name__
        raise Unavailable(f"--metrics-port: cannot listen on {host}:{port} ({why})") from exc


# --- Operator helpers: the CLI and the worker reach these adapters only through here. ---


def database_location(database_url: str) -> str:
    """A human description of the database, without credentials."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        return f"SQLite {url.database}"
    where = f"{url.host or 'localhost'}:{url.port or 5432}"
    return f"PostgreSQL {where}/{url.database or ''}"


def _unreachable(database_url: str, exc: BaseException) -> Unavailable:
    cause = getattr(exc, "orig", None) or exc
    first_line = (str(cause).strip().splitlines() or [type(cause).__name__])[0][:200]
    password = make_url(database_url).password
    if password:
        first_line = first_line.replace(str(password), "***")
    return Unavailable(
        f"cannot reach the database ({database_location(database_url)}): {first_line}"
    )


def migration_state(database_url: str) -> MigrationState:
    """Where the database stands against the code's migrations.

    Unavailable when the database cannot be reached; Conflict when it carries a
    revision this code does not know (a newer release migrated it).
    """
    # alembic is imported on demand: web and worker processes start faster without it.
    from alembic.script.revision import RevisionError
    from alembic.util import CommandError

    from viarah.adapters.db import migrate as db_migrate

    try:
        return db_migrate.state(database_url)
    except Exception as exc:
        if is_connection_error(exc):
            raise _unreachable(database_url, exc) from exc
        if isinstance(exc, RevisionError | CommandError):
            raise Conflict(
                "the database has a migration revision this code does not know "
                "(was it migrated by a newer ViaRah?)"
            ) from exc
        raise


def migrate_database(database_url: str) -> MigrationState:
    """Upgrade the schema to head (idempotent) and return the resulting state."""
    from viarah.adapters.db import migrate as db_migrate

    before = migration_state(database_url)
    if before.pending:
        try:
            db_migrate.upgrade(database_url)
        except Exception as exc:
            if is_connection_error(exc):
                raise _unreachable(database_url, exc) from exc
            raise
    return migration_state(database_url)


#: The broker queues a worker consumes.
WORKER_QUEUES: frozenset[str] = frozenset({QUEUE_NAME})


def declare_worker_actor(
    container: Container,
    run_job: Callable[[str], Awaitable[None]],
    *,
    time_limit_ms: int,
) -> dramatiq.Actor[[str], None]:
    """Declare ``run_outbox_job`` on the container's broker (worker processes only)."""
    broker = container.broker()
    if broker is None:
        raise Unavailable("BROKER_URL: is required to run a worker (redis://host:6379/0)")
    return declare_job_actor(broker, run_job, time_limit_ms=time_limit_ms)


def in_process_queue(container: Container) -> InProcessJobQueue:
    """The in-process queue of ``viarah serve`` (only when there is no BROKER_URL)."""
    queue = container.job_queue()
    if not isinstance(queue, InProcessJobQueue):
        raise TypeError("BROKER_URL is set: jobs go to the broker, not the in-process queue")
    return queue


def broker_reachable(broker_url: str) -> bool:
    """True when the Redis at ``broker_url`` answers a PING."""
    broker = create_redis_broker(broker_url)
    try:
        return DramatiqJobQueue(broker).ping()
    finally:
        broker.close()


def new_fernet_key() -> str:
    """A fresh key for VIA_RAH_ENCRYPTION_KEY."""
    return crypto_keys.generate_fernet_key()


def new_vapid_keypair() -> crypto_keys.VapidKeypair:
    """A fresh keypair for WEBPUSH_VAPID_PUBLIC_KEY / WEBPUSH_VAPID_PRIVATE_KEY."""
    return crypto_keys.generate_vapid_keypair()


def key_problems(settings: Settings) -> list[str]:
    """Configured keys that do not parse, one line each naming the variable."""
    problems: list[str] = []
    for position, key in enumerate(settings.encryption_keys, start=1):
        why = crypto_keys.fernet_key_problem(key)
        if why is not None:
            problems.append(f"VIA_RAH_ENCRYPTION_KEY: key #{position} {why}")
    if settings.vapid_public_key and settings.vapid_private_key:
        problems.extend(
            crypto_keys.vapid_keypair_problems(
                settings.vapid_public_key, settings.vapid_private_key
            )
        )
    return problems


# --- Backup and restore: ``viarah db backup`` / ``db restore`` and ``viarah smoke``. ---
# The mechanics (pg_dump, psql, the manifest) live in viarah.adapters.db.backup; these
# helpers add the app's version and clock and turn connection failures into Unavailable.

if TYPE_CHECKING:
    from pathlib import Path

    from viarah.adapters.db.backup import BackupContents as BackupContents
    from viarah.adapters.db.backup import BackupFile as BackupFile


def app_version() -> str:
    """The installed ViaRah version (``unknown`` when run from an uninstalled tree)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("viarah")
    except PackageNotFoundError:
        return "unknown"


def backup_database(
    database_url: str, destination: Path, progress: Callable[[int], None] | None = None
) -> BackupFile:
    """Write a plain-SQL backup with its manifest to ``destination`` (atomically, mode 0600).

    ``progress`` is called with the bytes written so far. Conflict on a non-PostgreSQL
    database; Unavailable when pg_dump is missing, fails or the database is unreachable.
    """
    from viarah.adapters.db import backup as db_backup

    try:
        return db_backup.write_backup(
            database_url,
            destination,
            app_version=app_version(),
            created_at=SystemClock().now(),
            progress=progress,
        )
    except Exception as exc:
        if is_connection_error(exc):
            raise _unreachable(database_url, exc) from exc
        raise


def read_backup(path: Path) -> BackupContents:
    """The manifest and migration revision of a backup file; Conflict if it is not one."""
    from viarah.adapters.db import backup as db_backup

    return db_backup.read_backup(path)


def revision_known(revision: str | None) -> bool:
    """True when this code knows the migration ``revision`` (None: an unmigrated database)."""
    from viarah.adapters.db import migrate as db_migrate

    return db_migrate.known_revision(revision)


def database_relations(database_url: str) -> list[str]:
    """Tables, views and sequences in the public schema; an empty list means empty."""
    from viarah.adapters.db import backup as db_backup

    try:
        return db_backup.public_relations(database_url)
    except Exception as exc:
        if is_connection_error(exc):
            raise _unreachable(database_url, exc) from exc
        raise


def restore_database(database_url: str, path: Path, *, drop_existing: bool) -> None:
    """Load a backup with psql in one transaction (nothing changes if it fails).

    ``drop_existing`` drops and recreates the public schema first, in that transaction.
    """
    from viarah.adapters.db import backup as db_backup

    db_backup.run_restore(database_url, path, drop_existing=drop_existing)
