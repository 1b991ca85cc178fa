"""Sensors."""

from __future__ import annotations

import dagster as dg

from recs_pipeline.alerts import run_failure_alert_sensor
from recs_pipeline.sensors_achievements import build_achievement_events_sensor

# Settings: RECS_ACHIEVEMENTS_* env vars, read when the code location loads (docs/achievements.md).
achievement_events_sensor = build_achievement_events_sensor()

ALL_SENSORS: list[dg.SensorDefinition] = [achievement_events_sensor, run_failure_alert_sensor]
