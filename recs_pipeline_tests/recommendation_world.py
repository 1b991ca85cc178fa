"""A small hand-built world for recommendation tests, with hand-computed expectations.

Every eligibility rule and every bad-input case of issue 3 has a row here; EXPECTED_* list what
each user may be recommended (worked out by hand from the contract, see the comments).
"""

from __future__ import annotations

from datetime import datetime, timedelta

import pandas as pd
from sqlalchemy.engine import Engine

from recs_pipeline.db import bulk_insert

NOW = datetime(2030, 1, 1, 12, 0, 0)
AS_OF = NOW.isoformat()

# user -> eligible tournaments (hand-computed)
#  1 eu, g1 1500, g2 2500: 100 (eu, open band), 102 (g2 eu). Not 101 (1500 > 1400), 103
#    completed, 104 max_participants 0, 105 closed, 106 full, 107 other region, 108 (1500 < 1550),
#    109 cancelled.
#  2 eu, g1 1200: registered for 100 and 101, below 108's minimum -> nothing.
#  3 na, g1 1800: 100 is eu, 101's band ends at 1400 -> nothing.
#  4 inactive, 5 no profile -> nothing at all.
#  6 unknown region "mars", g1 1500: 107 (mars); 101 global but 1500 > 1400.
#  7 eu, g1 1550, no history (cold start): 100, 108 (min 1550 inclusive).
EXPECTED_TOURNAMENTS: dict[int, set[int]] = {1: {100, 102}, 6: {107}, 7: {100, 108}}
# user -> eligible teams: 7 (eu g1, recruiting, 1/5); 10 (na g1); 12 (mars g1). Not 8 (not
# recruiting), 9 (full), 11 (user 1 is a member; nobody else plays g2).
EXPECTED_TEAMS: dict[int, set[int]] = {1: {7}, 2: {7}, 3: {10}, 6: {12}, 7: {7}}


def _ts(delta: timedelta) -> datetime:
    return NOW + delta


def world_frames() -> dict[str, pd.DataFrame]:
    d, h = timedelta(days=1), timedelta(hours=1)
    users = pd.DataFrame({
        "id": [1, 2, 3, 4, 5, 6, 7],
        "username": [f"user{i}" for i in range(1, 8)],
        "email": [f"user{i}@example.com" for i in range(1, 8)],
        "region": ["eu", "eu", "na", "eu", "eu", "mars", "eu"],
        "is_active": [True, True, True, False, True, True, True],
        "date_joined": [_ts(-400 * d)] * 7,
        "last_login": [_ts(-d)] * 7,
    })
    games = pd.DataFrame({"id": [1, 2], "slug": ["valorant", "chess"],
                          "name": ["Valorant", "Chess"]})
    profiles = pd.DataFrame({
        "id": [1, 2, 3, 4, 5, 6, 7],
        "user_id": [1, 1, 2, 3, 4, 6, 7],
        "game_id": [1, 2, 1, 1, 1, 1, 1],
        "skill_rating": [1500, 2500, 1200, 1800, 1000, 1500, 1550],
        "created_at": [_ts(-300 * d)] * 7,
    })
    completeness = pd.DataFrame({"user_id": [1, 2], "percentage": [100, 40],
                                 "updated_at": [_ts(-d)] * 2})
    nan = float("nan")
    tournaments = pd.DataFrame({
        "id": [100, 101, 102, 103, 104, 105, 106, 107, 108, 109],
        "name": [f"T{i}" for i in range(100, 110)],
        "game_id": [1, 1, 2, 1, 1, 1, 1, 1, 1, 1],
        "region": ["eu", "global", "eu", "eu", "eu", "eu", "eu", "mars", "eu", "eu"],
        "skill_min": [nan, 1000, nan, nan, nan, nan, nan, nan, 1550, nan],
        "skill_max": [nan, 1400, nan, nan, nan, nan, nan, nan, nan, nan],
        "max_participants": [16, 8, 4, 16, 0, 16, 2, 8, 8, 16],
        "status": ["upcoming", "registration_open", "upcoming", "completed", "upcoming",
                   "upcoming", "registration_open", "upcoming", "upcoming", "cancelled"],
        "registration_closes_at": [_ts(d), _ts(d), _ts(2 * d), _ts(-12 * d), _ts(d), _ts(-h),
                                   _ts(d), _ts(d), _ts(d), _ts(d)],
        "starts_at": [_ts(2 * d)] * 3 + [_ts(-11 * d)] + [_ts(2 * d)] * 6,
        "completed_at": [None, None, None, _ts(-10 * d), None, None, None, None, None, None],
        "created_at": [_ts(-20 * d)] * 10,
    })
    tournaments["skill_min"] = tournaments["skill_min"].astype("Int64")
    tournaments["skill_max"] = tournaments["skill_max"].astype("Int64")
    tournaments["completed_at"] = pd.to_datetime(tournaments["completed_at"])
    participants = pd.DataFrame({
        "id": [1, 2, 3, 4, 5, 6, 7],
        "tournament_id": [100, 100, 101, 103, 103, 106, 106],
        "user_id": [2, 3, 2, 1, 3, 2, 3],
        "team_id": [None] * 7,
        "registered_at": [_ts(-2 * d)] * 7,
        "placement": [None, None, None, 1, 2, None, None],
    })
    participants["team_id"] = participants["team_id"].astype("Int64")
    participants["placement"] = participants["placement"].astype("Int64")
    teams = pd.DataFrame({
        "id": [7, 8, 9, 10, 11, 12],
        "name": [f"Team {i}" for i in range(7, 13)],
        "game_id": [1, 1, 1, 1, 2, 1],
        "region": ["eu", "eu", "eu", "na", "eu", "mars"],
        "captain_id": [3, 2, 2, 3, 1, 6],
        "max_members": [5, 5, 2, 5, 3, 4],
        "is_recruiting": [True, False, True, True, True, True],
        "created_at": [_ts(-100 * d)] * 6,
    })
    members = pd.DataFrame({
        "id": [1, 2, 3, 4, 5],
        "team_id": [7, 9, 9, 11, 9],
        "user_id": [3, 2, 4, 1, 1],
        "joined_at": [_ts(-50 * d)] * 5,
        "left_at": [None, None, None, None, _ts(-40 * d)],
    })
    members["left_at"] = pd.to_datetime(members["left_at"])
    activities = pd.DataFrame({
        "id": [1, 2, 3, 4, 5],
        "user_id": [1, 1, 1, 1, 2],
        "activity_type": ["login", "match_played", "stream_watched", "login", "team_joined"],
        "object_type": [None] * 5,
        "object_id": pd.Series([None] * 5, dtype="Int64"),
        "created_at": [_ts(-2 * d), _ts(-20 * d), _ts(-d), _ts(-100 * d), _ts(-60 * d)],
        "metadata": [None] * 5,
    })
    return {
        "users": users, "games": games, "game_profiles": profiles,
        "profile_completeness": completeness, "tournaments": tournaments,
        "tournament_participants": participants, "teams": teams, "team_members": members,
        "activities": activities,
    }


def insert_world(engine: Engine, frames: dict[str, pd.DataFrame] | None = None) -> None:
    frames = frames or world_frames()
    with engine.begin() as conn:
        for table, frame in frames.items():
            bulk_insert(conn, table, frame)


def expected_pairs(expected: dict[int, set[int]]) -> set[tuple[int, int]]:
    return {(u, i) for u, items in expected.items() for i in items}
