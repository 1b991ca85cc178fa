"""The world zoo: the nightly champion/challenger on platforms the demo seed did not generate.

`recs-pipeline bench quality --worlds` builds every world of `recs_pipeline.devtools.worlds`
(each with one known driver of user choices) into a fresh SQLite app database per (world, seed)
and runs the nightly evaluation exactly as the `recommendation_quality` asset does, one window
earlier than "now", so that a third, later window is left for an honest test:

    train [now - 3d, now - 2d)  ->  validate [now - 2d, now - d)  ->  TEST [now - d, now)

The nightly code fits the ranker on the training window, picks the champion per kind on the
validation window and refits the ranker there (what it would publish); then everything is
scored on the test window, which nothing was chosen or fitted on: the published choice, every
contender (ranker, blend, popularity, random) and two simple baselines that are not contenders:

* `item-kNN`: sum over the user's past tournaments / teams of the cosine between their
  participants and the candidate's registrants / members at the cutoff;
* `names`: the user's share of past cups of the candidate's series, plus half their share of
  its organiser (`compute.names`), popularity breaking ties.

Both rank each user's first-stage pool, drawn wide (`BASELINE_POOL`) so that it holds every
eligible candidate on these platforms. Figures: NDCG@10 per contender with the paired standard
error of its difference to the published ranking. Seeds are split: `--tune-seeds` for choosing
the ranker's parameters, `--report-seeds` for the figures in docs/quality.md.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recs_pipeline.bootstrap import init_app_database
from recs_pipeline.compute.champion import (
    BLEND,
    ITEM_COLUMN,
    KINDS,
    POPULARITY,
    RANDOM,
    RANKER,
    evaluate_contenders,
    holdout_users,
    paired_stderr,
    pool_ranking,
    popularity_rate,
    ranked_matrix,
    recommend_with,
    relevance_matrix,
)
from recs_pipeline.compute.metrics import per_user_metrics
from recs_pipeline.compute.quality import Holdout, nightly_evaluation
from recs_pipeline.compute.quality_gate import GateConfig
from recs_pipeline.compute.ranker import CandidatePool, RankerParams
from recs_pipeline.compute.reranking import PAIR_FEATURES
from recs_pipeline.compute.scoring import ScoringParams, recommend
from recs_pipeline.db import make_engine
from recs_pipeline.defs.recommendations.quality_reading import read_snapshot
from recs_pipeline.devtools.seed import SeedSummary, write_tables
from recs_pipeline.devtools.worlds import WORLDS, generate_world

WINDOW = timedelta(days=14)
BASELINE_POOL = 400
NOW = datetime(2026, 6, 1)
ITEM_KNN, NAMES = "item-kNN", "names"
ROW_ORDER = (RANKER, BLEND, POPULARITY, ITEM_KNN, NAMES, RANDOM)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--worlds", nargs="*", default=None, metavar="WORLD",
                        help=f"the world zoo instead of MovieLens; no name = all of "
                        f"{', '.join(WORLDS)}")
    parser.add_argument("--world-users", type=int, default=4000, help="users per world")
    parser.add_argument("--report-seeds", default="11,12,13",
                        help="world seeds whose figures are reported")
    parser.add_argument("--tune-seeds", action="store_true",
                        help="use the tuning seeds (1,2) instead of --report-seeds")
    parser.add_argument("--tune-ranker", action="store_true",
                        help="on the tuning seeds: the ranker's test NDCG for each point of a "
                        "small parameter grid (what RankerParams' defaults were chosen by)")


def _knn_scores(test: Holdout, kind: str, pool: CandidatePool) -> np.ndarray:
    """item-kNN: sum over the user's history of cosine(history item, candidate) by people."""
    users = test.users
    history = users.tournament_history if kind == "tournaments" else users.team_history
    history_col = "tournament_id" if kind == "tournaments" else "team_id"
    attached = (test.tournaments if kind == "tournaments" else test.teams).members
    people = np.unique(np.concatenate([history["user_id"].to_numpy(np.int64),
                                       attached["user_id"].to_numpy(np.int64),
                                       pool.user_id]))
    past = np.unique(history[history_col].to_numpy(np.int64))
    cands = np.unique(pool.item_id)

    def matrix(frame: pd.DataFrame, user_col: str, item_col: str, items: np.ndarray
               ) -> sp.csr_matrix:
        u = np.searchsorted(people, frame[user_col].to_numpy(np.int64))
        i = np.searchsorted(items, frame[item_col].to_numpy(np.int64))
        ok = (i < len(items)) & (items[np.minimum(i, len(items) - 1)]
                                 == frame[item_col].to_numpy(np.int64))
        m = sp.csr_matrix((np.ones(int(ok.sum()), np.float32), (u[ok], i[ok])),
                          shape=(len(people), len(items)))
        m.data[:] = 1.0
        return m

    x = matrix(history, "user_id", history_col, past)  # people x past items
    r = matrix(attached, "user_id", "item_id", cands)  # people x candidates
    xn = x @ sp.diags(1.0 / np.sqrt(np.maximum(np.asarray(x.sum(axis=0)).ravel(), 1.0)))
    rn = r @ sp.diags(1.0 / np.sqrt(np.maximum(np.asarray(r.sum(axis=0)).ravel(), 1.0)))
    similarity = sp.csr_matrix(xn.T @ rn)  # past items x candidates
    per_user = sp.csr_matrix(x @ similarity)  # people x candidates
    rows = np.searchsorted(people, pool.user_id)
    cols = np.searchsorted(cands, pool.item_id)
    return np.asarray(per_user[rows, cols]).ravel()


