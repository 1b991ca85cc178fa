"""Hostile game names and regions: the nightly publishes plain, bounded reasons, and `no_pii`
blocks emails (email-shaped text, or the row's own user's address), not an `@` in a game name.
"""

from __future__ import annotations

import unicodedata

import dagster as dg
import pandas as pd
import pytest
from sqlalchemy.engine import Engine

from recs_pipeline import schema
from recs_pipeline.compute.scoring import REASON_MAX_CHARS, Recommendations
from recs_pipeline.defs.recommendations import assets as rec_assets
from recs_pipeline.defs.recommendations.checks import (
    RECOMMENDATION_CHECKS,
    CheckOutcome,
    evaluate_recommendation_checks,
    staged_own_email_rows,
    summarize_recommendations,
)
from recs_pipeline.defs.recommendations.publishing import TOURNAMENTS, stage
from recs_pipeline.resources import AppDatabase
from recs_pipeline_tests.defs.recommendations.test_assets import (
    _check_evaluations,
    _materialize,
    _pairs,
    _published,
)
from recs_pipeline_tests.recommendation_world import (
    EXPECTED_TEAMS,
    EXPECTED_TOURNAMENTS,
    NOW,
    expected_pairs,
    insert_world,
    world_frames,
)

HOSTILE_GAME = "R@cing League <b>"
SANITISED_GAME = "R cing League"
# users/tournaments/teams.region are varchar(16): as hostile as fits on PostgreSQL
HOSTILE_REGION = "ASIA<script>\"&'"
FORBIDDEN = set("<>&\"'@`")


def _hostile_world() -> dict[str, pd.DataFrame]:
    """The test world with game 1 renamed and user 6's unknown region ("mars") replaced: user 6
    gets tournament 107 and team 12, both in that region."""
    frames = world_frames()
    frames["games"].loc[frames["games"]["id"] == 1, "name"] = HOSTILE_GAME
    for table in ("users", "tournaments", "teams"):
        frame = frames[table]
        frame.loc[frame["region"] == "mars", "region"] = HOSTILE_REGION
    return frames


def _unsafe(reason: str) -> list[str]:
    # The one apostrophe the pipeline's own wording uses ("you've") is not from any name.
    text = reason.replace("you've", "")
    return [ch for ch in text if ch in FORBIDDEN or unicodedata.category(ch) in ("Cc", "Cf")]


def test_hostile_names_and_regions_publish_plain_bounded_reasons(
    app_db: AppDatabase, engine: Engine, dagster_instance: dg.DagsterInstance
) -> None:
    insert_world(engine, _hostile_world())
    result = _materialize(app_db, dagster_instance)
    assert result.success
    checks = _check_evaluations(result)
    assert checks[("tournament_recommendations", "no_pii")] is True
    assert all(checks.values())
    t = _published(engine, schema.tournament_recommendations)
    m = _published(engine, schema.team_recommendations)
    assert _pairs(t, "tournament_id") == expected_pairs(EXPECTED_TOURNAMENTS)
    assert _pairs(m, "team_id") == expected_pairs(EXPECTED_TEAMS)
    reasons = [*t["reason"], *m["reason"]]
    for reason in reasons:
        assert 1 <= len(reason) <= REASON_MAX_CHARS
        assert not _unsafe(reason), reason
        assert "script" not in reason.lower() and "R@cing" not in reason
    assert any(SANITISED_GAME in r for r in reasons)
    # user 6's region is unknown: its reasons say "in your region", never the stored string
    user6 = [*t.loc[t["user_id"] == 6, "reason"], *m.loc[m["user_id"] == 6, "reason"]]
    assert len(user6) == 2 and all("in your region" in r for r in user6)
    # no preview (candidates, features, recommendations) shows a raw name, region or an `@`
    previews = [
        str(mat.metadata["preview"].value)
        for node in ("user_features", "tournament_candidates", "team_candidates",
                     "publish_recommendations")
        for mat in result.asset_materializations_for_node(node)
    ]
    assert len(previews) == 5
    for preview in previews:
        assert "@" not in preview and "<" not in preview and ">" not in preview
        assert "R@cing" not in preview
    assert any(SANITISED_GAME in p for p in previews)


# --- no_pii ------------------------------------------------------------------------------------


