"""`recommendation_quality` and `quality_gate` on a small seeded database (both backends): the
figures, the windows read as of their cutoffs, and a failing gate publishing the fallback."""

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
from recs_pipeline.resources import AppDatabase, InputQuarantinePolicy, RunClock

SEED_NOW = datetime(2026, 6, 1)
AS_OF = "2026-06-01T00:00:00"
USERS = 1500


@pytest.fixture
def seeded(engine: Engine) -> Engine:
    seed_database(engine, SeedConfig(users=USERS, seed=3, now=SEED_NOW), progress=False)
    return engine


def _resources(app_db: AppDatabase) -> dict[str, object]:
    return {"app_db": app_db, "clock": RunClock(), "input_quarantine": InputQuarantinePolicy()}


def _job_config(**quality: Any) -> dict[str, Any]:
    return {
        "resources": {"clock": {"config": {"as_of": AS_OF, "backfill": True}}},
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
        run_config={"resources": {"clock": {"config": {"as_of": AS_OF, "backfill": True}}}},
    )
    assert result.success
    evaluation = result.output_for_node("recommendation_quality")
    meta = result.get_asset_materialization_events()[0].materialization.metadata
    cutoff = SEED_NOW - timedelta(days=14)
    assert meta["cutoff"].value == cutoff.isoformat()
    assert meta["training_cutoff"].value == (cutoff - timedelta(days=14)).isoformat()
    # The validation window is [cutoff, now): the same counts as a plain Python filter.
    tp, tm = schema.tournament_participants, schema.team_members
    assert meta["tournaments/holdout_pairs_total"].value == _count(
        seeded, tp.c.tournament_id, tp.c.registered_at, cutoff, SEED_NOW)
    assert meta["teams/holdout_pairs_total"].value == _count(
        seeded, tm.c.team_id, tm.c.joined_at, cutoff, SEED_NOW)
    for kind in ("tournaments", "teams"):
        q = evaluation.report.kinds[kind]
        assert 0 < q.holdout_pairs <= meta[f"{kind}/holdout_pairs_total"].value
        assert set(q.contenders) == {"ranker", "blend", "popularity", "random"}
        assert q.training["positives"] > 0  # the ranker was trained on the earlier window
        assert len({c.users for c in q.contenders.values()}) == 1  # the same users for all
        assert meta[f"{kind}/champion"].value == q.champion
        assert meta[f"{kind}/users_evaluated"].value == q.published.users > 0
        for name in ("ndcg@10", "recall@10", "hit_rate@10", "coverage", "pool_recall",
                     "ranker/ndcg@10", "blend/ndcg@10", "popularity/ndcg@10",
                     "random/ndcg@10", "popularity/stderr_vs_published"):
            value = meta[f"{kind}/{name}"]
            assert isinstance(value, dg.FloatMetadataValue)  # plotted run over run
            assert 0.0 <= value.value <= 1.0
        assert meta[f"{kind}/ndcg@10"].value == q.contenders[q.champion].ndcg
        assert q.contenders[q.champion].stderr_vs_champion == 0.0
        assert q.published.hit_rate >= q.published.ndcg > 0
        # On this seed the personal signal is strong: something beats random by far.
        assert q.champion != "random" and q.published.z_vs_random > 2
    assert "(published)" in meta["report"].value
    if any(q.champion == "ranker" for q in evaluation.report.kinds.values()):
        assert evaluation.ranker is not None


def _has_rows_for_everyone(engine: Engine) -> None:
    """No empty night: both tables have rows, and the coverage check passed on them."""
    with engine.connect() as conn:
        for table in (schema.tournament_recommendations, schema.team_recommendations):
            assert conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one() > 0


def test_gate_warns_and_the_fallback_is_published(
    app_db: AppDatabase, seeded: Engine, dagster_instance: dg.DagsterInstance,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # 1. No earlier run, the evaluation's champion is published.
    first = _run_nightly(app_db, dagster_instance)
    assert first.success
    champions = {kind: first.output_for_node("recommendation_quality").report.kinds[kind].champion
                 for kind in ("tournaments", "teams")}
    _has_rows_for_everyone(seeded)
    versions = _versions(seeded)
    assert versions == {kind: champions[kind] for kind in versions}

    # 2. The learned ranker cannot be trained tonight: the gate WARNs (never blocks), the
    #    best other contender is published, and an alert is raised.
    from recs_pipeline.compute import quality as quality_compute
    from recs_pipeline.compute.ranker import LearnedRanker, RankerParams

    monkeypatch.setattr(quality_compute, "fit_ranker",
                        lambda *args, **kwargs: LearnedRanker(RankerParams()))
    second = _run_nightly(app_db, dagster_instance)
    assert second.success
    gate = _gate(second)
    assert not gate.passed and gate.severity == dg.AssetCheckSeverity.WARN
    assert gate.metadata["summary"].value.count("no learned ranker tonight") == 2
    report = second.output_for_node("recommendation_quality").report
    fallback = {kind: q.champion for kind, q in report.kinds.items()}
    assert "ranker" not in fallback.values()
    assert _versions(seeded) == fallback
    _has_rows_for_everyone(seeded)
    logs = [e.user_message for e in dagster_instance.all_logs(second.run_id)]
    assert any(m.startswith("RECS_ALERT") and "recommendation_quality_gate" in m for m in logs)
    monkeypatch.undo()

    # 3. An earlier published run that scored far better (NDCG 0.99): tonight is a > 20 % drop
    #    -> WARN with the reason, and tonight's rows are published all the same.
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
    with seeded.begin() as conn:
        conn.execute(schema.tournament_recommendations.delete())
    third = _run_nightly(app_db, dagster_instance, publish_contender="ranker")
    assert third.success
    gate = _gate(third)
    assert not gate.passed
    assert "below the last published 0.9900" in gate.metadata["summary"].value
    assert gate.metadata["last_published_run"].value == fake.run_id
    _has_rows_for_everyone(seeded)

    # 4. Too little holdout data to judge: passes and says so; the default blend is published.
    fourth = _run_nightly(app_db, dagster_instance, min_users=10**6)
    assert fourth.success
    gate = _gate(fourth)
    assert gate.passed
    assert gate.metadata["summary"].value.count("too little holdout data") == 2
    assert _versions(seeded) == {"tournaments": "blend", "teams": "blend"}


def _versions(engine: Engine) -> dict[str, str]:
    """The contender each published table was ranked by (its model_version prefix)."""
    out = {}
    with engine.connect() as conn:
        for kind, table in (("tournaments", schema.tournament_recommendations),
                            ("teams", schema.team_recommendations)):
            names = {v.split("-v1-")[0] for (v,) in conn.execute(
                sa.select(table.c.model_version).distinct())}
            assert len(names) == 1
            out[kind] = names.pop()
    return out



def test_only_broken_output_blocks_the_publish() -> None:
    # The gate informs (WARN) and never blocks; the checks on the staged rows block.
    (spec,) = quality_gate.check_specs
    assert not spec.blocking and spec.asset_key == QUALITY_KEY
    graph = defs.get_repository_def().asset_graph
    assert QUALITY_KEY in graph.get(TOURNAMENT_RECOMMENDATIONS_KEY).parent_keys
    publish_checks = [s for s in graph.get(TOURNAMENT_RECOMMENDATIONS_KEY).assets_def.check_specs]
    assert publish_checks and all(s.blocking for s in publish_checks)