def _names_scores(pool: CandidatePool) -> np.ndarray:
    col = {name: i for i, name in enumerate(PAIR_FEATURES)}
    series = np.nan_to_num(pool.features[:, col["series_share"]])
    organiser = np.nan_to_num(pool.features[:, col["organiser_share"]])
    tie = np.nan_to_num(pool.features[:, col["log_count"]]) * 1e-3
    return series + 0.5 * organiser + tie


@dataclass
class WorldResult:
    world: str
    seed: int
    kind: str
    published: str
    ndcg: dict[str, float]
    stderr: dict[str, float]  # paired SE of (contender - published)
    users: int
    seconds: float


def load_world(name: str, users: int, seed: int, workdir: Path
               ) -> tuple[Holdout, Holdout, Holdout]:
    """Build one world in a fresh SQLite app database; its train, validate and test windows."""
    path = workdir / f"{name}-{seed}.db"
    engine = make_engine(f"sqlite:///{path}")
    try:
        init_app_database(engine)
        write_tables(engine, generate_world(name, users, seed, NOW),
                     SeedSummary(users=users, seed=seed, now=NOW), progress=False)
        with engine.connect() as conn:
            train, validate, test = (
                read_snapshot(conn, NOW - (n + 1) * WINDOW, NOW - n * WINDOW).holdout()
                for n in (2, 1, 0))
    finally:
        engine.dispose()
        path.unlink(missing_ok=True)
    return train, validate, test


