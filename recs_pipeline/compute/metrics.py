"""Top-K ranking metrics with binary relevance: NDCG@K, Recall@K, HitRate@K, catalogue coverage.

Inputs are vectorised: `ranked` is an (n_users, >=K) integer array of item indices, best first,
padded with -1 where a user has fewer recommendations; `relevant` is an (n_users, n_items) sparse
matrix whose nonzeros are the relevant (held-out) items of each user. Per-user values are averaged
over the users with at least one relevant item (the usual convention: ranx, RecBole); users without
any are not counted, whatever was recommended to them.

- NDCG@K  = DCG@K / IDCG@K, DCG = sum over hit positions p (0-based) of 1 / log2(p + 2), IDCG the
  DCG of a perfect list: min(|rel|, K) hits at the top.
- Recall@K = hits in the top K / |rel| (not min(|rel|, K), as in ranx and RecBole).
- HitRate@K = 1 if any of the top K is relevant.
- Coverage = distinct items recommended to anyone in the top K / catalogue size.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import scipy.sparse as sp


@dataclass(frozen=True)
class RankingMetrics:
    """Averages over `users_evaluated` users (those with >= 1 relevant item)."""

    k: int
    ndcg: float
    recall: float
    hit_rate: float
    coverage: float
    users_evaluated: int

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


def hit_matrix(ranked: np.ndarray, relevant: sp.spmatrix | sp.sparray, k: int) -> np.ndarray:
    """(n_users, k) boolean: is the item at each rank relevant to that user? Padding (-1) is not."""
    ranked = np.asarray(ranked)
    if ranked.ndim != 2:
        raise ValueError(f"ranked must be 2-D (users x ranks), got shape {ranked.shape}")
    relevant = sp.csr_array(relevant)
    n_users, n_items = relevant.shape
    if ranked.shape[0] != n_users:
        raise ValueError(
            f"ranked has {ranked.shape[0]} rows but relevant has {n_users} users"
        )
    top = ranked[:, :k].astype(np.int64, copy=False)
    if top.size and top.max(initial=-1) >= n_items:
        raise ValueError(f"ranked contains item index {top.max()} >= n_items={n_items}")
    # A (user, item) pair as one int64 key; relevant keys sorted, ranked keys looked up by
    # binary search. Linear in nnz + n_users*k log nnz, no dense (users x items) matrix.
    relevant.sum_duplicates()
    relevant.eliminate_zeros()
    rel_rows = np.repeat(np.arange(n_users, dtype=np.int64), np.diff(relevant.indptr))
    rel_keys = np.sort(rel_rows * n_items + relevant.indices.astype(np.int64))
    valid = top >= 0
    keys = np.arange(n_users, dtype=np.int64)[:, None] * n_items + np.where(valid, top, 0)
    pos = np.searchsorted(rel_keys, keys)
    pos = np.minimum(pos, max(rel_keys.size - 1, 0))
    hits = (rel_keys[pos] == keys) if rel_keys.size else np.zeros_like(valid)
    # A duplicated item would count twice and push NDCG above 1: a caller bug, so refuse it.
    srt = np.sort(np.where(valid, top, -1 - np.arange(top.shape[1])), axis=1)
    if top.shape[1] > 1 and bool((srt[:, 1:] == srt[:, :-1]).any()):
        raise ValueError("ranked lists must not repeat an item")
    return hits & valid


def _discounts(k: int) -> np.ndarray:
    return 1.0 / np.log2(np.arange(2, k + 2, dtype=np.float64))


def per_user_metrics(
    ranked: np.ndarray, relevant: sp.spmatrix | sp.sparray, k: int
) -> dict[str, np.ndarray]:
    """Per-user ndcg / recall / hit_rate arrays and the mask of users with relevant items."""
    if k <= 0:
        raise ValueError(f"k must be positive, got {k}")
    hits = hit_matrix(ranked, relevant, k).astype(np.float64)
    width = hits.shape[1]
    n_rel = np.asarray(sp.csr_array(relevant).astype(bool).sum(axis=1)).ravel()
    disc = _discounts(k)
    dcg = hits @ disc[:width]
    ideal_cum = np.concatenate([[0.0], np.cumsum(disc)])
    idcg = ideal_cum[np.minimum(n_rel, k)]
    has_rel = n_rel > 0
    safe_idcg = np.where(has_rel, idcg, 1.0)
    n_hits = hits.sum(axis=1)
    return {
        "ndcg": np.where(has_rel, dcg / safe_idcg, 0.0),
        "recall": np.where(has_rel, n_hits / np.maximum(n_rel, 1), 0.0),
        "hit_rate": (n_hits > 0).astype(np.float64),
        "has_relevant": has_rel,
    }


def catalogue_coverage(ranked: np.ndarray, n_items: int, k: int) -> float:
    """Share of the catalogue (`n_items`) that appears in at least one user's top K."""
    if n_items <= 0:
        return 0.0
    top = np.asarray(ranked)[:, :k]
    return float(np.unique(top[top >= 0]).size / n_items)


def evaluate_rankings(
    ranked: np.ndarray,
    relevant: sp.spmatrix | sp.sparray,
    k: int = 10,
    n_items: int | None = None,
) -> RankingMetrics:
    """Average NDCG/Recall/HitRate@k over users with >= 1 relevant item, plus coverage.

    `n_items` is the catalogue size for coverage (default: relevant's column count).
    """
    per_user = per_user_metrics(ranked, relevant, k)
    mask = per_user["has_relevant"]
    n_eval = int(mask.sum())

    def mean(name: str) -> float:
        return float(per_user[name][mask].mean()) if n_eval else 0.0

    catalogue = relevant.shape[1] if n_items is None else n_items
    return RankingMetrics(
        k=k,
        ndcg=mean("ndcg"),
        recall=mean("recall"),
        hit_rate=mean("hit_rate"),
        coverage=catalogue_coverage(ranked, catalogue, k),
        users_evaluated=n_eval,
    )


def top_k_from_scores(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k highest scores per row, best first (-inf scores become -1 padding)."""
    scores = np.asarray(scores)
    k = min(k, scores.shape[1])
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    part_scores = np.take_along_axis(scores, part, axis=1)
    order = np.argsort(-part_scores, axis=1, kind="stable")
    top = np.take_along_axis(part, order, axis=1)
    top_scores = np.take_along_axis(part_scores, order, axis=1)
    return np.where(np.isneginf(top_scores), -1, top)
