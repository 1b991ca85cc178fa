"""Blend scoring, top-K and reasons on the hand-built world (no database)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from recs_pipeline.compute.candidates import build_team_candidates, build_tournament_candidates
from recs_pipeline.compute.scoring import (
    BlendWeights,
    Recommendations,
    ScoringParams,
    build_reasons,
    coplay_counts,
    recommend,
    top_k_per_user,
)
from recs_pipeline.defs.recommendations.reading import UserInputs, build_user_feature_set
from recs_pipeline_tests.recommendation_world import (
    EXPECTED_TEAMS,
    EXPECTED_TOURNAMENTS,
    NOW,
    expected_pairs,
    world_frames,
)


def _world_inputs(frames: dict[str, pd.DataFrame]) -> UserInputs:
    """What `read_user_inputs` returns, built with pandas from the same rows."""
    users = frames["users"].rename(columns={"id": "user_id"})
    profiles = frames["game_profiles"][["user_id", "game_id", "skill_rating"]]
    users = users[users["user_id"].isin(profiles["user_id"]) & users["is_active"]]
    tp = frames["tournament_participants"]
    t = frames["tournaments"].rename(columns={"id": "tournament_id"})
    tm = frames["team_members"]
    return UserInputs(
        users=users[["user_id", "region", "is_active"]],
        profiles=profiles[profiles["user_id"].isin(users["user_id"])],
        activity_counts=pd.DataFrame(columns=["user_id", "activities_7d", "activities_30d",
                                              "activities_90d", "last_activity_at"]),
        unknown_activity_types={},
        participation=pd.DataFrame(columns=["user_id"]),
        team_counts=pd.DataFrame(columns=["user_id"]),
        completeness=pd.DataFrame(columns=["user_id", "percentage"]),
        tournament_history=tp[["user_id", "tournament_id"]],
        team_history=tm[["user_id", "team_id"]].drop_duplicates(),
        tournaments=t[["tournament_id", "game_id", "region", "status", "max_participants",
                       "skill_min", "skill_max", "starts_at"]],
        teams=frames["teams"].rename(columns={"id": "team_id"})[["team_id", "game_id", "region"]],
    )


def _candidates(frames: dict[str, pd.DataFrame]):  # type: ignore[no-untyped-def]
    t = frames["tournaments"].rename(columns={"id": "tournament_id"})
    tp = frames["tournament_participants"]
    skill = frames["game_profiles"][["user_id", "game_id", "skill_rating"]]
    regs = tp.merge(t[["tournament_id", "game_id"]], on="tournament_id").merge(
        skill, on=["user_id", "game_id"], how="left")
    agg = regs.groupby("tournament_id").agg(registered=("user_id", "size"),
                                            avg_skill=("skill_rating", "mean"))
    t = t.merge(agg, left_on="tournament_id", right_index=True, how="left")
    t["game_name"] = t["game_id"].map({1: "Valorant", 2: "Chess"})
    tc = build_tournament_candidates(t, tp[["tournament_id", "user_id"]], NOW)
    m = frames["teams"].rename(columns={"id": "team_id"})
    cur = frames["team_members"][frames["team_members"]["left_at"].isna()]
    cur_skill = cur.merge(m[["team_id", "game_id"]], on="team_id").merge(
        skill, on=["user_id", "game_id"], how="left")
    agg = cur_skill.groupby("team_id").agg(members=("user_id", "nunique"),
                                           avg_skill=("skill_rating", "mean"))
    m = m.merge(agg, left_on="team_id", right_index=True, how="left")
    m["game_name"] = m["game_id"].map({1: "Valorant", 2: "Chess"})
    mc = build_team_candidates(m, cur[["team_id", "user_id"]], NOW)
    return tc, mc


def _recommend(params: ScoringParams | None = None, frames=None) -> Recommendations:  # type: ignore[no-untyped-def]
    frames = frames or world_frames()
    users = build_user_feature_set(_world_inputs(frames), NOW)
    tc, mc = _candidates(frames)
    return recommend(users, tc, mc, params or ScoringParams(), NOW)


def _pairs(frame: pd.DataFrame, item: str) -> set[tuple[int, int]]:
    return set(zip(frame["user_id"].tolist(), frame[item].tolist(), strict=True))


def test_every_eligibility_rule_and_bad_input() -> None:
    recs = _recommend()
    assert _pairs(recs.tournaments, "tournament_id") == expected_pairs(EXPECTED_TOURNAMENTS)
    assert _pairs(recs.teams, "team_id") == expected_pairs(EXPECTED_TEAMS)
    assert recs.users_with_candidates == {"tournaments": 3, "teams": 5}


def test_ranks_scores_and_versions() -> None:
    recs = _recommend()
    for frame in (recs.tournaments, recs.teams):
        assert ((frame["score"] > 0) & (frame["score"] <= 1)).all()
        for _, g in frame.groupby("user_id"):
            assert g["rank"].tolist() == list(range(1, len(g) + 1))
            assert g["score"].is_monotonic_decreasing
        assert frame["model_version"].str.match(r"^blend-v1-[0-9a-f]{8}$").all()
        assert (frame["generated_at"] == pd.Timestamp(NOW)).all()


def test_top_k_limits_rows_per_user() -> None:
    recs = _recommend(ScoringParams(top_k=1))
    assert recs.tournaments.groupby("user_id").size().max() == 1
    assert set(recs.tournaments["user_id"]) == set(EXPECTED_TOURNAMENTS)


def test_reserve_is_the_ranking_after_the_top_k() -> None:
    """With top_k=1 and a reserve, the published rows are unchanged and each user's reserve is
    the rest of the same model's ranking (ranks 2..), as a full top-K run would have ranked it."""
    published = _recommend(ScoringParams(top_k=1))
    full = _recommend(ScoringParams(top_k=10))
    frames = world_frames()
    users = build_user_feature_set(_world_inputs(frames), NOW)
    tc, mc = _candidates(frames)
    with_reserve = recommend(users, tc, mc, ScoringParams(top_k=1), NOW, reserve=9)
    for kind, item in (("tournaments", "tournament_id"), ("teams", "team_id")):
        top = getattr(with_reserve, kind)
        pd.testing.assert_frame_equal(top, getattr(published, kind))
        reserve = with_reserve.reserves[kind]
        assert (reserve["rank"] >= 2).all()
        both = pd.concat([top, reserve]).sort_values(["user_id", "rank"], ignore_index=True)
        expected = getattr(full, kind).sort_values(["user_id", "rank"], ignore_index=True)
        cols = ["user_id", item, "rank", "score"]
        pd.testing.assert_frame_equal(both[cols], expected[cols])
    assert len(with_reserve.reserves["tournaments"]) > 0
    assert _recommend(ScoringParams(top_k=1)).reserves == {}


