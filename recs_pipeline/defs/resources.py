"""The resources every domain's definitions share, bound once for the whole code location."""

from __future__ import annotations

import dagster as dg

from recs_pipeline.resources import AppDatabase, InputQuarantinePolicy, RunClock


@dg.definitions
def resources() -> dg.Definitions:
    return dg.Definitions(resources={
        "app_db": AppDatabase(), "clock": RunClock(), "input_quarantine": InputQuarantinePolicy(),
    })
