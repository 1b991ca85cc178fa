"""Recommendations: seed S/M/L user populations, refresh, per-stage seconds, peak RSS, baseline.

For each size and backend: a fresh database is seeded (`recs_pipeline.devtools.seed`), then the
nightly refresh runs in a child process (so its peak RSS is its own, not the seed's) with the same
functions the assets call: the evaluation (`recommendation_quality`: both holdout windows read,
the ranker trained, every contender validated), read (SQL), features, score (collaborative +
co-play + first stage, and the learned second stage where it is the champion), write (staging,
COPY on PostgreSQL), checks (on the staged rows), swap. A second child runs the blend alone
without the evaluation (the refresh before the learned ranker), so the difference is the
evaluation's and the ranker's cost. Then a seed-style baseline
(what the Celery task did per user: ORM-style queries, Python scoring, delete + insert) runs on a
sample of users and is reported as seconds per user.

    recs-pipeline bench recommendations                      # S and M on both, L on PostgreSQL
    recs-pipeline bench recommendations --sizes S --backends sqlite
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import resource
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

SIZES = {"S": 10_000, "M": 100_000, "L": 1_000_000}
BACKENDS = ("sqlite", "postgresql")
DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432"
DJANGO_FK_INDEXES = (
    ("game_profiles", "user_id"), ("game_profiles", "game_id"),
    ("tournament_participants", "user_id"), ("tournament_participants", "team_id"),
    ("tournaments", "game_id"), ("teams", "game_id"), ("teams", "captain_id"),
    ("team_members", "team_id"), ("team_members", "user_id"), ("activities", "user_id"),
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sizes", default="S,M,L",
                        help="comma list of S (10k), M (100k), L (1M users); L runs on PostgreSQL "
                        "only (default S,M,L)")
    parser.add_argument("--backends", default="sqlite,postgresql", help="comma list")
    parser.add_argument("--postgres", default=DEFAULT_PG,
                        help="PostgreSQL server URL without database (a scratch database "
                        "recs_bench_recommendations_<size> is created and dropped)")
    parser.add_argument("--baseline-users", type=int, default=200,
                        help="users sampled for the per-user baseline (default 200)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--keep", action="store_true", help="keep the scratch databases")


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _refresh_child(url: str, top_k: int, evaluate: bool, queue: Any) -> None:
    """The nightly refresh, stage by stage, in a fresh process."""
    try:
        queue.put(refresh_once(url, top_k, evaluate))
    except Exception as exc:  # reported by the parent
        queue.put({"error": f"{type(exc).__name__}: {exc}"})


def refresh_once(url: str, top_k: int = 10, evaluate: bool = True) -> dict[str, Any]:
    from datetime import timedelta

    from recs_pipeline.compute.candidates import build_team_candidates, build_tournament_candidates
    from recs_pipeline.compute.champion import BLEND, KINDS, recommend_with
    from recs_pipeline.compute.quality import nightly_evaluation
    from recs_pipeline.compute.quality_gate import GateConfig
    from recs_pipeline.compute.scoring import ScoringParams
    from recs_pipeline.compute.timestamps import utc_now
    from recs_pipeline.db import make_engine
    from recs_pipeline.defs.recommendations.quality_reading import read_snapshot
    from recs_pipeline.defs.recommendations.reading import (
        build_user_feature_set,
        read_team_candidates,
        read_tournament_candidates,
        read_user_inputs,
    )
    from recs_pipeline.defs.recommendations.run import stage_check_publish

    engine = make_engine(url)
    now = utc_now().replace(microsecond=0)
    stages: dict[str, float] = {}
    t_all = time.perf_counter()
    params = ScoringParams(top_k=top_k)
    champions, ranker = {kind: BLEND for kind in KINDS}, None
    if evaluate:
        t0 = time.perf_counter()
        window = timedelta(days=14)
        with engine.connect() as conn:
            validation = read_snapshot(conn, now - window, now).holdout()
            training = read_snapshot(conn, now - 2 * window, now - window).holdout()
        stages["evaluation_read"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        report, ranker = nightly_evaluation(training, validation, params, GateConfig(),
                                            max_users=50_000)
        champions = {kind: q.champion for kind, q in report.kinds.items()}
        stages["evaluation"] = time.perf_counter() - t0
        del training, validation
    t0 = time.perf_counter()
    with engine.connect() as conn:
        inputs = read_user_inputs(conn, now)
        t_frame, t_regs, t_quarantine = read_tournament_candidates(conn)
        m_frame, m_members, m_quarantine = read_team_candidates(conn)
    stages["read"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    users = build_user_feature_set(inputs, now)
    tournament_candidates = build_tournament_candidates(t_frame, t_regs, now, t_quarantine)
    team_candidates = build_team_candidates(m_frame, m_members, now, m_quarantine)
    stages["features"] = time.perf_counter() - t0
    recs = recommend_with(champions, users, tournament_candidates, team_candidates, params, now,
                          ranker=ranker)
    stages["features"] += recs.timings["features"]
    stages["score"] = (recs.timings["collaborative"] + recs.timings["coplay"]
                       + recs.timings.get("pair_signals", 0.0) + recs.timings["score"])
    outcome = stage_check_publish(engine, recs, users, tournament_candidates, team_candidates,
                                  top_k=top_k, now=now)
    stages.update(outcome.timings)
    total = time.perf_counter() - t_all
    engine.dispose()
    rows = len(recs.tournaments) + len(recs.teams)
    return {
        "stages": stages,
        "score_detail": recs.timings,
        "total": total,
        "rows": rows,
        "users_scored": recs.stats["users_scored"],
        "champions": champions,
        "published": outcome.published,
        "failures": outcome.failure_message(),
        "peak_rss_mb": _rss_mb(),
        "publish_rows_per_s": rows / max(stages["write"] + stages.get("swap", 0.0), 1e-9),
    }


# --- the seed-style baseline -------------------------------------------------------------------


def baseline_refresh_user(conn: Any, user_id: int, now: datetime, k: int = 10) -> int:
    """What the Celery task `refresh_user_recommendations(user_id)` did, faithfully ORM-shaped:
    a query for the user, one for the profiles, one per candidate for counts/membership, Python
    scoring, then delete + insert of that user's rows. Returns rows written."""
    import sqlalchemy as sa

    from recs_pipeline import schema
    from recs_pipeline.db import timestamp_bind

    u, gp, t, tp = schema.users, schema.game_profiles, schema.tournaments, \
        schema.tournament_participants
    m, tm = schema.teams, schema.team_members
    user = conn.execute(sa.select(u.c.id, u.c.region, u.c.is_active).where(u.c.id == user_id)
                        ).first()
    if user is None or not user.is_active:
        return 0
    profiles = {r.game_id: r.skill_rating for r in conn.execute(
        sa.select(gp.c.game_id, gp.c.skill_rating).where(gp.c.user_id == user_id))}
    if not profiles:
        return 0
    history = conn.execute(sa.select(t.c.game_id, t.c.region).select_from(
        tp.join(t, t.c.id == tp.c.tournament_id)).where(tp.c.user_id == user_id)).all()
    game_share = {g: sum(1 for h in history if h.game_id == g) / max(len(history), 1)
                  for g in profiles}
    friends = {r[0] for r in conn.execute(
        sa.select(tp.c.user_id).where(tp.c.tournament_id.in_(
            sa.select(tp.c.tournament_id).where(tp.c.user_id == user_id))))} - {user_id}
    scored_t: list[tuple[float, int, str]] = []
    for row in conn.execute(sa.select(t).where(
        t.c.status.in_(schema.OPEN_TOURNAMENT_STATUSES),
        t.c.registration_closes_at > timestamp_bind(conn, now),
        t.c.game_id.in_(list(profiles)),
        sa.or_(t.c.region == user.region, t.c.region == schema.GLOBAL_REGION),
    )).all():
        registered = conn.execute(sa.select(sa.func.count()).where(
            tp.c.tournament_id == row.id)).scalar_one()
        if registered >= row.max_participants:
            continue
        if conn.execute(sa.select(tp.c.id).where(tp.c.tournament_id == row.id,
                                                 tp.c.user_id == user_id)).first():
            continue
        skill = profiles[row.game_id]
        if (row.skill_min is not None and skill < row.skill_min) or (
                row.skill_max is not None and skill > row.skill_max):
            continue
        regs = {r[0] for r in conn.execute(sa.select(tp.c.user_id).where(
            tp.c.tournament_id == row.id))}
        n_friends = len(regs & friends)
        score = 0.4 * game_share.get(row.game_id, 0) + 0.3 * min(n_friends / 3, 1) + 0.3 * (
            registered / row.max_participants)
        scored_t.append((score, row.id, f"{n_friends} players you've played with are registered"))
    scored_m: list[tuple[float, int, str]] = []
    for row in conn.execute(sa.select(m).where(
        m.c.is_recruiting == sa.true(), m.c.game_id.in_(list(profiles)),
        m.c.region == user.region,
    )).all():
        members = [r[0] for r in conn.execute(sa.select(tm.c.user_id).where(
            tm.c.team_id == row.id, tm.c.left_at.is_(None)))]
        if len(members) >= row.max_members or user_id in members:
            continue
        skills = [conn.execute(sa.select(gp.c.skill_rating).where(
            gp.c.user_id == mu, gp.c.game_id == row.game_id)).scalar() or 0 for mu in members]
        avg = sum(skills) / len(skills) if skills else profiles[row.game_id]
        score = 1.0 / (1.0 + abs(avg - profiles[row.game_id]) / 500) + 0.1 * len(
            set(members) & friends)
        scored_m.append((score, row.id, "Team near your rating"))
    written = 0
    for table, item_col, scored in (
        (schema.tournament_recommendations, "tournament_id", scored_t),
        (schema.team_recommendations, "team_id", scored_m),
    ):
        top = sorted(scored, reverse=True)[:k]
        best = top[0][0] if top else 1.0
        conn.execute(table.delete().where(table.c.user_id == user_id))
        if top:
            conn.execute(table.insert(), [{
                "user_id": user_id, item_col: item, "rank": i + 1,
                "score": max(min(s / best if best > 0 else 1.0, 1.0), 0.01),
                "reason": reason, "model_version": "celery-baseline",
                "generated_at": now} for i, (s, item, reason) in enumerate(top)])
            written += len(top)
    return written


