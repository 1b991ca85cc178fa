"""Job definitions: asset jobs and op-based jobs."""

from __future__ import annotations

import dagster as dg

from recs_pipeline.ops.achievements import achievements_job
from recs_pipeline.ops.housekeeping import delete_old_dagster_runs
from recs_pipeline.ops.retention import plan_retention_purge, purge_expired_data
from recs_pipeline.tags import HOUSEKEEPING_TAGS, RETENTION_PURGE_TAGS


@dg.job(
    tags=HOUSEKEEPING_TAGS,
    executor_def=dg.in_process_executor,
    description="Delete finished Dagster runs and their event logs older than the configured age "
    "(sensor run-key guards are kept longer). Touches the Dagster instance only.",
)
def dagster_housekeeping_job() -> None:
    delete_old_dagster_runs()


@dg.job(
    # RETENTION_PURGE_TAGS carry `recs/app_db_heavy`, which the instance limits to one run at a
    # time (dagster.yaml): the purge never overlaps the nightly refresh (docs/retention.md).
    tags=RETENTION_PURGE_TAGS,
    executor_def=dg.in_process_executor,
    description="Weekly retention purge: delete activities, processed app_events and the "
    "pipeline's old bookkeeping rows older than retention_days (default 90), in short batches. "
    "Config: retention_days, batch_size, dry_run (ops.plan_retention_purge.config).",
)
def retention_purge_job() -> None:
    purge_expired_data(plan_retention_purge())


ALL_JOBS: list[dg.JobDefinition | dg.UnresolvedAssetJobDefinition] = [
    dagster_housekeeping_job,
    retention_purge_job,
    achievements_job,
]
