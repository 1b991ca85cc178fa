"""Deterministic demo data for the app tables (`recs-pipeline seed`).

The generator draws a synthetic population with hidden tastes and lets those tastes drive every
table, so a recommender has a real (but noisy) signal to learn:

* each user has a region (a tiny share has the unknown region `mena`), per-game skill, preferred
  games, a preferred tournament size class, a preferred start-time slot and a propensity to play
  `global` tournaments instead of their own region's;
* friend groups (same region and main game, mostly shared tastes) register for the same
  tournaments and form or join the same teams: the co-play signal;
* tournaments span a year of history and a month of future, across every status; registrations
  obey capacity, skill bands, regions, registration windows and the users' join dates.

Everything comes from `numpy.random.default_rng` streams derived from `SeedConfig.seed` (one
stream per table, so a change to one table's generator does not reshuffle the others), and the
anchor `now` defaults to today 00:00 UTC: the same config gives byte-identical data on SQLite and
PostgreSQL. Generation is vectorised (no Python loop over users); writes go through
`recs_pipeline.db.bulk_insert` (PostgreSQL COPY, SQLite executemany) in one transaction, so a
failed seed leaves nothing behind.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from recs_pipeline import schema
from recs_pipeline.db import DatabaseConfigError, bulk_insert, is_postgres


class SeedError(DatabaseConfigError):
    """The database is not ready for seeding (tables missing, data present); one line, exit 2."""


# --- Fixed vocabulary -----------------------------------------------------------------------

# (slug, name, popularity)
GAMES: tuple[tuple[str, str, float], ...] = (
    ("valorant", "VALORANT", 0.24),
    ("cs2", "Counter-Strike 2", 0.20),
    ("lol", "League of Legends", 0.20),
    ("dota2", "Dota 2", 0.12),
    ("rocket-league", "Rocket League", 0.10),
    ("fortnite", "Fortnite", 0.14),
)
# Region codes used internally; users never get `global`, tournaments never get `mena`.
REGIONS: tuple[str, ...] = ("na", "eu", "sa", "asia", "oce", "mena", "global")
UNKNOWN_REGION = 5
GLOBAL = 6
USER_REGION_P = (0.30, 0.30, 0.12, 0.17, 0.105, 0.005, 0.0)
TOURNAMENT_REGION_P = (0.26, 0.26, 0.11, 0.15, 0.08, 0.0, 0.14)
# Size classes: (small, medium, large) and their two max_participants each.
SIZE_CLASSES: tuple[tuple[int, int], ...] = ((8, 16), (32, 64), (128, 256))
SIZE_PREF_P = (0.40, 0.38, 0.22)
SIZE_DURATION_H = (3, 8, 30)
# Start-time slots (hours of day, UTC): morning, afternoon, evening, late night.
SLOT_HOURS: tuple[tuple[int, ...], ...] = ((9, 10, 11), (13, 14, 15, 16), (18, 19, 20, 21),
                                           (22, 23, 0, 1))
SLOT_PREF_P = (0.15, 0.25, 0.40, 0.20)
# Skill bands: (skill_min, skill_max, probability); None = open on that side.
SKILL_BANDS: tuple[tuple[int | None, int | None, float], ...] = (
    (None, None, 0.50),
    (None, 1300, 0.15),
    (1200, 1900, 0.20),
    (1700, None, 0.10),
    (2000, 3200, 0.05),
)
ACTIVITY_TYPES: tuple[str, ...] = (*schema.KNOWN_ACTIVITY_TYPES, "stream_watched")
ACTIVITY_P = (0.42, 0.30, 0.06, 0.04, 0.02, 0.01, 0.13, 0.02)
# Tastes: how often a user follows each preference (the rest is exploration).
P_FOLLOW_SIZE = 0.75
P_FOLLOW_SLOT = 0.70
GAME_WEIGHTS = (0.74, 0.20, 0.06)  # primary, secondary, tertiary game
P_SOCIAL = 0.55  # share of users in a friend group
GROUP_SIZES = ((2, 3, 4, 5, 6), (0.3, 0.25, 0.2, 0.15, 0.1))
# Listings: a real platform runs many concurrent cups per game and region, most far from full.
# The demand-based count (~80 % fill) is what a platform of REFERENCE_USERS runs; a smaller one
# lists relatively more (fill falls with the user base, ~10 % at 5k users), so even the demo's
# users have tens of eligible open tournaments / recruiting teams and ranking matters.
REFERENCE_USERS = 1_000_000
TOURNAMENT_LISTING_EXPONENT = 0.4  # x8.3 tournaments at 5k users, x3.3 at 50k, x1 at 1M
TEAM_LISTING_EXPONENT = 0.35  # x6.4 founded teams at 5k users, x2.9 at 50k, x1 at 1M
# People don't pick a cup because it is big: capacity enters a choice only mildly.
CAPACITY_EXPONENT = 0.25
SIZE_MIX_EXPONENT = 0.5  # share of a size class among tournaments ~ preference / seats ** this
# Teams: joiners look for a team at their level (captain's skill tier) most of the time.
TEAM_SKILL_TIERS = (1250, 1500, 1750)
P_FOLLOW_TEAM_TIER = 0.8
P_JOIN_FRIENDS_TEAM = 0.6  # a captain's friends join the team they founded

DAY = 86_400
HOUR = 3_600
SEEDED_TABLES: tuple[str, ...] = (
    "games", "users", "game_profiles", "profile_completeness", "teams", "team_members",
    "tournaments", "tournament_participants", "activities", "app_events",
)


@dataclass(frozen=True)
class SeedConfig:
    """What to generate. Same config (including `now`) -> identical data on every backend."""

    users: int
    seed: int = 42
    now: datetime | None = None  # anchor; default today 00:00 UTC (naive)
    history_days: int = 365
    future_days: int = 30
    activities_per_user: float = 7.0
    solo_registrations_per_user: float = 4.0
    group_events_per_group: float = 3.0

    def __post_init__(self) -> None:
        if not isinstance(self.users, int) or isinstance(self.users, bool) or self.users <= 0:
            raise ValueError(f"users must be a positive integer, got {self.users!r}")
        if not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {self.seed!r}")
        if self.history_days < 30 or self.future_days < 15:
            raise ValueError("history_days must be >= 30 and future_days >= 15")
        if self.now is not None and self.now.tzinfo is not None:
            object.__setattr__(self, "now", self.now.astimezone(UTC).replace(tzinfo=None))

    @property
    def anchor(self) -> datetime:
        if self.now is not None:
            return self.now
        today = datetime.now(UTC).date()
        return datetime(today.year, today.month, today.day)

    def rng(self, stream: str) -> np.random.Generator:
        """An independent, reproducible random stream per table/concern."""
        key = [int(b) for b in stream.encode()]
        return np.random.default_rng([self.seed, *key])


@dataclass
class SeedSummary:
    users: int
    seed: int
    now: datetime
    rows: dict[str, int] = field(default_factory=dict)
    table_seconds: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0

    def render(self) -> str:
        lines = [f"seeded {self.users:,} users (seed {self.seed}, now {self.now:%Y-%m-%d %H:%M}) "
                 f"in {self.seconds:.1f} s"]
        for table, count in self.rows.items():
            secs = self.table_seconds.get(table, 0.0)
            lines.append(f"  {table:<24} {count:>12,} rows {secs:>7.2f} s")
        return "\n".join(lines)


# --- Small vectorised helpers ---------------------------------------------------------------


def _ts(seconds: np.ndarray) -> np.ndarray:
    """Epoch seconds (int64) -> datetime64[us]."""
    return seconds.astype("int64").astype("datetime64[s]").astype("datetime64[us]")


def _ts_nullable(seconds: np.ndarray, valid: np.ndarray) -> pd.Series:
    out = pd.Series(_ts(np.where(valid, seconds, 0)))
    out[~valid] = pd.NaT
    return out


def _nullable_int(values: np.ndarray, valid: np.ndarray) -> pd.Series:
    return pd.Series(pd.array(np.where(valid, values, 0), dtype="Int64")).where(valid, pd.NA)


def _cat(codes: np.ndarray, categories: tuple[str, ...] | list[str]) -> pd.Categorical:
    return pd.Categorical.from_codes(codes.astype(np.int64), categories=list(categories))


def _uniform_between(rng: np.random.Generator, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Integer seconds uniformly in [lo, hi] (hi >= lo assumed)."""
    span = np.maximum(hi - lo, 0)
    return lo + np.floor(rng.random(len(lo)) * (span + 1)).astype(np.int64)


