"""The learned ranker, the pair features it reads and the two-stage path of `recommend`."""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recs_pipeline.compute.names import key_codes, name_vectors, organiser_key, series_key
from recs_pipeline.compute.ranker import (
    CandidatePool,
    RankerParams,
    fit_ranker,
    pool_labels,
    training_rows,
)
from recs_pipeline.compute.reranking import (
    PAIR_FEATURES,
    BlendParts,
    ItemSignals,
    UserSignals,
    pair_features,
)
from recs_pipeline.compute.scoring import ScoringParams, recommend
from recs_pipeline.defs.recommendations.reading import build_user_feature_set
from recs_pipeline_tests.compute.test_scoring import _candidates, _world_inputs
from recs_pipeline_tests.recommendation_world import NOW, world_frames

F = len(PAIR_FEATURES)


def _pool(n_users: int, per_user: int, seed: int = 0) -> tuple[CandidatePool, pd.DataFrame]:
    """Users x items where feature 3 decides who registers (plus noise in the others)."""
    rng = np.random.default_rng(seed)
    users = np.repeat(np.arange(1, n_users + 1), per_user)
    items = np.tile(np.arange(100, 100 + per_user), n_users)
    x = rng.random((len(users), F)).astype(np.float32)
    signal = x[:, 3] + rng.normal(0, 0.05, len(users))
    top = pd.Series(signal).groupby(users).transform("max").to_numpy()
    relevant = pd.DataFrame({"user_id": users[signal == top], "item_id": items[signal == top]})
    return CandidatePool(users, items, x), relevant


def test_pool_labels_and_bounded_training_rows() -> None:
    pool, relevant = _pool(50, 30)
    labels = pool_labels(pool, relevant)
    assert labels.sum() == 50
    params = RankerParams(negatives_per_user=5, max_train_users=20)
    x, y = training_rows(pool, labels, params)
    assert y.sum() == 20  # every positive of the sampled users
    assert len(y) == 20 * (1 + 5)  # and at most 5 negatives each
    assert x.shape == (len(y), F)


def test_fitted_ranker_orders_by_the_signal_and_skips_kinds_without_positives() -> None:
    pool, relevant = _pool(1500, 20)
    empty = CandidatePool.empty()
    ranker = fit_ranker({"tournaments": pool, "teams": empty},
                        {"tournaments": relevant, "teams": relevant.iloc[:0]})
    assert ranker.kinds == {"tournaments"}
    assert ranker.training["teams"]["positives"] == 0
    test, test_relevant = _pool(100, 20, seed=1)

    def top1_hits(scores: np.ndarray) -> int:
        best = pd.DataFrame({"u": test.user_id, "i": test.item_id, "s": scores}).sort_values(
            "s", ascending=False).groupby("u").head(1)
        return len(best.merge(test_relevant, left_on=["u", "i"],
                              right_on=["user_id", "item_id"]))

    oracle = top1_hits(test.features[:, 3])  # the signal itself, noise-free
    learned = top1_hits(ranker.score("tournaments", test.features))
    assert learned >= 0.8 * oracle and learned >= 40  # random: ~5 of 100
    assert len(ranker.fingerprint()) == 8


def test_constant_features_are_left_out() -> None:
    pool, relevant = _pool(300, 20)
    pool.features[:, 5] = 0.25
    pool.features[:, 7] = np.nan
    ranker = fit_ranker({"teams": pool}, {"teams": relevant})
    assert 5 not in ranker.columns["teams"] and 7 not in ranker.columns["teams"]
    assert len(ranker.score("teams", pool.features)) == len(pool)


def test_series_and_organiser_keys_drop_edition_markers() -> None:
    names = pd.Series(["Nova Esports Weekly #12", "nova esports weekly #13", "Redline Open S3 "
                       "Qualifier", "Redline Open 2026 Finals", None, "Valorant EU Cup #4"])
    series = series_key(names)
    assert series.tolist() == ["nova esports weekly", "nova esports weekly", "redline open",
                               "redline open", "", "valorant eu cup"]
    assert organiser_key(series).tolist() == ["nova", "nova", "redline", "redline", "", "valorant"]
    (codes,) = key_codes(series)
    assert codes[0] == codes[1] and codes[2] == codes[3] and codes[4] == -1
    (vectors,) = name_vectors(names)
    assert vectors.shape[0] == 6 and np.allclose(vectors[[0, 2]].multiply(vectors[[0, 2]])
                                                 .sum(axis=1), 1.0)


