"""`replay_dead_letters_job`: re-drive dead-lettered events from the UI (Launchpad config).

The same code as `recs-pipeline events replay` (`store.replay_dead_letters`): events whose cause
was fixed (the user exists now, the payload was corrected) get their awards, their ledger outcome
and `replayed_at`; the others stay dead-lettered with the new reason. Idempotent: replaying again
finds nothing to do. Config: `event_ids: [10, 12]` or `replay_all: true`.

(No `from __future__ import annotations` here: Dagster reads the op's config annotation.)
"""

import dagster as dg
from pydantic import Field, model_validator

from recs_pipeline.config import FailFastConfig
from recs_pipeline.defs.achievements import store
from recs_pipeline.defs.achievements.job import TRANSIENT_DB_RETRY
from recs_pipeline.defs.app_tables import USER_ACHIEVEMENTS_KEY
from recs_pipeline.resources import AppDatabase
from recs_pipeline.retries import transient_only
from recs_pipeline.schema import MAX_ID
from recs_pipeline.tags import ACHIEVEMENTS_REPLAY_TAGS


class ReplayConfig(FailFastConfig):
    event_ids: list[int] = Field(default_factory=list,
                                 description="Dead-lettered event ids to replay.")
    replay_all: bool = Field(default=False,
                             description="Replay every dead letter not replayed yet.")

    @model_validator(mode="after")
    def _one_selection(self) -> "ReplayConfig":
        if bool(self.event_ids) == self.replay_all:
            raise ValueError("give event_ids or replay_all: true (one of them)")
        if any(not 1 <= i <= MAX_ID for i in self.event_ids):
            raise ValueError(f"every event id must be in 1..{MAX_ID}")
        return self


@dg.op(retry_policy=TRANSIENT_DB_RETRY, out=dg.Out(dg.Nothing))
@transient_only
def replay_dead_letters(
    context: dg.OpExecutionContext, config: ReplayConfig, app_db: AppDatabase
):  # type: ignore[no-untyped-def]
    """Replay the selected dead letters through the achievements flow, in process."""
    summary = store.replay_dead_letters(app_db.get_engine(), event_ids=config.event_ids,
                                        replay_all=config.replay_all, run_id=context.run_id)
    context.log.info(summary.render())
    result = summary.result
    still_dead = {} if result is None else {
        str(k): int(v) for k, v in result.dead_letters["reason"].value_counts().items()}
    awards = 0 if result is None else len(result.awarded)
    if awards:
        with app_db.connect() as conn:
            rows = store.user_achievement_rows(conn)
        context.log_event(dg.AssetMaterialization(asset_key=USER_ACHIEVEMENTS_KEY, metadata={
            "dagster/row_count": rows, "awards": awards, "source": "dead-letter replay"}))
    yield dg.Output(None, metadata={
        **app_db.run_metadata(),
        "replayed": len(summary.selected),
        "not_dead_lettered": len(summary.not_dead_lettered),
        "awards": awards,
        "still_dead_lettered": dg.MetadataValue.json(dict(sorted(still_dead.items()))),
        "missing_events": 0 if result is None else len(result.missing_ids),
    })


@dg.job(
    tags=ACHIEVEMENTS_REPLAY_TAGS,
    executor_def=dg.in_process_executor,
    description="Re-drive dead-lettered achievement events once their cause is fixed (config "
    "event_ids or replay_all); the same as `recs-pipeline events replay`.",
)
def replay_dead_letters_job() -> None:
    replay_dead_letters()
