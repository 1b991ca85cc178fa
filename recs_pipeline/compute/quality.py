"""The nightly evaluation, pure: train the ranker on one window, choose the champion on a later one.

Two temporal holdouts, both rebuilt with the production code path (`compute.scoring.recommend`,
its eligibility rules and all) from the app's data as it was at their cutoff:

* training: the recommender's inputs at `now - 2 * holdout_days`, labelled with what users did
  in the following `holdout_days`: the learned ranker is fitted on the first stage's pool there;
* validation: the inputs at `now - holdout_days`, labelled with what users did since: every
  contender (`compute.champion`) ranks the same users, the champion is chosen here, and its
  figures are the ones reported (the ranker never saw these labels).

The ranker that is published is then refitted on the validation window's pool and labels (the
most recent behaviour; same parameters as the validated one). A platform younger than two
windows has no training window: the ranker is then not a contender that night.

Relevant items are the holdout pairs whose item was a candidate at the cutoff and whose user was
scored at the cutoff; metrics average over users with >= 1 relevant item. Only those users are
scored (sampled down to `max_users`), while the collaborative model, co-play and affinity priors
still learn from everyone's history, so the evaluated users' lists are exactly the ones a full
run would have produced.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime

import pandas as pd

from recs_pipeline.compute.candidates import CandidateSet
from recs_pipeline.compute.champion import (
    CONTENDERS,
    KINDS,
    RANDOM,
    RANKER,
    KindEvaluation,
    choose_champion,
    evaluate_contenders,
)
from recs_pipeline.compute.features import UserFeatureSet
from recs_pipeline.compute.quality_gate import GateConfig, KindFigures
from recs_pipeline.compute.ranker import LearnedRanker, RankerParams, fit_ranker
from recs_pipeline.compute.scoring import ScoringParams


@dataclass(frozen=True)
class Holdout:
    """The recommender's inputs as of `cutoff`, and what users did in [cutoff, now)."""

    cutoff: datetime
    now: datetime
    users: UserFeatureSet
    tournaments: CandidateSet
    teams: CandidateSet
    relevant: dict[str, pd.DataFrame]  # kind -> (user_id, item_id) pairs in the window


@dataclass(frozen=True)
class ContenderFigures:
    name: str
    ndcg: float
    recall: float
    hit_rate: float
    coverage: float
    users: int
    stderr_vs_champion: float  # paired standard error of (this - champion) per-user NDCG
    z_vs_random: float


@dataclass(frozen=True)
class KindQuality:
    kind: str
    champion: str
    reason: str
    contenders: dict[str, ContenderFigures]
    candidates: int
    holdout_pairs: int
    holdout_pairs_total: int
    pool_recall: float
    training: dict[str, int]  # rows / positives / users of the validated ranker ({} if none)

    @property
    def published(self) -> ContenderFigures:
        return self.contenders[self.champion]


@dataclass(frozen=True)
class QualityReport:
    training_cutoff: datetime | None
    cutoff: datetime
    now: datetime
    k: int
    users_at_cutoff: int
    users_scored: int
    kinds: dict[str, KindQuality]
    seconds: float


@dataclass(frozen=True)
class QualityEvaluation:
    """The nightly asset's value: the report, the gate thresholds and the ranker to publish."""

    report: QualityReport
    gate: GateConfig
    ranker: LearnedRanker | None = None

    def champions(self) -> dict[str, str]:
        """Per kind, the contender the publish step ranks by."""
        return {kind: q.champion for kind, q in self.report.kinds.items()}

    def figures(self) -> dict[str, KindFigures]:
        """What the gate needs per kind."""
        out = {}
        for kind, q in self.report.kinds.items():
            ranker = q.contenders.get(RANKER)
            out[kind] = KindFigures(
                champion=q.champion, reason=q.reason, ndcg=q.published.ndcg,
                users_evaluated=q.published.users,
                ranker_ndcg=ranker.ndcg if ranker else None,
                ranker_trained=bool(q.training),
            )
        return out


