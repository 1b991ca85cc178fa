"""The app's refresh requests: batched into few runs, each request served once, none lost."""

from __future__ import annotations

import dagster as dg
import pytest
import sqlalchemy as sa
from dagster._core.storage.tags import RUN_KEY_TAG, SENSOR_NAME_TAG
from sqlalchemy.engine import Engine

from recs_pipeline import schema
from recs_pipeline.bootstrap import ensure_pipeline_tables
from recs_pipeline.defs.recommendations import run as run_module
from recs_pipeline.defs.recommendations.jobs import refresh_user_recommendations_job
from recs_pipeline.defs.recommendations.refresh_requests import pending_count, request_refresh
from recs_pipeline.defs.recommendations.sensors import SENSOR_NAME, user_refresh_request_sensor
from recs_pipeline.resources import AppDatabase, RunClock
from recs_pipeline_tests.recommendation_world import (
    AS_OF,
    EXPECTED_TEAMS,
    EXPECTED_TOURNAMENTS,
    expected_pairs,
    insert_world,
)

CLOCK = {"resources": {"clock": {"config": {"as_of": AS_OF, "backfill": True}}}}
ELIGIBLE = sorted(set(EXPECTED_TOURNAMENTS) | set(EXPECTED_TEAMS))


def _tick(instance: dg.DagsterInstance, app_db: AppDatabase) -> dg.SensorResult:
    with dg.build_sensor_context(instance=instance, resources={"app_db": app_db}) as context:
        return user_refresh_request_sensor(context)


def _launch(instance: dg.DagsterInstance, app_db: AppDatabase,
            request: dg.RunRequest) -> dg.ExecuteInProcessResult:
    """What the daemon does with the request (tags as the daemon sets them)."""
    return refresh_user_recommendations_job.execute_in_process(
        run_config={**CLOCK, **request.run_config},
        resources={"app_db": app_db, "clock": RunClock()}, instance=instance,
        tags={**request.tags, RUN_KEY_TAG: request.run_key, SENSOR_NAME_TAG: SENSOR_NAME},
        raise_on_error=False)


def _pairs(engine: Engine, table: sa.Table, item: str) -> set[tuple[int, int]]:
    with engine.connect() as conn:
        return {(int(u), int(i)) for u, i in conn.execute(
            sa.select(table.c.user_id, table.c[item]))}


def _request(engine: Engine, user_ids: list[int]) -> None:
    ensure_pipeline_tables(engine)
    with engine.begin() as conn:
        request_refresh(conn, user_ids)


def test_a_thousand_requests_become_one_run_that_serves_them_all(
    app_db: AppDatabase, engine: Engine, dagster_instance: dg.DagsterInstance,
) -> None:
    insert_world(engine)
    users = [1, 2, 3, 4, 5, 6, 7, 999]  # 4 is inactive, 999 unknown: rows removed, not an error
    _request(engine, [users[i % len(users)] for i in range(1000)])
    first = _tick(dagster_instance, app_db)
    [request] = first.run_requests or []
    assert request.run_config["ops"]["refresh_user_recommendations"]["config"]["user_ids"] == (
        sorted(users))
    result = _launch(dagster_instance, app_db, request)
    assert result.success
    assert _pairs(engine, schema.tournament_recommendations, "tournament_id") == expected_pairs(
        EXPECTED_TOURNAMENTS)
    assert _pairs(engine, schema.team_recommendations, "team_id") == expected_pairs(
        EXPECTED_TEAMS)
    [output] = [e for e in result.all_events if e.event_type_value == "STEP_OUTPUT"]
    meta = output.event_specific_data.metadata
    assert meta["refresh_requests_served"].value == 1000
    assert meta["users_refreshed"].value == len(ELIGIBLE)
    assert meta["users_not_eligible"].value == len(users) - len(ELIGIBLE)
    with engine.connect() as conn:
        assert pending_count(conn) == 0
    assert _tick(dagster_instance, app_db).run_requests == []  # nothing left to do


