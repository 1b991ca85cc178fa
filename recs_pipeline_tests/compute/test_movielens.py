"""MovieLens protocol on tiny synthetic `.inter` text (no download in tests)."""

from __future__ import annotations

import argparse

import numpy as np
import pytest
import scipy.sparse as sp

from recs_pipeline.compute.movielens import (
    InterFormatError,
    evaluate_scorer,
    parse_inter,
    rank_all_items,
    split_counts,
    split_per_user,
)
from recs_pipeline.devtools.bench.quality import (
    Spread,
    fit_collaborative_cosine,
    fit_collaborative_dot,
    production_collaborative_params,
    seed_list,
)

HEADER = "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"


def _inter(pairs: list[tuple[str, str]]) -> str:
    return HEADER + "".join(f"{u}\t{i}\t4\t{n}\n" for n, (u, i) in enumerate(pairs))


def test_parse_maps_tokens_and_drops_repeats() -> None:
    text = _inter([("7", "b"), ("3", "a"), ("7", "a"), ("7", "b")]) + "\n"
    data = parse_inter(text)
    assert data.user_ids.tolist() == ["3", "7"]
    assert data.item_ids.tolist() == ["a", "b"]
    pairs = sorted(zip(data.user_ids[data.users], data.item_ids[data.items], strict=True))
    assert pairs == [("3", "a"), ("7", "a"), ("7", "b")]  # the repeated (7, b) counted once


def test_parse_column_order_from_header() -> None:
    text = "item_id:token\tuser_id:token\nx\tu1\ny\tu1\n"
    data = parse_inter(text)
    assert data.user_ids.tolist() == ["u1"] and len(data) == 2


@pytest.mark.parametrize(
    ("text", "match"),
    [("", "empty"), ("user:token\titem:token\n1\t2\n", "user_id"), (HEADER + "1\t2\n", "line 2")],
)
def test_parse_rejects_bad_input(text: str, match: str) -> None:
    with pytest.raises(InterFormatError, match=match):
        parse_inter(text)


def test_split_counts_follow_recbole() -> None:
    # n=20: 16/2/2. n=10: 8/1/1. n=5: int(0.5)=0 -> bumped to 1 each: 3/1/1.
    # n=2: train 2 -> test bumped (2 > 1), then train has 1 -> valid is not: 1/0/1. n=1: 1/0/0.
    counts = split_counts(np.array([20, 10, 5, 2, 1]))
    assert counts.tolist() == [[16, 2, 2], [8, 1, 1], [3, 1, 1], [1, 0, 1], [1, 0, 0]]


def test_split_partitions_each_users_interactions() -> None:
    rng = np.random.default_rng(0)
    pairs = [(f"u{u}", f"i{i}") for u in range(30) for i in rng.choice(50, 20, replace=False)]
    data = parse_inter(_inter(pairs))
    train, valid, test = split_per_user(data, seed=1)
    assert (train.nnz, valid.nnz, test.nnz) == (30 * 16, 30 * 2, 30 * 2)
    assert (train + valid + test).max() == 1  # disjoint
    full = sp.csr_matrix((np.ones(len(data)), (data.users, data.items)), shape=train.shape)
    assert ((train + valid + test) != full).nnz == 0  # and complete
    assert np.all(np.diff(test.indptr) == 2)
    # deterministic for a seed, different for another
    again = split_per_user(data, seed=1)[2]
    other = split_per_user(data, seed=2)[2]
    assert (again != test).nnz == 0 and (other != test).nnz > 0


def test_rank_all_items_masks_seen_and_evaluates() -> None:
    # 2 users, 5 items; a fixed score order 4 > 3 > 2 > 1 > 0 for everyone.
    seen = sp.csr_matrix(np.array([[0, 0, 0, 0, 1], [0, 1, 1, 1, 1]], dtype=np.float32))
    holdout = sp.csr_matrix(np.array([[0, 0, 1, 0, 0], [1, 0, 0, 0, 0]], dtype=np.float32))

    def score_fn(users: np.ndarray) -> np.ndarray:
        return np.tile(np.arange(5, dtype=np.float64), (users.size, 1))

    ranked = rank_all_items(score_fn, seen, k=3, batch_size=1)
    assert ranked.tolist() == [[3, 2, 1], [0, -1, -1]]
    m = evaluate_scorer(score_fn, seen, holdout, k=3)
    # user 0: hit at rank 2 -> 1/log2(3); user 1: hit at rank 1 -> 1.
    assert m.ndcg == pytest.approx((1 / np.log2(3) + 1.0) / 2)
    assert m.recall == 1.0 and m.hit_rate == 1.0
    assert m.coverage == pytest.approx(4 / 5)


def test_bench_scores_the_collaborative_model_as_production_does() -> None:
    from recs_pipeline.compute.collaborative import fit_collaborative

    rng = np.random.default_rng(3)
    train = sp.csr_matrix((rng.random((60, 40)) < 0.2).astype(np.float32))
    model = fit_collaborative(train, production_collaborative_params())
    factors, items = model.user_factors, model.embed_items(sp.csr_matrix(train.T))
    users = np.arange(60)
    dot = factors @ items.T
    u_len = np.linalg.norm(factors, axis=1, keepdims=True)
    i_len = np.linalg.norm(items, axis=1, keepdims=True)
    cosine = np.clip(dot / np.maximum(u_len, 1e-12) / np.maximum(i_len, 1e-12).T, 0.0, None)
    assert np.allclose(fit_collaborative_dot(train, {})(users), dot, atol=1e-5)
    assert np.allclose(fit_collaborative_cosine(train)(users), cosine, atol=1e-5)
    assert (cosine == 0).any() and (cosine > 0).any()  # the clip matters on this data


def test_bench_seed_list_and_spread() -> None:
    assert seed_list("2020, 2021,2022") == [2020, 2021, 2022]
    for bad in ("a,1", "1,1", ","):
        with pytest.raises(argparse.ArgumentTypeError):
            seed_list(bad)
    spread = Spread.of([0.1, 0.2, 0.3])
    assert spread.mean == pytest.approx(0.2) and spread.std == pytest.approx(0.1)
    assert spread.mean_std() == "0.2000 ± 0.1000" and spread.range() == "0.1000..0.3000"
    assert Spread.of([0.5]).std is None and Spread.of([0.5]).mean_std() == "0.5000"
