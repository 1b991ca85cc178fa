"""The collaborative model: shapes, fold-in of new items, degenerate inputs."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from recs_pipeline.compute.collaborative import (
    CollaborativeModel,
    CollaborativeParams,
    fit_collaborative,
)


def _two_communities() -> sp.csr_matrix:
    # users 0-3 play contexts 0-2, users 4-7 play contexts 3-5; user 8 has no history
    rows, cols = [], []
    for u in range(4):
        for c in range(3):
            rows.append(u)
            cols.append(c)
    for u in range(4, 8):
        for c in range(3, 6):
            rows.append(u)
            cols.append(c)
    return sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(9, 6))


def test_fit_shapes_dtype_and_cold_users() -> None:
    model = fit_collaborative(_two_communities(), CollaborativeParams(factors=4))
    assert isinstance(model, CollaborativeModel)
    assert model.user_factors.dtype == np.float32
    assert model.user_factors.shape[0] == 9 and 1 <= model.user_factors.shape[1] <= 4
    np.testing.assert_array_equal(model.user_factors[8], 0.0)


def test_new_item_embedding_prefers_its_members_community() -> None:
    model = fit_collaborative(_two_communities(), CollaborativeParams(factors=4))
    # a brand-new tournament with registrants 0 and 1 (community A)
    members = sp.csr_matrix((np.ones(2), ([0, 0], [0, 1])), shape=(1, 9))
    emb = model.embed_items(members)
    assert emb.shape == (1, model.user_factors.shape[1]) and emb.dtype == np.float32
    scores = model.user_factors @ emb.T
    assert scores[2, 0] > scores[5, 0]  # a community-A user scores it above a community-B one
    assert scores[8, 0] == 0.0


def test_empty_and_tiny_inputs_do_not_fail() -> None:
    empty = fit_collaborative(sp.csr_matrix((5, 0)), CollaborativeParams())
    assert empty.user_factors.shape == (5, 0)
    assert empty.embed_items(sp.csr_matrix((3, 5))).shape == (3, 0)
    one = fit_collaborative(sp.csr_matrix(np.ones((1, 1))), CollaborativeParams())
    assert one.user_factors.shape[0] == 1
