"""App reads during the nightly swap: reader latency with a blocker session and autovacuum.

`recs-pipeline bench swap [--server-url URL] [--rows N] [--rounds R] [--blocker-seconds S]
[--settle-seconds W] [--legacy]` creates a scratch database, publishes N rows per table, then R
times: stages N new rows (waits W seconds), starts a blocker session (a transaction that read
`tournament_recommendations` and then sits idle for S seconds: a Django request idle in a
transaction, a long report), swaps, and meanwhile runs reader threads issuing the app's query (one
user's rows by `user_id`) back to back. It prints the readers' latency (p50 / p99 / max) over the
swap windows, the swap's duration and attempts, and whether autovacuum is on in that cluster (`SHOW
autovacuum`): run it against a cluster with autovacuum on (the PostgreSQL default;
docs/operations.md says how to make one).

`--legacy` measures the swap as it was before issue 12: no lock timeout (one attempt that waits for
the blocker) and autovacuum left on for the staging tables.
"""

from __future__ import annotations

import argparse
import threading
import time
from typing import Any

DEFAULT_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--server-url", default=DEFAULT_SERVER,
                        help="PostgreSQL server URL (a scratch database is created there)")
    parser.add_argument("--database", default="recs_bench_swap")
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows per table")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--readers", type=int, default=4, help="reader threads")
    parser.add_argument("--blocker-seconds", type=float, default=3.0,
                        help="how long the blocker session holds its read lock (0: none)")
    parser.add_argument("--settle-seconds", type=float, default=0.0,
                        help="pause between staging and the swap (the nightly's checks take "
                        "~45 s at 1M users: time for autovacuum to start on a staged table)")
    parser.add_argument("--legacy", action="store_true",
                        help="the old swap: no lock timeout, autovacuum on for staging")


def _frame(rows: int, version: str, item: str) -> Any:
    import numpy as np
    import pandas as pd

    users = np.arange(rows) // 10
    return pd.DataFrame({
        "user_id": users, item: np.arange(rows), "rank": np.arange(rows) % 10 + 1,
        "score": 1.0 - (np.arange(rows) % 10) / 100, "reason": f"reason {version}",
        "model_version": version, "generated_at": pd.Timestamp("2030-01-01 02:00:00"),
    })


def _pct(values: list[float], q: float) -> float:
    import numpy as np

    return float(np.percentile(values, q)) if values else float("nan")


