"""The quality gate's decision rules."""

from __future__ import annotations

import pytest

from recs_pipeline.compute.quality_gate import GateConfig, KindFigures, decide_gate, judge_kind

CONFIG = GateConfig(min_users=20, max_relative_drop=0.25)


def test_below_popularity_fails() -> None:
    v = judge_kind("teams", KindFigures(0.10, 0.12, 100), previous_ndcg=None, config=CONFIG)
    assert not v.passed and v.judged and "popularity" in v.reason


def test_below_popularity_fails_even_when_close_to_previous() -> None:
    v = judge_kind("teams", KindFigures(0.10, 0.12, 100), previous_ndcg=0.10, config=CONFIG)
    assert not v.passed


def test_drop_beyond_fraction_fails_and_within_passes() -> None:
    # previous 0.40, max drop 25 % -> floor 0.30.
    fail = judge_kind("tournaments", KindFigures(0.29, 0.10, 100), 0.40, CONFIG)
    assert not fail.passed and "28% below" in fail.reason
    edge = judge_kind("tournaments", KindFigures(0.30, 0.10, 100), 0.40, CONFIG)
    assert edge.passed and edge.judged
    better = judge_kind("tournaments", KindFigures(0.50, 0.10, 100), 0.40, CONFIG)
    assert better.passed


def test_too_little_data_passes_with_reason() -> None:
    # Even far below popularity: 19 users cannot be judged.
    v = judge_kind("teams", KindFigures(0.0, 0.5, 19), previous_ndcg=0.9, config=CONFIG)
    assert v.passed and not v.judged and "too little holdout data: 19 users" in v.reason


def test_no_earlier_run_passes_with_reason() -> None:
    v = judge_kind("teams", KindFigures(0.2, 0.1, 50), previous_ndcg=None, config=CONFIG)
    assert v.passed and not v.judged and "no earlier published run" in v.reason


def test_decision_needs_every_kind() -> None:
    current = {
        "tournaments": KindFigures(0.30, 0.10, 100),
        "teams": KindFigures(0.05, 0.10, 100),
    }
    decision = decide_gate(current, {"tournaments": 0.3}, CONFIG)
    assert not decision.passed
    assert [v.kind for v in decision.verdicts] == ["teams", "tournaments"]
    assert [v.passed for v in decision.verdicts] == [False, True]
    assert "teams: FAIL" in decision.summary
    ok = decide_gate({"tournaments": KindFigures(0.30, 0.10, 100)}, None, CONFIG)
    assert ok.passed and "no earlier published run" in ok.summary


@pytest.mark.parametrize("kwargs", [{"min_users": -1}, {"max_relative_drop": 1.5}])
def test_config_validation(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        GateConfig(**kwargs)  # type: ignore[arg-type]


def test_noise_margin_below_popularity() -> None:
    # 0.50 vs 0.52 with stderr 0.015: 2 SE = 0.03 -> a tie, passes (and says so).
    tie = judge_kind("tournaments", KindFigures(0.50, 0.52, 400, diff_stderr=0.015), None, CONFIG)
    assert tie.passed and "within the noise margin 0.0300" in tie.reason
    # 0.48 vs 0.52: below by 0.04 > 0.03 -> fails.
    worse = judge_kind("tournaments", KindFigures(0.48, 0.52, 400, diff_stderr=0.015), None, CONFIG)
    assert not worse.passed
    # strict gate: noise_z = 0
    strict = GateConfig(min_users=20, max_relative_drop=0.25, noise_z=0.0)
    assert not judge_kind("t", KindFigures(0.50, 0.52, 400, diff_stderr=0.015), None, strict).passed
