"""Champion/challenger: every contender ranks the same users on the same temporal holdout, and
the best one that beats random significantly is what the app gets.

Contenders, per kind (tournaments, teams):

* `ranker`: the learned second stage (`compute.ranker`) re-ordering the blend's pool;
* `blend`: the hand-weighted blend of `compute.scoring` (the first stage alone);
* `popularity`: each user's eligible candidates (their games, their region) by registrations /
  members per day listed: a count alone mostly measures how long a listing has been open;
* `random`: eligible candidates in a fixed random order (the bar every other contender must
  clear: a ranker no better than random is no ranker).

All of them go through `compute.scoring.recommend`, so they see the same users, candidates and
eligibility masks and differ only in the order. The per-user NDCG@K of each contender is
compared with random's (paired: same users): a contender qualifies when its mean is above
random's by at least `z` standard errors of the paired difference. The champion is the
qualifying contender with the best mean NDCG@K (ties: ranker, blend, popularity), unless
popularity qualifies too and the best is within `SIMPLER_Z` paired standard errors of it: then
the simpler popularity is published (a fitted model must earn its place). When none
qualifies (no signal in the data), popularity is published and the reason says so: it is never
worse than random in expectation and needs no fitted state. With too few holdout users to judge
anything (a new platform), the default hand blend is published.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recs_pipeline.compute.candidates import CandidateSet
from recs_pipeline.compute.features import UserFeatureSet
from recs_pipeline.compute.metrics import RankingMetrics, evaluate_rankings, per_user_metrics
from recs_pipeline.compute.ranker import CandidatePool, LearnedRanker
from recs_pipeline.compute.scoring import (
    BlendWeights,
    PairScorer,
    Recommendations,
    ScoringParams,
    recommend,
    top_k_per_user,
)

KINDS: tuple[str, ...] = ("tournaments", "teams")
RANKER, BLEND, POPULARITY, RANDOM = "ranker", "blend", "popularity", "random"
CONTENDERS: tuple[str, ...] = (RANKER, BLEND, POPULARITY, RANDOM)
PREFERENCE = {RANKER: 0, BLEND: 1, POPULARITY: 2, RANDOM: 3}  # order on exact ties
ITEM_COLUMN = {"tournaments": "tournament_id", "teams": "team_id"}
_COUNT_COLUMN = {"tournaments": "registered", "teams": "members"}
_ONLY_POPULARITY = BlendWeights(affinity=0.0, collaborative=0.0, coplay=0.0, skill=0.0,
                                popularity=1.0)
RANDOM_SEED = 20_250_601
# A fitted contender must beat popularity by this many paired standard errors to be preferred
# over it (chosen on the world zoo's tuning seeds, docs/quality.md).
SIMPLER_Z = 1.0


def with_popularity_signal(candidates: CandidateSet, kind: str, values: np.ndarray
                           ) -> CandidateSet:
    """A copy whose popularity signal (`fill_rate`, what the blend's popularity term reads) is
    `values` scaled to [0, 1]."""
    items = candidates.items.copy()
    top = float(values.max()) if len(values) else 0.0
    items["fill_rate"] = values / top if top > 0 else 0.0
    return replace(candidates, items=items)


def popularity_rate(candidates: CandidateSet, kind: str) -> np.ndarray:
    """Registrations (members) per day listed; a listing of unknown age counts as one day."""
    items = candidates.items
    counts = items[_COUNT_COLUMN[kind]].to_numpy(dtype=np.float64)
    days = np.nan_to_num(items["listed_days"].to_numpy(dtype=np.float64), nan=0.0)
    return counts / (days + 1.0)


def random_order(candidates: CandidateSet, kind: str, seed: int = RANDOM_SEED) -> np.ndarray:
    """A fixed random value per candidate (by id, so the order does not depend on the batch)."""
    ids = candidates.items[ITEM_COLUMN[kind]].to_numpy(dtype=np.uint64)
    mixed = (ids * np.uint64(0x9E3779B97F4A7C15) + np.uint64(seed)) >> np.uint64(11)
    return mixed.astype(np.float64) / float(1 << 53)


@dataclass(frozen=True)
class RankingSetup:
    """What `recommend` needs to rank each kind by its chosen contender."""

    tournaments: CandidateSet
    teams: CandidateSet
    params: ScoringParams
    rerankers: dict[str, PairScorer]
    model_names: dict[str, str]


def ranking_setup(
    choice: dict[str, str],
    tournaments: CandidateSet,
    teams: CandidateSet,
    params: ScoringParams,
    ranker: LearnedRanker | None,
) -> RankingSetup:
    """Candidates, parameters and rerankers that make `recommend` rank kind k by `choice[k]`."""
    candidates = {"tournaments": tournaments, "teams": teams}
    weights = {"tournaments": params.tournament_weights, "teams": params.team_weights}
    rerankers: dict[str, PairScorer] = {}
    for kind, name in choice.items():
        if name == RANKER:
            if ranker is None or kind not in ranker.kinds:
                raise ValueError(f"no learned ranker for {kind}")
            rerankers[kind] = ranker
        elif name in (POPULARITY, RANDOM):
            signal = (popularity_rate if name == POPULARITY else random_order)(
                candidates[kind], kind)
            candidates[kind] = with_popularity_signal(candidates[kind], kind, signal)
            weights[kind] = _ONLY_POPULARITY
        elif name != BLEND:
            raise ValueError(f"unknown contender {name!r}")
    return RankingSetup(
        tournaments=candidates["tournaments"],
        teams=candidates["teams"],
        params=replace(params, tournament_weights=weights["tournaments"],
                       team_weights=weights["teams"]),
        rerankers=rerankers,
        model_names=dict(choice),
    )


def recommend_with(
    choice: dict[str, str],
    users: UserFeatureSet,
    tournaments: CandidateSet,
    teams: CandidateSet,
    params: ScoringParams,
    now: datetime,
    ranker: LearnedRanker | None = None,
    user_ids: np.ndarray | None = None,
    collect_pools: bool = False,
    reserve: int = 0,
) -> Recommendations:
    """`recommend`, each kind ranked by its contender in `choice`."""
    setup = ranking_setup(choice, tournaments, teams, params, ranker)
    return recommend(users, setup.tournaments, setup.teams, setup.params, now, user_ids,
                     rerankers=setup.rerankers, model_names=setup.model_names,
                     collect_pools=collect_pools, reserve=reserve)


# --- evaluation ---------------------------------------------------------------------------------


def ranked_matrix(
    recs: pd.DataFrame, item_column: str, user_ids: np.ndarray, item_ids: np.ndarray, k: int
) -> np.ndarray:
    """(len(user_ids), k) item positions in `item_ids` by rank, -1 where there is no rec.

    `user_ids` and `item_ids` are sorted id vocabularies; rows of other users or items are
    ignored.
    """
    out = np.full((len(user_ids), k), -1, dtype=np.int64)
    if recs.empty or len(user_ids) == 0 or len(item_ids) == 0:
        return out
    users = recs["user_id"].to_numpy(dtype=np.int64)
    items = recs[item_column].to_numpy(dtype=np.int64)
    u = np.minimum(np.searchsorted(user_ids, users), len(user_ids) - 1)
    i = np.minimum(np.searchsorted(item_ids, items), len(item_ids) - 1)
    r = recs["rank"].to_numpy(dtype=np.int64) - 1
    ok = (user_ids[u] == users) & (item_ids[i] == items) & (r >= 0) & (r < k)
    out[u[ok], r[ok]] = i[ok]
    return out


def pool_ranking(pool: CandidatePool, scores: np.ndarray, item_column: str, k: int
                 ) -> pd.DataFrame:
    """Each user's top K pool rows by `scores`, as a recommendations-like frame."""
    order_idx, ranks = top_k_per_user(pool.user_id, scores, k)
    return pd.DataFrame({"user_id": pool.user_id[order_idx],
                         item_column: pool.item_id[order_idx], "rank": ranks})


def relevance_matrix(holdout: pd.DataFrame, user_ids: np.ndarray, item_ids: np.ndarray
                     ) -> sp.csr_array:
    """Binary (users x items) of holdout (user_id, item_id) pairs inside both vocabularies."""
    shape = (len(user_ids), len(item_ids))
    if holdout.empty or 0 in shape:
        return sp.csr_array(shape, dtype=np.float64)
    users = holdout["user_id"].to_numpy(dtype=np.int64)
    items = holdout["item_id"].to_numpy(dtype=np.int64)
    u = np.minimum(np.searchsorted(user_ids, users), len(user_ids) - 1)
    i = np.minimum(np.searchsorted(item_ids, items), len(item_ids) - 1)
    ok = (user_ids[u] == users) & (item_ids[i] == items)
    matrix = sp.csr_array((np.ones(int(ok.sum())), (u[ok], i[ok])), shape=shape)
    matrix.sum_duplicates()
    matrix.data[:] = 1.0
    return matrix


def holdout_users(
    users: UserFeatureSet,
    candidates: dict[str, CandidateSet],
    holdout: dict[str, pd.DataFrame],
    max_users: int | None,
    seed: int = 0,
) -> np.ndarray:
    """Sorted ids of scored users with >= 1 holdout pair on a candidate (sampled to max_users)."""
    scored = users.features["user_id"].to_numpy(dtype=np.int64)
    found: list[np.ndarray] = []
    for kind, frame in holdout.items():
        items = candidates[kind].items[ITEM_COLUMN[kind]].to_numpy(dtype=np.int64)
        on_candidate = frame["item_id"].isin(items).to_numpy()
        found.append(frame["user_id"].to_numpy(dtype=np.int64)[on_candidate])
    ids = np.intersect1d(np.unique(np.concatenate(found)) if found else scored[:0], scored)
    if max_users is not None and len(ids) > max_users:
        ids = np.sort(np.random.default_rng(seed).choice(ids, size=max_users, replace=False))
    return ids


def paired_stderr(a: np.ndarray, b: np.ndarray) -> float:
    """Standard error of the mean of the paired per-user difference a - b."""
    diff = a - b
    if diff.size < 2:
        return 0.0
    return float(diff.std(ddof=1) / np.sqrt(diff.size))


@dataclass(frozen=True)
class ContenderResult:
    name: str
    metrics: RankingMetrics
    ndcg_per_user: np.ndarray  # users with >= 1 relevant item, in a fixed order


@dataclass(frozen=True)
class KindEvaluation:
    """Every contender on one kind's holdout, and the pool recall of the first stage."""

    kind: str
    results: dict[str, ContenderResult]
    candidates: int
    holdout_pairs: int  # pairs that count (candidate item, evaluated user)
    holdout_pairs_total: int
    pool_recall: float  # share of those pairs inside the first stage's pool

    def stderr(self, a: str, b: str) -> float:
        return paired_stderr(self.results[a].ndcg_per_user, self.results[b].ndcg_per_user)

    def z(self, a: str, b: str) -> float:
        """(mean NDCG a - mean NDCG b) in paired standard errors (inf if they never differ)."""
        diff = self.results[a].metrics.ndcg - self.results[b].metrics.ndcg
        se = self.stderr(a, b)
        if se == 0.0:
            return 0.0 if diff == 0 else float(np.sign(diff)) * float("inf")
        return diff / se


@dataclass(frozen=True)
class Evaluation:
    """The contenders on a holdout, per kind, and the pools the evaluation produced."""

    kinds: dict[str, KindEvaluation]
    pools: dict[str, CandidatePool]
    users_scored: int


def evaluate_contenders(
    users: UserFeatureSet,
    tournaments: CandidateSet,
    teams: CandidateSet,
    holdout: dict[str, pd.DataFrame],
    params: ScoringParams,
    cutoff: datetime,
    ranker: LearnedRanker | None,
    max_users: int | None = None,
) -> Evaluation:
    """Each contender's top K for the holdout users at `cutoff`, scored against the holdout.

    Three `recommend` passes: the blend (collecting the first stage's pool, which the ranker
    re-orders without another pass), popularity and random.
    """
    k = params.top_k
    candidates = {"tournaments": tournaments, "teams": teams}
    user_ids = holdout_users(users, candidates, holdout, max_users)
    blend = recommend(users, tournaments, teams, params, cutoff, user_ids=user_ids,
                      collect_pools=True)
    others = {
        name: recommend_with({kind: name for kind in KINDS}, users, tournaments, teams, params,
                             cutoff, user_ids=user_ids)
        for name in (POPULARITY, RANDOM)
    }
    kinds: dict[str, KindEvaluation] = {}
    for kind in KINDS:
        column = ITEM_COLUMN[kind]
        item_ids = np.sort(candidates[kind].items[column].to_numpy(dtype=np.int64))
        relevant = relevance_matrix(holdout[kind], user_ids, item_ids)
        frames = {BLEND: getattr(blend, kind),
                  **{name: getattr(recs, kind) for name, recs in others.items()}}
        pool = blend.pools[kind]
        if ranker is not None and kind in ranker.kinds and len(pool):
            frames[RANKER] = pool_ranking(pool, ranker.score(kind, pool.features), column, k)
        results = {}
        for name, frame in frames.items():
            ranked = ranked_matrix(frame, column, user_ids, item_ids, k)
            per_user = per_user_metrics(ranked, relevant, k)
            results[name] = ContenderResult(
                name, evaluate_rankings(ranked, relevant, k=k, n_items=len(item_ids)),
                per_user["ndcg"][per_user["has_relevant"]])
        in_pool = relevance_matrix(
            pd.DataFrame({"user_id": pool.user_id, "item_id": pool.item_id}), user_ids,
            item_ids)
        kinds[kind] = KindEvaluation(
            kind=kind, results=results, candidates=len(item_ids),
            holdout_pairs=int(relevant.nnz), holdout_pairs_total=len(holdout[kind]),
            pool_recall=(float(relevant.multiply(in_pool).nnz) / relevant.nnz
                         if relevant.nnz else 0.0),
        )
    return Evaluation(kinds=kinds, pools=blend.pools, users_scored=len(user_ids))


@dataclass(frozen=True)
class KindChampion:
    kind: str
    champion: str
    reason: str
    qualified: tuple[str, ...]  # contenders significantly better than random


def choose_champion(evaluation: KindEvaluation, z: float, min_users: int,
                    simpler_z: float | None = None) -> KindChampion:
    """The champion of one kind (rules in the module docstring)."""
    users = evaluation.results[RANDOM].metrics.users_evaluated
    if users < min_users:
        return KindChampion(evaluation.kind, BLEND,
                            f"too little holdout data ({users} users < {min_users}) to judge: "
                            "publishing the default blend", ())
    qualified = tuple(
        name for name in CONTENDERS
        if name != RANDOM and name in evaluation.results and evaluation.z(name, RANDOM) >= z
    )
    if not qualified:
        return KindChampion(evaluation.kind, POPULARITY,
                            f"no contender beats random by {z:g} standard errors: "
                            "publishing popularity", ())
    best = max(qualified, key=lambda n: (evaluation.results[n].metrics.ndcg, -PREFERENCE[n]))
    ndcg = evaluation.results[best].metrics.ndcg
    k = evaluation.results[best].metrics.k
    simpler_z = SIMPLER_Z if simpler_z is None else simpler_z
    if best != POPULARITY and POPULARITY in qualified and (
            evaluation.z(best, POPULARITY) < simpler_z):
        return KindChampion(
            evaluation.kind, POPULARITY,
            f"{best} (NDCG@{k} {ndcg:.4f}) is within {simpler_z:g} standard errors of "
            f"popularity ({evaluation.results[POPULARITY].metrics.ndcg:.4f}): publishing the "
            "simpler popularity", qualified)
    return KindChampion(
        evaluation.kind, best,
        f"{best} has the best NDCG@{evaluation.results[best].metrics.k} ({ndcg:.4f}) of the "
        f"contenders that beat random ({', '.join(qualified)})", qualified)
