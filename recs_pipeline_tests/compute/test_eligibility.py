"""Eligibility rules as masks and the independent re-verification (hand-computed cases)."""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pandas as pd

from recs_pipeline.compute.eligibility import (
    find_violations,
    region_matches,
    skill_in_band,
    team_item_status,
    tournament_item_status,
)

NOW = datetime(2030, 1, 1, 12)


def test_tournament_item_rules_each_reason() -> None:
    frame = pd.DataFrame({
        "status": ["upcoming", "registration_open", "completed", "upcoming", "upcoming",
                   "upcoming", "in_progress"],
        "registration_closes_at": [NOW + timedelta(hours=1)] * 3 + [NOW, NOW + timedelta(days=1),
                                                                    NOW + timedelta(days=1),
                                                                    NOW + timedelta(days=1)],
        "max_participants": [8, 8, 8, 8, 0, 4, 8],
        "registered": [0, 7, 0, 0, 0, 4, 0],
    })
    assert tournament_item_status(frame, NOW).tolist() == [
        "eligible", "eligible", "status_closed", "registration_closed", "no_capacity", "full",
        "status_closed",
    ]


def test_team_item_rules_each_reason() -> None:
    frame = pd.DataFrame({"is_recruiting": [True, False, True, True],
                          "max_members": [5, 5, 0, 3], "members": [4, 0, 0, 3]})
    assert team_item_status(frame).tolist() == ["eligible", "not_recruiting", "no_capacity",
                                                "full"]


def test_skill_band_with_null_bounds_is_inclusive() -> None:
    skills = np.array([999.0, 1000.0, 1400.0, 1401.0])
    mask = skill_in_band(skills, np.array([1000.0, np.nan, np.nan]),
                         np.array([1400.0, 1400.0, np.nan]))
    np.testing.assert_array_equal(mask, [[False, True, True], [True, True, True],
                                         [True, True, True], [False, False, True]])


def test_region_rules_tolerate_unknown_regions() -> None:
    regions = np.array(["eu", "global", "na", "mars"], dtype=object)
    assert region_matches("eu", regions, allow_global=True).tolist() == [True, True, False, False]
    assert region_matches("mars", regions, allow_global=False).tolist() == [False, False, False,
                                                                            True]


def test_find_violations_reports_each_rule() -> None:
    users = pd.DataFrame({"user_id": [1, 2], "region": ["eu", "na"]})
    profiles = pd.DataFrame({"user_id": [1, 2], "game_id": [10, 10],
                             "skill_rating": [1500, 1500]})
    items = pd.DataFrame({
        "tournament_id": [100, 101, 102, 103, 104],
        "game_id": [10, 10, 20, 10, 10],
        "region": ["eu", "eu", "eu", "global", "eu"],
        "status": ["upcoming", "upcoming", "upcoming", "upcoming", "completed"],
        "registration_closes_at": [NOW + timedelta(days=1)] * 5,
        "max_participants": [8] * 5, "registered": [1, 0, 0, 0, 0],
        "skill_min": [np.nan, 1600, np.nan, np.nan, np.nan],
        "skill_max": [np.nan] * 5,
    })
    members = pd.DataFrame({"item_id": [100], "user_id": [1]})
    recs = pd.DataFrame({"user_id": [1, 1, 1, 1, 1, 3, 2, 2],
                         "tournament_id": [100, 101, 102, 103, 104, 103, 100, 999]})
    v = find_violations(recs, item_column="tournament_id", users=users, profiles=profiles,
                        items=items, members=members, now=NOW)
    got = dict(zip(zip(v["user_id"], v["tournament_id"], strict=True), v["violation"],
                   strict=True))
    assert got == {
        (1, 100): "already_registered_or_member",
        (1, 101): "skill_out_of_band",
        (1, 102): "no_profile_for_game",
        (1, 104): "item_not_eligible",
        (3, 103): "user_not_eligible",
        (2, 100): "wrong_region",
        (2, 999): "unknown_item",
    }  # (1, 103) is fine: global, open band, not registered


def test_find_violations_teams_require_exact_region() -> None:
    users = pd.DataFrame({"user_id": [1], "region": ["eu"]})
    profiles = pd.DataFrame({"user_id": [1], "game_id": [10], "skill_rating": [1500]})
    items = pd.DataFrame({"team_id": [7, 8, 9], "game_id": [10, 10, 10],
                          "region": ["eu", "global", "eu"], "is_recruiting": [True, True, True],
                          "max_members": [5, 5, 2], "members": [1, 1, 2]})
    recs = pd.DataFrame({"user_id": [1, 1, 1], "team_id": [7, 8, 9]})
    v = find_violations(recs, item_column="team_id", users=users, profiles=profiles, items=items,
                        members=pd.DataFrame({"item_id": [], "user_id": []}), now=NOW)
    assert dict(zip(v["team_id"], v["violation"], strict=True)) == {
        8: "wrong_region", 9: "item_not_eligible"}
