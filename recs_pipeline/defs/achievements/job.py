"""`achievements_job`: turn a batch of `app_events` into achievement awards, exactly once.

load_events -> compute_metrics -> evaluate_achievements -> award_and_mark_processed

* `load_events` reads the batch (id ranges and/or explicit ids from the run config, or every
  pending event with `all_pending`), skips events already in the ledger, and splits off bad
  events (unknown type, NULL user, malformed JSON payload, user not found) as dead letters.
* `compute_metrics` computes the contract's metrics for all of the batch's users with one
  set-based query per metric family (never per user).
* `evaluate_achievements` is pure (`recs_pipeline.compute.achievements.evaluate_awards`).
* `award_and_mark_processed` writes awards (`ON CONFLICT DO NOTHING` on the unique key), dead
  letters and the ledger in ONE transaction: awarding and marking processed cannot be split by a
  crash, so they are one op.

Transient database errors (connection lost, deadlock, serialization failure) are retried with
exponential backoff; anything else fails the step at once. Re-running a batch changes nothing:
loaded events exclude the ledger, and awards/ledger inserts ignore conflicts.

(No `from __future__ import annotations` here: Dagster reads the op config annotations at
decoration time.)
"""

from collections import Counter
from dataclasses import dataclass

import dagster as dg
import pandas as pd
from pydantic import Field

from recs_pipeline.compute.achievements import evaluate_awards
from recs_pipeline.compute.timestamps import utc_now
from recs_pipeline.config import FailFastConfig
from recs_pipeline.defs.achievements import store
from recs_pipeline.defs.app_tables import USER_ACHIEVEMENTS_KEY
from recs_pipeline.resources import AppDatabase
from recs_pipeline.retries import transient_only, transient_retry_policy
from recs_pipeline.tags import ACHIEVEMENTS_TAGS

ACHIEVEMENTS_JOB_NAME = "achievements_job"

# Each achievement run is idempotent: retries ride out a database restart or failover of about
# 5 + 15 + 35 + 75 = 130 s before the run fails (and the failure alert fires).
TRANSIENT_DB_RETRY = transient_retry_policy(max_retries=4, delay=5.0)


class AchievementsBatchConfig(FailFastConfig):
    """Which events this run covers. The sensor fills `event_id_ranges`."""

    event_id_ranges: list[list[int]] = Field(
        default_factory=list,
        description="Inclusive [first, last] id ranges: the pending achievement events inside.",
    )
    event_ids: list[int] = Field(
        default_factory=list,
        description="Explicit event ids, whatever their type (an unknown type is dead-lettered).",
    )
    all_pending: bool = Field(
        default=False,
        description="Also take every pending achievement event, oldest first, up to max_events.",
    )
    max_events: int = Field(default=100_000, gt=0, description="Cap for all_pending.")


@dataclass
class MetricsOutput:
    batch: store.EventBatch
    metrics: pd.DataFrame
    achievements: pd.DataFrame


@dg.op(retry_policy=TRANSIENT_DB_RETRY, out=dg.Out(store.EventBatch))
@transient_only
def load_events(
    context: dg.OpExecutionContext, config: AchievementsBatchConfig, app_db: AppDatabase
) -> store.EventBatch:
    """Load the batch's unprocessed events and dead-letter the bad ones (no DB writes yet)."""
    ranges = [r for r in config.event_id_ranges]
    for r in ranges:
        if len(r) != 2 or r[0] > r[1]:
            raise dg.Failure(f"bad event_id_ranges entry {r}: expected [first, last], first<=last",
                             allow_retries=False)
    engine = app_db.get_engine()
    store.ensure_tables(engine)
    with engine.connect() as conn:
        ids = list(config.event_ids)
        if config.all_pending:
            ids += store.pending_event_ids(conn, limit=config.max_events)
        batch = store.load_batch(conn, ranges=ranges, event_ids=sorted(set(ids)))
    if batch.missing_ids:
        context.log.warning(f"{len(batch.missing_ids)} requested event ids do not exist in "
                            f"app_events (first: {batch.missing_ids[:10]})")
    latency = (
        (pd.Timestamp(utc_now()) - batch.oldest_created_at).total_seconds()
        if batch.oldest_created_at is not None else None
    )
    context.add_output_metadata({
        **app_db.run_metadata(),
        "events_loaded": batch.loaded,
        "events_valid": len(batch.events),
        "dead_lettered": len(batch.dead_letters),
        "missing_event_ids": len(batch.missing_ids),
        "oldest_event_age_seconds": dg.MetadataValue.float(float(latency or 0.0)),
    })
    return batch


