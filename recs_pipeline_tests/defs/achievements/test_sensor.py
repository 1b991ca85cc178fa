"""achievement_events_sensor with `build_sensor_context` on SQLite and PostgreSQL."""

from __future__ import annotations

import math
import threading

import dagster as dg
import pandas as pd
import pytest
import sqlalchemy as sa
from dagster._core.storage.tags import RUN_KEY_TAG
from sqlalchemy.engine import Engine

from recs_pipeline import schema
from recs_pipeline.db import bulk_insert
from recs_pipeline.defs.achievements import sensor as sensor_module
from recs_pipeline.defs.achievements.checks import outbox_checks
from recs_pipeline.defs.achievements.job import achievements_job
from recs_pipeline.defs.achievements.sensor import (
    AchievementSensorSettings,
    CursorState,
    build_achievement_events_sensor,
    plan_tick,
)
from recs_pipeline.defs.app_tables import APP_TABLE_SPECS, USER_ACHIEVEMENTS_KEY
from recs_pipeline.resources import AppDatabase
from recs_pipeline_tests import achievements_data as data

# ids of the world's achievement-type events (7 is a login, 13 an unknown type)
OUR_EVENTS = [1, 2, 3, 4, 5, 6, 8, 9, 10, 11, 12, 14]
FAST = AchievementSensorSettings(batch_size=5, settle_seconds=0, lookback_ids=5)


def _tick(
    sensor: dg.SensorDefinition, instance: dg.DagsterInstance, app_db: AppDatabase,
    cursor: str | None,
) -> dg.SensorResult:
    with dg.build_sensor_context(instance=instance, cursor=cursor,
                                 resources={"app_db": app_db}) as context:
        result = sensor(context)
    assert isinstance(result, dg.SensorResult)
    return result


def _covered(requests: list[dg.RunRequest]) -> list[list[list[int]]]:
    return [r.run_config["ops"]["load_events"]["config"]["event_id_ranges"] for r in requests]


def _launch(instance: dg.DagsterInstance, app_db: AppDatabase, request: dg.RunRequest) -> None:
    """What the daemon does with a request, in process: the run carries the key and tags."""
    result = achievements_job.execute_in_process(
        run_config=request.run_config, resources={"app_db": app_db}, instance=instance,
        tags={**request.tags, RUN_KEY_TAG: request.run_key})
    assert result.success


def test_batches_keys_cursor_and_in_flight(
    app_db: AppDatabase, engine: Engine, dagster_instance: dg.DagsterInstance
) -> None:
    data.build_world(engine)
    sensor = build_achievement_events_sensor(FAST)
    first = _tick(sensor, dagster_instance, app_db, None)
    requests = first.run_requests or []
    assert len(requests) == math.ceil(len(OUR_EVENTS) / 5) == 3
    assert _covered(requests) == [[[1, 5]], [[6, 11]], [[12, 14]]]
    assert [r.tags["recs/achievements_event_count"] for r in requests] == ["5", "5", "2"]
    # orphaned runs are failed by run monitoring after the configured runtime
    assert {r.tags["dagster/max_runtime"] for r in requests} == {str(FAST.max_run_seconds)}
    # deterministic: the same cursor plans the same runs, keys and config
    again = _tick(sensor, dagster_instance, app_db, None).run_requests or []
    assert [r.run_key for r in again] == [r.run_key for r in requests]
    assert requests[0].run_key.startswith("achievements-1-5-")
    # in flight: the next tick requests nothing new
    second = _tick(sensor, dagster_instance, app_db, first.cursor)
    assert not second.run_requests
    for request in requests:
        _launch(dagster_instance, app_db, request)
    assert data.awards(engine) == data.EXPECTED_AWARDS
    third = _tick(sensor, dagster_instance, app_db, second.cursor)
    assert not third.run_requests
    state = CursorState.parse(third.cursor)
    assert state.in_flight == [] and state.lwm == 14
    # a lost cursor rescans, finds everything in the ledger: nothing requested, nothing doubled
    assert not _tick(sensor, dagster_instance, app_db, None).run_requests
    # new events are picked up from where we are
    with engine.begin() as conn:
        conn.execute(schema.app_events.insert(), [
            {"id": 15, "event_type": "team_joined", "user_id": 1, "created_at": data.T0},
            {"id": 16, "event_type": "login", "user_id": 1, "created_at": data.T0},
            {"id": 17, "event_type": "tournament_completed", "user_id": 2, "created_at": data.T0},
        ])
    fourth = _tick(sensor, dagster_instance, app_db, third.cursor)
    assert _covered(fourth.run_requests or []) == [[[15, 17]]]


