"""MovieLens-100k quality: the project's collaborative component vs reference recommenders.

(`--worlds` runs the world zoo instead, `world_quality.py`; `--in-domain` the nightly evaluation
on an app database.)

Data: MovieLens-100k as shipped in the PyPI wheel `recbole==1.2.1`
(`recbole/dataset_example/ml-100k/ml-100k.inter`). Its GroupLens licence allows use but not
redistribution, so it is never committed: this command fetches the wheel with
`python -m pip download --no-deps recbole==1.2.1` into `--cache-dir` (git-ignored `.local/` by
default) and reads the file straight from the zip.

Protocol (RecBole's default, `recs_pipeline.compute.movielens`): every rating is a positive; each
user's interactions are split at random 80/10/10, once per split seed (`--seeds`); on each split
every model is fitted on train, its hyper-parameters chosen by that split's validation NDCG@10
(train items masked), and reported on test ranking all items with train + valid items masked.
The figures are the mean, the standard deviation (ddof 1) and the range over the seeds.
Reference models (small, here): popularity, item-kNN (cosine, top-k neighbours), EASE
(Steck 2019). The project's model: `recs_pipeline.compute.collaborative`, items embedded from
their train raters (`embed_items(X_train.T)`, exactly how the recommender embeds tournaments from
their registrants), scored the two ways production uses it:

* cosine: unit-normalised user factors x unit-normalised item embeddings, clipped at 0 (the hand
  blend's collaborative term, `compute.scoring._score_kind`), with the nightly parameters;
* dot: raw user factors x raw item embeddings (the learned ranker's `collaborative_dot` feature,
  `compute.reranking.pair_features`), with the nightly parameters and tuned on validation over a
  grid around them.

"Fit s" is the fit of the chosen configuration (for the collaborative model: fit + item fold-in);
the machine is shared, so timings are noisy.

`--in-domain` instead evaluates the recommender on the app database (`--database-url`, e.g. the
seeded demo data) exactly as the nightly `recommendation_quality` asset does: recommendations
rebuilt as of `--holdout-days` before `--as-of`, scored against what users did since, next to
the popularity baseline.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp

if TYPE_CHECKING:
    from rich.console import Console

    from recs_pipeline.compute.collaborative import CollaborativeParams
    from recs_pipeline.compute.movielens import Interactions

RECBOLE_REQUIREMENT = "recbole==1.2.1"
INTER_PATH_IN_WHEEL = "recbole/dataset_example/ml-100k/ml-100k.inter"
DEFAULT_CACHE_DIR = Path(".local/cache/movielens")
DEFAULT_SEEDS = "2020,2021,2022"
COSINE = "collaborative cosine (blend: unit rows, clipped at 0)"
DOT = "collaborative dot (ranker feature)"

# A fitted model: user indices -> dense (len(users), n_items) scores.
Scorer = Callable[[np.ndarray], np.ndarray]


def seed_list(text: str) -> list[int]:
    """`--seeds`: comma-separated distinct integers."""
    try:
        seeds = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}") from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"expected distinct seeds, got {text!r}")
    return seeds


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from recs_pipeline.devtools.bench import world_quality

    world_quality.add_arguments(parser)
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE_DIR,
                        help="where the recbole wheel is downloaded (never committed)")
    split = parser.add_mutually_exclusive_group()
    split.add_argument("--seeds", type=seed_list, default=DEFAULT_SEEDS,
                       help="comma-separated seeds of the 80/10/10 splits (default: "
                            f"{DEFAULT_SEEDS}); hyper-parameters are chosen per split")
    split.add_argument("--seed", type=int, default=None,
                       help="a single split seed (shorthand for --seeds SEED)")
    parser.add_argument("--k", type=int, default=10, help="cut-off of the metrics")
    parser.add_argument("--no-tune", action="store_true",
                        help="skip the validation grids; use each model's first configuration")
    parser.add_argument("--verbose", action="store_true", help="print every grid point")
    parser.add_argument("--json", dest="json_path", default=None,
                        help="also write the figures as JSON to this file")
    parser.add_argument("--in-domain", action="store_true",
                        help="evaluate on the app database (temporal holdout) instead")
    parser.add_argument("--as-of", default=None,
                        help="--in-domain: 'now' (ISO, UTC; default: the current time)")
    parser.add_argument("--holdout-days", type=int, default=14,
                        help="--in-domain: cutoff = as-of minus this many days")


# --- data --------------------------------------------------------------------------------------


def fetch_inter_text(cache_dir: Path) -> str:
    """The ml-100k `.inter` text from the recbole wheel (downloaded once into `cache_dir`)."""
    from recs_pipeline.cli import CliError

    cache_dir.mkdir(parents=True, exist_ok=True)
    wheels = sorted(cache_dir.glob("recbole-1.2.1-*.whl"))
    if not wheels:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
               RECBOLE_REQUIREMENT, "-d", str(cache_dir)]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        wheels = sorted(cache_dir.glob("recbole-1.2.1-*.whl"))
        if done.returncode != 0 or not wheels:
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            raise CliError(f"could not download {RECBOLE_REQUIREMENT}: {last}")
    try:
        with zipfile.ZipFile(wheels[-1]) as wheel:
            return wheel.read(INTER_PATH_IN_WHEEL).decode("utf-8")
    except (zipfile.BadZipFile, KeyError) as exc:
        raise CliError(f"{wheels[-1]} has no readable {INTER_PATH_IN_WHEEL}: {exc}") from None


# --- reference models (small on purpose: they are yardsticks) ----------------------------------


def fit_popularity(train: sp.csr_matrix) -> Scorer:
    counts = np.asarray(train.sum(axis=0), dtype=np.float64).ravel()
    return lambda users: np.broadcast_to(counts, (users.size, counts.size))


def fit_item_knn(train: sp.csr_matrix, neighbours: int, shrink: float = 0.0) -> Scorer:
    """Cosine item-item similarity, keeping each item's `neighbours` most similar items."""
    x = sp.csr_matrix(train, dtype=np.float64)
    co = (x.T @ x).toarray()
    norms = np.sqrt(np.diag(co))
    sim = co / (np.outer(norms, norms) + shrink + 1e-12)
    np.fill_diagonal(sim, 0.0)
    if neighbours < sim.shape[0]:
        drop = np.argpartition(-sim, neighbours, axis=0)[neighbours:]  # per column (target item)
        np.put_along_axis(sim, drop, 0.0, axis=0)
    return lambda users: np.asarray(x[users] @ sim)


