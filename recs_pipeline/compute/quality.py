"""Temporal-holdout evaluation of the recommender, pure (frames in, metrics out).

Given the recommender's inputs as of a cutoff (read by the recommendations domain's
`quality_reading.read_snapshot`) and the (user, item) registrations / team joins that happened
after it, this rebuilds both kinds of recommendations with the production code path
(`compute.scoring.recommend`, its eligibility rules and all) and scores the top K against the
holdout:

* the model: `recommend(..., params)` exactly as the nightly job runs it;
* the popularity baseline, computed the same way: the same `recommend` with every blend weight on
  the popularity signal, whose value is the item's registrations (members) at the cutoff relative
  to the most popular candidate; so the baseline sees the same users, candidates and eligibility
  masks, and differs only in the ranking.

Relevant items are the holdout pairs whose item was a candidate at the cutoff and whose user was
scored at the cutoff; metrics average over users with >= 1 relevant item
(`compute.metrics.evaluate_rankings`). Only those users are scored (a user without a relevant
item does not change NDCG / Recall / HitRate), sampled down to `max_users` when there are more:
the evaluation costs a fraction of the nightly scoring. `recommend(..., user_ids=...)` still
learns the collaborative model, co-play and affinity priors from everyone's history, so the
evaluated users' lists are exactly the ones the full run would have produced. Catalogue
coverage is therefore the share of the cutoff's candidates in the evaluated users' top K.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from datetime import datetime

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recs_pipeline.compute.candidates import CandidateSet
from recs_pipeline.compute.features import UserFeatureSet
from recs_pipeline.compute.metrics import RankingMetrics, evaluate_rankings, per_user_metrics
from recs_pipeline.compute.quality_gate import GateConfig, KindFigures
from recs_pipeline.compute.scoring import BlendWeights, ScoringParams, recommend

KINDS: tuple[str, ...] = ("tournaments", "teams")
_COUNT_COLUMN = {"tournaments": "registered", "teams": "members"}
_ITEM_COLUMN = {"tournaments": "tournament_id", "teams": "team_id"}


@dataclass(frozen=True)
class KindQuality:
    kind: str
    model: RankingMetrics
    popularity: RankingMetrics
    candidates: int  # items that were candidates at the cutoff
    holdout_pairs: int  # holdout (user, item) pairs that count (candidate item, scored user)
    holdout_pairs_total: int  # every holdout pair in the window
    diff_stderr: float = 0.0  # standard error of mean per-user (model - popularity) NDCG


@dataclass(frozen=True)
class QualityReport:
    cutoff: datetime
    now: datetime
    k: int
    users_at_cutoff: int  # users who could get recommendations at the cutoff
    users_scored: int  # of those, the evaluated ones (holdout users, maybe sampled)
    kinds: dict[str, KindQuality]
    model_version: str
    seconds: float


@dataclass(frozen=True)
class QualityEvaluation:
    """The nightly asset's value: the report and the gate thresholds to judge it by."""

    report: QualityReport
    gate: GateConfig

    def figures(self) -> dict[str, KindFigures]:
        """What the gate needs per kind."""
        return {
            kind: KindFigures(ndcg=q.model.ndcg, popularity_ndcg=q.popularity.ndcg,
                              users_evaluated=q.model.users_evaluated,
                              diff_stderr=q.diff_stderr)
            for kind, q in self.report.kinds.items()
        }


def popularity_params(params: ScoringParams) -> ScoringParams:
    """The same scoring parameters with the whole blend on the popularity signal."""
    only_popularity = BlendWeights(affinity=0.0, collaborative=0.0, coplay=0.0, skill=0.0,
                                   popularity=1.0)
    return replace(params, tournament_weights=only_popularity, team_weights=only_popularity)


def by_popularity(candidates: CandidateSet, kind: str) -> CandidateSet:
    """A copy whose popularity signal (`fill_rate`) is the item's count relative to the max."""
    items = candidates.items.copy()
    counts = items[_COUNT_COLUMN[kind]].to_numpy(dtype=np.float64)
    top = counts.max() if len(counts) else 0.0
    items["fill_rate"] = counts / top if top > 0 else 0.0
    return replace(candidates, items=items)


