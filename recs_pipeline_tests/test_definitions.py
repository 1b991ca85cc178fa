"""The code location loads, validates, and exposes exactly the expected definitions."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg

from recs_pipeline.definitions import defs

PROJECT_ROOT = Path(__file__).resolve().parents[1]

# The snapshot: update deliberately when a definition is added or renamed.
EXPECTED_APP_TABLES = {
    "users", "games", "game_profiles", "profile_completeness", "tournaments",
    "tournament_participants", "teams", "team_members", "activities", "achievements",
    "user_achievements", "app_events",
}
EXPECTED_PIPELINE_ASSETS: set[str] = {
    "user_features", "tournament_candidates", "team_candidates", "tournament_recommendations",
    "team_recommendations", "recommendation_quality",
}
EXPECTED_JOBS: set[str] = {
    "dagster_housekeeping_job", "retention_purge_job", "achievements_job",
    "nightly_recommendations_job", "refresh_user_recommendations_job",
    "nightly_recommendations_bucketed_job",
}
EXPECTED_SCHEDULES: dict[str, str] = {  # name -> cron
    "dagster_housekeeping_schedule": "45 4 * * *",
    "weekly_retention_purge_schedule": "30 3 * * 0",
    "nightly_recommendations_schedule": "0 2 * * *",
    "nightly_recommendations_bucketed_schedule": "0 2 * * *",
}
EXPECTED_SENSORS: set[str] = {"run_failure_alert_sensor", "achievement_events_sensor"}


def test_definitions_snapshot() -> None:
    repo = defs.get_repository_def()
    keys = {key.to_user_string() for key in repo.asset_graph.get_all_asset_keys()}
    assert keys == {f"app/{t}" for t in EXPECTED_APP_TABLES} | EXPECTED_PIPELINE_ASSETS
    jobs = {job.name for job in repo.get_all_jobs()} - {"__ASSET_JOB"}
    assert jobs == EXPECTED_JOBS
    assert {s.name: s.cron_schedule for s in repo.schedule_defs} == EXPECTED_SCHEDULES
    assert {s.name for s in repo.sensor_defs} == EXPECTED_SENSORS


def test_every_asset_has_a_description() -> None:
    repo = defs.get_repository_def()
    for key in repo.asset_graph.get_all_asset_keys():
        node = repo.asset_graph.get(key)
        assert node.description, f"{key.to_user_string()} has no description"


def _cli_env() -> dict[str, str]:
    # A CLI run from the repository root with no DAGSTER_HOME: a temporary instance.
    return {k: v for k, v in os.environ.items() if k != "DAGSTER_HOME"}


def test_dagster_definitions_validate_passes() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "dagster", "definitions", "validate",
         "-m", "recs_pipeline.definitions"],
        capture_output=True, text=True, timeout=180, check=False, env=_cli_env(),
        cwd=PROJECT_ROOT,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Validation successful" in result.stdout + result.stderr


def test_dg_check_defs_passes() -> None:
    dg_cli = Path(sys.executable).with_name("dg")
    result = subprocess.run(
        [str(dg_cli), "check", "defs"],
        capture_output=True, text=True, timeout=180, check=False, env=_cli_env(),
        cwd=PROJECT_ROOT,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "All definitions loaded successfully" in result.stdout + result.stderr


def test_app_database_resource_is_bound() -> None:
    assert isinstance(defs.resources["app_db"], dg.ConfigurableResource)