def test_a_request_that_arrives_during_a_run_waits_for_the_next_one(
    app_db: AppDatabase, engine: Engine, dagster_instance: dg.DagsterInstance,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The run deletes only the requests it read before computing: one that commits while it
    computes (its data may be newer than what the run read) stays pending."""
    insert_world(engine)
    _request(engine, [1, 2])
    real_load = run_module.load_tournament_candidates

    def load_while_the_app_asks_again(conn, now):  # type: ignore[no-untyped-def]
        _request(engine, [1])  # committed by the app mid-run, after the claim
        return real_load(conn, now)

    monkeypatch.setattr(run_module, "load_tournament_candidates", load_while_the_app_asks_again)
    [request] = _tick(dagster_instance, app_db).run_requests or []
    assert _launch(dagster_instance, app_db, request).success
    monkeypatch.undo()
    with engine.connect() as conn:
        left = conn.execute(sa.select(schema.recommendation_refresh_requests.c.user_id)).all()
    assert [tuple(r) for r in left] == [(1,)]
    [again] = _tick(dagster_instance, app_db).run_requests or []
    assert again.run_config["ops"]["refresh_user_recommendations"]["config"]["user_ids"] == [1]


def test_one_batch_at_a_time_and_a_failed_batch_is_requested_again(
    app_db: AppDatabase, engine: Engine, dagster_instance: dg.DagsterInstance,
) -> None:
    insert_world(engine)
    _request(engine, [1, 2, 3])
    [request] = _tick(dagster_instance, app_db).run_requests or []
    # While the sensor's run is unfinished, nothing more is requested.
    run = dagster_instance.create_run_for_job(
        refresh_user_recommendations_job, run_config=request.run_config,
        tags={**request.tags, SENSOR_NAME_TAG: SENSOR_NAME}, status=dg.DagsterRunStatus.STARTED)
    busy = _tick(dagster_instance, app_db)
    assert busy.run_requests == [] and busy.skip_reason is not None
    assert "unfinished" in busy.skip_reason.skip_message
    # It fails (a worker crash): its requests are still pending, and get a new run key.
    dagster_instance.report_run_failed(run)
    with engine.connect() as conn:
        assert pending_count(conn) == 3
    [retry] = _tick(dagster_instance, app_db).run_requests or []
    assert retry.run_key == f"{request.run_key}-r1"
    assert retry.run_config == request.run_config
    assert _launch(dagster_instance, app_db, retry).success
    with engine.connect() as conn:
        assert pending_count(conn) == 0


def test_a_hand_launched_refresh_takes_one_user_or_a_list(
    app_db: AppDatabase, engine: Engine, dagster_instance: dg.DagsterInstance,
) -> None:
    insert_world(engine)
    for config in ({"user_id": 6}, {"user_ids": [1, 7]}, {"user_id": 1, "user_ids": [7, 1]}):
        result = refresh_user_recommendations_job.execute_in_process(
            run_config={**CLOCK, "ops": {"refresh_user_recommendations": {"config": config}}},
            resources={"app_db": app_db, "clock": RunClock()}, instance=dagster_instance)
        assert result.success
    assert _pairs(engine, schema.tournament_recommendations, "tournament_id") == {
        (u, i) for u, i in expected_pairs(EXPECTED_TOURNAMENTS) if u in (1, 6, 7)}
    for bad, says in (({}, "give user_id or user_ids"), ({"user_ids": [0]}, "1.."),
                      ({"user_ids": list(range(1, 1002))}, "1000")):
        failed = refresh_user_recommendations_job.execute_in_process(
            run_config={**CLOCK, "ops": {"refresh_user_recommendations": {"config": bad}}},
            resources={"app_db": app_db, "clock": RunClock()}, instance=dagster_instance,
            raise_on_error=False)
        [failure] = [e for e in failed.all_events if e.is_step_failure]
        assert says in failure.step_failure_data.error.message, bad
        assert not any(e.event_type_value == "STEP_UP_FOR_RETRY" for e in failed.all_events)
