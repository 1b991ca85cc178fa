"""The recommendation refresh end to end, shared by the assets, the one-user job and the benchmark.

`stage_check_publish` stages both kinds, evaluates the blocking checks on the staged rows and swaps
only when every check passed. `refresh_users` is the on-demand path (one user or a batch the app
asked for): same readers (restricted to the users), same scoring, same checks (in memory), then
exactly those users' rows are replaced in one transaction.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pandas as pd
from sqlalchemy.engine import Connection, Engine

from recs_pipeline.bootstrap import ensure_pipeline_tables
from recs_pipeline.compute.candidates import CandidateSet
from recs_pipeline.compute.eligibility import find_violations
from recs_pipeline.compute.features import UserFeatureSet
from recs_pipeline.compute.scoring import Recommendations, ScoringParams, recommend
from recs_pipeline.defs.recommendations.checks import (
    MIN_COVERAGE,
    CheckOutcome,
    evaluate_recommendation_checks,
    staged_own_email_rows,
    summarize_recommendations,
)
from recs_pipeline.defs.recommendations.publishing import (
    DEFAULT_RESERVE,
    DEFAULT_SWAP_POLICY,
    KINDS,
    RESERVE_OF,
    RESERVES,
    TEAMS,
    TOURNAMENTS,
    RecommendationKind,
    SwapOutcome,
    SwapPolicy,
    drop_staging,
    fingerprints_match,
    frame_fingerprint,
    replace_user_rows,
    stage,
    staged_fingerprint,
    swap,
)
from recs_pipeline.defs.recommendations.reading import (
    build_user_feature_set,
    load_team_candidates,
    load_tournament_candidates,
    read_user_inputs,
)
from recs_pipeline.defs.recommendations.refresh_requests import claim_requests, delete_requests
from recs_pipeline.defs.recommendations.upkeep_store import add_upkeep_items, reset_upkeep_state


@dataclass
class PublishOutcome:
    checks: list[CheckOutcome]
    published: bool
    staged_rows: dict[str, int]
    timings: dict[str, float] = field(default_factory=dict)
    swap: SwapOutcome | None = None  # None: not swapped

    @property
    def failures(self) -> list[CheckOutcome]:
        return [c for c in self.checks if not c.passed]

    def failure_message(self) -> str:
        return "; ".join(f"{c.kind}/{c.name}: {c.description}" for c in self.failures)


def _no_rows(kind: RecommendationKind) -> pd.DataFrame:
    return pd.DataFrame(columns=[c.name for c in kind.table.columns])


def _frames(recs: Recommendations) -> dict[RecommendationKind, pd.DataFrame]:
    """Every table a refresh writes: both kinds and their reserves (empty when not computed)."""
    frames = {TOURNAMENTS: recs.tournaments, TEAMS: recs.teams}
    for kind in KINDS:
        frames[RESERVE_OF[kind]] = recs.reserves.get(kind.name, _no_rows(kind))
    return frames


def _candidates(kind: RecommendationKind, tournament_candidates: CandidateSet,
                team_candidates: CandidateSet) -> CandidateSet:
    return tournament_candidates if kind is TOURNAMENTS else team_candidates


def violations_for(
    kind: RecommendationKind,
    pairs: pd.DataFrame,
    users: UserFeatureSet,
    cands: CandidateSet,
    now: datetime,
    chunk_rows: int = 2_000_000,
) -> pd.DataFrame:
    """Eligibility violations of (user, item) pairs, re-verified in chunks (bounded memory)."""
    pairs = pairs[["user_id", kind.item_column]]
    users_frame = users.features[["user_id", "region"]]
    parts = [
        find_violations(
            pairs.iloc[lo:lo + chunk_rows], item_column=kind.item_column, users=users_frame,
            profiles=users.profiles, items=cands.items, members=cands.members,
            now=cands.as_of or now,
        )
        for lo in range(0, max(len(pairs), 1), chunk_rows)
    ]
    return pd.concat(parts, ignore_index=True)


def _check_staged(
    conn: Connection,
    kind: RecommendationKind,
    frame: pd.DataFrame,
    recs: Recommendations,
    users: UserFeatureSet,
    candidates: CandidateSet,
    *,
    top_k: int,
    now: datetime,
    min_coverage: float,
) -> list[CheckOutcome]:
    """The blocking checks of one kind: the staged rows are the computed ones, and those rows
    follow every rule (eligibility, shape, PII, coverage)."""
    staged_fp = staged_fingerprint(conn, kind)
    matches = fingerprints_match(staged_fp, frame_fingerprint(frame, kind.item_column))
    summary = summarize_recommendations(frame, kind.item_column, top_k)
    summary["rows"] = int(staged_fp["rows"])
    # The staged rows are the frame's (fingerprint, `staged_matches`), so the frame's email-shaped
    # count holds for them; their users' own emails can only be looked for in the database.
    summary["rows_with_own_email"] = staged_own_email_rows(conn, kind.staging_name)
    violations = violations_for(kind, frame, users, candidates, now)
    return evaluate_recommendation_checks(
        kind.name, summary, violations, recs.users_with_candidates[kind.name],
        expected_rows=len(frame), top_k=top_k, min_coverage=min_coverage,
        staged_matches=matches,
    )


def stage_check_publish(
    engine: Engine,
    recs: Recommendations,
    users: UserFeatureSet,
    tournament_candidates: CandidateSet,
    team_candidates: CandidateSet,
    *,
    top_k: int,
    now: datetime,
    min_coverage: float = MIN_COVERAGE,
    swap_policy: SwapPolicy = DEFAULT_SWAP_POLICY,
) -> PublishOutcome:
    """Stage both kinds, check, swap only if every check passed.

    The checks are about the rows that were staged: one SQL aggregate over each staging table
    must match the computed frame exactly (count, key/rank sums, reason facts, score sum), and
    the per-row rules are verified on that frame, vectorised (numpy / pandas joins), which is far
    cheaper at 10M rows than reading the staged rows back.
    """
    timings: dict[str, float] = {}
    frames = _frames(recs)
    swapped = False
    swap_outcome: SwapOutcome | None = None
    try:
        t0 = time.perf_counter()
        staged = {kind.name: stage(engine, kind, frames[kind]) for kind in KINDS + RESERVES}
        timings["write"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        outcomes: list[CheckOutcome] = []
        with engine.connect() as conn:
            for kind in KINDS:
                outcomes += _check_staged(conn, kind, frames[kind], recs, users,
                                          _candidates(kind, tournament_candidates,
                                                      team_candidates),
                                          top_k=top_k, now=now, min_coverage=min_coverage)
        timings["checks"] = time.perf_counter() - t0

        published = all(c.passed for c in outcomes)
        if published:
            t0 = time.perf_counter()
            swap_outcome = swap(engine, KINDS + RESERVES, swap_policy,
                                in_transaction=lambda conn: reset_upkeep_state(conn, frames, now))
            swapped = True
            timings["swap"] = time.perf_counter() - t0
    finally:
        if not swapped:  # failed checks or an error: no `<table>__staging` is left behind
            drop_staging(engine, KINDS + RESERVES)
    return PublishOutcome(outcomes, published, staged, timings, swap_outcome)


@dataclass
class UserRefreshOutcome:
    """One refresh run's users: refreshed (rows replaced) or not eligible (rows removed)."""

    user_ids: list[int]
    refreshed: list[int]
    rows: dict[str, int]
    checks: list[CheckOutcome]
    timings: dict[str, float]
    model_version: str
    recommendations: Recommendations | None = None
    requests_served: int = 0  # app requests (recommendation_refresh_requests) deleted

    @property
    def failures(self) -> list[CheckOutcome]:
        return [c for c in self.checks if not c.passed]

    @property
    def not_eligible(self) -> list[int]:
        refreshed = set(self.refreshed)
        return [u for u in self.user_ids if u not in refreshed]

    @property
    def status(self) -> str:
        return "refreshed" if self.refreshed else "not_eligible"


