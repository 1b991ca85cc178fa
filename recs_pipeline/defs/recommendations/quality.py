"""`recommendation_quality`: the nightly evaluation, champion/challenger (temporal holdouts).

Runs in the nightly job (group `recommendations`) BEFORE the publish step, which ranks each kind
by the champion chosen here (and uses the ranker fitted here). Its check `quality_gate`
(`checks.py`) reports WARN when the learned ranker is not what gets published, or when the
published quality fell. What is measured and how: `recs_pipeline.compute.quality` and
`recs_pipeline.compute.champion`; what "as of the cutoff" can and cannot reconstruct from the
app's tables: `quality_reading.py`.
"""

# No `from __future__ import annotations`: Dagster reads config / context annotations as objects.
import time
from datetime import timedelta
from typing import Any

import dagster as dg

from recs_pipeline.compute.champion import KINDS
from recs_pipeline.compute.quality import (
    QualityEvaluation,
    QualityReport,
    nightly_evaluation,
    report_table,
)
from recs_pipeline.compute.quality_gate import GateConfig
from recs_pipeline.compute.scoring import ScoringParams
from recs_pipeline.config import validate_run_config
from recs_pipeline.defs.app_tables import app_table_key
from recs_pipeline.defs.recommendations.assets import RECOMMENDATIONS_GROUP
from recs_pipeline.defs.recommendations.checks import QUALITY_KEY, ndcg_key, users_key
from recs_pipeline.defs.recommendations.config import NIGHTLY_STEP_CONFIG, QualityConfig
from recs_pipeline.defs.recommendations.quality_reading import read_snapshot
from recs_pipeline.resources import AppDatabase, RunClock
from recs_pipeline.retries import transient_only
from recs_pipeline.tags import DATA_PLATFORM_OWNERS


def quality_metadata(report: QualityReport) -> dict[str, Any]:
    """Numeric metadata (plotted run over run in the UI) plus a markdown table.

    Per kind: the published contender's figures under the historic keys (`<kind>/ndcg@K`, ...,
    what the gate compares night over night), and every contender's NDCG@K / Recall@K with its
    paired standard error against the published one.
    """
    k = report.k
    flt = dg.MetadataValue.float
    meta: dict[str, Any] = {}
    for kind in KINDS:
        q = report.kinds[kind]
        published = q.published
        meta[f"{kind}/champion"] = q.champion
        meta[f"{kind}/champion_reason"] = q.reason
        meta[ndcg_key(kind, k)] = flt(published.ndcg)
        meta[f"{kind}/recall@{k}"] = flt(published.recall)
        meta[f"{kind}/hit_rate@{k}"] = flt(published.hit_rate)
        meta[f"{kind}/coverage"] = flt(published.coverage)
        for name, c in q.contenders.items():
            meta[f"{kind}/{name}/ndcg@{k}"] = flt(c.ndcg)
            meta[f"{kind}/{name}/recall@{k}"] = flt(c.recall)
            meta[f"{kind}/{name}/stderr_vs_published"] = flt(c.stderr_vs_champion)
            meta[f"{kind}/{name}/z_vs_random"] = flt(c.z_vs_random)
        meta[users_key(kind)] = dg.MetadataValue.int(published.users)
        meta[f"{kind}/candidates_at_cutoff"] = dg.MetadataValue.int(q.candidates)
        meta[f"{kind}/holdout_pairs"] = dg.MetadataValue.int(q.holdout_pairs)
        meta[f"{kind}/holdout_pairs_total"] = dg.MetadataValue.int(q.holdout_pairs_total)
        meta[f"{kind}/pool_recall"] = flt(q.pool_recall)
        if q.training:
            meta[f"{kind}/ranker_training_rows"] = dg.MetadataValue.int(q.training["rows"])
            meta[f"{kind}/ranker_training_positives"] = dg.MetadataValue.int(
                q.training["positives"])
    meta.update({
        "training_cutoff": report.training_cutoff.isoformat() if report.training_cutoff
        else "none (less history than two windows)",
        "cutoff": report.cutoff.isoformat(),
        "now": report.now.isoformat(),
        "k": k,
        "users_at_cutoff": report.users_at_cutoff,
        "users_scored": report.users_scored,
        "seconds_evaluate": flt(round(report.seconds, 3)),
        "report": dg.MetadataValue.md(report_table(report)),
    })
    return meta


@dg.asset(
    key=QUALITY_KEY,
    group_name=RECOMMENDATIONS_GROUP,
    owners=DATA_PLATFORM_OWNERS,
    deps=[app_table_key(t) for t in (
        "users", "game_profiles", "profile_completeness", "activities",
        "tournament_participants", "tournaments", "team_members", "teams", "games",
    )],
    kinds={"pandas"},
)
@transient_only
def recommendation_quality(
    context: dg.AssetExecutionContext,
    config: QualityConfig,
    app_db: AppDatabase,
    clock: RunClock,
) -> dg.Output[QualityEvaluation]:
    """Champion/challenger on temporal holdouts: the learned ranker is fitted on what users did
    in [now - 2d, now - d) (d = holdout_days), then it, the hand blend, popularity and random
    rank the same users as of now - d, scored against what they did since (NDCG@10, Recall@10,
    HitRate@10, coverage, paired standard errors). The best contender significantly above
    random is published tonight (popularity when none is); the ranker is refitted on the latest
    window. `quality_gate` warns when the learned ranker is not what gets published."""
    validate_run_config(context, NIGHTLY_STEP_CONFIG)
    now = clock.now()
    window = timedelta(days=config.holdout_days)
    t0 = time.perf_counter()
    with app_db.connect() as conn:
        validation = read_snapshot(conn, now - window, now)
        training = read_snapshot(conn, now - 2 * window, now - window)
    read_s = time.perf_counter() - t0
    gate = GateConfig(min_users=config.min_users, max_relative_drop=config.max_relative_drop,
                      noise_z=config.noise_z)
    has_training = not (training.tournament_holdout.empty and training.team_holdout.empty)
    report, ranker = nightly_evaluation(
        training.holdout() if has_training else None, validation.holdout(),
        ScoringParams(top_k=config.top_k), gate, max_users=config.max_users,
        pinned=config.publish_contender,
    )
    for kind in KINDS:
        q = report.kinds[kind]
        context.log.info(f"{kind}: publishing {q.champion} (NDCG@{report.k} "
                         f"{q.published.ndcg:.4f}, {q.published.users} holdout users): "
                         f"{q.reason}")
    metadata = {
        **quality_metadata(report),
        "holdout_days": config.holdout_days,
        "gate_min_users": config.min_users,
        "gate_max_relative_drop": dg.MetadataValue.float(float(config.max_relative_drop)),
        "gate_noise_z": dg.MetadataValue.float(float(config.noise_z)),
        "seconds_read": dg.MetadataValue.float(round(read_s, 3)),
    }
    return dg.Output(QualityEvaluation(report=report, gate=gate, ranker=ranker),
                     metadata=metadata)
