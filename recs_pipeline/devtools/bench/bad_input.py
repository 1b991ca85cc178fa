"""The nightly on bad input: one bad row of each kind costs no more than a clean run.

`recs-pipeline bench bad-input [--backends sqlite,postgresql] [--users N] [--runs R]
[--server-url URL]` seeds a scratch app database per backend (seed 42), runs the nightly job R
times as the daemon would (a fresh `dagster job execute` process per run), then breaks one row of
each kind the contract forbids (docs/data-contract.md, "Bad input") and runs it R times again.

The bad rows: a tournament status outside the contract (`OPEN`), a negative capacity, a skill
rating of -5, a profile completeness of 150, a game name with an `@` and markup; on SQLite also
text timestamps as a careless app writes them (`registration_closes_at = 'soon'`, an activity
`created_at = 'yesterday'`, a team's `created_at = 'soon'`, a current member's `left_at = ''`).

It prints each run's exit code, retries and seconds, the rows published, what the reading assets
quarantined (table, column, reason, rows, example id: read from the run's materializations) and
how many published reasons hold a character that means something to HTML or mail (`<>&"@`, must
be 0).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path
from typing import Any

DEFAULT_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"
HOSTILE_GAME_NAME = "R@cing League <b>"
READING_ASSETS = ("user_features", "tournament_candidates", "team_candidates")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--users", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=2, help="runs per condition")
    parser.add_argument("--server-url", default=DEFAULT_SERVER,
                        help="PostgreSQL server URL (a scratch database is created there)")
    parser.add_argument("--database", default="recs_bench_bad_input")


def _nth_id(conn: Any, table: str, where: str, n: int) -> int:
    """The n-th smallest id of `table` matching `where` (fixed SQL, no data in it)."""
    import sqlalchemy as sa

    return int(conn.execute(sa.text(
        f"SELECT id FROM {table} WHERE {where} ORDER BY id LIMIT 1 OFFSET :n"), {"n": n}
    ).scalar_one())


def break_rows(engine: Any) -> list[str]:
    """Break one row of each kind in a seeded database; returns what was broken."""
    import sqlalchemy as sa

    from recs_pipeline import schema

    open_cups = "status IN ('upcoming', 'registration_open')"
    broken = []
    with engine.begin() as conn:
        t_status = _nth_id(conn, "tournaments", open_cups, 0)
        t_capacity = _nth_id(conn, "tournaments", open_cups, 1)
        conn.execute(sa.update(schema.tournaments).where(schema.tournaments.c.id == t_status)
                     .values(status="OPEN"))
        conn.execute(sa.update(schema.tournaments).where(schema.tournaments.c.id == t_capacity)
                     .values(max_participants=-1))
        profile = _nth_id(conn, "game_profiles", "TRUE", 0)
        conn.execute(sa.update(schema.game_profiles).where(schema.game_profiles.c.id == profile)
                     .values(skill_rating=-5))
        user = int(conn.execute(sa.select(sa.func.min(schema.profile_completeness.c.user_id)))
                   .scalar_one())
        conn.execute(sa.update(schema.profile_completeness)
                     .where(schema.profile_completeness.c.user_id == user).values(percentage=150))
        game = _nth_id(conn, "games", "TRUE", 0)
        conn.execute(sa.update(schema.games).where(schema.games.c.id == game)
                     .values(name=HOSTILE_GAME_NAME))
        broken += [f"tournaments {t_status} status 'OPEN'",
                   f"tournaments {t_capacity} max_participants -1",
                   f"game_profiles {profile} skill_rating -5",
                   f"profile_completeness user {user} percentage 150",
                   f"games {game} name {HOSTILE_GAME_NAME!r}"]
        if engine.dialect.name == "sqlite":  # text timestamps, written raw as a careless app would
            t_soon = _nth_id(conn, "tournaments", open_cups, 2)
            activity = _nth_id(conn, "activities", "TRUE", 0)
            team = _nth_id(conn, "teams", "is_recruiting", 0)
            member = _nth_id(conn, "team_members", "left_at IS NULL", 0)
            for sql, row_id in (
                ("UPDATE tournaments SET registration_closes_at = 'soon' WHERE id = ?", t_soon),
                ("UPDATE activities SET created_at = 'yesterday' WHERE id = ?", activity),
                ("UPDATE teams SET created_at = 'soon' WHERE id = ?", team),
                ("UPDATE team_members SET left_at = '' WHERE id = ?", member),
            ):
                conn.exec_driver_sql(sql, (row_id,))
            broken += [f"tournaments {t_soon} registration_closes_at 'soon'",
                       f"activities {activity} created_at 'yesterday'",
                       f"teams {team} created_at 'soon'",
                       f"team_members {member} left_at ''"]
    return broken


def _report(instance: Any, engine: Any) -> tuple[str, list[str]]:
    """Published rows and unsafe reasons; what the latest reading materializations quarantined."""
    import dagster as dg
    import sqlalchemy as sa

    with engine.connect() as conn:
        parts = []
        for table in ("tournament_recommendations", "team_recommendations"):
            rows, unsafe = conn.execute(sa.text(
                f"SELECT count(*), coalesce(sum(CASE WHEN reason LIKE '%<%' OR reason LIKE '%>%' "
                f"OR reason LIKE '%&%' OR reason LIKE '%\"%' OR reason LIKE '%@%' THEN 1 ELSE 0 "
                f"END), 0) FROM {table}")).one()
            parts.append(f"{table.split('_')[0]} {rows:,} rows ({unsafe} unsafe reasons)")
    quarantined = []
    for asset in READING_ASSETS:
        event = instance.get_latest_materialization_event(dg.AssetKey(asset))
        if event is None or event.asset_materialization is None:
            quarantined.append(f"{asset}: no materialization")
            continue
        table = event.asset_materialization.metadata.get("quarantined")
        for record in (table.value.records if table is not None else []):
            d = record.data
            example = str(d["example_ids"]).split(", ")[0]
            quarantined.append(f"{asset}: {d['table']}.{d['column']} {d['reason']}: "
                               f"{d['rows']} row(s), e.g. id {example}")
    return ", ".join(parts), quarantined


def run(args: argparse.Namespace) -> int:
    import os
    from datetime import timedelta

    import dagster as dg

    from recs_pipeline.bootstrap import init_app_database
    from recs_pipeline.cli import CliError
    from recs_pipeline.compute.timestamps import utc_now
    from recs_pipeline.db import make_engine
    from recs_pipeline.devtools.bench.jobs import JobRun
    from recs_pipeline.devtools.bench.seed import _drop_postgres, _recreate_postgres
    from recs_pipeline.devtools.seed import SeedConfig, seed_database

    backends = [b for b in args.backends.split(",") if b]
    if set(backends) - {"sqlite", "postgresql"}:
        raise CliError(f"unknown backends in {args.backends!r}; choose sqlite, postgresql")
    seed_now = utc_now().replace(hour=0, minute=0, second=0, microsecond=0)
    as_of = (seed_now + timedelta(hours=12)).isoformat()
    for backend in backends:
        with tempfile.TemporaryDirectory(prefix="recs_bench_bad_input_") as home:
            if backend == "sqlite":
                url = f"sqlite:///{Path(home) / 'app.db'}"
            else:
                url = _recreate_postgres(args.server_url, args.database)
            engine = make_engine(url)
            try:
                init_app_database(engine)
                seed_database(engine, SeedConfig(users=args.users, seed=42, now=seed_now),
                              progress=False)
                (Path(home) / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
                config = Path(home) / "nightly.yaml"
                config.write_text(f"resources:\n  clock:\n    config:\n      as_of: '{as_of}'\n"
                                  "      backfill: true\n")
                env = {**os.environ, "DAGSTER_HOME": home, "RECS_DATABASE_URL": url}
                print(f"bench bad-input: {backend}, {args.users:,} users (seed 42)")
                seconds: dict[str, list[float]] = {}
                for condition in ("clean", "bad"):
                    if condition == "bad":
                        for line in break_rows(engine):
                            print(f"  broke {line}")
                    for i in range(args.runs):
                        rc, took, retries = JobRun("nightly_recommendations_job", env,
                                                   config).wait()
                        seconds.setdefault(condition, []).append(took)
                        with dg.DagsterInstance.from_config(home) as instance:
                            published, quarantined = _report(instance, engine)
                        print(f"  {condition} run {i + 1}: exit {rc}, {retries} step retries, "
                              f"{took:.1f} s; published {published}")
                        if i == 0:
                            for line in quarantined or ["nothing quarantined"]:
                                print(f"    {line}")
                clean, bad = (statistics.median(seconds[c]) for c in ("clean", "bad"))
                print(f"  median: clean {clean:.1f} s, one bad row of each kind {bad:.1f} s "
                      f"({bad / clean:.2f}x)")
            finally:
                engine.dispose()
                if backend == "postgresql":
                    _drop_postgres(args.server_url, args.database)
    return 0
