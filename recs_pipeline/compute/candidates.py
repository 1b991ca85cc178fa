"""Candidate tournaments and teams: the items that pass the item-level rules, with features.

An item-level rule failure (closed, full, `max_participants` 0, not recruiting) removes the item
from every user's candidate list; the counts per reason are kept for metadata.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import pandas as pd

from recs_pipeline.compute.eligibility import ELIGIBLE, team_item_status, tournament_item_status
from recs_pipeline.compute.features import add_tournament_attributes
from recs_pipeline.compute.quarantine import Quarantine

TOURNAMENT_CANDIDATE_COLUMNS: tuple[str, ...] = (
    "tournament_id", "game_id", "game_name", "region", "status", "registration_closes_at",
    "starts_at", "skill_min", "skill_max", "max_participants", "registered", "open_slots",
    "fill_rate", "size_class", "start_slot", "band_class", "avg_skill", "hours_to_close",
    "name", "listed_days", "start_hour",
)
TEAM_CANDIDATE_COLUMNS: tuple[str, ...] = (
    "team_id", "game_id", "game_name", "region", "is_recruiting", "max_members", "members",
    "open_slots", "fill_rate", "avg_skill", "listed_days",
)


@dataclass
class CandidateSet:
    """Eligible items with features, their registrants/members, and skip counts.

    items: one row per candidate (TOURNAMENT_/TEAM_CANDIDATE_COLUMNS).
    members: item_id, user_id of the candidates' registrants (tournaments) or current members
        (teams); used to mask "already registered/member" and for the co-play signal.
    skipped: items excluded by an item-level rule, by reason.
    quarantine: input rows that broke the contract, by table, column and reason.
    """

    items: pd.DataFrame
    members: pd.DataFrame
    skipped: dict[str, int] = field(default_factory=dict)
    as_of: datetime | None = None  # the "now" the item-level rules were evaluated at
    quarantine: Quarantine = field(default_factory=Quarantine)

    @property
    def item_column(self) -> str:
        return str(self.items.columns[0])


def _listed_days(frame: pd.DataFrame, now: datetime | None) -> pd.Series:
    """Days since each item was created (NaN when unknown): how long a listing has been open,
    so that a count of registrations can be read as a rate."""
    if now is None or "created_at" not in frame:
        return pd.Series(np.nan, index=frame.index, dtype=np.float64)
    created = pd.to_datetime(frame["created_at"])
    return ((pd.Timestamp(now) - created).dt.total_seconds() / 86400.0).clip(lower=0.0)


def _skip_counts(status: pd.Series) -> dict[str, int]:
    counts = status[status != ELIGIBLE].value_counts()
    return {str(k): int(v) for k, v in counts.items()}


def build_tournament_candidates(
    tournaments: pd.DataFrame, registrations: pd.DataFrame, now: datetime,
    quarantine: Quarantine | None = None,
) -> CandidateSet:
    """tournaments: tournament_id, game_id, game_name, region, skill_min, skill_max,
    max_participants, status, registration_closes_at, starts_at, registered, avg_skill
    (registrants' mean skill for the game, NaN if none). registrations: tournament_id, user_id."""
    frame = tournaments.copy()
    frame["registered"] = pd.to_numeric(frame["registered"], errors="coerce").fillna(0)
    frame["registered"] = frame["registered"].astype(np.int64)
    status = tournament_item_status(frame, now)
    items = frame.loc[status == ELIGIBLE].copy()
    items = add_tournament_attributes(items)
    cap = items["max_participants"].astype(np.float64)
    items["open_slots"] = (cap - items["registered"]).astype(np.int64)
    items["fill_rate"] = (items["registered"] / cap).astype(np.float64)
    closes = pd.to_datetime(items["registration_closes_at"])
    items["hours_to_close"] = ((closes - pd.Timestamp(now)).dt.total_seconds() / 3600.0)
    items["listed_days"] = _listed_days(items, now)
    if "name" not in items:  # a reader without names: no series signal, nothing else changes
        items["name"] = ""
    items["name"] = items["name"].fillna("").astype(str)
    for col in ("skill_min", "skill_max", "avg_skill"):
        items[col] = pd.to_numeric(items[col], errors="coerce").astype(np.float64)
    items = items[list(TOURNAMENT_CANDIDATE_COLUMNS)].sort_values("tournament_id")
    members = registrations.rename(columns={"tournament_id": "item_id"})[["item_id", "user_id"]]
    members = members[members["item_id"].isin(items["tournament_id"])].reset_index(drop=True)
    return CandidateSet(items.reset_index(drop=True), members, _skip_counts(status), now,
                        quarantine or Quarantine())


def build_team_candidates(
    teams: pd.DataFrame, memberships: pd.DataFrame, now: datetime | None = None,
    quarantine: Quarantine | None = None,
) -> CandidateSet:
    """teams: team_id, game_id, game_name, region, max_members, is_recruiting, members (current),
    avg_skill (current members' mean skill for the game). memberships: team_id, user_id of
    current members."""
    frame = teams.copy()
    frame["members"] = pd.to_numeric(frame["members"], errors="coerce").fillna(0)
    frame["members"] = frame["members"].astype(np.int64)
    status = team_item_status(frame)
    items = frame.loc[status == ELIGIBLE].copy()
    cap = items["max_members"].astype(np.float64)
    items["open_slots"] = (cap - items["members"]).astype(np.int64)
    items["fill_rate"] = (items["members"] / cap).astype(np.float64)
    items["avg_skill"] = pd.to_numeric(items["avg_skill"], errors="coerce").astype(np.float64)
    items["listed_days"] = _listed_days(items, now)
    items = items[list(TEAM_CANDIDATE_COLUMNS)].sort_values("team_id")
    members = memberships.rename(columns={"team_id": "item_id"})[["item_id", "user_id"]]
    members = members[members["item_id"].isin(items["team_id"])].drop_duplicates()
    return CandidateSet(items.reset_index(drop=True), members.reset_index(drop=True),
                        _skip_counts(status), now, quarantine or Quarantine())
