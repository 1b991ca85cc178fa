"""The learned second-stage ranker: fitted every night on the deployment's own history.

Training rows are (user, candidate) pairs of the first stage's pool at a past cutoff (every
candidate there was eligible at that moment, by construction), labelled 1 when the user
registered for / joined it in the window after the cutoff. Each user keeps every positive and
at most `negatives_per_user` sampled negatives, and at most `max_train_users` users are used, so
training stays bounded whatever the platform's size. The model is scikit-learn's
`HistGradientBoostingClassifier` on `compute.reranking.PAIR_FEATURES` (NaN-aware, monotone
in nothing); its predicted probability is the score, computed from the fitted trees rewritten as
lookup tables (`compute.tree_tables`: the same probabilities, ~20x cheaper on users x pool_size
rows).

A kind without enough positives gets no model: the ranker is then not a contender for that kind
(`LearnedRanker.kinds`), and the champion selection (`compute.champion`) says so.
"""

from __future__ import annotations

import contextlib
import hashlib
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingClassifier
from threadpoolctl import threadpool_limits

from recs_pipeline.compute.reranking import PAIR_FEATURES
from recs_pipeline.compute.tree_tables import CompiledTrees, compile_trees

RANKER_NAME = "ranker"


@dataclass(frozen=True)
class RankerParams:
    """Training knobs. Tuned on the tuning seeds of the world zoo (docs/quality.md)."""

    max_iter: int = 60
    learning_rate: float = 0.15
    max_leaf_nodes: int = 4
    min_samples_leaf: int = 40
    l2_regularization: float = 1.0
    negatives_per_user: int = 15
    max_train_users: int = 20_000
    min_positives: int = 30  # fewer labelled positives: no model for that kind
    seed: int = 0


@dataclass
class CandidatePool:
    """The first stage's pool for some users: one row per (user, candidate) with its features."""

    user_id: np.ndarray
    item_id: np.ndarray
    features: np.ndarray  # (rows, len(PAIR_FEATURES)) float32

    @classmethod
    def empty(cls) -> CandidatePool:
        return cls(np.zeros(0, np.int64), np.zeros(0, np.int64),
                   np.zeros((0, len(PAIR_FEATURES)), np.float32))

    def __len__(self) -> int:
        return len(self.user_id)


def pool_labels(pool: CandidatePool, relevant: pd.DataFrame) -> np.ndarray:
    """1 where (user_id, item_id) of the pool is in `relevant` (columns user_id, item_id)."""
    if len(pool) == 0 or relevant.empty:
        return np.zeros(len(pool), dtype=np.int8)
    key = pool.user_id.astype(np.int64) * (1 << 32) + pool.item_id.astype(np.int64)
    rel = (relevant["user_id"].to_numpy(np.int64) * (1 << 32)
           + relevant["item_id"].to_numpy(np.int64))
    return np.isin(key, rel).astype(np.int8)


def training_rows(
    pool: CandidatePool, labels: np.ndarray, params: RankerParams
) -> tuple[np.ndarray, np.ndarray]:
    """Bounded training rows: users with >= 1 positive, all their positives, sampled negatives."""
    rng = np.random.default_rng(params.seed)
    positive_users = np.unique(pool.user_id[labels == 1])
    if len(positive_users) > params.max_train_users:
        positive_users = rng.choice(positive_users, params.max_train_users, replace=False)
    in_users = np.isin(pool.user_id, positive_users)
    idx = np.flatnonzero(in_users)
    pos_idx = idx[labels[idx] == 1]
    neg_idx = idx[labels[idx] == 0]
    # A random key per row, ranked within each user: keep each user's first N negatives.
    order = np.lexsort((rng.random(len(neg_idx)), pool.user_id[neg_idx]))
    neg_sorted = neg_idx[order]
    users_sorted = pool.user_id[neg_sorted]
    starts = np.r_[0, np.flatnonzero(users_sorted[1:] != users_sorted[:-1]) + 1]
    rank = np.arange(len(neg_sorted)) - np.repeat(starts, np.diff(np.r_[starts,
                                                                          len(neg_sorted)]))
    keep = np.sort(np.concatenate([pos_idx, neg_sorted[rank < params.negatives_per_user]]))
    return pool.features[keep], labels[keep]


@dataclass
class LearnedRanker:
    """Per kind, a fitted classifier whose probability ranks the pool (`score`)."""

    params: RankerParams
    models: dict[str, HistGradientBoostingClassifier] = field(default_factory=dict)
    # per kind, the PAIR_FEATURES columns the model uses (constant ones carry nothing)
    columns: dict[str, np.ndarray] = field(default_factory=dict)
    compiled: dict[str, CompiledTrees] = field(default_factory=dict)  # what `score` evaluates
    training: dict[str, dict[str, int]] = field(default_factory=dict)

    name: str = RANKER_NAME

    @property
    def kinds(self) -> set[str]:
        return set(self.models)

    def score(self, kind: str, features: np.ndarray) -> np.ndarray:
        """Probability of a registration / join per row (float64)."""
        if len(features) == 0:
            return np.zeros(0, dtype=np.float64)
        x = features[:, self.columns[kind]]
        if kind in self.compiled:
            return self.compiled[kind].predict_proba_positive(x)
        with threadpool_limits(limits=1):  # trees too deep to compile (tuning grids only)
            return self.models[kind].predict_proba(x)[:, 1]

    def adopt(self, kind: str, other: LearnedRanker) -> None:
        """Take `other`'s fitted model for `kind`."""
        self.models[kind] = other.models[kind]
        self.columns[kind] = other.columns[kind]
        if kind in other.compiled:
            self.compiled[kind] = other.compiled[kind]

    def fingerprint(self) -> str:
        """Short hash of the parameters and what each kind was trained on."""
        text = repr((asdict(self.params), sorted(self.training.items())))
        return hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()[:8]


def fit_ranker(
    pools: dict[str, CandidatePool],
    relevant: dict[str, pd.DataFrame],
    params: RankerParams | None = None,
) -> LearnedRanker:
    """Fit one classifier per kind on the pools' labelled rows (see the module docstring)."""
    params = params or RankerParams()
    ranker = LearnedRanker(params=params)
    for kind, pool in pools.items():
        labels = pool_labels(pool, relevant[kind])
        x, y = training_rows(pool, labels, params)
        positives = int(y.sum())
        ranker.training[kind] = {"rows": len(y), "positives": positives,
                                 "users": len(np.unique(pool.user_id[labels == 1]))}
        if positives < params.min_positives or positives == len(y):
            continue
        columns = np.array([j for j in range(x.shape[1])
                            if np.unique(x[~np.isnan(x[:, j]), j]).size >= 2], dtype=np.int64)
        if len(columns) == 0:
            continue
        model = HistGradientBoostingClassifier(
            max_iter=params.max_iter, learning_rate=params.learning_rate,
            max_leaf_nodes=params.max_leaf_nodes, min_samples_leaf=params.min_samples_leaf,
            l2_regularization=params.l2_regularization, early_stopping=False,
            random_state=params.seed,
        )
        with threadpool_limits(limits=1):
            model.fit(x[:, columns], y)
        ranker.models[kind] = model
        ranker.columns[kind] = columns
        with contextlib.suppress(ValueError):  # deep trees on many columns: predict_proba
            ranker.compiled[kind] = compile_trees(model)
    return ranker
