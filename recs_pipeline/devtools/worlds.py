"""Synthetic "platform worlds": app-table data sets whose user choices have ONE known driver.

Each world fills the app tables (same names, columns and compatible dtypes as
`recs_pipeline.schema.APP_TABLES`, in the order `recs_pipeline.devtools.seed.generate_tables`
yields them) with ~120 days of history before `now` plus tournaments still open after it. The
worlds share one platform mechanic (users, game profiles, daily/weekly tournament series, teams, a
registration engine that enforces every eligibility rule) and differ only in *why* a user picks one
eligible tournament or team over another, so a recommender evaluated on a temporal holdout can be
asked "does it find this driver?":

* ``no_structure`` - every tournament / team has an attractiveness drawn from a heavy-tailed
  lognormal (log-sd 2: the top 5 % of items hold ~2/3 of the pull) and everybody picks in
  proportion to it; no personal taste at all (not even a preferred game or region among the
  ones they play), so the best ranker is plain popularity.
* ``region_prize`` - a tournament's pull is its prize (in the name, "VALORANT EU $5,000 Major #12",
  and reflected by `max_participants`) and whether it is in the user's own region rather than
  `global`; teams pull by roster size. Same rule for every user, no personal taste.
* ``organiser_loyalty`` - tournaments belong to organisers whose identity is visible only in
  the name ("Nova Esports Weekly #12", "Redline Open S3 Qualifier #2"); organisers are assigned to
  series independently of game, region, size, band and start hour. Each user is loyal to 1-2
  organisers and mostly re-registers with them; teams carry an organiser's name too.
* ``local_time`` - each user has a local time-of-day habit; the region implies a UTC offset (na
  -6 h, sa -3 h, eu +1 h, asia +8 h, oce +10 h) and users pick tournaments whose `starts_at` in
  their local time is near their habit; teams whose captain shares the habit.
* ``friend_cliques`` - most users sit in cliques of 3-8 (same region and main game, similar
  skill); one member picks a tournament and the others register for it too; cliques found a team
  together. The driver is co-play, the rest of the choice is almost uniform.
* ``skill_teams`` - teams are as good as their captain (captain's `skill_rating` in the game) and
  users join teams close to their own rating; tournaments are mostly skill-banded and users
  prefer bands centred near their level.
* ``cold_start`` - ~65 % of users signed up in the last 5 weeks with 0-2 registrations before
  the holdout cutoff (`HOLDOUT_DAYS` before now); everyone chooses by a simple game (their first
  profile) + own-region taste with mild tournament appeal.

Hard rules every world obeys (what the recommender's eligibility code and the holdout rely on):
registrations inside the tournament's window (created_at <= registered_at < registration_closes_at
<= starts_at) and after the user joined and created the game profile; capacity; region (own or
`global`); skill band; one registration per (tournament, user); statuses consistent with `now`;
team joins after the team was founded, same region, a profile in the team's game, current members
<= max_members. Ids are 1..n in creation order; timestamps are naive UTC.

Randomness: one `numpy` Generator per (seed, world, concern), so the same arguments give identical
frames. Generation is vectorised per day of history (a registration "engine" that samples each
day's requests from the tournaments open at that moment), a few seconds for 5k users.
"""

from __future__ import annotations

import itertools
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
import pandas as pd

__all__ = [
    "GAMES",
    "HISTORY_DAYS",
    "HOLDOUT_DAYS",
    "ORGANISERS",
    "REGIONS",
    "UTC_OFFSET_HOURS",
    "WORLDS",
    "WorldSpec",
    "generate_world",
]

# --- Vocabulary -----------------------------------------------------------------------------

DAY = 86_400
HOUR = 3_600
HISTORY_DAYS = 120
TEAM_PREHISTORY_DAYS = 120  # teams may be founded this long before the history starts
HOLDOUT_DAYS = 14  # the evaluation's default cutoff (now - 14 days); cold_start is built around it
NEVER = np.iinfo(np.int64).max // 4  # "no such timestamp" (missing profile, team never closes)

# (slug, display name, share of users who play it)
GAMES: tuple[tuple[str, str, float], ...] = (
    ("valorant", "VALORANT", 0.30),
    ("cs2", "Counter-Strike 2", 0.24),
    ("lol", "League of Legends", 0.20),
    ("rocket-league", "Rocket League", 0.15),
    ("tekken8", "TEKKEN 8", 0.11),
)
N_GAMES = len(GAMES)
GAME_SHARE = np.array([g[2] for g in GAMES])

REGIONS: tuple[str, ...] = ("na", "eu", "sa", "asia", "oce")
GLOBAL = len(REGIONS)  # region code of `global` tournaments (users never have it)
REGION_CODES: tuple[str, ...] = (*REGIONS, "global")
REGION_LABELS: tuple[str, ...] = ("NA", "EU", "SA", "ASIA", "OCE", "Global")
REGION_SHARE = np.array([0.32, 0.28, 0.12, 0.17, 0.11])
UTC_OFFSET_HOURS: dict[str, int] = {"na": -6, "eu": 1, "sa": -3, "asia": 8, "oce": 10}
_OFFSET = np.array([UTC_OFFSET_HOURS[r] for r in REGIONS] + [0], dtype=np.float64)

ORGANISERS: tuple[str, ...] = (
    "Nova Esports", "Redline", "Apex Arena", "Frostbyte", "Titan League", "Vortex Gaming",
    "Lumen", "Ironclad", "Solstice", "Kraken Series", "Blitzfire", "Harbor GG",
)
DAILY_FORMATS: tuple[str, ...] = ("Daily Cup", "Night Clash", "Arena", "Showdown", "Ladder")
WEEKLY_FORMATS: tuple[str, ...] = ("Weekly", "Weekend Cup", "Major", "Championship")
TEAM_ADJECTIVES: tuple[str, ...] = (
    "Crimson", "Silent", "Golden", "Electric", "Shadow", "Iron", "Wild", "Cosmic", "Savage",
    "Neon", "Arctic", "Phantom", "Royal", "Rapid", "Lucky",
)
TEAM_NOUNS: tuple[str, ...] = (
    "Wolves", "Falcons", "Sharks", "Dragons", "Ravens", "Tigers", "Vipers", "Owls", "Bears",
    "Hornets", "Foxes", "Titans", "Comets", "Rhinos", "Jaguars",
)
PRIZE_TIERS = np.array([100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000])
PRIZE_TIER_P = np.array([0.20, 0.20, 0.18, 0.15, 0.12, 0.08, 0.05, 0.02])
PRIZE_TIER_CAP = np.array([16, 16, 32, 32, 64, 128, 128, 256])  # richer cups take more players

# Column order of every yielded frame (the schema's, minus autoincrement ids the DB assigns).
COLUMNS: dict[str, tuple[str, ...]] = {
    "games": ("id", "slug", "name"),
    "users": ("id", "username", "email", "region", "is_active", "date_joined", "last_login"),
    "game_profiles": ("id", "user_id", "game_id", "skill_rating", "created_at"),
    "profile_completeness": ("user_id", "percentage", "updated_at"),
    "teams": ("id", "name", "game_id", "region", "captain_id", "max_members", "is_recruiting",
              "created_at"),
    "team_members": ("id", "team_id", "user_id", "joined_at", "left_at"),
    "tournaments": ("id", "name", "game_id", "region", "skill_min", "skill_max",
                    "max_participants", "status", "registration_closes_at", "starts_at",
                    "completed_at", "created_at"),
    "tournament_participants": ("id", "tournament_id", "user_id", "team_id", "registered_at",
                                "placement"),
    "activities": ("id", "user_id", "activity_type", "object_type", "object_id", "created_at",
                   "metadata"),
    "achievements": ("id", "code", "name", "description", "event_type", "metric", "threshold",
                     "points", "is_active"),
    "user_achievements": ("user_id", "achievement_id", "awarded_at", "event_id"),
    "app_events": ("event_type", "user_id", "payload", "created_at"),
}

# --- Small helpers --------------------------------------------------------------------------


@dataclass(frozen=True)
class _Ctx:
    world: str
    n: int
    seed: int
    now: int  # epoch seconds
    h0: int  # history start

    def rng(self, stream: str) -> np.random.Generator:
        """An independent stream per (seed, world, concern): editing one concern's draws does not
        reshuffle the others."""
        key = (zlib.crc32(self.world.encode()), zlib.crc32(stream.encode()))
        return np.random.default_rng(np.random.SeedSequence(self.seed, spawn_key=key))


def _epoch(moment: datetime) -> int:
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return int((moment - datetime(1970, 1, 1)).total_seconds())


