"""The code location: `defs` is what `dagster dev`, `dg dev` and the daemon load."""

from __future__ import annotations

import dagster as dg

from recs_pipeline.assets.quality import QUALITY_ASSETS
from recs_pipeline.assets.recommendations import RECOMMENDATION_ASSETS
from recs_pipeline.assets.sources import APP_TABLE_SPECS
from recs_pipeline.checks import QUALITY_CHECKS
from recs_pipeline.jobs import ALL_JOBS
from recs_pipeline.resources import AppDatabase
from recs_pipeline.schedules import ALL_SCHEDULES
from recs_pipeline.sensors import ALL_SENSORS

defs = dg.Definitions(
    assets=[*APP_TABLE_SPECS, *RECOMMENDATION_ASSETS, *QUALITY_ASSETS],
    asset_checks=[*QUALITY_CHECKS],
    jobs=ALL_JOBS,
    schedules=ALL_SCHEDULES,
    sensors=ALL_SENSORS,
    resources={"app_db": AppDatabase()},
)
