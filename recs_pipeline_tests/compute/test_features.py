"""User features and tournament attribute classes."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd

from recs_pipeline.compute.features import (
    band_class,
    build_user_features,
    size_class,
    smoothed_affinity,
    start_slot,
)

NOW = datetime(2030, 1, 1, 12)


def test_attribute_classes() -> None:
    assert size_class(np.array([0, 8, 9, 32, 128, 256])).tolist() == [0, 0, 1, 1, 2, 3]
    # 2030-01-01 is a Tuesday; 2030-01-05 a Saturday
    slots = start_slot(pd.Series(pd.to_datetime(["2030-01-01 03:00", "2030-01-01 19:00",
                                                 "2030-01-05 13:00"])))
    assert slots.tolist() == [0, 3, 6]
    assert band_class(pd.Series([None, None, 1200, 2000]),
                      pd.Series([None, 1300, 1900, 3200])).tolist() == [0, 1, 2, 3]


def test_user_features_drop_inactive_and_profileless_users() -> None:
    users = pd.DataFrame({"user_id": [1, 2, 3], "region": ["eu", "na", "xx"],
                          "is_active": [True, False, True]})
    profiles = pd.DataFrame({"user_id": [1, 1, 2], "game_id": [5, 3, 5],
                             "skill_rating": [1000, 2000, 1500]})
    activity = pd.DataFrame({"user_id": [1], "activities_7d": [2], "activities_30d": [3],
                             "activities_90d": [4],
                             "last_activity_at": [pd.Timestamp("2029-12-30 12:00")]})
    participation = pd.DataFrame({"user_id": [1], "tournaments_played": [3],
                                  "tournaments_won": [1], "podium_finishes": [2],
                                  "tournaments_registered": [4]})
    teams = pd.DataFrame({"user_id": [1], "teams_joined": [2]})
    completeness = pd.DataFrame({"user_id": [1], "percentage": [80]})
    f = build_user_features(users, profiles, activity, participation, teams, completeness, NOW)
    assert f["user_id"].tolist() == [1]
    row = f.iloc[0]
    assert row["game_ids"] == "3,5" and row["n_games"] == 2 and row["max_skill"] == 2000
    assert row["mean_skill"] == 1500.0
    assert (row["activities_7d"], row["activities_30d"], row["activities_90d"]) == (2, 3, 4)
    assert row["days_since_last_activity"] == 2.0
    assert (row["tournaments_played"], row["tournaments_won"], row["podium_finishes"],
            row["teams_joined"], row["profile_completeness"]) == (3, 1, 2, 2, 80)
    assert "email" not in f.columns


def test_smoothed_affinity_prior_for_cold_users() -> None:
    counts = np.array([[3, 0], [0, 0]], dtype=np.float32)
    aff = smoothed_affinity(counts, smoothing=1.0, prior=np.array([0.25, 0.75]))
    # user 0: shares (3.25/4, 0.75/4) -> relative (1, 0.2308); user 1: the prior, relative
    np.testing.assert_allclose(aff[0], [1.0, 0.75 / 3.25], rtol=1e-6)
    np.testing.assert_allclose(aff[1], [1 / 3, 1.0], rtol=1e-6)


def test_game_ids_are_each_users_sorted_games_for_any_number_of_games() -> None:
    rng = np.random.default_rng(3)
    n_games = {uid: int(rng.integers(1, 7)) for uid in range(10, 60)}
    rows = [(uid, int(g)) for uid, n in n_games.items()
            for g in rng.choice(np.arange(1, 40), size=n, replace=False)]
    rng.shuffle(rows)  # profiles arrive in any order
    profiles = pd.DataFrame(rows, columns=["user_id", "game_id"]).assign(skill_rating=1000)
    users = pd.DataFrame({"user_id": list(n_games), "region": "eu", "is_active": True})
    empty = pd.DataFrame({"user_id": pd.Series(dtype=np.int64)})
    f = build_user_features(users, profiles, empty, empty, empty,
                            empty.assign(percentage=0), NOW)
    expected = {uid: ",".join(str(g) for g in sorted(grp["game_id"]))
                for uid, grp in profiles.groupby("user_id")}
    assert dict(zip(f["user_id"], f["game_ids"], strict=True)) == expected
    assert (f["n_games"] == f["game_ids"].str.count(",") + 1).all()


def test_no_profiles_give_no_feature_rows() -> None:
    users = pd.DataFrame({"user_id": [1, 2], "region": "eu", "is_active": True})
    profiles = pd.DataFrame({"user_id": pd.Series(dtype=np.int64),
                             "game_id": pd.Series(dtype=np.int64),
                             "skill_rating": pd.Series(dtype=np.int64)})
    empty = pd.DataFrame({"user_id": pd.Series(dtype=np.int64)})
    f = build_user_features(users, profiles, empty, empty, empty,
                            empty.assign(percentage=0), NOW)
    assert f.empty and "game_ids" in f.columns
