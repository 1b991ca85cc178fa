"""On-demand refreshes: what a batch of users costs, and what batching saves over one run each.

`recs-pipeline bench user-refresh [--users N] [--batches 1,10,100,1000] [--server-url URL]`
seeds a scratch PostgreSQL app database (seed 42) and runs the nightly once (so the tables
exist), then for each batch size B: the app INSERTs B refresh requests, and
`refresh_user_recommendations_job` serves them as the daemon would run the run the sensor
requests (a fresh `dagster job execute` process, config `user_ids`). It prints seconds per run
(launch included) and per user, the requests left (must be 0), and what B runs of one user
each would cost at the measured one-user figure.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

DEFAULT_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--batches", default="1,10,100,1000")
    parser.add_argument("--server-url", default=DEFAULT_SERVER,
                        help="PostgreSQL server URL (a scratch database is created there)")
    parser.add_argument("--database", default="recs_bench_user_refresh")


def run(args: argparse.Namespace) -> int:
    from datetime import timedelta

    import sqlalchemy as sa
    import yaml

    from recs_pipeline import schema
    from recs_pipeline.bootstrap import init_app_database
    from recs_pipeline.cli import CliError
    from recs_pipeline.compute.timestamps import utc_now
    from recs_pipeline.db import make_engine
    from recs_pipeline.defs.recommendations.refresh_requests import (
        pending_count,
        pending_requests,
        request_refresh,
    )
    from recs_pipeline.devtools.bench.jobs import JobRun
    from recs_pipeline.devtools.bench.seed import _drop_postgres, _recreate_postgres
    from recs_pipeline.devtools.seed import SeedConfig, seed_database

    try:
        batches = [int(b) for b in args.batches.split(",") if b]
    except ValueError:
        raise CliError(f"--batches {args.batches!r}: comma-separated integers") from None
    if not batches or min(batches) < 1 or max(batches) > 1000:
        raise CliError("--batches: sizes in 1..1000 (a run's limit)")
    seed_now = utc_now().replace(hour=0, minute=0, second=0, microsecond=0)
    clock = {"clock": {"config": {"as_of": (seed_now + timedelta(hours=12)).isoformat(),
                                  "backfill": True}}}
    url = _recreate_postgres(args.server_url, args.database)
    engine = make_engine(url)
    try:
        with tempfile.TemporaryDirectory(prefix="recs_bench_user_refresh_") as home:
            init_app_database(engine)
            seed_database(engine, SeedConfig(users=args.users, seed=42, now=seed_now),
                          progress=False)
            (Path(home) / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
            env = {**os.environ, "DAGSTER_HOME": home, "RECS_DATABASE_URL": url}
            nightly = Path(home) / "nightly.yaml"
            nightly.write_text(yaml.safe_dump({"resources": clock}))
            rc, took, _ = JobRun("nightly_recommendations_job", env, nightly).wait()
            print(f"bench user-refresh: PostgreSQL, {args.users:,} users (seed 42); "
                  f"nightly exit {rc}, {took:.1f} s")
            with engine.connect() as conn:
                users = list(conn.execute(
                    sa.select(schema.users.c.id).where(schema.users.c.is_active)
                    .order_by(schema.users.c.id)).scalars())
            one_user_seconds = None
            for size in batches:
                with engine.begin() as conn:
                    request_refresh(conn, users[:size])
                with engine.connect() as conn:
                    pending = pending_requests(conn, 1000)
                assert pending is not None
                config = Path(home) / f"refresh_{size}.yaml"
                config.write_text(yaml.safe_dump({"resources": clock, "ops": {
                    "refresh_user_recommendations": {"config": {
                        "user_ids": pending.user_ids}}}}))
                rc, took, retries = JobRun("refresh_user_recommendations_job", env,
                                           config).wait()
                with engine.connect() as conn:
                    left = pending_count(conn)
                one_user_seconds = took if size == 1 else one_user_seconds
                line = (f"  {size:>5} users: exit {rc}, {retries} retries, {took:.1f} s per run "
                        f"({took / size:.3f} s per user), requests left {left}")
                if one_user_seconds is not None and size > 1:
                    line += (f"; {size} one-user runs would take "
                             f"~{one_user_seconds * size:,.0f} s")
                print(line)
    finally:
        engine.dispose()
        _drop_postgres(args.server_url, args.database)
    return 0