def evaluate_world(
    name: str,
    seed: int,
    windows: tuple[Holdout, Holdout, Holdout],
    params: ScoringParams | None = None,
    ranker_params: RankerParams | None = None,
) -> list[WorldResult]:
    """Run the nightly evaluation one window early, score everything on the last window."""
    started = time.perf_counter()
    train, validate, test = windows
    params = params or ScoringParams()
    report, ranker = nightly_evaluation(train, validate, params, GateConfig(),
                                        ranker_params=ranker_params)
    champions = {kind: q.champion for kind, q in report.kinds.items()}
    contenders = evaluate_contenders(test.users, test.tournaments, test.teams, test.relevant,
                                     params, test.cutoff, ranker)
    candidates = {"tournaments": test.tournaments, "teams": test.teams}
    user_ids = holdout_users(test.users, candidates, test.relevant, None)
    published = recommend_with(champions, test.users, test.tournaments, test.teams, params,
                               test.cutoff, ranker=ranker, user_ids=user_ids)
    wide = recommend(test.users, test.tournaments, test.teams,
                     replace(params, pool_size=BASELINE_POOL), test.cutoff, user_ids=user_ids,
                     collect_pools=True)
    results = []
    for kind in KINDS:
        column = ITEM_COLUMN[kind]
        item_ids = np.sort(candidates[kind].items[column].to_numpy(np.int64))
        relevant = relevance_matrix(test.relevant[kind], user_ids, item_ids)
        pool = wide.pools[kind]
        frames = {"published": getattr(published, kind)}
        if len(pool):
            frames[ITEM_KNN] = pool_ranking(pool, _knn_scores(test, kind, pool), column, 10)
            if kind == "tournaments":
                frames[NAMES] = pool_ranking(pool, _names_scores(pool), column, 10)
        per_user = {}
        for label, frame in frames.items():
            ranked = ranked_matrix(frame, column, user_ids, item_ids, 10)
            metrics = per_user_metrics(ranked, relevant, 10)
            per_user[label] = metrics["ndcg"][metrics["has_relevant"]]
        for label, result in contenders.kinds[kind].results.items():
            per_user[label] = result.ndcg_per_user
        results.append(WorldResult(
            world=name, seed=seed, kind=kind, published=champions[kind],
            ndcg={label: float(v.mean()) if v.size else 0.0 for label, v in per_user.items()},
            stderr={label: paired_stderr(v, per_user["published"]) for label, v in
                    per_user.items()},
            users=int(per_user["published"].size), seconds=time.perf_counter() - started,
        ))
    return results


def _cell(result: WorldResult, label: str) -> str:
    if label not in result.ndcg:
        return "-"
    diff = result.ndcg[label] - result.ndcg["published"]
    se = result.stderr[label]
    flag = " *" if diff < -1.96 * se else (" +" if diff > 1.96 * se else "")
    return f"{result.ndcg[label]:.3f} ({diff:+.3f}±{se:.3f}){flag}"


