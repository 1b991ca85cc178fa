"""Intraday upkeep on both backends: after a publish, rows that stopped being eligible are
removed and the lists refilled from the same refresh's reserve, touching no other user."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta

import dagster as dg
import pandas as pd
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from recs_pipeline import schema
from recs_pipeline.compute.scoring import ScoringParams, recommend
from recs_pipeline.db import read_frame
from recs_pipeline.defs.recommendations import upkeep
from recs_pipeline.defs.recommendations.publishing import (
    TEAMS,
    TOURNAMENTS,
    RecommendationKind,
)
from recs_pipeline.defs.recommendations.reading import (
    build_user_feature_set,
    load_team_candidates,
    load_tournament_candidates,
    read_user_inputs,
)
from recs_pipeline.defs.recommendations.run import stage_check_publish
from recs_pipeline.defs.recommendations.upkeep import ineligible_now
from recs_pipeline.defs.recommendations.upkeep_job import recommendation_upkeep_job
from recs_pipeline.devtools.seed import SeedSummary, write_tables
from recs_pipeline.devtools.worlds import generate_world
from recs_pipeline.resources import AppDatabase, RunClock

NOW = datetime(2026, 6, 1)
LATER = NOW + timedelta(minutes=1)  # nothing else closes in between
USERS = 600
TOP_K = 3


def _publish(engine: Engine) -> None:
    write_tables(engine, generate_world("friend_cliques", USERS, 5, NOW),
                 SeedSummary(users=USERS, seed=5, now=NOW), progress=False)
    with engine.connect() as conn:
        tc, mc = load_tournament_candidates(conn, NOW), load_team_candidates(conn, NOW)
        users = build_user_feature_set(read_user_inputs(conn, NOW), NOW)
    recs = recommend(users, tc, mc, ScoringParams(top_k=TOP_K), NOW, reserve=5)
    outcome = stage_check_publish(engine, recs, users, tc, mc, top_k=TOP_K, now=NOW)
    assert outcome.published, outcome.failure_message()


def _rows(engine: Engine, table: sa.Table) -> pd.DataFrame:
    with engine.connect() as conn:
        return read_frame(conn, sa.select(table).order_by(table.c.user_id, table.c.rank))


def _upkeep(app_db: AppDatabase, instance: dg.DagsterInstance, at: datetime = LATER, *,
            request_short_list_refresh: bool = False) -> dg.ExecuteInProcessResult:
    return recommendation_upkeep_job.execute_in_process(
        run_config={"resources": {"clock": {"config": {"as_of": at.isoformat(),
                                                        "backfill": True}}},
                    "ops": {"upkeep_recommendations": {"config": {
                        "top_k": TOP_K,
                        "request_short_list_refresh": request_short_list_refresh}}}},
        resources={"app_db": app_db, "clock": RunClock()}, instance=instance)


def _join(conn: sa.Connection, kind: RecommendationKind, user: int, item: int, at: datetime
          ) -> None:
    """The user registers for the tournament / joins the team at `at`."""
    if kind is TOURNAMENTS:
        table, values = schema.tournament_participants, {"tournament_id": item,
                                                         "registered_at": at}
    else:
        table, values = schema.team_members, {"team_id": item, "joined_at": at}
    next_id = conn.execute(sa.select(sa.func.max(table.c.id))).scalar_one() + 1
    conn.execute(table.insert().values(id=next_id, user_id=user, **values))


def _top1(published: pd.DataFrame, user: int, item_column: str) -> int:
    return int(published.loc[(published["user_id"] == user) & (published["rank"] == 1),
                             item_column].iloc[0])


def _ranks_ok(frame: pd.DataFrame) -> None:
    for _, g in frame.groupby("user_id"):
        assert g["rank"].tolist() == list(range(1, len(g) + 1))
        assert g["score"].is_monotonic_decreasing


def _invalidate(engine: Engine, t_before: pd.DataFrame, m_before: pd.DataFrame
                ) -> tuple[int, int, pd.Series, int]:
    """Close registration on the most recommended tournament, fill the next one, register a user
    for their top-1, stop the most recommended team recruiting."""
    top1 = t_before[t_before["rank"] == 1]
    popular = t_before["tournament_id"].value_counts().index.tolist()
    closed, filled = int(popular[0]), int(popular[1])
    registrant = top1[~top1["tournament_id"].isin([closed, filled])].iloc[0]
    stopped = int(m_before["team_id"].value_counts().index[0])
    t, tp, m = schema.tournaments, schema.tournament_participants, schema.teams
    with engine.begin() as conn:
        conn.execute(t.update().where(t.c.id == closed).values(
            registration_closes_at=NOW + timedelta(seconds=30)))
        count = conn.execute(sa.select(sa.func.count()).where(tp.c.tournament_id == filled)
                             ).scalar_one()
        conn.execute(t.update().where(t.c.id == filled).values(max_participants=count))
        _join(conn, TOURNAMENTS, int(registrant["user_id"]), int(registrant["tournament_id"]),
              NOW + timedelta(seconds=20))
        conn.execute(m.update().where(m.c.id == stopped).values(is_recruiting=False))
    return closed, filled, registrant, stopped


def test_upkeep_removes_ineligible_rows_and_backfills_in_model_order(
    app_db: AppDatabase, engine: Engine, dagster_instance: dg.DagsterInstance
) -> None:
    _publish(engine)
    t_before = _rows(engine, schema.tournament_recommendations)
    m_before = _rows(engine, schema.team_recommendations)
    t_reserve = _rows(engine, schema.tournament_recommendation_reserve)
    assert len(t_reserve) > 0
    closed, filled, registrant, stopped = _invalidate(engine, t_before, m_before)
    assert ineligible_now(engine, TOURNAMENTS, LATER)[1] > 0

    result = _upkeep(app_db, dagster_instance)
    assert result.success
    assert ineligible_now(engine, TOURNAMENTS, LATER)[1] == 0
    assert ineligible_now(engine, TEAMS, LATER)[1] == 0

    t_after = _rows(engine, schema.tournament_recommendations)
    _ranks_ok(t_after)
    _ranks_ok(_rows(engine, schema.team_recommendations))
    stale = (t_before["tournament_id"].isin([closed, filled])
             | ((t_before["user_id"] == registrant["user_id"])
                & (t_before["tournament_id"] == registrant["tournament_id"])))
    touched = set(t_before.loc[stale, "user_id"])
    cols = ["user_id", "tournament_id", "rank", "score"]
    untouched_before = t_before[~t_before["user_id"].isin(touched)][cols].reset_index(drop=True)
    untouched_after = t_after[~t_after["user_id"].isin(touched)][cols].reset_index(drop=True)
    pd.testing.assert_frame_equal(untouched_before, untouched_after)
    # Each touched user: kept rows in order, then the reserve's best still-eligible rows.
    backfilled = 0
    for user in touched:
        kept = t_before[(t_before["user_id"] == user) & ~stale]["tournament_id"].tolist()
        spare = t_reserve[(t_reserve["user_id"] == user)
                          & ~t_reserve["tournament_id"].isin([closed, filled])]
        expected = (kept + spare["tournament_id"].tolist())[:TOP_K]
        got = t_after[t_after["user_id"] == user]["tournament_id"].tolist()
        assert got == expected
        backfilled += len(got) - len(kept)
    assert backfilled > 0
    observed = [e.asset_observation_data.asset_observation for e in result.all_events
                if e.event_type_value == "ASSET_OBSERVATION"]
    meta = {o.asset_key.path[-1]: o.metadata for o in observed}
    t_meta = meta["tournament_recommendations"]
    assert t_meta["rows_removed"].value == int(stale.sum())
    assert t_meta["removed_registered"].value == 1
    assert t_meta["rows_backfilled"].value == backfilled
    assert t_meta["users_touched"].value == len(touched)
    assert meta["team_recommendations"]["removed_not_recruiting"].value == int(
        (m_before["team_id"] == stopped).sum())

    # Idle: nothing changed since, nothing is rewritten.
    again = _upkeep(app_db, dagster_instance)
    assert again.success
    pd.testing.assert_frame_equal(_rows(engine, schema.tournament_recommendations), t_after)


def test_a_concurrent_reader_never_sees_a_gap_or_an_empty_list(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    _publish(engine)
    t_before = _rows(engine, schema.tournament_recommendations)
    closed, filled, registrant, _ = _invalidate(
        engine, t_before, _rows(engine, schema.team_recommendations))
    touched = sorted(set(t_before.loc[t_before["tournament_id"].isin([closed, filled]),
                                      "user_id"]) | {int(registrant["user_id"])})
    # Many small write transactions, each holding its rows deleted for a while before the
    # refilled tail goes in: a reader outside the transaction must still never see the hole.
    monkeypatch.setattr(upkeep, "WRITE_BATCH_USERS", 3)
    real_insert = upkeep.bulk_insert

    def slow_insert(conn: sa.Connection, table: sa.Table, frame: pd.DataFrame) -> int:
        time.sleep(0.02)
        return real_insert(conn, table, frame)

    monkeypatch.setattr(upkeep, "bulk_insert", slow_insert)
    t = schema.tournament_recommendations
    seen: list[str] = []
    reads = 0
    done = threading.Event()

    def read_lists() -> None:
        nonlocal reads
        while not done.is_set():
            with engine.connect() as conn:
                frame = read_frame(conn, sa.select(t.c.user_id, t.c.rank).where(
                    t.c.user_id.in_(touched)).order_by(t.c.user_id, t.c.rank))
            reads += 1
            ranks = frame.groupby("user_id")["rank"].apply(list)
            seen.extend(f"user {u} empty" for u in touched if u not in ranks.index)
            seen.extend(f"user {u} ranks {r}" for u, r in ranks.items()
                        if r != list(range(1, len(r) + 1)))

    reader = threading.Thread(target=read_lists)
    reader.start()
    try:
        outcome = upkeep.run_upkeep(engine, LATER, TOP_K, request_short_list_refresh=False)
    finally:
        done.set()
        reader.join(timeout=60)
    assert outcome.kinds["tournaments"].users_touched == len(touched)
    after = _rows(engine, t)
    assert set(after.loc[after["user_id"].isin(touched), "user_id"]) == set(touched)
    assert ineligible_now(engine, TOURNAMENTS, LATER)[1] == 0
    assert reads >= 5, f"the reader only read {reads} times during the upkeep"
    assert seen == []


def test_a_reserve_item_that_left_in_an_earlier_run_is_never_promoted(
    app_db: AppDatabase, engine: Engine, dagster_instance: dg.DagsterInstance
) -> None:
    _publish(engine)
    reserve = _rows(engine, schema.team_recommendation_reserve)
    first_spare = reserve[reserve["rank"] == TOP_K + 1]
    stopped = int(first_spare["team_id"].value_counts().index[0])
    user = int(first_spare.loc[first_spare["team_id"] == stopped, "user_id"].iloc[0])
    m = schema.teams
    with engine.begin() as conn:
        conn.execute(m.update().where(m.c.id == stopped).values(is_recruiting=False))
    assert _upkeep(app_db, dagster_instance).success  # removes `stopped`'s rows, untracks it
    spare = _rows(engine, schema.team_recommendation_reserve)
    assert stopped in spare.loc[spare["user_id"] == user, "team_id"].tolist()  # user untouched
    published = _rows(engine, schema.team_recommendations)
    top1 = _top1(published, user, "team_id")
    with engine.begin() as conn:  # the user joins their top-1 team: one slot to refill
        _join(conn, TEAMS, user, top1, LATER + timedelta(seconds=10))
    later = LATER + timedelta(minutes=1)
    assert _upkeep(app_db, dagster_instance, later).success
    after = _rows(engine, schema.team_recommendations)
    mine = after.loc[after["user_id"] == user, "team_id"].tolist()
    assert top1 not in mine and stopped not in mine
    assert len(mine) == TOP_K
    assert ineligible_now(engine, TEAMS, later)[1] == 0


def test_a_reserve_item_the_user_registered_for_is_never_promoted(
    app_db: AppDatabase, engine: Engine, dagster_instance: dg.DagsterInstance
) -> None:
    _publish(engine)
    reserve = _rows(engine, schema.tournament_recommendation_reserve)
    published = _rows(engine, schema.tournament_recommendations)
    spare = reserve[reserve["rank"] == TOP_K + 1].iloc[0]
    user, registered = int(spare["user_id"]), int(spare["tournament_id"])
    top1 = _top1(published, user, "tournament_id")
    t = schema.tournaments
    with engine.begin() as conn:  # the user registers for their best spare; their top-1 closes
        _join(conn, TOURNAMENTS, user, registered, NOW + timedelta(seconds=20))
        conn.execute(t.update().where(t.c.id == top1).values(
            registration_closes_at=NOW + timedelta(seconds=30)))
    assert _upkeep(app_db, dagster_instance).success
    mine = _rows(engine, schema.tournament_recommendations)
    mine = mine.loc[mine["user_id"] == user, "tournament_id"].tolist()
    assert top1 not in mine and registered not in mine
    left = _rows(engine, schema.tournament_recommendation_reserve)
    assert registered not in left.loc[left["user_id"] == user, "tournament_id"].tolist()
    kept = [i for i in published.loc[published["user_id"] == user, "tournament_id"]
            if i != top1]
    spares = [i for i in reserve.loc[reserve["user_id"] == user, "tournament_id"]
              if i != registered]
    assert mine == kept + spares[:1]  # the next spare after the registered one


def test_a_list_that_fell_below_k_is_queued_for_the_on_demand_refresh(
    app_db: AppDatabase, engine: Engine, dagster_instance: dg.DagsterInstance
) -> None:
    _publish(engine)
    published = _rows(engine, schema.tournament_recommendations)
    reserve = _rows(engine, schema.tournament_recommendation_reserve)
    user = int(published["user_id"].iloc[0])
    theirs = sorted(set(published.loc[published["user_id"] == user, "tournament_id"])
                    | set(reserve.loc[reserve["user_id"] == user, "tournament_id"]))
    t = schema.tournaments
    with engine.begin() as conn:  # everything the user was shown or kept in reserve closes
        conn.execute(t.update().where(t.c.id.in_(theirs)).values(
            registration_closes_at=NOW + timedelta(seconds=30)))
    result = _upkeep(app_db, dagster_instance, request_short_list_refresh=True)
    assert result.success
    after = _rows(engine, schema.tournament_recommendations)
    assert user not in set(after["user_id"])  # nothing of theirs was left to promote
    requests = schema.recommendation_refresh_requests
    with engine.connect() as conn:
        queued = list(conn.execute(sa.select(requests.c.user_id)).scalars())
    assert user in queued and len(queued) == len(set(queued))
    [output] = [e for e in result.all_events if e.event_type_value == "STEP_OUTPUT"]
    step_meta = output.event_specific_data.metadata
    assert step_meta["users_refresh_requested"].value == len(queued)
    assert step_meta["users_short"].value == len(queued)  # none was pending before
