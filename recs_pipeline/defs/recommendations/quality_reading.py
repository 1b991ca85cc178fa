"""Reading the app database AS OF a past cutoff, and what happened after it (temporal holdout).

The nightly quality evaluation rebuilds recommendations as they would have been made at a cutoff
(default: 14 days ago) and scores them against what users actually did after it. The app keeps
history only partly, so "as of the cutoff" is reconstructed from timestamps, and some of it is an
approximation (listed here, and in docs/quality.md):

Exact from timestamps:
* users who had joined (`date_joined < cutoff`) and had a game profile created before it;
* participation history: registrations with `registered_at < cutoff`, team memberships with
  `joined_at < cutoff` (current at the cutoff: `left_at` NULL or after it);
* tournament state at the cutoff: created before it; completed if `completed_at < cutoff`, in
  progress if `starts_at < cutoff`, otherwise open for registration (its deadline is checked by the
  recommender's own eligibility code with `now = cutoff`); registrations counted at the cutoff;
* teams created before the cutoff, with their members at the cutoff;
* activities in the 90 days before the cutoff.

Approximations (the app stores only the current value):
* `is_active`, `region`, skill ratings, profile completeness, a team's `is_recruiting` and
  `max_members` are today's values;
* a tournament cancelled today is treated as cancelled at the cutoff too (we do not know when);
* the retention purge deletes activities older than 90 days, so the oldest part of the 90-day
  window before the cutoff may already be gone (activity counts there are undercounts).

Holdout (the relevance judgements): registrations with `cutoff <= registered_at < now` and team
joins with `cutoff <= joined_at < now`, restricted to items that were candidates at the cutoff (an
item created later could not have been recommended) and to users scored at the cutoff.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from recs_pipeline import schema
from recs_pipeline.compute.candidates import (
    CandidateSet,
    build_team_candidates,
    build_tournament_candidates,
)
from recs_pipeline.compute.features import UserFeatureSet
from recs_pipeline.compute.quality import Holdout
from recs_pipeline.compute.quarantine import Quarantine, parse_timestamp_columns
from recs_pipeline.db import read_frame, read_int_frame, timestamp_compare
from recs_pipeline.defs.recommendations.reading import (
    UserInputs,
    activity_counts_query,
    build_user_feature_set,
    current_membership,
    participation_query,
    team_candidates_query,
    validate_teams,
    validate_tournaments,
)


@dataclass
class HoldoutSnapshot:
    """Everything the recommender needs as of `cutoff`, plus what happened in [cutoff, now)."""

    cutoff: datetime
    now: datetime
    users: UserFeatureSet
    tournaments: CandidateSet
    teams: CandidateSet
    # (user_id, item_id) pairs in the holdout window, not yet restricted to candidates.
    tournament_holdout: pd.DataFrame
    team_holdout: pd.DataFrame

    def holdout(self) -> Holdout:
        """The pure evaluation's view of this snapshot (`compute.quality.Holdout`)."""
        return Holdout(
            cutoff=self.cutoff, now=self.now, users=self.users, tournaments=self.tournaments,
            teams=self.teams,
            relevant={"tournaments": self.tournament_holdout, "teams": self.team_holdout},
        )


def whole_second(value: datetime) -> datetime:
    """Cutoffs are whole seconds (`timestamp_bind`)."""
    return value.replace(microsecond=0)


def _before(conn: Connection, cutoff: datetime) -> Callable[[sa.ColumnElement], sa.ColumnElement]:
    """`column < cutoff` by instant (unparsable SQLite text never matches: `timestamp_compare`)."""
    return lambda column: timestamp_compare(conn, column, "<", cutoff)


def _status_at(conn: Connection, cutoff: datetime) -> sa.ColumnElement:
    t = schema.tournaments
    before = _before(conn, cutoff)
    return sa.case(
        (t.c.status == "cancelled", "cancelled"),
        (t.c.completed_at.is_not(None) & before(t.c.completed_at), "completed"),
        (before(t.c.starts_at), "in_progress"),
        else_="registration_open",
    )


