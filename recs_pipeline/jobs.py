"""Job definitions: asset jobs and op-based jobs."""

from __future__ import annotations

import dagster as dg

from recs_pipeline.ops.housekeeping import delete_old_dagster_runs
from recs_pipeline.tags import HOUSEKEEPING_TAGS


@dg.job(
    tags=HOUSEKEEPING_TAGS,
    executor_def=dg.in_process_executor,
    description="Delete finished Dagster runs and their event logs older than the configured age "
    "(sensor run-key guards are kept longer). Touches the Dagster instance only.",
)
def dagster_housekeeping_job() -> None:
    delete_old_dagster_runs()


ALL_JOBS: list[dg.JobDefinition | dg.UnresolvedAssetJobDefinition] = [dagster_housekeeping_job]