def _ts(seconds: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """Epoch seconds -> naive datetime64[us] (NaT where not valid)."""
    out = np.asarray(seconds, dtype=np.int64).astype("datetime64[s]").astype("datetime64[us]")
    if valid is not None:
        out = np.where(valid, out, np.datetime64("NaT", "us"))
    return out


def _nullable_int(values: np.ndarray, valid: np.ndarray) -> pd.arrays.IntegerArray:
    return pd.arrays.IntegerArray(np.where(valid, values, 0).astype(np.int64), ~valid)


def _group_rank(keys: np.ndarray) -> np.ndarray:
    """0-based position of each row within its run of equal keys (keys sorted)."""
    if len(keys) == 0:
        return np.zeros(0, dtype=np.int64)
    starts = np.r_[0, np.flatnonzero(keys[1:] != keys[:-1]) + 1]
    return np.arange(len(keys)) - np.repeat(starts, np.diff(np.r_[starts, len(keys)]))


def _between(rng: np.random.Generator, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Integer seconds uniformly in [lo, hi) (lo where hi <= lo)."""
    span = np.maximum(np.asarray(hi) - np.asarray(lo), 0)
    return np.asarray(lo) + np.floor(rng.random(len(span)) * span).astype(np.int64)


def _top_k(rng: np.random.Generator, weights: np.ndarray, k: int) -> np.ndarray:
    """Per row, k distinct column indices drawn without replacement by weight (Gumbel top-k);
    -1 where a row has fewer than k positive weights."""
    with np.errstate(divide="ignore"):
        keys = np.log(weights) + rng.gumbel(size=weights.shape)
    order = np.argsort(-keys, axis=1, kind="stable")[:, :k]
    picked = np.take_along_axis(keys, order, axis=1)
    return np.where(np.isfinite(picked), order, -1)


def _circular_hours(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Distance in hours on the 24 h clock."""
    return np.abs((a - b + 12.0) % 24.0 - 12.0)


# --- World state ----------------------------------------------------------------------------


@dataclass
class Population:
    region: np.ndarray  # int, 0..4
    joined: np.ndarray  # epoch seconds, ascending (ids in sign-up order)
    skill: np.ndarray  # (n, games) float, NaN = no profile for that game
    profile_at: np.ndarray  # (n, games) epoch seconds, NEVER = no profile
    primary: np.ndarray  # first game profile, -1 = none
    rate: np.ndarray  # tournament registration requests per day
    team_rate: np.ndarray  # team join requests per day
    active: np.ndarray  # bool

    @property
    def n(self) -> int:
        return len(self.region)

    @property
    def start(self) -> np.ndarray:
        """When a user can first do anything (their first profile); NEVER without one."""
        return self.profile_at.min(axis=1)


@dataclass
class Series:
    game: np.ndarray
    region: np.ndarray  # 0..5 (5 = global)
    daily: np.ndarray  # bool; weekly otherwise
    hour: np.ndarray  # start hour of day, UTC, float (quarter hours)
    weekday: np.ndarray  # weekly series: 0 = Monday
    window_days: np.ndarray
    cap: np.ndarray
    smin: np.ndarray  # float, NaN = unbounded
    smax: np.ndarray
    duration_h: np.ndarray
    fmt: np.ndarray  # index into DAILY_FORMATS / WEEKLY_FORMATS
    organiser: np.ndarray  # index into ORGANISERS (only named in organiser_loyalty)
    prize: np.ndarray  # dollars (only named in region_prize)

    def __len__(self) -> int:
        return len(self.game)


@dataclass
class Tournaments:
    series: np.ndarray
    number: np.ndarray  # 1-based edition within the series
    game: np.ndarray
    region: np.ndarray
    created: np.ndarray
    closes: np.ndarray  # registration_closes_at
    accept_until: np.ndarray  # closes, or the cancellation moment
    starts: np.ndarray
    ends: np.ndarray
    cap: np.ndarray
    smin: np.ndarray
    smax: np.ndarray
    status: np.ndarray  # str
    name: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.game)


@dataclass
class Teams:
    captain: np.ndarray  # user index
    game: np.ndarray
    region: np.ndarray
    created: np.ndarray
    max_members: np.ndarray
    name: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.game)


@dataclass
class Requests:
    """Requests to pick something, sorted by time; `clique` >= 0 marks a clique's joint pick."""

    user: np.ndarray
    time: np.ndarray
    clique: np.ndarray

    @staticmethod
    def make(user: np.ndarray, time: np.ndarray, clique: np.ndarray | None = None) -> Requests:
        clique = np.full(len(user), -1, dtype=np.int64) if clique is None else clique
        order = np.lexsort((user, time))
        return Requests(user[order].astype(np.int64), time[order].astype(np.int64),
                        clique[order].astype(np.int64))


@dataclass
class Picks:
    """Accepted choices (user, item, time) in the order they were made."""

    user: np.ndarray
    item: np.ndarray
    time: np.ndarray


@dataclass
class Block:
    """One day's requests from one region against the items open to them (what a driver scores).
    `skill` is each user's rating in each item's game (NaN = no profile)."""

    users: np.ndarray  # (R,)
    times: np.ndarray  # (R,)
    cliques: np.ndarray  # (R,)
    items: np.ndarray  # (C,)
    skill: np.ndarray  # (R, C)


@dataclass
class _Items:
    """What the engine needs to know about choosable things (tournaments or teams)."""

    game: np.ndarray
    region: np.ndarray
    opens: np.ndarray  # a pick needs opens <= time
    closes: np.ndarray  # ... and time < closes
    cap: np.ndarray
    smin: np.ndarray
    smax: np.ndarray
    global_ok: bool  # `global` items are open to every region (tournaments, not teams)


# --- Drivers: what differs between worlds ---------------------------------------------------


class Driver:
    """The platform's defaults; a world overrides the hooks that carry its driver.

    Defaults carry no signal: tournament and team logits are 0 (a uniform pick among eligible
    items), registrations/joins arrive as a Poisson process per user.
    """

    p_banded = 0.45  # share of tournament series with a skill band
    per_event_hour = False  # each edition gets its own start hour (instead of the series')
    p_team_tag = 0.5  # share of registrations tagged with the user's current team in that game
    teams_per_user = 1 / 6

    def __init__(self, ctx: _Ctx) -> None:
        self.ctx = ctx
        self.t_base = np.zeros(0)
        self.m_base = np.zeros(0)

    # population -------------------------------------------------------------------------
    def joined_times(self, rng: np.random.Generator) -> np.ndarray:
        """45 % of accounts predate the history; the rest sign up steadily during it."""
        ctx, n = self.ctx, self.ctx.n
        old = rng.random(n) < 0.45
        before = _between(rng, np.full(n, ctx.h0 - 600 * DAY), np.full(n, ctx.h0))
        during = _between(rng, np.full(n, ctx.h0), np.full(n, ctx.now - DAY))
        return np.where(old, before, during)

    def shape_population(self, pop: Population, rng: np.random.Generator) -> None:
        """World-specific latent user state (habits, cliques, ...)."""

    # tournaments ------------------------------------------------------------------------
    def decorate_series(self, series: Series, rng: np.random.Generator) -> None:
        """World-specific series attributes (prize-driven capacity, ...)."""

    def tournament_name(self, series: Series, s: int, number: int) -> str:
        game = GAMES[series.game[s]][1]
        region = REGION_LABELS[series.region[s]]
        return f"{game} {region} {_format(series, s)} #{number}"

    def on_catalogue(self, pop: Population, tours: Tournaments, series: Series,
                     rng: np.random.Generator) -> None:
        self.t_base = np.zeros(len(tours))

    def tournament_requests(self, pop: Population, rng: np.random.Generator) -> Requests:
        return _poisson_requests(self.ctx, pop, pop.rate, rng)

    def tournament_logits(self, block: Block) -> np.ndarray:
        return self.t_base[block.items][None, :]

    def followers(self, pop: Population, picks: Picks, cliques: np.ndarray,
                  rng: np.random.Generator) -> Picks | None:
        """Extra (user, tournament, time) registrations triggered by accepted picks."""
        return None

    # teams ------------------------------------------------------------------------------
    def found_teams(self, pop: Population, rng: np.random.Generator) -> tuple[Teams, Picks]:
        """Teams (captains, games, founding times) and directed joins (user, team, time)."""
        teams = _random_teams(self.ctx, pop, round(self.ctx.n * self.teams_per_user), rng)
        empty = np.zeros(0, dtype=np.int64)
        return teams, Picks(empty, empty, empty)

    def team_name(self, teams: Teams, m: int, rng: np.random.Generator) -> str:
        return (f"{TEAM_ADJECTIVES[rng.integers(len(TEAM_ADJECTIVES))]} "
                f"{TEAM_NOUNS[rng.integers(len(TEAM_NOUNS))]}")

    def on_teams(self, pop: Population, teams: Teams, rng: np.random.Generator) -> None:
        self.m_base = np.zeros(len(teams))

    def team_requests(self, pop: Population, rng: np.random.Generator) -> Requests:
        return _poisson_requests(self.ctx, pop, pop.team_rate, rng)

    def team_logits(self, block: Block) -> np.ndarray:
        return self.m_base[block.items][None, :]


