"""Run config of the nightly recommendation steps (one module, so the first steps can check the
later steps' config before any data is read: `recs_pipeline.config.validate_run_config`)."""

# No `from __future__ import annotations`: Dagster reads config annotations as objects.
from pydantic import Field, field_validator

from recs_pipeline.compute.champion import BLEND, POPULARITY, RANKER
from recs_pipeline.config import FailFastConfig
from recs_pipeline.defs.recommendations.checks import MIN_COVERAGE
from recs_pipeline.defs.recommendations.publishing import DEFAULT_RESERVE


class PublishConfig(FailFastConfig):
    """Knobs of the blend and of the publishing checks."""

    top_k: int = Field(default=10, ge=1, le=100, description="Recommendations per user and kind.")
    min_coverage: float = Field(
        default=MIN_COVERAGE, ge=0.0, le=1.0,
        description="Blocking: share of users with an eligible item who must get rows.",
    )
    reserve: int = Field(
        default=DEFAULT_RESERVE, ge=0, le=100,
        description="Next-best rows kept per user and kind after the top K (tables "
        "`*_recommendation_reserve`), ranked by the same model: the intraday upkeep promotes "
        "them when published rows stop being eligible. 0: upkeep only removes rows.",
    )


PUBLISHABLE = (RANKER, BLEND, POPULARITY)


class QualityConfig(FailFastConfig):
    """The holdout window and the quality gate's thresholds."""

    holdout_days: int = Field(default=14, ge=1, le=40,
                              description="Length of each window: validation [now - d, now), "
                              "training [now - 2d, now - d). At most 40 so that the 90-day "
                              "activity window before the training cutoff is still mostly "
                              "inside the retention window.")
    top_k: int = Field(default=10, ge=1, le=100, description="K of the metrics (the published K).")
    max_users: int = Field(default=50_000, ge=1,
                           description="Evaluate at most this many holdout users (random sample).")
    min_users: int = Field(default=30, ge=0,
                           description="A kind with fewer validation users is not judged: "
                           "the default hand blend is published, the gate passes and says so.")
    max_relative_drop: float = Field(default=0.2, ge=0.0, le=1.0,
                                     description="Gate: WARN when the published NDCG@K falls more "
                                     "than this fraction below the last published run's.")
    publish_contender: str | None = Field(
        default=None,
        description="Pin what is published: ranker, blend or popularity (e.g. during an "
        "incident); the evaluation still runs and the gate still reports what it would have "
        "chosen. Unset: the champion.")
    noise_z: float = Field(default=2.0, ge=0.0,
                           description="A contender qualifies when its NDCG@K is above random's "
                           "by at least this many standard errors of the per-user paired "
                           "difference.")

    @field_validator("publish_contender")
    @classmethod
    def _known_contender(cls, value: str | None) -> str | None:
        if value is not None and value not in PUBLISHABLE:
            raise ValueError(f"publish_contender must be one of {', '.join(PUBLISHABLE)}, "
                             f"got {value!r}")
        return value


# Every configurable step of the nightly job: each root step checks them all before reading, so
# a bad value for a later step fails the run at once (`validate_run_config`).
NIGHTLY_STEP_CONFIG: dict[str, type[FailFastConfig]] = {
    "recommendation_quality": QualityConfig,
    "publish_recommendations": PublishConfig,
}
