"""Faults during real runs: PostgreSQL restarts and immediate stops, kill -9 at the swap.

`recs-pipeline bench faults --cluster "15 avon" [--server-url URL] [--users N]` seeds a scratch
app database on that PostgreSQL cluster (run it against one with autovacuum on, the PostgreSQL
default: docs/operations.md says how to make one), then runs each scenario as the daemon would
(a fresh `dagster job execute` process per run) while it injects the fault:

* `nightly-restart` / `nightly-immediate-stop`: `pg_ctlcluster restart` (fast) or `stop -m
  immediate` + start 3 s later, once the nightly run has started its steps;
* `nightly-kill-at-swap`: a session holds a read lock on a published table (a Django request idle
  in a transaction), and the run's process group gets SIGKILL while its swap waits for the lock
  (its `LOCK TABLE` in `pg_stat_activity`); then a second run;
* `nightly-blocker-at-swap`: the same blocker, released 5 s after the swap started waiting;
* `achievements-restart` / `achievements-immediate-stop`: the same faults while one achievements
  run awards the seed's pending outbox events (`all_pending`);
* `retention-restart`: a restart during the purge's batches (batch size 100).

After each it prints the run's exit code, retries, seconds, and the published tables' state: rows,
how many refreshes they hold (distinct `generated_at`, which must be 1 and the same for both
tables: never a mix, never empty); for achievements the events still pending (must be 0) and
duplicate awards (must be 0; each scenario replays the same events, so the award counts must
match); for the purge rows younger than the cutoff (must be all kept).
It restarts the cluster: never point it at a cluster other work uses.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

DEFAULT_SERVER = "postgresql://postgres@127.0.0.1:5433/postgres"
SCENARIOS = ("nightly-restart", "nightly-immediate-stop", "nightly-kill-at-swap",
             "nightly-blocker-at-swap", "achievements-restart", "achievements-immediate-stop",
             "retention-restart")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cluster", required=True,
                        help='the cluster to fault, as pg_ctlcluster names it: "VERSION NAME"')
    parser.add_argument("--server-url", default=DEFAULT_SERVER,
                        help="that cluster's URL (a scratch database is created there)")
    parser.add_argument("--database", default="recs_bench_faults")
    parser.add_argument("--users", type=int, default=5000)
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))


def _pg_ctl(cluster: str, *action: str) -> None:
    version, name = cluster.split()
    subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", version, name, *action],
                   check=True, capture_output=True)


def run(args: argparse.Namespace) -> int:
    from datetime import timedelta

    import sqlalchemy as sa

    from recs_pipeline import schema
    from recs_pipeline.bootstrap import init_app_database
    from recs_pipeline.cli import CliError
    from recs_pipeline.compute.timestamps import utc_now
    from recs_pipeline.db import make_engine
    from recs_pipeline.devtools.bench.jobs import JobRun, wait_for
    from recs_pipeline.devtools.bench.seed import _recreate_postgres
    from recs_pipeline.devtools.seed import SeedConfig, seed_database

    scenarios = [s for s in args.scenarios.split(",") if s]
    unknown = set(scenarios) - set(SCENARIOS)
    if unknown:
        raise CliError(f"unknown scenarios {sorted(unknown)}; choose from {', '.join(SCENARIOS)}")
    url = _recreate_postgres(args.server_url, args.database)
    engine = make_engine(url)
    init_app_database(engine)
    # Anchored today: the purge's cutoff is 90 days before the real now.
    seed_now = utc_now().replace(hour=0, minute=0, second=0, microsecond=0)
    seed_database(engine, SeedConfig(users=args.users, seed=11, now=seed_now), progress=False)
    with engine.connect() as conn:
        autovacuum = conn.execute(sa.text("SHOW autovacuum")).scalar_one()
    engine.dispose()
    print(f"bench faults: {args.users:,} users on cluster {args.cluster} (autovacuum "
          f"{autovacuum})")

    home = tempfile.TemporaryDirectory(prefix="recs_bench_faults_")
    (Path(home.name) / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = {**os.environ, "DAGSTER_HOME": home.name, "RECS_DATABASE_URL": url}
    nightly_config = Path(home.name) / "nightly.yaml"
    as_of = (seed_now + timedelta(hours=12)).isoformat()
    nightly_config.write_text(
        f"resources:\n  clock:\n    config:\n      as_of: '{as_of}'\n      backfill: true\n")
    achievements_config = Path(home.name) / "achievements.yaml"
    achievements_config.write_text(
        "ops:\n  load_events:\n    config:\n      all_pending: true\n")
    retention_config = Path(home.name) / "retention.yaml"
    retention_config.write_text(
        "ops:\n  plan_retention_purge:\n    config:\n      batch_size: 100\n")

    def published() -> str:
        check = make_engine(url)
        try:
            with check.connect() as conn:
                parts, stamps = [], set()
                for table in ("tournament_recommendations", "team_recommendations"):
                    rows, refreshes, stamp = conn.execute(sa.text(
                        f"SELECT count(*), count(DISTINCT generated_at), max(generated_at) "
                        f"FROM {table}")).one()
                    stamps.add(stamp)
                    parts.append(f"{table.split('_')[0]} {rows:,} rows / {refreshes} refresh")
                same = "one refresh in both" if len(stamps) == 1 else "MIXED refreshes"
                return ", ".join(parts) + f" ({same})"
        finally:
            check.dispose()

    def inject(kind: str) -> None:
        if kind == "restart":
            _pg_ctl(args.cluster, "restart", "-m", "fast")
        else:
            _pg_ctl(args.cluster, "stop", "-m", "immediate")
            time.sleep(3.0)
            _pg_ctl(args.cluster, "start")

    def nightly(fault: str) -> None:
        run_ = JobRun("nightly_recommendations_job", env, nightly_config)
        blocker: list[Any] = []
        if fault in ("restart", "immediate-stop"):
            wait_for(lambda: run_.saw("STEP_START"), 120)
            time.sleep(2.0)
            inject(fault)
        elif fault in ("kill-at-swap", "blocker-at-swap"):
            # A session that read a published table and sits in its transaction (a Django
            # request idle in atomic()): the swap's LOCK TABLE cannot get through until it ends.
            watcher = make_engine(url)
            blocker.append(watcher.connect())
            blocker[0].execute(sa.text("SELECT 1 FROM tournament_recommendations LIMIT 1"))

            def at_swap() -> bool:
                with watcher.connect() as conn:
                    return bool(conn.execute(sa.text(
                        "SELECT count(*) FROM pg_stat_activity WHERE query ILIKE "
                        "'LOCK TABLE%' AND pid <> pg_backend_pid()")).scalar_one())

            if wait_for(at_swap, 600, interval=0.01):
                if fault == "kill-at-swap":
                    run_.kill()
                    blocker[0].rollback()
                    print(f"  killed the run while its swap waited for the lock; published: "
                          f"{published()}")
                else:
                    time.sleep(5.0)
                    blocker[0].rollback()
        rc, seconds, retries = run_.wait()
        for conn in blocker:
            conn.close()
        print(f"  nightly-{fault}: exit {rc}, {retries} step retries, {seconds:.1f} s; "
              f"published: {published()}")
        if fault == "kill-at-swap":
            rc, seconds, retries = JobRun("nightly_recommendations_job", env,
                                        nightly_config).wait()
            print(f"  the next run: exit {rc}, {seconds:.1f} s; published: {published()}")

    def achievements(kind: str) -> None:
        from recs_pipeline.defs.achievements.store import pending_event_ids

        check = make_engine(url)
        with check.begin() as conn:  # every scenario replays the seed's events from scratch
            for table in (schema.user_achievements, schema.achievement_event_ledger,
                          schema.achievement_dead_letters):
                conn.execute(table.delete())
            pending = len(pending_event_ids(conn, limit=10_000_000))
        run_ = JobRun("achievements_job", env, achievements_config)
        wait_for(lambda: run_.saw("STEP_START"), 120, interval=0.01)
        inject(kind)
        rc, seconds, retries = run_.wait()
        with check.connect() as conn:
            left = len(pending_event_ids(conn, limit=10_000_000))
            awards, duplicates = conn.execute(sa.text(
                "SELECT count(*), count(*) - count(DISTINCT (user_id, achievement_id)) "
                "FROM user_achievements")).one()
        check.dispose()
        print(f"  achievements-{kind}: exit {rc}, {retries} step retries, {seconds:.1f} s; "
              f"events pending {pending:,} -> {left:,}, awards {awards:,}, duplicate awards "
              f"{duplicates}")

    def retention() -> None:
        cutoff = utc_now() - timedelta(days=90)
        check = make_engine(url)
        with check.connect() as conn:
            young = conn.execute(sa.text("SELECT count(*) FROM activities WHERE created_at >= "
                                         ":c"), {"c": cutoff + timedelta(minutes=5)}).scalar_one()
        run_ = JobRun("retention_purge_job", env, retention_config)
        wait_for(lambda: run_.saw("batch of"), 120, interval=0.01)
        inject("restart")
        rc, seconds, retries = run_.wait()
        with check.connect() as conn:
            old, young_after = conn.execute(sa.text(
                "SELECT count(*) FILTER (WHERE created_at < :c), count(*) FILTER (WHERE "
                "created_at >= :y) FROM activities"),
                {"c": cutoff - timedelta(minutes=5), "y": cutoff + timedelta(minutes=5)}).one()
        check.dispose()
        print(f"  retention-restart: exit {rc}, {retries} step retries, {seconds:.1f} s; "
              f"expired activities left {old:,}, younger kept {young_after:,} of {young:,}")

    baseline = JobRun("nightly_recommendations_job", env, nightly_config).wait()
    print(f"  clean nightly run: exit {baseline[0]}, {baseline[1]:.1f} s; "
          f"published: {published()}")
    try:
        for scenario in scenarios:
            if scenario == "retention-restart":
                retention()
            elif scenario.startswith("achievements-"):
                achievements(scenario.removeprefix("achievements-"))
            else:
                nightly(scenario.removeprefix("nightly-"))
    finally:
        home.cleanup()
    return 0
