"""Delivering an alert: one structured log line and, when configured, a webhook POST.

Every alert of this code location (a failed run, a quality-gate fallback) is a JSON object
written to the log with the prefix `RECS_ALERT`, so log shippers can match it. When
`RECS_ALERT_WEBHOOK_URL` is set, the same JSON is POSTed there. Both variables are read when an
alert is emitted, never at import. A webhook that is down or slow never fails the caller: the
delivery error is logged (without the URL's path, which often embeds a token).

`RECS_ALERT_WEBHOOK_FORMAT` shapes the POST for its receiver (`webhook_payload`):

* `json` (default): the alert object itself, for a log pipeline or a custom receiver;
* `slack`: a Slack incoming webhook message: `text` (what notifications show) plus `blocks`
  (a header, the message, the fields, a link to the run);
* `teams`: a Microsoft Teams Workflows webhook message: one Adaptive Card attachment (a title,
  the message, a fact set, an "Open in Dagster" action).
"""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import urlsplit

import dagster as dg

WEBHOOK_URL_ENV_VAR = "RECS_ALERT_WEBHOOK_URL"
UI_BASE_URL_ENV_VAR = "RECS_DAGSTER_UI_URL"
DEFAULT_UI_BASE_URL = "http://127.0.0.1:3000"
WEBHOOK_FORMAT_ENV_VAR = "RECS_ALERT_WEBHOOK_FORMAT"
WEBHOOK_FORMATS = ("json", "slack", "teams")
WEBHOOK_TIMEOUT_SECONDS = 5.0
# Fields shown as facts in Slack / Teams messages, in this order, when the alert has them.
_FACT_FIELDS = ("job", "asset", "run_id", "job_kind", "launched_by", "step", "error_class",
                "failure_reason", "published", "freshness_state", "previous_state",
                "last_materialized_at", "occurred_at")
_SLACK_TEXT_LIMIT = 3000  # a section block's text; longer is rejected with HTTP 400
ALERT_LOG_PREFIX = "RECS_ALERT"


def ui_base_url() -> str:
    """Where the Dagster UI is, for links in alerts."""
    return dg.EnvVar(UI_BASE_URL_ENV_VAR).get_value(default=DEFAULT_UI_BASE_URL) or (
        DEFAULT_UI_BASE_URL)


def _safe_target(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}/…" if parts.netloc else "<invalid URL>"


def _title(alert: dict[str, Any]) -> str:
    severity = str(alert.get("severity", "error")).upper()
    name = str(alert.get("alert", "alert")).replace("_", " ")
    subject = alert.get("job") or alert.get("asset") or "?"  # a run's job, or an asset
    return f"[{severity}] recs_pipeline {name}: {subject}"


def _facts(alert: dict[str, Any]) -> list[tuple[str, str]]:
    out = []
    for key in _FACT_FIELDS:
        value = alert.get(key)
        if value not in (None, "", [], {}):
            text = (", ".join(f"{k}: {v}" for k, v in value.items()) if isinstance(value, dict)
                    else str(value))
            out.append((key.replace("_", " "), text))
    return out


def webhook_payload(alert: dict[str, Any], webhook_format: str) -> dict[str, Any]:
    """The POST body for a receiver (`WEBHOOK_FORMATS`; the module docstring says what each is)."""
    if webhook_format == "json":
        return alert
    title, message = _title(alert), str(alert.get("message") or "")
    facts, link = _facts(alert), alert.get("ui_url")
    if webhook_format == "slack":
        blocks: list[dict[str, Any]] = [
            {"type": "header", "text": {"type": "plain_text", "text": title[:150]}},
            {"type": "section", "text": {"type": "mrkdwn",
                                         "text": message[:_SLACK_TEXT_LIMIT] or "(no message)"}},
        ]
        if facts:
            blocks.append({"type": "section", "fields": [
                {"type": "mrkdwn", "text": f"*{k}*\n{v}"[:2000]} for k, v in facts[:10]]})
        if link:
            blocks.append({"type": "section", "text": {
                "type": "mrkdwn", "text": f"<{link}|Open the run in Dagster>"}})
        return {"text": f"{title}: {message}"[:_SLACK_TEXT_LIMIT], "blocks": blocks}
    if webhook_format == "teams":
        card: dict[str, Any] = {
            "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
            "type": "AdaptiveCard", "version": "1.4",
            "body": [
                {"type": "TextBlock", "text": title, "weight": "Bolder", "size": "Medium",
                 "wrap": True},
                {"type": "TextBlock", "text": message or "(no message)", "wrap": True},
                {"type": "FactSet", "facts": [{"title": k, "value": v} for k, v in facts]},
            ],
        }
        if link:
            card["actions"] = [{"type": "Action.OpenUrl", "title": "Open in Dagster",
                                "url": link}]
        return {"type": "message", "attachments": [
            {"contentType": "application/vnd.microsoft.card.adaptive", "contentUrl": None,
             "content": card}]}
    raise ValueError(f"unknown webhook format {webhook_format!r}; choose one of "
                     f"{', '.join(WEBHOOK_FORMATS)}")


def post_alert(url: str, alert: dict[str, Any], timeout: float = WEBHOOK_TIMEOUT_SECONDS,
               webhook_format: str = "json") -> str:
    """POST the alert, shaped for its receiver. Returns a short outcome; never raises for
    delivery problems."""
    body = json.dumps(webhook_payload(alert, webhook_format), sort_keys=True).encode()
    request = urllib.request.Request(
        url,
        data=body,
        method="POST",
        headers={"Content-Type": "application/json", "User-Agent": "recs-pipeline-alerts/1"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return f"delivered to {_safe_target(url)}: HTTP {response.status}"
    except urllib.error.HTTPError as exc:
        return f"NOT delivered to {_safe_target(url)}: HTTP {exc.code}"
    except (urllib.error.URLError, TimeoutError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return f"NOT delivered to {_safe_target(url)}: {type(exc).__name__}: {reason}"


def emit_alert(log: logging.Logger | dg.DagsterLogManager, alert: dict[str, Any]) -> None:
    """Log the alert (error, warning or info, by its severity) and POST it when a webhook is set."""
    line = f"{ALERT_LOG_PREFIX} {json.dumps(alert, sort_keys=True)}"
    if alert.get("severity") == "warning":
        log.warning(line)
    elif alert.get("severity") == "info":
        log.info(line)
    else:
        log.error(line)
    webhook = dg.EnvVar(WEBHOOK_URL_ENV_VAR).get_value()
    if webhook:
        webhook_format = (dg.EnvVar(WEBHOOK_FORMAT_ENV_VAR).get_value(default="json")
                          or "json").strip().lower()
        if webhook_format not in WEBHOOK_FORMATS:
            log.error(f"alert NOT posted: {WEBHOOK_FORMAT_ENV_VAR}={webhook_format!r} is not "
                      f"one of {', '.join(WEBHOOK_FORMATS)}")
            return
        outcome = post_alert(webhook, alert, webhook_format=webhook_format)
        if outcome.startswith("NOT"):
            log.warning(f"alert webhook {outcome}")
        else:
            log.info(f"alert webhook {outcome}")
