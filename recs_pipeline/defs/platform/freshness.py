"""Staleness that reaches people: `freshness_alert_sensor` turns freshness failures into alerts.

The freshness policies live on the assets (`tournament_recommendations`, `team_recommendations`:
by 04:00 after the 02:00 nightly; `app/user_achievements`: within minutes of the outbox). Dagster's
daemon evaluates them and records every change of state (`FRESHNESS_STATE_CHANGE` events) — but a
gate failing night after night, a schedule switched off or a stopped sensor never fails a run, so
the run-failure alert stays quiet. This sensor reads those state changes after its cursor and
sends one alert per asset that went overdue (`FAIL`, error) or late (`WARN`, warning), and one
when it is fresh again, through the same log line and webhook as the run-failure alert.
"""

# No `from __future__ import annotations`: Dagster inspects the sensor's context annotation.

from datetime import UTC, datetime
from typing import Any

import dagster as dg

from recs_pipeline.alerting import emit_alert, ui_base_url

FRESHNESS_ALERT_SENSOR_NAME = "freshness_alert_sensor"
_EVENTS_PER_TICK = 1_000
_ALERTS = {  # new state -> (alert name, severity)
    "FAIL": ("asset_freshness_overdue", "error"),
    "WARN": ("asset_freshness_late", "warning"),
    "PASS": ("asset_freshness_recovered", "info"),
}


def _at(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    return datetime.fromtimestamp(timestamp, UTC).replace(microsecond=0).isoformat()


def build_freshness_alert(
    asset_key: dg.AssetKey, previous_state: str, new_state: str, changed_at: float,
    last_materialized_at: float | None, ui_base_url: str,
) -> dict[str, Any] | None:
    """The alert for one state change (None for changes nobody needs to hear about)."""
    if new_state not in _ALERTS or (new_state == "PASS" and previous_state not in ("FAIL",
                                                                                   "WARN")):
        return None
    name, severity = _ALERTS[new_state]
    asset = asset_key.to_user_string()
    if last_materialized_at is None:
        since = "never materialized"
    else:
        hours = (changed_at - last_materialized_at) / 3600
        since = f"last materialized {_at(last_materialized_at)} ({hours:.1f} h before this check)"
    verdict = {"FAIL": "is overdue: its freshness policy failed",
               "WARN": "is late: its freshness policy warns",
               "PASS": "is fresh again"}[new_state]
    return {
        "alert": name,
        "severity": severity,
        "asset": asset,
        "previous_state": previous_state,
        "freshness_state": new_state,
        "last_materialized_at": _at(last_materialized_at),
        "message": f"{asset} {verdict}; {since}. Runbook: docs/operations.md, 'Stale table'.",
        "ui_url": f"{ui_base_url.rstrip('/')}/assets/{'/'.join(asset_key.path)}",
        "occurred_at": _at(changed_at),
    }


@dg.sensor(
    name=FRESHNESS_ALERT_SENSOR_NAME,
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Logs a RECS_ALERT line (and POSTs it to $RECS_ALERT_WEBHOOK_URL when set) when "
    "an asset's freshness policy fails, warns, or passes again after failing.",
)
def freshness_alert_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
    """Alert on the freshness state changes recorded since the last tick."""
    after = int(context.cursor) if (context.cursor or "").isdigit() else None
    # Public, deprecated for 2.0; the fetch_* replacements cover asset events only.
    records = context.instance.get_event_records(
        dg.EventRecordsFilter(event_type=dg.DagsterEventType.FRESHNESS_STATE_CHANGE,
                              after_cursor=after),
        limit=_EVENTS_PER_TICK, ascending=True,
    )
    latest: dict[dg.AssetKey, Any] = {}  # only the newest change per asset is worth a message
    first_previous: dict[dg.AssetKey, str] = {}
    for record in records:
        change = record.event_log_entry.dagster_event.event_specific_data
        first_previous.setdefault(change.key, change.previous_state.value)
        latest[change.key] = change
    alerts = []
    for key, change in latest.items():
        event = context.instance.get_latest_materialization_event(key)
        alert = build_freshness_alert(
            key, first_previous[key], change.new_state.value, change.state_change_timestamp,
            event.timestamp if event else None, ui_base_url(),
        )
        if alert is not None:
            emit_alert(context.log, alert)
            alerts.append(alert["asset"])
    cursor = str(records[-1].storage_id) if records else context.cursor
    summary = (f"{len(records)} freshness state changes, alerts for: {', '.join(alerts)}"
               if alerts else f"{len(records)} freshness state changes, no alert")
    context.log.info(summary)
    return dg.SensorResult(cursor=cursor, skip_reason=None if alerts else summary)
