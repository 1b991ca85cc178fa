"""The one-user refresh (was Celery's `refresh_user_recommendations(user_id)`).

Same readers (restricted to the user), same scoring and the same checks as the nightly assets;
then exactly that user's rows are replaced in one transaction. An unknown, inactive or profile-less
user is a clear, successful outcome: their rows (if any) are removed, nothing is written, and the
metadata says so.
"""


import dagster as dg
from pydantic import Field

from recs_pipeline.compute.scoring import ScoringParams
from recs_pipeline.config import FailFastConfig
from recs_pipeline.defs.recommendations.assets import (
    RECOMMENDATIONS_GROUP,
    markdown_table,
)
from recs_pipeline.defs.recommendations.checks import (
    TEAM_RECOMMENDATIONS_KEY,
    TOURNAMENT_RECOMMENDATIONS_KEY,
)
from recs_pipeline.defs.recommendations.run import refresh_user
from recs_pipeline.resources import AppDatabase, RunClock
from recs_pipeline.retries import transient_retry_policy
from recs_pipeline.schema import MAX_ID
from recs_pipeline.tags import NIGHTLY_RECOMMENDATIONS_TAGS, USER_REFRESH_TAGS

# Transient database trouble (restart, failover, dropped connection) gets three more tries,
# 30 + 90 + 210 s after the failure; a failed blocking check raises `Failure(allow_retries=False)`
# and is never retried.
RECOMMENDATIONS_RETRY_POLICY = transient_retry_policy(max_retries=3, delay=30.0)

nightly_recommendations_job = dg.define_asset_job(
    name="nightly_recommendations_job",
    selection=dg.AssetSelection.groups(RECOMMENDATIONS_GROUP),
    executor_def=dg.in_process_executor,
    tags=NIGHTLY_RECOMMENDATIONS_TAGS,
    op_retry_policy=RECOMMENDATIONS_RETRY_POLICY,
    description="Nightly: user features, candidates, tournament and team recommendations for "
    "every active user with a game profile; blocking checks on staged rows, then one atomic swap.",
)


class UserRefreshConfig(FailFastConfig):
    user_id: int = Field(ge=1, le=MAX_ID,
                         description="The user whose recommendations are recomputed.")
    top_k: int = Field(default=10, ge=1, le=100, description="Recommendations per kind.")


@dg.op(
    description="Recompute one user's tournament and team recommendations and replace exactly "
    "that user's rows atomically (DELETE + INSERT in one transaction).",
    out=dg.Out(dg.Nothing),
)
def refresh_user_recommendations(
    context: dg.OpExecutionContext,
    config: UserRefreshConfig,
    app_db: AppDatabase,
    clock: RunClock,
):  # type: ignore[no-untyped-def]
    now = clock.now()
    outcome = refresh_user(
        app_db.get_engine(), config.user_id, ScoringParams(top_k=config.top_k), now
    )
    if outcome.failures:
        message = "; ".join(f"{c.kind}/{c.name}: {c.description}" for c in outcome.failures)
        raise dg.Failure(
            description=f"user {config.user_id}: rows not replaced (checks failed): {message}",
            allow_retries=False,
        )
    if outcome.status == "not_eligible":
        context.log.warning(
            f"user {config.user_id} is unknown, inactive or has no game profile: "
            f"removed their rows ({outcome.rows}), wrote nothing"
        )
    metadata: dict[str, object] = {
        "user_id": config.user_id,
        "status": outcome.status,
        "model_version": outcome.model_version,
        **{k: v for k, v in outcome.rows.items()},
        **{f"seconds_{k}": round(v, 3) for k, v in outcome.timings.items()},
    }
    if outcome.recommendations is not None:
        recs = outcome.recommendations
        preview = [
            f[["rank", col, "reason"]].head(5) for f, col in (
                (recs.tournaments, "tournament_id"), (recs.teams, "team_id"))
        ]
        metadata["tournaments_preview"] = dg.MetadataValue.md(markdown_table(preview[0]))
        metadata["teams_preview"] = dg.MetadataValue.md(markdown_table(preview[1]))
    for key in (TOURNAMENT_RECOMMENDATIONS_KEY, TEAM_RECOMMENDATIONS_KEY):
        kind = "tournaments" if key == TOURNAMENT_RECOMMENDATIONS_KEY else "teams"
        context.log_event(dg.AssetObservation(asset_key=key, metadata={
            "refreshed_user_id": config.user_id,
            "status": outcome.status,
            "rows_deleted": outcome.rows.get(f"{kind}_deleted", 0),
            "rows_written": outcome.rows.get(f"{kind}_written", 0),
        }))
    yield dg.Output(None, metadata={**app_db.run_metadata(), **metadata})


@dg.job(
    tags=USER_REFRESH_TAGS,
    executor_def=dg.in_process_executor,
    op_retry_policy=RECOMMENDATIONS_RETRY_POLICY,
    description="Recompute one user's recommendations (config: ops.refresh_user_recommendations."
    "config.user_id) and replace exactly that user's rows in one transaction.",
)
def refresh_user_recommendations_job() -> None:
    refresh_user_recommendations()
