"""The quality gate's verdict rules: it warns, it never blocks."""

from __future__ import annotations

import pytest

from recs_pipeline.compute.quality_gate import GateConfig, KindFigures, decide_gate, judge_kind

CONFIG = GateConfig(min_users=20, max_relative_drop=0.25)


def _ranker(ndcg: float, users: int = 100) -> KindFigures:
    return KindFigures("ranker", "ranker has the best NDCG@10", ndcg, users, ndcg, True)


def test_ranker_published_passes() -> None:
    v = judge_kind("teams", _ranker(0.3), previous_ndcg=None, config=CONFIG)
    assert v.passed and v.judged and "no earlier published run" in v.reason


def test_fallback_to_another_contender_warns_with_what_is_published() -> None:
    lost = KindFigures("popularity", "popularity has the best NDCG@10 (0.2500)", 0.25, 100,
                       ranker_ndcg=0.20, ranker_trained=True)
    v = judge_kind("tournaments", lost, previous_ndcg=None, config=CONFIG)
    assert not v.passed and v.judged
    assert "learned ranker (NDCG 0.2000) lost" in v.reason
    assert "publishing popularity (NDCG 0.2500)" in v.reason


def test_no_ranker_tonight_warns() -> None:
    untrained = KindFigures("blend", "blend has the best NDCG@10", 0.3, 100)
    v = judge_kind("teams", untrained, previous_ndcg=None, config=CONFIG)
    assert not v.passed and "no learned ranker tonight" in v.reason


def test_drop_beyond_fraction_warns_and_within_passes() -> None:
    # previous 0.40, max drop 25 % -> floor 0.30.
    fail = judge_kind("tournaments", _ranker(0.29), 0.40, CONFIG)
    assert not fail.passed and "28% below" in fail.reason and "publishing ranker" in fail.reason
    edge = judge_kind("tournaments", _ranker(0.30), 0.40, CONFIG)
    assert edge.passed and edge.judged
    assert judge_kind("tournaments", _ranker(0.50), 0.40, CONFIG).passed


def test_too_little_data_passes_with_reason() -> None:
    few = KindFigures("blend", "too little holdout data", 0.0, 19)
    v = judge_kind("teams", few, previous_ndcg=0.9, config=CONFIG)
    assert v.passed and not v.judged and "too little holdout data: 19 users" in v.reason


def test_decision_needs_every_kind() -> None:
    current = {"tournaments": _ranker(0.30), "teams": KindFigures("blend", "b", 0.05, 100)}
    decision = decide_gate(current, {"tournaments": 0.3}, CONFIG)
    assert not decision.passed
    assert [v.kind for v in decision.verdicts] == ["teams", "tournaments"]
    assert [v.passed for v in decision.verdicts] == [False, True]
    assert "teams: WARN" in decision.summary
    assert decide_gate({"tournaments": _ranker(0.30)}, None, CONFIG).passed


@pytest.mark.parametrize("kwargs", [{"min_users": -1}, {"max_relative_drop": 1.5},
                                    {"noise_z": -1.0}])
def test_config_validation(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        GateConfig(**kwargs)  # type: ignore[arg-type]
