"""Job definitions: asset jobs and op-based jobs."""

from __future__ import annotations

import dagster as dg

from recs_pipeline.ops.achievements import achievements_job
from recs_pipeline.ops.housekeeping import delete_old_dagster_runs
from recs_pipeline.ops.recommendations import refresh_user_recommendations
from recs_pipeline.ops.recommendations_bucketed import nightly_recommendations_bucketed_job
from recs_pipeline.ops.retention import plan_retention_purge, purge_expired_data
from recs_pipeline.tags import (
    HOUSEKEEPING_TAGS,
    NIGHTLY_RECOMMENDATIONS_TAGS,
    RETENTION_PURGE_TAGS,
    USER_REFRESH_TAGS,
)


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


# Transient database trouble (restart, failover, dropped connection) gets three more tries with
# backoff; a failed blocking check raises `Failure(allow_retries=False)` and is never retried.
RECOMMENDATIONS_RETRY_POLICY = dg.RetryPolicy(
    max_retries=3, delay=30, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS
)

nightly_recommendations_job = dg.define_asset_job(
    name="nightly_recommendations_job",
    selection=dg.AssetSelection.groups("recommendations"),
    executor_def=dg.in_process_executor,
    tags=NIGHTLY_RECOMMENDATIONS_TAGS,
    op_retry_policy=RECOMMENDATIONS_RETRY_POLICY,
    description="Nightly: user features, candidates, tournament and team recommendations for "
    "every active user with a game profile; blocking checks on staged rows, then one atomic swap.",
)


@dg.job(
    tags=USER_REFRESH_TAGS,
    executor_def=dg.in_process_executor,
    op_retry_policy=RECOMMENDATIONS_RETRY_POLICY,
    description="Recompute one user's recommendations (config: ops.refresh_user_recommendations."
    "config.user_id) and replace exactly that user's rows in one transaction.",
)
def refresh_user_recommendations_job() -> None:
    refresh_user_recommendations()


ALL_JOBS: list[dg.JobDefinition | dg.UnresolvedAssetJobDefinition] = [
    dagster_housekeeping_job,
    retention_purge_job,
    achievements_job,
    nightly_recommendations_job,
    refresh_user_recommendations_job,
    nightly_recommendations_bucketed_job,
]
