"""Long-running commands: ``viarah serve`` (all-in-one), ``viarah web``, ``viarah worker``."""

from __future__ import annotations

import argparse
import asyncio
import signal
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

import uvicorn

from viarah.container import Container, build_container, migrate_database
from viarah.entrypoints.cli.common import (
    CommandFailed,
    describe_database,
    err,
    load,
    require_migrated,
)
from viarah.entrypoints.heap import freeze_when_started
from viarah.entrypoints.worker.inprocess import InProcessWorker
from viarah.entrypoints.worker.process import PERIODIC_JOBS, run_worker
from viarah.entrypoints.worker.runtime import DramatiqWorkerRuntime
from viarah.entrypoints.worker.status import configure_logging
from viarah.settings import load_settings

Hook = Callable[[], Awaitable[None]]
ASGI_FACTORY = "viarah.entrypoints.cli.asgi:app_factory"


class AppFactory(Protocol):
    """``viarah.entrypoints.web.app.create_app``."""

    def __call__(
        self,
        container: Container,
        *,
        on_startup: Sequence[Hook] = ...,
        on_shutdown: Sequence[Hook] = ...,
    ) -> Any: ...


def load_app_factory() -> AppFactory:
    """The web app's factory (imported late: ``viarah worker`` does not need Litestar)."""
    from viarah.entrypoints.web.app import create_app

    return create_app


def run_uvicorn(app: Any, *, host: str, port: int, log_level: str) -> int:
    """Serve ``app`` in this process until SIGTERM/SIGINT; 0 after a graceful stop."""
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level.lower(),
        lifespan="on",
        server_header=False,
        access_log=False,  # the app logs every request itself (http.request)
        timeout_graceful_shutdown=8,
    )
    server = uvicorn.Server(config)
    # uvicorn re-raises the signal that stopped it once it is done; with these handlers in
    # place that re-raise is a no-op and a SIGTERM-ed server exits 0.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda _signum, _frame: None)
    try:
        server.run()
    except SystemExit as exc:  # uvicorn exits on a startup failure (port in use, hook failed)
        raise CommandFailed("the web server did not start (see the log above)") from exc
    if not server.started:
        raise CommandFailed("the web server did not start (see the log above)")
    return 0


def serve(args: argparse.Namespace) -> int:
    """``viarah serve``: migrate, then web + worker in one process."""
    settings = load(settings=load_settings().with_embedded_secret())
    configure_logging(settings.log_level)
    migrate_database(settings.database_url)
    create_app = load_app_factory()
    container = build_container(settings)
    on_startup: list[Hook] = []
    on_shutdown: list[Hook] = []
    if settings.broker_url:
        # The dramatiq worker gets its own container: its engine lives on its own loop.
        # It records into the web container's telemetry: GET /metrics shows both.
        runtime = DramatiqWorkerRuntime(
            settings,
            periodic=PERIODIC_JOBS,
            container=build_container(settings, telemetry_of=container),
        )

        async def start_worker() -> None:
            await asyncio.to_thread(runtime.start)

        async def stop_worker() -> None:
            await asyncio.to_thread(runtime.stop)

        on_startup.append(start_worker)
        on_shutdown.append(stop_worker)
        queue = "Redis queue"
    else:
        worker = InProcessWorker(
            container,
            heartbeat_seconds=settings.worker_heartbeat_seconds,
            periodic=PERIODIC_JOBS,
        )
        on_startup.append(worker.start)
        on_shutdown.append(worker.stop)
        queue = "in-process queue"
    on_startup.append(freeze_when_started)  # last: startup's objects are long-lived
    app = create_app(container, on_startup=on_startup, on_shutdown=on_shutdown)
    where = f"{describe_database(settings)}, {queue}"
    print(f"viarah: serving on http://{args.host}:{args.port} ({where})", flush=True)
    return run_uvicorn(app, host=args.host, port=args.port, log_level=settings.log_level)


def web(args: argparse.Namespace) -> int:
    """``viarah web``: the HTTP API only."""
    if args.workers < 1:
        raise CommandFailed("--workers: must be at least 1")
    settings = load()
    configure_logging(settings.log_level)
    if not settings.broker_url:
        err(
            "viarah: notice: BROKER_URL is empty: background jobs wait in the outbox "
            "(run `viarah serve`, or set BROKER_URL and run `viarah worker`)"
        )
    print(
        f"viarah: web on http://{args.host}:{args.port} ({describe_database(settings)})",
        flush=True,
    )
    if args.workers > 1:
        load_app_factory()  # fail here, once, rather than in every worker process
        uvicorn.run(
            ASGI_FACTORY,
            factory=True,
            host=args.host,
            port=args.port,
            workers=args.workers,
            log_level=settings.log_level.lower(),
            lifespan="on",
            server_header=False,
            access_log=False,
            timeout_graceful_shutdown=8,
        )
        return 0
    app = load_app_factory()(build_container(settings), on_startup=[freeze_when_started])
    return run_uvicorn(app, host=args.host, port=args.port, log_level=settings.log_level)


def worker(args: argparse.Namespace) -> int:
    """``viarah worker``: dramatiq consumers, the outbox relay and the heartbeat."""
    if args.processes < 1 or args.threads < 1:
        raise CommandFailed("--processes and --threads must be at least 1")
    settings = load_settings()
    if not settings.broker_url:
        raise CommandFailed(
            "BROKER_URL: is required for `viarah worker` (redis://host:6379/0); "
            "without a broker, `viarah serve` runs jobs in-process"
        )
    settings = load(settings=settings)
    configure_logging(settings.log_level)
    metrics_port = args.metrics_port or settings.worker_metrics_port
    metrics = None if metrics_port is None else (args.metrics_host, metrics_port)
    if metrics_port is not None and metrics_port + args.processes - 1 > 65535:
        raise CommandFailed(
            f"--metrics-port: {args.processes} processes need ports {metrics_port} to "
            f"{metrics_port + args.processes - 1}, beyond 65535"
        )
    require_migrated(settings)
    return run_worker(settings, processes=args.processes, threads=args.threads, metrics=metrics)
