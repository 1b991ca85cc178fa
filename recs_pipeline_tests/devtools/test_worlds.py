"""Every world: deterministic, schema-shaped, obeys the platform's hard rules, and carries its
driver (checked from the generated tables alone, against a shuffled-users null)."""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from functools import cache

import numpy as np
import pandas as pd
import pytest

from recs_pipeline import schema
from recs_pipeline.devtools import seed, worlds

NOW = datetime(2025, 6, 1, 13, 30)  # not midnight, on purpose
N_USERS = int(os.environ.get("WORLDS_TEST_USERS", "800"))
SEED = int(os.environ.get("WORLDS_TEST_SEED", "5"))  # try other seeds without editing
NAMES = list(worlds.WORLDS)
CUTOFF = NOW - timedelta(days=worlds.HOLDOUT_DAYS)


@cache
def world(name: str) -> dict[str, pd.DataFrame]:
    return dict(worlds.generate_world(name, N_USERS, SEED, NOW))


@cache
def reference_tables() -> dict[str, pd.DataFrame]:
    return dict(seed.generate_tables(seed.SeedConfig(users=500, seed=1, now=NOW)))


def expected_columns(table: schema.sa.Table) -> list[str]:
    """The schema's columns minus the ids the database assigns (as `generate_tables` does)."""
    return [c.name for c in table.columns if not (c.primary_key and c.autoincrement is True)]


def dtype_class(series: pd.Series) -> str:
    dtype = series.dtype
    if pd.api.types.is_bool_dtype(dtype):
        return "bool"
    if pd.api.types.is_integer_dtype(dtype):
        return "int"
    if pd.api.types.is_datetime64_any_dtype(dtype):
        return "datetime"
    if pd.api.types.is_float_dtype(dtype):
        return "float"
    return "text"  # str, object and categorical all write as text


