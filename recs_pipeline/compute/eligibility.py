"""The contract's eligibility rules as vectorised masks, and an independent re-verification.

Item-level rules (status, registration deadline, capacity, recruiting) decide which tournaments
and teams are candidates at all; pair-level rules (profile for the game, region, skill band,
already registered / member) are masks over (users x candidates) score matrices. Both are used by
scoring. `find_violations` re-checks finished recommendations with joins instead of masks, so the
blocking check does not trust the code path it verifies.
"""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd

from recs_pipeline.schema import GLOBAL_REGION, OPEN_TOURNAMENT_STATUSES

ELIGIBLE = "eligible"


def tournament_item_status(tournaments: pd.DataFrame, now: datetime) -> pd.Series:
    """Per tournament: `eligible` or why it can never be recommended right now.

    Needs columns status, registration_closes_at, max_participants, registered.
    `max_participants` <= 0 is reported as `no_capacity` (bad input, never eligible).
    """
    status = pd.Series(ELIGIBLE, index=tournaments.index, dtype=object)
    capacity = pd.to_numeric(tournaments["max_participants"], errors="coerce").fillna(0)
    registered = pd.to_numeric(tournaments["registered"], errors="coerce").fillna(0)
    closes = pd.to_datetime(tournaments["registration_closes_at"])
    # Later rules overwrite earlier ones only where still eligible: first failing rule wins.
    rules = [
        ("status_closed", ~tournaments["status"].isin(OPEN_TOURNAMENT_STATUSES)),
        ("registration_closed", ~(closes > pd.Timestamp(now))),
        ("no_capacity", capacity <= 0),
        ("full", registered >= capacity),
    ]
    for reason, failed in rules:
        status = status.mask((status == ELIGIBLE) & failed.to_numpy(), reason)
    return status


def team_item_status(teams: pd.DataFrame) -> pd.Series:
    """Per team: `eligible`, `not_recruiting`, `no_capacity` or `full` (columns is_recruiting,
    max_members, members)."""
    status = pd.Series(ELIGIBLE, index=teams.index, dtype=object)
    capacity = pd.to_numeric(teams["max_members"], errors="coerce").fillna(0)
    members = pd.to_numeric(teams["members"], errors="coerce").fillna(0)
    rules = [
        ("not_recruiting", ~teams["is_recruiting"].astype(bool)),
        ("no_capacity", capacity <= 0),
        ("full", members >= capacity),
    ]
    for reason, failed in rules:
        status = status.mask((status == ELIGIBLE) & failed.to_numpy(), reason)
    return status


def region_matches(user_region: str, item_regions: np.ndarray, *, allow_global: bool) -> np.ndarray:
    """Tournaments: the user's region or `global`; teams: exactly the user's region."""
    same = item_regions == user_region
    return same | (item_regions == GLOBAL_REGION) if allow_global else same


def skill_in_band(skill: np.ndarray, skill_min: np.ndarray, skill_max: np.ndarray) -> np.ndarray:
    """(B,) user skills x (C,) bounds -> (B, C) mask; a NaN (NULL) bound is unbounded."""
    low = np.where(np.isnan(skill_min), -np.inf, skill_min)[None, :]
    high = np.where(np.isnan(skill_max), np.inf, skill_max)[None, :]
    s = skill[:, None]
    return (s >= low) & (s <= high)


def find_violations(
    recs: pd.DataFrame,
    *,
    item_column: str,
    users: pd.DataFrame,
    profiles: pd.DataFrame,
    items: pd.DataFrame,
    members: pd.DataFrame,
    now: datetime,
) -> pd.DataFrame:
    """Rows of `recs` that break an eligibility rule, with a `violation` column.

    `users`: user_id, region of the users allowed recommendations (active, >= 1 profile).
    `profiles`: user_id, game_id, skill_rating. `items`: the item table with the raw item-level
    columns (tournaments: status, registration_closes_at, max_participants, registered, region,
    game_id, skill_min, skill_max; teams: is_recruiting, max_members, members, region, game_id).
    `members`: item_id, user_id of registrants / current members.
    """
    if recs.empty:
        return recs.assign(violation=pd.Series(dtype=object))
    is_tournament = item_column == "tournament_id"
    base = recs[["user_id", item_column]].rename(columns={item_column: "item_id"})
    frame = base.merge(
        users[["user_id", "region"]].rename(columns={"region": "user_region"}),
        on="user_id", how="left", indicator="_user",
    )
    item_cols = ["item_id", "game_id", "region"]
    item_cols += (
        ["status", "registration_closes_at", "max_participants", "registered", "skill_min",
         "skill_max"]
        if is_tournament else ["is_recruiting", "max_members", "members"]
    )
    frame = frame.merge(
        items.rename(columns={item_column: "item_id"})[item_cols].rename(
            columns={"region": "item_region"}
        ),
        on="item_id", how="left", indicator="_item",
    )
    frame = frame.merge(
        profiles[["user_id", "game_id", "skill_rating"]], on=["user_id", "game_id"],
        how="left", indicator="_profile",
    )
    member_keys = members[["item_id", "user_id"]].drop_duplicates().assign(_member=True)
    frame = frame.merge(member_keys, on=["item_id", "user_id"], how="left")
    violation = pd.Series(None, index=frame.index, dtype=object)

    def flag(reason: str, mask: pd.Series | np.ndarray) -> None:
        nonlocal violation
        violation = violation.mask(violation.isna() & np.asarray(mask, dtype=bool), reason)

    flag("user_not_eligible", frame["_user"] != "both")
    flag("unknown_item", frame["_item"] != "both")
    known = frame["_item"] == "both"
    if is_tournament:
        item_status = tournament_item_status(
            frame.loc[known, ["status", "registration_closes_at", "max_participants",
                              "registered"]],
            now,
        )
        flag("item_not_eligible", known & frame.index.isin(
            item_status.index[item_status != ELIGIBLE]))
        region_ok = (frame["item_region"] == frame["user_region"]) | (
            frame["item_region"] == GLOBAL_REGION
        )
    else:
        item_status = team_item_status(
            frame.loc[known, ["is_recruiting", "max_members", "members"]]
        )
        flag("item_not_eligible", known & frame.index.isin(
            item_status.index[item_status != ELIGIBLE]))
        region_ok = frame["item_region"] == frame["user_region"]
    flag("no_profile_for_game", frame["_profile"] != "both")
    flag("wrong_region", ~region_ok)
    if is_tournament:
        skill = pd.to_numeric(frame["skill_rating"], errors="coerce")
        low = pd.to_numeric(frame["skill_min"], errors="coerce")
        high = pd.to_numeric(frame["skill_max"], errors="coerce")
        flag("skill_out_of_band", (low.notna() & (skill < low)) | (high.notna() & (skill > high)))
    flag("already_registered_or_member", frame["_member"].fillna(False).astype(bool))
    out = frame.loc[violation.notna(), ["user_id", "item_id"]].rename(
        columns={"item_id": item_column}
    )
    return out.assign(violation=violation[violation.notna()].to_numpy())
