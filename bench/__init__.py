"""ViaRah's benchmark suite: ``python -m bench`` (see docs/performance.md).

It starts what it measures as real processes with production settings (``viarah web``
and ``viarah worker`` on a fresh PostgreSQL database and a dedicated Redis database, the
local GitLab and Web Push fakes of ``tests/``), drives them with wrk and an open-loop
generator, prints a table and writes ``bench/results/<UTC timestamp>.json``.
"""