def test_reasons_are_readable_and_truthful() -> None:
    recs = _recommend()
    t = recs.tournaments.set_index(["user_id", "tournament_id"])["reason"]
    # User 1 played tournament 103 with user 3 and was on team 9 with users 2 and 4; users 2 and
    # 3 are registered for 100, user 3 is on team 7.
    assert t[(1, 100)] == "2 players you've played with are registered"
    m = recs.teams.set_index(["user_id", "team_id"])["reason"]
    assert m[(1, 7)] == "1 player you've played with is on this team"
    # Cold start (user 7, no history): never "played with" / "like the ones you play".
    for reason in [*t.xs(7, level="user_id"), m[(7, 7)]]:
        assert "played with" not in reason and "you play" not in reason
        assert "Like the" not in reason and "Players like you" not in reason
    for frame in (recs.tournaments, recs.teams):
        assert frame["reason"].str.len().between(1, 200).all()
        assert not frame["reason"].str.contains("@").any()


def test_cold_start_gets_popular_items_in_game_region_and_band() -> None:
    recs = _recommend()
    cold = recs.tournaments[recs.tournaments["user_id"] == 7]
    assert set(cold["tournament_id"]) == {100, 108}
    # 100 has registrants near the user's rating and is fuller than 108: ranked first.
    assert cold.sort_values("rank")["tournament_id"].tolist()[0] == 100


