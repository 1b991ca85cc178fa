"""Asset checks.

Recommendations: blocking checks on the STAGED rows, evaluated inside the publishing step before
the swap. A failing check is reported as a failed asset check evaluation (visible in the UI on the
asset's Checks tab), the published tables are left untouched and the step fails with the reason.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import dagster as dg
import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from recs_pipeline import schema
from recs_pipeline.alerting import emit_alert, ui_base_url
from recs_pipeline.compute.quality import QualityEvaluation
from recs_pipeline.compute.quality_gate import decide_gate
from recs_pipeline.retries import transient_only

# --- recommendations ---------------------------------------------------------------------------

TOURNAMENT_RECOMMENDATIONS_KEY = dg.AssetKey("tournament_recommendations")
TEAM_RECOMMENDATIONS_KEY = dg.AssetKey("team_recommendations")

MIN_COVERAGE = 0.98

RECOMMENDATION_CHECKS: dict[str, str] = {
    "eligibility": "Every staged row satisfies the contract's eligibility rules (re-verified by "
                   "joins against the run's snapshot, independent of the scoring masks).",
    "ranks_contiguous": "Each user's ranks are 1..n without gaps.",
    "at_most_k": "At most K rows per user.",
    "scores_valid": "Scores are in (0, 1] and non-increasing by rank.",
    "no_duplicate_items": "No item appears twice for a user.",
    "no_pii": "No reason contains an email-shaped string (a name, an at sign and a dotted "
              "domain) or the row's own user's email (matched in the database against "
              "`users.email`, never read out); reasons are 1..200 characters. An at sign alone "
              "(e.g. from a game name) is not PII.",
    "coverage": f"At least {MIN_COVERAGE:.0%} of the users who have an eligible item get "
                "recommendations.",
}
_KEYS = {"tournaments": TOURNAMENT_RECOMMENDATIONS_KEY, "teams": TEAM_RECOMMENDATIONS_KEY}


def recommendation_check_specs() -> list[dg.AssetCheckSpec]:
    return [
        dg.AssetCheckSpec(name, asset=key, description=description, blocking=True)
        for key in _KEYS.values()
        for name, description in RECOMMENDATION_CHECKS.items()
    ]


@dataclass
class CheckOutcome:
    kind: str  # "tournaments" / "teams"
    name: str
    passed: bool
    description: str
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_result(self) -> dg.AssetCheckResult:
        return dg.AssetCheckResult(
            asset_key=_KEYS[self.kind],
            check_name=self.name,
            passed=self.passed,
            severity=dg.AssetCheckSeverity.ERROR,
            description=self.description,
            metadata=self.metadata,
        )


def evaluate_recommendation_checks(
    kind: str,
    summary: dict[str, int],
    violations: pd.DataFrame,
    users_with_candidates: int,
    expected_rows: int,
    top_k: int,
    min_coverage: float = MIN_COVERAGE,
    staged_matches: bool = True,
) -> list[CheckOutcome]:
    """Pure: facts of the staged rows (`summarize_recommendations`) + violations -> outcomes."""
    out: list[CheckOutcome] = []

    def add(name: str, bad: int, what: str, **meta: Any) -> None:
        text = f"{bad} {what}" if bad else f"no {what}"
        out.append(CheckOutcome(kind, name, bad == 0, text, {"violations": bad, **meta}))

    by_rule = violations["violation"].value_counts().to_dict() if len(violations) else {}
    examples = violations.head(5).to_dict("records") if len(violations) else []
    add("eligibility", len(violations), "rows violating an eligibility rule",
        by_rule={str(k): int(v) for k, v in by_rule.items()},
        examples=dg.MetadataValue.json([{k: str(v) for k, v in r.items()} for r in examples]))
    add("ranks_contiguous", summary["users_with_rank_gaps"], "users with rank gaps")
    add("at_most_k", summary["users_over_k"], f"users with more than {top_k} rows", k=top_k)
    add("scores_valid", summary["rows_score_out_of_range"] + summary["rows_score_increasing"],
        "rows with a score outside (0, 1] or above the previous rank's",
        out_of_range=summary["rows_score_out_of_range"],
        increasing=summary["rows_score_increasing"])
    add("no_duplicate_items", summary["duplicate_items"], "duplicate (user, item) pairs")
    # Only a check on staged rows can look for the users' own emails (in the database).
    own_email = summary.get("rows_with_own_email")
    add("no_pii",
        summary["rows_with_pii"] + (own_email or 0) + summary["rows_bad_reason_length"],
        "rows with an email in the reason or a badly sized reason",
        email_like=summary["rows_with_pii"],
        own_email=own_email if own_email is not None else "not checked",
        bad_length=summary["rows_bad_reason_length"])
    covered = summary["users"]
    coverage = covered / users_with_candidates if users_with_candidates else 1.0
    passed = coverage >= min_coverage and summary["rows"] == expected_rows and staged_matches
    out.append(CheckOutcome(
        kind, "coverage", passed,
        f"{covered} of {users_with_candidates} users with an eligible item covered "
        f"({coverage:.2%}); {summary['rows']} of {expected_rows} rows staged"
        + ("" if staged_matches else "; the staged table differs from the computed rows"),
        {"users_covered": covered, "users_with_eligible_items": users_with_candidates,
         "coverage": float(coverage), "staged_rows": summary["rows"],
         "expected_rows": expected_rows},
    ))
    return out


# What a leaked address looks like, whoever's it is; an `@` alone is not one ("R@cing League").
EMAIL_SHAPED = re.compile(r"[\w.+-]+@[\w-]+\.[\w.-]+")


def _distinct_reason_facts(reasons: pd.Series) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row: length, holds an '@', holds an email-shaped string. Reasons repeat (one sentence
    per item and signal), so the facts are computed per distinct sentence and gathered back."""
    codes, uniques = pd.factorize(reasons.to_numpy(dtype=object), use_na_sentinel=False)
    texts = ["" if u is None else str(u) for u in uniques]
    lengths = np.array([len(t) for t in texts], dtype=np.int64)
    at_sign = np.array(["@" in t for t in texts], dtype=bool)
    emails = np.array([a and EMAIL_SHAPED.search(t) is not None
                       for a, t in zip(at_sign.tolist(), texts, strict=True)], dtype=bool)
    return lengths[codes], at_sign[codes], emails[codes]


