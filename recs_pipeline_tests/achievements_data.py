"""A small hand-built world for the achievements tests, with its expected awards.

Default catalogue ids (bootstrap.DEFAULT_ACHIEVEMENTS): 1 first_tournament (completed >= 1),
2 ten_tournaments (completed >= 10), 3 first_win (won >= 1), 4 three_podiums (podium >= 3),
5 first_team (teams >= 1), 6 three_teams (teams >= 3), 7 profile_complete (profile >= 100).
We add 8 `inactive_first_tournament` (completed >= 1, inactive): never awarded.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from recs_pipeline import schema
from recs_pipeline.db import bulk_insert

T0 = datetime(2025, 1, 1, 12, 0, 0)

# (user_id, achievement_id, event_id) for the good events 1..8
EXPECTED_AWARDS = {
    (1, 1, 1), (1, 2, 1), (1, 3, 1), (1, 4, 1),  # 10 completed, 1 win, 3 podiums
    (2, 1, 2),  # 9 completed (ten_tournaments needs 10), 2 podiums (needs 3), no win
    (3, 5, 3),  # 2 distinct teams (rejoined one): three_teams needs 3
    (4, 5, 4), (4, 6, 4),  # 3 distinct teams
    (6, 7, 6),  # profile 100; user 5 has 99
}

GOOD_EVENTS = [
    (1, "tournament_completed", 1, '{"tournament_id": 10}'),
    (2, "tournament_completed", 2, None),
    (3, "team_joined", 3, '{"team_id": 1}'),
    (4, "team_joined", 4, '{"team_id": 3}'),
    (5, "profile_completed", 5, "{}"),
    (6, "profile_completed", 6, None),
    (7, "login", 1, None),  # not an achievement event: ignored
    (8, "tournament_completed", 1, None),  # same user again: awards stay with event 1
]
BAD_EVENTS = [
    (9, "tournament_completed", None, None),  # NULL user
    (10, "team_joined", 999, None),  # user never existed
    (11, "team_joined", 7, None),  # user 7 deleted since
    (12, "profile_completed", 6, '{"oops": '),  # malformed JSON
    (13, "tournament_complete", 1, None),  # unknown type (only reaches the job by explicit id)
    (14, "team_joined", 3, "[1, 2]"),  # JSON, but not an object
]
EXPECTED_DEAD = {
    9: "null_user", 10: "user_not_found", 11: "user_not_found", 12: "malformed_payload",
    13: "unknown_event_type", 14: "malformed_payload",
}


def build_world(engine: Engine, *, with_bad: bool = True) -> None:
    users = pd.DataFrame({
        "id": range(1, 8), "username": [f"u{i}" for i in range(1, 8)],
        "email": [f"u{i}@example.com" for i in range(1, 8)], "region": "eu", "is_active": True,
        "date_joined": T0, "last_login": T0,
    })
    tournaments = pd.DataFrame({
        "id": range(1, 12), "name": [f"t{i}" for i in range(1, 12)], "game_id": 1,
        "region": "eu", "skill_min": None, "skill_max": None, "max_participants": 64,
        "status": ["completed"] * 10 + ["in_progress"], "registration_closes_at": T0,
        "starts_at": T0, "completed_at": T0, "created_at": T0,
    })
    parts = []
    # user 1: t1..t10 completed (placements 1, 2, 3, then none) + t11 still in progress, 1st
    for t in range(1, 11):
        parts.append((t, 1, {1: 1, 2: 2, 3: 3}.get(t)))
    parts.append((11, 1, 2))
    # user 2: t1..t9, placements 2 and 3 once each
    for t in range(1, 10):
        parts.append((t, 2, {1: 2, 2: 3}.get(t)))
    participants = pd.DataFrame({
        "id": range(1, len(parts) + 1), "tournament_id": [p[0] for p in parts],
        "user_id": [p[1] for p in parts], "team_id": None, "registered_at": T0,
        "placement": pd.array([p[2] for p in parts], dtype="Int64"),
    })
    members = [(1, 3, None), (1, 3, T0), (2, 3, None),  # user 3: team 1 twice, team 2
               (1, 4, None), (2, 4, T0), (3, 4, None)]  # user 4: three teams, one left
    team_members = pd.DataFrame({
        "id": range(1, len(members) + 1), "team_id": [m[0] for m in members],
        "user_id": [m[1] for m in members], "joined_at": T0,
        "left_at": pd.array([m[2] for m in members], dtype="datetime64[us]"),
    })
    profiles = pd.DataFrame({"user_id": [1, 5, 6], "percentage": [100, 99, 100],
                             "updated_at": T0})
    events = GOOD_EVENTS + (BAD_EVENTS if with_bad else [])
    app_events = pd.DataFrame({
        "id": [e[0] for e in events], "event_type": [e[1] for e in events],
        "user_id": pd.array([e[2] for e in events], dtype="Int64"),
        "payload": [e[3] for e in events],
        "created_at": [T0 + timedelta(seconds=e[0]) for e in events],
    })
    with engine.begin() as conn:
        bulk_insert(conn, schema.users, users)
        bulk_insert(conn, schema.tournaments, tournaments)
        bulk_insert(conn, schema.tournament_participants, participants)
        bulk_insert(conn, schema.team_members, team_members)
        bulk_insert(conn, schema.profile_completeness, profiles)
        bulk_insert(conn, schema.app_events, app_events)
        conn.execute(schema.achievements.insert().values(
            id=8, code="inactive_first_tournament", name="Never", description="inactive",
            event_type="tournament_completed", metric="tournaments_completed", threshold=1,
            points=1, is_active=False))
        conn.execute(schema.users.delete().where(schema.users.c.id == 7))  # deleted since


def awards(engine: Engine) -> set[tuple[int, int, int]]:
    ua = schema.user_achievements
    with engine.connect() as conn:
        return {(int(u), int(a), int(e)) for u, a, e in conn.execute(
            sa.select(ua.c.user_id, ua.c.achievement_id, ua.c.event_id))}


def ledger(engine: Engine) -> dict[int, str]:
    lt = schema.achievement_event_ledger
    with engine.connect() as conn:
        return {int(e): o for e, o in conn.execute(sa.select(lt.c.event_id, lt.c.outcome))}


def dead_letters(engine: Engine) -> dict[int, tuple[str, object]]:
    d = schema.achievement_dead_letters
    with engine.connect() as conn:
        return {int(e): (r, t) for e, r, t in conn.execute(
            sa.select(d.c.event_id, d.c.reason, d.c.replayed_at))}
