"""Run tags shared by jobs and the instance's run-queue limits (see dagster.yaml).

`recs/job_kind` is limited to one queued-to-running run per value, so two nightly refreshes (or two
purges) never overlap. `recs/app_db_heavy` is limited to one run in total: the nightly refresh and
the retention purge both scan `activities` and never run at the same time.
"""

from __future__ import annotations

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
