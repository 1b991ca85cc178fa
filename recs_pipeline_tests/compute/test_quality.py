"""Temporal-holdout evaluation helpers (pure)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recs_pipeline.compute.candidates import CandidateSet
from recs_pipeline.compute.features import UserFeatureSet
from recs_pipeline.compute.quality import (
    by_popularity,
    holdout_users,
    paired_stderr,
    popularity_params,
    ranked_matrix,
    relevance_matrix,
)
from recs_pipeline.compute.scoring import ScoringParams

USERS = np.array([3, 5, 9])
ITEMS = np.array([100, 200, 300, 400])


def test_ranked_matrix_places_items_by_rank() -> None:
    recs = pd.DataFrame({
        "user_id": [5, 5, 3, 9, 42],  # 42 is not in the vocabulary: ignored
        "team_id": [300, 100, 400, 999, 100],  # 999 is not a candidate: ignored
        "rank": [2, 1, 1, 1, 1],
    })
    out = ranked_matrix(recs, "team_id", USERS, ITEMS, k=3)
    assert out.tolist() == [[3, -1, -1], [0, 2, -1], [-1, -1, -1]]


def test_relevance_matrix_keeps_pairs_inside_both_vocabularies() -> None:
    holdout = pd.DataFrame({"user_id": [3, 3, 9, 7, 9], "item_id": [200, 200, 400, 100, 500]})
    rel = relevance_matrix(holdout, USERS, ITEMS).toarray()
    expected = np.zeros((3, 4))
    expected[0, 1] = 1  # (3, 200) once although listed twice
    expected[2, 3] = 1  # (9, 400); user 7 and item 500 are outside
    assert (rel == expected).all()


def test_by_popularity_ranks_by_count() -> None:
    items = pd.DataFrame({"team_id": [1, 2, 3], "members": [2, 8, 0], "fill_rate": [1.0, 0.5, 0.0]})
    out = by_popularity(CandidateSet(items, pd.DataFrame(columns=["item_id", "user_id"])), "teams")
    assert out.items["fill_rate"].tolist() == [0.25, 1.0, 0.0]
    assert items["fill_rate"].tolist() == [1.0, 0.5, 0.0]  # the input is not modified
    weights = popularity_params(ScoringParams()).team_weights.vector()
    assert weights.tolist() == [0.0, 0.0, 0.0, 0.0, 1.0]


def test_holdout_users_are_scored_users_with_a_candidate_pair() -> None:
    features = pd.DataFrame({"user_id": [1, 2, 3, 4]})
    users = UserFeatureSet(features, *(pd.DataFrame() for _ in range(5)))
    empty = pd.DataFrame(columns=["item_id", "user_id"])
    cands = {
        "tournaments": CandidateSet(pd.DataFrame({"tournament_id": [10]}), empty),
        "teams": CandidateSet(pd.DataFrame({"team_id": [20]}), empty),
    }
    holdout = {
        "tournaments": pd.DataFrame({"user_id": [1, 2, 8], "item_id": [10, 11, 10]}),
        "teams": pd.DataFrame({"user_id": [4], "item_id": [20]}),
    }
    # 2's item was not a candidate; 8 was not scored at the cutoff
    assert holdout_users(users, cands, holdout, None).tolist() == [1, 4]
    sampled = holdout_users(users, cands, holdout, 1)
    assert len(sampled) == 1 and sampled[0] in (1, 4)


def test_paired_stderr() -> None:
    mask = np.array([True, True, True, False])
    model = {"ndcg": np.array([1.0, 0.5, 0.0, 0.9]), "has_relevant": mask}
    base = {"ndcg": np.array([0.5, 0.5, 0.5, 0.0]), "has_relevant": mask}
    diff = np.array([0.5, 0.0, -0.5])
    assert paired_stderr(model, base) == pytest.approx(diff.std(ddof=1) / np.sqrt(3))
    one = {"ndcg": np.array([1.0]), "has_relevant": np.array([True])}
    assert paired_stderr(one, one) == 0.0
