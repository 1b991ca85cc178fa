"""The run-failure alert: structured log line, webhook POST to a real local HTTP server."""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from types import SimpleNamespace
from unittest import mock

import dagster as dg
import pytest

from recs_pipeline.alerting import (
    ALERT_LOG_PREFIX,
    UI_BASE_URL_ENV_VAR,
    WEBHOOK_FORMAT_ENV_VAR,
    WEBHOOK_URL_ENV_VAR,
    emit_alert,
    post_alert,
    webhook_payload,
)
from recs_pipeline.defs.platform.alerts import run_failure_alert_sensor
from recs_pipeline.tags import ACHIEVEMENTS_TAGS
from recs_pipeline_tests.webhook_receiver import Receiver, serving


@dg.op
def _fine() -> int:
    return 1


@dg.op
def _explode(x: int) -> int:
    raise ValueError(f"bad batch {x}\nsecond line with details")


@dg.job(tags=ACHIEVEMENTS_TAGS)
def _failing_job() -> None:
    _explode(_fine())


class _Recorder(BaseHTTPRequestHandler):
    received: list[tuple[str, dict[str, str], bytes]] = []
    status = 200

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        type(self).received.append((self.path, dict(self.headers), body))
        self.send_response(type(self).status)
        self.end_headers()

    def log_message(self, *args: object) -> None:  # keep pytest output clean
        pass


@pytest.fixture
def webhook_server() -> Iterator[tuple[str, type[_Recorder]]]:
    handler = type("Handler", (_Recorder,), {"received": [], "status": 200})
    with serving(handler) as url:
        yield f"{url}/hooks/secret-token", handler


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _evaluate(instance: dg.DagsterInstance, caplog: pytest.LogCaptureFixture) -> dict:
    result = _failing_job.execute_in_process(instance=instance, raise_on_error=False)
    assert not result.success
    context = dg.build_run_status_sensor_context(
        sensor_name="run_failure_alert_sensor",
        dagster_event=result.get_run_failure_event(),
        dagster_instance=instance,
        dagster_run=result.dagster_run,
        # A plain propagating logger so caplog sees what the sensor logs.
        context=SimpleNamespace(log=logging.getLogger("recs_alert_test")),  # type: ignore[arg-type]
    ).for_run_failure()
    caplog.clear()
    caplog.set_level(logging.INFO, logger="recs_alert_test")
    run_failure_alert_sensor(context)
    lines = [r.getMessage() for r in caplog.records if ALERT_LOG_PREFIX in r.getMessage()]
    assert len(lines) == 1
    alert = json.loads(lines[0].split(ALERT_LOG_PREFIX, 1)[1])
    assert alert["run_id"] == result.run_id
    return alert