def _format(series: Series, s: int) -> str:
    formats = DAILY_FORMATS if series.daily[s] else WEEKLY_FORMATS
    return formats[series.fmt[s] % len(formats)]


class NoStructure(Driver):
    """Choice probability ~ a per-item lognormal(0, 2) attractiveness; nothing personal."""

    spread = 2.0  # log-attractiveness sd: the top 5 % of items hold ~64 % of the pull

    def on_catalogue(self, pop: Population, tours: Tournaments, series: Series,
                     rng: np.random.Generator) -> None:
        # Per tournament (not per series): a user's past series says nothing about the next pick.
        self.t_base = rng.normal(0.0, self.spread, len(tours))

    def on_teams(self, pop: Population, teams: Teams, rng: np.random.Generator) -> None:
        self.m_base = rng.normal(0.0, self.spread, len(teams))


class RegionPrize(Driver):
    """logit = 0.8 log(prize / $1k) + 2.3 [own region, not global]; teams by roster size."""

    prize_weight = 0.8  # a 10x richer cup is ~6x as attractive
    home_bonus = 2.3  # a home cup ~10x a global one of the same prize

    def decorate_series(self, series: Series, rng: np.random.Generator) -> None:
        tier = rng.choice(len(PRIZE_TIERS), size=len(series), p=PRIZE_TIER_P)
        series.prize = PRIZE_TIERS[tier]
        series.cap = PRIZE_TIER_CAP[tier]

    def tournament_name(self, series: Series, s: int, number: int) -> str:
        game = GAMES[series.game[s]][1]
        region = REGION_LABELS[series.region[s]]
        return f"{game} {region} ${int(series.prize[s]):,} {_format(series, s)} #{number}"

    def on_catalogue(self, pop: Population, tours: Tournaments, series: Series,
                     rng: np.random.Generator) -> None:
        self.prize = series.prize[tours.series].astype(np.float64)
        self.t_base = self.prize_weight * np.log(self.prize / 1_000.0)
        self.t_region = tours.region
        self.user_region = pop.region

    def tournament_logits(self, block: Block) -> np.ndarray:
        home = self.t_region[block.items][None, :] == self.user_region[block.users][:, None]
        return self.t_base[block.items][None, :] + self.home_bonus * home

    def on_teams(self, pop: Population, teams: Teams, rng: np.random.Generator) -> None:
        self.m_base = 2.0 * np.log(teams.max_members.astype(np.float64))


class OrganiserLoyalty(Driver):
    """Users favour 1-2 organisers (x60 per tournament, x25 per affiliated team)."""

    loyalty = np.log(60.0)
    team_loyalty = np.log(25.0)

    def tournament_name(self, series: Series, s: int, number: int) -> str:
        brand = ORGANISERS[series.organiser[s]]
        if not series.daily[s] and series.fmt[s] % 2 == 0:
            # A season-style name: "Redline Open S3 Qualifier #2" (8 editions a season).
            season, edition = divmod(number - 1, 8)
            return f"{brand} Open S{season + 1} Qualifier #{edition + 1}"
        return f"{brand} {_format(series, s)} #{number}"

    def on_catalogue(self, pop: Population, tours: Tournaments, series: Series,
                     rng: np.random.Generator) -> None:
        self.t_base = np.zeros(len(tours))
        self.t_org = series.organiser[tours.series]
        # Favourites among the organisers the user can actually play with: series in one of
        # their games, in their region or global (weighted by how many such series exist).
        seen = np.zeros((N_GAMES, GLOBAL + 1, len(ORGANISERS)))
        np.add.at(seen, (series.game, series.region, series.organiser), 1.0)
        has = ~np.isnan(pop.skill)
        game_weight = has * 1.0 + (np.arange(N_GAMES)[None, :] == pop.primary[:, None]) * 2.0
        local = seen[:, pop.region, :].transpose(1, 0, 2) + seen[:, GLOBAL, :][None, :, :]
        visible = np.einsum("ng,ngo->no", game_weight, local)
        favourites = _top_k(rng, visible, 2)
        favourites[rng.random(pop.n) < 0.55, 1] = -1  # 55 % are loyal to a single organiser
        self.favourites = favourites

    def _loyal(self, users: np.ndarray, organisers: np.ndarray) -> np.ndarray:
        fav = self.favourites[users]
        return (fav[:, :1] == organisers[None, :]) | (fav[:, 1:] == organisers[None, :])

    def tournament_logits(self, block: Block) -> np.ndarray:
        return self.loyalty * self._loyal(block.users, self.t_org[block.items])

    def team_name(self, teams: Teams, m: int, rng: np.random.Generator) -> str:
        # The team plays for its captain's favourite organiser, and says so.
        brand = ORGANISERS[self.favourites[teams.captain[m], 0]]
        return f"{brand} {TEAM_NOUNS[rng.integers(len(TEAM_NOUNS))]}"

    def on_teams(self, pop: Population, teams: Teams, rng: np.random.Generator) -> None:
        self.m_base = np.zeros(len(teams))
        self.m_org = self.favourites[teams.captain, 0]

    def team_logits(self, block: Block) -> np.ndarray:
        return self.team_loyalty * self._loyal(block.users, self.m_org[block.items])


class LocalTime(Driver):
    """logit = -(local start hour - habit)^2 / (2 * 1.5^2); teams by the captain's habit."""

    per_event_hour = True  # every band must be on offer in every game and region
    habit_centres = np.array([10.0, 14.0, 19.0, 23.0])  # morning / afternoon / evening / late
    habit_p = np.array([0.15, 0.25, 0.40, 0.20])

    def shape_population(self, pop: Population, rng: np.random.Generator) -> None:
        centre = self.habit_centres[rng.choice(4, size=pop.n, p=self.habit_p)]
        self.habit = (centre + rng.normal(0.0, 0.75, pop.n)) % 24.0  # local hours
        self.user_offset = _OFFSET[pop.region]

    def on_catalogue(self, pop: Population, tours: Tournaments, series: Series,
                     rng: np.random.Generator) -> None:
        self.t_base = np.zeros(len(tours))
        self.utc_hour = (tours.starts % DAY) / HOUR

    def tournament_logits(self, block: Block) -> np.ndarray:
        local = (self.utc_hour[block.items][None, :]
                 + self.user_offset[block.users][:, None]) % 24.0
        gap = _circular_hours(local, self.habit[block.users][:, None])
        return -0.5 * (gap / 1.5) ** 2

    def on_teams(self, pop: Population, teams: Teams, rng: np.random.Generator) -> None:
        self.m_base = np.zeros(len(teams))
        self.m_habit = self.habit[teams.captain]

    def team_logits(self, block: Block) -> np.ndarray:
        gap = _circular_hours(self.m_habit[block.items][None, :],
                              self.habit[block.users][:, None])
        return -0.5 * (gap / 2.0) ** 2