def test_empty_inputs_give_empty_frames() -> None:
    frames = {k: v.iloc[0:0] for k, v in world_frames().items()}
    recs = _recommend(frames=frames)
    assert recs.tournaments.empty and recs.teams.empty
    assert list(recs.tournaments.columns) == ["user_id", "tournament_id", "rank", "score",
                                              "reason", "model_version", "generated_at"]


def test_coplay_counts_hand_computed() -> None:
    # contexts: u0 {c0}, u1 {c0, c1}, u2 {c1}, u3 {} ; items: i0 = {u1, u2}, i1 = {u0}
    contexts = sp.csr_matrix(np.array([[1, 0], [1, 1], [0, 1], [0, 0]], dtype=np.float32))
    attached = sp.csr_matrix(np.array([[0, 1], [1, 0], [1, 0], [0, 0]], dtype=np.float32))
    counts = coplay_counts(contexts, attached, np.arange(4), max_cells=10).toarray()
    # u1's own registration for i0 does not count for u1 (no self-paths).
    np.testing.assert_array_equal(counts, [[1, 0], [1, 1], [1, 0], [0, 0]])


def test_top_k_per_user_uses_partition_then_orders() -> None:
    users = np.array([5, 5, 5, 2, 5, 2])
    scores = np.array([0.1, 0.9, 0.5, 0.3, 0.7, 0.8])
    idx, ranks = top_k_per_user(users, scores, k=2)
    assert idx.tolist() == [5, 3, 1, 4]  # user 2: 0.8, 0.3 ; user 5: 0.9, 0.7
    assert ranks.tolist() == [1, 2, 1, 2]


def test_blend_weights_validated() -> None:
    with pytest.raises(ValueError):
        BlendWeights(-1, 0, 0, 0, 0).vector()
    with pytest.raises(ValueError):
        ScoringParams(top_k=0)
    assert ScoringParams().model_version() != ScoringParams(top_k=5).model_version()


def test_build_reasons_plurals_and_thousands() -> None:
    teams = pd.DataFrame({"team_id": [7, 8], "game_id": [1, 1], "game_name": ["Valorant", None],
                          "region": ["eu", "global"], "members": [3, 7], "max_members": [5, 8],
                          "open_slots": [2, 1]})
    kinds = np.array(["coplay", "coplay", "skill", "popularity", "skill"])
    got = build_reasons("teams", kinds, np.array([0, 0, 0, 1, 1]), np.array([1, 3, 0, 0, 0]),
                        np.array([0, 0, 1840, 900, 900]), teams).tolist()
    assert got == [
        "1 player you've played with is on this team",
        "3 players you've played with are on this team",
        "EU Valorant team near your rating (1,840), 2 open spots",
        "Active Global game 1 team, 7/8 members, 1 open spot",
        "Global game 1 team near your rating (900), 1 open spot",
    ]
    tours = pd.DataFrame({"tournament_id": [5], "game_id": [2], "game_name": ["Chess"],
                          "region": ["na"], "registered": [7], "max_participants": [8],
                          "open_slots": [1], "size_class": [0], "start_slot": [3]})
    got = build_reasons("tournaments", np.array(["coplay", "popularity", "affinity"]),
                        np.zeros(3, dtype=int), np.array([2, 0, 0]), np.zeros(3), tours).tolist()
    assert got == ["2 players you've played with are registered",
                   "Popular NA Chess tournament, 7/8 registered",
                   "Like the Chess tournaments you play: small, weekday evening"]
