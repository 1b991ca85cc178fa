"""The app database as SQLAlchemy Core metadata, exactly as `docs/data-contract.md` states it.

Two metadata objects keep ownership explicit:

* `APP_METADATA` holds the app-owned tables. The pipeline only reads them (and inserts into
  `user_achievements`); it creates them solely for demo/test use (`recs-pipeline init-db`).
* `PIPELINE_METADATA` holds the tables the pipeline owns and (re)creates itself: the two published
  recommendation tables and the achievements bookkeeping (event ledger, dead letters).

Column types are portable: `BigInteger` ids map to `INTEGER` on SQLite so that an autoincrement
primary key is the rowid, as the contract requires.
"""

from __future__ import annotations

import sqlalchemy as sa

# SQLite only autoincrements `INTEGER PRIMARY KEY`; PostgreSQL gets a real bigint.
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

APP_METADATA = sa.MetaData()
PIPELINE_METADATA = sa.MetaData()

# Ids are bigint on PostgreSQL and 64-bit integers on SQLite: both end here.
MAX_ID = 2**63 - 1
MAX_SKILL_RATING = 5000  # game_profiles.skill_rating is Elo-like, 0..5000

KNOWN_REGIONS: tuple[str, ...] = ("na", "eu", "sa", "asia", "oce")
GLOBAL_REGION = "global"
TOURNAMENT_STATUSES: tuple[str, ...] = (
    "upcoming",
    "registration_open",
    "in_progress",
    "completed",
    "cancelled",
)
OPEN_TOURNAMENT_STATUSES: tuple[str, ...] = ("upcoming", "registration_open")
KNOWN_ACTIVITY_TYPES: tuple[str, ...] = (
    "login",
    "match_played",
    "tournament_registered",
    "tournament_completed",
    "team_joined",
    "team_left",
    "profile_updated",
)
ACHIEVEMENT_EVENT_TYPES: tuple[str, ...] = (
    "tournament_completed",
    "team_joined",
    "profile_completed",
)
ACHIEVEMENT_METRICS: tuple[str, ...] = (
    "tournaments_completed",
    "tournaments_won",
    "podium_finishes",
    "teams_joined",
    "profile_completeness",
)

# --- App-owned tables -----------------------------------------------------------------------

users = sa.Table(
    "users",
    APP_METADATA,
    sa.Column("id", BigId, primary_key=True, autoincrement=False),
    sa.Column("username", sa.String(150), nullable=False),
    sa.Column("email", sa.String(254), nullable=False),
    sa.Column("region", sa.String(16), nullable=False),
    sa.Column("is_active", sa.Boolean(), nullable=False),
    sa.Column("date_joined", sa.DateTime(), nullable=False),
    sa.Column("last_login", sa.DateTime(), nullable=True),
)

games = sa.Table(
    "games",
    APP_METADATA,
    sa.Column("id", BigId, primary_key=True, autoincrement=False),
    sa.Column("slug", sa.String(50), nullable=False, unique=True),
    sa.Column("name", sa.String(100), nullable=False),
)

game_profiles = sa.Table(
    "game_profiles",
    APP_METADATA,
    sa.Column("id", BigId, primary_key=True, autoincrement=False),
    sa.Column("user_id", sa.BigInteger(), nullable=False),
    sa.Column("game_id", sa.BigInteger(), nullable=False),
    sa.Column("skill_rating", sa.Integer(), nullable=False),
    sa.Column("created_at", sa.DateTime(), nullable=False),
    sa.UniqueConstraint("user_id", "game_id"),
)

profile_completeness = sa.Table(
    "profile_completeness",
    APP_METADATA,
    sa.Column("user_id", BigId, primary_key=True, autoincrement=False),
    sa.Column("percentage", sa.Integer(), nullable=False),
    sa.Column("updated_at", sa.DateTime(), nullable=False),
)

