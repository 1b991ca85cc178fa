"""Reading what recommendations need from the app database: set-based SQL, then pandas.

Every query is SQLAlchemy Core with bound parameters and explicit columns (never `users.email`).
Activity counts over 7/30/90 days and participation statistics are aggregated by the database
(GROUP BY), so the activity log itself is never loaded. The two large results (user x tournament
and user x team pairs, ~10 per user) are streamed with `COPY ... TO STDOUT` on PostgreSQL.

`user_ids` restricts the scored users (the one-user refresh, buckets); the participation history
is then read for those users plus everyone registered for an open tournament or currently on a
team, which is all the co-play and collaborative signals need about other users.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from recs_pipeline import schema
from recs_pipeline.compute.candidates import (
    CandidateSet,
    build_team_candidates,
    build_tournament_candidates,
)
from recs_pipeline.compute.features import (
    UserFeatureSet,
    add_tournament_attributes,
    build_user_features,
)
from recs_pipeline.compute.quarantine import (
    EXAMPLE_IDS,
    SKIPPED,
    UNKNOWN_STATUS,
    UNPARSABLE_TIMESTAMP,
    Quarantine,
    drop_out_of_range,
    parse_timestamp_columns,
)
from recs_pipeline.db import (
    in_ids,
    read_frame,
    read_int_frame,
    timestamp_compare,
    unparsable_timestamp,
    utc_instant,
    utc_text,
)

ACTIVITY_WINDOWS_DAYS = (7, 30, 90)


def _ids_filter(column: sa.ColumnElement, user_ids: Sequence[int] | None, dialect: str
                ) -> sa.ColumnElement:
    """No filter for the whole population; `in_ids` for a refresh of some users (up to 1,000)."""
    if user_ids is None:
        return sa.true()
    return in_ids(column, user_ids, dialect)


# --- users -------------------------------------------------------------------------------------


@dataclass
class UserInputs:
    """Raw frames for `build_user_feature_set` (one SQL query each)."""

    users: pd.DataFrame
    profiles: pd.DataFrame
    activity_counts: pd.DataFrame
    unknown_activity_types: dict[str, int]
    participation: pd.DataFrame
    team_counts: pd.DataFrame
    completeness: pd.DataFrame
    tournament_history: pd.DataFrame
    team_history: pd.DataFrame
    tournaments: pd.DataFrame
    teams: pd.DataFrame
    population: dict[str, int] = field(default_factory=dict)
    quarantine: Quarantine = field(default_factory=Quarantine)


def activity_counts_query(
    conn: Connection, now: datetime, known: bool, where: sa.ColumnElement,
    *, exclude_after_now: bool = False,
) -> sa.Select:
    """Per user (known activity types) or per type (unknown ones): activities since 90 days
    before `now` (plus 7/30-day counts and the last time for known types), aggregated in SQL.
    `exclude_after_now` also drops rows at or after `now` (an evaluation as of a past cutoff)."""
    a = schema.activities

    def since(days: int) -> sa.ColumnElement[bool]:
        return timestamp_compare(conn, a.c.created_at, ">=", now - timedelta(days=days))

    is_known = a.c.activity_type.in_(schema.KNOWN_ACTIVITY_TYPES)
    window = since(90)
    if exclude_after_now:
        window = window & timestamp_compare(conn, a.c.created_at, "<", now)
    if not known:
        return (sa.select(a.c.activity_type, sa.func.count())
                .where(window, ~is_known, where).group_by(a.c.activity_type))
    return sa.select(
        a.c.user_id,
        *[sa.func.sum(sa.case((since(d), 1), else_=0)).label(f"activities_{d}d")
          for d in ACTIVITY_WINDOWS_DAYS[:-1]],
        sa.func.count().label("activities_90d"),
        utc_text(conn, sa.func.max(utc_instant(conn, a.c.created_at))).label("last_activity_at"),
    ).where(window, is_known, where).group_by(a.c.user_id)


def current_membership(conn: Connection) -> sa.ColumnElement[bool]:
    """A current team member: `left_at` NULL, or a `left_at` that is not a timestamp (read as
    "has not left", so a member is never recommended their own team; quarantined)."""
    left_at = schema.team_members.c.left_at
    return left_at.is_(None) | unparsable_timestamp(conn, left_at)


def scan_app_rows(conn: Connection, quarantine: Quarantine, tables: Sequence[str]) -> None:
    """Quarantine what the SQL reads aggregate or filter without loading the rows, for `tables`:
    `activities` with an unparsable time (left out of every count), `team_members` with an
    unparsable `left_at` (read as current members) and `tournaments` whose status is outside the
    contract (never candidates). Timestamps can only be unparsable on SQLite (text)."""
    a, tm, t = schema.activities, schema.team_members, schema.tournaments
    checks = {
        "activities": (a, a.c.created_at, UNPARSABLE_TIMESTAMP,
                       unparsable_timestamp(conn, a.c.created_at), "left out of counts"),
        "team_members": (tm, tm.c.left_at, UNPARSABLE_TIMESTAMP,
                         unparsable_timestamp(conn, tm.c.left_at), "read as a current member"),
        "tournaments": (t, t.c.status, UNKNOWN_STATUS,
                        t.c.status.not_in(schema.TOURNAMENT_STATUSES) | t.c.status.is_(None),
                        SKIPPED),
    }
    for name in tables:
        table, column, reason, bad, effect = checks[name]
        if isinstance(bad, sa.sql.elements.False_):
            continue
        rows = conn.execute(sa.select(sa.func.count()).select_from(table).where(bad)).scalar_one()
        if rows:
            examples = conn.execute(
                sa.select(table.c.id).where(bad).order_by(table.c.id).limit(EXAMPLE_IDS)
            ).scalars().all()
            quarantine.add(table.name, column.name, reason, examples, rows=rows, effect=effect)
            quarantine.saw(table.name, conn.execute(
                sa.select(sa.func.count()).select_from(table)).scalar_one())


def participation_query(completed: sa.ColumnElement, where: sa.ColumnElement) -> sa.Select:
    """Per user: tournaments registered, played (`completed`), won and podium finishes."""
    tp, t = schema.tournament_participants, schema.tournaments
    return sa.select(
        tp.c.user_id,
        sa.func.count().label("tournaments_registered"),
        sa.func.sum(sa.case((completed, 1), else_=0)).label("tournaments_played"),
        sa.func.sum(sa.case((completed & (tp.c.placement == 1), 1), else_=0))
        .label("tournaments_won"),
        sa.func.sum(sa.case((completed & (tp.c.placement <= 3), 1), else_=0))
        .label("podium_finishes"),
    ).select_from(tp.join(t, t.c.id == tp.c.tournament_id)).where(where).group_by(tp.c.user_id)


def read_user_inputs(
    conn: Connection, now: datetime, user_ids: Sequence[int] | None = None
) -> UserInputs:
    u, gp, a = schema.users, schema.game_profiles, schema.activities
    tp, t, tm = schema.tournament_participants, schema.tournaments, schema.team_members

    def of_users(column: sa.ColumnElement) -> sa.ColumnElement:
        return _ids_filter(column, user_ids, conn.dialect.name)

    has_profile = sa.exists().where(gp.c.user_id == u.c.id)
    users = read_frame(conn, sa.select(
        u.c.id.label("user_id"), u.c.region, u.c.is_active,
    ).where(u.c.is_active == sa.true(), has_profile, of_users(u.c.id)))
    population_row = conn.execute(sa.select(
        sa.func.count().label("users"),
        sa.func.coalesce(sa.func.sum(sa.case((u.c.is_active == sa.true(), 0), else_=1)), 0),
        sa.func.coalesce(sa.func.sum(sa.case(
            ((u.c.is_active == sa.true()) & ~has_profile, 1), else_=0)), 0),
    ).where(of_users(u.c.id))).one()
    population = {
        "users": int(population_row[0]),
        "inactive": int(population_row[1]),
        "active_without_profile": int(population_row[2]),
    }
    quarantine = Quarantine()
    profiles = read_frame(conn, sa.select(gp.c.id, gp.c.user_id, gp.c.game_id, gp.c.skill_rating)
                          .select_from(gp.join(u, u.c.id == gp.c.user_id))
                          .where(u.c.is_active == sa.true(), of_users(gp.c.user_id)))
    quarantine.saw("game_profiles", len(profiles))
    profiles = drop_out_of_range(profiles, "skill_rating", 0, schema.MAX_SKILL_RATING,
                                 table="game_profiles", id_column="id",
                                 quarantine=quarantine).drop(columns="id")

    # Activity counts over 7/30/90 days, aggregated by the database (known types only).
    scope = of_users(a.c.user_id)
    activity_counts = read_frame(conn, activity_counts_query(conn, now, True, scope),
                                 timestamp_columns=["last_activity_at"])
    unknown = conn.execute(activity_counts_query(conn, now, False, scope)).all()

    participation = read_frame(conn, participation_query(
        t.c.status == "completed", of_users(tp.c.user_id)))
    team_counts = read_frame(conn, sa.select(
        tm.c.user_id, sa.func.count(sa.distinct(tm.c.team_id)).label("teams_joined"),
    ).where(of_users(tm.c.user_id)).group_by(tm.c.user_id))
    pc = schema.profile_completeness
    completeness = read_frame(conn, sa.select(pc.c.user_id, pc.c.percentage)
                              .where(of_users(pc.c.user_id)))
    quarantine.saw("profile_completeness", len(completeness))
    completeness = drop_out_of_range(completeness, "percentage", 0, 100,
                                     table="profile_completeness", id_column="user_id",
                                     quarantine=quarantine)

    # Participation history (pairs). For a subset, also everyone attached to a candidate.
    if user_ids is None:
        tour_scope = team_scope = sa.true()
    else:
        # Only candidates in the scored users' games can be recommended to them, so only
        # their registrants / members matter (keeps a one-user refresh small at 1M users).
        their_games = sa.select(gp.c.game_id).where(of_users(gp.c.user_id))
        m = schema.teams
        open_t = sa.select(tp.c.user_id).select_from(
            tp.join(t, t.c.id == tp.c.tournament_id)
        ).where(t.c.status.in_(schema.OPEN_TOURNAMENT_STATUSES), t.c.game_id.in_(their_games))
        current = sa.select(tm.c.user_id).select_from(tm.join(m, m.c.id == tm.c.team_id)).where(
            current_membership(conn), m.c.game_id.in_(their_games))

        # One IN over a UNION, not an OR of INs: PostgreSQL cannot hash an IN under an OR, and
        # once the registrants outgrow work_mem it rescans them per row (minutes at 1M users).
        scoped = sa.union(sa.select(u.c.id).where(of_users(u.c.id)), open_t, current)

        def scope(col: sa.ColumnElement) -> sa.ColumnElement:
            return col.in_(scoped)

        tour_scope, team_scope = scope(tp.c.user_id), scope(tm.c.user_id)
    tournament_history = read_int_frame(
        conn, sa.select(tp.c.user_id, tp.c.tournament_id).where(tour_scope)
    )
    team_history = read_int_frame(
        conn, sa.select(tm.c.user_id, tm.c.team_id).where(team_scope).distinct()
    )
    tournaments = read_frame(conn, sa.select(
        t.c.id.label("tournament_id"), t.c.game_id, t.c.region, t.c.status, t.c.max_participants,
        t.c.skill_min, t.c.skill_max, t.c.starts_at, t.c.name,
    ))
    quarantine.saw("tournaments", len(tournaments))
    tournaments = parse_timestamp_columns(tournaments, ["starts_at"], table="tournaments",
                                          id_column="tournament_id", quarantine=quarantine)
    m = schema.teams
    teams = read_frame(conn, sa.select(m.c.id.label("team_id"), m.c.game_id, m.c.region))
    if user_ids is None:  # a one-user refresh does not scan whole tables
        scan_app_rows(conn, quarantine, ["activities", "team_members"])
    return UserInputs(
        users=users, profiles=profiles, activity_counts=activity_counts,
        unknown_activity_types={str(k): int(v) for k, v in unknown},
        participation=participation, team_counts=team_counts, completeness=completeness,
        tournament_history=tournament_history, team_history=team_history,
        tournaments=tournaments, teams=teams, population=population, quarantine=quarantine,
    )


def build_user_feature_set(inputs: UserInputs, now: datetime) -> UserFeatureSet:
    """Pure: the raw frames -> `UserFeatureSet` (features, profiles, history, vocabularies)."""
    features = build_user_features(
        inputs.users, inputs.profiles, inputs.activity_counts, inputs.participation,
        inputs.team_counts, inputs.completeness, now,
    )
    profiles = inputs.profiles[inputs.profiles["user_id"].isin(features["user_id"])]
    tournaments = add_tournament_attributes(inputs.tournaments)[
        ["tournament_id", "game_id", "region", "status", "size_class", "start_slot", "band_class",
         "start_hour", "name"]
    ]
    skipped = {
        "inactive_users": inputs.population.get("inactive", 0),
        "active_users_without_profile": inputs.population.get("active_without_profile", 0),
        **{f"unknown_activity_type:{k}": v for k, v in inputs.unknown_activity_types.items()},
    }
    return UserFeatureSet(
        features=features,
        profiles=profiles.reset_index(drop=True),
        tournament_history=inputs.tournament_history,
        team_history=inputs.team_history,
        tournaments=tournaments.reset_index(drop=True),
        teams=inputs.teams,
        skipped=skipped,
        quarantine=inputs.quarantine,
    )


# --- candidates --------------------------------------------------------------------------------


def read_tournament_candidates(
    conn: Connection,
) -> tuple[pd.DataFrame, pd.DataFrame, Quarantine]:
    """Open-status tournaments with registration counts and registrants' mean skill, their
    registrations, and the tournament rows quarantined (unparsable times, negative capacity,
    statuses outside the contract). Deadline and capacity rules are applied in pandas
    (`build_*_candidates`)."""
    t, tp, gp, g = (schema.tournaments, schema.tournament_participants, schema.game_profiles,
                    schema.games)
    open_status = t.c.status.in_(schema.OPEN_TOURNAMENT_STATUSES)
    frame = read_frame(conn, sa.select(
        t.c.id.label("tournament_id"), t.c.game_id, g.c.name.label("game_name"), t.c.region,
        t.c.skill_min, t.c.skill_max, t.c.max_participants, t.c.status,
        t.c.registration_closes_at, t.c.starts_at, t.c.name, t.c.created_at,
        sa.func.count(tp.c.id).label("registered"),
        sa.func.avg(gp.c.skill_rating).label("avg_skill"),
    ).select_from(
        t.outerjoin(g, g.c.id == t.c.game_id)
        .outerjoin(tp, tp.c.tournament_id == t.c.id)
        .outerjoin(gp, (gp.c.user_id == tp.c.user_id) & (gp.c.game_id == t.c.game_id))
    ).where(open_status).group_by(t.c.id, g.c.name))
    frame, quarantine = validate_tournaments(frame)
    scan_app_rows(conn, quarantine, ["tournaments"])
    registrations = read_int_frame(conn, sa.select(tp.c.tournament_id, tp.c.user_id).select_from(
        tp.join(t, t.c.id == tp.c.tournament_id)).where(open_status))
    return frame, registrations, quarantine


def validate_tournaments(frame: pd.DataFrame) -> tuple[pd.DataFrame, Quarantine]:
    """Candidate tournament rows that break the contract are quarantined and dropped."""
    quarantine = Quarantine()
    quarantine.saw("tournaments", len(frame))
    frame = parse_timestamp_columns(
        frame, ["registration_closes_at", "starts_at", "created_at"], table="tournaments",
        id_column="tournament_id", quarantine=quarantine)
    frame = drop_out_of_range(frame, "max_participants", 0, None, table="tournaments",
                              id_column="tournament_id", quarantine=quarantine)
    return frame, quarantine


def validate_teams(frame: pd.DataFrame) -> tuple[pd.DataFrame, Quarantine]:
    """Candidate team rows that break the contract are quarantined and dropped."""
    quarantine = Quarantine()
    quarantine.saw("teams", len(frame))
    frame = parse_timestamp_columns(frame, ["created_at"], table="teams", id_column="team_id",
                                    quarantine=quarantine)
    frame = drop_out_of_range(frame, "max_members", 0, None, table="teams", id_column="team_id",
                              quarantine=quarantine)
    return frame, quarantine


def team_candidates_query(
    is_member: sa.ColumnElement, where: sa.ColumnElement | None = None
) -> sa.Select:
    """Per team (optionally filtered by `where`): game, region, capacity, recruiting flag, the
    number of members (`is_member` rows of team_members) and their mean skill in the game."""
    m, tm, gp, g = schema.teams, schema.team_members, schema.game_profiles, schema.games
    query = sa.select(
        m.c.id.label("team_id"), m.c.game_id, g.c.name.label("game_name"), m.c.region,
        m.c.max_members, m.c.is_recruiting, m.c.created_at,
        sa.func.count(sa.distinct(tm.c.user_id)).label("members"),
        sa.func.avg(gp.c.skill_rating).label("avg_skill"),
    ).select_from(
        m.outerjoin(g, g.c.id == m.c.game_id)
        .outerjoin(tm, (tm.c.team_id == m.c.id) & is_member)
        .outerjoin(gp, (gp.c.user_id == tm.c.user_id) & (gp.c.game_id == m.c.game_id))
    )
    if where is not None:
        query = query.where(where)
    return query.group_by(m.c.id, g.c.name)


def read_team_candidates(conn: Connection) -> tuple[pd.DataFrame, pd.DataFrame, Quarantine]:
    """Teams with current member counts and members' mean skill, current memberships, and the
    team (and membership) rows quarantined."""
    tm = schema.team_members
    current = current_membership(conn)
    frame, quarantine = validate_teams(read_frame(conn, team_candidates_query(current)))
    scan_app_rows(conn, quarantine, ["team_members"])
    members = read_int_frame(conn, sa.select(tm.c.team_id, tm.c.user_id).where(current))
    return frame, members, quarantine


def load_tournament_candidates(conn: Connection, now: datetime) -> CandidateSet:
    frame, registrations, quarantine = read_tournament_candidates(conn)
    return build_tournament_candidates(frame, registrations, now, quarantine)


def load_team_candidates(conn: Connection, now: datetime | None = None) -> CandidateSet:
    frame, members, quarantine = read_team_candidates(conn)
    return build_team_candidates(frame, members, now, quarantine)
