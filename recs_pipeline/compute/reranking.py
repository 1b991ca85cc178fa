"""Per-pair features for the second stage: what a learned ranker sees of (user, candidate).

The first stage (`compute.scoring`) scores every eligible pair with the cheap vectorised blend and
keeps each user's best `pool_size` candidates; only those pairs get the full feature vector
below, so the cost of the second stage is bounded by users x pool_size whatever the catalogue.

The features are the blend's signals split into their parts, plus what the blend does not see:

* affinity to each stable attribute (game, region, size, start slot, skill band) on its own;
* collaborative: the cosine of the user's factors and the candidate's fold-in embedding (what
  the blend uses) and the raw dot product (it grows with how much evidence both sides have);
* co-play: how many players the user shared a past tournament / team with are attached;
* skill: the blend's skill signal, the distance to the attached players' mean rating, the
  position inside the tournament's band;
* the listing: fill rate, log registrations / members, days listed, hours to the deadline;
* time of day: the user's affinity to the start hour (3-hour bins, UTC) and how popular that hour
  is in the user's local time across the platform (a prior for users without history);
* names (`compute.names`): the user's share of past cups of the same series and of the same
  organiser, and the TF-IDF similarity of the name to the user's past cups' names;
* the user's amount of history, and the blend itself.

Missing values are NaN (teams have no deadline, series or band): the learned ranker
(`compute.ranker`) handles them natively.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

PAIR_FEATURES: tuple[str, ...] = (
    "blend",
    "affinity_game", "affinity_region", "affinity_size", "affinity_slot", "affinity_band",
    "collaborative_cosine", "collaborative_dot", "coplay_players",
    "skill_signal", "skill_gap", "band_position",
    "fill_rate", "log_count", "listed_days", "popularity_rate", "hours_to_close",
    "hour_affinity", "local_hour_prior",
    "series_share", "organiser_share", "name_similarity",
    "user_history",
)
AFFINITY_FEATURES = PAIR_FEATURES[1:6]  # in the order of the blend's affinity terms
_COLUMN = {name: i for i, name in enumerate(PAIR_FEATURES)}
HOUR_BINS = 8  # 3-hour bins of the day
# Hours from UTC of each contract region, roughly its population centre: "local time" for the
# time-of-day prior. An unknown region counts as UTC.
REGION_UTC_OFFSET: dict[str, int] = {"na": -6, "sa": -3, "eu": 1, "asia": 8, "oce": 10}


def hour_bin(hours: np.ndarray) -> np.ndarray:
    """0..7 from hours 0..23 (negative = unknown stays -1)."""
    hours = np.asarray(hours, dtype=np.int64)
    return np.where(hours < 0, -1, (hours % 24) // 3)


def utc_offsets(regions: np.ndarray) -> np.ndarray:
    """Hours from UTC per region string (0 for unknown regions)."""
    return pd.Series(regions, dtype=object).map(REGION_UTC_OFFSET).fillna(0).to_numpy(np.int64)


@dataclass
class ItemSignals:
    """One kind's per-candidate inputs of the pair features."""

    count: np.ndarray  # registrations / members
    listed_days: np.ndarray
    hours_to_close: np.ndarray  # NaN for teams
    utc_hour: np.ndarray  # -1 where unknown (teams)
    series: np.ndarray  # code, -1 = none
    organiser: np.ndarray
    name_vectors: sp.csr_matrix  # (candidates, words), unit rows; zero columns for teams
    embedding: np.ndarray  # raw fold-in embeddings (candidates, d)


@dataclass
class UserSignals:
    """The scored users' per-user inputs of the pair features (rows = scored users)."""

    series_counts: sp.csr_matrix  # (users, series codes) past tournament registrations
    organiser_counts: sp.csr_matrix
    past_tournaments: np.ndarray  # registrations in the history
    history: np.ndarray  # tournaments + teams in the history
    name_profile: sp.csr_matrix  # (users, words), unit rows
    hour_affinity: np.ndarray  # (users, HOUR_BINS), smoothed share, favourite = 1
    utc_offset: np.ndarray  # hours
    local_hour_prior: np.ndarray  # (HOUR_BINS,) platform-wide share by local hour, max = 1
    factors: np.ndarray  # raw collaborative factors, rows = the scoring's user vocabulary


