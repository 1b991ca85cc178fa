"""The production dagster.yaml: loads on a real PostgreSQL, migrates, queues runs as intended."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from unittest import mock

import dagster as dg
import pytest
import yaml
from dagster._core.run_coordinator.queued_run_coordinator import QueuedRunCoordinator
from dagster._utils.tags import TagConcurrencyLimitsCounter
from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage, PostgresScheduleStorage

from recs_pipeline import tags
from recs_pipeline_tests.deploy_support import (
    PRODUCTION_INSTANCE_YAML,
    dagster_pg_env,
    make_production_home,
    process_env,
    run_checked,
    scratch_postgres_database,
)


def test_production_yaml_holds_no_credentials() -> None:
    config = yaml.safe_load(PRODUCTION_INSTANCE_YAML.read_text())
    pg = config["storage"]["postgres"]["postgres_db"]
    for key in ("username", "password", "hostname", "db_name", "port"):
        assert set(pg[key]) == {"env"}, f"{key} must come from an env var"
        assert pg[key]["env"].startswith("DAGSTER_PG_")
    assert pg["scheme"] == "postgresql+psycopg2"
    assert config["telemetry"] == {"enabled": False}


@pytest.fixture
def production_instance(tmp_path: Path) -> Iterator[dg.DagsterInstance]:
    """The production dagster.yaml on a fresh PostgreSQL database, migrated with the CLI."""
    with scratch_postgres_database("recs_dagster_cfg") as db_name:
        env = dagster_pg_env(db_name)
        home = make_production_home(tmp_path / "dagster_home")
        out = run_checked(
            ["dagster", "instance", "migrate"], process_env({**env, "DAGSTER_HOME": str(home)})
        )
        assert "error" not in out.lower(), out
        with (
            mock.patch.dict(os.environ, {**env, "DAGSTER_HOME": str(home)}),
            dg.DagsterInstance.get() as instance,
        ):
            yield instance


def test_production_instance_on_postgres(production_instance: dg.DagsterInstance) -> None:
    instance = production_instance
    assert isinstance(instance.run_storage, PostgresRunStorage)
    assert isinstance(instance.event_log_storage, PostgresEventLogStorage)
    assert isinstance(instance.schedule_storage, PostgresScheduleStorage)
    assert not instance.telemetry_enabled
    assert instance.run_monitoring_enabled
    # Runs really land in PostgreSQL.
    run = instance.create_run_for_job(
        dg.GraphDefinition(name="noop", node_defs=[]).to_job(), tags=tags.ACHIEVEMENTS_TAGS
    )
    assert instance.get_run_by_id(run.run_id).tags[tags.JOB_KIND_TAG] == "achievements"
    # Skipped sensor ticks are purged after a week, the rest after 30 days.
    from dagster._core.scheduler.instigation import InstigatorType, TickStatus

    sensor = instance.get_tick_retention_settings(InstigatorType.SENSOR)
    assert sensor[TickStatus.SKIPPED] == 7 and sensor[TickStatus.SUCCESS] == 30
    assert set(instance.get_tick_retention_settings(InstigatorType.SCHEDULE).values()) == {30}


def _run(tag_set: dict[str, str]) -> dg.DagsterRun:
    return dg.DagsterRun(job_name="x", run_id=os.urandom(8).hex(), tags=tag_set)


def test_queue_limits(production_instance: dg.DagsterInstance) -> None:
    coordinator = production_instance.run_coordinator
    assert isinstance(coordinator, QueuedRunCoordinator)
    queue = coordinator.get_run_queue_config()
    assert queue.max_concurrent_runs == 6
    limits = queue.tag_concurrency_limits

    # The daemon's own counter decides, given what is in progress, whether a queued run waits.
    def blocked(in_progress: list[dict[str, str]], candidate: dict[str, str]) -> bool:
        counter = TagConcurrencyLimitsCounter(limits, [_run(t) for t in in_progress])
        return counter.is_blocked(_run(candidate))

    nightly, purge = tags.NIGHTLY_RECOMMENDATIONS_TAGS, tags.RETENTION_PURGE_TAGS
    achievements, user = tags.ACHIEVEMENTS_TAGS, tags.USER_REFRESH_TAGS
    assert blocked([nightly], nightly)  # one nightly refresh at a time
    assert blocked([nightly], purge)  # the refresh and the purge never overlap
    assert blocked([purge], nightly)
    assert blocked([purge], purge)
    # Achievement batches are idempotent and safe in parallel: up to 4 at once.
    assert not blocked([achievements] * 3, achievements)
    assert blocked([achievements] * 4, achievements)
    assert blocked([tags.HOUSEKEEPING_TAGS], tags.HOUSEKEEPING_TAGS)
    assert not blocked([nightly], achievements)
    assert not blocked([nightly, achievements], user)
    assert blocked([user], user)  # same kind: still one at a time
    assert not blocked([], nightly)


def test_run_retries_relaunch_crashed_runs_only(production_instance: dg.DagsterInstance) -> None:
    """The daemon re-launches a run whose worker died, once; a step failure is final (ops retry
    transient errors themselves), and achievement batches are re-planned by their sensor."""
    from dagster._core.events import RunFailureReason
    from dagster._core.execution.retries import auto_reexecution_should_retry_run

    instance = production_instance
    assert instance.run_retries_enabled and instance.run_retries_max_retries == 1
    job = dg.GraphDefinition(name="noop", node_defs=[]).to_job()

    def retried(tag_set: dict[str, str], reason: RunFailureReason) -> bool:
        run = instance.create_run_for_job(job, tags=tag_set)
        instance.report_run_failed(run)
        return auto_reexecution_should_retry_run(instance, instance.get_run_by_id(run.run_id),
                                                 reason)

    nightly = tags.NIGHTLY_RECOMMENDATIONS_TAGS
    assert retried(nightly, RunFailureReason.UNEXPECTED_TERMINATION)
    assert retried(tags.RETENTION_PURGE_TAGS, RunFailureReason.START_TIMEOUT)
    assert not retried(nightly, RunFailureReason.STEP_FAILURE)
    assert not retried(tags.ACHIEVEMENTS_TAGS, RunFailureReason.UNEXPECTED_TERMINATION)
