"""Freshness: the policies on the published and awarded tables, and the alert when one fails."""

from __future__ import annotations

import json
import time
from datetime import timedelta
from unittest import mock

import dagster as dg
import pytest
from dagster._core.definitions.freshness import FreshnessState, FreshnessStateChange

from recs_pipeline import schema
from recs_pipeline.alerting import ALERT_LOG_PREFIX, WEBHOOK_FORMAT_ENV_VAR, WEBHOOK_URL_ENV_VAR
from recs_pipeline.definitions import defs
from recs_pipeline.defs.platform.freshness import freshness_alert_sensor
from recs_pipeline_tests.webhook_receiver import Receiver, slack_problem

PUBLISHED = dg.AssetKey("tournament_recommendations")


def test_policies_owners_and_columns_on_the_tables_the_app_reads() -> None:
    graph = defs.resolve_asset_graph()
    for name in ("tournament_recommendations", "team_recommendations"):
        node = graph.get(dg.AssetKey(name))
        policy = node.freshness_policy
        assert isinstance(policy, dg.FreshnessPolicy)
        # 02:00 nightly, overdue from 04:00 unless materialized since 02:00
        assert (policy.deadline_cron, policy.lower_bound_delta) == ("0 4 * * *",
                                                                   timedelta(hours=2))
        assert node.owners == ["team:data-platform"]
        columns = node.metadata["dagster/column_schema"].columns
        assert [c.name for c in columns] == [c.name for c in getattr(schema, name).columns]
        assert all(c.description for c in columns)
    awards = graph.get(dg.AssetKey(["app", "user_achievements"]))
    assert awards.freshness_policy.fail_window.to_timedelta() == timedelta(minutes=15)
    assert "team:data-platform" in awards.owners


def _change(instance: dg.DagsterInstance, previous: FreshnessState, new: FreshnessState,
            key: dg.AssetKey = PUBLISHED) -> None:
    """What the freshness daemon records when it re-evaluates a policy."""
    instance.report_runless_asset_event(FreshnessStateChange(
        key=key, previous_state=previous, new_state=new, state_change_timestamp=time.time()))


def _tick(instance: dg.DagsterInstance, cursor: str | None,
          capfd: pytest.CaptureFixture[str]) -> tuple[dg.SensorResult, list[dict]]:
    """One evaluation; the alerts are the RECS_ALERT lines of the sensor's log."""
    capfd.readouterr()
    with dg.build_sensor_context(instance=instance, cursor=cursor) as context:
        result = freshness_alert_sensor(context)
    alerts = [json.loads(line.split(ALERT_LOG_PREFIX, 1)[1])
              for line in capfd.readouterr().err.splitlines() if ALERT_LOG_PREFIX in line]
    return result, alerts


def test_overdue_late_and_recovered_are_alerted_once_each(
    dagster_instance: dg.DagsterInstance, receiver: tuple[str, type[Receiver]],
    capfd: pytest.CaptureFixture[str],
) -> None:
    base, handler = receiver  # validates each body as a Slack incoming webhook does
    dagster_instance.report_runless_asset_event(dg.AssetMaterialization(PUBLISHED))
    with mock.patch.dict("os.environ", {WEBHOOK_URL_ENV_VAR: f"{base}/slack/T000/B000",
                                        WEBHOOK_FORMAT_ENV_VAR: "slack"}):
        quiet, alerts = _tick(dagster_instance, None, capfd)
        assert alerts == [] and handler.received == []
        _change(dagster_instance, FreshnessState.UNKNOWN, FreshnessState.PASS)  # nothing to say
        _change(dagster_instance, FreshnessState.PASS, FreshnessState.FAIL)
        failed, alerts = _tick(dagster_instance, quiet.cursor, capfd)
        [overdue] = alerts
        assert overdue["alert"] == "asset_freshness_overdue" and overdue["severity"] == "error"
        assert overdue["asset"] == "tournament_recommendations"
        assert overdue["ui_url"].endswith("/assets/tournament_recommendations")
        assert "overdue" in overdue["message"] and "last materialized" in overdue["message"]
        assert len(handler.received) == 1 and "overdue" in handler.received[0]["text"]
        assert slack_problem(handler.received[0]) is None  # Slack would accept it
        # the same change is never alerted twice
        again, alerts = _tick(dagster_instance, failed.cursor, capfd)
        assert alerts == [] and len(handler.received) == 1
        # materialized again: one all-clear; a late table that recovers at once says nothing
        _change(dagster_instance, FreshnessState.FAIL, FreshnessState.PASS)
        _change(dagster_instance, FreshnessState.UNKNOWN, FreshnessState.WARN,
                dg.AssetKey(["app", "user_achievements"]))
        _, alerts = _tick(dagster_instance, again.cursor, capfd)
        by_alert = {a["alert"]: a for a in alerts}
        assert set(by_alert) == {"asset_freshness_recovered", "asset_freshness_late"}
        assert by_alert["asset_freshness_late"]["severity"] == "warning"
        assert by_alert["asset_freshness_late"]["message"].startswith(
            "app/user_achievements is late") and "never materialized" in by_alert[
            "asset_freshness_late"]["message"]
        assert len(handler.received) == 3


def test_a_failure_already_recovered_at_the_next_look_is_not_alerted(
    dagster_instance: dg.DagsterInstance, capfd: pytest.CaptureFixture[str],
) -> None:
    _change(dagster_instance, FreshnessState.PASS, FreshnessState.FAIL)
    _change(dagster_instance, FreshnessState.FAIL, FreshnessState.PASS)
    _, alerts = _tick(dagster_instance, None, capfd)
    assert alerts == []  # failed and fresh again since the last look: nothing to act on
