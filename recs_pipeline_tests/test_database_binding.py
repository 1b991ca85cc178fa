"""The code location's app database comes from `RECS_DATABASE_URL` only: without it a run fails
at once, naming the variable, and creates nothing; with it, every run records which database
(redacted) and dialect it used."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest
from sqlalchemy.engine import Engine

from recs_pipeline.db import DatabaseConfigError, redact_url
from recs_pipeline.definitions import defs
from recs_pipeline.resources import DATABASE_URL_ENV_VAR, AppDatabase


def test_a_run_without_the_variable_fails_at_once_and_creates_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, dagster_instance: dg.DagsterInstance
) -> None:
    monkeypatch.delenv(DATABASE_URL_ENV_VAR, raising=False)
    monkeypatch.chdir(tmp_path)
    job = defs.resolve_job_def("retention_purge_job")
    with pytest.raises(dg.DagsterInvalidConfigError, match=DATABASE_URL_ENV_VAR):
        job.execute_in_process(instance=dagster_instance)
    assert not any(r.status == dg.DagsterRunStatus.SUCCESS for r in dagster_instance.get_runs())
    assert list(tmp_path.iterdir()) == [tmp_path / "dagster_home"]  # no demo database made


def test_an_unbound_resource_never_falls_back_to_the_demo_database(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(DATABASE_URL_ENV_VAR, raising=False)
    with pytest.raises(DatabaseConfigError, match=f"{DATABASE_URL_ENV_VAR} is not set"):
        AppDatabase().resolved_url()


@pytest.mark.db
def test_every_run_records_the_redacted_database_and_dialect(
    database_url: str, engine: Engine, monkeypatch: pytest.MonkeyPatch,
    dagster_instance: dg.DagsterInstance,
) -> None:
    monkeypatch.setenv(DATABASE_URL_ENV_VAR, database_url)
    result = defs.resolve_job_def("retention_purge_job").execute_in_process(
        instance=dagster_instance)
    assert result.success
    [output] = [e for e in result.all_events if e.event_type_value == "STEP_OUTPUT"
                and e.step_key == "purge_expired_data"]
    metadata = output.event_specific_data.metadata
    assert metadata["app_database"].value == redact_url(database_url)
    assert metadata["app_database_dialect"].value == engine.dialect.name