class FriendCliques(Driver):
    """Cliques pick together: a random member chooses (in the clique's game), others follow."""

    p_banded = 0.25  # mostly open cups, so a whole clique is usually eligible
    p_team_tag = 0.9
    p_in_clique = 0.8
    p_follow = 0.85
    clique_sizes = np.arange(3, 9)
    clique_size_p = np.array([0.26, 0.24, 0.18, 0.14, 0.10, 0.08])

    def shape_population(self, pop: Population, rng: np.random.Generator) -> None:
        n = pop.n
        clique = np.full(n, -1, dtype=np.int64)
        pool = np.flatnonzero((pop.primary >= 0) & (rng.random(n) < self.p_in_clique))
        # Cliques never cross region or main game: sort the pool by both, cut runs into cliques.
        pool = pool[np.lexsort((rng.random(len(pool)), pop.primary[pool], pop.region[pool]))]
        run_key = pop.region[pool] * N_GAMES + pop.primary[pool]
        run_starts = np.r_[0, np.flatnonzero(np.diff(run_key)) + 1, len(pool)]
        next_id = 0
        for a, b in itertools.pairwise(run_starts):
            pos = a
            while b - pos >= 3:
                size = min(int(rng.choice(self.clique_sizes, p=self.clique_size_p)), b - pos)
                clique[pool[pos:pos + size]] = next_id
                next_id += 1
                pos += size
        self.clique = clique
        self.n_cliques = next_id
        members = np.flatnonzero(clique >= 0)
        members = members[np.argsort(clique[members], kind="stable")]
        self.members = members  # grouped by clique
        self.member_start = np.searchsorted(clique[members], np.arange(next_id + 1))
        game = pop.primary[members[self.member_start[:-1]]] if next_id else np.zeros(0, int)
        self.clique_game = game.astype(np.int64)
        # Friends play at a similar level in their game (so the same bands admit them).
        rows, games = members, self.clique_game[clique[members]]
        mean = np.bincount(clique[members], weights=pop.skill[rows, games],
                           minlength=next_id) / np.maximum(np.diff(self.member_start), 1)
        pop.skill[rows, games] = np.clip(
            np.round(0.35 * pop.skill[rows, games] + 0.65 * mean[clique[members]]), 0, 5000)

    def tournament_requests(self, pop: Population, rng: np.random.Generator) -> Requests:
        in_clique = self.clique >= 0
        solo = _poisson_requests(self.ctx, pop, np.where(in_clique, 0.2, 1.0) * pop.rate, rng)
        # A clique plays together about as often as an average member would alone.
        sizes = np.diff(self.member_start)
        first = pop.start[self.members]
        start = np.minimum.reduceat(first, self.member_start[:-1]) if self.n_cliques else first
        rate = (np.add.reduceat(pop.rate[self.members], self.member_start[:-1]) / sizes
                if self.n_cliques else np.zeros(0))
        c_start = np.maximum(start, self.ctx.h0)
        span = np.maximum(self.ctx.now - c_start, 0)
        k = rng.poisson(rate * span / DAY)
        cl = np.repeat(np.arange(self.n_cliques), k)
        time = _between(rng, c_start[cl], np.full(len(cl), self.ctx.now))
        # The chooser: a random member who is already around (else the earliest one).
        pick = self.member_start[cl] + np.floor(rng.random(len(cl)) * sizes[cl]).astype(np.int64)
        chooser = self.members[pick]
        late = pop.start[chooser] > time
        by_start = np.lexsort((first, self.clique[self.members]))
        earliest = self.members[by_start][self.member_start[:-1]]
        chooser = np.where(late, earliest[cl], chooser)
        user = np.r_[solo.user, chooser]
        return Requests.make(user, np.r_[solo.time, time], np.r_[solo.clique, cl])

    def on_catalogue(self, pop: Population, tours: Tournaments, series: Series,
                     rng: np.random.Generator) -> None:
        self.t_base = rng.normal(0.0, 0.5, len(tours))  # mild, impersonal appeal
        self.t_game = tours.game

    def tournament_logits(self, block: Block) -> np.ndarray:
        # A clique's pick stays in the clique's game (everyone has that profile).
        joint = block.cliques >= 0
        game = np.where(joint, self.clique_game[np.maximum(block.cliques, 0)], -1)
        in_game = self.t_game[block.items][None, :] == game[:, None]
        return self.t_base[block.items][None, :] + np.log(20.0) * in_game

    def followers(self, pop: Population, picks: Picks, cliques: np.ndarray,
                  rng: np.random.Generator) -> Picks | None:
        joint = np.flatnonzero(cliques >= 0)
        if len(joint) == 0:
            return None
        c = cliques[joint]
        sizes = np.diff(self.member_start)[c]
        pick_row = np.repeat(joint, sizes)
        offs = np.arange(sizes.sum()) - np.repeat(np.cumsum(sizes) - sizes, sizes)
        user = self.members[np.repeat(self.member_start[c], sizes) + offs]
        keep = (user != picks.user[pick_row]) & (rng.random(len(user)) < self.p_follow)
        user, pick_row = user[keep], pick_row[keep]
        # Friends sign up within minutes to a few hours of the chooser.
        delay = np.floor(rng.exponential(1.5 * HOUR, len(user))).astype(np.int64) + 60
        return Picks(user, picks.item[pick_row], picks.time[pick_row] + delay)

    def found_teams(self, pop: Population, rng: np.random.Generator) -> tuple[Teams, Picks]:
        ctx = self.ctx
        founding = np.flatnonzero(rng.random(self.n_cliques) < 0.75)
        sizes = np.diff(self.member_start)[founding]
        captain = self.members[self.member_start[founding]
                               + np.floor(rng.random(len(founding)) * sizes).astype(np.int64)]
        game = self.clique_game[founding]
        lo = np.maximum(pop.profile_at[captain, game], ctx.h0 - 30 * DAY)
        created = _between(rng, lo, np.full(len(lo), ctx.now - 5 * DAY))
        ok = lo < ctx.now - 5 * DAY
        founding, sizes, captain, game, created = (
            founding[ok], sizes[ok], captain[ok], game[ok], created[ok])
        max_members = np.clip(sizes + rng.integers(0, 4, len(sizes)), 5, 10)
        clique_teams = Teams(captain, game, pop.region[captain], created, max_members)
        random_teams = _random_teams(ctx, pop, round(ctx.n / 25), rng)
        teams = _concat_teams(clique_teams, random_teams)
        # Directed joins: the captain's friends join within days (or once they are around).
        team_of = np.repeat(np.arange(len(founding)), sizes)
        offs = np.arange(sizes.sum()) - np.repeat(np.cumsum(sizes) - sizes, sizes)
        user = self.members[np.repeat(self.member_start[founding], sizes) + offs]
        base = np.maximum(created[team_of], pop.profile_at[user, game[team_of]]) + 60
        time = base + np.floor(rng.exponential(2.0 * DAY, len(user))).astype(np.int64)
        keep = (user != captain[team_of]) & (rng.random(len(user)) < 0.9) & (time < ctx.now)
        return teams, Picks(user[keep], team_of[keep], time[keep])

    def team_requests(self, pop: Population, rng: np.random.Generator) -> Requests:
        rate = np.where(self.clique >= 0, 0.2, 1.0) * pop.team_rate
        return _poisson_requests(self.ctx, pop, rate, rng)


class SkillTeams(Driver):
    """Teams: logit = -|skill - captain's skill| / 50; tournaments: near the band's centre."""

    p_banded = 0.75
    teams_per_user = 1 / 3  # enough teams per game and region to find one at your level

    def on_catalogue(self, pop: Population, tours: Tournaments, series: Series,
                     rng: np.random.Generator) -> None:
        self.t_base = np.zeros(len(tours))
        # One-sided bands: "their level" is a little inside the bound.
        lo, hi = tours.smin, tours.smax
        self.t_mid = np.where(np.isnan(lo), hi - 300, np.where(np.isnan(hi), lo + 300,
                                                                (lo + hi) / 2))

    def tournament_logits(self, block: Block) -> np.ndarray:
        mid = self.t_mid[block.items][None, :]
        fit = -np.abs(block.skill - mid) / 250.0
        return np.where(np.isnan(mid), -1.5, fit)  # open cups draw less than a fitting band

    def on_teams(self, pop: Population, teams: Teams, rng: np.random.Generator) -> None:
        self.m_base = np.zeros(len(teams))
        self.m_skill = pop.skill[teams.captain, teams.game]

    def team_logits(self, block: Block) -> np.ndarray:
        return -np.abs(block.skill - self.m_skill[block.items][None, :]) / 50.0


