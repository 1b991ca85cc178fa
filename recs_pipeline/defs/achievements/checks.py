"""Outbox health as asset checks on `app/app_events`: how long events wait, dead letters left.

`outbox_lag` warns when the oldest achievement event not yet handled is older than
`OUTBOX_LAG_WARN_SECONDS`; `unresolved_dead_letters` warns while dead-lettered events wait for a
replay (`replay_dead_letters_job`). Both come from one query (`store.outbox_health`). Run them
from the asset page ("Execute checks"); `achievement_events_sensor` also records them with its
caught-up heartbeat, so the asset page stays current without a run.
"""

from __future__ import annotations

from datetime import datetime

import dagster as dg
import pandas as pd

from recs_pipeline.compute.timestamps import utc_now
from recs_pipeline.defs.achievements import store
from recs_pipeline.defs.app_tables import app_table_key
from recs_pipeline.resources import AppDatabase

APP_EVENTS_KEY = app_table_key("app_events")
OUTBOX_LAG_WARN_SECONDS = 600  # the sensor ticks every 15 s; 10 minutes means events wait
OUTBOX_LAG = "outbox_lag"
UNRESOLVED_DEAD_LETTERS = "unresolved_dead_letters"


def _age_seconds(at: pd.Timestamp | None, now: datetime) -> float:
    return 0.0 if at is None else max(0.0, (pd.Timestamp(now) - at).total_seconds())


def outbox_evaluations(health: store.OutboxHealth, now: datetime
                       ) -> list[dg.AssetCheckEvaluation]:
    """Both checks' outcomes for one reading of the outbox."""
    lag = _age_seconds(health.oldest_pending_at, now)
    dead_age = _age_seconds(health.oldest_dead_letter_at, now)
    return [
        dg.AssetCheckEvaluation(
            asset_key=APP_EVENTS_KEY, check_name=OUTBOX_LAG,
            passed=lag <= OUTBOX_LAG_WARN_SECONDS, severity=dg.AssetCheckSeverity.WARN,
            description=(f"{health.pending_events} achievement events not handled yet; the "
                         f"oldest waits {lag:.0f} s (warn above {OUTBOX_LAG_WARN_SECONDS} s)"),
            metadata={"pending_events": health.pending_events,
                      "oldest_pending_event_id": dg.MetadataValue.int(
                          health.oldest_pending_id or 0),
                      "lag_seconds": dg.MetadataValue.float(round(lag, 1))},
        ),
        dg.AssetCheckEvaluation(
            asset_key=APP_EVENTS_KEY, check_name=UNRESOLVED_DEAD_LETTERS,
            passed=health.dead_letters == 0, severity=dg.AssetCheckSeverity.WARN,
            description=(f"{health.dead_letters} dead-lettered events not replayed"
                         + (f", the oldest for {dead_age / 3600:.1f} h; fix the cause, then run "
                            "replay_dead_letters_job" if health.dead_letters else "")),
            metadata={"unresolved_dead_letters": health.dead_letters,
                      "oldest_dead_letter_age_hours": dg.MetadataValue.float(
                          round(dead_age / 3600, 2))},
        ),
    ]


@dg.multi_asset_check(
    specs=[
        dg.AssetCheckSpec(OUTBOX_LAG, asset=APP_EVENTS_KEY,
                          description="WARN when the oldest unhandled achievement event is older "
                          f"than {OUTBOX_LAG_WARN_SECONDS} s."),
        dg.AssetCheckSpec(UNRESOLVED_DEAD_LETTERS, asset=APP_EVENTS_KEY,
                          description="WARN while dead-lettered events wait for a replay."),
    ],
)
def outbox_checks(app_db: AppDatabase):  # type: ignore[no-untyped-def]
    """Read the outbox's health once and report both checks."""
    with app_db.connect() as conn:
        health = store.outbox_health(conn)
    for evaluation in outbox_evaluations(health, utc_now()):
        yield dg.AssetCheckResult(
            check_name=evaluation.check_name, asset_key=evaluation.asset_key,
            passed=evaluation.passed, severity=evaluation.severity,
            description=evaluation.description, metadata=evaluation.metadata)
