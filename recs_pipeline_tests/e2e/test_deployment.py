"""End to end with real processes on PostgreSQL: webserver (GraphQL, UI screenshots) and daemon.

Marked `slow`; each test has a timeout. The deployment (conftest.py) is shared by the module.
Set RECS_UPDATE_SCREENSHOTS=1 to copy the screenshots into docs/img/ for the README.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from datetime import datetime
from pathlib import Path
from unittest import mock

import dagster as dg
import pytest
import sqlalchemy as sa
from dagster._core.events import StepMaterializationData
from dagster._core.instance.utils import RUNLESS_JOB_NAME, RUNLESS_RUN_ID

from recs_pipeline import schema
from recs_pipeline.definitions import defs
from recs_pipeline.defs.recommendations.refresh_requests import pending_count, request_refresh
from recs_pipeline_tests.deploy_support import REPO_ROOT, wait_for
from recs_pipeline_tests.e2e.browser import capture, ui_errors
from recs_pipeline_tests.e2e.conftest import LOCATION, REPOSITORY, Deployment

pytestmark = pytest.mark.slow

NIGHTLY_JOB = "nightly_recommendations_job"
DOCS_IMG = REPO_ROOT / "docs" / "img"

LOCATION_QUERY = """
{
  workspaceOrError {
    __typename
    ... on PythonError { message }
    ... on Workspace {
      locationEntries {
        name
        loadStatus
        locationOrLoadError {
          __typename
          ... on PythonError { message }
          ... on RepositoryLocation {
            repositories {
              name
              jobs { name }
              schedules { name scheduleState { status } }
              sensors { name sensorState { status } }
            }
          }
        }
      }
    }
  }
  assetNodes { assetKey { path } }
}
"""

LAUNCH_MUTATION = """
mutation Launch($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId status } }
    ... on RunConfigValidationInvalid { errors { message } }
    ... on Error { message }
  }
}
"""

RUN_STATUS_QUERY = """
query RunStatus($runId: ID!) {
  runOrError(runId: $runId) { __typename ... on Run { status } }
}
"""


RUN_ERRORS_QUERY = """
query RunErrors($runId: ID!) {
  logsForRun(runId: $runId) {
    ... on EventConnection {
      events {
        __typename
        ... on MessageEvent { message stepKey }
        ... on ErrorEvent { error { message } }
      }
    }
  }
}
"""


def _run_errors(deployment: Deployment, run_id: str) -> list[str]:
    events = deployment.graphql(RUN_ERRORS_QUERY, {"runId": run_id})["logsForRun"]["events"]
    return [
        f"{e['__typename']} {e.get('stepKey')}: {e['message']} {e['error']['message'][:1500]}"
        for e in events if e.get("error")
    ]


def _save_picture(png: Path, name: str) -> None:
    if os.environ.get("RECS_UPDATE_SCREENSHOTS") == "1":
        DOCS_IMG.mkdir(parents=True, exist_ok=True)
        shutil.copy(png, DOCS_IMG / name)


def _wait_for_run(deployment: Deployment, run_id: str, timeout: float) -> str:
    def finished() -> str | None:
        status = deployment.graphql(RUN_STATUS_QUERY, {"runId": run_id})["runOrError"]["status"]
        return status if status in ("SUCCESS", "FAILURE", "CANCELED") else None

    return wait_for(finished, timeout, interval=2.0, what=f"run {run_id}")


@pytest.mark.timeout(240)
def test_code_location_lists_every_definition(deployment: Deployment) -> None:
    data = deployment.graphql(LOCATION_QUERY)
    entries = data["workspaceOrError"]["locationEntries"]
    assert [e["name"] for e in entries] == [LOCATION]
    location = entries[0]["locationOrLoadError"]
    assert location["__typename"] == "RepositoryLocation", location
    (repo,) = location["repositories"]
    assert repo["name"] == REPOSITORY

    repo_def = defs.get_repository_def()
    expected_jobs = {j.name for j in repo_def.get_all_jobs()}
    assert {j["name"] for j in repo["jobs"]} == expected_jobs
    assert NIGHTLY_JOB in expected_jobs
    assert {s["name"] for s in repo["schedules"]} == {s.name for s in repo_def.schedule_defs}
    assert {s["name"] for s in repo["sensors"]} == {s.name for s in repo_def.sensor_defs}
    # Sensors and schedules are on by default (a fresh deployment needs no clicking), except the
    # bucketed refresh's schedule: it replaces the nightly one only when switched on.
    assert {s["sensorState"]["status"] for s in repo["sensors"]} == {"RUNNING"}
    states = {s["name"]: s["scheduleState"]["status"] for s in repo["schedules"]}
    assert states.pop("nightly_recommendations_bucketed_schedule") == "STOPPED"
    assert set(states.values()) == {"RUNNING"}
    listed = {"/".join(a["assetKey"]["path"]) for a in data["assetNodes"]}
    expected_assets = {k.to_user_string() for k in repo_def.asset_graph.get_all_asset_keys()}
    assert listed == expected_assets


def _daemon_alerts(deployment: Deployment, alert: str) -> list[dict]:
    text = "".join(p.read_text(errors="replace") for p in deployment.logs if p.exists())
    return [json.loads(line.split("RECS_ALERT ", 1)[1]) for line in text.splitlines()
            if "RECS_ALERT " in line and f'"alert": "{alert}"' in line]


@pytest.mark.timeout(180)
def test_a_stale_published_table_raises_an_alert(deployment: Deployment) -> None:
    """The last publish of team_recommendations was 30 hours ago (no nightly since): the
    daemon's freshness evaluation fails its policy and freshness_alert_sensor alerts, although
    no run failed. Runs before the nightly test, which then makes the table fresh."""
    with mock.patch.dict(os.environ, deployment.env), dg.DagsterInstance.get() as instance:
        instance.report_dagster_event(
            dg.DagsterEvent(
                event_type_value=dg.DagsterEventType.ASSET_MATERIALIZATION.value,
                job_name=RUNLESS_JOB_NAME,
                event_specific_data=StepMaterializationData(
                    dg.AssetMaterialization(dg.AssetKey("team_recommendations"))),
            ),
            run_id=RUNLESS_RUN_ID, timestamp=time.time() - 30 * 3600,
        )
    [alert] = wait_for(lambda: _daemon_alerts(deployment, "asset_freshness_overdue"), 150,
                       interval=2.0, what="a freshness alert for team_recommendations")
    assert alert["asset"] == "team_recommendations" and alert["severity"] == "error"
    assert "overdue" in alert["message"] and "30.0 h" in alert["message"]


@pytest.fixture(scope="module")
def nightly_run_id(deployment: Deployment) -> str:
    """A run of the nightly job launched over GraphQL, queued, launched by the daemon, finished."""
    params = {
        "selector": {
            "repositoryLocationName": LOCATION,
            "repositoryName": REPOSITORY,
            "jobName": NIGHTLY_JOB,
        },
        "runConfigData": {},
    }
    result = deployment.graphql(LAUNCH_MUTATION, {"params": params})["launchRun"]
    assert result["__typename"] == "LaunchRunSuccess", result
    run_id = result["run"]["runId"]
    # The production instance queues runs; the daemon's run queue launches them.
    assert result["run"]["status"] in ("QUEUED", "NOT_STARTED", "STARTING", "STARTED")
    status = _wait_for_run(deployment, run_id, timeout=240)
    assert status == "SUCCESS", (
        f"nightly run {run_id} ended {status}: {_run_errors(deployment, run_id)}\n"
        f"{deployment.dump_logs()}"
    )
    return run_id


@pytest.mark.timeout(300)
def test_nightly_job_launched_over_graphql_succeeds(
    deployment: Deployment, nightly_run_id: str
) -> None:
    with deployment.app_engine().connect() as conn:
        published = conn.execute(
            sa.select(sa.func.count()).select_from(schema.tournament_recommendations)
        ).scalar_one()
        users = conn.execute(
            sa.select(sa.func.count(sa.distinct(schema.tournament_recommendations.c.user_id)))
        ).scalar_one()
    assert published > 0 and users > 0


@pytest.mark.timeout(240)
def test_ui_screenshots_show_no_errors(deployment: Deployment, nightly_run_id: str) -> None:
    tmp = deployment.tmp
    # The nightly job's page renders its asset graph (with the run's materializations).
    job_dom = capture(
        f"{deployment.base_url}/locations/{LOCATION}/jobs/{NIGHTLY_JOB}",
        tmp / "job-page.png", tmp / "chrome",
    )
    assert not ui_errors(job_dom), ui_errors(job_dom)
    # (--dump-dom renders a smaller viewport: only the graph's first column is in the DOM.)
    for text in (NIGHTLY_JOB, "user_features", "Materialized"):
        assert text in job_dom, text
    # The whole lineage of the group, app tables to published tables, for the README (tall
    # window: the graph is laid out top to bottom).
    graph_dom = capture(
        f"{deployment.base_url}/locations/{LOCATION}/asset-groups/recommendations",
        tmp / "asset-graph.png", tmp / "chrome", window=(1600, 2700),
    )
    assert not ui_errors(graph_dom), ui_errors(graph_dom)
    assert "recommendations" in graph_dom
    _save_picture(tmp / "asset-graph.png", "asset-graph.png")

    run_dom = capture(
        f"{deployment.base_url}/runs/{nightly_run_id}", tmp / "run-page.png", tmp / "chrome"
    )
    assert not ui_errors(run_dom), ui_errors(run_dom)
    assert nightly_run_id[:8] in run_dom
    assert "Success" in run_dom
    _save_picture(tmp / "run-page.png", "run-page.png")


# --- The daemon: outbox events -> sensor -> queued achievements runs, across a daemon restart --

REFRESH_RUNS_QUERY = """
{
  runsOrError(filter: {pipelineName: "refresh_user_recommendations_job"}) {
    ... on Runs { results { runId status startTime endTime tags { key value } } }
  }
}
"""


def _refresh_runs(deployment: Deployment, launched_by: str | None) -> list[dict]:
    runs = deployment.graphql(REFRESH_RUNS_QUERY)["runsOrError"]["results"]
    return [r for r in runs if launched_by is None or {t["key"]: t["value"] for t in r["tags"]}
            .get("dagster/sensor_name") == launched_by]


@pytest.mark.timeout(240)
def test_a_thousand_app_requests_become_a_few_runs(
    deployment: Deployment, nightly_run_id: str
) -> None:
    """The app INSERTs refresh requests (1,000 at once, for every user); the daemon's
    user_refresh_request_sensor serves them with a few batched runs, not 1,000."""
    engine = deployment.app_engine()
    try:
        with engine.connect() as conn:
            users = list(conn.execute(sa.select(schema.users.c.id)).scalars())
        t0 = time.monotonic()
        with engine.begin() as conn:
            request_refresh(conn, [users[i % len(users)] for i in range(1000)])

        def served() -> bool:
            with engine.connect() as conn:
                if pending_count(conn):
                    return False
            return all(r["status"] in ("SUCCESS", "FAILURE", "CANCELED")
                       for r in _refresh_runs(deployment, "user_refresh_request_sensor"))

        wait_for(served, 180, interval=1.0, what="every refresh request served")
        elapsed = time.monotonic() - t0
        runs = _refresh_runs(deployment, "user_refresh_request_sensor")
        assert runs and {r["status"] for r in runs} == {"SUCCESS"}
        assert len(runs) <= 3, f"{len(runs)} runs for 1,000 requests"
        print(f"1000 requests for {len(users)} users: {len(runs)} runs, all served "
              f"{elapsed:.1f} s after the insert; run seconds "
              f"{[round(r['endTime'] - r['startTime'], 1) for r in runs]}")
    finally:
        engine.dispose()


@pytest.mark.timeout(180)
def test_the_app_refreshes_users_with_one_graphql_call(deployment: Deployment) -> None:
    """The documented client call (docs/operations.md): dagster-graphql's Python client."""
    from dagster_graphql import DagsterGraphQLClient

    client = DagsterGraphQLClient("127.0.0.1", port_number=deployment.port)
    run_id = client.submit_job_execution(
        "refresh_user_recommendations_job",
        repository_location_name=LOCATION, repository_name=REPOSITORY,
        run_config={"ops": {"refresh_user_recommendations": {"config": {"user_ids": [1, 2, 3]}}}},
    )
    assert _wait_for_run(deployment, run_id, timeout=150) == "SUCCESS", (
        _run_errors(deployment, run_id))


