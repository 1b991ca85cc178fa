"""The demo-data seed: deterministic, identical on both backends, consistent, and taste-driven."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from recs_pipeline import schema
from recs_pipeline.bootstrap import DEFAULT_ACHIEVEMENTS, init_app_database
from recs_pipeline.cli import main
from recs_pipeline.db import make_engine
from recs_pipeline.devtools.seed import (
    GAMES,
    SEEDED_TABLES,
    SIZE_CLASSES,
    SLOT_HOURS,
    SeedConfig,
    SeedError,
    _population,
    epoch_seconds,
    generate_tables,
    seed_database,
)
from recs_pipeline_tests.conftest import _reset_postgres_schema, postgres_url

NOW = datetime(2025, 6, 1)
SMALL = SeedConfig(users=400, seed=7, now=NOW)


def table_digest(engine: Engine) -> dict[str, str]:
    """A hash per seeded table of all its rows, ordered by key, as Python values."""
    digests = {}
    with engine.connect() as conn:
        for name in SEEDED_TABLES:
            table = schema.APP_METADATA.tables[name]
            rows = conn.execute(sa.select(table).order_by(*table.primary_key.columns)).all()
            digests[name] = hashlib.sha256(repr([tuple(r) for r in rows]).encode()).hexdigest()
    return digests


def read(engine: Engine, name: str) -> pd.DataFrame:
    table = schema.APP_METADATA.tables[name]
    with engine.connect() as conn:
        result = conn.execute(sa.select(table).order_by(*table.primary_key.columns))
        return pd.DataFrame(result.all(), columns=list(result.keys()))


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="positive"):
        SeedConfig(users=0)
    with pytest.raises(ValueError, match="positive"):
        SeedConfig(users=-3)
    with pytest.raises(ValueError, match="seed"):
        SeedConfig(users=10, seed=-1)
    # The default anchor is today's midnight (UTC), so two runs on one day agree.
    anchor = SeedConfig(users=1).anchor
    assert (anchor.hour, anchor.minute, anchor.second, anchor.microsecond) == (0, 0, 0, 0)
    assert anchor.tzinfo is None


@pytest.mark.db
def test_same_config_twice_gives_identical_data_and_replace_works(engine: Engine) -> None:
    summary = seed_database(engine, SMALL, progress=False)
    assert summary.rows["users"] == 400
    assert "users" in summary.render() and "400" in summary.render()
    first = table_digest(engine)

    with pytest.raises(SeedError, match=r"already holds data.*--replace"):
        seed_database(engine, SMALL, progress=False)

    seed_database(engine, SMALL, progress=False, replace=True)
    assert table_digest(engine) == first
    # The achievement catalogue survives a replace.
    with engine.connect() as conn:
        codes = set(conn.execute(sa.select(schema.achievements.c.code)).scalars())
    assert codes == {spec.code for spec in DEFAULT_ACHIEVEMENTS}

    # A different seed gives different data.
    seed_database(engine, SeedConfig(users=400, seed=8, now=NOW), progress=False, replace=True)
    assert table_digest(engine)["tournament_participants"] != first["tournament_participants"]


@pytest.mark.db
def test_missing_tables_is_a_clear_error(empty_engine: Engine) -> None:
    with pytest.raises(SeedError, match=r"app tables missing.*init-db"):
        seed_database(empty_engine, SMALL, progress=False)


def test_sqlite_and_postgresql_get_identical_data(tmp_path: Path, postgres_database: str) -> None:
    url = postgres_url(postgres_database)
    _reset_postgres_schema(url)
    digests = []
    for database_url in (f"sqlite:///{tmp_path / 'app.db'}", url):
        engine = make_engine(database_url)
        try:
            init_app_database(engine)
            seed_database(engine, SMALL, progress=False)
            digests.append(table_digest(engine))
        finally:
            engine.dispose()
    assert digests[0] == digests[1]


@pytest.mark.db
def test_invariants(engine: Engine) -> None:
    config = SeedConfig(users=600, seed=3, now=NOW)
    seed_database(engine, config, progress=False)
    users = read(engine, "users")
    games = read(engine, "games")
    profiles = read(engine, "game_profiles")
    completeness = read(engine, "profile_completeness")
    tournaments = read(engine, "tournaments")
    parts = read(engine, "tournament_participants")
    teams = read(engine, "teams")
    members = read(engine, "team_members")
    activities = read(engine, "activities")
    events = read(engine, "app_events")

    # Keys.
    assert users.id.is_unique and games.slug.is_unique
    assert set(games.slug) == {g[0] for g in GAMES}
    assert not profiles.duplicated(["user_id", "game_id"]).any()
    assert not parts.duplicated(["tournament_id", "user_id"]).any()
    assert completeness.user_id.is_unique and set(completeness.user_id) == set(users.id)
    assert list(events.id) == list(range(1, len(events) + 1))  # assigned by the database

    # Referential integrity.
    uid, gid, tid, mid = set(users.id), set(games.id), set(tournaments.id), set(teams.id)
    assert set(profiles.user_id) <= uid and set(profiles.game_id) <= gid
    assert set(tournaments.game_id) <= gid and set(teams.game_id) <= gid
    assert set(parts.tournament_id) <= tid and set(parts.user_id) <= uid
    assert set(parts.team_id.dropna().astype(int)) <= mid
    assert set(teams.captain_id) <= uid
    assert set(members.team_id) <= mid and set(members.user_id) <= uid
    assert set(activities.user_id) <= uid

    # Users: regions, e-mail, shares.
    assert set(users.region) <= {*schema.KNOWN_REGIONS, "mena"}
    assert (users.email.str.len() > 0).all() and users.email.is_unique
    assert 0.01 < 1 - users.is_active.mean() < 0.12
    no_profile = 1 - users.id.isin(profiles.user_id).mean()
    assert 0.005 < no_profile < 0.08
    assert profiles.skill_rating.between(0, 5000).all()
    assert completeness.percentage.between(0, 100).all()
    assert (completeness.percentage == 100).any()

    # Tournaments: statuses, windows, bad input on purpose.
    assert set(tournaments.status) == set(schema.TOURNAMENT_STATUSES)
    assert (tournaments.max_participants == 0).sum() == 2
    open_ = tournaments[tournaments.status.isin(schema.OPEN_TOURNAMENT_STATUSES)]
    assert (open_.registration_closes_at > NOW).all()
    assert (open_.starts_at > open_.registration_closes_at).all()
    done = tournaments.status == "completed"
    assert tournaments.completed_at.notna().eq(done).all()
    assert (tournaments.completed_at.dropna() <= NOW).all()
    running = tournaments[tournaments.status == "in_progress"]
    assert (running.starts_at <= NOW).all()
    assert (tournaments.created_at < NOW).all()
    assert (tournaments.created_at < tournaments.registration_closes_at).all()
    assert tournaments.skill_min.isna().any() and tournaments.skill_min.notna().any()
    assert set(tournaments.region) <= {*schema.KNOWN_REGIONS, schema.GLOBAL_REGION}

    # Participations: capacity, placements, windows, eligibility at registration.
    t = tournaments.set_index("id")
    counts = parts.groupby("tournament_id").size()
    assert (counts <= t.max_participants.loc[counts.index]).all()
    assert (counts == t.max_participants.loc[counts.index]).any()  # some are full
    p = parts.merge(t, left_on="tournament_id", right_index=True, suffixes=("", "_t"))
    assert p.placement.notna().eq(p.status == "completed").all()
    for _, group in p[p.status == "completed"].groupby("tournament_id"):
        assert sorted(group.placement.astype(int)) == list(range(1, len(group) + 1))
    assert (p.registered_at >= p.created_at).all()
    assert (p.registered_at <= p.registration_closes_at).all()
    assert (p.registered_at < NOW).all()
    joined = users.set_index("id").date_joined
    assert (p.registered_at >= joined.loc[p.user_id].to_numpy()).all()
    u = users.set_index("id")
    user_region = u.region.loc[p.user_id].to_numpy()
    assert ((p.region == user_region) | (p.region == "global")).all()
    skill = profiles.set_index(["user_id", "game_id"]).skill_rating
    s = skill.loc[list(zip(p.user_id, p.game_id, strict=True))].to_numpy()
    assert ((p.skill_min.isna() | (s >= p.skill_min)) & (p.skill_max.isna() | (s <= p.skill_max))
            ).all()
    recent = p.registered_at >= NOW - timedelta(days=14)
    assert recent.sum() > 0.02 * len(p)  # registrations keep flowing into the last 14 days
    assert parts.team_id.notna().any()

    # Teams: capacity, captains, leave/rejoin, recruiting mix.
    current = members[members.left_at.isna()]
    assert not current.duplicated(["team_id", "user_id"]).any()
    cur_counts = current.groupby("team_id").size().reindex(teams.id, fill_value=0)
    cap = teams.set_index("id").max_members
    assert (cur_counts <= cap).all() and (cur_counts == cap).any()
    assert cap.between(5, 10).all()
    assert set(zip(teams.id, teams.captain_id, strict=True)) <= set(
        zip(current.team_id, current.user_id, strict=True))
    left = members[members.left_at.notna()]
    assert len(left) and (left.left_at > left.joined_at).all() and (left.left_at < NOW).all()
    assert members.duplicated(["team_id", "user_id"]).any()  # someone left and rejoined
    assert (members.joined_at >= teams.set_index("id").created_at.loc[members.team_id].to_numpy()
            ).all()
    assert teams.is_recruiting.any() and not teams.is_recruiting.all()

    # Activities: one year, contract types plus an unknown one, JSON metadata.
    assert (activities.created_at < NOW).all()
    assert (activities.created_at >= NOW - timedelta(days=config.history_days)).all()
    assert set(activities.activity_type) - set(schema.KNOWN_ACTIVITY_TYPES) == {"stream_watched"}
    for text in activities.metadata.dropna().unique():
        json.loads(text)
    per_user = activities.groupby("user_id").size()
    assert per_user.max() > 8 * per_user.median()  # long tail of heavy users

    # The outbox backlog, including the rows the dead-letter path must handle.
    assert {"tournament_completed", "team_joined", "profile_completed"} <= set(events.event_type)
    assert set(events.event_type) - set(schema.ACHIEVEMENT_EVENT_TYPES)  # ignored types too
    assert (events.created_at <= NOW).all()
    assert events.user_id.isna().sum() >= 1
    known = events.user_id.dropna().astype(int)
    assert (~known.isin(uid)).sum() >= 1
    malformed = 0
    for text in events.payload.dropna():
        try:
            json.loads(text)
        except ValueError:
            malformed += 1
    assert malformed >= 1
    done_events = events[(events.event_type == "tournament_completed") & events.user_id.isin(uid)
                         & events.payload.str.endswith("}")]
    pairs = set(zip(parts.tournament_id, parts.user_id, strict=True))
    for _, ev in done_events.iterrows():
        tournament_id = json.loads(ev.payload)["tournament_id"]
        if ev.user_id in uid and (tournament_id, ev.user_id) in pairs:
            assert t.status.loc[tournament_id] == "completed"
    complete_users = set(completeness.user_id[completeness.percentage == 100])
    assert set(events.user_id[events.event_type == "profile_completed"]) == complete_users
    assert len(events) < 3 * len(users)  # a backlog that drains quickly


def test_tastes_drive_participations_and_teams() -> None:
    """The hidden tastes are real: choices concentrate far above chance."""
    config = SeedConfig(users=4000, seed=11, now=NOW)
    tables = dict(generate_tables(config))
    pop = _population(config, epoch_seconds(NOW))
    parts = tables["tournament_participants"]
    tour = tables["tournaments"].set_index("id")
    uidx = parts.user_id.to_numpy() - 1
    game = tour.game_id.loc[parts.tournament_id].to_numpy() - 1

    on_primary = (game == pop.top_games[uidx, 0]).mean()
    game_share = np.bincount(game, minlength=len(GAMES)) / len(game)
    chance = game_share[pop.top_games[uidx, 0]].mean()
    assert on_primary > 0.6 and on_primary > 2.5 * chance

    size = tour.max_participants.loc[parts.tournament_id].to_numpy()
    size_class = np.select([np.isin(size, c) for c in SIZE_CLASSES], [0, 1, 2], -1)
    follows_size = (size_class == pop.size_pref[uidx]).mean()
    base = (np.bincount(size_class, minlength=3) / len(size_class))[pop.size_pref[uidx]].mean()
    assert follows_size > 1.4 * base

    hour = tour.starts_at.loc[parts.tournament_id].dt.hour.to_numpy()
    slot = np.select([np.isin(hour, h) for h in SLOT_HOURS], [0, 1, 2, 3], -1)
    follows_slot = (slot == pop.slot_pref[uidx]).mean()
    base = (np.bincount(slot[slot >= 0], minlength=4) / (slot >= 0).sum())[
        pop.slot_pref[uidx]].mean()
    assert follows_slot > 1.4 * base

    # Co-play: a grouped user's registrations are shared with a friend far more often than
    # they would be with the same groups shuffled at random.
    frame = pd.DataFrame({"t": parts.tournament_id.to_numpy(), "u": uidx, "g": pop.group[uidx]})
    grouped = frame[frame.g >= 0].copy()

    def shared_with_friend(data: pd.DataFrame) -> float:
        per_tg = data.groupby(["t", "g"]).size().rename("n")
        return float(data.join(per_tg, on=["t", "g"]).n.gt(1).mean())

    observed = shared_with_friend(grouped)
    user_group = pd.Series(pop.group[pop.group >= 0], index=np.flatnonzero(pop.group >= 0))
    shuffled = pd.Series(np.random.default_rng(0).permutation(user_group.to_numpy()),
                         index=user_group.index)
    grouped["g"] = shuffled.loc[grouped.u].to_numpy()
    null = shared_with_friend(grouped)
    assert observed > 0.3 and observed > 5 * null

    # Team joins stay within the user's games and (almost always) region.
    members = tables["team_members"]
    teams = tables["teams"].set_index("id")
    m_user = members.user_id.to_numpy() - 1
    m_game = teams.game_id.loc[members.team_id].to_numpy() - 1
    assert pop.has_profile[m_user, m_game].all()
    same_region = (teams.region.loc[members.team_id].astype(str).to_numpy()
                   == np.asarray(["na", "eu", "sa", "asia", "oce", "mena", "global"])[
                       pop.region[m_user]])
    assert same_region.mean() > 0.9


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "recs_pipeline.cli", *args],
                          capture_output=True, text=True, timeout=120, check=False)


def test_cli_seed_end_to_end_on_sqlite(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The real console entry once (a subprocess), then the error paths in process (fast)."""
    url = f"sqlite:///{tmp_path / 'app.db'}"
    args = ["--database-url", url, "seed", "--users", "300", "--seed", "5", "--now",
            "2025-06-01", "--no-progress"]

    assert main(args) == 2  # no tables yet
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "init-db" in err[0]

    assert main(["--database-url", url, "init-db"]) == 0
    ok = run_cli(*args)
    assert ok.returncode == 0, ok.stderr
    assert "seeded 300 users" in ok.stdout and "tournament_participants" in ok.stdout

    assert main(args) == 2  # refuses to seed over existing data
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--replace" in err[0]

    assert main([*args, "--replace"]) == 0
    assert "seeded 300 users" in capsys.readouterr().out
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            count = conn.execute(sa.select(sa.func.count()).select_from(schema.users)).scalar()
        assert count == 300
    finally:
        engine.dispose()

    with pytest.raises(SystemExit) as exit_info:
        main(["--database-url", url, "seed", "--users", "5", "--now", "soon"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "ISO" in err[0]