def refresh_users(
    engine: Engine, user_ids: Sequence[int], params: ScoringParams, now: datetime,
    reserve: int = DEFAULT_RESERVE,
) -> UserRefreshOutcome:
    """Recompute and replace these users' rows in one transaction; an unknown / inactive /
    profile-less user has their rows removed (and nothing written). The app's pending refresh
    requests for the users, read before their data, are deleted in that transaction; when a
    blocking check fails nothing is written and the requests are deleted too (the run fails and
    alerts; the nightly refresh covers the users), so a bad batch is not re-requested forever."""
    ids = sorted({int(u) for u in user_ids})
    timings: dict[str, Any] = {}
    t0 = time.perf_counter()
    ensure_pipeline_tables(engine)
    with engine.connect() as conn:
        claimed = claim_requests(conn, ids)  # first: a request committed later stays pending
        tournament_candidates = load_tournament_candidates(conn, now)
        team_candidates = load_team_candidates(conn, now)
        inputs = read_user_inputs(conn, now, user_ids=ids)
    timings["read"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    users = build_user_feature_set(inputs, now)
    timings["features"] = time.perf_counter() - t0
    eligible = sorted(set(users.features["user_id"].astype(int).tolist()) & set(ids))
    outcome = UserRefreshOutcome(ids, eligible, {}, [], timings, params.model_version())
    frames = {kind: _no_rows(kind) for kind in KINDS + RESERVES}
    if eligible:
        recs = recommend(users, tournament_candidates, team_candidates, params, now,
                         reserve=reserve)
        timings.update({f"score_{k}": v for k, v in recs.timings.items()})
        frames = _frames(recs)
        for kind in KINDS:
            frame = frames[kind]
            violations = violations_for(
                kind, frame, users, _candidates(kind, tournament_candidates, team_candidates),
                now)
            outcome.checks += evaluate_recommendation_checks(
                kind.name, summarize_recommendations(frame, kind.item_column, params.top_k),
                violations, recs.users_with_candidates[kind.name], expected_rows=len(frame),
                top_k=params.top_k,
            )
        outcome.recommendations = recs
    t0 = time.perf_counter()
    if outcome.failures:
        with engine.begin() as conn:
            outcome.requests_served = delete_requests(conn, claimed)
        return outcome

    def serve_requests(conn: Connection) -> None:
        outcome.requests_served = delete_requests(conn, claimed)
        add_upkeep_items(conn, frames)

    outcome.rows = replace_user_rows(engine, ids, frames, in_transaction=serve_requests)
    timings["write"] = time.perf_counter() - t0
    return outcome
