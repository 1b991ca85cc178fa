"""The weekly retention purge schedule: cron, timezone, and ticks across daylight-saving changes."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import dagster as dg
import pytest
from dagster._utils.schedules import cron_string_iterator  # what the daemon uses for ticks

from recs_pipeline.definitions import defs
from recs_pipeline.defs.retention.schedule import (
    WEEKLY_RETENTION_PURGE_CRON,
    build_weekly_retention_purge_schedule,
)
from recs_pipeline.scheduling import SCHEDULE_TIMEZONE_ENV_VAR
from recs_pipeline.tags import HEAVY_SCAN_TAG, RETENTION_PURGE_TAGS


def _ticks(schedule: dg.ScheduleDefinition, start_utc: datetime, n: int) -> list[datetime]:
    iterator = cron_string_iterator(
        start_utc.timestamp(), schedule.cron_schedule, schedule.execution_timezone
    )
    return [next(iterator).astimezone(UTC).replace(tzinfo=None) for _ in range(n)]


def test_registered_schedule_is_sunday_0330_in_the_default_zone() -> None:
    schedule = defs.get_repository_def().get_schedule_def("weekly_retention_purge_schedule")
    assert schedule.cron_schedule == WEEKLY_RETENTION_PURGE_CRON == "30 3 * * 0"
    assert schedule.job_name == "retention_purge_job"
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING


def test_utc_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(SCHEDULE_TIMEZONE_ENV_VAR, raising=False)
    schedule = build_weekly_retention_purge_schedule()
    assert schedule.execution_timezone == "UTC"
    assert _ticks(schedule, datetime(2025, 3, 1, tzinfo=UTC), 2) == [
        datetime(2025, 3, 2, 3, 30), datetime(2025, 3, 9, 3, 30),
    ]


@pytest.mark.parametrize(
    ("zone", "start", "expected_utc"),
    [
        # Europe/Berlin switches on Sundays: spring forward 2025-03-30 02:00 -> 03:00, so 03:30
        # exists and is CEST (UTC+2); fall back 2025-10-26 03:00 -> 02:00, 03:30 is CET (UTC+1).
        ("Europe/Berlin", datetime(2025, 3, 20, tzinfo=UTC), [
            datetime(2025, 3, 23, 2, 30), datetime(2025, 3, 30, 1, 30),
            datetime(2025, 4, 6, 1, 30),
        ]),
        ("Europe/Berlin", datetime(2025, 10, 15, tzinfo=UTC), [
            datetime(2025, 10, 19, 1, 30), datetime(2025, 10, 26, 2, 30),
            datetime(2025, 11, 2, 2, 30),
        ]),
        # America/New_York: EST (UTC-5) -> EDT (UTC-4) on 2025-03-09, back on 2025-11-02.
        ("America/New_York", datetime(2025, 3, 1, tzinfo=UTC), [
            datetime(2025, 3, 2, 8, 30), datetime(2025, 3, 9, 7, 30),
            datetime(2025, 3, 16, 7, 30),
        ]),
        ("America/New_York", datetime(2025, 10, 25, tzinfo=UTC), [
            datetime(2025, 10, 26, 7, 30), datetime(2025, 11, 2, 8, 30),
            datetime(2025, 11, 9, 8, 30),
        ]),
    ],
)
def test_ticks_across_daylight_saving_changes(
    monkeypatch: pytest.MonkeyPatch, zone: str, start: datetime, expected_utc: list[datetime]
) -> None:
    monkeypatch.setenv(SCHEDULE_TIMEZONE_ENV_VAR, zone)
    schedule = build_weekly_retention_purge_schedule()
    assert schedule.execution_timezone == zone
    ticks = _ticks(schedule, start, 3)
    assert ticks == expected_utc
    # Every tick is Sunday 03:30 on the local wall clock, whatever the offset that day.
    for tick in ticks:
        local = tick.replace(tzinfo=UTC).astimezone(ZoneInfo(zone))
        assert (local.weekday(), local.hour, local.minute) == (6, 3, 30)


def test_evaluation_requests_the_purge_with_its_concurrency_tags(
    monkeypatch: pytest.MonkeyPatch, dagster_instance: dg.DagsterInstance
) -> None:
    monkeypatch.setenv(SCHEDULE_TIMEZONE_ENV_VAR, "Europe/Berlin")
    schedule = build_weekly_retention_purge_schedule()
    tick = datetime(2025, 3, 30, 3, 30, tzinfo=ZoneInfo("Europe/Berlin"))
    context = dg.build_schedule_context(instance=dagster_instance, scheduled_execution_time=tick)
    data = schedule.evaluate_tick(context)
    assert data.run_requests is not None and len(data.run_requests) == 1
    request = data.run_requests[0]
    # The job's tags go on the run, so the instance's `recs/app_db_heavy` limit applies.
    job_tags = dict(schedule.job.tags)
    assert job_tags[HEAVY_SCAN_TAG] == RETENTION_PURGE_TAGS[HEAVY_SCAN_TAG]
    assert request.run_config in ({}, None)  # defaults: 90 days, not a dry run


def test_unknown_timezone_fails_loudly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SCHEDULE_TIMEZONE_ENV_VAR, "Mars/Olympus_Mons")
    with pytest.raises(dg.DagsterInvariantViolationError, match="not an IANA timezone"):
        build_weekly_retention_purge_schedule()