@dg.op(retry_policy=TRANSIENT_DB_RETRY)
@transient_only
def compute_metrics(
    context: dg.OpExecutionContext, batch: store.EventBatch, app_db: AppDatabase
) -> MetricsOutput:
    """Metrics of every user in the batch: one set-based query per metric family."""
    with app_db.connect() as conn:
        metrics, achievements, queries = store.batch_metrics(conn, batch.events)
    context.add_output_metadata({
        "users": len(metrics),
        "metrics": ", ".join(c for c in metrics.columns if c != "user_id") or "none",
        "queries": queries,
        "achievements_considered": len(achievements),
    })
    return MetricsOutput(batch=batch, metrics=metrics, achievements=achievements)


@dg.op
def evaluate_achievements(context: dg.OpExecutionContext, data: MetricsOutput) -> MetricsOutput:
    """Pure rule evaluation: active achievements of the event's type, metric >= threshold."""
    awards = evaluate_awards(data.batch.events, data.metrics, data.achievements)
    context.add_output_metadata({"candidate_awards": len(awards)})
    return MetricsOutput(batch=data.batch, metrics=awards, achievements=data.achievements)


@dg.op(retry_policy=TRANSIENT_DB_RETRY)
@transient_only
def award_and_mark_processed(
    context: dg.OpExecutionContext, data: MetricsOutput, app_db: AppDatabase
) -> None:
    """Insert awards, dead letters and ledger rows in one transaction (idempotent)."""
    batch = data.batch
    with app_db.begin() as conn:
        written = store.write_outcomes(
            conn, events=batch.events, awards=data.metrics, dead_letters=batch.dead_letters,
            run_id=context.run_id,
        )
    # Counted after the commit: inside, it would hold the award rows' locks while it scans,
    # and an overlapping batch inserting the same (user, achievement) would wait for it.
    with app_db.connect() as conn:
        rows = store.user_achievement_rows(conn)
    per_code = Counter(written.awarded["code"].astype(str))
    reasons = Counter(batch.dead_letters["reason"].astype(str))
    latency = (
        (pd.Timestamp(utc_now()) - batch.oldest_created_at).total_seconds()
        if batch.oldest_created_at is not None else 0.0
    )
    processed = len(batch.events) + len(batch.dead_letters)
    context.log.info(
        f"processed {processed} events: {len(written.awarded)} awards, "
        f"{len(batch.dead_letters)} dead-lettered {dict(reasons)}"
    )
    context.add_output_metadata({
        "events_processed": processed,
        "awards": len(written.awarded),
        "awards_by_achievement": dg.MetadataValue.json(dict(sorted(per_code.items()))),
        "dead_lettered": len(batch.dead_letters),
        "dead_letter_reasons": dg.MetadataValue.json(dict(sorted(reasons.items()))),
        "ledger_outcomes": dg.MetadataValue.json(written.outcomes),
        "oldest_event_age_seconds": dg.MetadataValue.float(float(latency)),
    })
    context.log_event(dg.AssetMaterialization(asset_key=USER_ACHIEVEMENTS_KEY, metadata={
        "dagster/row_count": rows,
        "awards": len(written.awarded),
        "events_processed": processed,
        "dead_lettered": len(batch.dead_letters),
    }))


@dg.job(
    name=ACHIEVEMENTS_JOB_NAME,
    tags=ACHIEVEMENTS_TAGS,
    executor_def=dg.in_process_executor,
    description="Award achievements for a batch of app_events (outbox) exactly once; bad events "
    "go to achievement_dead_letters. Requested by achievement_events_sensor.",
)
def achievements_job() -> None:
    award_and_mark_processed(evaluate_achievements(compute_metrics(load_events())))
