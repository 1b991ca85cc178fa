"""The intraday upkeep at scale: an idle run and a run with a share of the rows invalidated.

`recs-pipeline bench upkeep [--users N] [--invalidate 0.01] [--server-url URL] [--keep | --reuse]`
seeds a scratch PostgreSQL app database (seed 42) and publishes it with the real
`nightly_recommendations_job` (a fresh `dagster job execute` process, with the reserve), then runs
`recommendation_upkeep_job` as the daemon would, each in a fresh process:

1. 15 minutes after the publish: what changed on its own since (registrations closing);
2. again at the same instant: the idle run, nothing changed;
3. after invalidating `--invalidate` of each kind's published rows the way the app does: closing
   registration on recommended tournaments, filling one, registering users for their top-1,
   teams stopping recruiting, users joining their top-1 team, deactivating users.

It prints each run's wall time (launch included), the upkeep step's seconds, per-kind seconds,
rows removed by reason, rows backfilled and users touched, and after the last run the rows still
ineligible (the staleness check's count; must be 0). `--keep` leaves the databases for `--reuse`,
which skips seeding and the nightly and goes on from the last upkeep run's instant (the
invalidation then works on the previous run's state)
and keeps them too; drop them with `recs-pipeline bench upkeep --drop`.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from unittest import mock

from recs_pipeline.devtools.bench.jobs import JobRun

DEFAULT_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"
# How the invalidated share of each kind's rows is split between the ways rows go stale.
TOURNAMENT_MIX = {"registration_closed": 0.45, "full": 0.15, "registered": 0.3,
                  "user_inactive": 0.1}
TEAM_MIX = {"not_recruiting": 0.6, "joined": 0.3, "user_inactive": 0.1}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--invalidate", type=float, default=0.01,
                        help="share of each kind's published rows to invalidate (default 1 %%)")
    parser.add_argument("--server-url", default=DEFAULT_SERVER,
                        help="PostgreSQL server URL (scratch databases are created there)")
    parser.add_argument("--database", default="recs_bench_upkeep")
    parser.add_argument("--keep", action="store_true",
                        help="keep the databases and DAGSTER_HOME for a later --reuse")
    parser.add_argument("--reuse", action="store_true",
                        help="reuse the databases of a previous --keep run (no seed, no nightly)")
    parser.add_argument("--drop", action="store_true",
                        help="only drop the databases a --keep run left")


# --- invalidation -----------------------------------------------------------------------------


def _items_by_rows(conn: Any, table: str, column: str) -> list[tuple[int, int]]:
    import sqlalchemy as sa

    return [(int(i), int(n)) for i, n in conn.execute(sa.text(
        f"SELECT {column}, count(*) FROM {table} GROUP BY 1 ORDER BY md5({column}::text)"))]


def _pick_items(items: list[tuple[int, int]], budget: int, taken: set[int]
                ) -> tuple[list[int], int]:
    """Items (in their shuffled order) whose row counts add up to at most `budget`."""
    picked, rows = [], 0
    for item, n in items:
        if item in taken or rows + n > budget:
            continue
        picked.append(item)
        taken.add(item)
        rows += n
        if rows >= budget * 0.98:
            break
    return picked, rows


def _top1_pairs(conn: Any, table: str, column: str, count: int, exclude_items: set[int],
                capacity: dict[int, int]) -> list[tuple[int, int]]:
    """Users' top-1 rows to register / join, no item taken to its capacity (a full item would
    invalidate every row of it: that is the "full" share's job)."""
    import sqlalchemy as sa

    pairs = conn.execute(sa.text(
        f"SELECT user_id, {column} FROM {table} WHERE rank = 1 ORDER BY md5(user_id::text)"))
    picked: list[tuple[int, int]] = []
    for user, item in pairs:
        if len(picked) == count:
            break
        if item in exclude_items or capacity.get(item, 0) < 2:
            continue
        capacity[item] -= 1
        picked.append((int(user), int(item)))
    return picked