tournaments = sa.Table(
    "tournaments",
    APP_METADATA,
    sa.Column("id", BigId, primary_key=True, autoincrement=False),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("game_id", sa.BigInteger(), nullable=False),
    sa.Column("region", sa.String(16), nullable=False),
    sa.Column("skill_min", sa.Integer(), nullable=True),
    sa.Column("skill_max", sa.Integer(), nullable=True),
    sa.Column("max_participants", sa.Integer(), nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("registration_closes_at", sa.DateTime(), nullable=False),
    sa.Column("starts_at", sa.DateTime(), nullable=False),
    sa.Column("completed_at", sa.DateTime(), nullable=True),
    sa.Column("created_at", sa.DateTime(), nullable=False),
)

tournament_participants = sa.Table(
    "tournament_participants",
    APP_METADATA,
    sa.Column("id", BigId, primary_key=True, autoincrement=False),
    sa.Column("tournament_id", sa.BigInteger(), nullable=False),
    sa.Column("user_id", sa.BigInteger(), nullable=False),
    sa.Column("team_id", sa.BigInteger(), nullable=True),
    sa.Column("registered_at", sa.DateTime(), nullable=False),
    sa.Column("placement", sa.Integer(), nullable=True),
    sa.UniqueConstraint("tournament_id", "user_id"),
)

teams = sa.Table(
    "teams",
    APP_METADATA,
    sa.Column("id", BigId, primary_key=True, autoincrement=False),
    sa.Column("name", sa.String(100), nullable=False),
    sa.Column("game_id", sa.BigInteger(), nullable=False),
    sa.Column("region", sa.String(16), nullable=False),
    sa.Column("captain_id", sa.BigInteger(), nullable=False),
    sa.Column("max_members", sa.Integer(), nullable=False),
    sa.Column("is_recruiting", sa.Boolean(), nullable=False),
    sa.Column("created_at", sa.DateTime(), nullable=False),
)

team_members = sa.Table(
    "team_members",
    APP_METADATA,
    sa.Column("id", BigId, primary_key=True, autoincrement=False),
    sa.Column("team_id", sa.BigInteger(), nullable=False),
    sa.Column("user_id", sa.BigInteger(), nullable=False),
    sa.Column("joined_at", sa.DateTime(), nullable=False),
    sa.Column("left_at", sa.DateTime(), nullable=True),
)

activities = sa.Table(
    "activities",
    APP_METADATA,
    sa.Column("id", BigId, primary_key=True, autoincrement=False),
    sa.Column("user_id", sa.BigInteger(), nullable=False),
    sa.Column("activity_type", sa.String(40), nullable=False),
    sa.Column("object_type", sa.String(40), nullable=True),
    sa.Column("object_id", sa.BigInteger(), nullable=True),
    sa.Column("created_at", sa.DateTime(), nullable=False),
    sa.Column("metadata", sa.Text(), nullable=True),
    sa.Index("ix_activities_created_at", "created_at"),
)

achievements = sa.Table(
    "achievements",
    APP_METADATA,
    sa.Column("id", BigId, primary_key=True, autoincrement=False),
    sa.Column("code", sa.String(50), nullable=False, unique=True),
    sa.Column("name", sa.String(100), nullable=False),
    sa.Column("description", sa.Text(), nullable=False),
    sa.Column("event_type", sa.String(40), nullable=False),
    sa.Column("metric", sa.String(40), nullable=False),
    sa.Column("threshold", sa.Integer(), nullable=False),
    sa.Column("points", sa.Integer(), nullable=False),
    sa.Column("is_active", sa.Boolean(), nullable=False),
)

user_achievements = sa.Table(
    "user_achievements",
    APP_METADATA,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("user_id", sa.BigInteger(), nullable=False),
    sa.Column("achievement_id", sa.BigInteger(), nullable=False),
    sa.Column("awarded_at", sa.DateTime(), nullable=False),
    sa.Column("event_id", sa.BigInteger(), nullable=True),
    sa.UniqueConstraint("user_id", "achievement_id"),
)

app_events = sa.Table(
    "app_events",
    APP_METADATA,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("event_type", sa.String(40), nullable=False),
    sa.Column("user_id", sa.BigInteger(), nullable=True),
    sa.Column("payload", sa.Text(), nullable=True),
    sa.Column("created_at", sa.DateTime(), nullable=False),
)

APP_TABLES: tuple[sa.Table, ...] = tuple(APP_METADATA.sorted_tables)

# --- Pipeline-owned tables ------------------------------------------------------------------


def recommendation_table(name: str, item_column: str, metadata: sa.MetaData) -> sa.Table:
    """Build a recommendations table (published or staging) with the contract's exact shape."""
    return sa.Table(
        name,
        metadata,
        sa.Column("user_id", sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column(item_column, sa.BigInteger(), nullable=False),
        sa.Column("rank", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("reason", sa.String(200), nullable=False),
        sa.Column("model_version", sa.String(64), nullable=False),
        # timestamptz on PostgreSQL (an aware UTC value for a USE_TZ Django app); SQLite keeps
        # the contract's ISO text.
        sa.Column("generated_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("user_id", item_column, name=f"uq_{name}_user_{item_column}"),
        sa.Index(f"ix_{name}_user_id", "user_id"),
    )


tournament_recommendations = recommendation_table(
    "tournament_recommendations", "tournament_id", PIPELINE_METADATA
)
team_recommendations = recommendation_table("team_recommendations", "team_id", PIPELINE_METADATA)

# Not read by the app: each user's next-best rows after the published top K (ranks K+1..), from
# the same refresh and model, swapped in with the published tables. The intraday upkeep
# (`recommendation_upkeep_job`) promotes them when published rows stop being eligible.
tournament_recommendation_reserve = recommendation_table(
    "tournament_recommendation_reserve", "tournament_id", PIPELINE_METADATA
)
team_recommendation_reserve = recommendation_table(
    "team_recommendation_reserve", "team_id", PIPELINE_METADATA
)

# The bucketed refresh (`nightly_recommendations_bucketed_job`): one row per bucket whose rows
# sit in `<table>__bucket_NN`, for the refresh `as_of`. The last bucket of a refresh claims the
# publish by setting `published_by_run` on every row at once (only one claimer can succeed).
recommendation_bucket_manifest = sa.Table(
    "recommendation_bucket_manifest",
    PIPELINE_METADATA,
    sa.Column("bucket", sa.Integer(), primary_key=True, autoincrement=False),
    sa.Column("n_buckets", sa.Integer(), nullable=False),
    sa.Column("as_of", sa.DateTime(), nullable=False),
    sa.Column("model_version", sa.String(64), nullable=False),
    sa.Column("run_id", sa.String(64), nullable=False),
    sa.Column("users_scored", sa.Integer(), nullable=False),
    sa.Column("users_with_tournaments", sa.Integer(), nullable=False),
    sa.Column("users_with_teams", sa.Integer(), nullable=False),
    sa.Column("tournament_rows", sa.Integer(), nullable=False),
    sa.Column("team_rows", sa.Integer(), nullable=False),
    sa.Column("written_at", sa.DateTime(), nullable=False),
    sa.Column("published_by_run", sa.String(64), nullable=True),
)

# Every event the achievements job has handled (awarded, nothing to award, or dead-lettered).
# The sensor diffs `app_events` against this ledger, so an event whose id committed out of order
# is still picked up; replays are idempotent because awards rely on the unique key.
achievement_event_ledger = sa.Table(
    "achievement_event_ledger",
    PIPELINE_METADATA,
    sa.Column("event_id", sa.BigInteger(), primary_key=True, autoincrement=False),
    sa.Column("outcome", sa.String(20), nullable=False),
    sa.Column("run_id", sa.String(64), nullable=True),
    sa.Column("processed_at", sa.DateTime(), nullable=False),
    sa.Index("ix_achievement_event_ledger_processed_at", "processed_at"),
)

achievement_dead_letters = sa.Table(
    "achievement_dead_letters",
    PIPELINE_METADATA,
    sa.Column("event_id", sa.BigInteger(), primary_key=True, autoincrement=False),
    sa.Column("reason", sa.String(200), nullable=False),
    sa.Column("detail", sa.Text(), nullable=True),
    sa.Column("run_id", sa.String(64), nullable=True),
    sa.Column("dead_lettered_at", sa.DateTime(), nullable=False),
    sa.Column("replayed_at", sa.DateTime(), nullable=True),
    sa.Index("ix_achievement_dead_letters_dead_lettered_at", "dead_lettered_at"),
)

# One-user refreshes the app asks for: it INSERTs (user_id) here, in the transaction of the change
# that calls for fresh recommendations; `user_refresh_request_sensor` turns what is pending into
# batched `refresh_user_recommendations_job` runs, and each run deletes exactly the requests it
# read before computing, in the transaction that replaces the users' rows.
recommendation_refresh_requests = sa.Table(
    "recommendation_refresh_requests",
    PIPELINE_METADATA,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("user_id", sa.BigInteger(), nullable=False),
    sa.Column("requested_at", sa.DateTime(), nullable=False, server_default=sa.func.now()),
    sa.Index("ix_recommendation_refresh_requests_user_id", "user_id"),
)

# The intraday upkeep's bookkeeping, per kind ("tournaments" / "teams"), reset by every publish in
# its swap transaction: the items that may appear in the published or reserve rows and were
# eligible when last looked at (an item that leaves this set has its rows removed once), and
# since when registrations / joins have been looked at.
recommendation_upkeep_items = sa.Table(
    "recommendation_upkeep_items",
    PIPELINE_METADATA,
    sa.Column("kind", sa.String(16), primary_key=True),
    sa.Column("item_id", sa.BigInteger(), primary_key=True, autoincrement=False),
)
recommendation_upkeep_state = sa.Table(
    "recommendation_upkeep_state",
    PIPELINE_METADATA,
    sa.Column("kind", sa.String(16), primary_key=True),
    sa.Column("published_at", sa.DateTime(), nullable=False),  # the publish's as_of
    sa.Column("checked_at", sa.DateTime(), nullable=False),  # the last upkeep's (or publish's)
)

PIPELINE_TABLES: tuple[sa.Table, ...] = tuple(PIPELINE_METADATA.sorted_tables)
