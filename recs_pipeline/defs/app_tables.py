"""The app-owned tables as external assets, so lineage in the UI starts at the app database."""

from __future__ import annotations

import dagster as dg

from recs_pipeline import schema

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
    "user_achievements": "Achievements awarded to users (the pipeline inserts here).",
    "app_events": "The app's transactional outbox of domain events.",
}


def app_table_key(table_name: str) -> dg.AssetKey:
    """Asset key of an app-owned table (`app/<table>`)."""
    return dg.AssetKey(["app", table_name])


APP_TABLE_SPECS: list[dg.AssetSpec] = [
    dg.AssetSpec(
        key=app_table_key(table.name),
        description=_DESCRIPTIONS[table.name],
        group_name=APP_DATABASE_GROUP,
        kinds={"sql"},
        metadata={
            "owner": "web app (Django)",
            "dagster/table_name": table.name,
            "dagster/column_schema": dg.TableSchema(
                columns=[
                    dg.TableColumn(name=c.name, type=str(c.type), description=None)
                    for c in table.columns
                ]
            ),
        },
    )
    for table in schema.APP_TABLES
]