def _spare_capacity(conn: Any, kind: str) -> dict[int, int]:
    import sqlalchemy as sa

    if kind == "tournaments":
        sql = ("SELECT t.id, t.max_participants - count(p.id) FROM tournaments t LEFT JOIN "
               "tournament_participants p ON p.tournament_id = t.id GROUP BY t.id")
    else:
        sql = ("SELECT m.id, m.max_members - count(tm.id) FROM teams m LEFT JOIN team_members tm "
               "ON tm.team_id = m.id AND tm.left_at IS NULL GROUP BY m.id")
    return {int(i): int(n) for i, n in conn.execute(sa.text(sql))}


def invalidate(engine: Any, share: float, at: datetime) -> dict[str, int]:
    """Make about `share` of each kind's published rows ineligible, the way the app does;
    returns the rows aimed at per reason."""
    import sqlalchemy as sa

    aimed: dict[str, int] = {}
    with engine.begin() as conn:
        rows_t = int(conn.execute(sa.text("SELECT count(*) FROM tournament_recommendations"))
                     .scalar_one())
        rows_m = int(conn.execute(sa.text("SELECT count(*) FROM team_recommendations"))
                     .scalar_one())
        # deactivated users: their rows in both kinds
        per_user = max(1, rows_t // max(1, int(conn.execute(sa.text(
            "SELECT count(DISTINCT user_id) FROM tournament_recommendations")).scalar_one())))
        inactive_users = max(1, int(rows_t * share * TOURNAMENT_MIX["user_inactive"] / per_user))
        users = [int(u) for u in conn.execute(sa.text(
            "SELECT DISTINCT user_id FROM tournament_recommendations ORDER BY 1 DESC LIMIT :n"),
            {"n": inactive_users}).scalars()]
        conn.execute(sa.text("UPDATE users SET is_active = false WHERE id = ANY(:ids)"),
                     {"ids": users})
        aimed["user_inactive"] = len(users)

        taken: set[int] = set()
        t_items = _items_by_rows(conn, "tournament_recommendations", "tournament_id")
        closed, aimed["registration_closed"] = _pick_items(
            t_items, int(rows_t * share * TOURNAMENT_MIX["registration_closed"]), taken)
        conn.execute(sa.text("UPDATE tournaments SET registration_closes_at = :at "
                             "WHERE id = ANY(:ids)"), {"at": at, "ids": closed})
        capacity = _spare_capacity(conn, "tournaments")
        registered = set(conn.execute(sa.text(
            "SELECT DISTINCT tournament_id FROM tournament_participants")).scalars())
        full, aimed["full"] = _pick_items(
            [(i, n) for i, n in t_items if i in registered],
            int(rows_t * share * TOURNAMENT_MIX["full"]), taken)
        # full: the capacity is lowered to the registrations so far (the organiser's edit)
        conn.execute(sa.text(
            "UPDATE tournaments t SET max_participants = (SELECT count(*) FROM "
            "tournament_participants p WHERE p.tournament_id = t.id) WHERE t.id = ANY(:ids)"),
            {"ids": full})
        pairs = _top1_pairs(conn, "tournament_recommendations", "tournament_id",
                            int(rows_t * share * TOURNAMENT_MIX["registered"]), taken, capacity)
        next_id = int(conn.execute(sa.text("SELECT coalesce(max(id), 0) FROM "
                                           "tournament_participants")).scalar_one())
        conn.execute(sa.text(
            "INSERT INTO tournament_participants (id, tournament_id, user_id, registered_at) "
            "VALUES (:id, :item, :user, :at) ON CONFLICT DO NOTHING"),
            [{"id": next_id + n + 1, "item": i, "user": u, "at": at}
             for n, (u, i) in enumerate(pairs)])
        aimed["registered"] = len(pairs)

        taken = set()
        m_items = _items_by_rows(conn, "team_recommendations", "team_id")
        stopped, aimed["not_recruiting"] = _pick_items(
            m_items, int(rows_m * share * TEAM_MIX["not_recruiting"]), taken)
        conn.execute(sa.text("UPDATE teams SET is_recruiting = false WHERE id = ANY(:ids)"),
                     {"ids": stopped})
        pairs = _top1_pairs(conn, "team_recommendations", "team_id",
                            int(rows_m * share * TEAM_MIX["joined"]), taken,
                            _spare_capacity(conn, "teams"))
        next_id = int(conn.execute(sa.text("SELECT coalesce(max(id), 0) FROM team_members"))
                      .scalar_one())
        conn.execute(sa.text(
            "INSERT INTO team_members (id, team_id, user_id, joined_at) "
            "VALUES (:id, :item, :user, :at)"),
            [{"id": next_id + n + 1, "item": i, "user": u, "at": at}
             for n, (u, i) in enumerate(pairs)])
        aimed["joined"] = len(pairs)
        aimed["rows_tournaments"], aimed["rows_teams"] = rows_t, rows_m
    return aimed