class ColdStart(Driver):
    """65 % recent sign-ups with 0-2 registrations before the cutoff; taste = first game + own
    region (x6, x3) plus mild appeal."""

    p_cold = 0.65

    def joined_times(self, rng: np.random.Generator) -> np.ndarray:
        ctx = self.ctx
        cold = rng.random(ctx.n) < self.p_cold
        recent = _between(rng, np.full(ctx.n, ctx.now - 35 * DAY), np.full(ctx.n, ctx.now - DAY))
        old = _between(rng, np.full(ctx.n, ctx.h0 - 600 * DAY), np.full(ctx.n, ctx.h0))
        return np.where(cold, recent, old)

    def shape_population(self, pop: Population, rng: np.random.Generator) -> None:
        self.cold = pop.joined >= self.ctx.now - 35 * DAY
        self.primary = pop.primary
        self.user_region = pop.region

    def tournament_requests(self, pop: Population, rng: np.random.Generator) -> Requests:
        ctx = self.ctx
        warm = _poisson_requests(ctx, pop, np.where(self.cold, 0.0, pop.rate), rng)
        cutoff = ctx.now - HOLDOUT_DAYS * DAY
        cold = np.flatnonzero(self.cold & (pop.start < ctx.now))
        start = pop.start[cold]
        n_before = np.where(start < cutoff, rng.choice(3, size=len(cold), p=(0.3, 0.4, 0.3)), 0)
        n_after = rng.integers(1, 4, len(cold))
        u_before = np.repeat(cold, n_before)
        t_before = _between(rng, pop.start[u_before], np.full(len(u_before), cutoff))
        u_after = np.repeat(cold, n_after)
        t_after = _between(rng, np.maximum(pop.start[u_after], cutoff),
                           np.full(len(u_after), ctx.now))
        return Requests.make(np.r_[warm.user, u_before, u_after],
                             np.r_[warm.time, t_before, t_after])

    def on_catalogue(self, pop: Population, tours: Tournaments, series: Series,
                     rng: np.random.Generator) -> None:
        self.t_base = rng.normal(0.0, 0.6, len(tours))
        self.t_game, self.t_region = tours.game, tours.region

    def tournament_logits(self, block: Block) -> np.ndarray:
        u, i = block.users, block.items
        game = self.t_game[i][None, :] == self.primary[u][:, None]
        home = self.t_region[i][None, :] == self.user_region[u][:, None]
        return self.t_base[i][None, :] + np.log(6.0) * game + np.log(3.0) * home

    def on_teams(self, pop: Population, teams: Teams, rng: np.random.Generator) -> None:
        self.m_base = rng.normal(0.0, 0.5, len(teams))
        self.m_game = teams.game

    def team_logits(self, block: Block) -> np.ndarray:
        game = self.m_game[block.items][None, :] == self.primary[block.users][:, None]
        return self.m_base[block.items][None, :] + np.log(4.0) * game

    def team_requests(self, pop: Population, rng: np.random.Generator) -> Requests:
        ctx = self.ctx
        warm = _poisson_requests(ctx, pop, np.where(self.cold, 0.0, pop.team_rate), rng)
        cold = np.flatnonzero(self.cold & (pop.start < ctx.now) & (rng.random(pop.n) < 0.3))
        time = _between(rng, pop.start[cold], np.full(len(cold), ctx.now))
        return Requests.make(np.r_[warm.user, cold], np.r_[warm.time, time])


# --- Registry -------------------------------------------------------------------------------


@dataclass(frozen=True)
class WorldSpec:
    """A registered world: `make_driver(ctx)` builds the object holding its latent state."""

    name: str
    driver: str  # what drives choices, one sentence
    expected_winner: str  # which kind of ranker should do best on this world
    make_driver: Callable[[_Ctx], Driver]


WORLDS: dict[str, WorldSpec] = {spec.name: spec for spec in (
    WorldSpec("no_structure", "Global popularity only: per-item lognormal(0, 2) appeal, no taste.",
              "popularity", NoStructure),
    WorldSpec("region_prize", "Prize size (in the name / max_participants) and own-region match, "
              "same for every user; teams by roster size.", "content: prize + region",
              RegionPrize),
    WorldSpec("organiser_loyalty", "Loyalty to 1-2 organisers, visible only in tournament and "
              "team names.", "history: organiser from the name", OrganiserLoyalty),
    WorldSpec("local_time", "Local time-of-day habit (region -> UTC offset) vs starts_at; teams "
              "by the captain's habit.", "history: local start hour", LocalTime),
    WorldSpec("friend_cliques", "Cliques of 3-8 register for the same tournaments and join the "
              "same teams.", "collaborative / co-play", FriendCliques),
    WorldSpec("skill_teams", "Teams close to the user's skill (captain's rating); tournaments "
              "with a band centred near it.", "skill proximity", SkillTeams),
    WorldSpec("cold_start", "~65 % recent users with 0-2 past registrations; game + region "
              "taste.", "profile game + region, popularity fallback", ColdStart),
)}


# --- The shared platform mechanics ----------------------------------------------------------


def _population(ctx: _Ctx, drv: Driver) -> Population:
    rng = ctx.rng("users")
    n = ctx.n
    joined = np.sort(drv.joined_times(rng))  # ids in sign-up order
    region = rng.choice(len(REGIONS), size=n, p=REGION_SHARE)
    n_profiles = rng.choice(4, size=n, p=(0.02, 0.50, 0.32, 0.16))
    order = _top_k(rng, np.broadcast_to(GAME_SHARE, (n, N_GAMES)), N_GAMES)
    has = np.zeros((n, N_GAMES), dtype=bool)
    for j in range(N_GAMES):
        has[np.arange(n), order[:, j]] = j < n_profiles
    primary = np.where(n_profiles > 0, order[:, 0], -1)
    base = rng.normal(1500.0, 380.0, n)
    skill = np.clip(np.round(base[:, None] + rng.normal(0.0, 180.0, (n, N_GAMES))), 0, 5000)
    skill[~has] = np.nan
    # The first profile comes with sign-up; other games are added over the following weeks.
    is_primary = np.arange(N_GAMES)[None, :] == primary[:, None]
    delay = np.where(is_primary, rng.integers(60, 2 * HOUR, (n, N_GAMES)),
                     rng.integers(HOUR, 30 * DAY, (n, N_GAMES)))
    profile_at = np.minimum(joined[:, None] + delay, ctx.now - HOUR)
    profile_at[~has] = NEVER
    rate = 0.1 * rng.lognormal(-0.32, 0.8, n)  # mean ~0.1 requests/day, a heavy tail
    team_rate = (0.8 / HISTORY_DAYS) * rng.lognormal(-0.125, 0.5, n)
    no_profile = n_profiles == 0
    rate[no_profile] = 0.0
    team_rate[no_profile] = 0.0
    active = rng.random(n) > 0.03
    pop = Population(region, joined, skill, profile_at, primary, rate, team_rate, active)
    drv.shape_population(pop, rng)
    return pop


def _poisson_requests(ctx: _Ctx, pop: Population, rate: np.ndarray,
                      rng: np.random.Generator) -> Requests:
    """Requests at a constant per-user rate from the user's first profile (or the history
    start) until now."""
    start = np.maximum(pop.start, ctx.h0)
    span = np.maximum(ctx.now - start, 0)
    k = rng.poisson(rate * span / DAY)
    user = np.repeat(np.arange(pop.n), k)
    time = start[user] + np.floor(rng.random(len(user)) * span[user]).astype(np.int64)
    return Requests.make(user, time)


def _series(ctx: _Ctx, drv: Driver) -> Series:
    """Tournament series per (game, region): enough that tens are open in each at any moment,
    more where demand is, growing with sqrt(users)."""
    rng = ctx.rng("series")
    share = np.zeros((N_GAMES, GLOBAL + 1))
    share[:, :GLOBAL] = 0.8 * GAME_SHARE[:, None] * REGION_SHARE[None, :]
    share[:, GLOBAL] = 0.2 * GAME_SHARE
    target = 85.0 * np.sqrt(ctx.n / 5_000)
    per_combo = np.maximum(3, np.round(share * target)).astype(np.int64).ravel()
    combo = np.repeat(np.arange(per_combo.size), per_combo)
    game, region = combo // (GLOBAL + 1), combo % (GLOBAL + 1)
    s = len(combo)
    # Mostly daily series; the first two of every (game, region) always are, so that tens of
    # cups are open in each at any moment even in a small world.
    first_two = _group_rank(combo) < 2
    daily = first_two | (rng.random(s) < 0.6)
    hour = _start_hours(rng, region)
    banded = rng.random(s) < drv.p_banded
    kind = rng.choice(3, size=s, p=(0.6, 0.2, 0.2))  # two-sided, min only, max only
    centre = rng.normal(1500.0, 350.0, s)
    width = rng.uniform(600.0, 1000.0, s)
    smin = np.where(kind == 0, centre - width / 2, np.where(kind == 1,
                                                           rng.uniform(1500, 1900, s), np.nan))
    smax = np.where(kind == 0, centre + width / 2, np.where(kind == 2,
                                                           rng.uniform(1100, 1500, s), np.nan))
    smin = np.where(banded, np.round(smin / 50) * 50, np.nan)
    smax = np.where(banded, np.round(smax / 50) * 50, np.nan)
    series = Series(
        game=game, region=region, daily=daily, hour=hour, weekday=rng.integers(0, 7, s),
        window_days=rng.uniform(3.0, 12.0, s),
        cap=rng.choice(np.array([16, 32, 64, 128]), size=s, p=(0.30, 0.35, 0.25, 0.10)),
        smin=smin, smax=smax, duration_h=rng.uniform(2.0, 6.0, s),
        fmt=rng.integers(0, 60, s), organiser=rng.integers(0, len(ORGANISERS), s),
        prize=np.zeros(s, dtype=np.int64),
    )
    drv.decorate_series(series, rng)
    return series


def _start_hours(rng: np.random.Generator, region: np.ndarray) -> np.ndarray:
    """UTC start hours (quarter hours): regional cups start 09:00-01:00 local time, global ones
    at any hour."""
    local = 9.0 + 0.25 * rng.integers(0, 64, len(region))
    any_hour = 0.25 * rng.integers(0, 96, len(region))
    return np.where(region == GLOBAL, any_hour, (local - _OFFSET[region]) % 24.0)