def run_worlds(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    names = args.worlds or list(WORLDS)
    unknown = sorted(set(names) - set(WORLDS))
    if unknown:
        from recs_pipeline.cli import CliError

        raise CliError(f"unknown world(s) {', '.join(unknown)}; known: {', '.join(WORLDS)}")
    seeds = [1, 2] if args.tune_seeds or args.tune_ranker else [
        int(s) for s in args.report_seeds.split(",") if s]
    console = Console(width=max(Console().width, 200))
    if args.tune_ranker:
        return tune_ranker(console, names, seeds, args.world_users)
    console.print(f"world zoo: {len(names)} worlds x seeds {seeds}, {args.world_users} users "
                  f"each; train/validate/test windows of {WINDOW.days} days ending {NOW:%Y-%m-%d}"
                  f"; popularity here = {popularity_rate.__doc__.splitlines()[0].lower()}")
    rows: list[WorldResult] = []
    with tempfile.TemporaryDirectory(prefix="recs_worlds_") as tmp:
        for name in names:
            for seed in seeds:
                windows = load_world(name, args.world_users, seed, Path(tmp))
                for result in evaluate_world(name, seed, windows):
                    rows.append(result)
                    console.print(f"  {name} seed {seed} {result.kind}: published "
                                  f"{result.published} NDCG@10 {result.ndcg['published']:.3f} "
                                  f"over {result.users} test users ({result.seconds:.1f}s)")
    table = Table(title="Test-window NDCG@10 (difference to the published ranking ± paired SE; "
                  "* = significantly below it, + = significantly above it, at 95 %)")
    for col in ("world", "seed", "kind", "published", "NDCG", *ROW_ORDER, "users"):
        table.add_column(col, justify="left" if col in ("world", "kind", "published")
                         else "right")
    for r in rows:
        table.add_row(r.world, str(r.seed), r.kind, r.published, f"{r.ndcg['published']:.3f}",
                      *(_cell(r, label) for label in ROW_ORDER), str(r.users))
    console.print(table)
    summary = Table(title="Mean over seeds: published NDCG@10 and its ratio to popularity and "
                    "to the best simple baseline (popularity, item-kNN, names)")
    for col in ("world", "kind", "published", "x popularity", "x best simple", "below best "
                "contender (95 %)"):
        summary.add_column(col)
    frame = pd.DataFrame([{"world": r.world, "kind": r.kind, "seed": r.seed,
                           # the published ranking significantly below a contender
                           "below": any(r.ndcg[c] - r.ndcg["published"] > 1.96 * r.stderr[c]
                                        for c in (RANKER, BLEND, POPULARITY) if c in r.ndcg),
                           **{f"n:{k}": v for k, v in r.ndcg.items()}} for r in rows])
    for (world, kind), g in frame.groupby(["world", "kind"], sort=False):
        published = g["n:published"].mean()
        pop = g[f"n:{POPULARITY}"].mean()
        simple = max(g[c].mean() for c in (f"n:{POPULARITY}", f"n:{ITEM_KNN}", f"n:{NAMES}")
                     if c in g and g[c].notna().all())
        summary.add_row(world, kind, f"{published:.3f}",
                        f"{published / pop:.2f}" if pop > 0 else "-",
                        f"{published / simple:.2f}" if simple > 0 else "-",
                        f"{int(g['below'].sum())} of {len(g)} seeds")
    console.print(summary)
    return 0


# Round 1 (from 15 leaves) chose 7, round 2 chose 4 (docs/quality.md); the grid of round 2.
RANKER_GRID: tuple[tuple[str, RankerParams, int], ...] = (
    ("defaults", RankerParams(), ScoringParams().pool_size),
    ("7 leaves", RankerParams(max_leaf_nodes=7), 40),
    ("15 leaves", RankerParams(max_leaf_nodes=15), 40),
    ("min leaf 100", RankerParams(min_samples_leaf=100), 40),
    ("300 trees, lr 0.05", RankerParams(max_iter=300, learning_rate=0.05), 40),
    ("pool 80", RankerParams(), 80),
)


def tune_ranker(console: Any, names: list[str], seeds: list[int], users: int) -> int:
    """Mean test NDCG@10 of the learned ranker (where it has a model) per grid point."""
    from rich.table import Table

    with tempfile.TemporaryDirectory(prefix="recs_worlds_") as tmp:
        worlds = {(name, seed): load_world(name, users, seed, Path(tmp))
                  for name in names for seed in seeds}
    table = Table(title=f"Ranker tuning on seeds {seeds}: mean test NDCG@10 over worlds")
    for col in ("configuration", "tournaments ranker", "teams ranker", "tournaments published",
                "teams published", "seconds"):
        table.add_column(col)
    for label, ranker_params, pool_size in RANKER_GRID:
        started = time.perf_counter()
        results = [r for (name, seed), windows in worlds.items()
                   for r in evaluate_world(name, seed, windows,
                                           replace(ScoringParams(), pool_size=pool_size),
                                           ranker_params)]
        frame = pd.DataFrame([{"kind": r.kind, "ranker": r.ndcg.get(RANKER, np.nan),
                               "published": r.ndcg["published"]} for r in results])
        means = frame.groupby("kind").mean()
        table.add_row(label, *(f"{means.loc[k, c]:.4f}" for c in ("ranker", "published")
                               for k in KINDS), f"{time.perf_counter() - started:.0f}")
        console.print(f"  {label}: done")
    console.print(table)
    return 0