ACHIEVEMENT_RUNS_QUERY = """
{
  runsOrError(filter: {pipelineName: "achievements_job"}) {
    ... on Runs { results { runId status tags { key value } } }
  }
}
"""


class _AppData:
    """Inserts hand-made users, tournaments, teams and outbox events into the app database."""

    def __init__(self, conn: sa.Connection) -> None:
        self.conn = conn
        self.now = datetime(2026, 1, 1)  # any UTC time; metrics do not depend on it
        self.game_id = conn.execute(sa.select(sa.func.min(schema.games.c.id))).scalar_one()
        self.next_ids = {
            t.name: (conn.execute(sa.select(sa.func.max(t.c.id))).scalar() or 0) + 1000
            for t in (schema.users, schema.tournaments, schema.tournament_participants,
                      schema.teams, schema.team_members)
        }

    def _id(self, table: sa.Table) -> int:
        self.next_ids[table.name] += 1
        return self.next_ids[table.name]

    def user(self, completeness: int | None = None) -> int:
        uid = self._id(schema.users)
        self.conn.execute(schema.users.insert().values(
            id=uid, username=f"e2e{uid}", email=f"e2e{uid}@example.org", region="eu",
            is_active=True, date_joined=self.now, last_login=None,
        ))
        if completeness is not None:
            self.conn.execute(schema.profile_completeness.insert().values(
                user_id=uid, percentage=completeness, updated_at=self.now))
        return uid

    def completed_tournament(self, user_id: int, placement: int) -> int:
        tid = self._id(schema.tournaments)
        self.conn.execute(schema.tournaments.insert().values(
            id=tid, name=f"E2E Cup {tid}", game_id=self.game_id, region="eu", skill_min=None,
            skill_max=None, max_participants=16, status="completed",
            registration_closes_at=self.now, starts_at=self.now, completed_at=self.now,
            created_at=self.now,
        ))
        self.conn.execute(schema.tournament_participants.insert().values(
            id=self._id(schema.tournament_participants), tournament_id=tid, user_id=user_id,
            team_id=None, registered_at=self.now, placement=placement,
        ))
        return tid

    def team_membership(self, user_id: int, left: bool = False) -> int:
        team_id = self._id(schema.teams)
        self.conn.execute(schema.teams.insert().values(
            id=team_id, name=f"E2E Team {team_id}", game_id=self.game_id, region="eu",
            captain_id=user_id, max_members=5, is_recruiting=True, created_at=self.now,
        ))
        self.conn.execute(schema.team_members.insert().values(
            id=self._id(schema.team_members), team_id=team_id, user_id=user_id,
            joined_at=self.now, left_at=self.now if left else None,
        ))
        return team_id

    def event(self, event_type: str, user_id: int | None, payload: str | None = None) -> int:
        return self.conn.execute(schema.app_events.insert().values(
            event_type=event_type, user_id=user_id, payload=payload, created_at=self.now,
        ).returning(schema.app_events.c.id)).scalar_one()


