"""`nightly_recommendations_bucketed_job`: the nightly refresh split into user hash buckets.

The scale-out variant of `nightly_recommendations_job` (which stays the default): users are
split into `NUM_BUCKETS` buckets by `crc32(user_id)` (`recs_pipeline.compute.buckets`), one
partition = one bucket = one run, so buckets run in parallel on as many run workers as the
deployment has (the Celery run launcher in `deploy/celery/dagster.yaml`, Kubernetes pods, ...).

Per run:

1. `score_recommendation_bucket` reads the same inputs as the nightly refresh, fits the same
   population-wide model, scores only the bucket's users (`recommend(..., user_ids=...)`, so a
   user's rows are exactly what a single-process run gives) and writes them into the bucket's
   own staging tables `<table>__bucket_NN`, plus a row in `recommendation_bucket_manifest` - in
   one transaction.
2. `publish_recommendation_buckets` publishes when every bucket of the same refresh (`as_of` and
   model version) is in the manifest: the first run to see that claims the publish (one UPDATE
   of all manifest rows; a concurrent claimer updates none), concatenates the buckets and hands
   them to the nightly refresh's own `stage_check_publish`: same staging, same blocking checks,
   same single-transaction swap of both published tables. Readers never see a mix of buckets
   or refreshes. Otherwise it records which buckets it is waiting for and succeeds.

All buckets of one refresh must share `as_of`: the schedule passes its tick time to every bucket
(`resources.clock.config.as_of` and the `recs/refresh_as_of` tag); a manual launch or backfill
must pass the same `as_of` to each bucket (docs/operations.md). Costs: every bucket re-reads the
inputs and refits the model (both small next to scoring at scale); see docs/operations.md.

(No `from __future__ import annotations`: Dagster reads the op config annotations.)
"""

import os
import socket
import time
from dataclasses import dataclass
from datetime import datetime

import dagster as dg
import numpy as np
import pandas as pd
import sqlalchemy as sa
from pydantic import Field
from sqlalchemy.engine import Engine

from recs_pipeline import schema
from recs_pipeline.bootstrap import ensure_pipeline_tables
from recs_pipeline.compute.buckets import NUM_BUCKETS, bucket_index, bucket_key, user_buckets
from recs_pipeline.compute.candidates import CandidateSet
from recs_pipeline.compute.features import UserFeatureSet
from recs_pipeline.compute.scoring import Recommendations, ScoringParams, recommend
from recs_pipeline.compute.timestamps import utc_now
from recs_pipeline.config import FailFastConfig
from recs_pipeline.db import bulk_insert, read_frame
from recs_pipeline.defs.recommendations.checks import (
    MIN_COVERAGE,
    TEAM_RECOMMENDATIONS_KEY,
    TOURNAMENT_RECOMMENDATIONS_KEY,
)
from recs_pipeline.defs.recommendations.publishing import (
    KINDS,
    TEAMS,
    TOURNAMENTS,
    RecommendationKind,
)
from recs_pipeline.defs.recommendations.reading import (
    build_user_feature_set,
    load_team_candidates,
    load_tournament_candidates,
    read_user_inputs,
)
from recs_pipeline.defs.recommendations.run import stage_check_publish
from recs_pipeline.resources import AppDatabase, RunClock
from recs_pipeline.retries import transient_only, transient_retry_policy
from recs_pipeline.tags import RECOMMENDATION_BUCKET_TAGS, REFRESH_AS_OF_TAG

BUCKETED_JOB_NAME = "nightly_recommendations_bucketed_job"
recommendation_buckets = dg.StaticPartitionsDefinition(
    [bucket_key(i) for i in range(NUM_BUCKETS)]
)


def bucket_table(kind: RecommendationKind, bucket: int) -> sa.Table:
    """The staging table holding one bucket's rows of one kind (contract shape)."""
    return schema.recommendation_table(
        f"{kind.table.name}__bucket_{bucket:02d}", kind.item_column, sa.MetaData()
    )


def _frame(recs: Recommendations, kind: RecommendationKind) -> pd.DataFrame:
    frame = recs.tournaments if kind is TOURNAMENTS else recs.teams
    return frame[[c.name for c in kind.table.columns]]