def reason_facts(reasons: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Per row: the reason's length and whether it holds an '@': what the staged table's
    fingerprint (`publishing.staged_fingerprint`) counts, so the two can be compared."""
    lengths, at_sign, _ = _distinct_reason_facts(reasons)
    return lengths, at_sign


def staged_own_email_rows(conn: Connection, table_name: str) -> int:
    """Staged rows whose reason contains the row's own user's email (case-insensitive).

    Evaluated in the database, joining the staged rows to `users` on user_id (`strpos` on
    PostgreSQL, `instr` on SQLite): no email is read into the pipeline, a log or metadata, only
    the count. An email holds an '@', so only reasons with one are joined (normally none)."""
    staged = sa.table(table_name, sa.column("user_id"), sa.column("reason"))
    users = schema.users
    position = sa.func.strpos if conn.dialect.name == "postgresql" else sa.func.instr
    query = sa.select(sa.func.count()).select_from(
        staged.join(users, users.c.id == staged.c.user_id)
    ).where(
        staged.c.reason.like("%@%"),
        users.c.email.like("%@%"),  # no address; an empty one would match every reason
        position(sa.func.lower(staged.c.reason), sa.func.lower(users.c.email)) > 0,
    )
    return int(conn.execute(query).scalar_one())


def summarize_recommendations(frame: pd.DataFrame, item_column: str, top_k: int) -> dict[str, int]:
    """The structural facts the checks need, vectorised (numpy; one sort if not yet ordered)."""
    if frame.empty:
        return {"rows": 0, "users": 0, "users_with_rank_gaps": 0, "users_over_k": 0,
                "rows_score_out_of_range": 0, "rows_score_increasing": 0, "duplicate_items": 0,
                "rows_with_pii": 0, "rows_bad_reason_length": 0}
    user = frame["user_id"].to_numpy(dtype=np.int64)
    rank = frame["rank"].to_numpy(dtype=np.int64)
    score = frame["score"].to_numpy(dtype=np.float64)
    step_ok = (user[1:] > user[:-1]) | ((user[1:] == user[:-1]) & (rank[1:] > rank[:-1]))
    if not bool(np.all(step_ok)):  # order by (user, rank): two stable sorts
        order = np.argsort(rank, kind="stable")
        order = order[np.argsort(user[order], kind="stable")]
        user, rank, score = user[order], rank[order], score[order]
    starts = np.flatnonzero(np.concatenate([[True], user[1:] != user[:-1]]))
    counts = np.diff(np.concatenate([starts, [len(user)]]))
    expected = np.arange(len(user)) - np.repeat(starts, counts) + 1
    bad_rank_rows = rank != expected
    gap_users = np.add.reduceat(bad_rank_rows.astype(np.int64), starts) > 0
    same_user = user[1:] == user[:-1]
    increasing = int(np.sum(same_user & (score[1:] > score[:-1])))
    reason_len, _, email_like = _distinct_reason_facts(frame["reason"])
    return {
        "rows": len(frame),
        "users": len(starts),
        "users_with_rank_gaps": int(gap_users.sum()),
        "users_over_k": int((counts > top_k).sum()),
        "rows_score_out_of_range": int((~((score > 0) & (score <= 1))).sum()),
        "rows_score_increasing": increasing,
        "duplicate_items": int(frame.duplicated(["user_id", item_column]).sum()),
        "rows_with_pii": int(email_like.sum()),
        "rows_bad_reason_length": int(((reason_len == 0) | (reason_len > 200)).sum()),
    }


# --- recommendation quality gate ---------------------------------------------------------------
# A blocking check on `recommendation_quality` (assets/quality.py). The published tables depend
# on that asset, so when this check fails the publish step does not run and the published tables
# stay as they were. Decision rules: `recs_pipeline.compute.quality_gate`.

QUALITY_KEY = dg.AssetKey("recommendation_quality")
# How far back to look for the last published run's quality figures.
_PUBLISHED_RUNS_SCANNED = 20
_QUALITY_RUNS_SCANNED = 200


def ndcg_key(kind: str, k: int) -> str:
    """Metadata key of a kind's model NDCG@k on `recommendation_quality`."""
    return f"{kind}/ndcg@{k}"


def users_key(kind: str) -> str:
    return f"{kind}/users_evaluated"


def last_published_quality(
    instance: dg.DagsterInstance, current_run_id: str, k: int, min_users: int
) -> tuple[dict[str, float] | None, str | None]:
    """NDCG@k per kind of the most recent EARLIER run that published recommendations.

    "Published" = `tournament_recommendations` was materialized in that run (the swap publishes
    both kinds at once). Returns (None, None) without such a run, and (None, run id) when that
    run has no quality figures (e.g. it predates the evaluation). A kind judged on fewer than
    `min_users` users is left out: comparing with noise would make the gate flaky.
    """
    published = instance.fetch_materializations(
        TOURNAMENT_RECOMMENDATIONS_KEY, limit=_PUBLISHED_RUNS_SCANNED
    ).records
    last_run = next((r.run_id for r in published if r.run_id != current_run_id), None)
    if last_run is None:
        return None, None
    quality = instance.fetch_materializations(QUALITY_KEY, limit=_QUALITY_RUNS_SCANNED).records
    record = next((r for r in quality if r.run_id == last_run), None)
    if record is None or record.asset_materialization is None:
        return None, last_run
    meta = record.asset_materialization.metadata
    previous: dict[str, float] = {}
    for kind in _KEYS:
        ndcg, users = meta.get(ndcg_key(kind, k)), meta.get(users_key(kind))
        if ndcg is None or users is None or int(users.value) < min_users:
            continue
        previous[kind] = float(ndcg.value)
    return previous, last_run


@dg.asset_check(
    asset=QUALITY_KEY,
    name="quality_gate",
    description="WARN (never blocks the publish) when the learned ranker is not what gets "
    "published tonight (it lost to another contender, was not significantly above random, or "
    "had too little training history) or when the published NDCG@K fell more than "
    "max_relative_drop below the last published run's; a WARN also raises an alert.",
)
@transient_only
def quality_gate(context, recommendation_quality) -> dg.AssetCheckResult:  # type: ignore[no-untyped-def]
    """context: AssetCheckExecutionContext; recommendation_quality: QualityEvaluation (loaded
    by the IO manager). Left unannotated: this module postpones annotations, and Dagster reads
    `context` / input annotations as objects, not strings."""
    evaluation: QualityEvaluation = recommendation_quality
    k, gate = evaluation.report.k, evaluation.gate
    previous, last_run = last_published_quality(
        context.instance, context.run.run_id, k, gate.min_users
    )
    decision = decide_gate(evaluation.figures(), previous or None, gate)
    context.log.info(f"quality gate: {'pass' if decision.passed else 'WARN'}: {decision.summary}")
    metadata: dict[str, Any] = {
        "decision": "pass" if decision.passed else "warn",
        "summary": decision.summary,
        "last_published_run": last_run or "none",
        "min_users": gate.min_users,
        "max_relative_drop": dg.MetadataValue.float(gate.max_relative_drop),
        "noise_z": dg.MetadataValue.float(gate.noise_z),
    }
    for verdict in decision.verdicts:
        metadata[f"{verdict.kind}/verdict"] = verdict.reason
        metadata[f"{verdict.kind}/judged"] = verdict.judged
        if previous and verdict.kind in previous:
            metadata[f"{verdict.kind}/last_published_ndcg@{k}"] = dg.MetadataValue.float(
                previous[verdict.kind])
    for kind, champion in evaluation.champions().items():
        metadata[f"{kind}/published"] = champion
    if not decision.passed:
        emit_alert(context.log, {
            "alert": "recommendation_quality_gate",
            "severity": "warning",
            "job": context.run.job_name,
            "run_id": context.run.run_id,
            "message": decision.summary,
            "published": evaluation.champions(),
            "ui_url": f"{ui_base_url().rstrip('/')}/runs/{context.run.run_id}",
        })
    return dg.AssetCheckResult(
        passed=decision.passed,
        severity=dg.AssetCheckSeverity.WARN,
        description=decision.summary,
        metadata=metadata,
    )