def run_baseline(url: str, sample: int, seed: int) -> dict[str, Any]:
    import numpy as np
    import sqlalchemy as sa

    from recs_pipeline import schema
    from recs_pipeline.compute.timestamps import utc_now
    from recs_pipeline.db import make_engine

    engine = make_engine(url)
    now = utc_now().replace(microsecond=0)
    with engine.connect() as conn:
        ids = np.array(conn.execute(sa.select(schema.users.c.id)).scalars().all())
    rng = np.random.default_rng(seed)
    chosen = rng.choice(ids, size=min(sample, len(ids)), replace=False)
    t0 = time.perf_counter()
    rows = 0
    for uid in chosen.tolist():
        with engine.begin() as conn:  # one Celery task = one transaction per user
            rows += baseline_refresh_user(conn, int(uid), now)
    seconds = time.perf_counter() - t0
    engine.dispose()
    return {"users": len(chosen), "seconds": seconds, "per_user": seconds / max(len(chosen), 1),
            "rows": rows}


# --- driver ------------------------------------------------------------------------------------


def _prepare(backend: str, size: str, users: int, args: argparse.Namespace, tmp: Path
             ) -> tuple[str, Any]:
    from recs_pipeline.bootstrap import init_app_database
    from recs_pipeline.db import make_engine
    from recs_pipeline.devtools.seed import SeedConfig, seed_database

    if backend == "sqlite":
        url = f"sqlite:///{tmp / f'recs_{size}.db'}"
        cleanup = None
    else:
        import psycopg2

        name = f"recs_bench_recommendations_{size.lower()}"
        admin = psycopg2.connect(args.postgres.replace("postgresql://", "postgresql://", 1)
                                 + "/postgres")
        admin.autocommit = True
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            cur.execute(f'CREATE DATABASE "{name}"')
        url = f"{args.postgres}/{name}"

        def cleanup() -> None:
            with admin.cursor() as cur:
                cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            admin.close()
    engine = make_engine(url)
    init_app_database(engine)
    t0 = time.perf_counter()
    seed_database(engine, SeedConfig(users=users, seed=args.seed), progress=False)
    print(f"  seeded {users:,} users in {time.perf_counter() - t0:.1f} s", flush=True)
    # The indexes a Django app has on its foreign keys (ForeignKey -> db_index=True): without
    # them the per-user baseline would scan whole tables and look unfairly slow.
    with engine.begin() as conn:
        for table, column in DJANGO_FK_INDEXES:
            conn.exec_driver_sql(
                f"CREATE INDEX IF NOT EXISTS ix_bench_{table}_{column} ON {table} ({column})")
        if backend == "postgresql":
            conn.exec_driver_sql("ANALYZE")
    engine.dispose()
    return url, cleanup


