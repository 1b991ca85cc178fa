"""Recommendation assets, jobs, publish and schedule on SQLite and PostgreSQL (small data)."""

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
from recs_pipeline.bootstrap import init_app_database
from recs_pipeline.compute.scoring import Recommendations
from recs_pipeline.db import bulk_insert, make_engine
from recs_pipeline.defs.recommendations import assets as rec_assets
from recs_pipeline.defs.recommendations import quality as quality_assets
from recs_pipeline.defs.recommendations.jobs import refresh_user_recommendations_job
from recs_pipeline.defs.recommendations.publishing import KINDS, TEAMS, TOURNAMENTS, stage, swap
from recs_pipeline.defs.recommendations.reading import read_user_inputs
from recs_pipeline.defs.recommendations.schedules import build_nightly_recommendations_schedule
from recs_pipeline.resources import AppDatabase, InputQuarantinePolicy, RunClock
from recs_pipeline_tests.conftest import _reset_postgres_schema, postgres_url
from recs_pipeline_tests.recommendation_world import (
    AS_OF,
    EXPECTED_TEAMS,
    EXPECTED_TOURNAMENTS,
    NOW,
    expected_pairs,
    insert_world,
)


def _resources(app_db: AppDatabase) -> dict[str, object]:
    return {"app_db": app_db, "clock": RunClock(), "input_quarantine": InputQuarantinePolicy()}


RECOMMENDATION_ASSETS = dg.load_assets_from_modules([rec_assets, quality_assets])
ASSET_CONFIG = {"resources": {"clock": {"config": {"as_of": AS_OF, "backfill": True}}}}


def _materialize(app_db: AppDatabase, instance: dg.DagsterInstance) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        RECOMMENDATION_ASSETS, resources=_resources(app_db), run_config=ASSET_CONFIG,
        instance=instance, raise_on_error=False,
        selection=dg.AssetSelection.assets(*[a for d in RECOMMENDATION_ASSETS for a in d.keys]),
    )


def _published(engine: Engine, table: sa.Table) -> pd.DataFrame:
    with engine.connect() as conn:
        rows = conn.execute(sa.select(table).order_by(table.c.user_id, table.c.rank)).all()
    return pd.DataFrame([tuple(r) for r in rows], columns=[c.name for c in table.columns])


def _pairs(frame: pd.DataFrame, item: str) -> set[tuple[int, int]]:
    return set(zip(frame["user_id"].tolist(), frame[item].tolist(), strict=True))


def _check_evaluations(result: dg.ExecuteInProcessResult) -> dict[tuple[str, str], bool]:
    out = {}
    for event in result.all_events:
        if event.event_type_value == "ASSET_CHECK_EVALUATION":
            data = event.event_specific_data
            out[(data.asset_key.to_user_string(), data.check_name)] = data.passed
    return out


def test_nightly_publishes_exactly_the_eligible_rows(
    app_db: AppDatabase, engine: Engine, dagster_instance: dg.DagsterInstance
) -> None:
    insert_world(engine)
    result = _materialize(app_db, dagster_instance)
    assert result.success
    t = _published(engine, schema.tournament_recommendations)
    m = _published(engine, schema.team_recommendations)
    assert _pairs(t, "tournament_id") == expected_pairs(EXPECTED_TOURNAMENTS)
    assert _pairs(m, "team_id") == expected_pairs(EXPECTED_TEAMS)
    assert (t["generated_at"].astype(str).str.startswith("2030-01-01 12:00:00")).all()
    checks = _check_evaluations(result)
    # the 14 publish and quality checks, plus one input_quarantine check per reading asset
    assert len(checks) == 17 and all(checks.values())
    assert {k for k in checks if k[1] == "input_quarantine"} == {
        (a, "input_quarantine") for a in ("user_features", "tournament_candidates",
                                          "team_candidates")}
    # metadata: counts, coverage, preview without email
    mat = result.asset_materializations_for_node("publish_recommendations")
    meta = {m.asset_key.to_user_string(): m.metadata for m in mat}
    assert meta["tournament_recommendations"]["users_covered"].value == 3
    assert meta["team_recommendations"]["coverage_pct"].value == 100.0
    for md in meta.values():
        assert "@" not in md["preview"].value
    features = result.output_for_node("user_features").features
    assert sorted(features["user_id"]) == [1, 2, 3, 6, 7]  # no inactive, no profile-less user
    row = features.set_index("user_id").loc[1]
    # login 2 days ago, match 20 days ago; the unknown type and the 100-day-old login are not
    # counted
    assert (row["activities_7d"], row["activities_30d"], row["activities_90d"]) == (1, 2, 2)
    skipped = result.output_for_node("user_features").skipped
    assert skipped["unknown_activity_type:stream_watched"] == 1
    assert skipped["inactive_users"] == 1 and skipped["active_users_without_profile"] == 1
    # (completed/cancelled tournaments are filtered by status in SQL already)
    assert result.output_for_node("tournament_candidates").skipped == {
        "no_capacity": 1, "registration_closed": 1, "full": 1}


