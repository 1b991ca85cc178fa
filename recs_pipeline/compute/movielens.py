"""MovieLens-style offline evaluation, pure: parse a RecBole `.inter` file, split, rank, score.

The protocol is RecBole's default (`eval_args: split RS [0.8, 0.1, 0.1], group_by user, order RO,
mode full`): every interaction is a positive; each user's interactions are shuffled and split
80/10/10 with RecBole's per-user counts (valid and test get int(0.1 n) each, at least one while the
train part keeps more than one); models are fitted on train; validation ranks all items with train
items masked; test ranks all items with train + valid items masked. Metrics: `compute.metrics`.

Nothing here downloads anything: `recs_pipeline.devtools.bench.quality` fetches the data.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from recs_pipeline.compute.metrics import RankingMetrics, evaluate_rankings, top_k_from_scores

# score_fn(user_indices) -> dense (len(users), n_items) scores for those users.
ScoreFn = Callable[[np.ndarray], np.ndarray]


class InterFormatError(ValueError):
    """The `.inter` text is not what RecBole's atomic format promises."""


@dataclass(frozen=True)
class Interactions:
    """Interactions as dense indices; `user_ids` / `item_ids` map an index back to its token."""

    users: np.ndarray  # int64 user index per interaction
    items: np.ndarray  # int64 item index per interaction
    user_ids: np.ndarray  # token per user index (str)
    item_ids: np.ndarray  # token per item index (str)

    @property
    def n_users(self) -> int:
        return int(self.user_ids.size)

    @property
    def n_items(self) -> int:
        return int(self.item_ids.size)

    def __len__(self) -> int:
        return int(self.users.size)


def parse_inter(text: str) -> Interactions:
    """Parse a RecBole atomic `.inter` file (tab-separated, typed header `name:type`).

    Only the `user_id` and `item_id` columns are used (every row is a positive); a repeated
    (user, item) pair is kept once, since binary relevance cannot count it twice.
    """
    lines = text.splitlines()
    if not lines:
        raise InterFormatError("empty .inter file")
    header = [field.split(":", 1)[0] for field in lines[0].split("\t")]
    try:
        user_col, item_col = header.index("user_id"), header.index("item_id")
    except ValueError:
        raise InterFormatError(
            f"header must name user_id and item_id columns, got {lines[0]!r}"
        ) from None
    rows = [line.split("\t") for line in lines[1:] if line.strip()]
    width = len(header)
    bad = next((n for n, row in enumerate(rows, start=2) if len(row) != width), None)
    if bad is not None:
        raise InterFormatError(f"line {bad}: expected {width} tab-separated fields")
    user_tokens = np.array([row[user_col] for row in rows], dtype=str)
    item_tokens = np.array([row[item_col] for row in rows], dtype=str)
    user_ids, users = np.unique(user_tokens, return_inverse=True)
    item_ids, items = np.unique(item_tokens, return_inverse=True)
    keys = np.unique(users.astype(np.int64) * item_ids.size + items)
    return Interactions(
        users=keys // item_ids.size,
        items=keys % item_ids.size,
        user_ids=user_ids,
        item_ids=item_ids,
    )


def split_counts(n: np.ndarray, ratios: tuple[float, ...] = (0.8, 0.1, 0.1)) -> np.ndarray:
    """RecBole's `_calcu_split_ids` per group size: (len(n), len(ratios)) part sizes."""
    n = np.asarray(n, dtype=np.int64)
    total = float(sum(ratios))
    fractions = [r / total for r in ratios]
    counts = np.stack([np.floor(f * n).astype(np.int64) for f in fractions], axis=1)
    counts[:, 0] = n - counts[:, 1:].sum(axis=1)
    # Like RecBole: a later part that would be 0 < size < 1 gets one interaction from train, last
    # part first, as long as train keeps more than one.
    for j in range(len(ratios) - 1, 0, -1):
        bump = (counts[:, 0] > 1) & (fractions[j] * n > 0) & (fractions[j] * n < 1)
        counts[bump, j] += 1
        counts[bump, 0] -= 1
    return counts


def split_per_user(
    data: Interactions, ratios: tuple[float, ...] = (0.8, 0.1, 0.1), seed: int = 2020
) -> list[sp.csr_matrix]:
    """Shuffle each user's interactions and cut them by `split_counts`: one binary CSR per part."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(data))
    order = order[np.argsort(data.users[order], kind="stable")]  # grouped by user, shuffled within
    users, items = data.users[order], data.items[order]
    sizes = np.bincount(users, minlength=data.n_users)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    rank_in_user = np.arange(users.size) - starts[users]
    bounds = np.cumsum(split_counts(sizes, ratios), axis=1)  # (n_users, parts) end offsets
    part = (rank_in_user[:, None] >= bounds[users]).sum(axis=1)
    shape = (data.n_users, data.n_items)
    masks = [part == p for p in range(len(ratios))]
    return [
        sp.csr_matrix((np.ones(int(m.sum()), dtype=np.float32), (users[m], items[m])), shape=shape)
        for m in masks
    ]


def rank_all_items(
    score_fn: ScoreFn, seen: sp.csr_matrix, k: int = 10, batch_size: int = 2048
) -> np.ndarray:
    """Top-k item indices per user over the full catalogue, `seen` items masked (-1 padding)."""
    n_users = seen.shape[0]
    out = np.full((n_users, k), -1, dtype=np.int64)
    for start in range(0, n_users, batch_size):
        batch = np.arange(start, min(start + batch_size, n_users))
        scores = np.array(score_fn(batch), dtype=np.float64, copy=True)
        if scores.shape != (batch.size, seen.shape[1]):
            raise ValueError(f"score_fn returned shape {scores.shape} for {batch.size} users")
        block = seen[batch].tocoo()
        scores[block.row, block.col] = -np.inf
        out[batch] = top_k_from_scores(scores, k)
    return out


def evaluate_scorer(
    score_fn: ScoreFn, seen: sp.csr_matrix, holdout: sp.csr_matrix, k: int = 10
) -> RankingMetrics:
    """Rank all items not in `seen` for every user; score the top k against `holdout`."""
    return evaluate_rankings(rank_all_items(score_fn, seen, k), holdout, k=k)
