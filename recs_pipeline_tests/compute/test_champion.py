"""Champion/challenger, pure: evaluation helpers and the selection rules on hand-built frames."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recs_pipeline.compute.candidates import CandidateSet
from recs_pipeline.compute.champion import (
    BLEND,
    POPULARITY,
    RANDOM,
    RANKER,
    ContenderResult,
    KindEvaluation,
    choose_champion,
    holdout_users,
    paired_stderr,
    popularity_rate,
    random_order,
    ranked_matrix,
    ranking_setup,
    relevance_matrix,
)
from recs_pipeline.compute.features import UserFeatureSet
from recs_pipeline.compute.metrics import RankingMetrics
from recs_pipeline.compute.scoring import ScoringParams

USERS = np.array([3, 5, 9])
ITEMS = np.array([100, 200, 300, 400])
EMPTY_MEMBERS = pd.DataFrame(columns=["item_id", "user_id"])


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


def test_popularity_is_a_rate_not_a_count() -> None:
    # 30 registrations in 29 days listed is less popular than 10 in 1 day.
    items = pd.DataFrame({"tournament_id": [1, 2, 3], "registered": [30, 10, 0],
                          "listed_days": [29.0, 1.0, np.nan], "fill_rate": [0.9, 0.2, 0.0]})
    rate = popularity_rate(CandidateSet(items, EMPTY_MEMBERS), "tournaments")
    assert rate.tolist() == [1.0, 5.0, 0.0]
    setup = ranking_setup({"tournaments": POPULARITY, "teams": BLEND},
                          CandidateSet(items, EMPTY_MEMBERS),
                          CandidateSet(pd.DataFrame({"team_id": [1]}), EMPTY_MEMBERS),
                          ScoringParams(), ranker=None)
    assert setup.tournaments.items["fill_rate"].tolist() == [0.2, 1.0, 0.0]
    assert items["fill_rate"].tolist() == [0.9, 0.2, 0.0]  # the input is not modified
    assert setup.params.tournament_weights.vector().tolist() == [0.0, 0.0, 0.0, 0.0, 1.0]
    assert setup.params.team_weights == ScoringParams().team_weights
    assert setup.model_names == {"tournaments": POPULARITY, "teams": BLEND}
    with pytest.raises(ValueError, match="no learned ranker"):
        ranking_setup({"teams": RANKER}, setup.tournaments, setup.teams, ScoringParams(), None)


def test_random_order_is_fixed_per_item() -> None:
    a = CandidateSet(pd.DataFrame({"team_id": [5, 7, 9]}), EMPTY_MEMBERS)
    b = CandidateSet(pd.DataFrame({"team_id": [9, 5]}), EMPTY_MEMBERS)
    ra, rb = random_order(a, "teams"), random_order(b, "teams")
    assert ra[2] == rb[0] and ra[0] == rb[1]
    assert ((ra >= 0) & (ra < 1)).all() and len(set(ra.tolist())) == 3


def test_holdout_users_are_scored_users_with_a_candidate_pair() -> None:
    features = pd.DataFrame({"user_id": [1, 2, 3, 4]})
    users = UserFeatureSet(features, *(pd.DataFrame() for _ in range(5)))
    cands = {
        "tournaments": CandidateSet(pd.DataFrame({"tournament_id": [10]}), EMPTY_MEMBERS),
        "teams": CandidateSet(pd.DataFrame({"team_id": [20]}), EMPTY_MEMBERS),
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
    a, b = np.array([1.0, 0.5, 0.0]), np.array([0.5, 0.5, 0.5])
    diff = np.array([0.5, 0.0, -0.5])
    assert paired_stderr(a, b) == pytest.approx(diff.std(ddof=1) / np.sqrt(3))
    assert paired_stderr(np.array([1.0]), np.array([0.0])) == 0.0


def _evaluation(per_user: dict[str, list[float]]) -> KindEvaluation:
    results = {}
    for name, values in per_user.items():
        arr = np.asarray(values, dtype=np.float64)
        metrics = RankingMetrics(k=10, ndcg=float(arr.mean()), recall=0.0, hit_rate=0.0,
                                 coverage=0.0, users_evaluated=len(arr))
        results[name] = ContenderResult(name, metrics, arr)
    return KindEvaluation("tournaments", results, candidates=10, holdout_pairs=len(arr),
                          holdout_pairs_total=len(arr), pool_recall=1.0)


def test_the_best_contender_that_beats_random_wins() -> None:
    rng = np.random.default_rng(0)
    base = rng.random(200) * 0.2
    ev = _evaluation({RANDOM: base.tolist(), POPULARITY: (base + 0.05).tolist(),
                      BLEND: (base + 0.10 + rng.normal(0, 0.01, 200)).tolist(),
                      RANKER: (base + 0.20 + rng.normal(0, 0.01, 200)).tolist()})
    choice = choose_champion(ev, z=2.0, min_users=30)
    assert choice.champion == RANKER
    assert set(choice.qualified) == {RANKER, BLEND, POPULARITY}


def test_popularity_when_the_world_has_no_personal_signal() -> None:
    rng = np.random.default_rng(1)
    base = rng.random(300)
    noise = {name: (base + rng.normal(0, 0.3, 300)).clip(0, 1).tolist()
             for name in (RANKER, BLEND)}
    ev = _evaluation({RANDOM: base.tolist(), POPULARITY: (base + 0.2).clip(0, 1).tolist(),
                      **noise})
    assert choose_champion(ev, z=2.0, min_users=30).champion == POPULARITY


def test_nothing_beats_random_publishes_popularity_and_says_so() -> None:
    same = [0.1, 0.2, 0.3] * 20
    ev = _evaluation({RANDOM: same, POPULARITY: same, BLEND: same})
    choice = choose_champion(ev, z=2.0, min_users=30)
    assert choice.champion == POPULARITY and "no contender beats random" in choice.reason


def test_too_little_data_publishes_the_blend() -> None:
    ev = _evaluation({RANDOM: [0.0] * 5, POPULARITY: [1.0] * 5, BLEND: [0.5] * 5})
    choice = choose_champion(ev, z=2.0, min_users=30)
    assert choice.champion == BLEND and "too little holdout data (5 users < 30)" in choice.reason


def test_exact_ties_prefer_the_ranker() -> None:
    ev = _evaluation({RANDOM: [0.0, 0.1] * 50, RANKER: [0.5, 0.6] * 50,
                      BLEND: [0.5, 0.6] * 50})
    assert choose_champion(ev, z=2.0, min_users=30).champion == RANKER


def test_a_fitted_contender_must_beat_popularity_clearly() -> None:
    rng = np.random.default_rng(2)
    base = rng.random(400) * 0.3
    pop = base + 0.2
    slightly = pop + 0.005 + rng.normal(0, 0.05, 400)  # better on average, well within 1 SE
    ev = _evaluation({RANDOM: base.tolist(), POPULARITY: pop.tolist(), RANKER: slightly.tolist()})
    assert ev.results[RANKER].metrics.ndcg > ev.results[POPULARITY].metrics.ndcg
    assert 0 < ev.z(RANKER, POPULARITY) < 1.0
    choice = choose_champion(ev, z=2.0, min_users=30)
    assert choice.champion == POPULARITY and "simpler popularity" in choice.reason
    assert choose_champion(ev, z=2.0, min_users=30, simpler_z=0.0).champion == RANKER
