"""The on-demand refresh (was Celery's `refresh_user_recommendations(user_id)`), batched.

Same readers (restricted to the users), same scoring and the same checks as the nightly blend;
then exactly those users' rows are replaced in one transaction. One run serves one user or up to
`MAX_USERS_PER_REFRESH` (the app's requests, batched by `user_refresh_request_sensor`: a run costs
seconds to launch whatever its size). An unknown, inactive or profile-less user is a clear,
successful outcome: their rows (if any) are removed, nothing is written, and the metadata says so.
"""


import dagster as dg
from pydantic import Field, model_validator

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
from recs_pipeline.defs.recommendations.run import refresh_users
from recs_pipeline.resources import AppDatabase, RunClock
from recs_pipeline.retries import transient_only, transient_retry_policy
from recs_pipeline.schema import MAX_ID
from recs_pipeline.tags import NIGHTLY_RECOMMENDATIONS_TAGS, USER_REFRESH_TAGS

# Transient database trouble (restart, failover, dropped connection) gets three more tries,
# 30 + 90 + 210 s after the failure; a failed blocking check raises `Failure(allow_retries=False)`
# and is never retried.
RECOMMENDATIONS_RETRY_POLICY = transient_retry_policy(max_retries=3, delay=30.0)

# The published tables' staleness checks belong to the hourly staleness job: right after the
# swap the share is ~0, and counting it over the whole tables costs ~23 s at 1M users.
STALENESS_CHECKS = dg.AssetSelection.checks(*(
    dg.AssetCheckKey(key, "ineligible_share")
    for key in (TOURNAMENT_RECOMMENDATIONS_KEY, TEAM_RECOMMENDATIONS_KEY)))

nightly_recommendations_job = dg.define_asset_job(
    name="nightly_recommendations_job",
    selection=dg.AssetSelection.groups(RECOMMENDATIONS_GROUP) - STALENESS_CHECKS,
    executor_def=dg.in_process_executor,
    tags=NIGHTLY_RECOMMENDATIONS_TAGS,
    op_retry_policy=RECOMMENDATIONS_RETRY_POLICY,
    description="Nightly: user features, candidates, tournament and team recommendations for "
    "every active user with a game profile; blocking checks on staged rows, then one atomic swap.",
)


MAX_USERS_PER_REFRESH = 1_000


class UserRefreshConfig(FailFastConfig):
    user_id: int | None = Field(default=None, ge=1, le=MAX_ID,
                                description="One user whose recommendations are recomputed.")
    user_ids: list[int] = Field(
        default_factory=list, max_length=MAX_USERS_PER_REFRESH,
        description="Several users, refreshed together (user_refresh_request_sensor batches the "
        "app's requests this way).")
    top_k: int = Field(default=10, ge=1, le=100, description="Recommendations per kind.")

    @model_validator(mode="after")
    def _some_users(self) -> "UserRefreshConfig":
        if self.user_id is None and not self.user_ids:
            raise ValueError("give user_id or user_ids")
        if any(not 1 <= u <= MAX_ID for u in self.user_ids):
            raise ValueError(f"every user id must be in 1..{MAX_ID}")
        return self

    def all_user_ids(self) -> list[int]:
        return sorted({*self.user_ids, *([self.user_id] if self.user_id else [])})


@dg.op(
    description="Recompute the given users' tournament and team recommendations and replace "
    "exactly those users' rows atomically (DELETE + INSERT in one transaction), serving the "
    "app's pending refresh requests for them in the same transaction.",
    out=dg.Out(dg.Nothing),
)
@transient_only
def refresh_user_recommendations(
    context: dg.OpExecutionContext,
    config: UserRefreshConfig,
    app_db: AppDatabase,
    clock: RunClock,
):  # type: ignore[no-untyped-def]
    now = clock.now()
    user_ids = config.all_user_ids()
    outcome = refresh_users(app_db.get_engine(), user_ids, ScoringParams(top_k=config.top_k), now)
    if outcome.failures:
        message = "; ".join(f"{c.kind}/{c.name}: {c.description}" for c in outcome.failures)
        raise dg.Failure(
            description=f"{len(user_ids)} users: rows not replaced (checks failed; their "
            f"{outcome.requests_served} refresh requests are dropped, the nightly refresh covers "
            f"them): {message}",
            allow_retries=False,
        )
    if outcome.not_eligible:
        shown = ", ".join(str(u) for u in outcome.not_eligible[:20])
        context.log.warning(
            f"{len(outcome.not_eligible)} users unknown, inactive or without a game profile "
            f"({shown}{', ...' if len(outcome.not_eligible) > 20 else ''}): their rows removed, "
            "nothing written"
        )
    metadata: dict[str, object] = {
        "users": len(user_ids),
        "users_refreshed": len(outcome.refreshed),
        "users_not_eligible": len(outcome.not_eligible),
        "refresh_requests_served": outcome.requests_served,
        "status": outcome.status,
        "model_version": outcome.model_version,
        **{k: v for k, v in outcome.rows.items()},
        **{f"seconds_{k}": round(v, 3) for k, v in outcome.timings.items()},
    }
    if len(user_ids) == 1:
        metadata["user_id"] = user_ids[0]
    if outcome.recommendations is not None:
        recs = outcome.recommendations
        first = outcome.refreshed[0]
        preview = [
            f[f["user_id"] == first][["user_id", "rank", col, "reason"]].head(5) for f, col in (
                (recs.tournaments, "tournament_id"), (recs.teams, "team_id"))
        ]
        metadata["tournaments_preview"] = dg.MetadataValue.md(markdown_table(preview[0]))
        metadata["teams_preview"] = dg.MetadataValue.md(markdown_table(preview[1]))
    for key in (TOURNAMENT_RECOMMENDATIONS_KEY, TEAM_RECOMMENDATIONS_KEY):
        kind = "tournaments" if key == TOURNAMENT_RECOMMENDATIONS_KEY else "teams"
        context.log_event(dg.AssetObservation(asset_key=key, metadata={
            "refreshed_users": len(outcome.refreshed),
            **({"refreshed_user_id": user_ids[0]} if len(user_ids) == 1 else {}),
            "status": outcome.status,
            "rows_deleted": outcome.rows.get(f"{kind}_deleted", 0),
            "rows_written": outcome.rows.get(f"{kind}_written", 0),
        }))
    yield dg.Output(None, metadata={**app_db.run_metadata(), **metadata})


@dg.job(
    tags=USER_REFRESH_TAGS,
    executor_def=dg.in_process_executor,
    op_retry_policy=RECOMMENDATIONS_RETRY_POLICY,
    description="Recompute some users' recommendations (config: ops.refresh_user_recommendations."
    "config.user_id or .user_ids, up to 1,000) and replace exactly their rows in one "
    "transaction. Launched by user_refresh_request_sensor for the app's requests, or by hand.",
)
def refresh_user_recommendations_job() -> None:
    refresh_user_recommendations()
