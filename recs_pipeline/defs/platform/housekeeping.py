"""Dagster housekeeping: delete old runs and their event logs from the instance database.

Dagster OSS never deletes runs, and `event_logs` grows by every log line and step event of every
run. `dagster_housekeeping_job` deletes finished runs older than `max_age_days` (events included,
through `DagsterInstance.delete_run`).

The one exception is runs that still guard against duplicate work. A sensor that emits a
`RunRequest(run_key=...)` skips it when a run of that sensor with that run key exists in the
instance; deleting the run makes the key launchable again. So runs carrying both a
`dagster/run_key` and a `dagster/sensor_name` tag are kept for `run_key_max_age_days` (default 180,
far longer than any sensor here looks back: their cursors have long moved past those keys).
Scheduled runs also carry run keys, but the scheduler only looks up the key of the tick it is
evaluating (run key + scheduled time), never an old one, so they follow the normal age.
Queued or in-progress runs are never deleted, whatever their age.

Runs of the nightly refresh (single-process or bucketed) are kept for `history_max_age_days`
(default 400): their materializations are the history the quality plots show, and the quality
gate compares tonight's NDCG with the last published run's. With the 30-day default, 30 nights
without a publish would delete the reference and the drop rule would pass by default. One run a
night (or one per bucket) keeps this small.

(No `from __future__ import annotations` here: Dagster reads the op's config annotation at
decoration time.)
"""


from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import dagster as dg
from pydantic import Field

from recs_pipeline.config import FailFastConfig
from recs_pipeline.scheduling import schedule_timezone
from recs_pipeline.tags import (
    BUCKET_TAG,
    HOUSEKEEPING_TAGS,
    JOB_KIND_TAG,
    NIGHTLY_RECOMMENDATIONS_TAGS,
    RUN_KEY_TAG,
    SENSOR_NAME_TAG,
)

FINISHED_STATUSES = [
    dg.DagsterRunStatus.SUCCESS,
    dg.DagsterRunStatus.FAILURE,
    dg.DagsterRunStatus.CANCELED,
]


class HousekeepingConfig(FailFastConfig):
    """How old a finished run must be before it is deleted."""

    max_age_days: int = Field(default=30, ge=0, description="Delete finished runs older than this.")
    run_key_max_age_days: int = Field(
        default=180,
        ge=0,
        description="Sensor runs with a run key (duplicate guards) are kept this long instead.",
    )
    history_max_age_days: int = Field(
        default=400,
        ge=0,
        description="Nightly refresh runs (the quality history and the gate's reference) are "
        "kept this long instead.",
    )
    max_runs: int = Field(
        default=5000, gt=0, description="At most this many runs deleted per job run (bounded work)."
    )
    dry_run: bool = Field(default=False, description="Count only; delete nothing.")


@dataclass
class HousekeepingResult:
    deleted_run_ids: list[str] = field(default_factory=list)
    deleted_by_status: Counter[str] = field(default_factory=Counter)
    kept_for_run_key: int = 0
    kept_for_history: int = 0
    examined: int = 0
    limit_reached: bool = False


def guards_duplicates(tags: dict[str, str] | object) -> bool:
    """True for a sensor run whose run key the sensor daemon still checks before launching."""
    return RUN_KEY_TAG in tags and SENSOR_NAME_TAG in tags  # type: ignore[operator]


def keeps_history(tags: dict[str, str] | object) -> bool:
    """True for a run of the nightly refresh (its materializations are the quality history)."""
    return (tags.get(JOB_KIND_TAG) == NIGHTLY_RECOMMENDATIONS_TAGS[JOB_KIND_TAG]  # type: ignore[attr-defined]
            or BUCKET_TAG in tags)  # type: ignore[operator]


def delete_old_runs(
    instance: dg.DagsterInstance,
    config: HousekeepingConfig,
    now: datetime | None = None,
    log: dg.DagsterLogManager | None = None,
) -> HousekeepingResult:
    """Delete finished runs older than the configured ages (oldest first); see the module doc."""
    now = now or datetime.now(UTC)
    cutoff = now - timedelta(days=config.max_age_days)
    run_key_cutoff = now - timedelta(days=max(config.run_key_max_age_days, config.max_age_days))
    history_cutoff = now - timedelta(days=max(config.history_max_age_days, config.max_age_days))
    result = HousekeepingResult()
    cursor: str | None = None
    page_size = 500
    while len(result.deleted_run_ids) < config.max_runs:
        records = instance.get_run_records(
            filters=dg.RunsFilter(created_before=cutoff, statuses=FINISHED_STATUSES),
            limit=page_size,
            ascending=True,
            cursor=cursor,
        )
        if not records:
            break
        for record in records:
            result.examined += 1
            run = record.dagster_run
            if guards_duplicates(run.tags) and record.create_timestamp >= run_key_cutoff:
                result.kept_for_run_key += 1
                cursor = run.run_id
                continue
            if keeps_history(run.tags) and record.create_timestamp >= history_cutoff:
                result.kept_for_history += 1
                cursor = run.run_id
                continue
            if len(result.deleted_run_ids) >= config.max_runs:
                result.limit_reached = True
                break
            if not config.dry_run:
                instance.delete_run(run.run_id)
            result.deleted_run_ids.append(run.run_id)
            result.deleted_by_status[run.status.value] += 1
            if config.dry_run:
                cursor = run.run_id
        # The cursor is the last run still stored: a deleted run id cannot anchor the next page.
        if len(records) < page_size:
            break
    else:
        result.limit_reached = True
    if log:
        log.info(
            f"housekeeping: {len(result.deleted_run_ids)} runs "
            f"{'would be ' if config.dry_run else ''}deleted (older than {cutoff:%Y-%m-%d %H:%M} "
            f"UTC), {result.kept_for_run_key} sensor runs kept as run-key guards, "
            f"{result.kept_for_history} nightly runs kept as quality history"
        )
    return result


@dg.op(tags={"kind": "dagster"})
def delete_old_dagster_runs(
    context: dg.OpExecutionContext, config: HousekeepingConfig
) -> dg.Output[int]:
    """Delete finished runs and their event logs older than `max_age_days` (run-key guards
    and the nightly quality history stay longer)."""
    result = delete_old_runs(context.instance, config, log=context.log)
    return dg.Output(
        len(result.deleted_run_ids),
        metadata={
            "runs_deleted": len(result.deleted_run_ids),
            "runs_kept_as_run_key_guards": result.kept_for_run_key,
            "runs_kept_as_quality_history": result.kept_for_history,
            "runs_examined": result.examined,
            "deleted_by_status": dict(result.deleted_by_status),
            "max_age_days": config.max_age_days,
            "run_key_max_age_days": config.run_key_max_age_days,
            "history_max_age_days": config.history_max_age_days,
            "dry_run": config.dry_run,
            "limit_reached": result.limit_reached,
        },
    )


@dg.job(
    tags=HOUSEKEEPING_TAGS,
    executor_def=dg.in_process_executor,
    description="Delete finished Dagster runs and their event logs older than the configured age "
    "(sensor run-key guards and nightly refresh runs are kept longer). Touches the Dagster "
    "instance only.",
)
def dagster_housekeeping_job() -> None:
    delete_old_dagster_runs()


dagster_housekeeping_schedule = dg.ScheduleDefinition(
    name="dagster_housekeeping_schedule",
    job=dagster_housekeeping_job,
    cron_schedule="45 4 * * *",  # daily, after the nightly refresh and the Sunday purge
    execution_timezone=schedule_timezone(),
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Daily: delete Dagster runs and event logs older than 30 days.",
)