# --- one upkeep run ---------------------------------------------------------------------------


def _run_as_of(home: str, env: dict[str, str], job_name: str, now: datetime, timeout: float
               ) -> tuple[JobRun, int, float, int]:
    """`job_name` with the run's clock at `now`, in a fresh process under GNU time: the run,
    its exit code, wall seconds and step retries; the run's last output lines on a failure."""
    import yaml

    config = Path(home) / f"{job_name}.yaml"
    config.write_text(yaml.safe_dump({"resources": {"clock": {"config": {
        "as_of": now.isoformat(), "backfill": True}}}}))
    job = JobRun(job_name, env, config, measure_rss=True)
    rc, wall, retries = job.wait(timeout=timeout)
    if rc != 0:
        print("".join(job.lines[-40:]))
    return job, rc, wall, retries


def _run_upkeep_job(home: str, env: dict[str, str], now: datetime, label: str) -> None:
    import dagster as dg

    from recs_pipeline.devtools.bench.jobs import step_seconds

    job, rc, wall, retries = _run_as_of(home, env, "recommendation_upkeep_job", now, 1800)
    rss = job.peak_rss_gb
    with mock.patch.dict(os.environ, env), dg.DagsterInstance.from_config(home) as instance:
        [record] = instance.get_run_records(limit=1)
        run_id = record.dagster_run.run_id
        steps = step_seconds(instance, run_id)
        output: dict[str, Any] = {}
        observed: dict[str, dict[str, Any]] = {}
        for entry in instance.all_logs(run_id):
            event = entry.dagster_event
            if event is None:
                continue
            if event.event_type == dg.DagsterEventType.STEP_OUTPUT:
                output = {k: v.value for k, v in event.step_output_data.metadata.items()}
            elif event.event_type == dg.DagsterEventType.ASSET_OBSERVATION:
                observation = entry.asset_observation
                assert observation is not None
                observed[observation.asset_key.to_user_string()] = {
                    k: v.value for k, v in observation.metadata.items()}
    step = steps.get("upkeep_recommendations", float("nan"))
    print(f"  {label}: exit {rc}, {retries} retries, {wall:.1f} s wall (fresh process), "
          f"upkeep step {step:.2f} s" + (f", peak RSS {rss:.2f} GB" if rss else ""))
    seconds = ", ".join(f"{k.removeprefix('seconds_')} {v:.2f} s" for k, v in output.items()
                        if k.startswith("seconds_"))
    print(f"    inside the step: {seconds}; users with a short list "
          f"{output.get('users_short', 0)}, refresh requested "
          f"{output.get('users_refresh_requested', 0)}")
    for key, meta in sorted(observed.items()):
        reasons = ", ".join(f"{k.removeprefix('removed_')} {v:,}" for k, v in meta.items()
                            if k.startswith("removed_") and v)
        print(f"    {key}: {meta.get('rows_before', 'not counted (idle)')!s} rows, "
              f"removed {meta['rows_removed']:,} "
              f"({100 * meta['ineligible_share_before']:.2f} %; {reasons or 'none'}), "
              f"backfilled {meta['rows_backfilled']:,}, users touched {meta['users_touched']:,}")


