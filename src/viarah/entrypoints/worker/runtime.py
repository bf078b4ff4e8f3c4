"""One dramatiq worker process: consumers, the async actor and the background loops.

Boot order (DESIGN §4): build the container (one engine for the process), declare the
actor on its broker, then start a :class:`dramatiq.Worker`; the AsyncIO middleware gives
the process one event-loop thread, on which the actor's coroutines *and* the background
loops run, so the engine's connections only ever live on that loop.

Metrics (``--metrics-port``): a small HTTP server thread, started before anything else (a
port in use stops the start at once); its scrapes read the backlog on the worker's loop.

Shutdown: the background loops stop first (no more dispatching), the worker threads
finish their in-flight jobs (up to the timeout; messages still queued in memory go back
to Redis), then the container is closed on the loop, and only then does the AsyncIO
middleware stop the loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

import dramatiq
from dramatiq.asyncio import get_event_loop_thread
from dramatiq.middleware import Middleware

from viarah.container import (
    WORKER_QUEUES,
    Container,
    MetricsServer,
    build_container,
    close_container,
    declare_worker_actor,
    start_worker_metrics_server,
)
from viarah.domain.jobs.model import CLAIM_TIMEOUT
from viarah.domain.jobs.ports import BrokerUnavailable, JobQueue
from viarah.entrypoints.worker.background import PeriodicJob, WorkerBackground, new_worker_id
from viarah.entrypoints.worker.status import Say, say
from viarah.settings import Settings

log = logging.getLogger("viarah.worker")

DEFAULT_THREADS = 8
#: In-flight jobs get this long to finish on SIGTERM (below docker's 10 s grace period).
DEFAULT_STOP_TIMEOUT_SECONDS = 8.0
#: An idle consumer polls Redis at least this often (dramatiq's default, 1 s, made a job
#: committed to an idle worker wait up to a second before it started; ten small Redis
#: calls a second cost an idle worker nothing measurable).
IDLE_POLL_MS = 100
#: The background loops finish their current step within this time, or are cancelled.
BACKGROUND_STOP_SECONDS = 4.0


class _Lifecycle(Middleware):
    """Hooks the runtime into the worker's shutdown, between the threads and the loop."""

    def __init__(self, runtime: DramatiqWorkerRuntime) -> None:
        self._runtime = runtime

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        self._runtime._stopping = True
        self._runtime._stop_background()

    def after_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        self._runtime._close_container()


