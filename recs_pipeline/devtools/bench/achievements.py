"""Achievements: events/s in one run, per-event baselines, and end to end through dagster-daemon.

What it does (databases `recs_bench_achievements_*`, created and dropped on the local server;
SQLite files in a temp directory):

1. In one run (`achievements_job.execute_in_process`, the real job) on PostgreSQL and SQLite:
   a synthetic world (`--users` users with participations, teams, profiles) and `--sizes` events
   (default 10k and 100k) processed as ONE batch; events/s = events / run wall time (Dagster's
   in-process overhead included) and per step.
2. Seed-style per-event loop on a sample (`--loop-sample` events): per event, look the user up,
   compute each matching achievement's metric for that one user, check the award, insert it
   (what the Celery task did); queries per event and events/s.
3. End to end (PostgreSQL, skip with `--skip-daemon`): a PostgreSQL-backed Dagster instance
   (dagster-postgres storage) in a temp DAGSTER_HOME with a generated dagster.yaml (queued runs,
   `--run-limit` achievement runs at a time, as the production file's tag limit), `dagster
   instance migrate`, `dagster-daemon run` in its own process group, `dagster sensor start`.
   a) idle latency: `--latency-events` events committed one at a time, seconds from commit to
      award (awarded_at), median and p95;
   b) drain: `--drain-events` events committed at once, seconds until every one is in the ledger;
   c) one run per event: estimated from the measured per-run cost of those runs.

Targets: >= 5,000 events/s in a run; 100k backlog drained in <= 3 min; p95 latency <= 60 s.
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from datetime import UTC
from pathlib import Path
from typing import Any

DEFAULT_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"
DB_PREFIX = "recs_bench_achievements"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000],
                        help="events per run for the in-run throughput")
    parser.add_argument("--users", type=int, default=50_000, help="users in the synthetic world")
    parser.add_argument("--backends", nargs="+", default=["postgresql", "sqlite"],
                        choices=["postgresql", "sqlite"])
    parser.add_argument("--loop-sample", type=int, default=500,
                        help="events processed by the seed-style per-event loop")
    parser.add_argument("--skip-daemon", action="store_true", help="skip the end-to-end part")
    parser.add_argument("--latency-events", type=int, default=20)
    parser.add_argument("--latency-gap", type=float, default=4.0,
                        help="seconds between the idle-latency events")
    parser.add_argument("--drain-events", type=int, default=100_000)
    parser.add_argument("--run-limit", type=int, default=1,
                        help="achievement runs at a time (tag concurrency limit) in the e2e part")
    parser.add_argument("--timeout", type=float, default=600.0, help="e2e wait limit, seconds")
    parser.add_argument("--server-url", default=DEFAULT_SERVER,
                        help="SQLAlchemy URL of any database on the PostgreSQL server")
    parser.add_argument("--code-dir", default=None,
                        help="directory holding the recs_pipeline package the daemon loads "
                        "(default: the current directory), e.g. a `git archive HEAD` snapshot")
    parser.add_argument("--keep", action="store_true", help="keep databases and DAGSTER_HOME")


# --- synthetic world ------------------------------------------------------------------------


def _build_world(engine: Any, users: int, seed: int = 7) -> None:
    import numpy as np
    import pandas as pd

    from recs_pipeline import schema
    from recs_pipeline.bootstrap import init_app_database
    from recs_pipeline.db import bulk_insert

    init_app_database(engine)
    rng = np.random.default_rng(seed)
    t0 = pd.Timestamp("2025-01-01")
    uid = np.arange(1, users + 1)
    n_t = max(100, users // 10)
    per_user = 8
    tp_user = np.repeat(uid, per_user)
    tp_tour = (tp_user * 7 + np.tile(np.arange(per_user), users) * 131) % n_t + 1
    placement = rng.integers(1, 21, len(tp_user)).astype(float)
    placement[rng.random(len(tp_user)) < 0.3] = np.nan
    tm_user = np.repeat(uid, 2)
    frames = {
        schema.users: pd.DataFrame({
            "id": uid, "username": [f"u{i}" for i in uid], "email": "x@example.com",
            "region": "eu", "is_active": True, "date_joined": t0, "last_login": t0}),
        schema.tournaments: pd.DataFrame({
            "id": np.arange(1, n_t + 1), "name": "t", "game_id": 1, "region": "eu",
            "skill_min": None, "skill_max": None, "max_participants": 64,
            "status": np.where(rng.random(n_t) < 0.8, "completed", "in_progress"),
            "registration_closes_at": t0, "starts_at": t0, "completed_at": t0,
            "created_at": t0}),
        schema.tournament_participants: pd.DataFrame({
            "id": np.arange(1, len(tp_user) + 1), "tournament_id": tp_tour,
            "user_id": tp_user, "team_id": None, "registered_at": t0,
            "placement": pd.array(placement, dtype="Float64").astype("Int64")}),
        schema.team_members: pd.DataFrame({
            "id": np.arange(1, len(tm_user) + 1), "team_id": rng.integers(1, 3000, len(tm_user)),
            "user_id": tm_user, "joined_at": t0, "left_at": pd.NaT}),
        schema.profile_completeness: pd.DataFrame({
            "user_id": uid, "percentage": rng.choice([40, 80, 100], users), "updated_at": t0}),
    }
    with engine.begin() as conn:
        for table, frame in frames.items():
            bulk_insert(conn, table, frame)


def _insert_events(engine: Any, n: int, users: int, first_id: int, seed: int = 11) -> None:
    import numpy as np
    import pandas as pd

    from recs_pipeline import schema
    from recs_pipeline.compute.timestamps import utc_now
    from recs_pipeline.db import bulk_insert

    rng = np.random.default_rng(seed + first_id)
    types = np.array(["tournament_completed", "team_joined", "profile_completed"])
    frame = pd.DataFrame({
        "id": np.arange(first_id, first_id + n), "event_type": types[rng.integers(0, 3, n)],
        "user_id": rng.integers(1, users + 1, n), "payload": '{"source": "bench"}',
        "created_at": pd.Timestamp(utc_now())})
    with engine.begin() as conn:
        bulk_insert(conn, schema.app_events, frame)


def _reset_outputs(engine: Any) -> None:
    from recs_pipeline import schema

    with engine.begin() as conn:
        for table in (schema.user_achievements, schema.achievement_event_ledger,
                      schema.achievement_dead_letters, schema.app_events):
            conn.execute(table.delete())


# --- 1. in-run throughput -------------------------------------------------------------------


def _in_run(url: str, engine: Any, sizes: list[int], users: int) -> list[dict[str, Any]]:
    import dagster as dg

    from recs_pipeline.defs.achievements.job import achievements_job
    from recs_pipeline.resources import AppDatabase

    out = []
    for n in sizes:
        _reset_outputs(engine)
        _insert_events(engine, n, users, 1)
        with dg.DagsterInstance.ephemeral() as instance:
            start = time.perf_counter()
            result = achievements_job.execute_in_process(
                run_config={"ops": {"load_events": {"config": {"event_id_ranges": [[1, n]]}}}},
                resources={"app_db": AppDatabase(url=url)}, instance=instance)
            wall = time.perf_counter() - start
            steps = {s.step_key: round((s.end_time or 0) - (s.start_time or 0), 3)
                     for s in instance.get_run_step_stats(result.run_id)}
        awards = _count(engine, "user_achievements")
        out.append({"events": n, "wall_s": round(wall, 2), "events_per_s": round(n / wall),
                    "steps_s": steps, "awards": awards,
                    "ops_events_per_s": round(n / max(sum(steps.values()), 1e-9))})
        print(f"  {n:>7} events: {wall:6.2f} s  {n / wall:8.0f} events/s  "
              f"({awards} awards; steps {steps})", flush=True)
    return out


def _count(engine: Any, table: str) -> int:
    import sqlalchemy as sa

    with engine.connect() as conn:
        return int(conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar() or 0)


# --- 2. seed-style per-event loop -----------------------------------------------------------


def _per_event_loop(engine: Any, sample: int, users: int) -> dict[str, Any]:
    """What the Celery task did: one event at a time, one user at a time."""
    import sqlalchemy as sa

    from recs_pipeline import schema
    from recs_pipeline.compute.timestamps import utc_now

    _reset_outputs(engine)
    _insert_events(engine, sample, users, 1)
    queries = 0

    def q(conn: Any, stmt: Any) -> Any:
        nonlocal queries
        queries += 1
        return conn.execute(stmt)

    tp, t, tm, pc = (schema.tournament_participants, schema.tournaments, schema.team_members,
                     schema.profile_completeness)
    metric_sql = {
        "tournaments_completed": lambda u: sa.select(sa.func.count()).select_from(
            tp.join(t, t.c.id == tp.c.tournament_id)).where(tp.c.user_id == u,
                                                            t.c.status == "completed"),
        "tournaments_won": lambda u: sa.select(sa.func.count()).where(
            tp.c.user_id == u, tp.c.placement == 1),
        "podium_finishes": lambda u: sa.select(sa.func.count()).where(
            tp.c.user_id == u, tp.c.placement <= 3),
        "teams_joined": lambda u: sa.select(sa.func.count(sa.distinct(tm.c.team_id))).where(
            tm.c.user_id == u),
        "profile_completeness": lambda u: sa.select(pc.c.percentage).where(pc.c.user_id == u),
    }
    a, ua, ev = schema.achievements, schema.user_achievements, schema.app_events
    start = time.perf_counter()
    with engine.connect() as conn:
        events = list(conn.execute(sa.select(ev.c.id, ev.c.event_type, ev.c.user_id)))
    for event_id, event_type, user_id in events:
        with engine.begin() as conn:
            if q(conn, sa.select(schema.users.c.id).where(schema.users.c.id == user_id)).first():
                for ach_id, metric, threshold in q(conn, sa.select(
                        a.c.id, a.c.metric, a.c.threshold).where(
                        a.c.event_type == event_type, a.c.is_active.is_(True))).all():
                    if q(conn, sa.select(ua.c.id).where(ua.c.user_id == user_id,
                                                        ua.c.achievement_id == ach_id)).first():
                        continue
                    value = q(conn, metric_sql[metric](user_id)).scalar() or 0
                    if value >= threshold:
                        q(conn, ua.insert().values(user_id=user_id, achievement_id=ach_id,
                                                   event_id=event_id, awarded_at=utc_now()))
    wall = time.perf_counter() - start
    result = {"events": sample, "wall_s": round(wall, 2), "events_per_s": round(sample / wall),
              "queries_per_event": round(queries / sample, 1)}
    print(f"  per-event loop: {sample} events in {wall:.2f} s = {sample / wall:.0f} events/s, "
          f"{queries / sample:.1f} queries/event (+1 transaction each)", flush=True)
    return result


# --- 3. end to end through dagster-daemon ---------------------------------------------------


def _admin(server_url: str, sql: str) -> None:
    import sqlalchemy as sa

    engine = sa.create_engine(server_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(sa.text(sql))
    finally:
        engine.dispose()


def _dagster_yaml(server: Any, db: str, run_limit: int) -> str:
    return textwrap.dedent(f"""\
        storage:
          postgres:
            postgres_db:
              username: {server.username or "postgres"}
              password: "{server.password or ""}"
              hostname: {server.host or "127.0.0.1"}
              db_name: {db}
              port: {server.port or 5432}
              scheme: postgresql+psycopg2
        run_coordinator:
          module: dagster.core.run_coordinator
          class: QueuedRunCoordinator
          config:
            max_concurrent_runs: 4
            dequeue_interval_seconds: 1
            tag_concurrency_limits:
              - key: recs/job_kind
                value:
                  applyLimitPerUniqueValue: true
                limit: {run_limit}
        run_launcher:
          module: dagster.core.launcher
          class: DefaultRunLauncher
        telemetry:
          enabled: false
        """)


def _e2e(args: argparse.Namespace, server: Any, url: str, engine: Any) -> dict[str, Any]:
    import sqlalchemy as sa

    from recs_pipeline import schema
    from recs_pipeline.compute.timestamps import utc_now

    instance_db = f"{DB_PREFIX}_dagster"
    _admin(args.server_url, f'DROP DATABASE IF EXISTS "{instance_db}" WITH (FORCE)')
    _admin(args.server_url, f'CREATE DATABASE "{instance_db}"')
    home = Path(tempfile.mkdtemp(prefix="recs_bench_ach_home_"))
    (home / "dagster.yaml").write_text(_dagster_yaml(server, instance_db, args.run_limit))
    code_dir = Path(args.code_dir or Path.cwd()).resolve()
    workspace = home / "workspace.yaml"
    workspace.write_text(textwrap.dedent(f"""\
        load_from:
          - python_module:
              module_name: recs_pipeline.definitions
              location_name: recs_pipeline
              working_directory: {code_dir}
        """))
    env = {**os.environ, "DAGSTER_HOME": str(home), "RECS_DATABASE_URL": url,
           "PYTHONPATH": str(code_dir)}  # run workers import the same code as the daemon
    bin_dir = Path(sys.executable).parent
    subprocess.run([str(bin_dir / "dagster"), "instance", "migrate"], env=env, check=True,
                   capture_output=True)
    _reset_outputs(engine)
    log = open(home / "daemon.log", "w")  # noqa: SIM115 - closed in finally
    daemon = subprocess.Popen([str(bin_dir / "dagster-daemon"), "run", "-w", str(workspace)],
                              env=env, stdout=log, stderr=subprocess.STDOUT,
                              start_new_session=True,
                              # SIGINT must stop it even when this bench runs in the background
                              preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    result: dict[str, Any] = {"run_limit": args.run_limit, "dagster_home": str(home)}
    try:
        time.sleep(5)
        started = subprocess.run(
            [str(bin_dir / "dagster"), "sensor", "start", "achievement_events_sensor",
             "-w", str(workspace)], env=env, capture_output=True, text=True)
        print(f"  sensor start: {(started.stdout + started.stderr).strip().splitlines()[-1:]}",
              flush=True)
        ua, ledger = schema.user_achievements, schema.achievement_event_ledger

        # a) idle latency: new users at 100 % profile, one profile_completed event each
        base_user = 10_000_000
        with engine.begin() as conn:
            conn.execute(schema.users.insert(), [
                {"id": base_user + i, "username": f"lat{i}", "email": "x@example.com",
                 "region": "eu", "is_active": True, "date_joined": utc_now()}
                for i in range(args.latency_events)])
            conn.execute(schema.profile_completeness.insert(), [
                {"user_id": base_user + i, "percentage": 100, "updated_at": utc_now()}
                for i in range(args.latency_events)])
        committed: dict[int, float] = {}
        for i in range(args.latency_events):
            with engine.begin() as conn:
                eid = conn.execute(schema.app_events.insert().returning(schema.app_events.c.id),
                                   {"event_type": "profile_completed", "user_id": base_user + i,
                                    "payload": None, "created_at": utc_now()}).scalar_one()
            committed[int(eid)] = time.time()
            time.sleep(args.latency_gap)
        latencies: dict[int, float] = {}
        deadline = time.time() + args.timeout
        while len(latencies) < len(committed) and time.time() < deadline:
            with engine.connect() as conn:
                for eid, at in conn.execute(sa.select(ua.c.event_id, ua.c.awarded_at).where(
                        ua.c.event_id.in_(list(committed)))):
                    if int(eid) not in latencies:
                        aware = at if at.tzinfo else at.replace(tzinfo=UTC)
                        latencies[int(eid)] = aware.timestamp()
            time.sleep(1)
        lat = sorted(latencies[e] - committed[e] for e in latencies)
        result["latency"] = {
            "events": len(committed), "awarded": len(lat),
            "median_s": round(statistics.median(lat), 1) if lat else None,
            "p95_s": round(lat[min(len(lat) - 1, math.ceil(0.95 * len(lat)) - 1)], 1)
            if lat else None,
            "max_s": round(lat[-1], 1) if lat else None,
        }
        print(f"  idle latency: {result['latency']}", flush=True)

        # b) drain a backlog committed at once
        with engine.connect() as conn:
            top = conn.execute(sa.select(sa.func.max(schema.app_events.c.id))).scalar()
            first = int(top or 0) + 1
            ledger_before = conn.execute(sa.select(sa.func.count()).select_from(ledger)).scalar()
        _insert_events(engine, args.drain_events, args.users, first)
        t0 = time.time()
        done = 0
        while time.time() - t0 < args.timeout:
            with engine.connect() as conn:
                done = int(conn.execute(sa.select(sa.func.count()).select_from(ledger)).scalar()
                           or 0) - int(ledger_before or 0)
            if done >= args.drain_events:
                break
            time.sleep(1)
        drain = time.time() - t0
        result["drain"] = {"events": args.drain_events, "processed": done,
                           "seconds": round(drain, 1)}
        print(f"  drain: {result['drain']}", flush=True)
        result["runs"] = _run_costs(home)
        print(f"  runs: {result['runs']}", flush=True)
    finally:
        os.killpg(daemon.pid, signal.SIGINT)
        try:
            daemon.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(daemon.pid, signal.SIGKILL)
        log.close()
        if not args.keep:
            shutil.rmtree(home, ignore_errors=True)
            _admin(args.server_url, f'DROP DATABASE IF EXISTS "{instance_db}" WITH (FORCE)')
    return result


def _run_costs(home: Path) -> dict[str, Any]:
    import dagster as dg

    with dg.DagsterInstance.from_config(str(home)) as instance:
        records = instance.get_run_records(dg.RunsFilter(job_name="achievements_job"))
        walls, launch = [], []
        for r in records:
            if r.start_time and r.end_time:
                walls.append(r.end_time - r.start_time)
                launch.append(r.start_time - r.create_timestamp.timestamp())
        statuses: dict[str, int] = {}
        for r in records:
            statuses[r.dagster_run.status.value] = statuses.get(r.dagster_run.status.value, 0) + 1
    return {"runs": len(records), "statuses": statuses,
            "median_run_wall_s": round(statistics.median(walls), 2) if walls else None,
            "median_queue_to_start_s": round(statistics.median(launch), 2) if launch else None}


# --- entry point ----------------------------------------------------------------------------

def run(args: argparse.Namespace) -> int:

    from recs_pipeline.db import make_engine, parse_database_url

    server = parse_database_url(args.server_url)
    figures: dict[str, Any] = {}
    tmp = Path(tempfile.mkdtemp(prefix="recs_bench_ach_"))
    try:
        for backend in args.backends:
            if backend == "postgresql":
                db = f"{DB_PREFIX}_app"
                _admin(args.server_url, f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
                _admin(args.server_url, f'CREATE DATABASE "{db}"')
                url = server.set(database=db).render_as_string(hide_password=False)
            else:
                url = f"sqlite:///{tmp / 'app.db'}"
            engine = make_engine(url)
            print(f"[{backend}] world: {args.users} users", flush=True)
            _build_world(engine, args.users)
            figures[backend] = {"in_run": _in_run(url, engine, args.sizes, args.users)}
            figures[backend]["per_event_loop"] = _per_event_loop(
                engine, args.loop_sample, args.users)
            if backend == "postgresql" and not args.skip_daemon:
                print("[postgresql] end to end through dagster-daemon", flush=True)
                e2e = _e2e(args, server, url, engine)
                runs = e2e["runs"]
                if runs.get("median_run_wall_s") is not None:
                    # every run costs at least its own wall time; 4 run slots at best
                    per_run = runs["median_run_wall_s"]
                    e2e["one_run_per_event_estimate_s"] = round(args.drain_events * per_run / 4)
                    print(f"  one run per event: {args.drain_events} runs x {per_run} s/run / 4 "
                          f"slots = ~{e2e['one_run_per_event_estimate_s']} s", flush=True)
                figures[backend]["e2e"] = e2e
            engine.dispose()
            if backend == "postgresql" and not args.keep:
                _admin(args.server_url, f'DROP DATABASE IF EXISTS "{DB_PREFIX}_app" WITH (FORCE)')
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    import json

    print(json.dumps(figures, indent=2, default=str))
    return 0
