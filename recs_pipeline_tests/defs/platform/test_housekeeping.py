"""Housekeeping deletes old finished runs and their event logs, keeping sensor run-key guards."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import dagster as dg
from dagster._core.storage.tags import RUN_KEY_TAG, SCHEDULE_NAME_TAG, SENSOR_NAME_TAG

from recs_pipeline.defs.platform.housekeeping import (
    HousekeepingConfig,
    dagster_housekeeping_job,
    delete_old_runs,
)
from recs_pipeline.tags import NIGHTLY_RECOMMENDATIONS_TAGS, RECOMMENDATION_BUCKET_TAGS


@dg.op
def _say_hello(context) -> int:  # type: ignore[no-untyped-def]
    context.log.info("hello")
    return 1


@dg.job
def _tiny_job() -> None:
    _say_hello()


def _run(instance: dg.DagsterInstance, tags: dict[str, str] | None = None) -> str:
    return _tiny_job.execute_in_process(instance=instance, tags=tags or {}).run_id


def _remaining(instance: dg.DagsterInstance) -> set[str]:
    return {run.run_id for run in instance.get_runs()}


def test_deletes_old_runs_and_events_but_keeps_guards_and_unfinished(
    dagster_instance: dg.DagsterInstance,
) -> None:
    instance = dagster_instance
    plain = [_run(instance) for _ in range(3)]
    sensor_keyed = _run(instance, {RUN_KEY_TAG: "events-1-50", SENSOR_NAME_TAG: "s"})
    scheduled = _run(instance, {RUN_KEY_TAG: "tick-1", SCHEDULE_NAME_TAG: "sch"})
    started = instance.create_run_for_job(_tiny_job, status=dg.DagsterRunStatus.STARTED).run_id
    assert instance.all_logs(plain[0])  # events exist before

    # Nothing is 30 days old yet.
    assert delete_old_runs(instance, HousekeepingConfig()).deleted_run_ids == []
    assert len(_remaining(instance)) == 6

    # 40 days later: plain and scheduled runs go; the run-key guard and the running run stay.
    later = datetime.now(UTC) + timedelta(days=40)
    result = delete_old_runs(instance, HousekeepingConfig(), now=later)
    assert set(result.deleted_run_ids) == {*plain, scheduled}
    assert result.kept_for_run_key == 1
    assert result.deleted_by_status == {"SUCCESS": 4}
    assert _remaining(instance) == {sensor_keyed, started}
    for run_id in plain:
        assert instance.all_logs(run_id) == []  # the event log went with the run
    assert instance.all_logs(sensor_keyed)

    # 200 days later the guard is old enough to go too; the running one never does.
    result = delete_old_runs(instance, HousekeepingConfig(), now=later + timedelta(days=160))
    assert result.deleted_run_ids == [sensor_keyed]
    assert _remaining(instance) == {started}


def test_limit_and_dry_run_and_paging(dagster_instance: dg.DagsterInstance) -> None:
    instance = dagster_instance
    # A kept guard first, so later pages are anchored on a run that still exists.
    guard = _run(instance, {RUN_KEY_TAG: "k", SENSOR_NAME_TAG: "s"})
    runs = [_run(instance) for _ in range(5)]
    later = datetime.now(UTC) + timedelta(days=31)

    dry = delete_old_runs(instance, HousekeepingConfig(dry_run=True), now=later)
    assert sorted(dry.deleted_run_ids) == sorted(runs)
    assert len(_remaining(instance)) == 6

    limited = delete_old_runs(instance, HousekeepingConfig(max_runs=2), now=later)
    assert limited.deleted_run_ids == runs[:2]  # oldest first
    assert limited.limit_reached
    rest = delete_old_runs(instance, HousekeepingConfig(max_runs=2), now=later)
    assert rest.deleted_run_ids == runs[2:4]
    rest = delete_old_runs(instance, HousekeepingConfig(), now=later)
    assert rest.deleted_run_ids == runs[4:] and not rest.limit_reached
    assert _remaining(instance) == {guard}


def test_housekeeping_job_on_the_instance(dagster_instance: dg.DagsterInstance) -> None:
    instance = dagster_instance
    old = [_run(instance) for _ in range(2)]
    guard = _run(instance, {RUN_KEY_TAG: "k", SENSOR_NAME_TAG: "s"})
    time.sleep(1.1)  # SQLite run storage stamps runs to the second
    result = dagster_housekeeping_job.execute_in_process(
        instance=instance,
        run_config={"ops": {"delete_old_dagster_runs": {"config": {"max_age_days": 0,
                                                                   "run_key_max_age_days": 7}}}},
    )
    assert result.success
    assert result.output_for_node("delete_old_dagster_runs") == 2
    mat = next(
        e for e in result.all_events if e.event_type_value == "STEP_OUTPUT"
    ).event_specific_data.metadata
    assert mat["runs_deleted"].value == 2
    assert mat["runs_kept_as_run_key_guards"].value == 1
    # The housekeeping run itself was in progress and stays; the guard stays.
    assert _remaining(instance) == {guard, result.run_id}
    assert not set(old) & _remaining(instance)


@dg.asset(key="recommendation_quality_history_probe")
def _quality_probe() -> dg.MaterializeResult:
    return dg.MaterializeResult(metadata={"tournaments/ndcg@10": 0.31})


def test_nightly_runs_keep_the_quality_history_past_the_normal_age(
    dagster_instance: dg.DagsterInstance,
) -> None:
    """The quality plots and the gate's "last published" reference are materializations of
    nightly runs: those runs stay for history_max_age_days, not max_age_days."""
    instance = dagster_instance
    nightly = dg.materialize([_quality_probe], instance=instance,
                             tags=NIGHTLY_RECOMMENDATIONS_TAGS).run_id
    bucket = _run(instance, RECOMMENDATION_BUCKET_TAGS)
    plain = _run(instance)
    later = datetime.now(UTC) + timedelta(days=40)
    result = delete_old_runs(instance, HousekeepingConfig(), now=later)
    assert result.deleted_run_ids == [plain] and result.kept_for_history == 2
    reference = instance.get_latest_materialization_event(_quality_probe.key)
    assert reference is not None and reference.run_id == nightly
    assert reference.asset_materialization.metadata["tournaments/ndcg@10"].value == 0.31
    result = delete_old_runs(instance, HousekeepingConfig(), now=later + timedelta(days=370))
    assert set(result.deleted_run_ids) == {nightly, bucket}
    assert instance.all_logs(nightly) == []  # a year on, the history goes too