def _achievement_runs(deployment: Deployment) -> list[dict]:
    return deployment.graphql(ACHIEVEMENT_RUNS_QUERY)["runsOrError"]["results"]


def _ledger(engine: sa.Engine) -> dict[int, tuple[str, str]]:
    ledger = schema.achievement_event_ledger
    with engine.connect() as conn:
        rows = conn.execute(sa.select(ledger.c.event_id, ledger.c.outcome, ledger.c.run_id))
        return {r.event_id: (r.outcome, r.run_id) for r in rows}


@pytest.mark.timeout(420)
def test_daemon_awards_achievements_exactly_once_across_a_restart(
    deployment: Deployment,
) -> None:
    engine = deployment.app_engine()
    try:
        with engine.begin() as conn:
            data = _AppData(conn)
            winner = data.user()
            data.completed_tournament(winner, placement=1)
            joiner = data.user()
            for left in (True, False, False):
                data.team_membership(joiner, left=left)
            complete = data.user(completeness=100)
            almost = data.user(completeness=80)
            nobody = data.user()
            wave1 = [
                data.event("tournament_completed", winner, '{"tournament_id": 1}'),
                data.event("team_joined", joiner),
                data.event("profile_completed", complete),
                data.event("profile_completed", almost),
                data.event("tournament_completed", nobody),
                data.event("tournament_completed", None),  # bad: dead letter
            ]

        # The running daemon's sensor requests batches; stop the daemon (its process group, as
        # a host restart would) while the first run is executing: that run is interrupted.
        wait_for(
            lambda: [r for r in _achievement_runs(deployment) if r["status"] == "STARTED"],
            120, interval=0.3, what="the sensor's first achievements run to start",
        )
        t0 = time.monotonic()
        deployment.stop_daemon()
        print(f"stop took {time.monotonic() - t0:.1f}s")
        runs_at_stop = _achievement_runs(deployment)
        ledger_at_stop = _ledger(engine)

        # While the daemon is down the app keeps writing.
        with engine.begin() as conn:
            data.conn = conn
            conn.execute(schema.profile_completeness.update()
                         .where(schema.profile_completeness.c.user_id == almost)
                         .values(percentage=100))
            podium = data.user()
            for placement in (2, 3, 3):
                data.completed_tournament(podium, placement)
            data.completed_tournament(winner, placement=5)
            wave2 = [
                data.event("profile_completed", almost),
                data.event("tournament_completed", podium),
                data.event("tournament_completed", winner),
            ]

        deployment.start_daemon()
        all_events = set(wave1) | set(wave2)

        def settled() -> bool:
            runs = _achievement_runs(deployment)
            busy = [r for r in runs if r["status"] not in ("SUCCESS", "FAILURE", "CANCELED")]
            return not busy and all_events <= set(_ledger(engine))

        t0 = time.monotonic()
        wait_for(settled, 300, interval=2.0, what="every event in the ledger, no run in flight")
        print(f"settled after restart in {time.monotonic() - t0:.1f}s")

        ledger = _ledger(engine)
        runs = {r["runId"]: r for r in _achievement_runs(deployment)}
        # Every event handled exactly once, by a successful sensor-launched run.
        assert set(ledger) == all_events
        for event_id, (_outcome, run_id) in ledger.items():
            assert runs[run_id]["status"] == "SUCCESS", (event_id, runs[run_id])
        for run in runs.values():
            tags = {t["key"]: t["value"] for t in run["tags"]}
            assert tags.get("dagster/sensor_name") == "achievement_events_sensor"
        assert ledger[wave1[-1]][0] != "awarded"  # the NULL-user event was dead-lettered
        with engine.connect() as conn:
            dead = conn.execute(sa.select(schema.achievement_dead_letters.c.event_id)).scalars()
            assert set(dead) == {wave1[-1]}
            ua, ach = schema.user_achievements, schema.achievements
            awards = conn.execute(
                sa.select(ua.c.user_id, ach.c.code).join(ach, ach.c.id == ua.c.achievement_id)
                .where(ua.c.user_id.in_([winner, joiner, complete, almost, nobody, podium]))
            ).all()
        assert sorted(awards) == sorted([
            (winner, "first_tournament"), (winner, "first_win"),
            (joiner, "first_team"), (joiner, "three_teams"),
            (complete, "profile_complete"),
            (almost, "profile_complete"),
            (podium, "first_tournament"), (podium, "three_podiums"),
        ])
        # The interrupted run failed, and the run-failure sensor raised an alert for it.
        failed = [r["runId"] for r in runs.values() if r["status"] != "SUCCESS"]

        def alerted() -> bool:
            text = "".join(p.read_text(errors="replace") for p in deployment.logs if p.exists())
            lines = [line for line in text.splitlines() if "RECS_ALERT" in line]
            return all(any(run_id in line for line in lines) for run_id in failed)

        wait_for(alerted, 120, interval=2.0, what=f"RECS_ALERT lines for the failed runs {failed}")
        print(f"at the daemon stop: {len(runs_at_stop)} runs "
              f"{sorted(r['status'] for r in runs_at_stop)}, {len(ledger_at_stop)} events done; "
              f"after the restart: {len(runs)} runs, {len(ledger)} events done")
    finally:
        engine.dispose()