def write_bucket(
    engine: Engine, bucket: int, as_of: datetime, recs: Recommendations, run_id: str
) -> None:
    """Replace the bucket's staging rows and manifest entry in one transaction."""
    ensure_pipeline_tables(engine)
    manifest = schema.recommendation_bucket_manifest
    with engine.begin() as conn:
        conn.execute(manifest.delete().where(manifest.c.bucket == bucket))
        for kind in KINDS:
            table = bucket_table(kind, bucket)
            table.drop(conn, checkfirst=True)
            table.create(conn)
            bulk_insert(conn, table, _frame(recs, kind))
        conn.execute(manifest.insert().values(
            bucket=bucket, n_buckets=NUM_BUCKETS, as_of=as_of, model_version=recs.model_version,
            run_id=run_id, users_scored=int(recs.stats["users_scored"]),
            users_with_tournaments=int(recs.users_with_candidates["tournaments"]),
            users_with_teams=int(recs.users_with_candidates["teams"]),
            tournament_rows=len(recs.tournaments), team_rows=len(recs.teams),
            written_at=utc_now(), published_by_run=None,
        ))


def drop_bucket_tables(engine: Engine) -> None:
    with engine.begin() as conn:
        for bucket in range(NUM_BUCKETS):
            for kind in KINDS:
                bucket_table(kind, bucket).drop(conn, checkfirst=True)


def _process_identity() -> dict[str, object]:
    """Where this step ran (the Celery test checks it is a worker, not the launcher)."""
    return {"pid": os.getpid(), "pgid": os.getpgid(0), "host": socket.gethostname()}


@dataclass
class ScoredBucket:
    """What the publish step needs: the refresh time and the whole population's context."""

    bucket: int
    as_of: datetime
    model_version: str
    top_k: int
    users: UserFeatureSet
    tournament_candidates: CandidateSet
    team_candidates: CandidateSet


class BucketConfig(FailFastConfig):
    top_k: int = Field(default=10, ge=1, le=100, description="Recommendations per user and kind.")


class BucketPublishConfig(FailFastConfig):
    min_coverage: float = Field(
        default=MIN_COVERAGE, ge=0.0, le=1.0,
        description="Blocking: share of users with an eligible item who must get rows.",
    )


