"""User features and the stable item attributes users develop affinities to.

Everything is computed from DataFrames the reader produced with set-based SQL (activity counts are
aggregated in the database; participation history arrives as (user, item) pairs). No email
column is ever part of these frames.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recs_pipeline.compute.quarantine import Quarantine

# --- stable tournament attributes -----------------------------------------------------------

SIZE_LABELS: tuple[str, ...] = ("small", "mid-size", "large", "massive")
_SIZE_EDGES = np.array([8, 32, 128])  # <= 8, <= 32, <= 128, more

SLOT_LABELS: tuple[str, ...] = (
    "weekday night", "weekday morning", "weekday afternoon", "weekday evening",
    "weekend night", "weekend morning", "weekend afternoon", "weekend evening",
)
BAND_LABELS: tuple[str, ...] = ("open", "beginner", "intermediate", "advanced", "expert")
_BAND_EDGES = np.array([1000, 2000, 3000])
SKILL_RANGE = (0, 5000)


def size_class(capacity: pd.Series | np.ndarray) -> np.ndarray:
    """0..3: small (<= 8), mid-size (<= 32), large (<= 128), massive."""
    values = np.nan_to_num(np.asarray(capacity, dtype=np.float64), nan=0.0)
    return np.searchsorted(_SIZE_EDGES, values, side="left").astype(np.int8)


def start_slot(starts_at: pd.Series) -> np.ndarray:
    """0..7: weekday/weekend x night (0-6h) / morning / afternoon / evening, in UTC."""
    ts = pd.to_datetime(pd.Series(starts_at))
    if ts.empty:
        return np.zeros(0, dtype=np.int8)
    hour = ts.dt.hour.fillna(0).to_numpy()
    weekend = (ts.dt.day_of_week.fillna(0).to_numpy() >= 5).astype(np.int8)
    return (weekend * 4 + hour // 6).astype(np.int8)


def band_class(skill_min: pd.Series | np.ndarray, skill_max: pd.Series | np.ndarray) -> np.ndarray:
    """0 = open (no bounds), else 1..4 by the band's centre (open ends at 0 / 5000)."""
    low = np.asarray(pd.to_numeric(pd.Series(skill_min), errors="coerce"), dtype=np.float64)
    high = np.asarray(pd.to_numeric(pd.Series(skill_max), errors="coerce"), dtype=np.float64)
    open_band = np.isnan(low) & np.isnan(high)
    centre = (np.where(np.isnan(low), SKILL_RANGE[0], low)
              + np.where(np.isnan(high), SKILL_RANGE[1], high)) / 2.0
    cls = 1 + np.searchsorted(_BAND_EDGES, centre, side="right")
    return np.where(open_band, 0, cls).astype(np.int8)


def start_hour(starts_at: pd.Series) -> np.ndarray:
    """0..23: the UTC hour a tournament starts (0 where unknown)."""
    ts = pd.to_datetime(pd.Series(starts_at))
    return ts.dt.hour.fillna(0).to_numpy().astype(np.int8)


def add_tournament_attributes(tournaments: pd.DataFrame) -> pd.DataFrame:
    """Add size_class, start_slot, start_hour and band_class to a frame with max_participants,
    starts_at, skill_min, skill_max; and `name` ('' where the reader had none)."""
    names = (tournaments["name"].fillna("").astype(str) if "name" in tournaments
             else pd.Series("", index=tournaments.index, dtype=object))
    return tournaments.assign(
        size_class=size_class(tournaments["max_participants"]),
        start_slot=start_slot(tournaments["starts_at"]),
        start_hour=start_hour(tournaments["starts_at"]),
        band_class=band_class(tournaments["skill_min"], tournaments["skill_max"]),
        name=names,
    )


# --- user features ---------------------------------------------------------------------------

USER_FEATURE_COLUMNS: tuple[str, ...] = (
    "user_id", "region", "n_games", "game_ids", "max_skill", "mean_skill",
    "activities_7d", "activities_30d", "activities_90d", "days_since_last_activity",
    "tournaments_played", "tournaments_won", "podium_finishes", "teams_joined",
    "tournaments_registered", "profile_completeness",
)


@dataclass
class UserFeatureSet:
    """What scoring needs about users, passed between assets.

    features: one row per user who may get recommendations (USER_FEATURE_COLUMNS).
    profiles: user_id, game_id, skill_rating of those users.
    tournament_history: user_id, tournament_id (every participation, any status).
    team_history: user_id, team_id (every team ever joined).
    tournaments: tournament_id, game_id, region, status, size_class, start_slot, band_class of
        every tournament (the attribute vocabulary for affinities).
    teams: team_id, game_id, region of every team.
    skipped: counts of input rows ignored and why (visible in metadata).
    quarantine: input rows that broke the contract, by table, column and reason.
    """

    features: pd.DataFrame
    profiles: pd.DataFrame
    tournament_history: pd.DataFrame
    team_history: pd.DataFrame
    tournaments: pd.DataFrame
    teams: pd.DataFrame
    skipped: dict[str, int] = field(default_factory=dict)
    quarantine: Quarantine = field(default_factory=Quarantine)