def run(args: argparse.Namespace) -> int:
    sizes = [s.strip().upper() for s in args.sizes.split(",") if s.strip()]
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    for s in sizes:
        if s not in SIZES:
            from recs_pipeline.cli import CliError

            raise CliError(f"unknown size {s!r}; use S, M, L")
    print(f"bench recommendations: sizes {sizes}, backends {backends}, cpus {os.cpu_count()}")
    ctx = mp.get_context("spawn")
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="recs_bench_") as tmpdir:
        for size in sizes:
            for backend in backends:
                if size == "L" and backend == "sqlite":
                    continue
                users = SIZES[size]
                print(f"[{size} {users:,} users, {backend}]", flush=True)
                url, cleanup = _prepare(backend, size, users, args, Path(tmpdir))
                try:
                    blend_only: dict[str, Any] = {}
                    for evaluate in (False, True):
                        queue = ctx.Queue()
                        proc = ctx.Process(target=_refresh_child,
                                           args=(url, 10, evaluate, queue))
                        proc.start()
                        res = queue.get()
                        proc.join()
                        if "error" in res:
                            print(f"  refresh failed: {res['error']}")
                            break
                        st = res["stages"]
                        label = "nightly (evaluation + champion)" if evaluate else "blend only"
                        print(f"  {label}: " + ", ".join(f"{k} {v:.2f}s" for k, v in st.items())
                              + f"; total {res['total']:.1f}s; peak RSS "
                              f"{res['peak_rss_mb']:.0f} MB; {res['rows']:,} rows "
                              f"({res['publish_rows_per_s']:,.0f} rows/s write+swap); "
                              f"published={res['published']} {res['failures']}; "
                              f"champions {res['champions']}", flush=True)
                        blend_only = blend_only or res
                    if "error" in res:
                        continue
                    print(f"  evaluation + learned ranker add "
                          f"{res['total'] - blend_only['total']:.1f}s to the refresh", flush=True)
                    base = run_baseline(url, args.baseline_users, args.seed)
                    ours = res["total"] / max(res["users_scored"], 1)
                    print(f"  baseline: {base['users']} users in {base['seconds']:.1f}s = "
                          f"{base['per_user'] * 1000:.1f} ms/user; ours "
                          f"{ours * 1000:.3f} ms/user -> {base['per_user'] / ours:,.0f}x",
                          flush=True)
                    results.append({"size": size, "backend": backend, **res,
                                    "baseline_per_user": base["per_user"], "ours_per_user": ours})
                finally:
                    if cleanup is not None and not args.keep:
                        cleanup()
    print("\n| size | backend | users | read | features | score | write | checks | swap | total "
          "| peak RSS | rows/s publish | baseline s/user | ours s/user | speed-up |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        st = r["stages"]
        print(f"| {r['size']} | {r['backend']} | {r['users_scored']:,} | {st['read']:.1f} | "
              f"{st['features']:.1f} | {st['score']:.1f} | {st['write']:.1f} | "
              f"{st['checks']:.1f} | {st.get('swap', 0):.2f} | {r['total']:.1f} | "
              f"{r['peak_rss_mb'] / 1024:.2f} GB | {r['publish_rows_per_s']:,.0f} | "
              f"{r['baseline_per_user']:.4f} | {r['ours_per_user']:.6f} | "
              f"{r['baseline_per_user'] / r['ours_per_user']:,.0f}x |")
    return 0
