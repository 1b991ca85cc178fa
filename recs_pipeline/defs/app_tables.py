"""The app-owned tables as external assets, so lineage in the UI starts at the app database."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta

import dagster as dg
import sqlalchemy as sa

from recs_pipeline import schema
from recs_pipeline.tags import DATA_PLATFORM_OWNERS, WEB_APP_OWNERS

APP_DATABASE_GROUP = "app_database"

_DESCRIPTIONS: dict[str, str] = {
    "users": "App users: region, activity flag, join and last-login times (email is PII, unused).",
    "games": "Games the platform hosts tournaments for.",
    "game_profiles": "Per-user, per-game skill rating (Elo-like, 0..5000).",
    "profile_completeness": "How complete each user's profile is, in percent.",
    "tournaments": "Tournaments with their game, region, skill band, capacity and status.",
    "tournament_participants": "Who registered for which tournament, and final placements.",
    "teams": "Teams with their game, region, capacity and recruiting flag.",
    "team_members": "Team memberships over time (left_at NULL = current member).",
    "activities": "User activity log; purged after the retention window.",
    "achievements": "The achievement catalogue: metric, threshold, triggering event type.",
    "user_achievements": "Achievements awarded to users. The pipeline inserts here: every "
    "achievements_job run materializes it (awards, row count), and achievement_events_sensor "
    "records a materialization when the outbox is caught up, so its freshness policy fails "
    "only when events wait.",
    "app_events": "The app's transactional outbox of domain events.",
}


def app_table_key(table_name: str) -> dg.AssetKey:
    """Asset key of an app-owned table (`app/<table>`)."""
    return dg.AssetKey(["app", table_name])


USER_ACHIEVEMENTS_KEY = app_table_key("user_achievements")
# The sensor ticks every 15 s and a batch takes seconds: 10 minutes without a run or a
# caught-up heartbeat means events wait (a stopped sensor, failing runs, a down daemon).
USER_ACHIEVEMENTS_FRESHNESS = dg.FreshnessPolicy.time_window(
    fail_window=timedelta(minutes=15), warn_window=timedelta(minutes=10)
)


def column_schema(table: sa.Table, descriptions: Mapping[str, str] | None = None
                  ) -> dg.TableSchema:
    """A table's columns as the UI shows them: name, SQL type, nullability, description."""
    descriptions = descriptions or {}
    return dg.TableSchema(columns=[
        dg.TableColumn(name=c.name, type=str(c.type), description=descriptions.get(c.name),
                       constraints=dg.TableColumnConstraints(nullable=bool(c.nullable)))
        for c in table.columns
    ])


APP_TABLE_SPECS: list[dg.AssetSpec] = [
    dg.AssetSpec(
        key=app_table_key(table.name),
        description=_DESCRIPTIONS[table.name],
        group_name=APP_DATABASE_GROUP,
        kinds={"sql"},
        # user_achievements: the app's table, written by this pipeline too.
        owners=WEB_APP_OWNERS + (DATA_PLATFORM_OWNERS if table.name == "user_achievements"
                                 else []),
        freshness_policy=USER_ACHIEVEMENTS_FRESHNESS if table.name == "user_achievements"
        else None,
        metadata={
            "dagster/table_name": table.name,
            "dagster/column_schema": column_schema(table),
        },
    )
    for table in schema.APP_TABLES
]