def read_user_inputs_as_of(conn: Connection, cutoff: datetime) -> UserInputs:
    """`recommendation_data.UserInputs`, as they were at `cutoff` (see the module docstring)."""
    u, gp = schema.users, schema.game_profiles
    tp, t, tm = schema.tournament_participants, schema.tournaments, schema.team_members
    before = _before(conn, cutoff)
    profile_before = (gp.c.user_id == u.c.id) & before(gp.c.created_at)
    has_profile = sa.exists().where(profile_before)
    joined = before(u.c.date_joined)
    users = read_frame(conn, sa.select(u.c.id.label("user_id"), u.c.region, u.c.is_active)
                       .where(u.c.is_active == sa.true(), joined, has_profile))
    population_row = conn.execute(sa.select(
        sa.func.count(),
        sa.func.coalesce(sa.func.sum(sa.case((u.c.is_active == sa.true(), 0), else_=1)), 0),
        sa.func.coalesce(sa.func.sum(sa.case(
            ((u.c.is_active == sa.true()) & ~has_profile, 1), else_=0)), 0),
    ).where(joined)).one()
    profiles = read_frame(conn, sa.select(gp.c.user_id, gp.c.game_id, gp.c.skill_rating)
                          .select_from(gp.join(u, u.c.id == gp.c.user_id))
                          .where(u.c.is_active == sa.true(), before(gp.c.created_at)))

    activity_counts = read_frame(
        conn, activity_counts_query(conn, cutoff, True, sa.true(), exclude_after_now=True),
        timestamp_columns=["last_activity_at"])
    unknown = conn.execute(
        activity_counts_query(conn, cutoff, False, sa.true(), exclude_after_now=True)).all()

    completed = (t.c.completed_at.is_not(None) & before(t.c.completed_at)
                 & (t.c.status != "cancelled"))
    registered_before = before(tp.c.registered_at)
    participation = read_frame(conn, participation_query(completed, registered_before))
    team_counts = read_frame(conn, sa.select(
        tm.c.user_id, sa.func.count(sa.distinct(tm.c.team_id)).label("teams_joined"),
    ).where(before(tm.c.joined_at)).group_by(tm.c.user_id))
    pc = schema.profile_completeness
    completeness = read_frame(conn, sa.select(pc.c.user_id, pc.c.percentage))

    tournament_history = read_int_frame(
        conn, sa.select(tp.c.user_id, tp.c.tournament_id).where(registered_before)
    )
    team_history = read_int_frame(
        conn, sa.select(tm.c.user_id, tm.c.team_id).where(before(tm.c.joined_at)).distinct()
    )
    tournaments = read_frame(conn, sa.select(
        t.c.id.label("tournament_id"), t.c.game_id, t.c.region,
        _status_at(conn, cutoff).label("status"), t.c.max_participants,
        t.c.skill_min, t.c.skill_max, t.c.starts_at, t.c.name,
    ).where(before(t.c.created_at)))
    tournaments = parse_timestamp_columns(tournaments, ["starts_at"], table="tournaments",
                                          id_column="tournament_id", quarantine=Quarantine())
    m = schema.teams
    teams = read_frame(conn, sa.select(m.c.id.label("team_id"), m.c.game_id, m.c.region)
                       .where(before(m.c.created_at)))
    return UserInputs(
        users=users, profiles=profiles, activity_counts=activity_counts,
        unknown_activity_types={str(k): int(v) for k, v in unknown},
        participation=participation, team_counts=team_counts, completeness=completeness,
        tournament_history=tournament_history, team_history=team_history,
        tournaments=tournaments, teams=teams,
        population={"users": int(population_row[0]), "inactive": int(population_row[1]),
                    "active_without_profile": int(population_row[2])},
    )


