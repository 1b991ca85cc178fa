"""The real nightly job, timed as the daemon runs it, against the SQL a data engineer would write.

`recs-pipeline bench nightly [--sizes S,M,L] [--reserve N] [--server-url URL]` per size: seeds a
scratch PostgreSQL app database (seed 42) and a scratch PostgreSQL database for the Dagster
instance (the repo's production dagster.yaml, migrated with the CLI, the default filesystem IO
manager under DAGSTER_HOME), then runs `nightly_recommendations_job` in a fresh `dagster job
execute` process (under `/usr/bin/time` for its peak RSS when that exists). It prints the wall
time, every step's seconds from the run's event log, the peak RSS and the rows published; then the
peer: eligible top-10 tournaments and teams by popularity in one SQL statement each (window
functions, the contract's eligibility rules), written with CREATE TABLE AS, and the ratio of the
two.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any
from unittest import mock

SIZES = {"S": 10_000, "M": 100_000, "L": 1_000_000}
DEFAULT_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"

# Popularity among eligible candidates (docs/data-contract.md, "Eligibility"), top 10 per user.
PEER_TOURNAMENTS = """
CREATE TABLE bench_peer_tournaments AS
WITH fill AS (SELECT tournament_id, count(*) AS n FROM tournament_participants GROUP BY 1),
open_t AS (
  SELECT t.id, t.game_id, t.region, t.skill_min, t.skill_max, coalesce(f.n, 0) AS n
  FROM tournaments t LEFT JOIN fill f ON f.tournament_id = t.id
  WHERE t.status IN ('upcoming', 'registration_open') AND t.registration_closes_at > :now
    AND coalesce(f.n, 0) < t.max_participants),
pairs AS (
  SELECT u.id AS user_id, o.id AS tournament_id, o.n
  FROM users u JOIN game_profiles g ON g.user_id = u.id
  JOIN open_t o ON o.game_id = g.game_id AND (o.region = u.region OR o.region = 'global')
    AND (o.skill_min IS NULL OR g.skill_rating >= o.skill_min)
    AND (o.skill_max IS NULL OR g.skill_rating <= o.skill_max)
  WHERE u.is_active AND NOT EXISTS (
    SELECT 1 FROM tournament_participants p WHERE p.tournament_id = o.id AND p.user_id = u.id)),
ranked AS (SELECT user_id, tournament_id, n,
                  row_number() OVER (PARTITION BY user_id ORDER BY n DESC, tournament_id) AS rank
           FROM pairs)
SELECT user_id, tournament_id, rank FROM ranked WHERE rank <= 10
"""
PEER_TEAMS = """
CREATE TABLE bench_peer_teams AS
WITH members AS (SELECT team_id, count(*) AS n FROM team_members WHERE left_at IS NULL
                 GROUP BY 1),
open_m AS (
  SELECT m.id, m.game_id, m.region, coalesce(c.n, 0) AS n
  FROM teams m LEFT JOIN members c ON c.team_id = m.id
  WHERE m.is_recruiting AND coalesce(c.n, 0) < m.max_members),
pairs AS (
  SELECT u.id AS user_id, o.id AS team_id, o.n
  FROM users u JOIN game_profiles g ON g.user_id = u.id
  JOIN open_m o ON o.game_id = g.game_id AND o.region = u.region
  WHERE u.is_active AND NOT EXISTS (
    SELECT 1 FROM team_members tm
    WHERE tm.team_id = o.id AND tm.user_id = u.id AND tm.left_at IS NULL)),
ranked AS (SELECT user_id, team_id,
                  row_number() OVER (PARTITION BY user_id ORDER BY n DESC, team_id) AS rank
           FROM pairs)
SELECT user_id, team_id, rank FROM ranked WHERE rank <= 10
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sizes", default="S,M", help="comma list of S (10k), M (100k), L (1M)")
    parser.add_argument("--server-url", default=DEFAULT_SERVER,
                        help="PostgreSQL server URL (scratch databases are created there)")
    parser.add_argument("--database", default="recs_bench_nightly")
    parser.add_argument("--reserve", type=int, default=None,
                        help="PublishConfig.reserve for the run (default: the config's default)")
    parser.add_argument("--peer-max-users", type=int, default=100_000,
                        help="run the SQL peer only up to this size (it is ~2.5 s per 1k users)")