def _tournaments(ctx: _Ctx, series: Series, drv: Driver) -> Tournaments:
    rng = ctx.rng("tournaments")
    day0 = ctx.now - ctx.now % DAY
    monday0 = day0 - ((day0 // DAY + 3) % 7) * DAY  # 1970-01-01 was a Thursday
    days = np.arange(-(HISTORY_DAYS + 3), 14)
    weeks = np.arange(-(HISTORY_DAYS // 7 + 3), 3)
    d_idx = np.flatnonzero(series.daily)
    w_idx = np.flatnonzero(~series.daily)
    s_of = np.r_[np.repeat(d_idx, len(days)), np.repeat(w_idx, len(weeks))]
    midnight = np.r_[np.tile(day0 + days * DAY, len(d_idx)),
                     (np.tile(monday0 + weeks * 7 * DAY, len(w_idx))
                      + np.repeat(series.weekday[w_idx], len(weeks)) * DAY)]
    hour = series.hour[s_of]
    if drv.per_event_hour:
        hour = _start_hours(rng, series.region[s_of])
    starts = midnight + np.round(hour * HOUR).astype(np.int64)
    gap = rng.choice(np.array([0, 15, 30, 60]), size=len(s_of)) * 60
    closes = starts - gap
    window = np.clip(series.window_days[s_of] + rng.normal(0.0, 0.5, len(s_of)), 3.0, 12.0)
    created = closes - np.round(window * DAY).astype(np.int64)
    ends = starts + np.round(series.duration_h[s_of] * rng.uniform(0.85, 1.15, len(s_of))
                             * HOUR).astype(np.int64)
    # Listed before now, and not finished long before the history starts.
    keep = (created < ctx.now) & (starts >= ctx.h0 - 2 * DAY)
    s_of, created, closes, starts, ends = s_of[keep], created[keep], closes[keep], starts[keep], \
        ends[keep]
    order = np.lexsort((s_of, created))  # ids in listing order
    s_of, created, closes, starts, ends = s_of[order], created[order], closes[order], \
        starts[order], ends[order]
    t = len(s_of)
    by_series = np.lexsort((starts, s_of))
    number = np.empty(t, dtype=np.int64)
    number[by_series] = _group_rank(s_of[by_series]) + 1
    # A few are cancelled at some point between listing and start; no sign-ups after that.
    cancelled = rng.random(t) < 0.02
    cancel_at = _between(rng, created, np.minimum(starts, ctx.now))
    accept_until = np.where(cancelled, np.minimum(cancel_at, closes), closes)
    now = ctx.now
    status = np.select(
        [cancelled, ends <= now, starts <= now,
         (closes > now) & (starts <= now + 5 * DAY)],
        ["cancelled", "completed", "in_progress", "registration_open"],
        "upcoming",  # starts later, or registration just closed before the start
    )
    tours = Tournaments(
        series=s_of, number=number, game=series.game[s_of], region=series.region[s_of],
        created=created, closes=closes, accept_until=accept_until, starts=starts, ends=ends,
        cap=series.cap[s_of].astype(np.int64), smin=series.smin[s_of], smax=series.smax[s_of],
        status=status,
    )
    tours.name = [drv.tournament_name(series, int(s), int(k))
                  for s, k in zip(s_of, number, strict=True)]
    return tours


def _random_teams(ctx: _Ctx, pop: Population, count: int, rng: np.random.Generator) -> Teams:
    """Teams founded by distinct players (the keener ones more often), over the history."""
    eligible = pop.primary >= 0
    weights = np.where(eligible, pop.rate + 0.02, 0.0)[None, :]
    count = min(count, int(eligible.sum()))
    captain = _top_k(rng, weights, count)[0] if count else np.zeros(0, dtype=np.int64)
    captain = captain[captain >= 0]
    has = ~np.isnan(pop.skill[captain])
    second = _top_k(rng, has.astype(np.float64), 1)[:, 0] if len(captain) else captain
    game = np.where(rng.random(len(captain)) < 0.8, pop.primary[captain], second)
    # Some teams predate the history, so early joiners have a choice too.
    lo = np.maximum(pop.profile_at[captain, game], ctx.h0 - TEAM_PREHISTORY_DAYS * DAY)
    created = _between(rng, lo, np.full(len(lo), ctx.now - DAY))
    ok = lo < ctx.now - DAY
    captain, game, created = captain[ok], game[ok], created[ok]
    return Teams(captain, game, pop.region[captain], created, rng.integers(5, 11, len(captain)))


def _concat_teams(a: Teams, b: Teams) -> Teams:
    return Teams(*(np.r_[getattr(a, f), getattr(b, f)]
                   for f in ("captain", "game", "region", "created", "max_members")))


def _pairs_ok(ctx: _Ctx, pop: Population, items: _Items, user: np.ndarray, item: np.ndarray,
              time: np.ndarray) -> np.ndarray:
    """Every per-pair eligibility rule, for explicit (user, item, time) triples."""
    game = items.game[item]
    skill = pop.skill[user, game]
    ok = (pop.profile_at[user, game] <= time) & (items.opens[item] <= time)
    ok &= (time < items.closes[item]) & (time < ctx.now)
    ok &= ~(skill < items.smin[item]) & ~(skill > items.smax[item])
    same = items.region[item] == pop.region[user]
    return ok & (same | (items.global_ok & (items.region[item] == GLOBAL)))


def _sample(weights: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Per row, a column drawn in proportion to weights; -1 for an all-zero row."""
    if weights.shape[1] == 0:
        return np.full(weights.shape[0], -1, dtype=np.int64)
    cum = np.cumsum(weights, axis=1)
    total = cum[:, -1]
    draw = rng.random(len(total)) * total
    pick = np.minimum((cum <= draw[:, None]).sum(axis=1), weights.shape[1] - 1)
    return np.where(total > 0, pick, -1)


def _first_come(item: np.ndarray, time: np.ndarray, free: np.ndarray) -> np.ndarray:
    """Which of these picks fit, first come first served, given `free` seats per item."""
    order = np.lexsort((time, item))
    fits = np.zeros(len(item), dtype=bool)
    fits[order] = _group_rank(item[order]) < free[item[order]]
    return fits


def _engine(ctx: _Ctx, pop: Population, items: _Items, initial: Picks, requests: Requests,
            logits: Callable[[Block], np.ndarray], rng: np.random.Generator,
            directed: Picks | None = None,
            followers: Callable[[Picks, np.ndarray], Picks | None] | None = None) -> Picks:
    """Play the history day by day: each day's requests pick among the items open to them at
    that moment (weights = exp(driver logits), zero where any rule fails), first come first
    served on capacity (rejected requests retry twice); then directed picks and followers.

    `initial` holds picks that exist before the history (team captains)."""
    n, n_items = ctx.n, len(items.game)
    count = np.bincount(initial.item, minlength=n_items).astype(np.int64)
    # One free pick per user and day keeps each day's rows unique per user.
    day = (requests.time - ctx.h0) // DAY
    _, first = np.unique(day * n + requests.user, return_index=True)
    first = np.sort(first)
    r_user, r_time, r_clique, r_day = (requests.user[first], requests.time[first],
                                      requests.clique[first], day[first])
    n_days = int(-(-(ctx.now - ctx.h0) // DAY))
    bounds = np.searchsorted(r_day, np.arange(n_days + 1))
    if directed is None:
        directed = Picks(*(np.zeros(0, dtype=np.int64) for _ in range(3)))
    d_order = np.argsort(directed.time, kind="stable")
    directed = Picks(directed.user[d_order], directed.item[d_order], directed.time[d_order])
    d_bounds = np.searchsorted((directed.time - ctx.h0) // DAY, np.arange(n_days + 1))
    act_u, act_i = initial.user.copy(), initial.item.copy()  # picks in items still open
    out: list[Picks] = []
    row_of = np.full(n, -1, dtype=np.int64)

    def take(p: Picks) -> Picks:
        """Directed picks / followers: keep the eligible, new ones that still fit."""
        nonlocal act_u, act_i
        ok = _pairs_ok(ctx, pop, items, p.user, p.item, p.time)
        ok &= ~np.isin(p.item * n + p.user, act_i * n + act_u)
        idx = np.flatnonzero(ok)
        keys = p.item[idx] * n + p.user[idx]  # first occurrence of each (item, user) only
        idx = idx[np.sort(np.unique(keys, return_index=True)[1])]
        fits = _first_come(p.item[idx], p.time[idx], items.cap - count)
        idx = idx[fits]
        got = Picks(p.user[idx], p.item[idx], p.time[idx])
        np.add.at(count, got.item, 1)
        act_u, act_i = np.r_[act_u, got.user], np.r_[act_i, got.item]
        return got

    for d in range(n_days):
        d0 = ctx.h0 + d * DAY
        live = items.closes[act_i] > d0
        act_u, act_i = act_u[live], act_i[live]
        lo, hi = d_bounds[d], d_bounds[d + 1]
        if hi > lo:
            out.append(take(Picks(directed.user[lo:hi], directed.item[lo:hi],
                                  directed.time[lo:hi])))
        lo, hi = bounds[d], bounds[d + 1]
        if hi == lo:
            continue
        u, t, c = r_user[lo:hi], r_time[lo:hi], r_clique[lo:hi]
        open_ = np.flatnonzero((items.opens < d0 + DAY) & (items.closes > d0)
                               & (count < items.cap))
        row_of[u] = np.arange(hi - lo)
        # Users' picks so far among the open items: they cannot pick them again.
        mine = row_of[act_u] >= 0
        prev_row, prev_item = row_of[act_u[mine]], act_i[mine]
        blocks: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        for r in range(len(REGIONS)):
            rows = np.flatnonzero(pop.region[u] == r)
            reg = items.region[open_]
            cols = open_[(reg == r) | ((reg == GLOBAL) & items.global_ok)]
            if len(rows) == 0 or len(cols) == 0:
                continue
            uu, tt = u[rows], t[rows]
            games = items.game[cols][None, :]
            skill = pop.skill[uu[:, None], games]
            ok = pop.profile_at[uu[:, None], games] <= tt[:, None]
            ok &= (items.opens[cols][None, :] <= tt[:, None])
            ok &= (tt[:, None] < items.closes[cols][None, :])
            ok &= ~(skill < items.smin[cols][None, :]) & ~(skill > items.smax[cols][None, :])
            local_row = np.full(hi - lo, -1, dtype=np.int64)
            local_row[rows] = np.arange(len(rows))
            pos = np.minimum(np.searchsorted(cols, prev_item), len(cols) - 1)
            hit = (cols[pos] == prev_item) & (local_row[prev_row] >= 0)
            ok[local_row[prev_row[hit]], pos[hit]] = False
            block = Block(uu, tt, c[rows], cols, skill)
            logit = np.broadcast_to(logits(block), ok.shape)
            weights = np.where(ok, np.exp(np.clip(logit, -30.0, 30.0)), 0.0)
            blocks.append((rows, cols, weights))
        row_of[u] = -1
        choice = np.full(hi - lo, -1, dtype=np.int64)
        done = np.zeros(hi - lo, dtype=bool)
        for _attempt in range(3):
            for rows, cols, weights in blocks:
                need = ~done[rows]
                if not need.any():
                    continue
                pick = _sample(weights[need], rng)
                sel = rows[need]
                choice[sel] = np.where(pick >= 0, cols[np.maximum(pick, 0)], -1)
                done[sel[pick < 0]] = True  # nothing left to pick
            new = np.flatnonzero(~done & (choice >= 0))
            if len(new) == 0:
                break
            fits = _first_come(choice[new], t[new], items.cap - count)
            won = new[fits]
            done[won] = True
            np.add.at(count, choice[won], 1)
            act_u, act_i = np.r_[act_u, u[won]], np.r_[act_i, choice[won]]
            picks = Picks(u[won], choice[won], t[won])
            out.append(picks)
            lost = new[~fits]
            if len(lost) == 0:
                break
            # Retry the losers without that item, and nobody picks a full item any more.
            full = count >= items.cap
            for rows, cols, weights in blocks:
                weights[:, full[cols]] = 0.0
                local = np.full(hi - lo, -1, dtype=np.int64)
                local[rows] = np.arange(len(rows))
                mine_lost = lost[local[lost] >= 0]
                pos = np.searchsorted(cols, choice[mine_lost])
                weights[local[mine_lost], pos] = 0.0
            choice[lost] = -1
        if followers is not None:
            made = np.flatnonzero(done & (choice >= 0))
            made = made[np.argsort(t[made], kind="stable")]
            extra = followers(Picks(u[made], choice[made], t[made]), c[made])
            if extra is not None and len(extra.user):
                out.append(take(extra))
    if not out:
        return Picks(*(np.zeros(0, dtype=np.int64) for _ in range(3)))
    picks = Picks(*(np.concatenate([getattr(p, f) for p in out]) for f in ("user", "item",
                                                                            "time")))
    order = np.argsort(picks.time, kind="stable")
    return Picks(picks.user[order], picks.item[order], picks.time[order])


# --- Assembling the tables ------------------------------------------------------------------


def _reorder_teams(teams: Teams, directed: Picks) -> tuple[Teams, Picks]:
    """Ids in founding order; directed joins follow their team."""
    order = np.argsort(teams.created, kind="stable")
    new_id = np.empty(len(order), dtype=np.int64)
    new_id[order] = np.arange(len(order))
    teams = Teams(teams.captain[order], teams.game[order], teams.region[order],
                  teams.created[order], teams.max_members[order])
    return teams, Picks(directed.user, new_id[directed.item], directed.time)


def _team_tags(ctx: _Ctx, regs: Picks, game: np.ndarray, members: pd.DataFrame,
               share: float, rng: np.random.Generator) -> np.ndarray:
    """Team id (or -1) per registration: a team the user was in for that game at the time."""
    frame = pd.DataFrame({"row": np.arange(len(regs.user)), "user": regs.user, "game": game,
                          "time": regs.time})
    joined = frame.merge(members, on=["user", "game"], how="inner")
    joined = joined[(joined.joined <= joined.time) & (joined.left > joined.time)]
    joined = joined.sort_values(["row", "joined"], kind="stable").drop_duplicates("row")
    tag = np.full(len(regs.user), -1, dtype=np.int64)
    tag[joined.row.to_numpy()] = joined.team.to_numpy()
    tag[rng.random(len(tag)) >= share] = -1
    return tag


def _placements(tours: Tournaments, regs: Picks, pop: Population,
                rng: np.random.Generator) -> np.ndarray:
    """1..n per completed tournament (better players tend to place higher); 0 = none."""
    done = tours.status[regs.item] == "completed"
    idx = np.flatnonzero(done)
    strength = pop.skill[regs.user[idx], tours.game[regs.item[idx]]] + rng.normal(0, 250,
                                                                                  len(idx))
    order = np.lexsort((-strength, regs.item[idx]))
    place = np.zeros(len(regs.user), dtype=np.int64)
    place[idx[order]] = _group_rank(regs.item[idx][order]) + 1
    return place


def _activities(ctx: _Ctx, pop: Population, regs: Picks, m_user: np.ndarray,
                m_team: np.ndarray, m_joined: np.ndarray, m_left: np.ndarray,
                rng: np.random.Generator) -> pd.DataFrame:
    """One row per registration, join and leave, plus a few logins per user."""
    start = np.maximum(pop.joined, ctx.h0)
    span_days = np.maximum(ctx.now - start, 0) / DAY
    k = 1 + rng.poisson(0.08 * span_days)
    l_user = np.repeat(np.arange(pop.n), k)
    l_time = _between(rng, start[l_user], np.full(len(l_user), ctx.now))
    left = m_left < NEVER
    user = np.r_[regs.user, m_user, m_user[left], l_user]
    kind = np.r_[np.full(len(regs.user), 0), np.full(len(m_user), 1), np.full(left.sum(), 2),
                 np.full(len(l_user), 3)]
    obj = np.r_[regs.item + 1, m_team + 1, m_team[left] + 1, np.zeros(len(l_user), np.int64)]
    time = np.r_[regs.time, m_joined, m_left[left], l_time]
    order = np.lexsort((kind, time))
    user, kind, obj, time = user[order], kind[order], obj[order], time[order]
    types = np.array(["tournament_registered", "team_joined", "team_left", "login"])
    objects = np.array(["tournament", "team", "team", ""])
    clients = np.array(['{"client": "web"}', '{"client": "mobile"}', '{"client": "desktop"}'])
    is_login = kind == 3
    metadata = np.where(is_login, clients[rng.integers(0, 3, len(kind))], "")
    return pd.DataFrame({
        "id": np.arange(1, len(user) + 1),
        "user_id": user + 1,
        "activity_type": pd.array(types[kind], dtype="str"),
        "object_type": pd.array(np.where(is_login, None, objects[kind]), dtype="str"),
        "object_id": _nullable_int(obj, ~is_login),
        "created_at": _ts(time),
        "metadata": pd.array(np.where(is_login, metadata, None), dtype="str"),
    })


def _empty(name: str, dtypes: dict[str, str]) -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=dtypes[c]) for c in COLUMNS[name]})


def generate_world(name: str, n_users: int, seed: int,
                   now: datetime) -> Iterator[tuple[str, pd.DataFrame]]:
    """Yield `(table, frame)` for every app table, parents first (as `generate_tables` does,
    plus the empty achievement tables), for world `name` with `n_users` users anchored at `now`
    (naive UTC; an aware datetime is converted). Same arguments -> identical frames."""
    if name not in WORLDS:
        raise KeyError(f"unknown world {name!r}; known: {', '.join(WORLDS)}")
    if isinstance(n_users, bool) or not isinstance(n_users, int) or n_users <= 0:
        raise ValueError(f"n_users must be a positive integer, got {n_users!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    now_s = _epoch(now)
    ctx = _Ctx(world=name, n=n_users, seed=seed, now=now_s, h0=now_s - HISTORY_DAYS * DAY)
    drv = WORLDS[name].make_driver(ctx)

    yield "games", pd.DataFrame({
        "id": np.arange(1, N_GAMES + 1),
        "slug": pd.array([g[0] for g in GAMES], dtype="str"),
        "name": pd.array([g[1] for g in GAMES], dtype="str"),
    })

    pop = _population(ctx, drv)
    series = _series(ctx, drv)
    tours = _tournaments(ctx, series, drv)
    drv.on_catalogue(pop, tours, series, ctx.rng("catalogue"))
    team_rng = ctx.rng("teams")
    teams, directed = _reorder_teams(*drv.found_teams(pop, team_rng))
    teams.name = [drv.team_name(teams, m, team_rng) for m in range(len(teams))]
    drv.on_teams(pop, teams, team_rng)

    # Registrations and team joins: both engines play the same history.
    t_items = _Items(tours.game, tours.region, tours.created, tours.accept_until, tours.cap,
                     tours.smin, tours.smax, global_ok=True)
    reg_rng = ctx.rng("registrations")
    regs = _engine(ctx, pop, t_items, Picks(*(np.zeros(0, dtype=np.int64) for _ in range(3))),
                   drv.tournament_requests(pop, reg_rng), drv.tournament_logits, reg_rng,
                   followers=lambda p, c: drv.followers(pop, p, c, reg_rng))
    n_teams = len(teams)
    no_band = np.full(n_teams, np.nan)
    m_items = _Items(teams.game, teams.region, teams.created + 60, np.full(n_teams, NEVER),
                     teams.max_members, no_band, no_band, global_ok=False)
    join_rng = ctx.rng("team_joins")
    captains = Picks(teams.captain, np.arange(n_teams), teams.created)
    joins = _engine(ctx, pop, m_items, captains, drv.team_requests(pop, join_rng),
                    drv.team_logits, join_rng, directed=directed)

    # Memberships: captains at founding, then joins; a few members have left since (their seat
    # is never reused, so current members <= max_members by construction).
    m_user = np.r_[captains.user, joins.user]
    m_team = np.r_[captains.item, joins.item]
    m_joined = np.r_[captains.time, joins.time]
    order = np.lexsort((m_team, m_joined))
    m_user, m_team, m_joined = m_user[order], m_team[order], m_joined[order]
    is_captain = m_user == teams.captain[m_team]
    leaves = ~is_captain & (join_rng.random(len(m_user)) < 0.06)
    m_left = np.where(leaves, m_joined + 60 + _between(
        join_rng, np.zeros(len(m_user), np.int64), ctx.now - m_joined - 120), NEVER)
    m_left = np.where(m_left < ctx.now, m_left, NEVER)
    current = np.bincount(m_team[m_left == NEVER], minlength=n_teams)
    recruiting = np.where(current < teams.max_members, join_rng.random(n_teams) < 0.93,
                          join_rng.random(n_teams) < 0.1)

    activities = _activities(ctx, pop, regs, m_user, m_team, m_joined, m_left,
                             ctx.rng("activities"))
    yield "users", _users_frame(pop, activities)
    yield "game_profiles", _profiles_frame(pop)
    yield "profile_completeness", _completeness_frame(ctx, pop)
    yield "teams", pd.DataFrame({
        "id": np.arange(1, n_teams + 1),
        "name": pd.array(teams.name, dtype="str"),
        "game_id": teams.game + 1,
        "region": pd.array(np.array(REGION_CODES)[teams.region], dtype="str"),
        "captain_id": teams.captain + 1,
        "max_members": teams.max_members.astype(np.int64),
        "is_recruiting": recruiting,
        "created_at": _ts(teams.created),
    })
    yield "team_members", pd.DataFrame({
        "id": np.arange(1, len(m_user) + 1),
        "team_id": m_team + 1,
        "user_id": m_user + 1,
        "joined_at": _ts(m_joined),
        "left_at": _ts(m_left, m_left < NEVER),
    })
    has_min, has_max = ~np.isnan(tours.smin), ~np.isnan(tours.smax)
    completed = tours.status == "completed"
    yield "tournaments", pd.DataFrame({
        "id": np.arange(1, len(tours) + 1),
        "name": pd.array(tours.name, dtype="str"),
        "game_id": tours.game + 1,
        "region": pd.array(np.array(REGION_CODES)[tours.region], dtype="str"),
        "skill_min": _nullable_int(np.nan_to_num(tours.smin).astype(np.int64), has_min),
        "skill_max": _nullable_int(np.nan_to_num(tours.smax).astype(np.int64), has_max),
        "max_participants": tours.cap,
        "status": pd.array(tours.status, dtype="str"),
        "registration_closes_at": _ts(tours.closes),
        "starts_at": _ts(tours.starts),
        "completed_at": _ts(tours.ends, completed),
        "created_at": _ts(tours.created),
    })
    members = pd.DataFrame({"user": m_user, "game": teams.game[m_team], "team": m_team,
                            "joined": m_joined, "left": m_left})
    tag = _team_tags(ctx, regs, tours.game[regs.item], members, drv.p_team_tag,
                     ctx.rng("team_tags"))
    place = _placements(tours, regs, pop, ctx.rng("placements"))
    yield "tournament_participants", pd.DataFrame({
        "id": np.arange(1, len(regs.user) + 1),
        "tournament_id": regs.item + 1,
        "user_id": regs.user + 1,
        "team_id": _nullable_int(tag + 1, tag >= 0),
        "registered_at": _ts(regs.time),
        "placement": _nullable_int(place, place > 0),
    })
    yield "activities", activities
    # The catalogue belongs to `init-db` (a non-empty one would collide on `code`); awards and
    # the outbox are the achievements job's business, not these worlds'.
    yield "achievements", _empty("achievements", {
        "id": "int64", "code": "str", "name": "str", "description": "str", "event_type": "str",
        "metric": "str", "threshold": "int64", "points": "int64", "is_active": "bool"})
    yield "user_achievements", _empty("user_achievements", {
        "user_id": "int64", "achievement_id": "int64", "awarded_at": "datetime64[us]",
        "event_id": "Int64"})
    yield "app_events", _empty("app_events", {
        "event_type": "str", "user_id": "Int64", "payload": "str",
        "created_at": "datetime64[us]"})


def _users_frame(pop: Population, activities: pd.DataFrame) -> pd.DataFrame:
    ids = np.arange(1, pop.n + 1)
    # last_login: the latest thing the user did (activities include >= 1 login per user).
    last = activities.groupby("user_id").created_at.max().reindex(ids)
    return pd.DataFrame({
        "id": ids,
        "username": pd.array([f"player{i}" for i in ids], dtype="str"),
        "email": pd.array([f"user{i}@example.test" for i in ids], dtype="str"),
        "region": pd.array(np.array(REGION_CODES)[pop.region], dtype="str"),
        "is_active": pop.active,
        "date_joined": _ts(pop.joined),
        "last_login": last.to_numpy(dtype="datetime64[us]"),
    })


def _profiles_frame(pop: Population) -> pd.DataFrame:
    user, game = np.nonzero(~np.isnan(pop.skill))
    created = pop.profile_at[user, game]
    order = np.lexsort((game, user, created))  # ids in creation order
    user, game, created = user[order], game[order], created[order]
    return pd.DataFrame({
        "id": np.arange(1, len(user) + 1),
        "user_id": user + 1,
        "game_id": game + 1,
        "skill_rating": pop.skill[user, game].astype(np.int64),
        "created_at": _ts(created),
    })


def _completeness_frame(ctx: _Ctx, pop: Population) -> pd.DataFrame:
    rng = ctx.rng("completeness")
    full = rng.random(pop.n) < 0.2
    return pd.DataFrame({
        "user_id": np.arange(1, pop.n + 1),
        "percentage": np.where(full, 100, rng.integers(10, 100, pop.n)).astype(np.int64),
        "updated_at": _ts(_between(rng, pop.joined, np.full(pop.n, ctx.now))),
    })