def fit_ease(train: sp.csr_matrix, l2: float) -> Scorer:
    """EASE: B = I - P diag(1/diag P), P = (XᵀX + λI)^-1, diagonal zeroed."""
    x = sp.csr_matrix(train, dtype=np.float64)
    gram = (x.T @ x).toarray()
    gram[np.diag_indices_from(gram)] += l2
    p = np.linalg.inv(gram)
    b = -p / np.diag(p)
    np.fill_diagonal(b, 0.0)
    return lambda users: np.asarray(x[users] @ b)


def production_collaborative_params() -> CollaborativeParams:
    """The collaborative parameters the nightly recommender uses (ScoringParams' defaults)."""
    from recs_pipeline.compute.scoring import ScoringParams

    return ScoringParams().collaborative


def _collaborative_embeddings(
    train: sp.csr_matrix, overrides: dict[str, Any]
) -> tuple[np.ndarray, np.ndarray]:
    """User factors and the items' fold-in embeddings from their train raters."""
    from recs_pipeline.compute.collaborative import fit_collaborative

    model = fit_collaborative(train, replace(production_collaborative_params(), **overrides))
    return model.user_factors, model.embed_items(sp.csr_matrix(train.T))


def fit_collaborative_cosine(train: sp.csr_matrix) -> Scorer:
    """The hand blend's collaborative term, production parameters (`scoring._score_kind`).

    The blend adds `clip(unit_user @ (unit_item * w), 0, w)` for the kind's weight w > 0, i.e.
    w times this score: the weight does not change the order.
    """
    from recs_pipeline.compute.scoring import _unit_rows

    factors, items = _collaborative_embeddings(train, {})
    unit_factors, unit_items = _unit_rows(factors), _unit_rows(items)
    return lambda users: np.clip(unit_factors[users] @ unit_items.T, 0.0, 1.0)