@dataclass
class BlendParts:
    """The blend's own per-pair values for the same pairs (computed by the first stage)."""

    blend: np.ndarray
    affinity: list[np.ndarray]  # one array per affinity term (teams: just the game)
    collaborative_cosine: np.ndarray
    coplay_players: np.ndarray
    skill_signal: np.ndarray
    skill: np.ndarray  # the user's rating in the candidate's game
    avg_skill: np.ndarray  # attached players' mean rating (NaN if none)
    skill_min: np.ndarray
    skill_max: np.ndarray
    fill_rate: np.ndarray


def _rowwise(matrix: sp.csr_matrix, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """matrix[rows[i], cols[i]] for every i (a sparse gather)."""
    if matrix.shape[1] == 0 or len(rows) == 0:
        return np.zeros(len(rows), dtype=np.float32)
    return np.asarray(matrix[rows, cols], dtype=np.float32).ravel()


def _share(counts: sp.csr_matrix, user: np.ndarray, code: np.ndarray,
           total: np.ndarray) -> np.ndarray:
    """The user's share of past cups with that code (NaN where the candidate has no code)."""
    has = code >= 0
    out = np.full(len(user), np.nan, dtype=np.float32)
    if has.any():
        hits = _rowwise(counts, user[has], code[has])
        out[has] = hits / np.maximum(total[user[has]], 1.0)
    return out


def pair_features(
    user: np.ndarray,
    user_row: np.ndarray,
    item: np.ndarray,
    parts: BlendParts,
    items: ItemSignals,
    users: UserSignals,
) -> np.ndarray:
    """(n_pairs, len(PAIR_FEATURES)) float32 for pairs (scored user `user`, candidate `item`).

    `user` indexes the scored users (UserSignals rows), `user_row` the same users in the
    collaborative vocabulary, `item` the kind's candidates.
    """
    n = len(user)
    out = np.full((n, len(PAIR_FEATURES)), np.nan, dtype=np.float32)

    def put(name: str, values: np.ndarray | float, rows: np.ndarray | slice = slice(None)
            ) -> None:
        out[rows, _COLUMN[name]] = values

    put("blend", parts.blend)
    for name, values in zip(AFFINITY_FEATURES, parts.affinity, strict=False):
        put(name, values)
    put("collaborative_cosine", parts.collaborative_cosine)
    put("collaborative_dot", np.einsum("ij,ij->i", users.factors[user_row],
                                       items.embedding[item])
        if items.embedding.shape[1] else 0.0)
    put("coplay_players", parts.coplay_players)
    put("skill_signal", parts.skill_signal)
    put("skill_gap", np.abs(parts.skill - parts.avg_skill) / 1000.0)
    low, high = parts.skill_min, parts.skill_max
    banded = ~(np.isnan(low) & np.isnan(high))
    lo = np.where(np.isnan(low), 0.0, low)
    hi = np.where(np.isnan(high), 5000.0, high)
    put("band_position", np.where(banded, (parts.skill - lo) / np.maximum(hi - lo, 1.0), np.nan))
    put("fill_rate", parts.fill_rate)
    put("log_count", np.log1p(items.count[item]))
    put("listed_days", items.listed_days[item])
    # registrations per day listed: a count alone mostly measures how long it has been open
    put("popularity_rate",
        items.count[item] / (np.nan_to_num(items.listed_days[item], nan=0.0) + 1.0))
    put("hours_to_close", items.hours_to_close[item])
    hour = items.utc_hour[item]
    timed = np.flatnonzero(hour >= 0)
    if len(timed):
        put("hour_affinity", users.hour_affinity[user[timed], hour_bin(hour[timed])], timed)
        local = hour_bin((hour[timed] + users.utc_offset[user[timed]]) % 24)
        put("local_hour_prior", users.local_hour_prior[local], timed)
    put("series_share", _share(users.series_counts, user, items.series[item],
                               users.past_tournaments))
    put("organiser_share", _share(users.organiser_counts, user, items.organiser[item],
                                  users.past_tournaments))
    if items.name_vectors.shape[1] and users.name_profile.shape[1]:
        sim = users.name_profile[user].multiply(items.name_vectors[item]).sum(axis=1)
        put("name_similarity", np.asarray(sim, dtype=np.float32).ravel())
    put("user_history", np.log1p(users.history[user]))
    return out
