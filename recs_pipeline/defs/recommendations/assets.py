"""Recommendation assets (group `recommendations`): features, candidates, published top-K tables.

Asset bodies only load (SQL in `reading.py`), call pure functions (`recs_pipeline.compute.*`)
and publish (`publishing.py`, atomic swap after the blocking checks of `checks.py`).

DataFrames travel between the steps through Dagster's default filesystem IO manager (pickles in
the instance's storage directory). That works with the in-process executor under any instance
(`dagster dev`, the daemon, tests), and unlike an in-memory IO manager it lets a failed publish
step be retried or re-executed from failure without recomputing the upstream assets. Pickling
numpy-backed frames costs ~1-2 s at 1M users (measured in the benchmark's totals).
"""


import html
import time
import unicodedata
from datetime import datetime, timedelta
from typing import Any

import dagster as dg
import numpy as np
import pandas as pd

from recs_pipeline import schema
from recs_pipeline.compute.candidates import (
    CandidateSet,
    build_team_candidates,
    build_tournament_candidates,
)
from recs_pipeline.compute.champion import recommend_with
from recs_pipeline.compute.features import UserFeatureSet
from recs_pipeline.compute.names import display_names
from recs_pipeline.compute.quality import QualityEvaluation
from recs_pipeline.compute.quarantine import Quarantine
from recs_pipeline.compute.scoring import GAME_NAME_MAX_CHARS, ScoringParams
from recs_pipeline.config import validate_run_config
from recs_pipeline.defs.app_tables import app_table_key, column_schema
from recs_pipeline.defs.recommendations.checks import (
    TEAM_RECOMMENDATIONS_KEY,
    TOURNAMENT_RECOMMENDATIONS_KEY,
    recommendation_check_specs,
)
from recs_pipeline.defs.recommendations.config import NIGHTLY_STEP_CONFIG, PublishConfig
from recs_pipeline.defs.recommendations.input_quarantine import (
    input_quarantine_check_spec,
    quarantine_check_result,
    quarantine_metadata,
)
from recs_pipeline.defs.recommendations.publishing import SwapLockTimeout, SwapOutcome
from recs_pipeline.defs.recommendations.reading import (
    build_user_feature_set,
    read_team_candidates,
    read_tournament_candidates,
    read_user_inputs,
)
from recs_pipeline.defs.recommendations.run import stage_check_publish
from recs_pipeline.resources import AppDatabase, InputQuarantinePolicy, RunClock
from recs_pipeline.retries import transient_only
from recs_pipeline.scheduling import schedule_timezone
from recs_pipeline.tags import DATA_PLATFORM_OWNERS

RECOMMENDATIONS_GROUP = "recommendations"
PREVIEW_USERS = 3


def _markdown_cell(value: object) -> str:
    """A cell's text, inert as table syntax and as HTML (app text such as regions lands here):
    line breaks become spaces, other control / format characters go, `<>&"'` become entities."""
    text = "".join(" " if ch.isspace() else ch for ch in str(value)
                   if ch.isspace() or unicodedata.category(ch)[0] != "C")
    return html.escape(text, quote=True).replace("|", "\\|")


