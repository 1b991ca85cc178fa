"""Ranking metrics: hand-computed cases, and agreement with ranx on random runs."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import scipy.sparse as sp

from recs_pipeline.compute.metrics import (
    catalogue_coverage,
    evaluate_rankings,
    per_user_metrics,
    top_k_from_scores,
)


def _relevant(n_users: int, n_items: int, sets: dict[int, list[int]]) -> sp.csr_array:
    rows = [u for u, items in sets.items() for _ in items]
    cols = [i for items in sets.values() for i in items]
    return sp.csr_array(
        (np.ones(len(rows)), (rows, cols)), shape=(n_users, n_items), dtype=np.float64
    )


def test_hand_computed_two_users() -> None:
    # user 0: relevant {0, 2}; ranked [0, 5, 2] -> hits at positions 0 and 2.
    # user 1: relevant {3}; ranked [4, 3, -1] -> hit at position 1.
    # user 2: no relevant items -> excluded from the averages.
    ranked = np.array([[0, 5, 2], [4, 3, -1], [1, 2, 3]])
    relevant = _relevant(3, 6, {0: [0, 2], 1: [3]})
    m = evaluate_rankings(ranked, relevant, k=3)
    ndcg0 = (1 + 1 / math.log2(4)) / (1 + 1 / math.log2(3))
    ndcg1 = (1 / math.log2(3)) / 1.0
    assert m.users_evaluated == 2
    assert m.ndcg == pytest.approx((ndcg0 + ndcg1) / 2)
    assert m.recall == pytest.approx((1.0 + 1.0) / 2)
    assert m.hit_rate == pytest.approx(1.0)
    # items 0,5,2,4,3,1 all recommended in the top 3 -> 6 of 6.
    assert m.coverage == pytest.approx(1.0)

    m2 = evaluate_rankings(ranked, relevant, k=2)
    # user 0: hit at 0 only, ideal 2 hits; recall 1/2. user 1: hit at 1; recall 1.
    assert m2.ndcg == pytest.approx((1 / (1 + 1 / math.log2(3)) + 1 / math.log2(3)) / 2)
    assert m2.recall == pytest.approx(0.75)
    assert m2.coverage == pytest.approx(1.0)  # 0, 5 | 4, 3 | 1, 2
    assert evaluate_rankings(ranked, relevant, k=1).coverage == pytest.approx(3 / 6)  # 0, 4, 1
    # coverage against a larger catalogue than the relevant matrix's columns
    assert evaluate_rankings(ranked, relevant, k=1, n_items=12).coverage == pytest.approx(3 / 12)


def test_recall_divides_by_all_relevant_not_k() -> None:
    ranked = np.array([[0, 1]])
    relevant = _relevant(1, 5, {0: [0, 1, 2, 3]})
    per_user = per_user_metrics(ranked, relevant, k=2)
    assert per_user["recall"][0] == pytest.approx(0.5)
    assert per_user["ndcg"][0] == pytest.approx(1.0)  # both ideal slots filled


def test_no_hits_and_no_users() -> None:
    ranked = np.array([[1, 2], [0, 1]])
    relevant = _relevant(2, 4, {0: [3]})
    m = evaluate_rankings(ranked, relevant, k=2)
    assert (m.ndcg, m.recall, m.hit_rate, m.users_evaluated) == (0.0, 0.0, 0.0, 1)
    empty = evaluate_rankings(ranked, _relevant(2, 4, {}), k=2)
    assert empty.users_evaluated == 0 and empty.ndcg == 0.0


def test_rejects_duplicates_and_out_of_range() -> None:
    relevant = _relevant(1, 4, {0: [1]})
    with pytest.raises(ValueError, match="repeat"):
        evaluate_rankings(np.array([[1, 1]]), relevant, k=2)
    with pytest.raises(ValueError, match="n_items"):
        evaluate_rankings(np.array([[7, 1]]), relevant, k=2)
    # padding may repeat
    assert evaluate_rankings(np.array([[1, -1, -1]]), relevant, k=3).ndcg == 1.0


def test_coverage_and_top_k() -> None:
    assert catalogue_coverage(np.array([[0, -1], [0, 2]]), n_items=4, k=2) == 0.5
    scores = np.array([[0.1, 0.9, -np.inf, 0.5], [-np.inf, -np.inf, 1.0, -np.inf]])
    top = top_k_from_scores(scores, 3)
    assert top[0].tolist() == [1, 3, 0]
    assert top[1].tolist()[0] == 2 and top[1].tolist()[1:] == [-1, -1]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_agrees_with_ranx_on_random_runs(seed: int) -> None:
    import ranx  # dev dependency; slow to import (numba), so only here
    rng = np.random.default_rng(seed)
    n_users, n_items, depth = 60, 40, 20
    ranked = np.stack([rng.permutation(n_items)[:depth] for _ in range(n_users)])
    # Some users get short lists (padding), some get no relevant items at all.
    short = rng.random(n_users) < 0.2
    ranked[short, 12:] = -1
    sets = {
        u: rng.choice(n_items, size=int(rng.integers(1, 9)), replace=False).tolist()
        for u in range(n_users)
        if rng.random() > 0.15
    }
    relevant = _relevant(n_users, n_items, sets)
    qrels = ranx.Qrels({f"u{u}": {f"i{i}": 1 for i in items} for u, items in sets.items()})
    run = ranx.Run(
        {
            f"u{u}": {f"i{i}": float(depth - p) for p, i in enumerate(ranked[u]) if i >= 0}
            for u in sets
        }
    )
    for k in (1, 3, 5, 10, 20):
        ours = evaluate_rankings(ranked, relevant, k=k)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            theirs = ranx.evaluate(
                qrels, run, [f"ndcg@{k}", f"recall@{k}", f"hit_rate@{k}"], make_comparable=True
            )
        assert ours.users_evaluated == len(sets)
        assert ours.ndcg == pytest.approx(theirs[f"ndcg@{k}"], abs=1e-9)
        assert ours.recall == pytest.approx(theirs[f"recall@{k}"], abs=1e-9)
        assert ours.hit_rate == pytest.approx(theirs[f"hit_rate@{k}"], abs=1e-9)