def _peer(engine: Any, now: Any) -> tuple[float, int, int]:
    import sqlalchemy as sa

    t0 = time.perf_counter()
    with engine.begin() as conn:
        for table, sql in (("bench_peer_tournaments", PEER_TOURNAMENTS),
                           ("bench_peer_teams", PEER_TEAMS)):
            conn.execute(sa.text(f"DROP TABLE IF EXISTS {table}"))
            conn.execute(sa.text(sql), {"now": now})
    took = time.perf_counter() - t0
    with engine.connect() as conn:
        tournaments, teams = (int(conn.execute(sa.text(f"SELECT count(*) FROM {t}")).scalar_one())
                              for t in ("bench_peer_tournaments", "bench_peer_teams"))
    return took, tournaments, teams


def run(args: argparse.Namespace) -> int:
    from datetime import timedelta

    import dagster as dg
    import sqlalchemy as sa
    import yaml

    from recs_pipeline.bootstrap import init_app_database
    from recs_pipeline.cli import CliError
    from recs_pipeline.compute.timestamps import utc_now
    from recs_pipeline.db import make_engine
    from recs_pipeline.devtools.bench.jobs import JobRun, postgres_instance_env, step_seconds
    from recs_pipeline.devtools.bench.seed import _drop_postgres, _recreate_postgres
    from recs_pipeline.devtools.seed import SeedConfig, seed_database

    sizes = [s for s in args.sizes.split(",") if s]
    if not sizes or set(sizes) - set(SIZES):
        raise CliError(f"--sizes {args.sizes!r}: a comma list of {', '.join(SIZES)}")
    seed_now = utc_now().replace(hour=0, minute=0, second=0, microsecond=0)
    as_of = seed_now + timedelta(hours=12)
    for size in sizes:
        users = SIZES[size]
        app_url = _recreate_postgres(args.server_url, args.database)
        instance_db = f"{args.database}_dagster"
        _recreate_postgres(args.server_url, instance_db)
        engine = make_engine(app_url)
        try:
            with tempfile.TemporaryDirectory(prefix="recs_bench_nightly_") as home:
                t0 = time.perf_counter()
                init_app_database(engine)
                seed_database(engine, SeedConfig(users=users, seed=42, now=seed_now),
                              progress=False)
                seeded = time.perf_counter() - t0
                env = postgres_instance_env(home, args.server_url, instance_db, app_url)
                config = Path(home) / "nightly.yaml"
                run_config: dict[str, Any] = {"resources": {"clock": {"config": {
                    "as_of": as_of.isoformat(), "backfill": True}}}}
                if args.reserve is not None:
                    run_config["ops"] = {"publish_recommendations": {"config": {
                        "reserve": args.reserve}}}
                config.write_text(yaml.safe_dump(run_config))
                job = JobRun("nightly_recommendations_job", env, config, measure_rss=True)
                rc, wall, retries = job.wait(timeout=7200)
                rss = job.peak_rss_gb
                with mock.patch.dict(os.environ, env), dg.DagsterInstance.from_config(
                        home) as instance:
                    [record] = instance.get_run_records(limit=1)
                    steps = step_seconds(instance, record.dagster_run.run_id)
                with engine.connect() as conn:
                    published = {t: int(conn.execute(sa.text(
                        f"SELECT count(*) FROM {t}")).scalar_one())
                        for t in ("tournament_recommendations", "team_recommendations")}
                print(f"bench nightly {size}: {users:,} users (seed 42, seeded in {seeded:.0f} s),"
                      f" PostgreSQL app database and instance")
                print(f"  nightly_recommendations_job: exit {rc}, {retries} step retries, "
                      f"{wall:.1f} s wall (fresh process)"
                      + (f", peak RSS {rss:.2f} GB" if rss else ""))
                for step, took in sorted(steps.items(), key=lambda kv: -kv[1]):
                    print(f"    {step:<32} {took:7.1f} s")
                print(f"  published {published['tournament_recommendations']:,} tournament + "
                      f"{published['team_recommendations']:,} team rows")
                if users <= args.peer_max_users:
                    peer_s, peer_t, peer_m = _peer(engine, as_of)
                    print(f"  SQL peer (popularity, eligible, top 10): {peer_s:.1f} s, "
                          f"{peer_t:,} + {peer_m:,} rows; the peer takes {peer_s / wall:.1f}x "
                          "the job's wall time")
                else:
                    print(f"  SQL peer skipped above --peer-max-users {args.peer_max_users:,}")
        finally:
            engine.dispose()
            _drop_postgres(args.server_url, args.database)
            _drop_postgres(args.server_url, instance_db)
    return 0