def test_published_tables_keep_contract_shape_after_swaps(
    app_db: AppDatabase, engine: Engine, dagster_instance: dg.DagsterInstance
) -> None:
    insert_world(engine)
    for _ in range(2):
        assert _materialize(app_db, dagster_instance).success
    inspector = sa.inspect(engine)
    assert not inspector.has_table("tournament_recommendations__staging")
    for table, item in ((schema.tournament_recommendations, "tournament_id"),
                        (schema.team_recommendations, "team_id")):
        cols = inspector.get_columns(table.name)
        assert [c["name"] for c in cols] == [
            "user_id", item, "rank", "score", "reason", "model_version", "generated_at"]
        assert all(not c["nullable"] for c in cols)
        assert all(c.get("default") is None for c in cols)
        assert inspector.get_pk_constraint(table.name)["constrained_columns"] == [
            "user_id", "rank"]
        uniques = {tuple(u["column_names"]): u["name"]
                   for u in inspector.get_unique_constraints(table.name)}
        assert uniques == {("user_id", item): f"uq_{table.name}_user_{item}"}
        indexes = {i["name"]: i["column_names"] for i in inspector.get_indexes(table.name)}
        assert indexes[f"ix_{table.name}_user_id"] == ["user_id"]


def test_empty_database_publishes_empty_tables(
    app_db: AppDatabase, engine: Engine, dagster_instance: dg.DagsterInstance
) -> None:
    result = _materialize(app_db, dagster_instance)
    assert result.success
    assert _published(engine, schema.tournament_recommendations).empty
    assert _published(engine, schema.team_recommendations).empty


