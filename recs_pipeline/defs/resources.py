"""The resources every domain's definitions share, bound once for the whole code location."""

from __future__ import annotations

import dagster as dg

from recs_pipeline.resources import (
    DATABASE_URL_ENV_VAR,
    AppDatabase,
    InputQuarantinePolicy,
    RunClock,
)


@dg.definitions
def resources() -> dg.Definitions:
    return dg.Definitions(resources={
        # No default: a deployment without the variable fails, never runs on another database.
        "app_db": AppDatabase(url=dg.EnvVar(DATABASE_URL_ENV_VAR)),
        "clock": RunClock(),
        "input_quarantine": InputQuarantinePolicy(),
    })
