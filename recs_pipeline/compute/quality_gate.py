"""The quality gate's verdict, pure: is tonight's publish the learned ranker, and is it sound?

The gate never stops a publish: the champion of `compute.champion` is always published (the
app must never go a night without recommendations while users have eligible items), and only
broken output (eligibility, shape, PII, coverage: the publish step's own blocking checks)
blocks one. The gate says, per kind, whether the night is healthy:

1. fewer holdout users than `min_users` -> PASS, not judged (a verdict on a few users is noise;
   the champion is then the default hand blend, and the reason says so);
2. the champion is not the learned ranker (it had too few training positives, was not
   significantly better than random, or another contender beat it) -> WARN, with the reason and
   what is published instead;
3. the champion's NDCG@K is more than `max_relative_drop` below the last published run's ->
   WARN (something changed: data, traffic, a bug);
4. otherwise PASS.
The gate passes when every kind passes; a WARN also raises an alert (`recs_pipeline.alerting`).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class GateConfig:
    """min_users: holdout users (with >= 1 relevant item) a kind needs to be judged.
    max_relative_drop: tolerated fall of the published NDCG vs the last published run's.
    noise_z: paired standard errors above random a contender needs to qualify."""

    min_users: int = 30
    max_relative_drop: float = 0.2
    noise_z: float = 2.0

    def __post_init__(self) -> None:
        if self.min_users < 0:
            raise ValueError(f"min_users must be >= 0, got {self.min_users}")
        if not 0.0 <= self.max_relative_drop <= 1.0:
            raise ValueError(f"max_relative_drop must be in [0, 1], got {self.max_relative_drop}")
        if self.noise_z < 0:
            raise ValueError(f"noise_z must be >= 0, got {self.noise_z}")


@dataclass(frozen=True)
class KindFigures:
    """Tonight's validation figures for one kind."""

    champion: str
    reason: str  # why the champion won (compute.champion)
    ndcg: float  # the champion's
    users_evaluated: int
    ranker_ndcg: float | None = None  # None: the ranker was not a contender
    ranker_trained: bool = False


@dataclass(frozen=True)
class KindVerdict:
    kind: str
    passed: bool
    judged: bool  # False when the kind passed for lack of data
    reason: str


@dataclass(frozen=True)
class GateDecision:
    passed: bool
    verdicts: list[KindVerdict] = field(default_factory=list)

    @property
    def summary(self) -> str:
        return "; ".join(f"{v.kind}: {'pass' if v.passed else 'WARN'} ({v.reason})"
                         for v in self.verdicts)


def judge_kind(
    kind: str, figures: KindFigures, previous_ndcg: float | None, config: GateConfig
) -> KindVerdict:
    """One kind's verdict (see the module docstring for the rules and their order)."""
    published = f"publishing {figures.champion} (NDCG {figures.ndcg:.4f})"
    if figures.users_evaluated < config.min_users:
        return KindVerdict(kind, True, False,
                           f"too little holdout data: {figures.users_evaluated} users "
                           f"< min {config.min_users}; not judged; {published}")
    if figures.champion != "ranker":
        if not figures.ranker_trained or figures.ranker_ndcg is None:
            why = "no learned ranker tonight (too little training history)"
        else:
            why = f"the learned ranker (NDCG {figures.ranker_ndcg:.4f}) lost"
        return KindVerdict(kind, False, True, f"{why}: {figures.reason}; {published}")
    if previous_ndcg is not None:
        floor = (1.0 - config.max_relative_drop) * previous_ndcg
        if figures.ndcg < floor - 1e-12:  # exactly at the floor passes, float noise aside
            drop = 1.0 - figures.ndcg / previous_ndcg if previous_ndcg > 0 else 0.0
            return KindVerdict(kind, False, True,
                               f"NDCG {figures.ndcg:.4f} is {drop:.0%} below the last "
                               f"published {previous_ndcg:.4f} (max drop "
                               f"{config.max_relative_drop:.0%}); {published}")
        versus = f"; >= {floor:.4f} ({1 - config.max_relative_drop:.0%} of the last published)"
    else:
        versus = "; no earlier published run to compare with"
    return KindVerdict(kind, True, True, f"{figures.reason}{versus}")


def decide_gate(
    current: dict[str, KindFigures],
    previous_ndcg: dict[str, float] | None,
    config: GateConfig,
) -> GateDecision:
    """The gate over every kind in `current`; `previous_ndcg` is None without an earlier run."""
    previous_ndcg = previous_ndcg or {}
    verdicts = [judge_kind(kind, figures, previous_ndcg.get(kind), config)
                for kind, figures in sorted(current.items())]
    return GateDecision(passed=all(v.passed for v in verdicts), verdicts=verdicts)