def _group_rank(keys: np.ndarray) -> np.ndarray:
    """0-based position of each row within its run of equal keys (keys must be sorted)."""
    n = len(keys)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    starts = np.r_[0, np.flatnonzero(keys[1:] != keys[:-1]) + 1]
    lengths = np.diff(np.r_[starts, n])
    return np.arange(n) - np.repeat(starts, lengths)


def _weighted_pick(
    item_keys: np.ndarray, item_weights: np.ndarray, query_keys: np.ndarray,
    rng: np.random.Generator,
) -> np.ndarray:
    """For each query, an item index with the same key drawn proportionally to weight, else -1."""
    draws = rng.random(len(query_keys))
    if len(item_keys) == 0 or len(query_keys) == 0:
        return np.full(len(query_keys), -1, dtype=np.int64)
    order = np.argsort(item_keys, kind="stable")
    sorted_keys = item_keys[order]
    cum = np.cumsum(item_weights[order].astype(np.float64))
    uniq, start = np.unique(sorted_keys, return_index=True)
    end = np.r_[start[1:], len(sorted_keys)]
    pos = np.minimum(np.searchsorted(uniq, query_keys), len(uniq) - 1)
    s, e = start[pos], end[pos]
    base = np.where(s > 0, cum[np.maximum(s - 1, 0)], 0.0)
    total = cum[e - 1] - base
    found = (uniq[pos] == query_keys) & (total > 0)
    idx = np.searchsorted(cum, base + draws * total, side="right")
    idx = np.clip(idx, s, e - 1)
    return np.where(found, order[idx], -1)