def _rows(reasons: dict[int, str]) -> pd.DataFrame:
    return pd.DataFrame({
        "user_id": list(reasons), "tournament_id": [100] * len(reasons),
        "rank": [1] * len(reasons), "score": [0.5] * len(reasons), "reason": list(reasons.values()),
        "model_version": ["blend-v1-00000000"] * len(reasons), "generated_at": [NOW] * len(reasons),
    })


def _no_pii(frame: pd.DataFrame, **staged: int) -> CheckOutcome:
    summary = {**summarize_recommendations(frame, "tournament_id", 10), **staged}
    outcomes = evaluate_recommendation_checks(
        "tournaments", summary, pd.DataFrame(columns=["violation"]),
        users_with_candidates=frame["user_id"].nunique(), expected_rows=len(frame), top_k=10)
    return next(o for o in outcomes if o.name == "no_pii")


def test_a_staged_reason_holding_its_users_own_email_fails_no_pii(engine: Engine) -> None:
    frames = world_frames()
    # Not email-shaped (no dot after the `@`): only the join to the user's row can find it.
    frames["users"].loc[frames["users"]["id"] == 1, "email"] = "Player.One@lan"
    insert_world(engine, frames)
    frame = _rows({1: "Ask player.one@LAN for an invite", 2: "Popular EU Chess tournament",
                   3: "Popular NA Chess tournament"})
    stage(engine, TOURNAMENTS, frame)
    with engine.connect() as conn:
        own = staged_own_email_rows(conn, TOURNAMENTS.staging_name)
    assert own == 1
    outcome = _no_pii(frame, rows_with_own_email=own)
    assert not outcome.passed
    assert outcome.metadata["own_email"] == 1 and outcome.metadata["email_like"] == 0
    # counts only: the address never reaches the outcome (metadata, description)
    assert "lan" not in (str(outcome.metadata) + outcome.description).lower()
    # the same sentence for a user whose address it is not: nothing of theirs leaked
    stage(engine, TOURNAMENTS, _rows({2: "Ask player.one@LAN for an invite"}))
    with engine.connect() as conn:
        assert staged_own_email_rows(conn, TOURNAMENTS.staging_name) == 0


def test_an_email_shaped_reason_fails_no_pii() -> None:
    outcome = _no_pii(_rows({1: "Write to bob.smith+cups@mail.example.org", 2: "fine"}),
                      rows_with_own_email=0)
    assert not outcome.passed
    assert outcome.metadata["email_like"] == 1


def test_an_at_sign_in_a_game_name_does_not_fail_no_pii() -> None:
    outcome = _no_pii(_rows({1: "Popular EU R@cing League tournament, 1/8 registered",
                             2: "R@cing @ 5, @home"}), rows_with_own_email=0)
    assert outcome.passed, outcome.description
    assert outcome.metadata["email_like"] == 0


def test_no_pii_description_says_what_it_looks_for() -> None:
    text = RECOMMENDATION_CHECKS["no_pii"]
    assert "own" in text and "email-shaped" in text


@pytest.mark.parametrize(("reason", "passes"), [
    ("Ask player.one@LAN for an invite", False),  # user 1's own address (not email-shaped)
    ("Write to someone@mail.example.org", False),  # email-shaped
    ("Popular EU R@cing League tournament", True),  # an `@` alone
])
def test_the_nightly_no_pii_check_looks_for_own_and_email_shaped_addresses(
    reason: str, passes: bool, app_db: AppDatabase, engine: Engine,
    dagster_instance: dg.DagsterInstance, monkeypatch: pytest.MonkeyPatch,
) -> None:
    frames = world_frames()
    frames["users"].loc[frames["users"]["id"] == 1, "email"] = "Player.One@lan"
    insert_world(engine, frames)
    real_recommend = rec_assets.recommend_with

    def leaky(*args, **kwargs) -> Recommendations:  # type: ignore[no-untyped-def]
        recs = real_recommend(*args, **kwargs)
        recs.tournaments.loc[recs.tournaments["user_id"] == 1, "reason"] = reason
        return recs

    monkeypatch.setattr(rec_assets, "recommend_with", leaky)
    result = _materialize(app_db, dagster_instance)
    assert result.success is passes
    checks = _check_evaluations(result)
    assert checks[("tournament_recommendations", "no_pii")] is passes
    assert checks[("team_recommendations", "no_pii")] is True
    published = _published(engine, schema.tournament_recommendations)
    assert published.empty is not passes  # a failed check leaves the (empty) tables as they were