def run(args: argparse.Namespace) -> int:
    import sqlalchemy as sa

    from recs_pipeline.bootstrap import init_app_database
    from recs_pipeline.cli import CliError
    from recs_pipeline.db import make_engine, parse_database_url
    from recs_pipeline.defs.recommendations.publishing import (
        KINDS,
        TEAMS,
        TOURNAMENTS,
        SwapPolicy,
        stage,
        swap,
    )
    from recs_pipeline.devtools.bench.retention import _admin

    server = parse_database_url(args.server_url)
    if server.get_backend_name() != "postgresql":
        raise CliError("bench swap needs a PostgreSQL --server-url")
    if args.rows < 10 or args.rounds < 1 or args.readers < 1:
        raise CliError("--rows >= 10, --rounds >= 1 and --readers >= 1")
    url = server.set(database=args.database).render_as_string(hide_password=False)
    _admin(args.server_url, f'DROP DATABASE IF EXISTS "{args.database}" WITH (FORCE)')
    _admin(args.server_url, f'CREATE DATABASE "{args.database}"')
    engine = make_engine(url)
    policy = SwapPolicy(lock_timeout_ms=3_600_000) if args.legacy else SwapPolicy()
    try:
        init_app_database(engine)
        with engine.connect() as conn:
            autovacuum = conn.execute(sa.text("SHOW autovacuum")).scalar_one()
            deadlock_timeout = conn.execute(sa.text("SHOW deadlock_timeout")).scalar_one()
        print(f"bench swap: {args.rows:,} rows per table, {args.rounds} rounds, "
              f"{args.readers} readers, blocker {args.blocker_seconds:g} s, autovacuum "
              f"{autovacuum}, deadlock_timeout {deadlock_timeout}"
              f"{', LEGACY swap' if args.legacy else ''}")

        def stage_both(version: str) -> None:
            for kind in (TOURNAMENTS, TEAMS):
                stage(engine, kind, _frame(args.rows, version, kind.item_column))
                if args.legacy:
                    with engine.begin() as conn:
                        conn.execute(sa.text(f'ALTER TABLE "{kind.staging_name}" '
                                             "RESET (autovacuum_enabled)"))

        stage_both("v0")
        swap(engine, KINDS, policy)
        latencies: list[float] = []
        stop = threading.Event()
        recording = threading.Event()
        lock = threading.Lock()

        def reader(seed: int) -> None:
            reader_engine = make_engine(url)
            user = seed
            try:
                while not stop.is_set():
                    user = (user * 7919 + 1) % (args.rows // 10)
                    t0 = time.perf_counter()
                    with reader_engine.connect() as conn:
                        conn.execute(sa.text("SELECT * FROM tournament_recommendations WHERE "
                                             "user_id = :u"), {"u": user}).all()
                    if recording.is_set():
                        with lock:
                            latencies.append(time.perf_counter() - t0)
            finally:
                reader_engine.dispose()

        threads = [threading.Thread(target=reader, args=(i + 1,)) for i in range(args.readers)]
        for t in threads:
            t.start()
        swaps: list[dict[str, Any]] = []
        try:
            for round_ in range(1, args.rounds + 1):
                stage_both(f"v{round_}")
                time.sleep(args.settle_seconds)
                with engine.connect() as conn:
                    vacuumed = conn.execute(sa.text(
                        "SELECT coalesce(sum(autovacuum_count + autoanalyze_count), 0) FROM "
                        "pg_stat_all_tables WHERE relname LIKE '%\\_\\_staging'")).scalar_one()
                    vacuuming = conn.execute(sa.text(
                        "SELECT count(*) FROM pg_stat_progress_vacuum p JOIN pg_class c ON "
                        "c.oid = p.relid WHERE c.relname LIKE '%\\_\\_staging'")).scalar_one()
                blocker = None
                if args.blocker_seconds > 0:
                    blocker = engine.connect()
                    blocker.execute(sa.text("SELECT count(*) FROM tournament_recommendations"))
                    threading.Timer(args.blocker_seconds, blocker.rollback).start()
                recording.set()
                t0 = time.perf_counter()
                outcome = swap(engine, KINDS, policy)
                seconds = time.perf_counter() - t0
                time.sleep(0.2)  # readers issued just after the commit count too
                recording.clear()
                if blocker is not None:
                    time.sleep(max(0.0, args.blocker_seconds - seconds))
                    blocker.close()
                swaps.append({"seconds": seconds, "attempts": outcome.attempts})
                print(f"  round {round_}: swap {seconds:.2f} s in {outcome.attempts} attempts; "
                      f"autovacuum/analyze runs on the staging tables before it: {vacuumed}, "
                      f"vacuuming one at the swap: {vacuuming}")
        finally:
            stop.set()
            for t in threads:
                t.join()
        ms = [x * 1000 for x in latencies]
        print(f"reader latency over the swap windows ({len(ms):,} reads): p50 "
              f"{_pct(ms, 50):.1f} ms, p99 {_pct(ms, 99):.1f} ms, max {max(ms):.1f} ms")
        rounds = ", ".join(f"{s['seconds']:.2f} s / {s['attempts']}" for s in swaps)
        print(f"swap: {rounds} (seconds / attempts per round)")
    finally:
        engine.dispose()
        _admin(args.server_url, f'DROP DATABASE IF EXISTS "{args.database}" WITH (FORCE)')
    return 0