def fit_collaborative_dot(train: sp.csr_matrix, overrides: dict[str, Any]) -> Scorer:
    """The learned ranker's `collaborative_dot` feature (`reranking.pair_features`)."""
    factors, items = _collaborative_embeddings(train, overrides)
    return lambda users: factors[users] @ items.T


def collaborative_grid() -> list[dict[str, Any]]:
    """Validation grid for the project's model (overrides of the production parameters)."""
    grid: list[dict[str, Any]] = [{}]
    for factors in (32, 48, 64, 96):
        for regularization in (0.3, 1.0, 3.0):
            for singular_power in (0.5, 1.0, 1.5):
                for n_iter in (3, 7):
                    grid.append({"factors": factors, "regularization": regularization,
                                 "singular_power": singular_power, "n_iter": n_iter})
    return grid


@dataclass(frozen=True)
class Candidate:
    model: str
    params: dict[str, Any]
    fit: Callable[[sp.csr_matrix], Scorer]


def candidates(tune: bool) -> list[Candidate]:
    """Every model's configurations, its default first; without `tune` only the defaults."""
    out = [Candidate("popularity", {}, fit_popularity)]
    for n in (100, 50, 200, 400)[: None if tune else 1]:
        out.append(Candidate("item-kNN", {"neighbours": n},
                             lambda x, n=n: fit_item_knn(x, neighbours=n)))
    for l2 in (500.0, 100.0, 250.0, 1000.0)[: None if tune else 1]:
        out.append(Candidate("EASE", {"l2": l2}, lambda x, l2=l2: fit_ease(x, l2)))
    out.append(Candidate(COSINE, {}, fit_collaborative_cosine))
    out.append(Candidate(DOT, {}, lambda x: fit_collaborative_dot(x, {})))
    if tune:
        for overrides in collaborative_grid():
            out.append(Candidate("collaborative dot, tuned on valid", overrides,
                                 lambda x, o=overrides: fit_collaborative_dot(x, o)))
    return out


# --- the run -----------------------------------------------------------------------------------


def _grouped(items: Iterable[Candidate]) -> dict[str, list[Candidate]]:
    groups: dict[str, list[Candidate]] = {}
    for item in items:
        groups.setdefault(item.model, []).append(item)
    return groups


def run_in_domain(args: argparse.Namespace) -> int:
    """The nightly evaluation's figures on the configured app database, printed."""
    from datetime import timedelta

    from recs_pipeline.compute.quality import nightly_evaluation, report_table
    from recs_pipeline.compute.quality_gate import GateConfig
    from recs_pipeline.compute.scoring import ScoringParams
    from recs_pipeline.db import make_engine
    from recs_pipeline.defs.recommendations.quality_reading import read_snapshot
    from recs_pipeline.resources import AppDatabase, RunClock

    db = AppDatabase(url=args.database_url)
    now = RunClock(as_of=args.as_of, backfill=True).now()
    window = timedelta(days=args.holdout_days)
    engine = make_engine(db.resolved_url())
    try:
        started = time.perf_counter()
        with engine.connect() as conn:
            validation = read_snapshot(conn, now - window, now).holdout()
            training = read_snapshot(conn, now - 2 * window, now - window).holdout()
        read_s = time.perf_counter() - started
    finally:
        engine.dispose()
    report, _ = nightly_evaluation(training, validation, ScoringParams(top_k=args.k),
                                   GateConfig())
    print(f"{db.redacted_url}: training cutoff {report.training_cutoff}, validation cutoff "
          f"{report.cutoff}, now {report.now}; {report.users_at_cutoff} users at the cutoff, "
          f"{report.users_scored} evaluated; read {read_s:.1f}s, train + evaluate "
          f"{report.seconds:.1f}s")
    print(report_table(report))
    for kind, q in report.kinds.items():
        print(f"{kind}: publishing {q.champion}: {q.reason}; first-stage pool recall "
              f"{q.pool_recall:.3f}; {q.candidates} candidates at the cutoff; "
              f"{q.holdout_pairs} of {q.holdout_pairs_total} holdout pairs on them")
    return 0



