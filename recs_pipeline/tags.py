"""Run tags shared by jobs and the instance's run-queue limits (see deploy/production/dagster.yaml).

`recs/job_kind` is limited per value: one run at a time for the nightly refresh, the purge, the
one-user refresh and housekeeping; four for achievement batches, which are idempotent and safe in
parallel. `recs/app_db_heavy` is limited to one run in total: the nightly refresh and
the retention purge both scan `activities` and never run at the same time.
"""

from __future__ import annotations

# Dagster's own system tags (documented names; the constants live in a private module).
RUN_KEY_TAG = "dagster/run_key"
SENSOR_NAME_TAG = "dagster/sensor_name"

JOB_KIND_TAG = "recs/job_kind"
HEAVY_SCAN_TAG = "recs/app_db_heavy"

NIGHTLY_RECOMMENDATIONS_TAGS: dict[str, str] = {
    JOB_KIND_TAG: "nightly_recommendations",
    HEAVY_SCAN_TAG: "true",
}
USER_REFRESH_TAGS: dict[str, str] = {JOB_KIND_TAG: "user_recommendations"}
RETENTION_PURGE_TAGS: dict[str, str] = {
    JOB_KIND_TAG: "retention_purge",
    HEAVY_SCAN_TAG: "true",
}
ACHIEVEMENTS_TAGS: dict[str, str] = {JOB_KIND_TAG: "achievements"}
# Deletes old runs from the Dagster instance database only; never touches the app database.
HOUSEKEEPING_TAGS: dict[str, str] = {JOB_KIND_TAG: "dagster_housekeeping"}
# Bucket runs of `nightly_recommendations_bucketed_job` run in parallel (that is their point);
# the instance caps how many at once (deploy/production/dagster.yaml). `REFRESH_AS_OF_TAG` ties
# the buckets of one refresh together.
BUCKET_TAG = "recs/recommendation_bucket"
RECOMMENDATION_BUCKET_TAGS: dict[str, str] = {BUCKET_TAG: "true"}
REFRESH_AS_OF_TAG = "recs/refresh_as_of"