def _joined_game_ids(profiles: pd.DataFrame) -> np.ndarray:
    """Per user of `profiles`, in user_id order, the sorted game ids joined by commas ("3,7").

    Column-wise string adds, one per game slot: a per-user Python join costs ~30 s at 1M users.
    """
    if profiles.empty:
        return np.empty(0, dtype=object)
    ordered = profiles.sort_values(["user_id", "game_id"])
    users = ordered["user_id"].to_numpy()
    games = ordered["game_id"].astype(np.int64).astype(str).to_numpy(dtype=object)
    starts = np.flatnonzero(np.r_[True, users[1:] != users[:-1]])
    counts = np.diff(np.r_[starts, len(users)])
    joined = games[starts].copy()
    for slot in range(1, int(counts.max())):
        more = counts > slot
        joined[more] = joined[more] + "," + games[starts[more] + slot]
    return joined


def build_user_features(
    users: pd.DataFrame,
    profiles: pd.DataFrame,
    activity_counts: pd.DataFrame,
    participation: pd.DataFrame,
    team_counts: pd.DataFrame,
    completeness: pd.DataFrame,
    now: datetime,
) -> pd.DataFrame:
    """One row per active user with at least one game profile.

    users: user_id, region, is_active. profiles: user_id, game_id, skill_rating.
    activity_counts: user_id, activities_7d/30d/90d, last_activity_at (known types only).
    participation: user_id, tournaments_played, tournaments_won, podium_finishes,
    tournaments_registered. team_counts: user_id, teams_joined. completeness: user_id, percentage.
    Users without a profile and inactive users are dropped here (the contract's first rule).
    """
    active = users.loc[users["is_active"].astype(bool), ["user_id", "region"]]
    prof = profiles[profiles["user_id"].isin(active["user_id"])]
    per_user = prof.groupby("user_id", sort=True).agg(
        n_games=("game_id", "size"),
        max_skill=("skill_rating", "max"),
        mean_skill=("skill_rating", "mean"),
    )
    per_user = per_user.assign(game_ids=_joined_game_ids(prof)).reset_index()
    frame = active.merge(per_user, on="user_id", how="inner")
    frame = frame.merge(activity_counts, on="user_id", how="left")
    frame = frame.merge(participation, on="user_id", how="left")
    frame = frame.merge(team_counts, on="user_id", how="left")
    frame = frame.merge(
        completeness.rename(columns={"percentage": "profile_completeness"}), on="user_id",
        how="left",
    )
    count_cols = ["activities_7d", "activities_30d", "activities_90d", "tournaments_played",
                  "tournaments_won", "podium_finishes", "teams_joined", "tournaments_registered",
                  "profile_completeness"]
    for col in count_cols:
        if col not in frame:
            frame[col] = 0
        frame[col] = pd.to_numeric(frame[col], errors="coerce").fillna(0).astype(np.int64)
    last = pd.to_datetime(frame.get("last_activity_at", pd.Series(pd.NaT, index=frame.index)))
    # NaN = no known activity inside the retention window.
    frame["days_since_last_activity"] = (
        (pd.Timestamp(now) - last).dt.total_seconds() / 86400.0
    ).round(2)
    frame["mean_skill"] = frame["mean_skill"].astype(np.float64).round(1)
    frame["max_skill"] = frame["max_skill"].astype(np.int64)
    frame["n_games"] = frame["n_games"].astype(np.int64)
    return frame[list(USER_FEATURE_COLUMNS)].sort_values("user_id").reset_index(drop=True)


def smoothed_affinity(
    counts: sp.spmatrix | np.ndarray, *, smoothing: float, prior: np.ndarray | None = None
) -> np.ndarray:
    """(n_users, n_values) counts -> smoothed shares relative to each user's favourite value.

    share = (count + a * prior) / (n + a) with the global share as prior (a user without
    history gets the population's taste: the cold-start fallback), then divided by the row max so
    every user's favourite value scores 1.
    """
    dense = counts.toarray() if sp.issparse(counts) else np.asarray(counts)
    dense = dense.astype(np.float32)
    n_values = dense.shape[1]
    if n_values == 0:
        return dense
    if prior is None:
        total = dense.sum(axis=0)
        prior = total / total.sum() if total.sum() > 0 else np.full(n_values, 1.0 / n_values)
    prior = np.asarray(prior, dtype=np.float32)
    n = dense.sum(axis=1, keepdims=True)
    share = (dense + smoothing * prior[None, :]) / (n + smoothing)
    top = share.max(axis=1, keepdims=True)
    return np.divide(share, top, out=np.zeros_like(share), where=top > 0)
