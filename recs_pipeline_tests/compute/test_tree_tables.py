"""The ranker's trees as lookup tables give exactly scikit-learn's probabilities."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier

from recs_pipeline.compute.ranker import RankerParams, fit_ranker
from recs_pipeline.compute.tree_tables import compile_trees
from recs_pipeline_tests.compute.test_ranker import _pool


def _data(rows: int, columns: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """float32 features with NaNs; the label depends on several columns and on missingness."""
    rng = np.random.default_rng(seed)
    x = rng.random((rows, columns)).astype(np.float32)
    x[rng.random(x.shape) < 0.2] = np.nan
    z = (np.nan_to_num(x[:, 0]) + 0.5 * np.nan_to_num(x[:, 1], nan=0.9)
         - 0.4 * np.nan_to_num(x[:, 2]) * np.nan_to_num(x[:, 3]) + 0.3 * np.isnan(x[:, 4])
         + 0.2 * np.sin(6 * np.nan_to_num(x[:, 5])) + rng.normal(0, 0.3, rows))
    return x, (z > 0.7).astype(np.int64)


def _at_thresholds(x: np.ndarray, model: HistGradientBoostingClassifier) -> np.ndarray:
    """`x` with rows set exactly to every split threshold (as float32, as the pool holds them):
    where `<=` against `>` decides."""
    compiled = compile_trees(model)
    x = x.copy()
    for column, thresholds in zip(compiled.columns.tolist(), compiled.thresholds, strict=True):
        x[: len(thresholds), column] = thresholds.astype(np.float32)
        x[len(thresholds): 2 * len(thresholds), column] = np.nextafter(
            thresholds.astype(np.float32), np.float32(np.inf))
    return x


@pytest.mark.parametrize(("leaves", "iterations"), [(2, 10), (4, 60), (6, 80), (8, 40)])
def test_compiled_probabilities_equal_predict_proba(leaves: int, iterations: int) -> None:
    x, y = _data(20_000, 12, seed=leaves)
    model = HistGradientBoostingClassifier(
        max_iter=iterations, max_leaf_nodes=leaves, learning_rate=0.15, min_samples_leaf=20,
        early_stopping=False, random_state=0).fit(x, y)
    test, _ = _data(30_000, 12, seed=100 + leaves)
    test = _at_thresholds(test, model)
    compiled = compile_trees(model)
    expected = model.predict_proba(test)[:, 1]
    np.testing.assert_allclose(compiled.predict_proba_positive(test), expected,
                               rtol=0, atol=1e-12)
    # the label reads several columns: so do the trees (stumps: the two strongest)
    assert len(compiled.columns) >= (2 if leaves == 2 else 4)
    if leaves >= 6:  # trees on more columns than one table may hold: several tables
        assert len(compiled.tables) > 1


def test_a_model_without_splits_is_its_constant() -> None:
    x = np.zeros((200, 3), dtype=np.float32)  # nothing to split on
    y = np.r_[np.zeros(150), np.ones(50)].astype(np.int64)
    model = HistGradientBoostingClassifier(max_iter=5, early_stopping=False).fit(x, y)
    compiled = compile_trees(model)
    assert compiled.tables == ()
    np.testing.assert_allclose(compiled.predict_proba_positive(x),
                               model.predict_proba(x)[:, 1], atol=1e-12)
    assert compiled.predict_proba_positive(x[:0]).shape == (0,)


def test_multiclass_is_refused() -> None:
    x, y = _data(3_000, 6, seed=1)
    model = HistGradientBoostingClassifier(max_iter=3).fit(x, y + (x[:, 0] > 0.9))
    with pytest.raises(ValueError, match="binary"):
        compile_trees(model)


def test_the_fitted_ranker_scores_with_the_tables_and_matches_sklearn() -> None:
    pool, relevant = _pool(600, 12)
    ranker = fit_ranker({"tournaments": pool}, {"tournaments": relevant}, RankerParams())
    assert "tournaments" in ranker.compiled
    columns = ranker.columns["tournaments"]
    expected = ranker.models["tournaments"].predict_proba(pool.features[:, columns])[:, 1]
    np.testing.assert_allclose(ranker.score("tournaments", pool.features), expected, atol=1e-12)


def test_deep_trees_fall_back_to_predict_proba() -> None:
    pool, relevant = _pool(600, 12)
    deep = RankerParams(max_leaf_nodes=63, min_samples_leaf=2, max_iter=5)
    ranker = fit_ranker({"tournaments": pool}, {"tournaments": relevant}, deep)
    assert "tournaments" in ranker.models and "tournaments" not in ranker.compiled
    columns = ranker.columns["tournaments"]
    expected = ranker.models["tournaments"].predict_proba(pool.features[:, columns])[:, 1]
    np.testing.assert_allclose(ranker.score("tournaments", pool.features), expected)