def test_lost_cursor_with_runs_in_the_instance(
    app_db: AppDatabase, engine: Engine, dagster_instance: dg.DagsterInstance
) -> None:
    """Runs queued in the instance count as in flight even without a cursor; when they fail,
    their events are requested again under a new run key."""
    data.build_world(engine)
    sensor = build_achievement_events_sensor(FAST)
    requests = _tick(sensor, dagster_instance, app_db, None).run_requests or []
    runs = [dagster_instance.create_run_for_job(
        job_def=achievements_job, run_config=r.run_config,
        tags={**r.tags, RUN_KEY_TAG: r.run_key}) for r in requests]
    lost = _tick(sensor, dagster_instance, app_db, None)  # cursor lost, runs not started yet
    assert not lost.run_requests
    for run in runs:
        dagster_instance.report_run_failed(run)
    retry = _tick(sensor, dagster_instance, app_db, lost.cursor)
    assert _covered(retry.run_requests or []) == _covered(requests)
    assert [r.run_key for r in retry.run_requests or []] == [f"{r.run_key}-r1" for r in requests]


def test_bounded_tick_on_a_big_backlog(
    engine: Engine, dagster_instance: dg.DagsterInstance
) -> None:
    n = 200_000
    ids = pd.RangeIndex(1, n + 1)
    frame = pd.DataFrame({
        "id": ids, "event_type": ["team_joined", "login", "tournament_completed", "login"]
        * (n // 4), "user_id": ids % 1000 + 1, "payload": None,
        "created_at": pd.Timestamp("2025-01-01"),
    })
    with engine.begin() as conn:
        bulk_insert(conn, schema.app_events, frame)
    settings = AchievementSensorSettings(
        batch_size=1000, max_runs_per_tick=4, max_in_flight_runs=6, settle_seconds=0,
        lookback_ids=100, scan_window_ids=20_000, max_scan_ids_per_tick=100_000)
    statements: list[str] = []
    sa.event.listen(engine, "before_cursor_execute",
                    lambda *a: statements.append(a[2]))
    with engine.connect() as conn:
        one = plan_tick(conn, dagster_instance, None, settings, now=1000.0)
        assert len(one.run_requests) == 4  # capped per tick
        assert len(statements) <= 4  # max id + PK-window scans, never the whole table
        covered = [r.run_config["ops"]["load_events"]["config"]["event_id_ranges"]
                   for r in one.run_requests]
        assert covered[0] == [[1, 1999]] and covered[-1] == [[6001, 7999]]
        two = plan_tick(conn, dagster_instance, one.state.serialize(), settings, now=1015.0)
        assert len(two.run_requests) == 2  # 6 in flight at most
        assert two.run_requests[0].tags["recs/achievements_first_event_id"] == "8001"
        three = plan_tick(conn, dagster_instance, two.state.serialize(), settings, now=1030.0)
        assert not three.run_requests
        assert three.state.lwm == 12_001 - 1  # the first pending id not requested, minus one
        # With everything processed, lwm moves at most max_scan_ids_per_tick per tick.
        ledger = pd.DataFrame({"event_id": frame.loc[frame["event_type"] != "login", "id"],
                               "outcome": "no_award", "run_id": "x",
                               "processed_at": pd.Timestamp("2025-01-01")})
        with engine.begin() as wconn:
            bulk_insert(wconn, schema.achievement_event_ledger, ledger)
        statements.clear()
        four = plan_tick(conn, None, None, settings, now=1045.0)
        assert not four.run_requests and four.state.lwm == 100_000
        assert len(statements) <= 6
        five = plan_tick(conn, None, four.state.serialize(), settings, now=1060.0)
        assert five.state.lwm == 100_000 - 100 + 100_000


def test_settle_window_holds_the_low_water_mark(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(schema.app_events.insert(), [
            {"id": i, "event_type": "team_joined", "user_id": 1, "created_at": data.T0}
            for i in (1, 2, 3)])
    settings = AchievementSensorSettings(batch_size=10, settle_seconds=60, lookback_ids=0)
    with engine.connect() as conn:
        one = plan_tick(conn, None, None, settings, now=0.0)
        assert one.state.lwm == 0  # nothing observed 60 s ago yet
        later = plan_tick(conn, None, one.state.serialize(), settings, now=61.0)
        assert later.state.lwm == 3


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
@pytest.mark.parametrize("guard", ["lookback", "settle"])
def test_out_of_order_commits_are_not_lost(
    engine: Engine, dagster_instance: dg.DagsterInstance, guard: str
) -> None:
    """Two transactions insert ids n and n+1; n+1 commits first. A tick sees only n+1; the
    next one (lwm already past n+1 without the guards) still finds n."""
    settings = (AchievementSensorSettings(batch_size=10, lookback_ids=1000, settle_seconds=0)
                if guard == "lookback" else
                AchievementSensorSettings(batch_size=10, lookback_ids=0, settle_seconds=30))
    insert = schema.app_events.insert().returning(schema.app_events.c.id)
    row = {"event_type": "team_joined", "user_id": 1, "created_at": data.T0}
    slow, fast = engine.connect(), engine.connect()
    slow_tx = slow.begin()
    low = slow.execute(insert, row).scalar_one()
    ready = threading.Event()

    def commit_high() -> None:
        with fast.begin():
            fast.execute(insert, row)
        ready.set()

    threading.Thread(target=commit_high).start()
    assert ready.wait(10)
    with engine.connect() as conn:
        first = plan_tick(conn, dagster_instance, None, settings, now=100.0)
    ranges = [r.run_config["ops"]["load_events"]["config"]["event_id_ranges"]
              for r in first.run_requests]
    assert ranges == [[[low + 1, low + 1]]]
    slow_tx.commit()  # the lower id becomes visible only now
    slow.close()
    fast.close()
    with engine.connect() as conn:
        second = plan_tick(conn, dagster_instance, first.state.serialize(), settings, now=115.0)
    assert [r.run_config["ops"]["load_events"]["config"]["event_id_ranges"]
            for r in second.run_requests] == [[[low, low]]]


def test_unreadable_cursor_starts_over_safely() -> None:
    assert CursorState.parse("not json").lwm == 0
    assert CursorState.parse('{"lwm": 5}').lwm == 5


def test_settings_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECS_ACHIEVEMENTS_MINIMUM_INTERVAL_SECONDS", "30")
    monkeypatch.setenv("RECS_ACHIEVEMENTS_BATCH_SIZE", "2000")
    settings = AchievementSensorSettings.from_env()
    assert settings.minimum_interval_seconds == 30 and settings.batch_size == 2000
    assert build_achievement_events_sensor(settings).minimum_interval_seconds == 30
    monkeypatch.setenv("RECS_ACHIEVEMENTS_BATCH_SIZE", "lots")
    with pytest.raises(dg.DagsterInvariantViolationError, match="BATCH_SIZE"):
        AchievementSensorSettings.from_env()


def _materializations(result: dg.SensorResult) -> list[dg.AssetMaterialization]:
    return [e for e in result.asset_events if isinstance(e, dg.AssetMaterialization)]


def _checks(result: dg.SensorResult) -> dict[str, dg.AssetCheckEvaluation]:
    return {e.check_name: e for e in result.asset_events
            if isinstance(e, dg.AssetCheckEvaluation)}


def test_the_outbox_checks_are_recorded_by_the_sensor_and_runnable_from_the_ui(
    app_db: AppDatabase, engine: Engine, dagster_instance: dg.DagsterInstance,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """outbox_lag fails while old events wait and passes once they are handled;
    unresolved_dead_letters fails while dead letters wait for a replay. The sensor records both
    at most every CAUGHT_UP_HEARTBEAT_SECONDS (no run needed); the check also runs on demand."""
    data.build_world(engine)  # its events are days old; some are bad (dead letters)
    sensor = build_achievement_events_sensor(FAST)
    first = _tick(sensor, dagster_instance, app_db, None)
    checks = _checks(first)
    assert not checks["outbox_lag"].passed
    assert checks["outbox_lag"].metadata["pending_events"].value == len(OUR_EVENTS)
    assert checks["unresolved_dead_letters"].passed  # nothing dead-lettered yet
    assert _checks(_tick(sensor, dagster_instance, app_db, first.cursor)) == {}  # not due yet
    for request in first.run_requests or []:
        _launch(dagster_instance, app_db, request)
    monkeypatch.setattr(sensor_module, "CAUGHT_UP_HEARTBEAT_SECONDS", 0)
    checks = _checks(_tick(sensor, dagster_instance, app_db, first.cursor))
    assert checks["outbox_lag"].passed
    assert not checks["unresolved_dead_letters"].passed
    # every bad event but 13 (an unknown type: no sensor batch ever holds it)
    assert checks["unresolved_dead_letters"].metadata["unresolved_dead_letters"].value == len(
        data.EXPECTED_DEAD) - 1
    # The same checks, executed as the UI's "Execute checks" does.
    job = dg.Definitions(assets=APP_TABLE_SPECS, asset_checks=[outbox_checks],
                         resources={"app_db": app_db}).resolve_implicit_global_asset_job_def()
    result = job.execute_in_process(instance=dagster_instance)
    outcomes = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert outcomes == {"outbox_lag": True, "unresolved_dead_letters": False}


def test_user_achievements_is_materialized_by_runs_and_by_a_caught_up_outbox(
    app_db: AppDatabase, engine: Engine, dagster_instance: dg.DagsterInstance,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Its freshness policy measures how long events wait: every run materializes it (with the
    table's row count), and a tick that finds the outbox caught up records a heartbeat at most
    every CAUGHT_UP_HEARTBEAT_SECONDS; a tick with work pending never does."""
    data.build_world(engine)
    sensor = build_achievement_events_sensor(FAST)
    first = _tick(sensor, dagster_instance, app_db, None)
    assert first.run_requests and not _materializations(first)  # work pending: no heartbeat
    for request in first.run_requests:
        _launch(dagster_instance, app_db, request)
    latest = dagster_instance.get_latest_materialization_event(USER_ACHIEVEMENTS_KEY)
    assert latest is not None and latest.run_id  # written by the last run
    materialization = latest.asset_materialization
    assert materialization.metadata["dagster/row_count"].value == len(data.EXPECTED_AWARDS)
    caught_up = _tick(sensor, dagster_instance, app_db, first.cursor)
    assert not caught_up.run_requests and not _materializations(caught_up)  # fresh from the run
    monkeypatch.setattr(sensor_module, "CAUGHT_UP_HEARTBEAT_SECONDS", 0)
    beat = _tick(sensor, dagster_instance, app_db, caught_up.cursor)
    [heartbeat] = _materializations(beat)
    assert heartbeat.asset_key == USER_ACHIEVEMENTS_KEY
    assert heartbeat.metadata["pending_events"].value == 0
    assert heartbeat.metadata["dagster/row_count"].value == len(data.EXPECTED_AWARDS)
    with engine.begin() as conn:
        conn.execute(schema.app_events.insert(), [
            {"id": 15, "event_type": "team_joined", "user_id": 1, "created_at": data.T0}])
    pending = _tick(sensor, dagster_instance, app_db, beat.cursor)
    assert pending.run_requests and not _materializations(pending)
