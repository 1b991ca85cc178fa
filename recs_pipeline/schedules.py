"""Schedules. Every cron runs in `RECS_SCHEDULE_TIMEZONE` (default UTC)."""

from __future__ import annotations

import dagster as dg

ALL_SCHEDULES: list[dg.ScheduleDefinition] = []