@dataclass(frozen=True)
class SplitResult:
    """One model on one split: the configuration chosen on valid and its figures."""

    model: str
    seed: int
    params: dict[str, Any]
    grid_points: int
    valid_ndcg: float
    test_ndcg: float
    test_recall: float
    test_hit_rate: float
    test_coverage: float
    fit_seconds: float


@dataclass(frozen=True)
class Spread:
    """A figure over the splits: mean, standard deviation (ddof 1; None for one split), range."""

    mean: float
    std: float | None
    low: float
    high: float

    @classmethod
    def of(cls, values: Iterable[float]) -> Spread:
        a = np.fromiter(values, dtype=np.float64)
        return cls(float(a.mean()), float(a.std(ddof=1)) if a.size > 1 else None,
                   float(a.min()), float(a.max()))

    def mean_std(self, digits: int = 4) -> str:
        return f"{self.mean:.{digits}f}" + ("" if self.std is None else f" ± {self.std:.{digits}f}")

    def range(self, digits: int = 4) -> str:
        return f"{self.low:.{digits}f}..{self.high:.{digits}f}"


@dataclass(frozen=True)
class ModelSummary:
    model: str
    splits: int
    valid_ndcg: Spread
    test_ndcg: Spread
    test_recall: Spread
    test_coverage: Spread
    fit_seconds: Spread


def summarize(results: Iterable[SplitResult]) -> list[ModelSummary]:
    """Per model (in first-seen order), its figures over the splits."""
    by_model: dict[str, list[SplitResult]] = {}
    for result in results:
        by_model.setdefault(result.model, []).append(result)
    return [
        ModelSummary(
            model=model, splits=len(rs),
            valid_ndcg=Spread.of(r.valid_ndcg for r in rs),
            test_ndcg=Spread.of(r.test_ndcg for r in rs),
            test_recall=Spread.of(r.test_recall for r in rs),
            test_coverage=Spread.of(r.test_coverage for r in rs),
            fit_seconds=Spread.of(r.fit_seconds for r in rs),
        )
        for model, rs in by_model.items()
    ]


def evaluate_split(
    data: Interactions, seed: int, *, k: int, tune: bool, console: Console, verbose: bool
) -> list[SplitResult]:
    """Every model on the split of `seed`: chosen by valid NDCG@k, scored on test."""
    from recs_pipeline.compute.movielens import evaluate_scorer, split_per_user

    train, valid, test = split_per_user(data, seed=seed)
    seen_test = sp.csr_matrix(train + valid)
    console.print(f"split seed {seed}: train {train.nnz}, valid {valid.nnz}, test {test.nnz}")
    results: list[SplitResult] = []
    for model, grid in _grouped(candidates(tune)).items():
        best: tuple[float, Candidate, Scorer, float] | None = None
        for cand in grid:
            started = time.perf_counter()
            scorer = cand.fit(train)
            fit_seconds = time.perf_counter() - started
            val = evaluate_scorer(scorer, train, valid, k=k).ndcg
            if verbose:
                console.print(f"  seed {seed} {model} {cand.params}: valid NDCG@{k} {val:.4f}, "
                              f"fit {fit_seconds:.2f}s")
            if best is None or val > best[0]:
                best = (val, cand, scorer, fit_seconds)
        assert best is not None
        val, cand, scorer, fit_seconds = best
        test_metrics = evaluate_scorer(scorer, seen_test, test, k=k)
        results.append(SplitResult(
            model=model, seed=seed, params=cand.params, grid_points=len(grid), valid_ndcg=val,
            test_ndcg=test_metrics.ndcg, test_recall=test_metrics.recall,
            test_hit_rate=test_metrics.hit_rate, test_coverage=test_metrics.coverage,
            fit_seconds=fit_seconds,
        ))
    return results


