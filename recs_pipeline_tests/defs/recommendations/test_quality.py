"""`recommendation_quality` and its blocking `quality_gate` on a small seeded database (both
backends): the figures, the holdout read as of the cutoff, and the gate stopping the publish."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import dagster as dg
import pandas as pd
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from recs_pipeline import schema
from recs_pipeline.definitions import defs
from recs_pipeline.defs.recommendations.checks import (
    QUALITY_KEY,
    TOURNAMENT_RECOMMENDATIONS_KEY,
    quality_gate,
)
from recs_pipeline.defs.recommendations.quality import recommendation_quality
from recs_pipeline.devtools.seed import SeedConfig, seed_database
from recs_pipeline.resources import AppDatabase, RunClock

SEED_NOW = datetime(2026, 6, 1)
AS_OF = "2026-06-01T00:00:00"
USERS = 1500


@pytest.fixture
def seeded(engine: Engine) -> Engine:
    seed_database(engine, SeedConfig(users=USERS, seed=3, now=SEED_NOW), progress=False)
    return engine


def _resources(app_db: AppDatabase) -> dict[str, object]:
    return {"app_db": app_db, "clock": RunClock()}


def _job_config(**quality: Any) -> dict[str, Any]:
    return {
        "resources": {"clock": {"config": {"as_of": AS_OF}}},
        "ops": {"recommendation_quality": {"config": {"min_users": 10, **quality}}},
    }


def _run_nightly(app_db: AppDatabase, instance: dg.DagsterInstance,
                 **quality: Any) -> dg.ExecuteInProcessResult:
    job = defs.resolve_job_def("nightly_recommendations_job")
    return job.execute_in_process(run_config=_job_config(**quality), instance=instance,
                                  resources=_resources(app_db), raise_on_error=False)


def _gate(result: dg.ExecuteInProcessResult) -> Any:
    evaluations = [e for e in result.get_asset_check_evaluations()
                   if e.check_name == "quality_gate"]
    assert len(evaluations) == 1
    return evaluations[0]


def _published(engine: Engine) -> set[tuple[int, int, int]]:
    t = schema.tournament_recommendations
    with engine.connect() as conn:
        return {tuple(r) for r in conn.execute(sa.select(t.c.user_id, t.c.tournament_id, t.c.rank))}


def _count(engine: Engine, item: sa.Column, at: sa.Column, start: datetime,
           end: datetime) -> int:
    """Distinct (user, item) pairs with `start <= at < end`, filtered in pandas (independent of
    the reader's SQL; a team left and rejoined in the window counts once)."""
    with engine.connect() as conn:
        rows = conn.execute(sa.select(item.table.c.user_id, item, at)).all()
    frame = pd.DataFrame(rows, columns=["user_id", "item_id", "at"])
    at_ts = pd.to_datetime(frame["at"])
    inside = frame[(at_ts >= start) & (at_ts < end)]
    return len(inside[["user_id", "item_id"]].drop_duplicates())


def test_quality_asset_figures(app_db: AppDatabase, seeded: Engine,
                               dagster_instance: dg.DagsterInstance) -> None:
    result = dg.materialize(
        [recommendation_quality], resources=_resources(app_db), instance=dagster_instance,
        run_config={"resources": {"clock": {"config": {"as_of": AS_OF}}}},
    )
    assert result.success
    evaluation = result.output_for_node("recommendation_quality")
    meta = result.get_asset_materialization_events()[0].materialization.metadata
    cutoff = SEED_NOW - timedelta(days=14)
    assert meta["cutoff"].value == cutoff.isoformat()
    # The holdout window is [cutoff, now): the same counts as a plain Python filter.
    tp, tm = schema.tournament_participants, schema.team_members
    assert meta["tournaments/holdout_pairs_total"].value == _count(
        seeded, tp.c.tournament_id, tp.c.registered_at, cutoff, SEED_NOW)
    assert meta["teams/holdout_pairs_total"].value == _count(
        seeded, tm.c.team_id, tm.c.joined_at, cutoff, SEED_NOW)
    for kind in ("tournaments", "teams"):
        q = evaluation.report.kinds[kind]
        assert 0 < q.holdout_pairs <= meta[f"{kind}/holdout_pairs_total"].value
        assert 0 < q.model.users_evaluated == q.popularity.users_evaluated
        assert meta[f"{kind}/users_evaluated"].value == q.model.users_evaluated
        for name in ("ndcg@10", "recall@10", "hit_rate@10", "coverage", "popularity_ndcg@10"):
            value = meta[f"{kind}/{name}"]
            assert isinstance(value, dg.FloatMetadataValue)  # plotted run over run
            assert 0.0 <= value.value <= 1.0
        # HitRate >= Recall-free bound: a user with a hit has NDCG > 0.
        assert q.model.hit_rate >= q.model.ndcg > 0
    assert "| tournaments | model |" in meta["report"].value


def test_gate_blocks_publish_and_keeps_published_tables(
    app_db: AppDatabase, seeded: Engine, dagster_instance: dg.DagsterInstance
) -> None:
    # 1. No earlier run: the gate passes (and says why), the tables are published.
    first = _run_nightly(app_db, dagster_instance)
    assert first.success
    gate = _gate(first)
    assert gate.passed
    assert "no earlier published run" in gate.metadata["summary"].value
    published = _published(seeded)
    assert published

    # 2. An earlier published run that scored far better (NDCG 0.99): tonight's figures are
    #    a > 20 % drop -> the gate fails, the publish does not run, the tables stay as they were.
    @dg.asset(key=QUALITY_KEY)
    def fake_quality() -> dg.MaterializeResult:
        return dg.MaterializeResult(metadata={
            f"{kind}/{name}": value for kind in ("tournaments", "teams")
            for name, value in (("ndcg@10", dg.MetadataValue.float(0.99)),
                                ("users_evaluated", dg.MetadataValue.int(1000)))
        })

    @dg.asset(key=TOURNAMENT_RECOMMENDATIONS_KEY)
    def fake_published() -> None:
        return None

    fake = dg.materialize([fake_quality, fake_published], instance=dagster_instance)
    with seeded.begin() as conn:  # the app must keep seeing exactly these rows
        conn.execute(schema.tournament_recommendations.delete().where(
            schema.tournament_recommendations.c.rank > 1))
    published = _published(seeded)

    second = _run_nightly(app_db, dagster_instance)
    assert not second.success
    gate = _gate(second)
    assert not gate.passed
    assert "below the last published 0.9900" in gate.metadata["summary"].value
    assert gate.metadata["last_published_run"].value == fake.run_id
    assert "publish_recommendations" not in {
        e.step_key for e in second.all_events if e.event_type_value == "STEP_SUCCESS"}
    assert _published(seeded) == published

    # 3. Too little holdout data to judge: passes and says so; the publish runs again.
    third = _run_nightly(app_db, dagster_instance, min_users=10**6)
    assert third.success
    gate = _gate(third)
    assert gate.passed
    assert gate.metadata["summary"].value.count("too little holdout data") == 2
    assert len(_published(seeded)) > len(published)


def test_quality_gate_is_a_blocking_check_upstream_of_the_publish() -> None:
    (spec,) = quality_gate.check_specs
    assert spec.blocking and spec.asset_key == QUALITY_KEY
    graph = defs.get_repository_def().asset_graph
    assert QUALITY_KEY in graph.get(TOURNAMENT_RECOMMENDATIONS_KEY).parent_keys