def _kind_quality(evaluation: KindEvaluation, champion_name: str, reason: str,
                  training: dict[str, int]) -> KindQuality:
    contenders = {
        name: ContenderFigures(
            name=name, ndcg=r.metrics.ndcg, recall=r.metrics.recall,
            hit_rate=r.metrics.hit_rate, coverage=r.metrics.coverage,
            users=r.metrics.users_evaluated,
            stderr_vs_champion=evaluation.stderr(name, champion_name),
            z_vs_random=evaluation.z(name, RANDOM) if name != RANDOM else 0.0,
        )
        for name, r in sorted(evaluation.results.items(), key=lambda x: CONTENDERS.index(x[0]))
    }
    return KindQuality(
        kind=evaluation.kind, champion=champion_name, reason=reason, contenders=contenders,
        candidates=evaluation.candidates, holdout_pairs=evaluation.holdout_pairs,
        holdout_pairs_total=evaluation.holdout_pairs_total,
        pool_recall=evaluation.pool_recall, training=training,
    )


def nightly_evaluation(
    training: Holdout | None,
    validation: Holdout,
    params: ScoringParams,
    gate: GateConfig,
    ranker_params: RankerParams | None = None,
    max_users: int | None = None,
    pinned: str | None = None,
) -> tuple[QualityReport, LearnedRanker | None]:
    """The report (see the module docstring) and the ranker to publish (None: no kind has one).

    `gate.noise_z` is the number of paired standard errors a contender must clear above random
    to qualify; `gate.min_users` the holdout users a kind needs to be judged at all.
    `pinned` publishes that contender whatever the evaluation says (an operator's override:
    the figures and the gate still show what the evaluation would have chosen).
    """
    started = time.perf_counter()
    validated: LearnedRanker | None = None
    if training is not None:
        train_eval = evaluate_contenders(
            training.users, training.tournaments, training.teams, training.relevant, params,
            training.cutoff, ranker=None, max_users=max_users)
        validated = fit_ranker(train_eval.pools, training.relevant, ranker_params)
    evaluation = evaluate_contenders(
        validation.users, validation.tournaments, validation.teams, validation.relevant,
        params, validation.cutoff, ranker=validated, max_users=max_users)
    kinds: dict[str, KindQuality] = {}
    for kind in KINDS:
        choice = choose_champion(evaluation.kinds[kind], z=gate.noise_z,
                                 min_users=gate.min_users)
        champion, reason = choice.champion, choice.reason
        if pinned is not None and pinned in evaluation.kinds[kind].results:
            champion = pinned
            reason = f"pinned by config (the evaluation chose {choice.champion}: {choice.reason})"
        kinds[kind] = _kind_quality(
            evaluation.kinds[kind], champion, reason,
            validated.training.get(kind, {}) if validated and kind in validated.kinds else {})
    production = None
    if any(q.champion == RANKER for q in kinds.values()):
        production = fit_ranker(
            {k: p for k, p in evaluation.pools.items() if kinds[k].champion == RANKER},
            validation.relevant, ranker_params)
        for kind, q in kinds.items():  # refitting can only fail on fewer positives: keep safe
            if q.champion == RANKER and kind not in production.kinds:
                production.adopt(kind, validated)  # type: ignore[arg-type]
    report = QualityReport(
        training_cutoff=training.cutoff if training else None, cutoff=validation.cutoff,
        now=validation.now, k=params.top_k, users_at_cutoff=len(validation.users.features),
        users_scored=evaluation.users_scored, kinds=kinds,
        seconds=time.perf_counter() - started,
    )
    return report, production


def report_table(report: QualityReport) -> str:
    """A markdown table of the report (for the asset's metadata and docs)."""
    k = report.k
    lines = [
        f"| kind | contender | NDCG@{k} | ± SE vs published | Recall@{k} | HitRate@{k} | "
        "coverage | z vs random | users |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for kind in KINDS:
        q = report.kinds[kind]
        for name, c in q.contenders.items():
            label = f"**{name}** (published)" if name == q.champion else name
            lines.append(f"| {kind} | {label} | {c.ndcg:.4f} | {c.stderr_vs_champion:.4f} | "
                         f"{c.recall:.4f} | {c.hit_rate:.4f} | {c.coverage:.3f} | "
                         f"{c.z_vs_random:.1f} | {c.users} |")
    return "\n".join(lines)