def _lookup(
    sorted_keys: np.ndarray, values: np.ndarray, query: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Vectorised dict lookup on unique sorted keys: (found mask, value or 0)."""
    if len(sorted_keys) == 0:
        return np.zeros(len(query), bool), np.zeros(len(query), dtype=np.int64)
    pos = np.minimum(np.searchsorted(sorted_keys, query), len(sorted_keys) - 1)
    found = sorted_keys[pos] == query
    return found, np.where(found, values[pos], 0)


def _choose_game(
    rng: np.random.Generator, users: np.ndarray, top_games: np.ndarray, n_games: np.ndarray
) -> np.ndarray:
    """A game for each (user) row, following the user's primary/secondary/tertiary weights."""
    w = np.asarray(GAME_WEIGHTS)
    k = n_games[users]
    # P(pick slot j) renormalised over the user's k games.
    cum = np.cumsum(w)
    r = rng.random(len(users)) * cum[k - 1]
    slot = np.minimum((r[:, None] > cum[None, :]).sum(axis=1), k - 1)
    return top_games[users, slot]


# --- The population -------------------------------------------------------------------------


@dataclass
class Population:
    n: int
    now: int  # epoch seconds
    region: np.ndarray  # int codes into REGIONS
    is_active: np.ndarray
    joined: np.ndarray  # epoch seconds
    level: np.ndarray  # activity level, mean ~1
    top_games: np.ndarray  # (n, 3) game indices, -1 = none
    n_games: np.ndarray  # 0..3
    skill: np.ndarray  # (n, G) int, only meaningful where has_profile
    has_profile: np.ndarray  # (n, G) bool
    size_pref: np.ndarray
    slot_pref: np.ndarray
    p_global: np.ndarray
    p_banded: np.ndarray  # how often the user looks for a skill-banded (not open) tournament
    group: np.ndarray  # group id or -1
    group_leader: np.ndarray  # user index of each group's leader
    group_start: np.ndarray  # first member position in group_members
    group_members: np.ndarray  # user indices, grouped


def _population(config: SeedConfig, now: int) -> Population:
    rng = config.rng("users")
    n = config.users
    g = len(GAMES)
    region = rng.choice(len(REGIONS), size=n, p=USER_REGION_P)
    is_active = rng.random(n) >= 0.05
    # 70 % joined more than a year ago; the rest during the last year.
    old = rng.random(n) < 0.7
    days_ago = np.where(old, rng.uniform(365, 1100, n), rng.uniform(1, 365, n))
    # Sorted: like an app's autoincrement, user ids follow sign-up order.
    joined = np.sort(now - (days_ago * DAY).astype(np.int64))
    level = rng.lognormal(mean=-0.32, sigma=0.8, size=n)  # mean ~1, long tail
    level = np.where(is_active, level, level * 0.4)

    # Games: primary by popularity, then up to two distinct others; ~3 % have no profile at all.
    pop = np.asarray([x[2] for x in GAMES])
    keys = rng.random((n, g)) ** (1.0 / pop)  # weighted sampling without replacement (Efraimidis)
    ranked = np.argsort(-keys, axis=1)[:, :3]
    n_games = np.where(rng.random(n) < 0.6, 2, 1) + (rng.random(n) < 0.2)
    n_games = np.minimum(n_games, 3)
    no_profile = rng.random(n) < 0.03
    n_games = np.where(no_profile, 0, n_games)
    top_games = np.where(np.arange(3)[None, :] < n_games[:, None], ranked, -1)
    has_profile = np.zeros((n, g), dtype=bool)
    rows = np.repeat(np.arange(n), 3)
    cols = top_games.ravel()
    ok = cols >= 0
    has_profile[rows[ok], cols[ok]] = True

    # Elo-like skill: a per-user base plus per-game variation, clipped to the contract's range.
    base = rng.normal(1500, 330, n)
    skill = np.clip(base[:, None] + rng.normal(0, 230, (n, g)), 0, 5000).astype(np.int64)

    size_pref = rng.choice(3, size=n, p=SIZE_PREF_P)
    slot_pref = rng.choice(4, size=n, p=SLOT_PREF_P)
    p_global = rng.beta(1.5, 4.0, n)
    p_global = np.where(region == UNKNOWN_REGION, 1.0, p_global)  # nothing local for them

    # Friend groups: social users with profiles, sorted by (region, primary game) and cut into
    # small consecutive chunks, so members mostly share both.
    social = (rng.random(n) < P_SOCIAL) & (n_games > 0)
    cand = np.flatnonzero(social)
    tiebreak = rng.random(len(cand))
    cand = cand[np.lexsort((tiebreak, top_games[cand, 0], region[cand]))]
    sizes = rng.choice(GROUP_SIZES[0], size=len(cand) // 2 + 1, p=GROUP_SIZES[1])
    bounds = np.cumsum(sizes)
    gid = np.searchsorted(bounds, np.arange(len(cand)), side="right")
    # A trailing singleton is not a group.
    counts = np.bincount(gid, minlength=len(sizes))
    keep = counts[gid] >= 2
    cand, gid = cand[keep], gid[keep]
    _, gid = np.unique(gid, return_inverse=True)
    group = np.full(n, -1, dtype=np.int64)
    group[cand] = gid
    group_start = np.r_[0, np.flatnonzero(gid[1:] != gid[:-1]) + 1] if len(gid) else np.zeros(
        0, dtype=np.int64)
    group_leader = cand[group_start] if len(gid) else np.zeros(0, dtype=np.int64)
    # Members mostly adopt the leader's size and slot tastes.
    if len(cand):
        leader_of = group_leader[gid]
        adopt = rng.random(len(cand)) < 0.7
        size_pref[cand] = np.where(adopt, size_pref[leader_of], size_pref[cand])
        adopt = rng.random(len(cand)) < 0.7
        slot_pref[cand] = np.where(adopt, slot_pref[leader_of], slot_pref[cand])
    # Own stream, so adding this taste did not reshuffle the draws above.
    p_banded = config.rng("users.tastes").beta(0.7, 0.7, n)
    return Population(
        n=n, now=now, region=region, is_active=is_active, joined=joined, level=level,
        top_games=top_games, n_games=n_games, skill=skill, has_profile=has_profile,
        size_pref=size_pref, slot_pref=slot_pref, p_global=p_global, p_banded=p_banded,
        group=group,
        group_leader=group_leader, group_start=group_start, group_members=cand,
    )


def _users_frame(config: SeedConfig, pop: Population) -> pd.DataFrame:
    rng = config.rng("users.frame")
    ids = np.arange(1, pop.n + 1)
    id_text = pd.Series(ids).astype(str)
    never = rng.random(pop.n) < 0.03
    last_login = _uniform_between(rng, pop.joined, np.full(pop.n, pop.now - 60))
    return pd.DataFrame({
        "id": ids,
        "username": ("player_" + id_text).to_numpy(dtype=object),
        "email": ("player_" + id_text + "@example.com").to_numpy(dtype=object),
        "region": _cat(pop.region, REGIONS),
        "is_active": pop.is_active,
        "date_joined": _ts(pop.joined),
        "last_login": _ts_nullable(last_login, ~never),
    })


def _game_profiles_frame(config: SeedConfig, pop: Population) -> pd.DataFrame:
    rng = config.rng("game_profiles")
    users, games = np.nonzero(pop.has_profile)
    created = _uniform_between(rng, pop.joined[users], np.full(len(users), pop.now - 60))
    return pd.DataFrame({
        "id": np.arange(1, len(users) + 1),
        "user_id": users + 1,
        "game_id": games + 1,
        "skill_rating": pop.skill[users, games],
        "created_at": _ts(created),
    })


def _profile_completeness_frame(config: SeedConfig, pop: Population) -> pd.DataFrame:
    rng = config.rng("profile_completeness")
    complete = rng.random(pop.n) < 0.18
    pct = np.where(complete, 100, np.floor(rng.beta(2.0, 1.6, pop.n) * 100)).astype(np.int64)
    pct = np.minimum(pct, 99 + complete)
    updated = _uniform_between(rng, pop.joined, np.full(pop.n, pop.now - 60))
    return pd.DataFrame({
        "user_id": np.arange(1, pop.n + 1),
        "percentage": pct,
        "updated_at": _ts(updated),
    })


# --- Teams ----------------------------------------------------------------------------------


@dataclass
class Teams:
    frame: pd.DataFrame
    members: pd.DataFrame
    game: np.ndarray
    # (user, game) -> team lookup for participants' team_id
    lookup_keys: np.ndarray
    lookup_team: np.ndarray


def _teams(config: SeedConfig, pop: Population) -> Teams:
    rng = config.rng("teams")
    n, now = pop.n, pop.now
    g = len(GAMES)
    # 1. Friend groups of 3+ often form a team around their leader's main game.
    gsize = np.diff(np.r_[pop.group_start, len(pop.group_members)]).astype(np.int64)
    forms = (gsize >= 3) & (rng.random(len(gsize)) < 0.6)
    group_ids = np.flatnonzero(forms)
    # 2. Other teams founded by random users with a profile.
    with_profile = np.flatnonzero(pop.n_games > 0)
    n_extra = max(3, int(n // 45 * listing_boost(n, TEAM_LISTING_EXPONENT)))
    extra_captains = rng.choice(with_profile, size=n_extra) if len(with_profile) else np.zeros(
        0, dtype=np.int64)
    captain = np.r_[pop.group_leader[group_ids], extra_captains].astype(np.int64)
    n_teams = len(captain)
    game = pop.top_games[captain, 0]
    region = pop.region[captain]
    base_size = np.r_[gsize[group_ids], np.zeros(n_extra, dtype=np.int64)]
    max_members = np.clip(np.maximum(base_size + rng.integers(0, 4, n_teams),
                                     rng.integers(5, 11, n_teams)), 5, 10)
    created_lo = np.maximum(pop.joined[captain], now - 730 * DAY)
    created = _uniform_between(rng, created_lo, np.full(n_teams, now - DAY))
    # Team ids follow creation order (as the app's would); the first len(group_ids) teams
    # before this reordering belong to the forming groups.
    perm = np.argsort(created, kind="stable")
    new_index = np.empty(n_teams, dtype=np.int64)
    new_index[perm] = np.arange(n_teams)
    captain, game, region, max_members, created = (
        captain[perm], game[perm], region[perm], max_members[perm], created[perm])

    # Membership rows: captains, group members, then solo joins driven by tastes.
    team_of_group = np.full(len(gsize), -1, dtype=np.int64)
    team_of_group[group_ids] = new_index[: len(group_ids)]
    member_gid = pop.group[pop.group_members]
    mteam = team_of_group[member_gid]
    is_member = mteam >= 0
    grp_users = pop.group_members[is_member]
    grp_teams = mteam[is_member]
    grp_users_ok = pop.has_profile[grp_users, game[grp_teams]]
    grp_users, grp_teams = grp_users[grp_users_ok], grp_teams[grp_users_ok]

    # Friends of a captain who founded a team on their own often join it (co-play, not size).
    t_rng = config.rng("teams.tastes")
    own_team = np.flatnonzero(pop.group[captain] >= 0)
    own_team = own_team[~np.isin(own_team, new_index[: len(group_ids)])]
    cap_gid = pop.group[captain[own_team]]
    f_len = gsize[cap_gid]
    f_team = np.repeat(own_team, f_len)
    f_offs = np.arange(len(f_team)) - np.repeat(np.cumsum(f_len) - f_len, f_len)
    f_user = pop.group_members[pop.group_start[np.repeat(cap_gid, f_len)] + f_offs]
    f_ok = ((f_user != captain[f_team]) & pop.has_profile[f_user, game[f_team]]
            & (t_rng.random(len(f_team)) < P_JOIN_FRIENDS_TEAM))
    grp_users, grp_teams = np.r_[grp_users, f_user[f_ok]], np.r_[grp_teams, f_team[f_ok]]

    # Solo joins: the user's game and region, a team at the user's level (the captain's skill
    # tier) most of the time; team size is only a mild factor.
    joiners = np.flatnonzero((pop.n_games > 0) & (rng.random(n) < 0.3))
    attempts = 1 + rng.poisson(0.4, len(joiners))
    solo_users = np.repeat(joiners, attempts)
    solo_game = _choose_game(rng, solo_users, pop.top_games, pop.n_games)
    tiers = np.asarray(TEAM_SKILL_TIERS)
    team_tier = np.searchsorted(tiers, pop.skill[captain, game], side="right")
    user_tier = np.searchsorted(tiers, pop.skill[solo_users, solo_game], side="right")
    user_tier = np.where(t_rng.random(len(solo_users)) < P_FOLLOW_TEAM_TIER, user_tier,
                         t_rng.integers(0, len(tiers) + 1, len(solo_users)))
    team_weight = max_members.astype(np.float64) ** CAPACITY_EXPONENT
    picked = _weighted_pick((game * 10 + region) * 10 + team_tier, team_weight,
                            (solo_game * 10 + pop.region[solo_users]) * 10 + user_tier, t_rng)
    todo = picked < 0  # no team at that level: any team of the game and region
    picked[todo] = _weighted_pick(game * 10 + region, team_weight,
                                  solo_game[todo] * 10 + pop.region[solo_users[todo]], t_rng)
    ok = picked >= 0
    solo_users, solo_teams = solo_users[ok], picked[ok]

    users = np.r_[captain, grp_users, solo_users]
    teams = np.r_[np.arange(n_teams), grp_teams, solo_teams]
    kind = np.r_[np.zeros(n_teams), np.ones(len(grp_users)), np.full(len(solo_users), 2)]
    lo = np.maximum(created[teams], pop.joined[users])
    hi_group = np.minimum(lo + 14 * DAY, now - 60)
    hi = np.where(kind == 2, now - 60, hi_group)
    joined_at = np.where(kind == 0, created[teams], _uniform_between(rng, lo, np.maximum(hi, lo)))
    valid = joined_at < now
    users, teams, kind, joined_at = users[valid], teams[valid], kind[valid], joined_at[valid]
    # One row per (team, user): keep the earliest (the captain row sorts first).
    order = np.lexsort((kind, joined_at, users, teams))
    users, teams, kind, joined_at = users[order], teams[order], kind[order], joined_at[order]
    pair = teams * (n + 1) + users
    first = np.r_[True, pair[1:] != pair[:-1]]
    users, teams, kind, joined_at = users[first], teams[first], kind[first], joined_at[first]

    # Some members left; some of those came back (a second row).
    leaves = (kind != 0) & (rng.random(len(users)) < 0.22)
    left_at = _uniform_between(rng, joined_at + 60, np.full(len(users), now - 60))
    leaves &= left_at > joined_at
    rejoin = leaves & (rng.random(len(users)) < 0.25)
    rejoined_at = _uniform_between(rng, left_at + 60, np.full(len(users), now - 30))
    rejoin &= rejoined_at > left_at
    all_users = np.r_[users, users[rejoin]]
    all_teams = np.r_[teams, teams[rejoin]]
    all_joined = np.r_[joined_at, rejoined_at[rejoin]]
    all_left = np.r_[np.where(leaves, left_at, -1), np.full(int(rejoin.sum()), -1)]
    all_kind = np.r_[kind, np.full(int(rejoin.sum()), 3)]

    # Capacity: at most max_members current members; later current joiners are dropped.
    current = all_left < 0
    order = np.lexsort((all_kind, all_joined, ~current, all_teams))
    all_users, all_teams, all_joined, all_left, current = (
        all_users[order], all_teams[order], all_joined[order], all_left[order], current[order])
    rank = _group_rank(all_teams * 2 + (~current))
    keep = ~current | (rank < max_members[all_teams])
    all_users, all_teams, all_joined, all_left, current = (
        all_users[keep], all_teams[keep], all_joined[keep], all_left[keep], current[keep])
    # Rows in join order get ascending ids, like an app would.
    order = np.lexsort((all_users, all_teams, all_joined))
    all_users, all_teams, all_joined, all_left, current = (
        all_users[order], all_teams[order], all_joined[order], all_left[order], current[order])

    n_current = np.bincount(all_teams[current], minlength=n_teams)
    full = n_current >= max_members
    recruiting = np.where(full, rng.random(n_teams) < 0.15, rng.random(n_teams) < 0.7)

    adjectives = np.array(["Crimson", "Silent", "Rapid", "Iron", "Neon", "Lunar", "Frost",
                           "Golden", "Shadow", "Wild"], dtype=object)
    nouns = np.array(["Wolves", "Falcons", "Titans", "Vipers", "Comets", "Ravens", "Knights",
                      "Sharks"], dtype=object)
    team_ids = np.arange(1, n_teams + 1)
    names = (pd.Series(adjectives[rng.integers(0, len(adjectives), n_teams)]) + " "
             + pd.Series(nouns[rng.integers(0, len(nouns), n_teams)]) + " "
             + pd.Series(team_ids).astype(str))
    frame = pd.DataFrame({
        "id": team_ids,
        "name": names.to_numpy(dtype=object),
        "game_id": game + 1,
        "region": _cat(region, REGIONS),
        "captain_id": captain + 1,
        "max_members": max_members,
        "is_recruiting": recruiting,
        "created_at": _ts(created),
    })
    members = pd.DataFrame({
        "id": np.arange(1, len(all_users) + 1),
        "team_id": all_teams + 1,
        "user_id": all_users + 1,
        "joined_at": _ts(all_joined),
        "left_at": _ts_nullable(all_left, all_left >= 0),
    })
    # First team (lowest id) per (user, game), to tag tournament registrations with a team.
    key = all_users * g + game[all_teams]
    order = np.lexsort((all_teams, key))
    key_sorted = key[order]
    first = np.r_[True, key_sorted[1:] != key_sorted[:-1]] if len(key) else np.zeros(0, bool)
    return Teams(frame=frame, members=members, game=game,
                 lookup_keys=key_sorted[first], lookup_team=all_teams[order][first])


# --- Tournaments ----------------------------------------------------------------------------


@dataclass
class Tournaments:
    frame: pd.DataFrame
    game: np.ndarray
    region: np.ndarray
    size_class: np.ndarray
    slot: np.ndarray
    max_participants: np.ndarray
    skill_min: np.ndarray  # -1 = open
    skill_max: np.ndarray  # 10**9 = open
    band: np.ndarray  # index into SKILL_BANDS (0 = open)
    status: np.ndarray  # index into schema.TOURNAMENT_STATUSES
    created: np.ndarray
    closes: np.ndarray
    starts: np.ndarray
    completed: np.ndarray  # -1 = NULL


def listing_boost(users: int, exponent: float) -> float:
    """How many more listings than a REFERENCE_USERS platform's (per user) a platform lists."""
    return max(1.0, (REFERENCE_USERS / users) ** exponent)


def tournament_count(config: SeedConfig) -> int:
    """Enough seats for the expected demand at ~80 % fill per size class on a large platform,
    times `listing_boost` on a smaller one (many concurrent cups, most far from full)."""
    mean_size = np.asarray([sum(c) / 2 for c in SIZE_CLASSES])
    demand = config.users * 3.4  # registrations per user that survive every filter (measured)
    per_class = demand * np.asarray(SIZE_PREF_P) / (0.8 * mean_size)
    boost = listing_boost(config.users, TOURNAMENT_LISTING_EXPONENT)
    return max(60, int(np.ceil(per_class.sum() * boost)))


def _tournaments(config: SeedConfig, now: int) -> Tournaments:
    rng = config.rng("tournaments")
    t = tournament_count(config)
    mean_size = np.asarray([sum(c) / 2 for c in SIZE_CLASSES])
    # Fewer big cups than small ones, but not in proportion to seats: a Major draws a few times
    # a Skirmish's registrations, not 16x (which would make raw popularity a size detector).
    class_p = np.asarray(SIZE_PREF_P) / mean_size ** SIZE_MIX_EXPONENT
    class_p /= class_p.sum()
    game = rng.choice(len(GAMES), size=t, p=[x[2] for x in GAMES])
    region = rng.choice(len(REGIONS), size=t, p=TOURNAMENT_REGION_P)
    size_class = rng.choice(3, size=t, p=class_p)
    max_p = np.asarray(SIZE_CLASSES)[size_class, rng.integers(0, 2, t)]
    slot = rng.choice(4, size=t, p=SLOT_PREF_P)
    hours = np.asarray([h[i % len(h)] for h in SLOT_HOURS for i in range(4)]).reshape(4, 4)
    hour = hours[slot, rng.integers(0, 4, t)]
    day = rng.integers(-config.history_days, config.future_days + 1, t)
    # Force one of each status early in the id range so even tiny seeds have them all.
    forced_day = np.asarray([-30, -40, -1, 5, 20, 6, -50])
    k = min(len(forced_day), t)
    day[:k] = forced_day[:k]
    starts = now + day * DAY + hour * HOUR + rng.integers(0, 2, t) * 1800
    duration = (np.asarray(SIZE_DURATION_H)[size_class] * HOUR
                * rng.uniform(0.7, 1.3, t)).astype(np.int64)
    # ~1 % are running right now (plus the forced one).
    running = rng.random(t) < 0.01
    running[:k] = False
    running[min(2, t - 1)] = True
    starts = np.where(running, now - (duration * rng.uniform(0.1, 0.9, t)).astype(np.int64),
                      starts)
    future = starts > now
    created = starts - rng.integers(5 * DAY, 30 * DAY, t)
    created = np.where(future, np.minimum(created, now - rng.integers(HOUR, 3 * DAY, t)), created)
    lead = rng.integers(HOUR, DAY, t)
    closes = np.where(future, starts - np.minimum(lead, (starts - now) // 2), starts - lead)
    closes = np.maximum(closes, created + 60)
    ends = starts + duration

    status = np.full(t, schema.TOURNAMENT_STATUSES.index("completed"))
    past_cancel = rng.random(t) < 0.08
    future_cancel = rng.random(t) < 0.03
    status[(ends <= now) & past_cancel] = schema.TOURNAMENT_STATUSES.index("cancelled")
    status[(starts <= now) & (ends > now)] = schema.TOURNAMENT_STATUSES.index("in_progress")
    open_ = future & (starts <= now + 14 * DAY)
    status[open_] = schema.TOURNAMENT_STATUSES.index("registration_open")
    status[future & ~open_] = schema.TOURNAMENT_STATUSES.index("upcoming")
    status[future & future_cancel] = schema.TOURNAMENT_STATUSES.index("cancelled")
    if t > 1:
        status[1] = schema.TOURNAMENT_STATUSES.index("cancelled")
        status[3] = schema.TOURNAMENT_STATUSES.index("registration_open")
        status[4] = schema.TOURNAMENT_STATUSES.index("upcoming")
        status[5] = schema.TOURNAMENT_STATUSES.index("registration_open")
        status[6] = schema.TOURNAMENT_STATUSES.index("completed")
    completed_flag = status == schema.TOURNAMENT_STATUSES.index("completed")
    completed = np.where(completed_flag, ends, -1)
    # Bad input the pipeline must tolerate: a couple of tournaments with no seats at all.
    max_p[5:7] = 0
    # Tournament ids follow creation order, as the app's autoincrement would. Besides realism
    # this keeps registrations (written in time order) local in the (tournament_id, user_id)
    # index, which makes the PostgreSQL COPY several times cheaper.
    perm = np.argsort(created, kind="stable")
    game, region, size_class, max_p, slot, starts, created, closes, status, completed = (
        a[perm] for a in (game, region, size_class, max_p, slot, starts, created, closes,
                          status, completed))

    band_p = [b[2] for b in SKILL_BANDS]
    band = rng.choice(len(SKILL_BANDS), size=t, p=band_p)
    lo_v = np.asarray([-1 if b[0] is None else b[0] for b in SKILL_BANDS])[band]
    hi_v = np.asarray([10**9 if b[1] is None else b[1] for b in SKILL_BANDS])[band]
    jitter = rng.integers(-2, 3, t) * 50
    lo_v = np.where(lo_v >= 0, lo_v + jitter, lo_v)
    hi_v = np.where(hi_v < 10**9, hi_v + jitter, hi_v)

    ids = np.arange(1, t + 1)
    game_names = np.asarray([x[1] for x in GAMES], dtype=object)
    size_names = np.asarray(["Skirmish", "Cup", "Major"], dtype=object)
    region_names = np.asarray([r.upper() for r in REGIONS], dtype=object)
    names = (pd.Series(game_names[game]) + " " + pd.Series(region_names[region]) + " "
             + pd.Series(size_names[size_class]) + " #" + pd.Series(ids).astype(str))
    frame = pd.DataFrame({
        "id": ids,
        "name": names.to_numpy(dtype=object),
        "game_id": game + 1,
        "region": _cat(region, REGIONS),
        "skill_min": _nullable_int(lo_v, lo_v >= 0),
        "skill_max": _nullable_int(hi_v, hi_v < 10**9),
        "max_participants": max_p,
        "status": _cat(status, schema.TOURNAMENT_STATUSES),
        "registration_closes_at": _ts(closes),
        "starts_at": _ts(starts),
        "completed_at": _ts_nullable(completed, completed >= 0),
        "created_at": _ts(created),
    })
    return Tournaments(frame=frame, game=game, region=region, size_class=size_class, slot=slot,
                       max_participants=max_p, skill_min=lo_v, skill_max=hi_v, band=band,
                       status=status, created=created, closes=closes, starts=starts,
                       completed=completed)


def _pick_tournaments(
    rng: np.random.Generator, tour: Tournaments, weight: np.ndarray, game: np.ndarray,
    region: np.ndarray, size: np.ndarray, slot: np.ndarray, band: np.ndarray,
) -> np.ndarray:
    """Pick a tournament per request: the exact taste bucket first, then relax the slot, the
    size, the region (to `global`) and finally the skill band (to an open one); -1 if none."""
    result = np.full(len(game), -1, dtype=np.int64)
    # (own region?, keep size?, keep slot?, keep band? (else: open band))
    levels = ((True, True, True, True), (True, True, False, True), (True, False, False, True),
              (False, True, False, True), (False, False, False, True),
              (True, False, False, False), (False, False, False, False))

    def key(g: np.ndarray, r: np.ndarray, c: np.ndarray, s: np.ndarray, b: np.ndarray,
            level: tuple[bool, bool, bool, bool]) -> np.ndarray:
        _, keep_c, keep_s, _ = level
        c = c if keep_c else np.full(len(g), 9)
        s = s if keep_s else np.full(len(g), 9)
        return (((g * 10 + r) * 10 + c) * 10 + s) * 10 + b

    for level in levels:
        todo = np.flatnonzero(result < 0)
        if len(todo) == 0:
            break
        own, _, _, keep_band = level
        req_region = region[todo] if own else np.full(len(todo), GLOBAL)
        req_band = band[todo] if keep_band else np.zeros(len(todo), dtype=np.int64)
        items = key(tour.game, tour.region, tour.size_class, tour.slot, tour.band, level)
        query = key(game[todo], req_region, size[todo], slot[todo], req_band, level)
        result[todo] = _weighted_pick(items, weight, query, rng)
    return result


def _request_band(rng: np.random.Generator, skill: np.ndarray, p_banded: np.ndarray
                  ) -> np.ndarray:
    """The skill band a request looks for: with the user's own probability `p_banded` one the
    skill fits in (nominal bounds shrunk by the largest jitter, so the real band admits the user
    too), else an open one."""
    lo = np.asarray([-10**9 if b[0] is None else b[0] + 100 for b in SKILL_BANDS])
    hi = np.asarray([10**9 if b[1] is None else b[1] - 100 for b in SKILL_BANDS])
    fits = (skill[:, None] >= lo[None, :]) & (skill[:, None] <= hi[None, :])
    fits[:, 0] = False
    keys = np.where(fits, rng.random((len(skill), len(SKILL_BANDS))), -1.0)
    banded = keys.argmax(axis=1)
    use_band = (rng.random(len(skill)) < p_banded) & fits.any(axis=1)
    return np.where(use_band, banded, 0)


def _participants(
    config: SeedConfig, pop: Population, tour: Tournaments, teams: Teams,
) -> pd.DataFrame:
    rng = config.rng("tournament_participants")
    now = pop.now
    # Inside a taste bucket a tournament draws registrations at a steady rate while its
    # registration is open (the time it has been open so far, for future ones): a longer
    # listing collects more, but a day of it is worth the same. Capacity is only a mild factor.
    open_so_far = np.maximum(np.minimum(tour.closes, now) - tour.created, 0)
    weight = tour.max_participants.astype(np.float64) ** CAPACITY_EXPONENT * open_so_far

    # Solo registrations: count ~ Poisson(mean * activity level), tastes per request.
    players = np.flatnonzero(pop.n_games > 0)
    n_solo = rng.poisson(config.solo_registrations_per_user * pop.level[players])
    s_user = np.repeat(players, n_solo)
    # Group registrations: the leader picks with the leader's tastes, members mostly follow.
    gsize = np.diff(np.r_[pop.group_start, len(pop.group_members)]).astype(np.int64)
    n_events = rng.poisson(config.group_events_per_group * pop.level[pop.group_leader])
    ev_group = np.repeat(np.arange(len(gsize)), n_events)
    ev_leader = pop.group_leader[ev_group]

    req_user = np.r_[s_user, ev_leader]
    m = len(req_user)
    req_game = _choose_game(rng, req_user, pop.top_games, pop.n_games)
    is_group_req = np.r_[np.zeros(len(s_user), bool), np.ones(len(ev_leader), bool)]
    # Groups mostly play their leader's main game.
    req_game = np.where(is_group_req & (rng.random(m) < 0.8), pop.top_games[req_user, 0],
                        req_game)
    req_region = np.where(rng.random(m) < pop.p_global[req_user], GLOBAL, pop.region[req_user])
    req_size = np.where(rng.random(m) < P_FOLLOW_SIZE, pop.size_pref[req_user],
                        rng.integers(0, 3, m))
    req_slot = np.where(rng.random(m) < P_FOLLOW_SLOT, pop.slot_pref[req_user],
                        rng.integers(0, 4, m))
    req_band = _request_band(rng, pop.skill[req_user, req_game], pop.p_banded[req_user])
    picked = _pick_tournaments(rng, tour, weight, req_game, req_region, req_size, req_slot,
                               req_band)

    solo_t = picked[: len(s_user)]
    ev_t = picked[len(s_user):]
    # Expand group requests to members (each joins with p = 0.8; the leader always).
    g_start = pop.group_start[ev_group]
    g_len = gsize[ev_group]
    mem_ev = np.repeat(np.arange(len(ev_group)), g_len)
    offs = np.arange(len(mem_ev)) - np.repeat(np.cumsum(g_len) - g_len, g_len)
    mem_user = pop.group_members[g_start[mem_ev] + offs]
    mem_t = ev_t[mem_ev]
    follows = (mem_user == ev_leader[mem_ev]) | (rng.random(len(mem_ev)) < 0.8)
    mem_user, mem_t, mem_is_group = mem_user[follows], mem_t[follows], np.ones(
        int(follows.sum()), bool)

    user = np.r_[s_user, mem_user]
    tid = np.r_[solo_t, mem_t]
    grp = np.r_[np.zeros(len(s_user), bool), mem_is_group]
    ok = tid >= 0
    user, tid, grp = user[ok], tid[ok], grp[ok]
    # Eligibility at registration time: a profile for the game, skill inside the band, and the
    # registration window open after the user joined.
    game = tour.game[tid]
    skill = pop.skill[user, game]
    start = np.maximum(tour.created[tid], pop.joined[user])
    end = np.minimum(tour.closes[tid], now - 60)
    ok = (pop.has_profile[user, game] & (skill >= tour.skill_min[tid])
          & (skill <= tour.skill_max[tid]) & (start < end))
    user, tid, grp, start, end = user[ok], tid[ok], grp[ok], start[ok], end[ok]
    registered = _uniform_between(rng, start, end)

    # Sorting on one packed int64 key (stable, so ties keep generation order) is several times
    # faster than np.lexsort on millions of rows. Seconds since `base` fit in 27 bits.
    base = int(registered.min()) if len(registered) else 0
    since = registered - base
    t_bits = max(int(tour.game.size).bit_length(), 1)

    # Unique (tournament, user): the first request wins.
    order = np.argsort(tid * (pop.n + 1) + user, kind="stable")
    user, tid, grp, registered, since = (a[order] for a in (user, tid, grp, registered, since))
    first = np.r_[True, (tid[1:] != tid[:-1]) | (user[1:] != user[:-1])] if len(tid) else (
        np.zeros(0, bool))
    user, tid, grp, registered, since = (a[first] for a in (user, tid, grp, registered, since))
    # Capacity: first come, first served.
    order = np.argsort((tid << 27) | since, kind="stable")
    user, tid, grp, registered, since = (a[order] for a in (user, tid, grp, registered, since))
    seat = _group_rank(tid)
    ok = seat < tour.max_participants[tid]
    user, tid, grp, registered, since = (a[ok] for a in (user, tid, grp, registered, since))

    # Placements on completed tournaments: better players tend to place higher.
    done = tour.status[tid] == schema.TOURNAMENT_STATUSES.index("completed")
    perf = pop.skill[user, tour.game[tid]] + rng.normal(0, 250, len(user))
    worse = np.clip(np.rint(7000 - perf), 0, (1 << 14) - 1).astype(np.int64)
    order = np.argsort((tid << 14) | worse, kind="stable")
    placement = np.zeros(len(user), dtype=np.int64)
    placement[order] = _group_rank(tid[order]) + 1

    # team_id when registering with one of the user's teams for that game.
    has_team, team_idx = _lookup(teams.lookup_keys, teams.lookup_team,
                                 user * len(GAMES) + tour.game[tid])
    with_team = has_team & (rng.random(len(user)) < np.where(grp, 0.85, 0.4))
    team_id = team_idx + 1

    # Ids follow registration time, like an app's autoincrement.
    order = np.argsort((since << t_bits) | tid, kind="stable")
    return pd.DataFrame({
        "id": np.arange(1, len(user) + 1),
        "tournament_id": tid[order] + 1,
        "user_id": user[order] + 1,
        "team_id": _nullable_int(team_id[order], with_team[order]),
        "registered_at": _ts(registered[order]),
        "placement": _nullable_int(placement[order], done[order]),
    })


# --- Activities and events ------------------------------------------------------------------


def _activities(config: SeedConfig, pop: Population, n_tournaments: int,
                n_teams: int) -> pd.DataFrame:
    rng = config.rng("activities")
    now, n = pop.now, pop.n
    # Long tail: lognormal counts scaled by the user's activity level.
    mean = config.activities_per_user
    counts = np.floor(rng.lognormal(np.log(mean) - 0.6, 1.1, n) * np.sqrt(pop.level)).astype(
        np.int64)
    counts = np.minimum(counts, 3000)
    user = np.repeat(np.arange(n), counts)
    a = len(user)
    lo = np.maximum(pop.joined[user], now - config.history_days * DAY)
    created = _uniform_between(rng, lo, np.full(a, now - 1))
    atype = rng.choice(len(ACTIVITY_TYPES), size=a, p=ACTIVITY_P)
    t_reg, t_done, t_join, t_left = (ACTIVITY_TYPES.index(x) for x in (
        "tournament_registered", "tournament_completed", "team_joined", "team_left"))
    on_tournament = (atype == t_reg) | (atype == t_done)
    on_team = (atype == t_join) | (atype == t_left)
    obj_type = np.where(on_tournament, 0, np.where(on_team, 1, -1))
    obj_id = np.where(on_tournament, rng.integers(1, n_tournaments + 1, a),
                      rng.integers(1, max(n_teams, 1) + 1, a))
    # A small set of JSON metadata strings (no PII), on ~35 % of rows.
    templates = ['{"client": "web"}', '{"client": "mobile"}', '{"client": "desktop"}']
    templates += [f'{{"game": "{slug}", "won": {w}}}' for slug, _, _ in GAMES
                  for w in ("true", "false")]
    meta_code = np.where(atype == ACTIVITY_TYPES.index("match_played"),
                         3 + rng.integers(0, 2 * len(GAMES), a), rng.integers(0, 3, a))
    meta_code = np.where(rng.random(a) < 0.35, meta_code, -1)
    order = np.argsort(created, kind="stable")  # ids follow time; rows were by user already
    return pd.DataFrame({
        "id": np.arange(1, a + 1),
        "user_id": user[order] + 1,
        "activity_type": _cat(atype[order], ACTIVITY_TYPES),
        "object_type": _cat(obj_type[order], ("tournament", "team")),
        "object_id": _nullable_int(obj_id[order], obj_type[order] >= 0),
        "created_at": _ts(created[order]),
        "metadata": _cat(meta_code[order], templates),
    })


def _app_events(config: SeedConfig, pop: Population, tour: Tournaments,
                participants: pd.DataFrame, members: pd.DataFrame,
                completeness: pd.DataFrame) -> pd.DataFrame:
    """The outbox backlog: recent achievement-relevant events, noise, and a few bad rows."""
    rng = config.rng("app_events")
    now, n = pop.now, pop.n
    recent = now - 30 * DAY
    # tournament_completed for each participant of a tournament completed in the last 30 days.
    tids = participants["tournament_id"].to_numpy() - 1
    completed_at = tour.completed[tids]
    sel = (completed_at >= recent)
    tc_user = participants["user_id"].to_numpy()[sel]
    tc_tid = tids[sel] + 1
    tc_time = completed_at[sel] + rng.integers(1, 600, int(sel.sum()))
    # team_joined for joins in the last 30 days.
    joined = members["joined_at"].to_numpy().astype("datetime64[s]").astype(np.int64)
    sel = joined >= recent
    tj_user = members["user_id"].to_numpy()[sel]
    tj_team = members["team_id"].to_numpy()[sel]
    tj_time = joined[sel] + rng.integers(0, 5, int(sel.sum()))
    # profile_completed for users at 100 %.
    pct = completeness["percentage"].to_numpy()
    sel = pct == 100
    pc_user = completeness["user_id"].to_numpy()[sel]
    pc_time = completeness["updated_at"].to_numpy().astype("datetime64[s]").astype(np.int64)[sel]
    # Types the pipeline ignores.
    n_noise = max(5, n // 5)
    nz_user = rng.integers(1, n + 1, n_noise)
    nz_time = now - rng.integers(60, 30 * DAY, n_noise)
    nz_type = rng.integers(0, 3, n_noise)
    # Bad rows for the dead-letter path: NULL user, malformed JSON, unknown user.
    n_bad = max(2, n // 5000)
    bad_time = now - rng.integers(60, 7 * DAY, 3 * n_bad)

    def payload(prefix: str, values: np.ndarray) -> np.ndarray:
        return (prefix + pd.Series(values).astype(str) + "}").to_numpy(dtype=object)

    event_type = np.concatenate([
        np.full(len(tc_user), "tournament_completed", dtype=object),
        np.full(len(tj_user), "team_joined", dtype=object),
        np.full(len(pc_user), "profile_completed", dtype=object),
        np.asarray(["match_played", "login", "tournament_registered"], dtype=object)[nz_type],
        np.full(3 * n_bad, "tournament_completed", dtype=object),
    ])
    user_id = np.concatenate([
        tc_user, tj_user, pc_user, nz_user,
        np.zeros(n_bad, dtype=np.int64),  # NULL
        rng.integers(1, n + 1, n_bad),  # malformed payload
        n + 1_000_000 + np.arange(n_bad),  # unknown user
    ])
    user_valid = np.ones(len(user_id), bool)
    user_valid[len(user_id) - 3 * n_bad: len(user_id) - 2 * n_bad] = False
    bad_tid = rng.integers(1, len(tour.game) + 1, 3 * n_bad)
    payloads = np.concatenate([
        payload('{"tournament_id": ', tc_tid),
        payload('{"team_id": ', tj_team),
        np.full(len(pc_user), '{"percentage": 100}', dtype=object),
        np.where(nz_type == 0, '{}', None).astype(object),
        payload('{"tournament_id": ', bad_tid[:n_bad]),
        np.full(n_bad, '{"tournament_id": ', dtype=object),  # malformed JSON
        payload('{"tournament_id": ', bad_tid[2 * n_bad:]),
    ])
    created = np.concatenate([tc_time, tj_time, pc_time, nz_time, bad_time])
    created = np.minimum(created, now - 1)
    order = np.argsort(created, kind="stable")
    return pd.DataFrame({
        "event_type": event_type[order],
        "user_id": _nullable_int(user_id[order], user_valid[order]),
        "payload": payloads[order],
        "created_at": _ts(created[order]),
    })


# --- Writing --------------------------------------------------------------------------------


def _check_ready(engine: Engine, replace: bool) -> None:
    existing = set(sa.inspect(engine).get_table_names())
    missing = [t.name for t in schema.APP_TABLES if t.name not in existing]
    if missing:
        shown = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3
                                          else "")
        raise SeedError(f"app tables missing ({shown}): run `recs-pipeline init-db` first")
    if replace:
        return
    with engine.connect() as conn:
        for name in (*SEEDED_TABLES, "user_achievements"):
            table = schema.APP_METADATA.tables[name]
            if conn.execute(sa.select(sa.literal(1)).select_from(table).limit(1)).first():
                raise SeedError(
                    f"table {name} already holds data: seed an empty database "
                    "or pass --replace to delete the demo data first")


def _clear(conn: Connection) -> None:
    """Delete seeded rows (demo/test only). The achievement catalogue stays; pipeline-owned
    tables derived from the old data (recommendations, event ledger, dead letters) are emptied."""
    existing = set(sa.inspect(conn).get_table_names())
    app = [n for n in (*SEEDED_TABLES, "user_achievements") if n in existing]
    pipeline = [t.name for t in schema.PIPELINE_METADATA.sorted_tables if t.name in existing]
    names = app + pipeline
    if is_postgres(conn):
        quoted = ", ".join(f'"{n}"' for n in names)
        conn.execute(sa.text(f"TRUNCATE {quoted} RESTART IDENTITY"))
    else:
        for name in names:
            conn.execute(sa.text(f'DELETE FROM "{name}"'))


@contextmanager
def _progress_bars(enabled: bool) -> Iterator[Callable[[str, int], Callable[[int], None]]]:
    if not enabled:
        yield lambda _name, _total: (lambda _n: None)
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    with Progress(TextColumn("{task.description:<26}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), transient=False) as bars:
        def add(name: str, total: int) -> Callable[[int], None]:
            task = bars.add_task(name, total=total)
            return lambda k: bars.advance(task, k)

        yield add


def epoch_seconds(moment: datetime) -> int:
    """Naive-UTC datetime -> integer epoch seconds (the generator's internal clock)."""
    return int((moment - datetime(1970, 1, 1)).total_seconds())


def generate_tables(config: SeedConfig) -> Iterator[tuple[str, pd.DataFrame]]:
    """Yield `(table name, rows)` in insertion order (parents before children).

    Lazy, so the caller can write each table before the next one is generated. Pure: no
    database; `seed_database` writes what this yields, tests inspect it directly.
    """
    now = epoch_seconds(config.anchor)
    yield "games", pd.DataFrame({
        "id": np.arange(1, len(GAMES) + 1),
        "slug": [g[0] for g in GAMES],
        "name": [g[1] for g in GAMES],
    })
    pop = _population(config, now)
    yield "users", _users_frame(config, pop)
    yield "game_profiles", _game_profiles_frame(config, pop)
    completeness = _profile_completeness_frame(config, pop)
    yield "profile_completeness", completeness
    teams = _teams(config, pop)
    yield "teams", teams.frame
    yield "team_members", teams.members
    tour = _tournaments(config, now)
    yield "tournaments", tour.frame
    participants = _participants(config, pop, tour, teams)
    yield "tournament_participants", participants
    yield "activities", _activities(config, pop, len(tour.game), len(teams.game))
    yield "app_events", _app_events(config, pop, tour, participants, teams.members, completeness)


def seed_database(
    engine: Engine, config: SeedConfig, progress: bool = True, replace: bool = False,
) -> SeedSummary:
    """Fill the (empty) app tables with demo data; everything in one transaction.

    Raises `SeedError` (a `DatabaseConfigError`: one line, exit 2 in the CLI) when the app tables
    are missing, or already hold data and `replace` is False. With `replace` (demo/test only) the
    seeded tables and the pipeline's derived tables are emptied first; the achievement catalogue
    stays.
    """
    started = time.perf_counter()
    summary = SeedSummary(users=config.users, seed=config.seed, now=config.anchor)
    write_tables(engine, generate_tables(config), summary, progress=progress, replace=replace)
    summary.seconds = time.perf_counter() - started
    return summary


def write_tables(
    engine: Engine,
    tables: Iterator[tuple[str, pd.DataFrame]],
    summary: SeedSummary,
    progress: bool = True,
    replace: bool = False,
) -> None:
    """Write generated app tables (any generator's) in one transaction; rows and seconds per
    table go into `summary`. The same readiness rules as `seed_database`."""
    _check_ready(engine, replace)
    # Large COPY batches (db.copy_into pipelines within one); progress advances per batch.
    chunk = 1_000_000 if engine.dialect.name == "postgresql" else 100_000
    with _progress_bars(progress) as add_bar, engine.begin() as conn:
        if replace:
            _clear(conn)
        while True:
            t0 = time.perf_counter()
            item = next(tables, None)  # generation time counts towards the table
            if item is None:
                break
            name, frame = item
            advance = add_bar(name, len(frame))
            for lo in range(0, len(frame), chunk):
                part = frame.iloc[lo: lo + chunk]
                bulk_insert(conn, name, part)
                advance(len(part))
            summary.rows[name] = len(frame)
            summary.table_seconds[name] = time.perf_counter() - t0
