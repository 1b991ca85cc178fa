"""Schedules. Every cron runs in `RECS_SCHEDULE_TIMEZONE` (default UTC)."""

from __future__ import annotations

from datetime import UTC
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import dagster as dg

SCHEDULE_TIMEZONE_ENV_VAR = "RECS_SCHEDULE_TIMEZONE"
DEFAULT_SCHEDULE_TIMEZONE = "UTC"


def schedule_timezone() -> str:
    """The IANA timezone every schedule uses.

    A schedule's timezone is part of its definition, so this is read when the code location loads
    (a definition-time setting, like the cron itself). An unknown zone fails the load with a clear
    message instead of silently running at UTC.
    """
    value = dg.EnvVar(SCHEDULE_TIMEZONE_ENV_VAR).get_value(default=DEFAULT_SCHEDULE_TIMEZONE)
    value = (value or DEFAULT_SCHEDULE_TIMEZONE).strip()
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise dg.DagsterInvariantViolationError(
            f"{SCHEDULE_TIMEZONE_ENV_VAR}={value!r} is not an IANA timezone, e.g. Europe/Paris"
        ) from None
    return value


def _housekeeping_schedule() -> dg.ScheduleDefinition:
    from recs_pipeline.jobs import dagster_housekeeping_job

    return dg.ScheduleDefinition(
        name="dagster_housekeeping_schedule",
        job=dagster_housekeeping_job,
        cron_schedule="45 4 * * *",  # daily, after the nightly refresh and the Sunday purge
        execution_timezone=schedule_timezone(),
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description="Daily: delete Dagster runs and event logs older than 30 days.",
    )


WEEKLY_RETENTION_PURGE_CRON = "30 3 * * 0"  # Sundays 03:30, as the Celery beat entry was


def build_weekly_retention_purge_schedule() -> dg.ScheduleDefinition:
    """The weekly purge in `schedule_timezone()` (a function so tests can rebuild it per zone)."""
    from recs_pipeline.jobs import retention_purge_job

    return dg.ScheduleDefinition(
        name="weekly_retention_purge_schedule",
        job=retention_purge_job,
        cron_schedule=WEEKLY_RETENTION_PURGE_CRON,
        execution_timezone=schedule_timezone(),
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description="Sundays 03:30: purge activities and processed events older than 90 days.",
    )


NIGHTLY_RECOMMENDATIONS_CRON = "0 2 * * *"  # daily 02:00, as the Celery beat entry was


def build_nightly_recommendations_schedule() -> dg.ScheduleDefinition:
    """The nightly refresh in `schedule_timezone()` (a function so tests can rebuild it)."""
    from recs_pipeline.jobs import nightly_recommendations_job

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
    from recs_pipeline.ops.recommendations_bucketed import (
        bucket_run_requests,
        nightly_recommendations_bucketed_job,
    )

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


ALL_SCHEDULES: list[dg.ScheduleDefinition] = [
    _housekeeping_schedule(),
    build_weekly_retention_purge_schedule(),
    build_nightly_recommendations_schedule(),
    build_nightly_recommendations_bucketed_schedule(),
]