def test_alert_is_logged_and_posted(
    dagster_instance: dg.DagsterInstance,
    webhook_server: tuple[str, type[_Recorder]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    url, handler = webhook_server
    env = {WEBHOOK_URL_ENV_VAR: url, UI_BASE_URL_ENV_VAR: "https://dagster.example.org/"}
    with mock.patch.dict("os.environ", env):
        alert = _evaluate(dagster_instance, caplog)
    assert alert["job"] == "_failing_job"
    assert alert["job_kind"] == "achievements"
    assert alert["launched_by"] == "manual"
    assert alert["step"] == "_explode"
    assert alert["error_class"] == "ValueError"
    assert alert["message"] == "bad batch 1"  # first line only
    assert alert["failed_steps"] == [
        {"step": "_explode", "error_class": "ValueError", "message": "bad batch 1"}
    ]
    assert alert["failure_reason"] == "STEP_FAILURE"
    assert alert["ui_url"] == f"https://dagster.example.org/runs/{alert['run_id']}"

    assert len(handler.received) == 1
    path, headers, body = handler.received[0]
    assert path == "/hooks/secret-token"
    assert headers["Content-Type"] == "application/json"
    assert json.loads(body) == alert
    messages = " ".join(r.getMessage() for r in caplog.records)
    assert "delivered to http://127.0.0.1" in messages
    assert "secret-token" not in messages.replace(json.dumps(alert, sort_keys=True), "")


def test_webhook_down_is_logged_not_raised(
    dagster_instance: dg.DagsterInstance, caplog: pytest.LogCaptureFixture
) -> None:
    dead = f"http://127.0.0.1:{_free_port()}/hook"
    with mock.patch.dict("os.environ", {WEBHOOK_URL_ENV_VAR: dead}):
        alert = _evaluate(dagster_instance, caplog)
    assert alert["ui_url"].startswith("http://127.0.0.1:3000/runs/")
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("NOT delivered" in w and "Connection refused" in w for w in warnings), warnings


def test_no_webhook_configured_posts_nothing(
    dagster_instance: dg.DagsterInstance,
    webhook_server: tuple[str, type[_Recorder]],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(WEBHOOK_URL_ENV_VAR, raising=False)
    _evaluate(dagster_instance, caplog)
    assert webhook_server[1].received == []


def test_http_error_and_timeout_are_outcomes(webhook_server: tuple[str, type[_Recorder]]) -> None:
    url, handler = webhook_server
    handler.status = 500
    assert post_alert(url, {"a": 1}).startswith("NOT delivered to http://127.0.0.1")
    assert "HTTP 500" in post_alert(url, {"a": 1})
    # A server that accepts the connection but never answers: the timeout ends the wait.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        outcome = post_alert(f"http://127.0.0.1:{silent.getsockname()[1]}/", {}, timeout=0.5)
    assert outcome.startswith("NOT delivered") and "timed out" in outcome.lower()


@pytest.mark.parametrize("webhook_format", ["slack", "teams"])
def test_slack_and_teams_receivers_accept_the_alert(
    webhook_format: str, dagster_instance: dg.DagsterInstance,
    receiver: tuple[str, type[Receiver]], caplog: pytest.LogCaptureFixture,
) -> None:
    base, handler = receiver
    env = {WEBHOOK_URL_ENV_VAR: f"{base}/{webhook_format}/T000/B000",
           WEBHOOK_FORMAT_ENV_VAR: webhook_format.upper()}
    with mock.patch.dict("os.environ", env):
        alert = _evaluate(dagster_instance, caplog)
    assert len(handler.received) == 1
    messages = " ".join(r.getMessage() for r in caplog.records)
    assert "delivered to http://127.0.0.1" in messages and "HTTP 200" in messages, messages
    shown = json.dumps(handler.received[0])
    assert "bad batch 1" in shown and alert["ui_url"] in shown and "_failing_job" in shown


@pytest.mark.parametrize("webhook_format", ["json", "teams"])
def test_a_slack_receiver_rejects_other_shapes(
    webhook_format: str, receiver: tuple[str, type[Receiver]]
) -> None:
    """The validator is strict enough to tell: the plain JSON alert is what Slack refused."""
    base, _ = receiver
    alert = {"alert": "run_failure", "job": "j", "message": "m", "ui_url": "http://x/runs/1"}
    outcome = post_alert(f"{base}/slack/T/B", alert, webhook_format=webhook_format)
    assert "HTTP 400" in outcome


def test_long_messages_stay_within_slack_limits(receiver: tuple[str, type[Receiver]]) -> None:
    base, _ = receiver
    alert = {"alert": "run_failure", "job": "j" * 300, "message": "x" * 10_000,
             "step": "s" * 5000, "ui_url": "http://x/runs/1"}
    assert "HTTP 200" in post_alert(f"{base}/slack/T/B", alert, webhook_format="slack")
    assert webhook_payload(alert, "json") == alert


def test_an_unknown_format_is_an_error_line_and_no_post(
    receiver: tuple[str, type[Receiver]], caplog: pytest.LogCaptureFixture
) -> None:
    base, handler = receiver
    caplog.set_level(logging.INFO, logger="recs_alert_test")
    env = {WEBHOOK_URL_ENV_VAR: f"{base}/slack/T/B", WEBHOOK_FORMAT_ENV_VAR: "discord"}
    with mock.patch.dict("os.environ", env):
        emit_alert(logging.getLogger("recs_alert_test"), {"alert": "x", "message": "m"})
    assert handler.received == []
    assert any("RECS_ALERT_WEBHOOK_FORMAT='discord'" in r.getMessage() and r.levelname == "ERROR"
               for r in caplog.records)
