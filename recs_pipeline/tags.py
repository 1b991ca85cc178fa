"""Run tags shared by jobs and the instance's run-queue limits (see deploy/production/dagster.yaml).

`recs/job_kind` is limited per value: one run at a time for the nightly refresh, the purge, the
one-user refresh and housekeeping; four for achievement batches, which are idempotent and safe in
parallel. `recs/app_db_heavy` is limited to one run in total: the nightly refresh and
the retention purge both scan `activities` and never run at the same time.
"""

from __future__ import annotations

import dagster as dg

# Dagster's own system tags (documented names; the constants live in a private module).
RUN_KEY_TAG = "dagster/run_key"
SENSOR_NAME_TAG = "dagster/sensor_name"

# Enforced by the daemon's run monitoring (deploy/production/dagster.yaml): a run older than this
# is failed, which frees its queue slot after a host crash (the default launcher cannot tell a
# dead run process from a slow one). Sized at several times the measured run times
# (docs/operations.md).
MAX_RUNTIME_TAG = "dagster/max_runtime"
MAX_RUNTIME_SECONDS: dict[str, int] = {
    "nightly_recommendations": 3600,  # 1M users ~15 min with the nightly evaluation
    "user_recommendations": 300,  # up to 1,000 users: 6-8 s with the launch
    "retention_purge": 3600,  # 10M expired rows in minutes
    "achievements": 300,  # 5,000 events: ~1 s plus ~4 s launch
    "achievements_replay": 900,  # dead letters: usually few
    "dagster_housekeeping": 900,
    "recommendation_bucket": 1800,
    "recommendation_upkeep": 600,  # a 15-minute cadence
    "recommendation_staleness": 600,  # two counts over the published tables
}

JOB_KIND_TAG = "recs/job_kind"
HEAVY_SCAN_TAG = "recs/app_db_heavy"



def _max_runtime(kind: str) -> dict[str, str]:
    return {MAX_RUNTIME_TAG: str(MAX_RUNTIME_SECONDS[kind])}


NIGHTLY_RECOMMENDATIONS_TAGS: dict[str, str] = {
    JOB_KIND_TAG: "nightly_recommendations",
    HEAVY_SCAN_TAG: "true",
    **_max_runtime("nightly_recommendations"),
}
USER_REFRESH_TAGS: dict[str, str] = {JOB_KIND_TAG: "user_recommendations",
                                     **_max_runtime("user_recommendations")}
RETENTION_PURGE_TAGS: dict[str, str] = {
    JOB_KIND_TAG: "retention_purge",
    HEAVY_SCAN_TAG: "true",
    **_max_runtime("retention_purge"),
}
UPKEEP_TAGS: dict[str, str] = {JOB_KIND_TAG: "recommendation_upkeep",
                               **_max_runtime("recommendation_upkeep")}
STALENESS_TAGS: dict[str, str] = {JOB_KIND_TAG: "recommendation_staleness",
                                  **_max_runtime("recommendation_staleness")}
# The instance retries a run whose worker crashed (deploy/production/dagster.yaml `run_retries`),
# except achievement batches: the sensor re-plans a failed batch's events itself.
MAX_RETRIES_TAG = "dagster/max_retries"
ACHIEVEMENTS_TAGS: dict[str, str] = {JOB_KIND_TAG: "achievements", MAX_RETRIES_TAG: "0",
                                     **_max_runtime("achievements")}
ACHIEVEMENTS_REPLAY_TAGS: dict[str, str] = {JOB_KIND_TAG: "achievements_replay",
                                            **_max_runtime("achievements_replay")}
# Deletes old runs from the Dagster instance database only; never touches the app database.
HOUSEKEEPING_TAGS: dict[str, str] = {JOB_KIND_TAG: "dagster_housekeeping",
                                     **_max_runtime("dagster_housekeeping")}
# Bucket runs of `nightly_recommendations_bucketed_job` run in parallel (that is their point);
# the instance caps how many at once (deploy/production/dagster.yaml). `REFRESH_AS_OF_TAG` ties
# the buckets of one refresh together.
BUCKET_TAG = "recs/recommendation_bucket"
RECOMMENDATION_BUCKET_TAGS: dict[str, str] = {BUCKET_TAG: "true",
                                              **_max_runtime("recommendation_bucket")}
REFRESH_AS_OF_TAG = "recs/refresh_as_of"

# Owners shown on every asset (`owners=`): who to ask, who gets paged.
DATA_PLATFORM_OWNERS = ["team:data-platform"]
WEB_APP_OWNERS = ["team:web-app"]

# Runs that still hold their work (queued, starting, running, suspended or being canceled): the
# sensors request nothing that overlaps them.
UNFINISHED_RUN_STATUSES = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.SUSPENDED,
    dg.DagsterRunStatus.CANCELING,
]
