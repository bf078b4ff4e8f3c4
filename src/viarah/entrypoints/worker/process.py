"""``viarah worker``: one worker process, or N supervised child processes.

Single process: start the runtime, print ``worker: ready`` once and ``heartbeat: alive``
every ``WORKER_HEARTBEAT_SECONDS``; on SIGTERM/SIGINT stop gracefully, print
``worker: stopped`` and exit 0. A second signal exits at once (code 1).

``--processes N`` (N > 1): the parent spawns N children (multiprocessing "spawn": fresh
interpreters, one container each), prints the status lines for the group, forwards
SIGTERM/SIGINT, and waits for the children. If a child dies unexpectedly, the parent
stops the others and exits 1 so the service manager restarts the whole group.

Metrics (``--metrics-port P``): a single process serves ``/metrics`` on P; in a group,
child *i* (0-based) serves on P + i, each with its own numbers (the parent serves none).
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.synchronize
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from types import FrameType

from viarah.container import CHECK_TOKEN_EXPIRY_JOB, PURGE_OUTBOX_JOB, PURGE_SESSIONS_JOB
from viarah.domain.gitlab.retention import PURGE_DELIVERIES_JOB
from viarah.domain.gitlab.webhooks import SWEEP_JOB
from viarah.domain.shared.errors import DomainError
from viarah.entrypoints.heap import freeze_startup_objects
from viarah.entrypoints.worker.background import PURGE_INTERVAL_SECONDS, PeriodicJob
from viarah.entrypoints.worker.runtime import DEFAULT_STOP_TIMEOUT_SECONDS, DramatiqWorkerRuntime
from viarah.entrypoints.worker.status import configure_logging, say
from viarah.settings import Settings, load_settings

#: How long the parent waits for its children after forwarding SIGTERM: a child's own
#: graceful stop (in-flight jobs, then the background loops and the database pool) plus
#: room for a loaded machine.
GROUP_STOP_SECONDS = DEFAULT_STOP_TIMEOUT_SECONDS + 12

#: Jobs every worker adds to the outbox at start and then at these intervals.
PERIODIC_JOBS = (
    PeriodicJob(PURGE_SESSIONS_JOB, PURGE_INTERVAL_SECONDS),
    PeriodicJob(CHECK_TOKEN_EXPIRY_JOB, 6 * 3600),
    PeriodicJob(PURGE_OUTBOX_JOB, 3600),
    PeriodicJob(PURGE_DELIVERIES_JOB, 3600),
    PeriodicJob(SWEEP_JOB, 30),
)


def _install_stop_handlers(
    stop: threading.Event, signals: tuple[signal.Signals, ...] = (signal.SIGTERM, signal.SIGINT)
) -> None:
    """The first signal asks for a graceful stop; a second one exits immediately."""

    def handle(signum: int, _frame: FrameType | None) -> None:
        if stop.is_set():
            say("worker: second signal, exiting without waiting for jobs")
            os._exit(1)
        stop.set()

    for signum in signals:
        signal.signal(signum, handle)


def run_single(
    settings: Settings,
    *,
    threads: int,
    announce: bool = True,
    on_ready: Callable[[], None] | None = None,
    stop: threading.Event | None = None,
    stop_timeout: float = DEFAULT_STOP_TIMEOUT_SECONDS,
    metrics: tuple[str, int] | None = None,
) -> int:
    """Run one worker process until ``stop`` is set (by SIGTERM/SIGINT when not given);
    ``metrics`` is the (host, port) to serve ``/metrics`` on, if any."""
    if stop is None:
        stop = threading.Event()
        _install_stop_handlers(stop)

    def ready() -> None:
        freeze_startup_objects()  # short full collections from now on (entrypoints/heap.py)
        if announce:
            say("worker: ready")
        if on_ready is not None:
            on_ready()

    runtime = DramatiqWorkerRuntime(
        settings,
        threads=threads,
        on_ready=ready,
        on_heartbeat=(lambda: say("heartbeat: alive")) if announce else (lambda: None),
        periodic=PERIODIC_JOBS,
        metrics=metrics,
    )
    runtime.start()
    try:
        stop.wait()
    finally:
        runtime.stop(timeout=stop_timeout)
    if announce:
        say("worker: stopped")
    return 0


def _child_main(
    threads: int,
    ready: multiprocessing.synchronize.Event,
    metrics: tuple[str, int] | None = None,
) -> None:
    """Entry point of a spawned child: its own settings, logging and container.

    Children ignore SIGINT (a terminal's Ctrl+C reaches the whole process group): the
    parent decides, and forwards one SIGTERM.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    stop = threading.Event()
    _install_stop_handlers(stop, (signal.SIGTERM,))
    settings = load_settings().require_valid()
    configure_logging(settings.log_level)
    try:
        code = run_single(
            settings,
            threads=threads,
            announce=False,
            on_ready=ready.set,
            stop=stop,
            metrics=metrics,
        )
    except DomainError as exc:  # e.g. the metrics port is taken: one line, no traceback
        sys.stderr.write(f"viarah: {exc.message}\n")
        code = 1
    sys.exit(code)


def run_group(
    settings: Settings,
    *,
    processes: int,
    threads: int,
    metrics: tuple[str, int] | None = None,
) -> int:
    """Spawn and supervise ``processes`` worker processes; exit code 0 on a clean stop.

    With ``metrics`` (host, port), child *i* serves ``/metrics`` on port + i."""
    context = multiprocessing.get_context("spawn")
    stop = threading.Event()
    _install_stop_handlers(stop)
    ready_events = [context.Event() for _ in range(processes)]
    children = [
        context.Process(
            target=_child_main,
            args=(threads, ready, None if metrics is None else (metrics[0], metrics[1] + index)),
            name=f"viarah-worker-{index + 1}",
        )
        for index, ready in enumerate(ready_events)
    ]
    for child in children:
        child.start()
    announced = False
    next_beat = 0.0
    failed = False
    while not stop.wait(0.2):
        dead = [child for child in children if not child.is_alive()]
        if dead:
            for child in dead:
                say(f"worker: process {child.pid} exited with code {child.exitcode}; stopping")
            failed = True
            break
        now = time.monotonic()
        if not announced and all(event.is_set() for event in ready_events):
            say("worker: ready")
            announced, next_beat = True, now
        if announced and now >= next_beat:
            say("heartbeat: alive")
            next_beat = now + settings.worker_heartbeat_seconds
    for child in children:
        if child.is_alive() and child.pid is not None:
            os.kill(child.pid, signal.SIGTERM)
    deadline = time.monotonic() + GROUP_STOP_SECONDS
    for child in children:
        child.join(max(0.0, deadline - time.monotonic()))
        if child.is_alive():
            say(f"worker: process {child.pid} did not stop within {GROUP_STOP_SECONDS:g} s; killed")
            child.kill()
            child.join()
            failed = True
        elif child.exitcode != 0 and not failed:
            say(f"worker: process {child.pid} stopped with code {child.exitcode}")
            failed = True
    say("worker: stopped")
    return 1 if failed else 0


def run_worker(
    settings: Settings,
    *,
    processes: int = 1,
    threads: int = 8,
    metrics: tuple[str, int] | None = None,
) -> int:
    """``viarah worker``: a single process or a supervised group; ``metrics`` is the
    (host, first port) to serve ``/metrics`` on, if any."""
    if processes > 1:
        return run_group(settings, processes=processes, threads=threads, metrics=metrics)
    return run_single(settings, threads=threads, metrics=metrics)