def cosine_vs_dot_note(results: list[SplitResult], k: int) -> str:
    """One line: the blend's cosine next to the ranker's dot product, same fit, same splits."""
    by_key = {(r.model, r.seed): r for r in results}
    seeds = sorted({r.seed for r in results})
    cosine = [by_key[COSINE, s] for s in seeds]
    dot = [by_key[DOT, s] for s in seeds]
    c_ndcg = float(np.mean([r.test_ndcg for r in cosine]))
    d_ndcg = float(np.mean([r.test_ndcg for r in dot]))
    lower = sum(c.test_ndcg < d.test_ndcg for c, d in zip(cosine, dot, strict=True))
    c_cov = float(np.mean([r.test_coverage for r in cosine]))
    d_cov = float(np.mean([r.test_coverage for r in dot]))
    return (f"Cosine vs dot, same fit (production parameters): test NDCG@{k} {c_ndcg:.4f} vs "
            f"{d_ndcg:.4f} ({c_ndcg - d_ndcg:+.4f}; cosine lower on {lower} of {len(seeds)} "
            f"splits; coverage {c_cov:.3f} vs {d_cov:.3f}). Unit user rows keep each user's "
            "order; unit item rows divide out each item's embedding length (its fold-in sums "
            "over its raters), which the dot keeps. The hand blend ranks by the cosine alone; "
            "the learned ranker gets both.")


def run(args: argparse.Namespace) -> int:
    if args.in_domain:
        return run_in_domain(args)
    if args.worlds is not None or args.tune_ranker:
        from recs_pipeline.devtools.bench.world_quality import run_worlds

        return run_worlds(args)
    from rich.console import Console
    from rich.table import Table

    # Imported before any timing so that "fit s" is the fit, not sklearn's or pandas' import.
    import recs_pipeline.compute.scoring  # noqa: F401
    from recs_pipeline.compute.movielens import parse_inter

    started = time.perf_counter()
    seeds: list[int] = [args.seed] if args.seed is not None else args.seeds
    k, tune = args.k, not args.no_tune
    console = Console(width=max(Console().width, 170))  # the tables, unwrapped, in logs too
    data = parse_inter(fetch_inter_text(args.cache_dir))
    console.print(f"ml-100k: {data.n_users} users, {data.n_items} items, {len(data)} "
                  f"interactions; {'tuned on each split' if tune else 'no tuning'}")
    results = [result for seed in seeds
               for result in evaluate_split(data, seed, k=k, tune=tune, console=console,
                                            verbose=args.verbose)]
    summaries = summarize(results)

    title = f"MovieLens-100k, RecBole protocol (RS 80/10/10, full ranking), @{k}"
    per_split = Table(title=f"{title}: each split")
    for col in ("model", "seed", "chosen on valid", f"valid NDCG@{k}", f"test NDCG@{k}",
                f"test Recall@{k}", "coverage", "fit s"):
        per_split.add_column(col, justify="left" if col in ("model", "chosen on valid")
                             else "right", no_wrap=col == "model")
    for r in results:
        params = ", ".join(f"{key}={value}" for key, value in r.params.items()) or (
            "as in production" if r.model.startswith("collaborative") else "defaults")
        per_split.add_row(r.model, str(r.seed), params, f"{r.valid_ndcg:.4f}",
                          f"{r.test_ndcg:.4f}", f"{r.test_recall:.4f}",
                          f"{r.test_coverage:.3f}", f"{r.fit_seconds:.2f}")
    console.print(per_split)

    summary = Table(title=f"{title}: over split seeds {', '.join(map(str, seeds))} "
                          "(mean ± std, min..max)")
    for col in ("model", f"test NDCG@{k}", "min..max", f"test Recall@{k}", "min..max",
                "coverage", "fit s", "fit s max"):
        summary.add_column(col, justify="left" if col == "model" else "right",
                           no_wrap=col == "model")
    for s in summaries:
        summary.add_row(s.model, s.test_ndcg.mean_std(), s.test_ndcg.range(),
                        s.test_recall.mean_std(), s.test_recall.range(),
                        f"{s.test_coverage.mean:.3f}", f"{s.fit_seconds.mean:.2f}",
                        f"{s.fit_seconds.high:.2f}")
    console.print(summary)
    console.print(cosine_vs_dot_note(results, k))
    fits = sum(r.grid_points for r in results)
    console.print(f"{len(seeds)} splits, {fits} fits, wall {time.perf_counter() - started:.1f}s")
    if args.json_path:
        Path(args.json_path).write_text(json.dumps({
            "seeds": seeds, "k": k, "tuned": tune,
            "splits": [asdict(r) for r in results],
            "summary": [asdict(s) for s in summaries],
        }, indent=2))
    return 0