def test_pair_features_series_share_and_local_hour() -> None:
    # One user: 4 past cups, 3 of series 0, all of organiser 1; region offset +8 h.
    users = UserSignals(
        series_counts=sp.csr_matrix(np.array([[3.0, 1.0]])),
        organiser_counts=sp.csr_matrix(np.array([[0.0, 4.0]])),
        past_tournaments=np.array([4.0]), history=np.array([5.0]),
        name_profile=sp.csr_matrix((1, 0), dtype=np.float32),
        hour_affinity=np.linspace(0.1, 0.8, 8, dtype=np.float32)[None, :],
        utc_offset=np.array([8]),
        local_hour_prior=np.arange(8, dtype=np.float32) / 7,
        factors=np.ones((1, 2), dtype=np.float32),
    )
    items = ItemSignals(
        count=np.array([9.0, 0.0]), listed_days=np.array([2.0, 5.0]),
        hours_to_close=np.array([10.0, 20.0]), utc_hour=np.array([12, -1]),
        series=np.array([0, -1]), organiser=np.array([1, 1]),
        name_vectors=sp.csr_matrix((2, 0), dtype=np.float32),
        embedding=np.array([[1.0, 2.0], [0.0, 0.0]], dtype=np.float32),
    )
    n = 2
    parts = BlendParts(blend=np.array([0.5, 0.4]), affinity=[np.array([1.0, 0.5])],
                       collaborative_cosine=np.zeros(n), coplay_players=np.array([2.0, 0.0]),
                       skill_signal=np.ones(n), skill=np.array([1500.0, 1500.0]),
                       avg_skill=np.array([1000.0, np.nan]), skill_min=np.array([1000.0, np.nan]),
                       skill_max=np.array([2000.0, np.nan]), fill_rate=np.array([0.3, 0.0]))
    out = pair_features(np.array([0, 0]), np.array([0, 0]), np.array([0, 1]), parts, items, users)
    col = {name: i for i, name in enumerate(PAIR_FEATURES)}
    assert out.shape == (2, F) and out.dtype == np.float32
    assert out[0, col["series_share"]] == 0.75 and np.isnan(out[1, col["series_share"]])
    assert out[1, col["organiser_share"]] == 1.0
    assert out[0, col["collaborative_dot"]] == 3.0
    assert out[0, col["skill_gap"]] == 0.5 and out[0, col["band_position"]] == 0.5
    assert np.isnan(out[1, col["band_position"]])
    # 12:00 UTC is 20:00 local (+8): bin 6; the UTC bin is 4.
    assert out[0, col["local_hour_prior"]] == np.float32(6 / 7)
    assert out[0, col["hour_affinity"]] == np.float32(np.linspace(0.1, 0.8, 8)[4])
    assert np.isnan(out[1, col["hour_affinity"]])
    assert out[0, col["log_count"]] == np.float32(np.log1p(9.0))


class _BlendAgain:
    """A 'learned' scorer that returns the blend itself: the two stages must then agree."""

    name = "ranker"

    def score(self, kind: str, features: np.ndarray) -> np.ndarray:
        return features[:, PAIR_FEATURES.index("blend")].astype(np.float64)

    def fingerprint(self) -> str:
        return "0" * 8


class _Reverse(_BlendAgain):
    def score(self, kind: str, features: np.ndarray) -> np.ndarray:
        return 1.0 - features[:, PAIR_FEATURES.index("blend")].astype(np.float64)


def _world() -> tuple:  # type: ignore[type-arg]
    frames = world_frames()
    users = build_user_feature_set(_world_inputs(frames), NOW)
    return (users, *_candidates(frames))


def test_two_stage_with_the_blend_as_scorer_is_the_blend() -> None:
    users, tc, mc = _world()
    params = ScoringParams(top_k=2, pool_size=5)
    plain = recommend(users, tc, mc, params, NOW)
    both = {"tournaments": _BlendAgain(), "teams": _BlendAgain()}
    staged = recommend(users, tc, mc, params, NOW, rerankers=both)
    for kind, item in (("tournaments", "tournament_id"), ("teams", "team_id")):
        a, b = getattr(plain, kind), getattr(staged, kind)
        pd.testing.assert_frame_equal(a[["user_id", item, "rank"]], b[["user_id", item, "rank"]])
        assert b["model_version"].str.startswith("ranker-v1-").all()
        assert a["model_version"].str.startswith("blend-v1-").all()


def test_a_scorer_reorders_the_pool_and_pools_are_collected() -> None:
    users, tc, mc = _world()
    params = ScoringParams(top_k=1, pool_size=10)
    recs = recommend(users, tc, mc, params, NOW, rerankers={"teams": _Reverse()},
                     collect_pools=True)
    plain = recommend(users, tc, mc, params, NOW)
    pool = recs.pools["teams"]
    assert pool.features.shape == (len(pool), F)
    blend = pd.DataFrame({"user_id": pool.user_id, "team_id": pool.item_id,
                          "b": pool.features[:, 0]})
    worst = blend.sort_values(["user_id", "b"]).groupby("user_id").head(1)
    best = blend.sort_values(["user_id", "b"], ascending=[True, False]).groupby("user_id").head(1)
    picked = recs.teams[["user_id", "team_id"]].sort_values("user_id").reset_index(drop=True)
    assert picked.equals(worst[["user_id", "team_id"]].reset_index(drop=True))
    assert plain.teams[["user_id", "team_id"]].sort_values("user_id").reset_index(
        drop=True).equals(best[["user_id", "team_id"]].reset_index(drop=True))
    # tournaments were not re-ranked: the same as the plain run
    pd.testing.assert_frame_equal(recs.tournaments, plain.tournaments)