def read_tournament_candidates_as_of(
    conn: Connection, cutoff: datetime
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Tournaments open for registration at the cutoff, registrations counted at the cutoff."""
    t, tp, gp, g = (schema.tournaments, schema.tournament_participants, schema.game_profiles,
                    schema.games)
    before = _before(conn, cutoff)
    status = _status_at(conn, cutoff)
    open_then = before(t.c.created_at) & status.in_(schema.OPEN_TOURNAMENT_STATUSES)
    frame = read_frame(conn, sa.select(
        t.c.id.label("tournament_id"), t.c.game_id, g.c.name.label("game_name"), t.c.region,
        t.c.skill_min, t.c.skill_max, t.c.max_participants, status.label("status"),
        t.c.registration_closes_at, t.c.starts_at, t.c.name, t.c.created_at,
        sa.func.count(tp.c.id).label("registered"),
        sa.func.avg(gp.c.skill_rating).label("avg_skill"),
    ).select_from(
        t.outerjoin(g, g.c.id == t.c.game_id)
        .outerjoin(tp, (tp.c.tournament_id == t.c.id) & before(tp.c.registered_at))
        .outerjoin(gp, (gp.c.user_id == tp.c.user_id) & (gp.c.game_id == t.c.game_id))
    ).where(open_then).group_by(t.c.id, g.c.name))
    frame, _ = validate_tournaments(frame)  # quarantined rows are reported by the nightly reads
    registrations = read_int_frame(conn, sa.select(tp.c.tournament_id, tp.c.user_id).select_from(
        tp.join(t, t.c.id == tp.c.tournament_id)).where(open_then, before(tp.c.registered_at)))
    return frame, registrations


def read_team_candidates_as_of(
    conn: Connection, cutoff: datetime
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Teams that existed at the cutoff, with their members at the cutoff."""
    m, tm = schema.teams, schema.team_members
    before = _before(conn, cutoff)
    member_then = before(tm.c.joined_at) & (
        current_membership(conn) | timestamp_compare(conn, tm.c.left_at, ">=", cutoff))
    frame, _ = validate_teams(read_frame(conn, team_candidates_query(
        member_then, before(m.c.created_at))))
    members = read_int_frame(conn, sa.select(tm.c.team_id, tm.c.user_id).where(member_then)
                             .distinct())
    return frame, members


def read_holdout(
    conn: Connection, cutoff: datetime, now: datetime
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(user_id, item_id) registrations / team joins in [cutoff, now)."""
    tp, tm = schema.tournament_participants, schema.team_members

    def within(column: sa.ColumnElement) -> sa.ColumnElement[bool]:
        return (timestamp_compare(conn, column, ">=", cutoff)
                & timestamp_compare(conn, column, "<", now))

    registrations = read_int_frame(conn, sa.select(
        tp.c.user_id, tp.c.tournament_id.label("item_id"),
    ).where(within(tp.c.registered_at)))
    joins = read_int_frame(conn, sa.select(
        tm.c.user_id, tm.c.team_id.label("item_id"),
    ).where(within(tm.c.joined_at)).distinct())
    return registrations, joins


def read_snapshot(conn: Connection, cutoff: datetime, now: datetime) -> HoldoutSnapshot:
    """The recommender's inputs as of `cutoff` and the holdout window [cutoff, now)."""
    cutoff, now = whole_second(cutoff), whole_second(now)
    if not cutoff < now:
        raise ValueError(f"the cutoff {cutoff} must be before now {now}")
    users = build_user_feature_set(read_user_inputs_as_of(conn, cutoff), cutoff)
    t_frame, registrations = read_tournament_candidates_as_of(conn, cutoff)
    m_frame, members = read_team_candidates_as_of(conn, cutoff)
    tournament_holdout, team_holdout = read_holdout(conn, cutoff, now)
    return HoldoutSnapshot(
        cutoff=cutoff,
        now=now,
        users=users,
        tournaments=build_tournament_candidates(t_frame, registrations, cutoff),
        teams=build_team_candidates(m_frame, members, cutoff),
        tournament_holdout=tournament_holdout,
        team_holdout=team_holdout,
    )
