"""Sensors."""

from __future__ import annotations

import dagster as dg

ALL_SENSORS: list[dg.SensorDefinition] = []
