"""How fast old webhook deliveries are purged, and whether the purge uses the index.

    python -m bench.retention [--rows 1000000] [--orgs 5] [--postgres-admin-url URL]

Creates a scratch database (migrated by ``viarah migrate``'s code), fills
``webhook_deliveries`` with ``--rows`` rows over ``--orgs`` organizations and 60 days (1 in
50 still ``received``), then runs ``DeliveryRetention.purge`` (30-day retention) and its
follow-up jobs until nothing is left to delete: rows deleted per second, the time of one
5,000-row statement, and ``EXPLAIN`` of that statement. The database is dropped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import time
from datetime import UTC, datetime, timedelta

import psycopg

from bench.stack import os_environ_admin_url
from viarah.adapters.db.engine import create_engine
from viarah.adapters.db.gitlab import purge_finished_statement
from viarah.adapters.db.migrate import upgrade
from viarah.adapters.db.uow import SqlUnitOfWork
from viarah.domain.gitlab.retention import PURGE_DELIVERIES_JOB, DeliveryRetention
from viarah.domain.shared.clock import SystemClock

_ORGS = """
INSERT INTO organizations (id, name, created_at)
SELECT 'org-' || n, 'Org ' || n, now() FROM generate_series(1, %(orgs)s) AS n
"""
_DELIVERIES = """
INSERT INTO webhook_deliveries
    (id, org_id, idempotency_key, event_type, status, received_at, processed_at,
     payload_hash, project_path, kind, iid, action)
SELECT 'd-' || n, 'org-' || (1 + n %% %(orgs)s), 'key:' || n, 'Issue Hook',
       CASE WHEN n %% 50 = 0 THEN 'received' ELSE 'processed' END,
       now() - (n::float / %(rows)s) * interval '60 days',
       now() - (n::float / %(rows)s) * interval '60 days',
       repeat('0', 64), 'group/project', 'issue', 1 + n %% 300, 'update'
FROM generate_series(1, %(rows)s) AS n
"""

_LEFT = """
SELECT status, received_at < now() - interval '30 days' AS old, count(*)
FROM webhook_deliveries GROUP BY 1, 2 ORDER BY 1, 2
"""


async def _purge(url: str) -> tuple[int, float, int]:
    """Rows deleted, seconds, jobs run (the first plus its follow-ups)."""
    engine = create_engine(url)
    clock = SystemClock()
    retention = DeliveryRetention(lambda: SqlUnitOfWork(engine, clock), clock, retention_days=30)
    deleted, jobs = 0, 0
    started = time.perf_counter()
    try:
        while True:
            count = await retention.purge()
            deleted += count
            jobs += 1
            with psycopg.connect(url, autocommit=True) as conn:
                row = conn.execute(
                    "DELETE FROM outbox WHERE job = %s RETURNING id", (PURGE_DELIVERIES_JOB,)
                ).fetchone()
            if row is None:  # no follow-up queued: done
                break
            print(f"  job {jobs}: {count:,} deleted, follow-up queued", flush=True)
    finally:
        await engine.dispose()
    return deleted, time.perf_counter() - started, jobs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--orgs", type=int, default=5)
    parser.add_argument("--postgres-admin-url", default=os_environ_admin_url())
    args = parser.parse_args()

    name = f"viarah_retention_{secrets.token_hex(4)}"
    url = args.postgres_admin_url.rsplit("/", 1)[0] + "/" + name
    with psycopg.connect(args.postgres_admin_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        upgrade(url)
        with psycopg.connect(url, autocommit=True) as conn:
            started = time.perf_counter()
            for fill in (_ORGS, _DELIVERIES):
                conn.execute(fill, {"rows": args.rows, "orgs": args.orgs})
            conn.execute("VACUUM ANALYZE webhook_deliveries")
            print(f"filled {args.rows:,} deliveries in {time.perf_counter() - started:.1f} s")
            statement = str(
                purge_finished_statement(postgres=True).compile(
                    dialect=create_engine(url).dialect,
                    compile_kwargs={"render_postcompile": True},
                )
            )
            params = {"before": datetime.now(UTC) - timedelta(days=30), "limit": 5000}
            with conn.transaction(force_rollback=True):
                plan = conn.execute("EXPLAIN (ANALYZE, COSTS OFF) " + statement, params).fetchall()
            print("one 5,000-row statement (rolled back):")
            for (line,) in plan:
                print("   ", line)
        deleted, seconds, jobs = asyncio.run(_purge(url))
        print(
            f"purged {deleted:,} in {seconds:.1f} s ({deleted / seconds:,.0f} rows/s) "
            f"in {jobs} job(s)"
        )
        with psycopg.connect(url, autocommit=True) as conn:
            left = conn.execute(_LEFT).fetchall()
        print(
            "left:",
            ", ".join(f"{status} {'older' if old else 'newer'}: {n:,}" for status, old, n in left),
        )
    finally:
        with psycopg.connect(args.postgres_admin_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