@dg.op(retry_policy=transient_retry_policy(max_retries=2, delay=5.0))
@transient_only
def score_recommendation_bucket(
    context: dg.OpExecutionContext, config: BucketConfig, app_db: AppDatabase, clock: RunClock
) -> ScoredBucket:
    """Score the partition's bucket of users and stage its rows (one transaction)."""
    bucket = bucket_index(context.partition_key)
    as_of = clock.now()
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    with app_db.connect() as conn:
        inputs = read_user_inputs(conn, as_of)
        tournament_candidates = load_tournament_candidates(conn, as_of)
        team_candidates = load_team_candidates(conn, as_of)
    timings["read"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    users = build_user_feature_set(inputs, as_of)
    all_ids = users.features["user_id"].to_numpy(dtype=np.int64)
    bucket_ids = all_ids[user_buckets(all_ids, NUM_BUCKETS) == bucket]
    recs = recommend(users, tournament_candidates, team_candidates,
                     ScoringParams(top_k=config.top_k), as_of,
                     user_ids=bucket_ids)
    timings["score"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    write_bucket(app_db.get_engine(), bucket, as_of, recs, context.run_id)
    timings["write"] = time.perf_counter() - t0
    context.add_output_metadata({
        **app_db.run_metadata(),
        "bucket": bucket,
        "as_of": as_of.isoformat(),
        "users_in_population": len(all_ids),
        "users_in_bucket": len(bucket_ids),
        "tournament_rows": len(recs.tournaments),
        "team_rows": len(recs.teams),
        "model_version": recs.model_version,
        "executed_by": dg.MetadataValue.json(_process_identity()),
        **{f"seconds_{k}": round(v, 3) for k, v in timings.items()},
    })
    return ScoredBucket(bucket, as_of, recs.model_version, config.top_k, users,
                        tournament_candidates, team_candidates)


def _read_buckets(engine: Engine, kind: RecommendationKind) -> pd.DataFrame:
    with engine.connect() as conn:
        frames = [
            read_frame(conn, sa.select(bucket_table(kind, b)), timestamp_columns=["generated_at"])
            for b in range(NUM_BUCKETS)
        ]
    frame = pd.concat(frames, ignore_index=True)
    return frame.sort_values(["user_id", "rank"]).reset_index(drop=True)


@dg.op(out=dg.Out(dg.Nothing))
def publish_recommendation_buckets(
    context: dg.OpExecutionContext,
    config: BucketPublishConfig,
    app_db: AppDatabase,
    scored: ScoredBucket,
) -> None:
    """When every bucket of this refresh is staged: check and swap them all in at once."""
    engine = app_db.get_engine()
    manifest = schema.recommendation_bucket_manifest
    same_refresh = sa.and_(
        manifest.c.as_of == scored.as_of,
        manifest.c.model_version == scored.model_version,
        manifest.c.n_buckets == NUM_BUCKETS,
    )
    with engine.connect() as conn:
        rows = conn.execute(sa.select(manifest).where(same_refresh)).all()
    missing = sorted(set(range(NUM_BUCKETS)) - {r.bucket for r in rows})
    if missing:
        context.log.info(f"waiting for buckets {missing} of the {scored.as_of} refresh")
        context.add_output_metadata({"published": False, "waiting_for_buckets": missing,
                                     "executed_by": dg.MetadataValue.json(_process_identity())})
        return
    with engine.connect() as conn, conn.begin() as tx:
        claimed = conn.execute(
            manifest.update().where(same_refresh, manifest.c.published_by_run.is_(None))
            .values(published_by_run=context.run_id)
        ).rowcount
        if claimed != NUM_BUCKETS:
            tx.rollback()
            context.log.info("this refresh is published (or being published) by another run")
            context.add_output_metadata({
                "published": False, "published_by_another_run": True,
                "executed_by": dg.MetadataValue.json(_process_identity()),
            })
            return
        tx.commit()
    recs = Recommendations(
        tournaments=_read_buckets(engine, TOURNAMENTS),
        teams=_read_buckets(engine, TEAMS),
        model_version=scored.model_version,
        timings={},
        users_with_candidates={
            "tournaments": sum(r.users_with_tournaments for r in rows),
            "teams": sum(r.users_with_teams for r in rows),
        },
        stats={"users_scored": sum(r.users_scored for r in rows)},
    )
    try:
        outcome = stage_check_publish(
            engine, recs, scored.users, scored.tournament_candidates, scored.team_candidates,
            top_k=scored.top_k,
            now=scored.as_of, min_coverage=config.min_coverage,
        )
    except Exception:
        _release_claim(engine, same_refresh)
        raise
    for check in outcome.checks:
        context.log.info(f"check {check.kind}/{check.name}: "
                         f"{'passed' if check.passed else 'FAILED'} - {check.description}")
    if not outcome.published:
        _release_claim(engine, same_refresh)
        raise dg.Failure(
            description="bucketed recommendations not published (published tables unchanged): "
            + outcome.failure_message(),
            allow_retries=False,
        )
    drop_bucket_tables(engine)
    for key, frame in ((TOURNAMENT_RECOMMENDATIONS_KEY, recs.tournaments),
                       (TEAM_RECOMMENDATIONS_KEY, recs.teams)):
        context.log_event(dg.AssetMaterialization(asset_key=key, metadata={
            "dagster/row_count": len(frame),
            "users_covered": int(frame["user_id"].nunique()) if len(frame) else 0,
            "buckets": NUM_BUCKETS,
            "as_of": scored.as_of.isoformat(),
            "model_version": scored.model_version,
            "published_by": "nightly_recommendations_bucketed_job",
        }))
    context.add_output_metadata({
        "published": True,
        "tournament_rows": len(recs.tournaments),
        "team_rows": len(recs.teams),
        "executed_by": dg.MetadataValue.json(_process_identity()),
    })


def _release_claim(engine: Engine, same_refresh: sa.ColumnElement) -> None:
    manifest = schema.recommendation_bucket_manifest
    with engine.begin() as conn:
        conn.execute(manifest.update().where(same_refresh).values(published_by_run=None))


@dg.job(
    name=BUCKETED_JOB_NAME,
    partitions_def=recommendation_buckets,
    tags=RECOMMENDATION_BUCKET_TAGS,
    executor_def=dg.in_process_executor,
    description="Scale-out variant of the nightly refresh: one run per user hash bucket "
    "(crc32), each staging its users' rows; the last bucket of a refresh checks and swaps all "
    "buckets into the published tables at once. Launch every bucket with the same as_of.",
)
def nightly_recommendations_bucketed_job() -> None:
    publish_recommendation_buckets(score_recommendation_bucket())


def bucket_run_requests(as_of: datetime, run_key_prefix: str) -> list[dg.RunRequest]:
    """One run request per bucket, all sharing `as_of` (the run clock's config and the tag)."""
    stamp = as_of.replace(microsecond=0).isoformat()
    return [
        dg.RunRequest(
            run_key=f"{run_key_prefix}:{key}",
            partition_key=key,
            run_config={"resources": {"clock": {"config": {"as_of": stamp}}}},
            tags={REFRESH_AS_OF_TAG: stamp},
        )
        for key in recommendation_buckets.get_partition_keys()
    ]
