"""Scale-out on Celery: the bucketed refresh runs on 2 real Celery workers (Redis broker) and
publishes exactly what a single-process run publishes.

The instance is deploy/celery/dagster.yaml (the production instance with the Celery run
launcher) on PostgreSQL. The workers are started here with `dagster-celery worker start`, each in
its own process group, and stopped at the end. Every bucket run is launched through the
instance's run launcher (what the daemon's queue does) on a queue private to this test.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from unittest import mock

import dagster as dg
import pandas as pd
import pytest
import sqlalchemy as sa
import yaml
from dagster._core.definitions.reconstruct import ReconstructableRepository
from dagster_celery.launcher import CeleryRunLauncher
from dagster_celery.tags import DAGSTER_CELERY_QUEUE_TAG

from recs_pipeline import schema
from recs_pipeline.bootstrap import init_app_database
from recs_pipeline.compute.buckets import NUM_BUCKETS, bucket_key
from recs_pipeline.db import make_engine
from recs_pipeline.defs.recommendations.bucketed import BUCKETED_JOB_NAME
from recs_pipeline.devtools.seed import SeedConfig, seed_database
from recs_pipeline.tags import RECOMMENDATION_BUCKET_TAGS, REFRESH_AS_OF_TAG
from recs_pipeline_tests.conftest import postgres_url
from recs_pipeline_tests.deploy_support import (
    PRODUCTION_INSTANCE_YAML,
    REPO_ROOT,
    ManagedProcess,
    dagster_pg_env,
    process_env,
    run_checked,
    scratch_postgres_database,
    wait_for,
)

pytestmark = pytest.mark.slow

CELERY_INSTANCE_YAML = REPO_ROOT / "deploy" / "celery" / "dagster.yaml"
WORKER_YAML = REPO_ROOT / "deploy" / "celery" / "worker.yaml"
REDIS_URL = "redis://127.0.0.1:6379/0"
AS_OF = "2030-01-01T12:00:00"  # seeded with this anchor, so the data is "current" at AS_OF
SEED_NOW = "2030-01-01T00:00:00"


def test_celery_instance_is_the_production_instance_plus_the_launcher() -> None:
    production = yaml.safe_load(PRODUCTION_INSTANCE_YAML.read_text())
    celery = yaml.safe_load(CELERY_INSTANCE_YAML.read_text())
    assert celery["run_launcher"]["class"] == "CeleryRunLauncher"
    assert celery["run_launcher"]["config"]["broker"] == {"env": "RECS_CELERY_BROKER_URL"}
    production.pop("run_launcher"), celery.pop("run_launcher")
    assert celery == production


def _published(engine: sa.Engine) -> dict[str, pd.DataFrame]:
    out = {}
    with engine.connect() as conn:
        for table in (schema.tournament_recommendations, schema.team_recommendations):
            rows = conn.execute(sa.select(table).order_by(table.c.user_id, table.c.rank)).all()
            out[table.name] = pd.DataFrame([tuple(r) for r in rows],
                                           columns=[c.name for c in table.columns])
    return out


@pytest.fixture
def celery_deployment(tmp_path: Path) -> Iterator[dict]:
    with (
        scratch_postgres_database("recs_celery_dagster") as dagster_db,
        scratch_postgres_database("recs_celery_app") as app_db,
    ):
        app_url = postgres_url(app_db)
        engine = make_engine(app_url)
        init_app_database(engine)
        seed_database(engine, SeedConfig(users=300, seed=11, now=pd.Timestamp(SEED_NOW)
                                         .to_pydatetime()), progress=False)
        home = tmp_path / "dagster_home"
        home.mkdir()
        shutil.copy(CELERY_INSTANCE_YAML, home / "dagster.yaml")
        queue = f"recs_test_{uuid.uuid4().hex[:8]}"  # private: no other worker takes our runs
        env = process_env({
            **dagster_pg_env(dagster_db),
            "DAGSTER_HOME": str(home),
            "RECS_DATABASE_URL": app_url,
            "RECS_CELERY_BROKER_URL": REDIS_URL,
            "RECS_CELERY_BACKEND_URL": REDIS_URL,
        })
        run_checked(["dagster", "instance", "migrate"], env)
        workers = [
            ManagedProcess(
                ["dagster-celery", "worker", "start", "-A", "dagster_celery.app",
                 "-y", str(WORKER_YAML), "-q", queue, "-n", f"w{i}-{queue}",
                 "--", "--concurrency=1"],
                env, tmp_path / f"worker{i}.log",
            )
            for i in (1, 2)
        ]
        try:
            for worker in workers:
                wait_for(lambda w=worker: "ready." in w.log_text() or not w.alive(), 120,
                         what="a Celery worker to be ready")
                assert worker.alive(), worker.log_text()[-3000:]
            with mock.patch.dict(os.environ, env):
                yield {"engine": engine, "queue": queue, "workers": workers, "env": env}
        finally:
            for worker in workers:
                worker.stop()
            engine.dispose()


@pytest.mark.timeout(420)
def test_bucketed_refresh_on_two_celery_workers_matches_single_process(
    celery_deployment: dict,
) -> None:
    engine = celery_deployment["engine"]
    workers: list[ManagedProcess] = celery_deployment["workers"]
    with dg.DagsterInstance.get() as instance:
        assert isinstance(instance.run_launcher, CeleryRunLauncher)
        recon_repo = ReconstructableRepository.for_module(
            "recs_pipeline.definitions", "defs", working_directory=str(REPO_ROOT)
        )
        recon_job = recon_repo.get_reconstructable_job(BUCKETED_JOB_NAME)
        job_def = recon_job.get_definition()
        run_ids = []
        for index in range(NUM_BUCKETS):
            run = instance.create_run_for_job(
                job_def=job_def,
                run_config={"resources": {"clock": {"config": {"as_of": AS_OF, "backfill": True}}}},
                tags={**RECOMMENDATION_BUCKET_TAGS, "dagster/partition": bucket_key(index),
                      REFRESH_AS_OF_TAG: AS_OF,
                      DAGSTER_CELERY_QUEUE_TAG: celery_deployment["queue"]},
                job_code_origin=recon_job.get_python_origin(),
            )
            instance.launch_run(run.run_id, workspace=None)  # type: ignore[arg-type]
            run_ids.append(run.run_id)

        def finished() -> bool:
            runs = [instance.get_run_by_id(r) for r in run_ids]
            return all(r is not None and r.is_finished for r in runs)

        try:
            wait_for(finished, 300, interval=1.0, what="the bucket runs on the Celery workers")
        except TimeoutError:
            logs = "\n".join(w.log_text()[-3000:] for w in workers)
            raise AssertionError(f"bucket runs did not finish:\n{logs}") from None
        statuses = {instance.get_run_by_id(r).status for r in run_ids}
        assert statuses == {dg.DagsterRunStatus.SUCCESS}, statuses

        # Every step ran inside a worker's process group, never in this process; both worked.
        worker_groups = {w.pid for w in workers}
        seen_groups = set()
        published_by = []
        for run_id in run_ids:
            for record in instance.get_records_for_run(
                run_id, of_type=dg.DagsterEventType.STEP_OUTPUT
            ).records:
                event = record.event_log_entry.dagster_event
                meta = event.event_specific_data.metadata
                who = meta["executed_by"].value
                assert who["pid"] != os.getpid()
                assert who["pgid"] in worker_groups, (who, worker_groups)
                seen_groups.add(who["pgid"])
                if meta.get("published") and meta["published"].value is True:
                    published_by.append(run_id)
        assert seen_groups == worker_groups  # both workers took bucket runs
        assert len(published_by) == 1  # exactly one bucket run published all buckets

    bucketed = _published(engine)
    assert len(bucketed["tournament_recommendations"]) > 0

    # The same refresh in a single process (in this test process).
    from recs_pipeline.definitions import defs

    single = defs.resolve_job_def("nightly_recommendations_job").execute_in_process(
        # the bucketed job publishes the blend: pin the single-process run to it
        run_config={"resources": {"clock": {"config": {"as_of": AS_OF, "backfill": True}}},
                    "ops": {"recommendation_quality": {"config": {"publish_contender": "blend"}}}},
        instance=dg.DagsterInstance.ephemeral(),
    )
    assert single.success
    for name, frame in _published(engine).items():
        # Identical rows (generated_at too: both used the same as_of).
        pd.testing.assert_frame_equal(bucketed[name], frame)
