"""The nightly refresh schedules: the single-process job (on) and the bucketed one (off)."""

from __future__ import annotations

from datetime import UTC

import dagster as dg

from recs_pipeline.defs.recommendations.bucketed import (
    bucket_run_requests,
    nightly_recommendations_bucketed_job,
)
from recs_pipeline.defs.recommendations.jobs import nightly_recommendations_job
from recs_pipeline.scheduling import schedule_timezone

NIGHTLY_RECOMMENDATIONS_CRON = "0 2 * * *"  # daily 02:00, as the Celery beat entry was


def build_nightly_recommendations_schedule() -> dg.ScheduleDefinition:
    """The nightly refresh in `schedule_timezone()` (a function so tests can rebuild it)."""
    return dg.ScheduleDefinition(
        name="nightly_recommendations_schedule",
        job=nightly_recommendations_job,
        cron_schedule=NIGHTLY_RECOMMENDATIONS_CRON,
        execution_timezone=schedule_timezone(),
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description="Daily 02:00: refresh every active user's tournament and team "
        "recommendations.",
    )


def build_nightly_recommendations_bucketed_schedule() -> dg.ScheduleDefinition:
    """The scale-out refresh: one run per bucket, all with the tick time as `as_of`.

    Stopped by default: turn it on INSTEAD of `nightly_recommendations_schedule` when one run
    worker is not enough (docs/operations.md).
    """

    @dg.schedule(
        name="nightly_recommendations_bucketed_schedule",
        job=nightly_recommendations_bucketed_job,
        cron_schedule=NIGHTLY_RECOMMENDATIONS_CRON,
        execution_timezone=schedule_timezone(),
        default_status=dg.DefaultScheduleStatus.STOPPED,
        description="Daily 02:00 (off by default): the bucketed refresh, one run per bucket.",
    )
    def _schedule(context: dg.ScheduleEvaluationContext) -> list[dg.RunRequest]:
        tick = context.scheduled_execution_time.astimezone(UTC).replace(tzinfo=None)
        return bucket_run_requests(tick, run_key_prefix=tick.isoformat())

    return _schedule


nightly_recommendations_schedule = build_nightly_recommendations_schedule()
nightly_recommendations_bucketed_schedule = build_nightly_recommendations_bucketed_schedule()