def test_failed_check_leaves_published_rows_and_fails_with_reason(
    app_db: AppDatabase, engine: Engine, dagster_instance: dg.DagsterInstance,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    insert_world(engine)
    assert _materialize(app_db, dagster_instance).success
    before = _published(engine, schema.tournament_recommendations)
    real_recommend = rec_assets.recommend_with

    def broken(*args, **kwargs) -> Recommendations:  # type: ignore[no-untyped-def]
        recs = real_recommend(*args, **kwargs)
        bad = recs.tournaments.iloc[:1].assign(tournament_id=105, rank=99)  # closed tournament
        recs.tournaments = pd.concat([recs.tournaments, bad], ignore_index=True)
        return recs

    monkeypatch.setattr(rec_assets, "recommend_with", broken)
    result = _materialize(app_db, dagster_instance)
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    message = failure.event_specific_data.error.message + str(
        failure.event_specific_data.user_failure_data)
    assert "tournaments/eligibility" in message and "published tables unchanged" in message
    checks = _check_evaluations(result)
    assert checks[("tournament_recommendations", "eligibility")] is False
    assert checks[("tournament_recommendations", "ranks_contiguous")] is False
    assert checks[("team_recommendations", "eligibility")] is True
    pd.testing.assert_frame_equal(_published(engine, schema.tournament_recommendations), before)
    inspector = sa.inspect(engine)  # the failed publish cleaned up after itself
    assert not inspector.has_table("tournament_recommendations__staging")
    assert not inspector.has_table("team_recommendations__staging")


def test_one_user_refresh_replaces_only_that_user(
    app_db: AppDatabase, engine: Engine, dagster_instance: dg.DagsterInstance
) -> None:
    insert_world(engine)
    assert _materialize(app_db, dagster_instance).success
    before_t = _published(engine, schema.tournament_recommendations)
    before_m = _published(engine, schema.team_recommendations)
    with engine.begin() as conn:  # user 1 registers for 102 and leaves nothing else changed
        bulk_insert(conn, schema.tournament_participants, pd.DataFrame({
            "id": [100], "tournament_id": [102], "user_id": [1], "team_id": [None],
            "registered_at": [NOW], "placement": [None]}).astype(
                {"team_id": "Int64", "placement": "Int64"}))
    result = refresh_user_recommendations_job.execute_in_process(
        run_config={**ASSET_CONFIG, "ops": {"refresh_user_recommendations": {"config": {
            "user_id": 1}}}},
        resources=_resources(app_db), instance=dagster_instance,
    )
    assert result.success
    after_t = _published(engine, schema.tournament_recommendations)
    assert _pairs(after_t[after_t.user_id == 1], "tournament_id") == {(1, 100)}
    pd.testing.assert_frame_equal(after_t[after_t.user_id != 1].reset_index(drop=True),
                                  before_t[before_t.user_id != 1].reset_index(drop=True))
    after_m = _published(engine, schema.team_recommendations)
    assert _pairs(after_m[after_m.user_id == 1], "team_id") == {(1, 7)}
    pd.testing.assert_frame_equal(after_m[after_m.user_id != 1].reset_index(drop=True),
                                  before_m[before_m.user_id != 1].reset_index(drop=True))


@pytest.mark.parametrize("user_id", [999, 4])  # unknown, inactive
def test_one_user_refresh_unknown_or_inactive_user_removes_rows(
    user_id: int, app_db: AppDatabase, engine: Engine, dagster_instance: dg.DagsterInstance
) -> None:
    insert_world(engine)
    with engine.begin() as conn:  # a stale row from an earlier refresh
        bulk_insert(conn, schema.tournament_recommendations, pd.DataFrame({
            "user_id": [user_id], "tournament_id": [100], "rank": [1], "score": [0.5],
            "reason": ["old"], "model_version": ["old"], "generated_at": [NOW]}))
    result = refresh_user_recommendations_job.execute_in_process(
        run_config={**ASSET_CONFIG, "ops": {"refresh_user_recommendations": {"config": {
            "user_id": user_id}}}},
        resources=_resources(app_db), instance=dagster_instance,
    )
    assert result.success
    assert _published(engine, schema.tournament_recommendations).empty
    outputs = [e for e in result.all_events if e.event_type_value == "STEP_OUTPUT"]
    meta = outputs[0].event_specific_data.metadata
    assert meta["status"].value == "not_eligible"
    assert meta["tournaments_deleted"].value == 1 and meta["tournaments_written"].value == 0


def test_activity_windows_are_exact_on_both_timestamp_forms(engine: Engine, backend: str) -> None:
    insert_world(engine)
    cutoff = NOW - timedelta(days=7)
    with engine.begin() as conn:
        rows = [(10, cutoff), (11, cutoff - timedelta(microseconds=500_000))]
        for ident, ts in rows:
            # SQLite: the app may store the whole-second form without a fraction.
            value: object = ts.strftime("%Y-%m-%d %H:%M:%S") if (
                backend == "sqlite" and ts.microsecond == 0) else ts
            conn.execute(sa.text(
                "INSERT INTO activities (id, user_id, activity_type, created_at) "
                "VALUES (:id, 2, 'login', :ts)"), {"id": ident, "ts": value})
    with engine.connect() as conn:
        counts = read_user_inputs(conn, NOW).activity_counts.set_index("user_id")
    # user 2: the exact-cutoff login counts for 7 days, the one half a second earlier does not;
    # team_joined 60 days ago counts for 90 days only.
    assert (counts.loc[2, "activities_7d"], counts.loc[2, "activities_30d"],
            counts.loc[2, "activities_90d"]) == (1, 2, 3)


def test_schedule_runs_nightly_job_at_two_in_configured_zone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RECS_SCHEDULE_TIMEZONE", "Europe/Paris")
    schedule = build_nightly_recommendations_schedule()
    assert schedule.cron_schedule == "0 2 * * *"
    assert schedule.execution_timezone == "Europe/Paris"
    assert schedule.job_name == "nightly_recommendations_job"
    context = dg.build_schedule_context(scheduled_execution_time=datetime(2030, 1, 1, 1, 0))
    requests = schedule.evaluate_tick(context).run_requests
    assert requests is not None and len(requests) == 1


def test_concurrent_reader_never_sees_partial_table(postgres_database: str) -> None:
    """PostgreSQL: a reader counting rows while refreshes swap always sees a full table."""
    url = postgres_url(postgres_database)
    _reset_postgres_schema(url)
    engine = make_engine(url)
    init_app_database(engine)
    n = 20_000

    def frame(version: str) -> pd.DataFrame:
        users = [u for u in range(n // 10) for _ in range(10)]
        return pd.DataFrame({
            "user_id": users, "tournament_id": list(range(n)),
            "rank": [r for _ in range(n // 10) for r in range(1, 11)],
            "score": [1.0 - r / 100 for _ in range(n // 10) for r in range(10)],
            "reason": [f"reason {version}"] * n, "model_version": [version] * n,
            "generated_at": [NOW] * n,
        })

    empty_teams = frame("x").iloc[0:0].rename(columns={"tournament_id": "team_id"})
    stage(engine, TOURNAMENTS, frame("v0"))
    stage(engine, TEAMS, empty_teams)
    swap(engine, KINDS)
    seen: list[tuple[int, int]] = []
    errors: list[str] = []
    stop = threading.Event()

    def reader() -> None:
        reader_engine = make_engine(url)
        while not stop.is_set():
            try:
                with reader_engine.connect() as conn:
                    seen.append(tuple(conn.execute(sa.text(
                        "SELECT count(*), count(DISTINCT model_version) "
                        "FROM tournament_recommendations")).one()))
            except Exception as exc:
                errors.append(str(exc))
        reader_engine.dispose()

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for i in range(1, 6):
            stage(engine, TOURNAMENTS, frame(f"v{i}"))
            stage(engine, TEAMS, empty_teams)
            swap(engine, KINDS)
            time.sleep(0.05)
    finally:
        stop.set()
        thread.join()
        engine.dispose()
    assert not errors
    assert len(seen) > 5
    assert set(seen) == {(n, 1)}  # always complete, never mixed versions


def test_a_published_table_cannot_be_materialized_alone(
    app_db: AppDatabase, engine: Engine, dagster_instance: dg.DagsterInstance
) -> None:
    """Selecting only the published tables would reuse the stored inputs of an earlier run and
    skip tonight's evaluation and gate: the step fails, not retried, and publishes nothing."""
    insert_world(engine)
    assert _materialize(app_db, dagster_instance).success
    before = _published(engine, schema.tournament_recommendations)
    with engine.begin() as conn:  # what the app did since: tonight's inputs differ
        conn.execute(sa.delete(schema.tournament_recommendations))
    alone = dg.materialize(
        RECOMMENDATION_ASSETS, resources=_resources(app_db), run_config=ASSET_CONFIG,
        instance=dagster_instance, raise_on_error=False,
        selection=[dg.AssetKey("tournament_recommendations"), dg.AssetKey("team_recommendations")],
    )
    assert not alone.success
    [failure] = [e for e in alone.all_events if e.is_step_failure]
    message = failure.step_failure_data.error.message
    assert "nightly_recommendations_job" in message and "recommendation_quality" in message
    assert not any(e.event_type_value == "STEP_UP_FOR_RETRY" for e in alone.all_events)
    assert _published(engine, schema.tournament_recommendations).empty
    assert not before.empty
