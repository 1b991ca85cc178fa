"""Delivering an alert: one structured log line and, when configured, a webhook POST.

Every alert of this code location (a failed run, a quality-gate fallback) is a JSON object
written to the log with the prefix `RECS_ALERT`, so log shippers can match it. When
`RECS_ALERT_WEBHOOK_URL` is set, the same JSON is POSTed there. Both variables are read when an
alert is emitted, never at import. A webhook that is down or slow never fails the caller: the
delivery error is logged (without the URL's path, which often embeds a token).
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
WEBHOOK_TIMEOUT_SECONDS = 5.0
ALERT_LOG_PREFIX = "RECS_ALERT"


def ui_base_url() -> str:
    """Where the Dagster UI is, for links in alerts."""
    return dg.EnvVar(UI_BASE_URL_ENV_VAR).get_value(default=DEFAULT_UI_BASE_URL) or (
        DEFAULT_UI_BASE_URL)


def _safe_target(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}/…" if parts.netloc else "<invalid URL>"


def post_alert(url: str, alert: dict[str, Any], timeout: float = WEBHOOK_TIMEOUT_SECONDS) -> str:
    """POST the alert as JSON. Returns a short outcome; never raises for delivery problems."""
    body = json.dumps(alert, sort_keys=True).encode()
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
    """Log the alert (error or warning, by its severity) and POST it when a webhook is set."""
    line = f"{ALERT_LOG_PREFIX} {json.dumps(alert, sort_keys=True)}"
    if alert.get("severity") == "warning":
        log.warning(line)
    else:
        log.error(line)
    webhook = dg.EnvVar(WEBHOOK_URL_ENV_VAR).get_value()
    if webhook:
        outcome = post_alert(webhook, alert)
        if outcome.startswith("NOT"):
            log.warning(f"alert webhook {outcome}")
        else:
            log.info(f"alert webhook {outcome}")