def run(args: argparse.Namespace) -> int:
    import sqlalchemy as sa
    import yaml

    from recs_pipeline.bootstrap import init_app_database
    from recs_pipeline.cli import CliError
    from recs_pipeline.compute.timestamps import utc_now
    from recs_pipeline.db import make_engine
    from recs_pipeline.defs.recommendations.publishing import KINDS
    from recs_pipeline.defs.recommendations.upkeep import ineligible_now
    from recs_pipeline.devtools.bench.jobs import postgres_instance_env
    from recs_pipeline.devtools.bench.seed import _drop_postgres, _recreate_postgres
    from recs_pipeline.devtools.seed import SeedConfig, seed_database

    if not 0 < args.invalidate < 0.5:
        raise CliError("--invalidate: a share in (0, 0.5)")
    instance_db = f"{args.database}_dagster"
    home = str(Path(tempfile.gettempdir()) / f"{args.database}_home")
    state = Path(home) / "bench_upkeep.yaml"
    if args.drop:
        _drop_postgres(args.server_url, args.database)
        _drop_postgres(args.server_url, instance_db)
        shutil.rmtree(home, ignore_errors=True)
        return 0
    if args.reuse:
        if not state.exists():
            raise CliError(f"--reuse: no kept run ({state} is missing); run with --keep first")
        kept = yaml.safe_load(state.read_text())
        app_url, users, as_of = kept["app_url"], kept["users"], datetime.fromisoformat(
            kept["as_of"])
    else:
        shutil.rmtree(home, ignore_errors=True)
        Path(home).mkdir(parents=True)
        app_url = _recreate_postgres(args.server_url, args.database)
        _recreate_postgres(args.server_url, instance_db)
        users = args.users
        as_of = utc_now().replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(hours=12)
    env = postgres_instance_env(home, args.server_url, instance_db, app_url)  # idempotent
    engine = make_engine(app_url)
    try:
        if not args.reuse:
            t0 = time.perf_counter()
            init_app_database(engine)
            seed_database(engine, SeedConfig(users=users, seed=42,
                                             now=as_of - timedelta(hours=12)), progress=False)
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(sa.text("ANALYZE"))  # what autovacuum does soon after a bulk load
            seeded = time.perf_counter() - t0
            job, rc, wall, _ = _run_as_of(home, env, "nightly_recommendations_job", as_of, 7200)
            if rc != 0:
                raise CliError(f"the nightly job failed (exit {rc})")
            rss = job.peak_rss_gb
            print(f"bench upkeep: {users:,} users (seed 42, seeded in {seeded:.0f} s), PostgreSQL "
                  f"app database and instance; nightly_recommendations_job (with the reserve) "
                  f"{wall:.1f} s" + (f", peak RSS {rss:.2f} GB" if rss else ""))
            state.write_text(yaml.safe_dump({"app_url": app_url, "users": users,
                                             "as_of": as_of.isoformat()}))
        else:
            print(f"bench upkeep: reusing {args.database} ({users:,} users)")
        with engine.connect() as conn:
            for table in ("tournament_recommendations", "tournament_recommendation_reserve",
                          "team_recommendations", "team_recommendation_reserve"):
                rows = int(conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one())
                print(f"  {table}: {rows:,} rows")
        if args.reuse:  # go on from where the kept run's upkeep left off
            with engine.connect() as conn:
                first = conn.execute(sa.text(
                    "SELECT max(checked_at) FROM recommendation_upkeep_state")).scalar_one()
        else:
            first = as_of + timedelta(minutes=15)
            _run_upkeep_job(home, env, first, "upkeep 15 min after the publish")
        _run_upkeep_job(home, env, first, "idle upkeep (nothing changed)")
        later = first + timedelta(minutes=15)
        t0 = time.perf_counter()
        aimed = invalidate(engine, args.invalidate, first + timedelta(minutes=5))
        print(f"  invalidated in {time.perf_counter() - t0:.1f} s, aiming at "
              f"{100 * args.invalidate:g} % of each kind's rows: "
              + ", ".join(f"{k} {v:,}" for k, v in aimed.items() if not k.startswith("rows_")))
        _run_upkeep_job(home, env, later, f"upkeep after invalidating {100 * args.invalidate:g} %")
        for kind in KINDS:
            rows, bad = ineligible_now(engine, kind, later)
            print(f"  after it, {kind.name}: {rows:,} rows, {bad:,} ineligible")
        _run_upkeep_job(home, env, later, "idle upkeep again")
    finally:
        engine.dispose()
        if not (args.keep or args.reuse):
            _drop_postgres(args.server_url, args.database)
            _drop_postgres(args.server_url, instance_db)
            shutil.rmtree(home, ignore_errors=True)
    return 0
