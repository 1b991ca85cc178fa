"""`recommendation_quality`: nightly offline evaluation of the recommender (temporal holdout).

Runs in the nightly job (group `recommendations`) BEFORE the publish step: the published tables
depend on it, and its blocking check `quality_gate` (`checks.py`) stops the publish when the
model got worse. What is measured and how: `recs_pipeline.compute.quality`; what "as of the
cutoff" can and cannot reconstruct from the app's tables: `quality_reading.py`.
"""

# No `from __future__ import annotations`: Dagster reads config / context annotations as objects.
import time
from datetime import timedelta
from typing import Any

import dagster as dg
from pydantic import Field

from recs_pipeline.compute.quality import (
    KINDS,
    QualityEvaluation,
    QualityReport,
    evaluate_holdout,
    report_table,
)
from recs_pipeline.compute.quality_gate import GateConfig
from recs_pipeline.compute.scoring import ScoringParams
from recs_pipeline.defs.app_tables import app_table_key
from recs_pipeline.defs.recommendations.assets import RECOMMENDATIONS_GROUP
from recs_pipeline.defs.recommendations.checks import QUALITY_KEY, ndcg_key, users_key
from recs_pipeline.defs.recommendations.quality_reading import read_snapshot
from recs_pipeline.resources import AppDatabase, RunClock


class QualityConfig(dg.Config):
    """The holdout window and the quality gate's thresholds."""

    holdout_days: int = Field(default=14, ge=1, le=80,
                              description="Cutoff = now - holdout_days; the holdout is [cutoff, "
                              "now). At most 80 so that the 90-day activity window before the "
                              "cutoff is still mostly inside the retention window.")
    top_k: int = Field(default=10, ge=1, le=100, description="K of the metrics (the published K).")
    max_users: int = Field(default=50_000, ge=1,
                           description="Evaluate at most this many holdout users (random sample).")
    min_users: int = Field(default=30, ge=0,
                           description="Gate: a kind with fewer holdout users is not judged "
                           "(passes, and says so).")
    max_relative_drop: float = Field(default=0.2, ge=0.0, le=1.0,
                                     description="Gate: fail when NDCG@K falls more than this "
                                     "fraction below the last published run's.")
    noise_z: float = Field(default=2.0, ge=0.0,
                           description="Gate: NDCG below popularity by at most this many standard "
                           "errors of the per-user paired difference is a tie, not a failure "
                           "(0 = strict).")


def quality_metadata(report: QualityReport) -> dict[str, Any]:
    """Numeric metadata (plotted run over run in the UI) plus a markdown table."""
    k = report.k
    flt = dg.MetadataValue.float
    meta: dict[str, Any] = {}
    for kind in KINDS:
        q = report.kinds[kind]
        meta[ndcg_key(kind, k)] = flt(q.model.ndcg)
        meta[f"{kind}/recall@{k}"] = flt(q.model.recall)
        meta[f"{kind}/hit_rate@{k}"] = flt(q.model.hit_rate)
        meta[f"{kind}/coverage"] = flt(q.model.coverage)
        meta[f"{kind}/popularity_ndcg@{k}"] = flt(q.popularity.ndcg)
        meta[f"{kind}/popularity_recall@{k}"] = flt(q.popularity.recall)
        meta[f"{kind}/popularity_hit_rate@{k}"] = flt(q.popularity.hit_rate)
        meta[f"{kind}/popularity_coverage"] = flt(q.popularity.coverage)
        lift = q.model.ndcg / q.popularity.ndcg if q.popularity.ndcg > 0 else 0.0
        meta[f"{kind}/ndcg_lift_vs_popularity"] = flt(lift)
        meta[f"{kind}/ndcg_diff_stderr"] = flt(q.diff_stderr)
        meta[users_key(kind)] = dg.MetadataValue.int(q.model.users_evaluated)
        meta[f"{kind}/candidates_at_cutoff"] = dg.MetadataValue.int(q.candidates)
        meta[f"{kind}/holdout_pairs"] = dg.MetadataValue.int(q.holdout_pairs)
        meta[f"{kind}/holdout_pairs_total"] = dg.MetadataValue.int(q.holdout_pairs_total)
    meta.update({
        "cutoff": report.cutoff.isoformat(),
        "now": report.now.isoformat(),
        "k": k,
        "users_at_cutoff": report.users_at_cutoff,
        "users_scored": report.users_scored,
        "model_version": report.model_version,
        "seconds_evaluate": flt(round(report.seconds, 3)),
        "report": dg.MetadataValue.md(report_table(report)),
    })
    return meta


@dg.asset(
    key=QUALITY_KEY,
    group_name=RECOMMENDATIONS_GROUP,
    deps=[app_table_key(t) for t in (
        "users", "game_profiles", "profile_completeness", "activities",
        "tournament_participants", "tournaments", "team_members", "teams", "games",
    )],
    kinds={"pandas"},
)
def recommendation_quality(
    context: dg.AssetExecutionContext,
    config: QualityConfig,
    app_db: AppDatabase,
    clock: RunClock,
) -> dg.Output[QualityEvaluation]:
    """Offline quality of tonight's recommender on a temporal holdout: the recommendations it
    would have made `holdout_days` ago (rebuilt from the data before that cutoff with the same
    code and parameters) scored against what users actually registered for / joined since:
    NDCG@10, Recall@10, HitRate@10 and catalogue coverage per kind, next to a popularity baseline
    computed the same way. The blocking check `quality_gate` judges it before the publish."""
    now = clock.now()
    cutoff = now - timedelta(days=config.holdout_days)
    t0 = time.perf_counter()
    with app_db.connect() as conn:
        snapshot = read_snapshot(conn, cutoff, now)
    read_s = time.perf_counter() - t0
    report = evaluate_holdout(
        snapshot.users, snapshot.tournaments, snapshot.teams,
        {"tournaments": snapshot.tournament_holdout, "teams": snapshot.team_holdout},
        ScoringParams(top_k=config.top_k), snapshot.cutoff, snapshot.now,
        max_users=config.max_users,
    )
    for kind in KINDS:
        q = report.kinds[kind]
        context.log.info(f"{kind}: NDCG@{report.k} {q.model.ndcg:.4f} vs popularity "
                         f"{q.popularity.ndcg:.4f} over {q.model.users_evaluated} holdout users")
    gate = GateConfig(min_users=config.min_users, max_relative_drop=config.max_relative_drop,
                      noise_z=config.noise_z)
    metadata = {
        **quality_metadata(report),
        "holdout_days": config.holdout_days,
        "gate_min_users": config.min_users,
        "gate_max_relative_drop": dg.MetadataValue.float(float(config.max_relative_drop)),
        "gate_noise_z": dg.MetadataValue.float(float(config.noise_z)),
        "seconds_read": dg.MetadataValue.float(round(read_s, 3)),
    }
    return dg.Output(QualityEvaluation(report=report, gate=gate), metadata=metadata)