class DramatiqWorkerRuntime:
    """Start and stop one worker process's consumers and loops (the caller keeps it alive)."""

    def __init__(
        self,
        settings: Settings,
        *,
        threads: int = DEFAULT_THREADS,
        on_ready: Callable[[], None] = lambda: None,
        on_heartbeat: Callable[[], None] = lambda: None,
        periodic: Sequence[PeriodicJob] = (),
        say: Say = say,
        container: Container | None = None,
        metrics: tuple[str, int] | None = None,
    ) -> None:
        self._settings = settings
        self._metrics_address = metrics
        self._metrics: MetricsServer | None = None
        self._threads = threads
        self._on_ready = on_ready
        self._on_heartbeat = on_heartbeat
        self._periodic = periodic
        self._say = say
        self.container = container if container is not None else build_container(settings)
        self._worker: dramatiq.Worker | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._background: asyncio.Task[None] | None = None
        self.background: WorkerBackground | None = None
        #: Carried by this process's heartbeats and by the jobs it claims, so that other
        #: workers can tell when it died holding a job.
        self.worker_id = new_worker_id()
        #: Set when the graceful stop begins: jobs of in-flight messages that have not
        #: started yet go back to the broker, so the stop waits only for running ones.
        self._stopping = False

    def start(self) -> None:
        """Serve metrics (when asked), declare the actor, start consuming, and start the
        background loops. Unavailable when the metrics address cannot be bound."""
        if self._metrics_address is not None:
            host, port = self._metrics_address
            self._metrics = start_worker_metrics_server(
                self.container, host, port, lambda: self._loop
            )
            log.info("worker.metrics url=http://%s:%d/metrics", host, port)
        try:
            self._start_consuming()
        except BaseException:
            metrics, self._metrics = self._metrics, None
            if metrics is not None:
                metrics.close()
            raise

    def _start_consuming(self) -> None:
        container = self.container

        # A broker message carries several jobs, run concurrently; at most ``threads`` of
        # them run at a time in this process (as with one job per message), which keeps
        # the database pool's demand where it was.
        slots = asyncio.Semaphore(self._threads)
        queue = container.job_queue()

        async def run_job(job_id: str) -> None:
            async with slots:
                if self._stopping:  # not started yet: hand it back instead of starting it
                    self._hand_back(queue, job_id)
                    return
                try:
                    await container.job_runner().run(job_id, holder=self.worker_id)
                except Exception as exc:  # database away: the outbox re-sends the job later
                    log.warning("job.not_run id=%s error=%s", job_id, type(exc).__name__)

        actor = declare_worker_actor(
            container, run_job, time_limit_ms=int(CLAIM_TIMEOUT.total_seconds() * 1000)
        )
        broker = actor.broker
        broker.add_middleware(_Lifecycle(self))
        self._worker = dramatiq.Worker(
            broker,
            queues=set(WORKER_QUEUES),
            worker_threads=self._threads,
            worker_timeout=IDLE_POLL_MS,
        )
        self._worker.start()
        loop_thread = get_event_loop_thread()
        if loop_thread is None:  # pragma: no cover - the broker always has AsyncIO
            raise RuntimeError("the broker lacks the AsyncIO middleware")
        self._loop = loop_thread.loop
        self.background = WorkerBackground(
            relay=container.relay(),
            presence=container.presence(),
            uow=lambda: container.uow(),
            heartbeat_seconds=self._settings.worker_heartbeat_seconds,
            say=self._say,
            on_ready=self._on_ready,
            on_heartbeat=self._on_heartbeat,
            broker_ping=queue.ping,
            periodic=self._periodic,
            worker_id=self.worker_id,
        )
        self._on_loop(self._start_background(self.background), timeout=5)
        log.info("worker.started threads=%d", self._threads)

    @staticmethod
    def _hand_back(queue: JobQueue, job_id: str) -> None:
        """Send a job this process will not start to the broker again, for another worker
        (or this one after a restart). If the broker is away, the relay re-sends it once
        its dispatch times out."""
        try:
            queue.send([job_id])
        except BrokerUnavailable:
            log.warning("job.not_handed_back id=%s; it is re-sent later", job_id)
        else:
            log.info("job.handed_back id=%s", job_id)

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The worker's event loop (tests run coroutines on it)."""
        assert self._loop is not None, "start() first"
        return self._loop

    def stop(self, timeout: float = DEFAULT_STOP_TIMEOUT_SECONDS) -> None:
        """Graceful stop: in-flight jobs finish (up to ``timeout``), queued messages return
        to Redis, the container is closed. Idempotent."""
        worker, self._worker = self._worker, None
        metrics, self._metrics = self._metrics, None
        try:
            if worker is not None:
                worker.stop(timeout=int(timeout * 1000))
                log.info("worker.stopped")
        finally:
            if metrics is not None:
                metrics.close()

    def _on_loop(self, coro: Coroutine[Any, Any, None], *, timeout: float) -> None:
        """Run ``coro`` on the worker's loop from another thread and wait for it."""
        if self._loop is None or not self._loop.is_running():
            coro.close()
            return
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            future.result(timeout=timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            log.warning("worker.loop_call_timed_out")
        except Exception:
            log.warning("worker.loop_call_failed", exc_info=True)

    async def _start_background(self, background: WorkerBackground) -> None:
        self._background = asyncio.create_task(background.run())

    async def _cancel_background(self) -> None:
        task, self._background = self._background, None
        if task is None or self.background is None:
            return
        self.background.stop()
        done, _ = await asyncio.wait([task], timeout=BACKGROUND_STOP_SECONDS)
        if not done:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task

    def _stop_background(self) -> None:
        self._on_loop(self._cancel_background(), timeout=BACKGROUND_STOP_SECONDS + 1)

    def _close_container(self) -> None:
        self._on_loop(close_container(self.container), timeout=5)
