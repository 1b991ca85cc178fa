"""The bucketed refresh publishes exactly the single-process rows, all buckets at once."""

from __future__ import annotations

from datetime import datetime, timedelta

import dagster as dg
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from recs_pipeline import schema
from recs_pipeline.compute.buckets import NUM_BUCKETS, bucket_key
from recs_pipeline.defs.recommendations import assets as recommendation_assets
from recs_pipeline.defs.recommendations import quality as quality_assets
from recs_pipeline.defs.recommendations.bucketed import (
    bucket_run_requests,
    nightly_recommendations_bucketed_job,
)
from recs_pipeline.devtools.seed import SeedConfig, seed_database
from recs_pipeline.resources import AppDatabase, InputQuarantinePolicy, RunClock
from recs_pipeline_tests.recommendation_world import AS_OF, NOW, insert_world


def _resources(app_db: AppDatabase) -> dict[str, object]:
    return {"app_db": app_db, "clock": RunClock(), "input_quarantine": InputQuarantinePolicy()}


RECOMMENDATION_ASSETS = dg.load_assets_from_modules([recommendation_assets, quality_assets])


def _clock_config(as_of: str) -> dict:
    return {"resources": {"clock": {"config": {"as_of": as_of, "backfill": True}}}}


def _single_process_config(as_of: str) -> dict:
    # The bucketed job publishes the blend: pin the single-process run to the same ranking.
    return {**_clock_config(as_of), "ops": {"recommendation_quality": {"config": {
        "publish_contender": "blend"}}}}


NIGHTLY_CONFIG = _single_process_config(AS_OF)


def _published(engine: Engine) -> dict[str, pd.DataFrame]:
    out = {}
    with engine.connect() as conn:
        for table in (schema.tournament_recommendations, schema.team_recommendations):
            rows = conn.execute(sa.select(table).order_by(table.c.user_id, table.c.rank)).all()
            out[table.name] = pd.DataFrame([tuple(r) for r in rows],
                                           columns=[c.name for c in table.columns])
    return out


def _run_bucket(app_db: AppDatabase, instance: dg.DagsterInstance, index: int,
                as_of: str = AS_OF) -> dg.ExecuteInProcessResult:
    return nightly_recommendations_bucketed_job.execute_in_process(
        partition_key=bucket_key(index), run_config=_clock_config(as_of),
        resources=_resources(app_db), instance=instance,
    )


def _publish_metadata(result: dg.ExecuteInProcessResult) -> dict:
    for event in result.all_events:
        if event.event_type_value == "STEP_OUTPUT" and event.step_key == (
            "publish_recommendation_buckets"
        ):
            return {k: v.value for k, v in event.event_specific_data.metadata.items()}
    raise AssertionError("no publish output")


def test_buckets_publish_the_single_process_rows_together(
    app_db: AppDatabase, engine: Engine, dagster_instance: dg.DagsterInstance
) -> None:
    insert_world(engine)
    single = dg.materialize(RECOMMENDATION_ASSETS, resources=_resources(app_db),
                            run_config=NIGHTLY_CONFIG, instance=dagster_instance)
    assert single.success
    expected = _published(engine)
    assert len(expected["tournament_recommendations"]) > 0
    with engine.begin() as conn:  # the bucketed refresh must rebuild them on its own
        for table in (schema.tournament_recommendations, schema.team_recommendations):
            conn.execute(table.delete().where(table.c.user_id % 2 == 0))
    before = _published(engine)

    for index in range(NUM_BUCKETS - 1):
        result = _run_bucket(app_db, dagster_instance, index)
        meta = _publish_metadata(result)
        assert meta["published"] is False
        assert meta["waiting_for_buckets"] == list(range(index + 1, NUM_BUCKETS))
        for name, frame in _published(engine).items():  # nothing published meanwhile
            pd.testing.assert_frame_equal(frame, before[name])

    last = _run_bucket(app_db, dagster_instance, NUM_BUCKETS - 1)
    assert _publish_metadata(last)["published"] is True
    published = _published(engine)
    for name, frame in expected.items():
        pd.testing.assert_frame_equal(published[name], frame)  # generated_at = as_of, too
    materialized = {
        e.event_specific_data.materialization.asset_key.to_user_string()
        for e in last.all_events if e.event_type_value == "ASSET_MATERIALIZATION"
    }
    assert materialized == {"tournament_recommendations", "team_recommendations"}
    with engine.connect() as conn:  # bucket staging is gone after the publish
        names = set(sa.inspect(conn).get_table_names())
    assert not {n for n in names if "__bucket_" in n}


def test_buckets_of_different_refreshes_never_publish_together(
    app_db: AppDatabase, engine: Engine, dagster_instance: dg.DagsterInstance
) -> None:
    insert_world(engine)
    later = (NOW + pd.Timedelta(minutes=5)).isoformat()
    for index in range(NUM_BUCKETS - 1):
        _run_bucket(app_db, dagster_instance, index)
    result = _run_bucket(app_db, dagster_instance, NUM_BUCKETS - 1, as_of=later)
    meta = _publish_metadata(result)
    assert meta["published"] is False
    assert meta["waiting_for_buckets"] == list(range(NUM_BUCKETS - 1))
    assert all(len(f) == 0 for f in _published(engine).values())


def test_run_requests_share_one_as_of() -> None:
    requests = bucket_run_requests(NOW, run_key_prefix="t")
    assert [r.partition_key for r in requests] == [bucket_key(i) for i in range(NUM_BUCKETS)]
    assert {r.tags["recs/refresh_as_of"] for r in requests} == {NOW.isoformat()}
    assert len({r.run_key for r in requests}) == NUM_BUCKETS


def test_buckets_match_single_process_on_seeded_data_with_ties(
    app_db: AppDatabase, engine: Engine, dagster_instance: dg.DagsterInstance
) -> None:
    """Seeded data has many candidates with identical features (exact score ties): the ranking
    must not depend on which users share a scoring batch."""
    seed_now = datetime(2030, 1, 1)
    as_of = (seed_now + timedelta(hours=12)).isoformat()
    seed_database(engine, SeedConfig(users=300, seed=11, now=seed_now), progress=False)
    for index in range(NUM_BUCKETS):
        _run_bucket(app_db, dagster_instance, index, as_of=as_of)
    bucketed = _published(engine)
    single = dg.materialize(
        RECOMMENDATION_ASSETS, resources=_resources(app_db), instance=dagster_instance,
        run_config=_single_process_config(as_of),
    )
    assert single.success
    tied = 0
    for name, frame in _published(engine).items():
        assert len(frame) > 0
        pd.testing.assert_frame_equal(bucketed[name], frame)
        # equal blends differ only by the index tie-break (< 1e-6)
        tied += int(frame.assign(s=frame["score"].round(6)).duplicated(["user_id", "s"]).sum())
    assert tied > 0  # the data really has ties, so the test can fail