def ranked_matrix(
    recs: pd.DataFrame, item_column: str, user_ids: np.ndarray, item_ids: np.ndarray, k: int
) -> np.ndarray:
    """(len(user_ids), k) item positions in `item_ids` by rank, -1 where there is no rec.

    `user_ids` and `item_ids` are sorted id vocabularies; recommendations of other users or items
    are ignored (they cannot happen when both come from the same snapshot).
    """
    out = np.full((len(user_ids), k), -1, dtype=np.int64)
    if recs.empty or len(user_ids) == 0 or len(item_ids) == 0:
        return out
    u = np.searchsorted(user_ids, recs["user_id"].to_numpy(dtype=np.int64))
    i = np.searchsorted(item_ids, recs[item_column].to_numpy(dtype=np.int64))
    r = recs["rank"].to_numpy(dtype=np.int64) - 1
    u_c, i_c = np.minimum(u, len(user_ids) - 1), np.minimum(i, len(item_ids) - 1)
    ok = ((user_ids[u_c] == recs["user_id"].to_numpy(dtype=np.int64))
          & (item_ids[i_c] == recs[item_column].to_numpy(dtype=np.int64))
          & (r >= 0) & (r < k))
    out[u_c[ok], r[ok]] = i_c[ok]
    return out


def relevance_matrix(
    holdout: pd.DataFrame, user_ids: np.ndarray, item_ids: np.ndarray
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
        items = candidates[kind].items[_ITEM_COLUMN[kind]].to_numpy(dtype=np.int64)
        on_candidate = frame["item_id"].isin(items).to_numpy()
        found.append(frame["user_id"].to_numpy(dtype=np.int64)[on_candidate])
    ids = np.intersect1d(np.unique(np.concatenate(found)) if found else scored[:0], scored)
    if max_users is not None and len(ids) > max_users:
        ids = np.sort(np.random.default_rng(seed).choice(ids, size=max_users, replace=False))
    return ids


def paired_stderr(model: dict[str, np.ndarray], baseline: dict[str, np.ndarray]) -> float:
    """Standard error of the mean per-user NDCG difference (users with relevant items)."""
    mask = model["has_relevant"]
    diff = model["ndcg"][mask] - baseline["ndcg"][mask]
    if diff.size < 2:
        return 0.0
    return float(diff.std(ddof=1) / np.sqrt(diff.size))


def evaluate_holdout(
    users: UserFeatureSet,
    tournaments: CandidateSet,
    teams: CandidateSet,
    holdout: dict[str, pd.DataFrame],
    params: ScoringParams,
    cutoff: datetime,
    now: datetime,
    max_users: int | None = None,
) -> QualityReport:
    """Model vs popularity on the holdout, per kind (see the module docstring)."""
    started = time.perf_counter()
    k = params.top_k
    candidates = {"tournaments": tournaments, "teams": teams}
    user_ids = holdout_users(users, candidates, holdout, max_users)
    # Only the evaluated users are scored; the model still learns from everyone.
    model = recommend(users, tournaments, teams, params, cutoff, user_ids=user_ids)
    baseline = recommend(users, by_popularity(tournaments, "tournaments"),
                         by_popularity(teams, "teams"), popularity_params(params), cutoff,
                         user_ids=user_ids)
    kinds: dict[str, KindQuality] = {}
    for kind, candidates in (("tournaments", tournaments), ("teams", teams)):
        column = _ITEM_COLUMN[kind]
        item_ids = np.sort(candidates.items[column].to_numpy(dtype=np.int64))
        relevant = relevance_matrix(holdout[kind], user_ids, item_ids)
        scores, per_user = {}, {}
        for name, recs in (("model", model), ("popularity", baseline)):
            frame = getattr(recs, kind)
            ranked = ranked_matrix(frame, column, user_ids, item_ids, k)
            scores[name] = evaluate_rankings(ranked, relevant, k=k, n_items=len(item_ids))
            per_user[name] = per_user_metrics(ranked, relevant, k)
        kinds[kind] = KindQuality(
            kind=kind, model=scores["model"], popularity=scores["popularity"],
            candidates=len(item_ids), holdout_pairs=int(relevant.nnz),
            holdout_pairs_total=len(holdout[kind]),
            diff_stderr=paired_stderr(per_user["model"], per_user["popularity"]),
        )
    return QualityReport(
        cutoff=cutoff, now=now, k=k, users_at_cutoff=len(users.features),
        users_scored=len(user_ids), kinds=kinds,
        model_version=model.model_version, seconds=time.perf_counter() - started,
    )


def report_table(report: QualityReport) -> str:
    """A markdown table of the report (for the asset's metadata and docs)."""
    k = report.k
    lines = [
        f"| kind | ranker | NDCG@{k} | Recall@{k} | HitRate@{k} | coverage | users |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for kind in KINDS:
        q = report.kinds[kind]
        for name, m in (("model", q.model), ("popularity", q.popularity)):
            lines.append(f"| {kind} | {name} | {m.ndcg:.4f} | {m.recall:.4f} | "
                         f"{m.hit_rate:.4f} | {m.coverage:.3f} | {m.users_evaluated} |")
    return "\n".join(lines)
