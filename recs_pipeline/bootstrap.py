"""Creating tables: the app's (demo/test only, `init-db`) and the pipeline's own."""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from recs_pipeline import schema


@dataclass(frozen=True)
class AchievementSpec:
    code: str
    name: str
    description: str
    event_type: str
    metric: str
    threshold: int
    points: int


DEFAULT_ACHIEVEMENTS: tuple[AchievementSpec, ...] = (
    AchievementSpec("first_tournament", "First Steps", "Finish your first tournament.",
                    "tournament_completed", "tournaments_completed", 1, 10),
    AchievementSpec("ten_tournaments", "Regular", "Finish 10 tournaments.",
                    "tournament_completed", "tournaments_completed", 10, 50),
    AchievementSpec("first_win", "Champion", "Win a tournament.",
                    "tournament_completed", "tournaments_won", 1, 100),
    AchievementSpec("three_podiums", "Podium Regular", "Finish in the top 3 three times.",
                    "tournament_completed", "podium_finishes", 3, 75),
    AchievementSpec("first_team", "Team Player", "Join your first team.",
                    "team_joined", "teams_joined", 1, 10),
    AchievementSpec("three_teams", "Networker", "Be a member of 3 different teams.",
                    "team_joined", "teams_joined", 3, 30),
    AchievementSpec("profile_complete", "All Set", "Complete your profile to 100%.",
                    "profile_completed", "profile_completeness", 100, 20),
)


def create_app_tables(engine: Engine) -> None:
    """Create the app-owned tables exactly as the contract states (demo/test use only)."""
    schema.APP_METADATA.create_all(engine, checkfirst=True)


def ensure_pipeline_tables(engine: Engine) -> None:
    """Create the pipeline-owned tables that do not exist yet (idempotent)."""
    schema.PIPELINE_METADATA.create_all(engine, checkfirst=True)


def install_default_achievements(engine: Engine) -> int:
    """Insert the default catalogue's achievements whose code is missing; returns how many."""
    with engine.begin() as conn:
        existing = set(conn.execute(sa.select(schema.achievements.c.code)).scalars())
        next_id = (conn.execute(sa.select(sa.func.max(schema.achievements.c.id))).scalar() or 0) + 1
        rows = []
        for spec in DEFAULT_ACHIEVEMENTS:
            if spec.code in existing:
                continue
            rows.append({"id": next_id, "is_active": True, **spec.__dict__})
            next_id += 1
        if rows:
            conn.execute(schema.achievements.insert(), rows)
    return len(rows)


def init_app_database(engine: Engine) -> int:
    """`init-db`: app tables, pipeline tables and the default achievement catalogue."""
    create_app_tables(engine)
    ensure_pipeline_tables(engine)
    return install_default_achievements(engine)
