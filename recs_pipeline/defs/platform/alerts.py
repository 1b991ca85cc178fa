"""Failure visibility: a run-failure sensor that logs a structured alert and can POST it.

Every failed run of this code location produces one alert: a JSON object (job, run id, failed
steps with error class and the first line of the message, the failure reason, a link to the run in
the UI) written to the sensor's log with the prefix `RECS_ALERT`, so log shippers can match it.
When `RECS_ALERT_WEBHOOK_URL` is set, the same JSON is POSTed there (Slack/Teams/Alertmanager
style incoming webhook or any HTTP endpoint). Both variables are read when the sensor evaluates,
never at import. A webhook that is down or slow never fails the sensor: the delivery error is
logged (without the URL's path, which often embeds a token) and the alert stays in the log.
"""

# No `from __future__ import annotations`: Dagster inspects the sensor's context annotation.

from datetime import UTC, datetime
from typing import Any

import dagster as dg

from recs_pipeline.alerting import emit_alert, ui_base_url
from recs_pipeline.tags import JOB_KIND_TAG

_MAX_MESSAGE_CHARS = 300


def _first_line(text: str | None) -> str:
    line = (text or "").strip().splitlines()[0] if (text or "").strip() else ""
    return line[:_MAX_MESSAGE_CHARS]


def _error_message(error: Any) -> str:
    """First line of an error's message, without the `ClassName: ` prefix Dagster stores."""
    line = _first_line(error.message)
    prefix = f"{error.cls_name}: "
    return line[len(prefix):] if line.startswith(prefix) else line


def _user_error(error: Any) -> Any:
    """The user's exception inside Dagster's wrapper errors, when there is one."""
    while error is not None and error.cls_name.startswith("Dagster") and error.cause is not None:
        error = error.cause
    return error


def build_failure_alert(
    job_name: str,
    run_id: str,
    run_tags: dict[str, str],
    failure_event: dg.DagsterEvent | None,
    step_failure_events: list[dg.DagsterEvent],
    ui_base_url: str,
) -> dict[str, Any]:
    """The alert as a JSON-serialisable dict (see the module doc and docs/operations.md)."""
    failed_steps = []
    for event in step_failure_events:
        error = _user_error(getattr(event.event_specific_data, "error", None))
        failed_steps.append(
            {
                "step": event.step_key,
                "error_class": error.cls_name if error else None,
                "message": _error_message(error) if error else "",
            }
        )
    run_error = None
    failure_reason = None
    if failure_event is not None and failure_event.event_specific_data is not None:
        run_error = _user_error(getattr(failure_event.event_specific_data, "error", None))
        reason = getattr(failure_event.event_specific_data, "failure_reason", None)
        failure_reason = reason.value if reason is not None else None
    first = failed_steps[0] if failed_steps else None
    return {
        "alert": "dagster_run_failure",
        "severity": "error",
        "job": job_name,
        "run_id": run_id,
        "job_kind": run_tags.get(JOB_KIND_TAG),
        "launched_by": run_tags.get("dagster/sensor_name")
        or run_tags.get("dagster/schedule_name")
        or run_tags.get("dagster/backfill")
        or "manual",
        "failure_reason": failure_reason,
        "step": first["step"] if first else None,
        "error_class": first["error_class"]
        if first
        else (run_error.cls_name if run_error else None),
        "message": first["message"]
        if first
        else (
            _error_message(run_error)
            if run_error
            else _first_line(getattr(failure_event, "message", ""))
        ),
        "failed_steps": failed_steps,
        "ui_url": f"{ui_base_url.rstrip('/')}/runs/{run_id}",
        "occurred_at": datetime.now(UTC).replace(microsecond=0).isoformat(),
    }


@dg.run_failure_sensor(
    name="run_failure_alert_sensor",
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Logs a structured RECS_ALERT line for every failed run of this code location, "
    "and POSTs it to $RECS_ALERT_WEBHOOK_URL when set.",
)
def run_failure_alert_sensor(context: dg.RunFailureSensorContext) -> None:
    """Turn a failed run into a structured alert (log line, optional webhook POST)."""
    run = context.dagster_run
    alert = build_failure_alert(
        job_name=run.job_name,
        run_id=run.run_id,
        run_tags=dict(run.tags),
        failure_event=context.failure_event,
        step_failure_events=list(context.get_step_failure_events()),
        ui_base_url=ui_base_url(),
    )
    emit_alert(context.log, alert)
