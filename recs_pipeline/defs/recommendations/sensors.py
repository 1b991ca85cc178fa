"""`user_refresh_request_sensor`: the app's refresh requests -> a few batched refresh runs.

A Dagster run costs seconds to launch, so one run per request cannot keep up with an app that
asks for a refresh whenever a user changes something. The app INSERTs its requests into
`recommendation_refresh_requests` (docs/data-contract.md); every tick this sensor takes up to
`MAX_USERS_PER_REFRESH` users with pending requests, oldest first, and requests ONE
`refresh_user_recommendations_job` run for them, unless a run it launched is still unfinished
(queued, running, suspended or being canceled; the queue runs one user refresh at a time
anyway). The run deletes exactly the requests it read before computing, in the transaction that
replaces the rows, so a failed run leaves them pending for the next tick and a request that
arrives during a run waits for the next batch.
"""

# No `from __future__ import annotations`: Dagster inspects the sensor's annotations.

import dagster as dg

from recs_pipeline.defs.recommendations.jobs import (
    MAX_USERS_PER_REFRESH,
    refresh_user_recommendations_job,
)
from recs_pipeline.defs.recommendations.refresh_requests import REQUESTS, pending_requests
from recs_pipeline.resources import AppDatabase
from recs_pipeline.tags import SENSOR_NAME_TAG, UNFINISHED_RUN_STATUSES, USER_REFRESH_TAGS

SENSOR_NAME = "user_refresh_request_sensor"
SPAN_TAG = "recs/refresh_request_span"  # first-last request id of the batch
USERS_TAG = "recs/refresh_users"


@dg.sensor(
    name=SENSOR_NAME,
    job=refresh_user_recommendations_job,
    minimum_interval_seconds=10,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Batches the app's pending rows of recommendation_refresh_requests into one "
    f"refresh_user_recommendations_job run (up to {MAX_USERS_PER_REFRESH} users) at a time.",
)
def user_refresh_request_sensor(
    context: dg.SensorEvaluationContext, app_db: AppDatabase
) -> dg.SensorResult:
    """Request one batched refresh run for the users with pending requests."""
    in_flight = context.instance.get_runs(
        dg.RunsFilter(job_name=refresh_user_recommendations_job.name,
                      statuses=UNFINISHED_RUN_STATUSES, tags={SENSOR_NAME_TAG: SENSOR_NAME}),
        limit=1)
    if in_flight:
        return dg.SensorResult(skip_reason=f"refresh run {in_flight[0].run_id[:8]} unfinished; "
                               "pending requests wait for it")
    REQUESTS.create(app_db.get_engine(), checkfirst=True)  # the app may ask before any run
    with app_db.connect() as conn:
        pending = pending_requests(conn, MAX_USERS_PER_REFRESH)
    if pending is None:
        return dg.SensorResult(skip_reason="no pending refresh requests")
    # A span that already had a run (it failed, its requests stayed) gets a fresh run key.
    attempts = len(context.instance.get_runs(
        dg.RunsFilter(job_name=refresh_user_recommendations_job.name,
                      tags={SPAN_TAG: pending.span}), limit=100))
    context.log.info(f"{pending.requests} pending requests for {len(pending.user_ids)} users "
                     f"(ids {pending.span}): one run")
    return dg.SensorResult(run_requests=[dg.RunRequest(
        run_key=f"user-refresh-{pending.span}" + (f"-r{attempts}" if attempts else ""),
        run_config={"ops": {"refresh_user_recommendations": {"config": {
            "user_ids": pending.user_ids}}}},
        tags={**USER_REFRESH_TAGS, SPAN_TAG: pending.span,
              USERS_TAG: str(len(pending.user_ids))},
    )])
