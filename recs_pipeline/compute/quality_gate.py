"""The quality gate's decision, pure: may tonight's recommendations be published?

Per kind (tournaments, teams), in this order:
1. fewer holdout users than `min_users` -> PASS, "too little holdout data" (a verdict on a few
   users is noise; an outage of the gate must not block the nightly refresh forever);
2. model NDCG@K below the popularity baseline's by more than `noise_z` standard errors of the
   per-user paired difference -> FAIL (below, but within that noise -> PASS, and says so: on a
   few hundred users a tie with popularity is not evidence of a worse model; `noise_z = 0` makes
   the rule strict);
3. no earlier published run (or it has no figure for this kind) -> PASS, "no earlier run";
4. model NDCG@K more than `max_relative_drop` below the last published run's -> FAIL;
5. otherwise PASS.
The gate passes when every kind passes. Every kind's reason is kept, for the UI.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class GateConfig:
    """min_users: holdout users (with >= 1 relevant item) a kind needs to be judged.
    max_relative_drop: tolerated fall of NDCG vs the last published run (0.2 = 20 %).
    noise_z: standard errors of (model - popularity) per-user NDCG tolerated below popularity."""

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
    """Tonight's holdout figures for one kind."""

    ndcg: float
    popularity_ndcg: float
    users_evaluated: int
    diff_stderr: float = 0.0  # standard error of the mean per-user (model - popularity) NDCG


@dataclass(frozen=True)
class KindVerdict:
    kind: str
    passed: bool
    judged: bool  # False when the kind passed for lack of data or of an earlier run
    reason: str


@dataclass(frozen=True)
class GateDecision:
    passed: bool
    verdicts: list[KindVerdict] = field(default_factory=list)

    @property
    def summary(self) -> str:
        return "; ".join(f"{v.kind}: {'pass' if v.passed else 'FAIL'} ({v.reason})"
                         for v in self.verdicts)


def judge_kind(
    kind: str, figures: KindFigures, previous_ndcg: float | None, config: GateConfig
) -> KindVerdict:
    """One kind's verdict (see the module docstring for the rules and their order)."""
    if figures.users_evaluated < config.min_users:
        return KindVerdict(kind, True, False,
                           f"too little holdout data: {figures.users_evaluated} users "
                           f"< min {config.min_users}; not judged")
    margin = config.noise_z * figures.diff_stderr
    if figures.ndcg < figures.popularity_ndcg - margin:
        return KindVerdict(kind, False, True,
                           f"NDCG {figures.ndcg:.4f} below the popularity baseline "
                           f"{figures.popularity_ndcg:.4f} (noise margin {margin:.4f})")
    if figures.ndcg < figures.popularity_ndcg:
        versus = (f"NDCG {figures.ndcg:.4f} below popularity {figures.popularity_ndcg:.4f} but "
                  f"within the noise margin {margin:.4f}")
    else:
        versus = f"NDCG {figures.ndcg:.4f} >= popularity {figures.popularity_ndcg:.4f}"
    if previous_ndcg is None:
        return KindVerdict(kind, True, False,
                           f"{versus}; no earlier published run to compare with")
    floor = (1.0 - config.max_relative_drop) * previous_ndcg
    if figures.ndcg < floor - 1e-12:  # exactly at the floor passes, float noise aside
        drop = 1.0 - figures.ndcg / previous_ndcg if previous_ndcg > 0 else 0.0
        return KindVerdict(kind, False, True,
                           f"NDCG {figures.ndcg:.4f} is {drop:.0%} below the last published "
                           f"{previous_ndcg:.4f} (max drop {config.max_relative_drop:.0%})")
    return KindVerdict(kind, True, True,
                       f"{versus}; >= {floor:.4f} ({1 - config.max_relative_drop:.0%} of the last "
                       f"published {previous_ndcg:.4f})")


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