def joined(frames: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Registrations with their tournament's and user's attributes."""
    t = frames["tournaments"].rename(columns={"id": "tournament_id", "region": "t_region",
                                              "created_at": "t_created"})
    u = frames["users"][["id", "region", "date_joined"]].rename(columns={"id": "user_id"})
    p = frames["tournament_participants"].merge(t, on="tournament_id", how="left")
    return p.merge(u, on="user_id", how="left")


# --- Shape ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_deterministic(name: str) -> None:
    again = dict(worlds.generate_world(name, N_USERS, SEED, NOW))
    first = world(name)
    assert list(again) == list(first)
    for table, frame in first.items():
        pd.testing.assert_frame_equal(frame, again[table], check_exact=True, obj=table)
    other = dict(worlds.generate_world(name, N_USERS, SEED + 1, NOW))
    assert not other["tournament_participants"].equals(first["tournament_participants"])


@pytest.mark.parametrize("name", NAMES)
def test_tables_match_the_schema_and_the_seed(name: str) -> None:
    frames = world(name)
    assert set(frames) == {t.name for t in schema.APP_TABLES}
    for table in schema.APP_TABLES:
        assert list(frames[table.name].columns) == expected_columns(table), table.name
    ref = reference_tables()
    # Same order of tables as the project's generator (ours adds the achievement tables).
    assert [t for t in frames if t in ref] == list(ref)
    for table, frame in ref.items():
        assert list(frames[table].columns) == list(frame.columns), table
        for column in frame.columns:
            assert dtype_class(frames[table][column]) == dtype_class(frame[column]), (
                table, column)
    for table in ("achievements", "user_achievements", "app_events"):
        assert frames[table].empty


def test_unknown_world_and_bad_arguments() -> None:
    with pytest.raises(KeyError, match="unknown world"):
        next(worlds.generate_world("nope", 10, 1, NOW))
    with pytest.raises(ValueError, match="n_users"):
        next(worlds.generate_world("no_structure", 0, 1, NOW))


# --- Hard rules -----------------------------------------------------------------------------


def _ids_in_creation_order(frame: pd.DataFrame, column: str) -> None:
    assert frame.id.tolist() == list(range(1, len(frame) + 1))
    assert frame[column].is_monotonic_increasing


@pytest.mark.parametrize("name", NAMES)
def test_users_games_profiles(name: str) -> None:
    f = world(name)
    users, profiles, games = f["users"], f["game_profiles"], f["games"]
    assert len(users) == N_USERS
    _ids_in_creation_order(users, "date_joined")
    assert set(users.region) <= set(schema.KNOWN_REGIONS)
    assert users.username.is_unique
    assert (users.email == "user" + users.id.astype(str) + "@example.test").all()
    assert 0.9 < users.is_active.mean() < 1.0
    assert users.last_login.notna().all()
    assert (users.last_login >= users.date_joined).all() and (users.last_login < NOW).all()
    assert (users.date_joined < NOW).all()
    assert games.slug.is_unique
    _ids_in_creation_order(profiles, "created_at")
    assert not profiles.duplicated(["user_id", "game_id"]).any()
    assert set(profiles.game_id) <= set(games.id)
    assert profiles.skill_rating.between(0, 5000).all()
    joined_at = users.set_index("id").date_joined.loc[profiles.user_id].to_numpy()
    assert (profiles.created_at.to_numpy() >= joined_at).all()
    assert (profiles.created_at < NOW).all()
    assert 0.9 < users.id.isin(profiles.user_id).mean() < 1.0
    pc = f["profile_completeness"]
    assert sorted(pc.user_id) == users.id.tolist() and pc.percentage.between(0, 100).all()


@pytest.mark.parametrize("name", NAMES)
def test_tournament_catalogue(name: str) -> None:
    t = world(name)["tournaments"]
    _ids_in_creation_order(t, "created_at")
    assert (t.created_at < NOW).all()
    assert (t.registration_closes_at <= t.starts_at).all()
    window = (t.registration_closes_at - t.created_at) / pd.Timedelta(days=1)
    assert window.between(3.0, 12.0).all()
    assert t.created_at.min() < NOW - timedelta(days=worlds.HISTORY_DAYS)
    assert set(t.status) == set(schema.TOURNAMENT_STATUSES)
    assert set(t.region) <= {*schema.KNOWN_REGIONS, schema.GLOBAL_REGION}
    done = t.status == "completed"
    assert t.completed_at.notna().eq(done).all()
    assert (t.completed_at[done] <= NOW).all() and (t.completed_at[done] > t.starts_at[done]).all()
    running = t[t.status == "in_progress"]
    assert ((running.starts_at <= NOW) & (running.starts_at > NOW - timedelta(days=1))).all()
    assert (t[t.status == "registration_open"].registration_closes_at > NOW).all()
    assert (t[t.status == "upcoming"].starts_at > NOW).all()
    assert (t[t.status.isin(["completed", "in_progress"])].starts_at <= NOW).all()
    assert (t.status == "cancelled").mean() < 0.05
    open_now = t.status.isin(schema.OPEN_TOURNAMENT_STATUSES) & (t.registration_closes_at > NOW)
    assert open_now.sum() > 100
    # Listed steadily: tournaments appear every day, and at any moment tens are open per
    # game and region (local + global).
    per_day = t.created_at.dt.floor("D").value_counts()
    days = pd.date_range(NOW - timedelta(days=worlds.HISTORY_DAYS), NOW, freq="D").floor("D")
    assert per_day.reindex(days[1:-1], fill_value=0).min() > 20
    for moment in (NOW - timedelta(days=100), CUTOFF, NOW):
        live = t[(t.created_at <= moment) & (t.registration_closes_at > moment)]
        for region in schema.KNOWN_REGIONS:
            here = live[live.region.isin([region, schema.GLOBAL_REGION])]
            assert here.groupby("game_id").size().reindex(range(1, 6), fill_value=0).min() >= 10
    assert t.skill_min.isna().any() and t.skill_min.notna().any()
    assert (t.skill_min.isna() | t.skill_max.isna() | (t.skill_min < t.skill_max)).all()


@pytest.mark.parametrize("name", NAMES)
def test_registrations_obey_every_rule(name: str) -> None:
    f = world(name)
    parts, profiles = f["tournament_participants"], f["game_profiles"]
    _ids_in_creation_order(parts, "registered_at")
    assert not parts.duplicated(["tournament_id", "user_id"]).any()
    p = joined(f)
    assert p.name.notna().all() and p.date_joined.notna().all()
    # Inside the registration window, after sign-up, before now.
    assert (p.registered_at >= p.t_created).all()
    assert (p.registered_at < p.registration_closes_at).all()
    assert (p.registered_at >= p.date_joined).all()
    assert (p.registered_at < NOW).all()
    assert (p.registered_at >= NOW - timedelta(days=worlds.HISTORY_DAYS)).all()
    # Region, profile (created before the registration), skill band.
    assert ((p.t_region == p.region) | (p.t_region == schema.GLOBAL_REGION)).all()
    prof = p.merge(profiles.rename(columns={"created_at": "profile_at"}),
                   on=["user_id", "game_id"], how="left")
    assert prof.skill_rating.notna().all()
    assert (prof.profile_at <= prof.registered_at).all()
    lo, hi = prof.skill_min.astype("Float64"), prof.skill_max.astype("Float64")
    s = prof.skill_rating.astype("Float64")
    assert ((lo.isna() | (s >= lo)) & (hi.isna() | (s <= hi))).all()
    # Capacity, placements.
    t = f["tournaments"].set_index("id")
    counts = parts.groupby("tournament_id").size()
    assert (counts <= t.max_participants.loc[counts.index]).all()
    assert p.placement.notna().eq(p.status == "completed").all()
    done = p[p.status == "completed"].groupby("tournament_id").placement
    assert (done.min() == 1).all() and (done.max() == done.size()).all()
    assert (done.nunique() == done.size()).all()
    # Team tags: a team of that game the user was in at the time.
    tagged = p[p.team_id.notna()].astype({"team_id": "int64"})
    assert len(tagged) > 0
    members = f["team_members"].rename(columns={"id": "member_row"})
    m = tagged.merge(members, on=["team_id", "user_id"], how="left")
    team_game = f["teams"].set_index("id").game_id
    assert m.joined_at.notna().all()
    ok = (m.joined_at <= m.registered_at) & (m.left_at.isna() | (m.left_at > m.registered_at))
    assert ok.groupby(m.id).any().all()
    assert (team_game.loc[tagged.team_id].to_numpy() == tagged.game_id.to_numpy()).all()
    # A temporal holdout has something to evaluate: registrations after the cutoff in
    # tournaments listed before it.
    holdout = p[(p.registered_at >= CUTOFF) & (p.t_created < CUTOFF)]
    assert len(holdout) > 0.03 * len(p)


@pytest.mark.parametrize("name", NAMES)
def test_teams_and_memberships(name: str) -> None:
    f = world(name)
    teams, members, users, profiles = (f["teams"], f["team_members"], f["users"],
                                       f["game_profiles"])
    _ids_in_creation_order(teams, "created_at")
    _ids_in_creation_order(members, "joined_at")
    assert teams.max_members.between(5, 10).all()
    assert (teams.created_at < NOW).all()
    current = members[members.left_at.isna()]
    assert members.left_at.isna().mean() > 0.9
    assert not current.duplicated(["team_id", "user_id"]).any()
    assert not members.duplicated(["team_id", "user_id"]).any()
    left = members[members.left_at.notna()]
    assert ((left.left_at > left.joined_at) & (left.left_at < NOW)).all()
    cur = current.groupby("team_id").size().reindex(teams.id, fill_value=0)
    cap = teams.set_index("id").max_members
    assert (cur <= cap).all()
    assert set(zip(teams.id, teams.captain_id, strict=True)) <= set(
        zip(current.team_id, current.user_id, strict=True))
    m = members.merge(teams.rename(columns={"id": "team_id", "created_at": "team_created",
                                            "region": "team_region"}), on="team_id")
    m = m.merge(users[["id", "region", "date_joined"]].rename(columns={"id": "user_id"}),
                on="user_id")
    assert (m.joined_at >= m.team_created).all()
    assert (m.joined_at >= m.date_joined).all() and (m.joined_at < NOW).all()
    assert (m.team_region == m.region).all()
    prof = m.merge(profiles.rename(columns={"created_at": "profile_at"}),
                   on=["user_id", "game_id"], how="left")
    assert prof.skill_rating.notna().all() and (prof.profile_at <= prof.joined_at).all()
    # Joins spread over the history, including the holdout window.
    joins = m[m.user_id != m.captain_id]
    assert len(joins) > 0.2 * N_USERS
    assert (joins.joined_at >= CUTOFF).mean() > 0.03
    assert (joins.joined_at < NOW - timedelta(days=60)).mean() > 0.1
    assert teams.is_recruiting.any() and not teams.is_recruiting.all()


@pytest.mark.parametrize("name", NAMES)
def test_activities_mirror_the_registrations(name: str) -> None:
    f = world(name)
    acts, parts, members = f["activities"], f["tournament_participants"], f["team_members"]
    _ids_in_creation_order(acts, "created_at")
    assert (acts.created_at < NOW).all()
    assert set(acts.activity_type) <= set(schema.KNOWN_ACTIVITY_TYPES)
    reg = acts[acts.activity_type == "tournament_registered"]
    assert sorted(zip(reg.user_id, reg.object_id.astype(int), reg.created_at, strict=True)) == \
        sorted(zip(parts.user_id, parts.tournament_id, parts.registered_at, strict=True))
    join = acts[acts.activity_type == "team_joined"]
    assert sorted(zip(join.user_id, join.object_id.astype(int), strict=True)) == sorted(
        zip(members.user_id, members.team_id, strict=True))
    assert set(acts.user_id[acts.activity_type == "login"]) == set(f["users"].id)
    last = acts.groupby("user_id").created_at.max()
    assert (f["users"].set_index("id").last_login.loc[last.index] == last).all()


# --- Drivers --------------------------------------------------------------------------------
#
# Nulls: the same registrations with their users shuffled within (game, user region, week),
# which keeps availability, eligibility structure and timing but breaks any personal link.


def shuffled_users(p: pd.DataFrame, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    week = (p.registered_at - pd.Timestamp(NOW)).dt.days // 7
    keys = pd.DataFrame({"g": p.game_id, "r": p.region, "w": week}).astype(str).agg("|".join,
                                                                                   axis=1)
    out = p.user_id.to_numpy().copy()
    for idx in pd.Series(np.arange(len(p))).groupby(keys.to_numpy()).indices.values():
        out[idx] = out[idx][rng.permutation(len(idx))]
    return out


def modal_share(users: np.ndarray, labels: np.ndarray, min_n: int = 4) -> float:
    """Mean over users with >= min_n picks of the share of their most frequent label."""
    frame = pd.DataFrame({"u": users, "l": labels})
    counts = frame.groupby(["u", "l"]).size()
    per_user = counts.groupby(level=0)
    top, total = per_user.max(), per_user.sum()
    return float((top / total)[total >= min_n].mean())


def personal_ratio(p: pd.DataFrame, labels: np.ndarray) -> float:
    """Observed / shuffled modal share of a label: ~1 without personal taste for it."""
    return modal_share(p.user_id.to_numpy(), labels) / modal_share(shuffled_users(p), labels)


def brand_of(names: pd.Series) -> np.ndarray:
    brands = sorted(worlds.ORGANISERS, key=len, reverse=True)
    out = np.full(len(names), "", dtype=object)
    for brand in brands:
        out[(out == "") & names.str.startswith(brand + " ").to_numpy()] = brand
    return out


def prize_of(names: pd.Series) -> np.ndarray:
    return names.str.extract(r"\$([\d,]+)")[0].str.replace(",", "").astype(float).to_numpy()


def local_hour(p: pd.DataFrame) -> np.ndarray:
    offset = p.region.map(worlds.UTC_OFFSET_HOURS).to_numpy()
    utc = p.starts_at.dt.hour.to_numpy() + p.starts_at.dt.minute.to_numpy() / 60
    return (utc + offset) % 24


def resultant_length(users: np.ndarray, hours: np.ndarray, min_n: int = 4) -> float:
    """Mean per-user concentration of hours on the clock (1 = always the same hour)."""
    angle = 2 * np.pi * hours / 24
    frame = pd.DataFrame({"u": users, "c": np.cos(angle), "s": np.sin(angle)})
    g = frame.groupby("u")
    r = np.hypot(g.c.mean(), g.s.mean())
    return float(r[g.size() >= min_n].mean())


def top_partner_share(users: np.ndarray, tournaments: np.ndarray, min_n: int = 4) -> float:
    """Mean over users with >= min_n registrations of the share of them shared with the one
    other user they co-register with most."""
    frame = pd.DataFrame({"u": users, "t": tournaments})
    pairs = frame.merge(frame, on="t")
    pairs = pairs[pairs.u_x != pairs.u_y]
    top = pairs.groupby(["u_x", "u_y"]).size().groupby(level=0).max()
    n = frame.groupby("u").size()
    return float((top.reindex(n.index, fill_value=0) / n)[n >= min_n].mean())


def split_half_popularity(f: dict[str, pd.DataFrame]) -> float:
    """Correlation of log registrations per completed tournament between two random halves of
    the users: high when items have a pull of their own that everybody follows."""
    t = f["tournaments"]
    t = t[t.status == "completed"]
    p = f["tournament_participants"]
    half = (np.random.default_rng(0).random(p.user_id.max() + 1) < 0.5)[p.user_id.to_numpy()]
    a = p[half].groupby("tournament_id").size().reindex(t.id, fill_value=0)
    b = p[~half].groupby("tournament_id").size().reindex(t.id, fill_value=0)
    return float(np.corrcoef(np.log1p(a), np.log1p(b))[0, 1])


def offered(p: pd.DataFrame, t: pd.DataFrame, value: np.ndarray) -> np.ndarray:
    """Per registration, the mean of `value` over the tournaments on offer to that user that
    day: same game, their region or global, listed and still open at noon."""
    days = (pd.Timestamp(NOW) - pd.Timedelta(days=worlds.HISTORY_DAYS + 14)).floor("D")
    first = ((t.created_at - days) / pd.Timedelta(days=1) - 0.5).apply(np.ceil).astype(int)
    last = ((t.registration_closes_at - days) / pd.Timedelta(days=1) - 0.5).apply(
        np.ceil).astype(int) - 1
    length = np.maximum(last - first + 1, 0).to_numpy()
    rows = np.repeat(np.arange(len(t)), length)
    day = first.to_numpy()[rows] + np.arange(length.sum()) - np.repeat(
        np.cumsum(length) - length, length)
    open_ = pd.DataFrame({"g": t.game_id.to_numpy()[rows], "r": t.region.to_numpy()[rows],
                          "d": day, "v": value[rows]})
    sums = open_.groupby(["g", "r", "d"]).v.agg(["sum", "count"])
    reg_day = ((p.registered_at - days) / pd.Timedelta(days=1)).astype(int).to_numpy()
    total = np.zeros(len(p))
    count = np.zeros(len(p))
    for region in (p.region.to_numpy(), np.full(len(p), schema.GLOBAL_REGION)):
        keys = pd.MultiIndex.from_arrays([p.game_id.to_numpy(), region, reg_day])
        got = sums.reindex(keys).fillna(0).to_numpy()
        total += got[:, 0]
        count += got[:, 1]
    return total / np.maximum(count, 1)


def home_share(p: pd.DataFrame, t: pd.DataFrame) -> tuple[float, float]:
    """Share of registrations in the user's own region (not global), and that share among
    the tournaments on offer to them at the time."""
    home = (p.t_region == p.region).to_numpy()
    is_local = (t.region != schema.GLOBAL_REGION).to_numpy().astype(float)
    return float(home.mean()), float(offered(p, t, is_local).mean())


def driver_no_structure(f: dict[str, pd.DataFrame]) -> None:
    p = joined(f)
    counts = p.groupby("tournament_id").size().reindex(f["tournaments"].id, fill_value=0)
    top = counts.sort_values(ascending=False)
    # Heavy-tailed pull: the top 5 % of tournaments take most registrations, and the pull is
    # the item's own (two disjoint halves of the users agree on it).
    assert top.iloc[: len(top) // 20].sum() > 0.5 * len(p)
    assert split_half_popularity(f) > 0.55
    # No personal taste: users repeat start slots, sizes and series no more than chance.
    for labels in (p.starts_at.dt.hour.to_numpy() // 6, p.max_participants.to_numpy(),
                   p.name.str.replace(r" #\d+$", "", regex=True).to_numpy()):
        assert 0.85 < personal_ratio(p, labels) < 1.15


def driver_region_prize(f: dict[str, pd.DataFrame]) -> None:
    p = joined(f)
    t = f["tournaments"]
    prize = prize_of(t.name)
    assert np.isfinite(prize).all()
    # Richer cups draw more: completed cups of >= $2,500 average several times the
    # registrations of <= $250 ones...
    done = (t.status == "completed").to_numpy()
    counts = p.groupby("tournament_id").size().reindex(t.id, fill_value=0).to_numpy()
    rich, poor = counts[done & (prize >= 2_500)].mean(), counts[done & (prize <= 250)].mean()
    assert rich > 3 * poor
    # ... and users pick far richer cups than those on offer to them at the time.
    chosen = np.log(prize_of(p.name))
    assert (chosen - offered(p, t, np.log(prize))).mean() > 0.5
    # Home cups beat global ones far beyond their share of what is on offer.
    home, offer = home_share(p, t)
    assert home > offer + 0.1
    # The rule is the same for everyone: no personal start-slot taste.
    assert 0.85 < personal_ratio(p, p.starts_at.dt.hour.to_numpy() // 6) < 1.15


def driver_organiser_loyalty(f: dict[str, pd.DataFrame]) -> None:
    p = joined(f)
    brand = brand_of(p.name)
    assert (brand != "").all()
    observed = modal_share(p.user_id.to_numpy(), brand)
    null = modal_share(shuffled_users(p), brand)
    # Most of what chance leaves open goes to the favourite.
    assert observed > 0.7 and (observed - null) / (1 - null) > 0.4
    # Game, region and size do not reveal the organiser: guessing the most common organiser
    # for a series' game (region, size) is right about as rarely as chance (1/12 plus noise).
    t = f["tournaments"]
    series = t.assign(brand=brand_of(t.name),
                      key=t.name.str.replace(r"( S\d+ Qualifier)? #\d+$", "", regex=True))
    series = series.drop_duplicates(["key", "game_id", "region", "max_participants"])
    for column in ("game_id", "region", "max_participants"):
        best = series.groupby(column).brand.agg(lambda b: b.value_counts().iloc[0])
        assert best.sum() / len(series) < 0.35, column


def driver_local_time(f: dict[str, pd.DataFrame]) -> None:
    p = joined(f)
    hours = local_hour(p)
    observed = resultant_length(p.user_id.to_numpy(), hours)
    null = resultant_length(shuffled_users(p), hours)
    assert observed > 0.8 and observed > null + 0.3


def driver_friend_cliques(f: dict[str, pd.DataFrame]) -> None:
    p = joined(f)
    users, tours = p.user_id.to_numpy(), p.tournament_id.to_numpy()
    observed = top_partner_share(users, tours)
    null = top_partner_share(shuffled_users(p), tours)
    assert observed > 0.5 and observed > null + 0.2
    # The same friends share teams: pairs who co-register often are team mates.
    members = f["team_members"]
    mates = members.merge(members, on="team_id")
    mates = set(zip(mates.user_id_x, mates.user_id_y, strict=True))
    frame = pd.DataFrame({"u": users, "t": tours})
    pairs = frame.merge(frame, on="t")
    counts = pairs[pairs.u_x < pairs.u_y].groupby(["u_x", "u_y"]).size()
    close = counts[counts >= 4].index
    assert np.mean([pair in mates for pair in close]) > 0.4


def driver_skill_teams(f: dict[str, pd.DataFrame]) -> None:
    teams, members, profiles = f["teams"], f["team_members"], f["game_profiles"]
    skill = profiles.set_index(["user_id", "game_id"]).skill_rating
    t = teams.set_index("id")
    joins = members[members.user_id.to_numpy() != t.captain_id.loc[members.team_id].to_numpy()]
    game = t.game_id.loc[joins.team_id].to_numpy()
    captain = t.captain_id.loc[joins.team_id].to_numpy()
    mine = skill.loc[list(zip(joins.user_id, game, strict=True))].to_numpy()
    theirs = skill.loc[list(zip(captain, game, strict=True))].to_numpy()
    observed = np.abs(mine - theirs).mean()
    # Null: the same users against random teams of the same game and region.
    rng = np.random.default_rng(0)
    region = t.region.loc[joins.team_id].to_numpy()
    gaps = []
    for (g, r), idx in pd.Series(np.arange(len(joins))).groupby([game, region]).indices.items():
        pool = t[(t.game_id == g) & (t.region == r)].captain_id.to_numpy()
        rivals = skill.loc[list(zip(rng.choice(pool, len(idx)), np.full(len(idx), g),
                                    strict=True))].to_numpy()
        gaps.append(np.abs(mine[idx] - rivals))
    null = np.concatenate(gaps).mean()
    assert observed < 0.5 * null
    # Tournaments are mostly banded, and users sit well inside the bands they pick.
    tours = f["tournaments"]
    assert tours.skill_min.notna().mean() > 0.3 and tours.skill_max.notna().mean() > 0.3


def driver_cold_start(f: dict[str, pd.DataFrame]) -> None:
    users, parts = f["users"], f["tournament_participants"]
    recent = users.date_joined >= NOW - timedelta(days=35)
    assert 0.6 <= recent.mean() <= 0.7
    before = parts[parts.registered_at < CUTOFF].groupby("user_id").size()
    cold_ids = users.id[recent]
    assert before.reindex(cold_ids, fill_value=0).max() <= 2
    # The cold users still act after the cutoff (what the holdout evaluates).
    after = parts[parts.registered_at >= CUTOFF].user_id
    assert cold_ids.isin(after).mean() > 0.5
    # Warm users' history follows their first game (when they have several) and own region.
    p = joined(f)
    profiles = f["game_profiles"]
    first_game = profiles.sort_values("created_at").drop_duplicates("user_id")
    first_game = first_game.set_index("user_id").game_id
    n_games = profiles.groupby("user_id").size()
    warm = p[~p.user_id.isin(cold_ids)]
    multi = warm[n_games.loc[warm.user_id].to_numpy() > 1]
    on_first = (multi.game_id.to_numpy() == first_game.loc[multi.user_id].to_numpy()).mean()
    chance = (1 / n_games.loc[multi.user_id]).mean()
    assert on_first > 0.7 and on_first > chance + 0.25
    home, offer = home_share(warm, f["tournaments"])
    assert home > offer + 0.1


DRIVER_CHECKS = {
    "no_structure": driver_no_structure,
    "region_prize": driver_region_prize,
    "organiser_loyalty": driver_organiser_loyalty,
    "local_time": driver_local_time,
    "friend_cliques": driver_friend_cliques,
    "skill_teams": driver_skill_teams,
    "cold_start": driver_cold_start,
}


def test_every_world_has_a_driver_check() -> None:
    assert set(DRIVER_CHECKS) == set(worlds.WORLDS)


@pytest.mark.parametrize("name", NAMES)
def test_driver_is_present(name: str) -> None:
    DRIVER_CHECKS[name](world(name))


def test_drivers_are_specific() -> None:
    """The checks discriminate: each signature is much weaker where it is not the driver."""
    base = world("no_structure")
    p = joined(base)
    assert resultant_length(p.user_id.to_numpy(), local_hour(p)) < 0.6
    friends = joined(world("friend_cliques"))
    assert top_partner_share(p.user_id.to_numpy(), p.tournament_id.to_numpy()) < (
        top_partner_share(friends.user_id.to_numpy(), friends.tournament_id.to_numpy()) - 0.2)
    for name in ("organiser_loyalty", "local_time", "skill_teams", "cold_start"):
        assert split_half_popularity(world(name)) < split_half_popularity(base) - 0.15, name
    local = joined(world("local_time"))
    assert personal_ratio(local, local.starts_at.dt.hour.to_numpy() // 6) > 1.3
