"""Dagster wiring of the intraday upkeep (`upkeep.py`): the job, its 15-minute schedule and the
staleness check on the published tables."""

import dagster as dg
from pydantic import Field

from recs_pipeline.config import FailFastConfig
from recs_pipeline.defs.recommendations.checks import (
    TEAM_RECOMMENDATIONS_KEY,
    TOURNAMENT_RECOMMENDATIONS_KEY,
)
from recs_pipeline.defs.recommendations.jobs import RECOMMENDATIONS_RETRY_POLICY
from recs_pipeline.defs.recommendations.publishing import TEAMS, TOURNAMENTS
from recs_pipeline.defs.recommendations.upkeep import (
    REASONS,
    WRITE_WORKERS,
    ineligible_now,
    run_upkeep,
)
from recs_pipeline.resources import AppDatabase, RunClock
from recs_pipeline.retries import transient_only
from recs_pipeline.scheduling import schedule_timezone
from recs_pipeline.tags import (
    JOB_KIND_TAG,
    STALENESS_TAGS,
    UNFINISHED_RUN_STATUSES,
    UPKEEP_TAGS,
)

UPKEEP_CRON = "*/15 * * * *"
# The upkeep never runs beside these: the nightly swap and the purge own the tables then.
EXCLUSIVE_JOB_KINDS = ("nightly_recommendations", "retention_purge")
STALE_WARN_SHARE = 0.05  # WARN when more than 5 % of the published rows are not eligible now


class UpkeepConfig(FailFastConfig):
    top_k: int = Field(default=10, ge=1, le=100, description="The published K.")
    request_short_list_refresh: bool = Field(
        default=True, description="Queue an on-demand refresh (recommendation_refresh_requests) "
        "for users whose list fell below K, so items that opened since the nightly run can "
        "enter; the refresh sensor serves them in batches.")
    write_workers: int = Field(
        default=WRITE_WORKERS, ge=1, le=16, description="PostgreSQL write transactions at "
        "once (batches of disjoint users); about one per database core. SQLite: always 1.")


@dg.op(description="Remove published rows that are no longer eligible and backfill each "
       "affected user's list from the same refresh's reserve.", out=dg.Out(dg.Nothing))
@transient_only
def upkeep_recommendations(context: dg.OpExecutionContext, config: UpkeepConfig,
                           app_db: AppDatabase, clock: RunClock):  # type: ignore[no-untyped-def]
    outcome = run_upkeep(app_db.get_engine(), clock.now(), config.top_k,
                         request_short_list_refresh=config.request_short_list_refresh,
                         write_workers=config.write_workers)
    if not outcome.published:
        context.log.info("nothing published yet: nothing to keep up")
    for key, kind in ((TOURNAMENT_RECOMMENDATIONS_KEY, "tournaments"),
                      (TEAM_RECOMMENDATIONS_KEY, "teams")):
        result = outcome.kinds.get(kind)
        if result is None:
            continue
        # An observation, not a materialization: upkeep does not make a missed nightly fresh.
        context.log_event(dg.AssetObservation(asset_key=key, metadata={
            **({"rows_before": result.rows_before} if result.rows_before is not None else {}),
            "rows_removed": result.rows_removed,
            **{f"removed_{r}": result.removed.get(r, 0) for r in REASONS},
            "rows_backfilled": result.backfilled,
            "users_touched": result.users_touched,
            "ineligible_share_before": dg.MetadataValue.float(
                round(result.ineligible_share_before, 6)),
        }))
    yield dg.Output(None, metadata={
        **app_db.run_metadata(),
        "users_touched": outcome.users_touched,
        "users_short": len(outcome.users_short),
        "users_refresh_requested": outcome.users_refresh_requested,
        **{f"seconds_{k}": round(v, 3) for k, v in outcome.timings.items()},
    })


@dg.job(tags=UPKEEP_TAGS, executor_def=dg.in_process_executor,
        op_retry_policy=RECOMMENDATIONS_RETRY_POLICY,
        description="Intraday: remove published recommendations that stopped being eligible "
        "(closed, full, not recruiting, registered / joined, user inactive) and backfill in the "
        "published model's order.")
def recommendation_upkeep_job() -> None:
    upkeep_recommendations()


@dg.schedule(name="recommendation_upkeep_schedule", job=recommendation_upkeep_job,
             cron_schedule=UPKEEP_CRON, execution_timezone=schedule_timezone(),
             default_status=dg.DefaultScheduleStatus.RUNNING,
             description="Every 15 minutes, except while the nightly refresh or the purge runs.")
def recommendation_upkeep_schedule(context: dg.ScheduleEvaluationContext):  # type: ignore[no-untyped-def]
    for job_kind in (*EXCLUSIVE_JOB_KINDS, "recommendation_upkeep"):
        busy = context.instance.get_runs(filters=dg.RunsFilter(
            statuses=UNFINISHED_RUN_STATUSES, tags={JOB_KIND_TAG: job_kind}), limit=1)
        if busy:
            return dg.SkipReason(f"a {job_kind} run is in progress ({busy[0].run_id[:8]})")
    return dg.RunRequest()


def _staleness_check(kind):  # type: ignore[no-untyped-def]
    key = TOURNAMENT_RECOMMENDATIONS_KEY if kind is TOURNAMENTS else TEAM_RECOMMENDATIONS_KEY

    @dg.asset_check(asset=key, name="ineligible_share", blocking=False,
                    description="WARN when more than 5 % of the published rows are not "
                    "eligible right now (closed, full, not recruiting, already joined, user "
                    "inactive): visible even when the upkeep is off.")
    @transient_only
    def _check(app_db: AppDatabase, clock: RunClock) -> dg.AssetCheckResult:
        rows, bad = ineligible_now(app_db.get_engine(), kind, clock.now())
        share = bad / rows if rows else 0.0
        return dg.AssetCheckResult(
            passed=share <= STALE_WARN_SHARE, severity=dg.AssetCheckSeverity.WARN,
            metadata={"rows": rows, "ineligible_rows": bad,
                      "ineligible_share": dg.MetadataValue.float(round(share, 6))})

    return _check


tournament_ineligible_share = _staleness_check(TOURNAMENTS)
team_ineligible_share = _staleness_check(TEAMS)

recommendation_staleness_job = dg.define_asset_job(
    "recommendation_staleness_job",
    selection=dg.AssetSelection.checks(tournament_ineligible_share, team_ineligible_share),
    executor_def=dg.in_process_executor, tags=STALENESS_TAGS,
    op_retry_policy=RECOMMENDATIONS_RETRY_POLICY,
    description="The published tables' ineligible_share checks (hourly).")
recommendation_staleness_schedule = dg.ScheduleDefinition(
    name="recommendation_staleness_schedule", job=recommendation_staleness_job,
    cron_schedule="5 * * * *", execution_timezone=schedule_timezone(),
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Hourly: how much of the published rows is not eligible right now.")
