"""The timezone every schedule's cron runs in: `RECS_SCHEDULE_TIMEZONE` (default UTC)."""

from __future__ import annotations

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