def markdown_table(frame: pd.DataFrame) -> str:
    """A small DataFrame as a markdown table (no external dependency)."""
    cols = [_markdown_cell(c) for c in frame.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in frame.itertuples(index=False):
        cells = [_markdown_cell(v) for v in row]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _swap_metadata(outcome: SwapOutcome | None) -> dict[str, Any]:
    if outcome is None:
        return {}
    return {"swap_attempts": outcome.attempts,
            "swap_blocked_by": dg.MetadataValue.json(outcome.blockers)}


def _timings(timings: dict[str, float]) -> dict[str, Any]:
    return {f"seconds_{k}": dg.MetadataValue.float(round(v, 3)) for k, v in timings.items()}


@dg.asset(
    group_name=RECOMMENDATIONS_GROUP,
    owners=DATA_PLATFORM_OWNERS,
    deps=[app_table_key(t) for t in (
        "users", "game_profiles", "profile_completeness", "activities",
        "tournament_participants", "tournaments", "team_members", "teams",
    )],
    kinds={"pandas"},
    check_specs=[input_quarantine_check_spec("user_features")],
)
@transient_only
def user_features(
    context: dg.AssetExecutionContext, app_db: AppDatabase, clock: RunClock,
    input_quarantine: InputQuarantinePolicy,
):  # type: ignore[no-untyped-def]
    """One row per active user with at least one game profile: games and skill, region, activity
    counts over 7/30/90 days (aggregated in SQL, known activity types only), tournaments
    registered/played/won/podiums, teams joined, days since last activity, profile completeness;
    plus the participation history (user x tournament / team pairs) the scoring learns from.
    Never reads email. App rows that break the data contract are quarantined (check
    `input_quarantine`)."""
    validate_run_config(context, NIGHTLY_STEP_CONFIG)
    now = clock.now()
    t0 = time.perf_counter()
    with app_db.connect() as conn:
        inputs = read_user_inputs(conn, now)
    read_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    feature_set = build_user_feature_set(inputs, now)
    features_s = time.perf_counter() - t0
    f = feature_set.features
    preview = f.head(PREVIEW_USERS)[["user_id", "region", "game_ids", "max_skill",
                                     "activities_30d", "tournaments_played", "teams_joined"]]
    if feature_set.skipped:
        context.log.info(f"user_features skipped input: {feature_set.skipped}")
    log_quarantine(context, feature_set.quarantine)
    yield dg.Output(feature_set, metadata={
        **app_db.run_metadata(),
        **quarantine_metadata(feature_set.quarantine),
        "dagster/row_count": len(f),
        "as_of": now.isoformat(),
        "users_without_history": int(((f["tournaments_registered"] == 0)
                                      & (f["teams_joined"] == 0)).sum()),
        "tournament_history_pairs": len(feature_set.tournament_history),
        "team_history_pairs": len(feature_set.team_history),
        "skipped": dg.MetadataValue.json(feature_set.skipped),
        "seconds_read": round(read_s, 3),
        "seconds_features": round(features_s, 3),
        "preview": dg.MetadataValue.md(markdown_table(preview)),
    })
    yield quarantine_check_result("user_features", feature_set.quarantine, input_quarantine)


def log_quarantine(context: dg.AssetExecutionContext, quarantine: Quarantine) -> None:
    if quarantine.total:
        context.log.warning(quarantine.summary_line())


def _candidate_metadata(cands: CandidateSet, now: datetime, read_s: float, build_s: float,
                        preview_cols: list[str]) -> dict[str, Any]:
    preview = cands.items.head(5)[preview_cols]
    # Game names as reasons show them: the app's raw text never reaches metadata.
    preview = preview.assign(game_name=display_names(preview["game_name"], GAME_NAME_MAX_CHARS))
    return {
        "dagster/row_count": len(cands.items),
        "as_of": now.isoformat(),
        "members_of_candidates": len(cands.members),
        "skipped": dg.MetadataValue.json(cands.skipped),
        **quarantine_metadata(cands.quarantine),
        "seconds_read": round(read_s, 3),
        "seconds_build": round(build_s, 3),
        "preview": dg.MetadataValue.md(markdown_table(preview)),
    }


@dg.asset(
    group_name=RECOMMENDATIONS_GROUP,
    owners=DATA_PLATFORM_OWNERS,
    deps=[app_table_key(t) for t in ("tournaments", "tournament_participants", "game_profiles",
                                     "games")],
    kinds={"pandas"},
    check_specs=[input_quarantine_check_spec("tournament_candidates")],
)
@transient_only
def tournament_candidates(
    context: dg.AssetExecutionContext, app_db: AppDatabase, clock: RunClock,
    input_quarantine: InputQuarantinePolicy,
):  # type: ignore[no-untyped-def]
    """Tournaments that may be recommended to someone right now (status upcoming or
    registration_open, registration still open, fewer registrants than max_participants), with
    fill rate, open slots, skill band, region, game, size class, start slot and the registrants'
    mean skill; plus their registrants. Excluded tournaments are counted by reason; rows that
    break the data contract are quarantined (check `input_quarantine`)."""
    validate_run_config(context, NIGHTLY_STEP_CONFIG)
    now = clock.now()
    t0 = time.perf_counter()
    with app_db.connect() as conn:
        frame, registrations, quarantine = read_tournament_candidates(conn)
    read_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    cands = build_tournament_candidates(frame, registrations, now, quarantine)
    log_quarantine(context, quarantine)
    yield dg.Output(cands, metadata=_candidate_metadata(
        cands, now, read_s, time.perf_counter() - t0,
        ["tournament_id", "game_name", "region", "registered", "max_participants", "band_class"],
    ))
    yield quarantine_check_result("tournament_candidates", quarantine, input_quarantine)


@dg.asset(
    group_name=RECOMMENDATIONS_GROUP,
    owners=DATA_PLATFORM_OWNERS,
    deps=[app_table_key(t) for t in ("teams", "team_members", "game_profiles", "games")],
    kinds={"pandas"},
    check_specs=[input_quarantine_check_spec("team_candidates")],
)
@transient_only
def team_candidates(
    context: dg.AssetExecutionContext, app_db: AppDatabase, clock: RunClock,
    input_quarantine: InputQuarantinePolicy,
):  # type: ignore[no-untyped-def]
    """Recruiting teams with fewer current members than max_members, with game, region, open
    slots, fill rate and the members' average skill; plus their current members. Rows that
    break the data contract are quarantined (check `input_quarantine`)."""
    validate_run_config(context, NIGHTLY_STEP_CONFIG)
    now = clock.now()
    t0 = time.perf_counter()
    with app_db.connect() as conn:
        frame, members, quarantine = read_team_candidates(conn)
    read_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    cands = build_team_candidates(frame, members, now, quarantine)
    log_quarantine(context, quarantine)
    yield dg.Output(cands, metadata=_candidate_metadata(
        cands, now, read_s, time.perf_counter() - t0,
        ["team_id", "game_name", "region", "members", "max_members", "avg_skill"],
    ))
    yield quarantine_check_result("team_candidates", quarantine, input_quarantine)


def recommendation_metadata(
    frame: pd.DataFrame, item_column: str, users_with_candidates: int, users_scored: int,
) -> dict[str, Any]:
    """Row counts, coverage, score quantiles and a preview (user id, item, reason; no email)."""
    covered = int(frame["user_id"].nunique()) if len(frame) else 0
    q = (np.quantile(frame["score"], [0.0, 0.25, 0.5, 0.75, 1.0]) if len(frame)
         else [float("nan")] * 5)
    preview_users = frame["user_id"].drop_duplicates().head(PREVIEW_USERS)
    preview = frame[frame["user_id"].isin(preview_users) & (frame["rank"] <= 3)][
        ["user_id", "rank", item_column, "score", "reason"]
    ].assign(score=lambda d: d["score"].round(3))
    return {
        "dagster/row_count": len(frame),
        "users_covered": covered,
        "users_scored": users_scored,
        "users_with_eligible_items": users_with_candidates,
        "coverage_pct": round(100.0 * covered / users_with_candidates, 2)
        if users_with_candidates else 100.0,
        "score_quantiles": dg.MetadataValue.json(
            {k: round(float(v), 4) for k, v in zip(("min", "p25", "p50", "p75", "max"), q,
                                                    strict=True)}
        ),
        "preview": dg.MetadataValue.md(markdown_table(preview)),
    }


# The nightly run starts at 02:00 and takes minutes (~25 at 1M users): a published table not
# materialized between 02:00 and 04:00 is overdue from 04:00 until its next materialization.
PUBLISHED_FRESHNESS = dg.FreshnessPolicy.cron(
    deadline_cron="0 4 * * *", lower_bound_delta=timedelta(hours=2),
    timezone=schedule_timezone(),
)
PUBLISHED_COLUMNS = {
    "user_id": "The user (users.id).",
    "tournament_id": "A tournament open for registration that the user is eligible for.",
    "team_id": "A recruiting team with a free slot the user is eligible for.",
    "rank": "1..n per user, 1 is the best; (user_id, rank) is unique.",
    "score": "In (0, 1], non-increasing with rank; comparable within one model_version.",
    "reason": "Short readable explanation shown to the user (no PII, HTML-escaped).",
    "model_version": "Which ranker produced the row (champion: ranker, blend or popularity).",
    "generated_at": "When the refresh computed the row (UTC).",
}

PUBLISH_INPUTS = ("user_features", "tournament_candidates", "team_candidates",
                  "recommendation_quality")


def require_inputs_from_this_run(context: dg.AssetExecutionContext) -> None:
    """Fail (not retried) unless every input was materialized by this run or the run it
    re-executes. Materializing a published table alone would otherwise publish yesterday's
    stored inputs, and skip tonight's evaluation and its quality gate."""
    lineage: set[str] = set()
    run: dg.DagsterRun | None = context.run
    while run is not None:  # this run and every run it re-executes, up to the root
        lineage.add(run.run_id)
        run = context.instance.get_run_by_id(run.parent_run_id) if run.parent_run_id else None
    stale = []
    for name in PUBLISH_INPUTS:
        event = context.instance.get_latest_materialization_event(dg.AssetKey(name))
        if event is None or event.run_id not in lineage:
            stale.append(f"{name} (last materialized in run "
                         f"{event.run_id[:8] if event else 'never'})")
    if stale:
        raise dg.Failure(
            description="the published tables are refreshed only together with their inputs "
            "and the quality gate, in one run: materialize nightly_recommendations_job (or the "
            f"whole recommendations group). Not from this run: {', '.join(stale)}",
            allow_retries=False,
        )


@dg.multi_asset(
    name="publish_recommendations",
    specs=[
        dg.AssetSpec(
            TOURNAMENT_RECOMMENDATIONS_KEY,
            group_name=RECOMMENDATIONS_GROUP,
            kinds={"sql"},
            deps=list(PUBLISH_INPUTS),
            description="Published table `tournament_recommendations`: top K eligible "
            "tournaments per user with score in (0, 1], rank 1..n, a readable reason and the "
            "model version. Swapped in atomically after the blocking checks pass.",
            owners=DATA_PLATFORM_OWNERS,
            freshness_policy=PUBLISHED_FRESHNESS,
            metadata={"dagster/table_name": "tournament_recommendations",
                      "dagster/column_schema": column_schema(schema.tournament_recommendations,
                                                             PUBLISHED_COLUMNS)},
        ),
        dg.AssetSpec(
            TEAM_RECOMMENDATIONS_KEY,
            group_name=RECOMMENDATIONS_GROUP,
            kinds={"sql"},
            deps=list(PUBLISH_INPUTS),
            description="Published table `team_recommendations`: top K eligible recruiting "
            "teams per user with score, rank, reason, model version. Swapped in atomically "
            "together with tournament_recommendations after the blocking checks pass.",
            owners=DATA_PLATFORM_OWNERS,
            freshness_policy=PUBLISHED_FRESHNESS,
            metadata={"dagster/table_name": "team_recommendations",
                      "dagster/column_schema": column_schema(schema.team_recommendations,
                                                             PUBLISHED_COLUMNS)},
        ),
    ],
    check_specs=recommendation_check_specs(),
    ins={
        "user_features": dg.AssetIn("user_features"),
        "tournament_candidates": dg.AssetIn("tournament_candidates"),
        "team_candidates": dg.AssetIn("team_candidates"),
        "recommendation_quality": dg.AssetIn("recommendation_quality"),
    },
)
@transient_only
def publish_recommendations(
    context: dg.AssetExecutionContext,
    config: PublishConfig,
    app_db: AppDatabase,
    clock: RunClock,
    user_features: UserFeatureSet,
    tournament_candidates: CandidateSet,
    team_candidates: CandidateSet,
    recommendation_quality: QualityEvaluation,
):  # type: ignore[no-untyped-def]
    """Rank every user's eligible candidates by tonight's champion per kind (the learned
    ranker re-ordering the blend's pool, the blend, or popularity: `recommendation_quality`),
    stage both tables, run the blocking checks on the staged rows, then swap both published
    tables in one transaction."""
    require_inputs_from_this_run(context)
    now = clock.now()
    params = ScoringParams(top_k=config.top_k)
    champions = recommendation_quality.champions()
    recs = recommend_with(champions, user_features, tournament_candidates, team_candidates,
                          params, now, ranker=recommendation_quality.ranker,
                          reserve=config.reserve)
    try:
        outcome = stage_check_publish(
            app_db.get_engine(), recs, user_features, tournament_candidates, team_candidates,
            top_k=config.top_k, now=now, min_coverage=config.min_coverage,
        )
    except SwapLockTimeout as exc:
        # The swap already retried for its whole budget; rerunning the step would recompute
        # everything and meet the same blocker.
        raise dg.Failure(description=str(exc), allow_retries=False) from None
    for check in outcome.checks:
        yield check.to_result()
    if not outcome.published:
        # Checks are not transient: do not let the job's retry policy recompute for nothing.
        raise dg.Failure(
            description="recommendations not published (published tables unchanged): "
            + outcome.failure_message(),
            allow_retries=False,
        )
    timings = {**recs.timings, **outcome.timings}
    common = {
        "model_version": recs.model_version,
        "champions": dg.MetadataValue.json(champions),
        "model_parameters": dg.MetadataValue.json(params.as_dict()),
        "model_stats": dg.MetadataValue.json(recs.stats),
        "generated_at": now.isoformat(),
        "reserve_per_user": config.reserve,
        **_timings(timings),
        **_swap_metadata(outcome.swap),
    }
    for key, frame, item_column, kind in (
        (TOURNAMENT_RECOMMENDATIONS_KEY, recs.tournaments, "tournament_id", "tournaments"),
        (TEAM_RECOMMENDATIONS_KEY, recs.teams, "team_id", "teams"),
    ):
        context.log.info(f"{kind}: published {len(frame)} rows")
        yield dg.MaterializeResult(asset_key=key, metadata={
            **recommendation_metadata(frame, item_column, recs.users_with_candidates[kind],
                                      recs.stats["users_scored"]),
            "reserve_rows": len(recs.reserves.get(kind, ())),
            **common,
        })

