"""A generic implicit-feedback collaborative model: low-rank user factors + item fold-in.

Used by the recommendation pipeline (co-play signal: users x past tournaments/teams) and by the
offline evaluation on MovieLens (users x rated movies). The interface is fixed; internals may be
tuned:

* `fit_collaborative(interactions, params)` takes a binary (n_users, n_contexts) CSR matrix and
  learns user factors with a truncated randomized SVD of the IDF-weighted, length-normalised
  matrix (sparse operations only, so it fits in seconds at 1M users).
* `CollaborativeModel.embed_items(item_members)` folds in items that did not exist at fit time
  (a tournament that opened yesterday) from the users attached to them (its registrants, a team's
  members, a movie's raters) by ridge regression onto the user factors:
  `V = M U (UᵀU + λI)^-1`. Then `score = user_factors[batch] @ V.T` is a smoothed
  "people like you are attached to this item" signal.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import scipy.sparse as sp
from sklearn.utils.extmath import randomized_svd
from threadpoolctl import threadpool_limits


@dataclass
class CollaborativeParams:
    """Hyper-parameters of the collaborative model.

    factors: latent dimension d (capped by the matrix rank).
    regularization: ridge λ of the item fold-in, relative to the mean diagonal of UᵀU.
    n_iter: power iterations of the randomized SVD (more = more accurate, slower).
    singular_power: user factors are U * s**singular_power (0 = orthonormal U, 1 = U*s).
    idf: weight contexts by inverse document frequency (rare shared contexts say more).
    row_normalize: divide each user's row by sqrt(its length) (heavy users do not dominate).
    random_state: seed of the randomized SVD (deterministic fits).
    """

    factors: int = 64
    regularization: float = 0.1
    n_iter: int = 4
    singular_power: float = 0.5
    idf: bool = True
    row_normalize: bool = True
    random_state: int = 0

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


class CollaborativeModel:
    """Fitted user factors plus the ridge projection used to embed items."""

    user_factors: np.ndarray  # (n_users, d) float32

    def __init__(self, user_factors: np.ndarray, params: CollaborativeParams) -> None:
        self.user_factors = np.ascontiguousarray(user_factors, dtype=np.float32)
        self.params = params
        d = self.user_factors.shape[1]
        if d == 0:
            self._projection = np.zeros((0, 0), dtype=np.float32)
            return
        gram = (self.user_factors.T @ self.user_factors).astype(np.float64)
        lam = params.regularization * max(float(np.trace(gram)) / d, 1e-12)
        # (UᵀU + λI)^-1 is symmetric, so V = M U P with P = that inverse.
        self._projection = np.linalg.inv(gram + lam * np.eye(d)).astype(np.float32)

    @property
    def n_factors(self) -> int:
        return int(self.user_factors.shape[1])

    def embed_items(self, item_members: sp.csr_matrix) -> np.ndarray:
        """(n_items, n_users) binary membership -> (n_items, d) float32 item embeddings."""
        n_users = self.user_factors.shape[0]
        members = sp.csr_matrix(item_members, dtype=np.float32)
        if members.shape[1] != n_users:
            raise ValueError(
                f"item_members has {members.shape[1]} user columns, the model {n_users} users"
            )
        if self.n_factors == 0:
            return np.zeros((members.shape[0], 0), dtype=np.float32)
        summed = np.asarray(members @ self.user_factors, dtype=np.float32)
        return summed @ self._projection


def _weighted(interactions: sp.csr_matrix, params: CollaborativeParams) -> sp.csr_matrix:
    x = sp.csr_matrix(interactions, dtype=np.float32, copy=True)
    x.sum_duplicates()
    x.data[:] = 1.0
    if params.idf:
        df = np.asarray(x.getnnz(axis=0), dtype=np.float32)
        idf = np.log1p(x.shape[0] / (1.0 + df)).astype(np.float32)
        x = sp.csr_matrix(x @ sp.diags(idf))
    if params.row_normalize:
        row_nnz = np.asarray(x.getnnz(axis=1), dtype=np.float32)
        scale = np.where(row_nnz > 0, 1.0 / np.sqrt(np.maximum(row_nnz, 1.0)), 0.0)
        x = sp.csr_matrix(sp.diags(scale.astype(np.float32)) @ x)
    return x


def fit_collaborative(
    interactions: sp.csr_matrix, params: CollaborativeParams | None = None
) -> CollaborativeModel:
    """Fit user factors on a binary (n_users, n_contexts) interaction matrix.

    Users without interactions get zero factors (so every item scores 0 for them). An empty or
    rank-deficient matrix yields fewer (possibly zero) factors instead of failing.
    """
    params = params or CollaborativeParams()
    n_users, n_contexts = interactions.shape
    weighted = _weighted(interactions, params)
    rank_cap = min(n_users, n_contexts) - 1
    d = min(params.factors, rank_cap)
    if weighted.nnz == 0 or d <= 0:
        return CollaborativeModel(np.zeros((n_users, 0), dtype=np.float32), params)
    # One BLAS thread: on a shared 2-core box OpenBLAS threads spin against each other and make
    # the small dense steps (QR/LU/SVD of a (d+10) x n matrix) 20x slower.
    with threadpool_limits(limits=1):
        u, s, _vt = randomized_svd(
            weighted,
            n_components=d,
            n_iter=params.n_iter,
            random_state=params.random_state,
        )
    keep = s > 1e-6 * max(float(s[0]), 1e-12)
    factors = (u[:, keep] * (s[keep] ** params.singular_power)).astype(np.float32)
    return CollaborativeModel(factors, params)
