"""The weekly purge schedule (was the Celery beat entry `cleanup_old_activities`)."""

from __future__ import annotations

import dagster as dg

from recs_pipeline.defs.retention.job import retention_purge_job
from recs_pipeline.scheduling import schedule_timezone

WEEKLY_RETENTION_PURGE_CRON = "30 3 * * 0"  # Sundays 03:30, as the Celery beat entry was


def build_weekly_retention_purge_schedule() -> dg.ScheduleDefinition:
    """The weekly purge in `schedule_timezone()` (a function so tests can rebuild it per zone)."""
    return dg.ScheduleDefinition(
        name="weekly_retention_purge_schedule",
        job=retention_purge_job,
        cron_schedule=WEEKLY_RETENTION_PURGE_CRON,
        execution_timezone=schedule_timezone(),
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description="Sundays 03:30: purge activities and processed events older than 90 days.",
    )


weekly_retention_purge_schedule = build_weekly_retention_purge_schedule()
