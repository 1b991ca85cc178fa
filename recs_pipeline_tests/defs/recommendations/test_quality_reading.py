"""Reading the app database as of a past cutoff (both backends), on a hand-built world."""

from __future__ import annotations

from datetime import datetime, timedelta

import pandas as pd
from sqlalchemy.engine import Engine

from recs_pipeline import schema
from recs_pipeline.db import bulk_insert
from recs_pipeline.defs.recommendations.quality_reading import read_snapshot

CUTOFF = datetime(2026, 6, 1)
NOW = datetime(2026, 6, 15)
BEFORE = CUTOFF - timedelta(days=20)
JUST_BEFORE = CUTOFF - timedelta(seconds=1)
AFTER = CUTOFF + timedelta(days=2)
FAR = CUTOFF + timedelta(days=10)


def _insert(engine: Engine) -> None:
    users = pd.DataFrame({
        "id": [1, 2, 3, 4], "username": ["a", "b", "c", "d"],
        "email": ["a@x.io", "b@x.io", "c@x.io", "d@x.io"], "region": "eu",
        "is_active": [True, True, True, False],
        "date_joined": [BEFORE, BEFORE, AFTER, BEFORE], "last_login": [None] * 4,
    })
    profiles = pd.DataFrame({
        "id": [1, 2, 3, 4], "user_id": [1, 2, 3, 4], "game_id": 1, "skill_rating": 1500,
        # user 2's profile was created one second before the cutoff, with microseconds: the
        # SQLite text comparison must still put it before the cutoff
        "created_at": [BEFORE, JUST_BEFORE + timedelta(microseconds=500), AFTER, BEFORE],
    })
    tournaments = pd.DataFrame({
        "id": [10, 11, 12, 13, 14],
        "name": ["open then", "created later", "done before", "cancelled", "closed before"],
        "game_id": 1, "region": "eu", "skill_min": pd.array([None] * 5, dtype="Int64"),
        "skill_max": pd.array([None] * 5, dtype="Int64"),
        "max_participants": 16,
        "status": ["completed", "registration_open", "completed", "cancelled", "completed"],
        "registration_closes_at": [AFTER, FAR, BEFORE, FAR, CUTOFF - timedelta(days=1)],
        "starts_at": [AFTER, FAR, BEFORE, FAR, AFTER],
        "completed_at": [FAR, None, BEFORE + timedelta(days=1), None, FAR],
        "created_at": [BEFORE, AFTER, BEFORE - timedelta(days=5), BEFORE, BEFORE],
    })
    participants = pd.DataFrame({
        "id": [1, 2, 3, 4], "tournament_id": [12, 10, 10, 11], "user_id": [1, 2, 1, 2],
        "team_id": pd.array([None] * 4, dtype="Int64"),
        "registered_at": [BEFORE, JUST_BEFORE, AFTER, AFTER],
        "placement": pd.array([1, None, None, None], dtype="Int64"),
    })
    teams = pd.DataFrame({
        "id": [20, 21], "name": ["then", "later"], "game_id": 1, "region": "eu",
        "captain_id": 2, "max_members": 5, "is_recruiting": True, "created_at": [BEFORE, AFTER],
    })
    members = pd.DataFrame({
        "id": [1, 2, 3, 4], "team_id": [20, 20, 21, 20], "user_id": [2, 1, 1, 1],
        "joined_at": [BEFORE, AFTER, AFTER, FAR],  # user 1 left team 20 and rejoined
        "left_at": [AFTER, FAR - timedelta(days=1), None, None],
    })
    activities = pd.DataFrame({
        "id": [1, 2, 3], "user_id": [1, 1, 1], "activity_type": "login",
        "object_type": [None] * 3, "object_id": pd.array([None] * 3, dtype="Int64"),
        "created_at": [CUTOFF - timedelta(days=3), CUTOFF - timedelta(days=60), AFTER],
        "metadata": [None] * 3,
    })
    with engine.begin() as conn:
        bulk_insert(conn, schema.games, pd.DataFrame({"id": [1], "slug": ["g"], "name": ["G"]}))
        for table, frame in ((schema.users, users), (schema.game_profiles, profiles),
                             (schema.tournaments, tournaments),
                             (schema.tournament_participants, participants),
                             (schema.teams, teams), (schema.team_members, members),
                             (schema.activities, activities)):
            bulk_insert(conn, table, frame)


def _pairs(frame: pd.DataFrame, a: str, b: str) -> set[tuple[int, int]]:
    return set(zip(frame[a].astype(int), frame[b].astype(int), strict=True))


def test_snapshot_as_of_cutoff(engine: Engine) -> None:
    _insert(engine)
    with engine.connect() as conn:
        snap = read_snapshot(conn, CUTOFF, NOW)
    features = snap.users.features.set_index("user_id")
    # user 3 joined after the cutoff, user 4 is inactive
    assert sorted(features.index) == [1, 2]
    # 30/90-day activity counts end at the cutoff: the login after it does not count
    assert features.loc[1, "activities_30d"] == 1 and features.loc[1, "activities_90d"] == 2
    assert features.loc[1, "tournaments_played"] == 1 and features.loc[1, "tournaments_won"] == 1
    # history: registrations and joins before the cutoff only
    assert _pairs(snap.users.tournament_history, "user_id", "tournament_id") == {(1, 12), (2, 10)}
    assert _pairs(snap.users.team_history, "user_id", "team_id") == {(2, 20)}
    status = snap.users.tournaments.set_index("tournament_id")["status"].to_dict()
    assert status == {10: "registration_open", 12: "completed", 13: "cancelled",
                      14: "registration_open"}  # 11 did not exist yet
    # candidates at the cutoff: 10 only (11 later, 12 done, 13 cancelled, 14 closed)
    t_items = snap.tournaments.items.set_index("tournament_id")
    assert list(t_items.index) == [10] and t_items.loc[10, "registered"] == 1
    assert _pairs(snap.tournaments.members, "item_id", "user_id") == {(10, 2)}
    m_items = snap.teams.items.set_index("team_id")
    assert list(m_items.index) == [20] and m_items.loc[20, "members"] == 1  # user 2 left later
    # holdout: everything in [cutoff, now), before restricting to candidates
    assert _pairs(snap.tournament_holdout, "user_id", "item_id") == {(1, 10), (2, 11)}
    assert _pairs(snap.team_holdout, "user_id", "item_id") == {(1, 20), (1, 21)}
