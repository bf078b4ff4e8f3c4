"""``python -m bench``: run every measurement, print the table, write the JSON."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import profile
from bench.http_runs import HttpRuns, check_links_fresh, new_prefix
from bench.machine import (
    CpuMeter,
    MissingTool,
    describe_machine,
    load_average,
    require_tools,
    rss_mb,
)
from bench.pipeline_runs import PushYardsticks, push_fanout, refresh_fanout, settle, wait_idle
from bench.report import LINKS_RPS, WEBHOOK_RPS, evaluate, table, write_json
from bench.seed import seed
from bench.stack import Stack, StackFailed, os_environ_admin_url, server_versions, wait_for
from bench.startup import cold_start

RESULTS = Path(__file__).resolve().parent / "results"
ALL = ("healthz", "links", "webhook", "openloop", "refresh", "push", "memory", "coldstart")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="ViaRah's benchmark: real web and worker processes on PostgreSQL and "
        "Redis, local GitLab and Web Push fakes; prints a table and writes "
        "bench/results/<UTC timestamp>.json. Needs wrk (apt-get install wrk).",
    )
    parser.add_argument("--duration", type=float, default=30, help="seconds per load run (30)")
    parser.add_argument("--quick", action="store_true", help="5 s runs, one cold start")
    parser.add_argument(
        "--connections", default="16,64", help="wrk connection counts (default 16,64)"
    )
    parser.add_argument(
        "--open-loop-fraction",
        type=float,
        default=0.6,
        help="fixed-rate runs at this fraction of the measured max (64 conn); default 0.6",
    )
    parser.add_argument("--open-loop-connections", type=int, default=64)
    parser.add_argument("--only", default=",".join(ALL), help=f"subset of {','.join(ALL)}")
    parser.add_argument("--redis-db", type=int, default=13, help="Redis database, flushed (13)")
    parser.add_argument(
        "--redis-url", default="redis://127.0.0.1:6379", help="Redis server (no database)"
    )
    parser.add_argument(
        "--postgres-admin-url",
        default=os_environ_admin_url(),
        help="where the fresh database is created (VIARAH_TEST_POSTGRES or the local default)",
    )
    parser.add_argument("--keep-database", action="store_true", help="do not drop it afterwards")
    parser.add_argument("--wrk-threads", type=int, default=1)
    parser.add_argument(
        "--profile", action="store_true", help="record py-spy profiles of the hottest runs"
    )
    parser.add_argument(
        "--wait-for-quiet",
        type=float,
        default=0,
        metavar="SECONDS",
        help="first wait up to SECONDS for the 1-minute load average to drop below 1.0",
    )
    parser.add_argument("--results-dir", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.quick:
        args.duration = min(args.duration, 5)
    args.connection_counts = [int(c) for c in args.connections.split(",") if c.strip()]
    args.selected = {s.strip() for s in args.only.split(",") if s.strip()}
    unknown = args.selected - set(ALL)
    if unknown:
        parser.error(f"--only: unknown {', '.join(sorted(unknown))}")
    return args


def say(text: str) -> None:
    print(f"[{datetime.now().strftime('%H:%M:%S')}] {text}", flush=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        require_tools()
    except MissingTool as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1
    if args.profile and not profile.available():
        print("bench: --profile needs py-spy: pip install py-spy", file=sys.stderr)
        return 1
    if args.wait_for_quiet:
        deadline = time.monotonic() + args.wait_for_quiet
        while load_average() >= 1.0 and time.monotonic() < deadline:
            say(f"load average {load_average():.2f}: waiting for a quiet machine")
            time.sleep(10)
    if load_average() >= 1.0:
        say(f"warning: the 1-minute load average is {load_average():.2f}; figures will be low")
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    run_dir = Path(f"/tmp/viarah-bench-{stamp}")
    redis_url = f"{args.redis_url.rstrip('/')}/{args.redis_db}"
    postgres_version, redis_version = server_versions(args.postgres_admin_url, redis_url)
    results: dict[str, Any] = {
        "started_at": datetime.now(UTC).isoformat(),
        "machine": describe_machine(postgres_version, redis_version),
        "config": {
            "duration_s": args.duration,
            "connections": args.connection_counts,
            "open_loop_fraction": args.open_loop_fraction,
            "open_loop_connections": args.open_loop_connections,
            "wrk_threads": args.wrk_threads,
            "web": "viarah web (1 process)",
            "worker": "viarah worker (1 process, 8 threads)",
            "settings": "VIA_RAH_DEBUG=0, VIA_RAH_LOG_LEVEL=INFO (default), default pools",
            "scenarios": sorted(args.selected),
            "run_dir": str(run_dir),
        },
    }
    profiles_dir = args.results_dir / f"{stamp}-profiles"
    if args.profile:
        profiles_dir.mkdir(parents=True, exist_ok=True)
        results["profiles"] = {}
    stack = Stack(run_dir, args.postgres_admin_url, redis_url, keep_database=args.keep_database)
    try:
        run_all(args, stack, results, profiles_dir)
    except (StackFailed, RuntimeError) as exc:
        print(f"bench: {exc}", file=sys.stderr)
        results["error"] = str(exc)
        return_code = 1
    else:
        return_code = 0
    finally:
        stack.close()
    if "coldstart" in args.selected and return_code == 0:
        say("cold start of viarah serve (embedded defaults, fresh temp directory)")
        results["cold_start"] = cold_start(runs=1 if args.quick else 3)
    results["finished_at"] = datetime.now(UTC).isoformat()
    results["targets"] = [t.as_dict() for t in evaluate(results)]
    path = write_json(results, args.results_dir, stamp)
    print()
    print(table(results))
    print(f"\nJSON: {path}   logs: {run_dir}")
    return return_code


def run_all(
    args: argparse.Namespace, stack: Stack, results: dict[str, Any], profiles_dir: Path
) -> None:
    selected = args.selected
    seconds = args.duration
    say(f"preparing database {stack.db_name}, Redis {stack.redis_url}, fakes")
    stack.prepare()
    assert stack.gitlab is not None
    assert stack.push is not None
    say("seeding through the container")
    seeded = seed(stack.env, stack.gitlab, stack.push)
    say("starting viarah web and viarah worker")
    stack.start_processes()
    assert stack.web is not None
    assert stack.worker is not None
    results["pids"] = {"web": stack.web.pid, "worker": stack.worker.pid}

    def synced() -> bool:
        stack.check_alive()
        count = stack.scalar("SELECT count(*) FROM gitlab_links WHERE last_synced_at IS NOT NULL")
        return bool(count == seeded.total_links)

    wait_for(synced, timeout=300, what="the first sync of every seeded link", every=0.2)
    wait_idle(stack)
    http = HttpRuns(stack, seeded, wrk_threads=args.wrk_threads)
    check_links_fresh(stack, http.ep, 20)
    pids = {"web": stack.web.pid, "worker": stack.worker.pid, "bench": os.getpid()}

    def cpu_meter() -> CpuMeter:
        return CpuMeter(pids).start()

    def prof(name: str, pid: int) -> Any:
        return profile.record(pid, profiles_dir / f"{name}.txt", args.profile)

    say("warming up")
    http.healthz(16, 2)
    http.links(16, 2)
    http.webhook(16, 2, new_prefix("warmup"))
    wait_idle(stack)

    if "healthz" in selected:
        results["healthz"] = {}
        for conns in args.connection_counts:
            say(f"/healthz, {conns} connections, {seconds:.0f} s")
            meter = cpu_meter()
            run = http.healthz(conns, seconds).as_dict()
            run["cpu_cores"] = meter.stop()
            results["healthz"][str(conns)] = run

    if "links" in selected:
        results["links"] = {}
        for conns in args.connection_counts:
            say(f"link reads (20 links), {conns} connections, {seconds:.0f} s")
            meter = cpu_meter()
            with prof(f"web-links-{conns}", stack.web.pid):
                run = http.links(conns, seconds).as_dict()
            run["cpu_cores"] = meter.stop()
            base = (results.get("healthz") or {}).get(str(conns))
            if base:
                run["ratio_to_healthz"] = round(run["rps"] / base["rps"], 3)
            results["links"][str(conns)] = run

    if "webhook" in selected:

        def webhook_run(
            conns: int, prefix: str, load: Callable[[], Any], worker_profile: Any
        ) -> dict[str, Any]:
            """One webhook load (``load`` runs wrk), its ratio to /healthz, then the
            drain; ``worker_profile`` (a context) covers the load and the drain."""
            with worker_profile:
                meter = cpu_meter()
                wrk = load()
                run: dict[str, Any] = wrk.as_dict()
                run["cpu_cores"] = meter.stop()
                base = (results.get("healthz") or {}).get(str(conns))
                if base:
                    run["ratio_to_healthz"] = round(run["rps"] / base["rps"], 3)
                say("  waiting for the worker to drain the deliveries")
                drain_meter = cpu_meter()
                run["drain"] = http.drain(prefix, wrk.requests - wrk.non_2xx, conns)
                run["drain"]["cpu_cores"] = drain_meter.stop()
            run["settle_seconds"] = round(settle(stack), 2)
            return run

        results["webhook"] = {}
        for conns in args.connection_counts:
            say(f"webhook ingest, {conns} connections, {seconds:.0f} s")
            prefix = new_prefix(f"c{conns}")

            def profiled(conns: int = conns, prefix: str = prefix) -> Any:
                with prof(f"web-webhook-{conns}", stack.web.pid):
                    return http.webhook(conns, seconds, prefix)

            results["webhook"][str(conns)] = webhook_run(
                conns, prefix, profiled, prof(f"worker-webhook-{conns}", stack.worker.pid)
            )
        # The same load with the worker paused (SIGSTOP): what the web process alone
        # ingests when it has a core to itself; then the worker catches up.
        conns = max(args.connection_counts)
        say(f"webhook ingest with the worker paused, {conns} connections, {seconds:.0f} s")
        prefix = new_prefix(f"paused{conns}")

        def paused(conns: int = conns, prefix: str = prefix) -> Any:
            os.kill(stack.worker.pid, signal.SIGSTOP)
            try:
                return http.webhook(conns, seconds, prefix)
            finally:
                os.kill(stack.worker.pid, signal.SIGCONT)

        results["webhook_worker_paused"] = {
            str(conns): webhook_run(conns, prefix, paused, contextlib.nullcontext())
        }

    if "openloop" in selected:
        results["open_loop"] = {"links": [], "webhook": []}
        conns = args.open_loop_connections
        for what, target in (("links", LINKS_RPS), ("webhook", WEBHOOK_RPS)):
            measured = ((results.get(what) or {}).get(str(max(args.connection_counts))) or {}).get(
                "rps"
            )
            if not measured:
                continue
            rates = [
                (round(measured * args.open_loop_fraction), f"{args.open_loop_fraction:.0%} of max")
            ]
            if target <= measured:
                rates.append((target, "target"))
            for rate, purpose in rates:
                say(f"fixed rate {what}: {rate}/s for {seconds:.0f} s ({purpose})")
                prefix = new_prefix(f"ol{rate}")
                meter = cpu_meter()
                run = http.open_loop(what, rate, seconds, conns, prefix)
                run["cpu_cores"] = meter.stop()
                run["purpose"] = purpose
                if what == "webhook":
                    run["drain"] = http.drain(prefix, run["ok"], 0)
                    run["settle_seconds"] = round(settle(stack), 2)
                results["open_loop"][what].append(run)
            if target > measured:
                results["open_loop"][what].append(
                    {"purpose": "target", "rate": target, "skipped": "above the measured max"}
                )

    if "refresh" in selected:
        say(f"refresh fan-out: one webhook, {seeded.refresh_tasks} links")
        results["refresh"] = refresh_fanout(stack, seeded)

    if "push" in selected:
        yardsticks = PushYardsticks(stack)
        try:
            floor_seconds = 2.0 if args.quick else 5.0
            say(f"push crypto floor ({floor_seconds:.0f} s, one core)")
            floor = yardsticks.crypto_floor(floor_seconds)
            say("push fake capacity (inline decryption, then deferred)")
            capacity = [
                yardsticks.fake_capacity(stack.run_dir, connections=64, seconds=3, defer=False),
                yardsticks.fake_capacity(stack.run_dir, connections=64, seconds=3, defer=True),
            ]
        finally:
            yardsticks.close()
        # Twice: the issue closes (the worker's first push: it opens its connections to
        # the push service during the run), then reopens (its connections are open, as in
        # a service that sends notifications all day).
        fanouts: dict[str, dict[str, Any]] = {}
        for label, state in (("fanout", "closed"), ("fanout_warm", "opened")):
            say(f"push fan-out to {len(seeded.push_subscriptions)} subscriptions ({label})")
            with prof(f"worker-push-{label}", stack.worker.pid):
                fanout = push_fanout(stack, seeded, state=state)
            fanout["all_checks_pass"] = (
                fanout["delivered"] == fanout["subscriptions"]
                and fanout["decrypted_and_correct"] == fanout["subscriptions"]
                and fanout["duplicates"] == 0
                and fanout["rejected"] == 0
            )
            fanout["ratio_to_floor"] = round(
                fanout["messages_per_second"] / floor["ops_per_second"], 3
            )
            fanouts[label] = fanout
        results["push"] = {
            "crypto_floor": floor,
            "fake_capacity": capacity,
            **fanouts,
            "ratio_to_floor": fanouts["fanout"]["ratio_to_floor"],
            "ratio_to_floor_warm": fanouts["fanout_warm"]["ratio_to_floor"],
        }

    if "memory" in selected:
        results["memory"] = {
            "web_rss_mb": rss_mb(stack.web.pid),
            "worker_rss_mb": rss_mb(stack.worker.pid),
            "unit": "MB = 10^6 bytes (VmRSS)",
        }
    if args.profile:
        for path in sorted(profiles_dir.glob("*.txt")):
            results["profiles"][path.stem] = profile.summarize(path)
