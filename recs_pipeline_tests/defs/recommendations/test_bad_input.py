"""One bad row never stops everyone: the nightly quarantines it, reports it, publishes the rest.

Each bad row breaks one rule of the contract. SQLite stores timestamps as text, so an unparsable
one can only exist there; the value-range and status cases apply to both backends.
"""

from __future__ import annotations

import dagster as dg
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from recs_pipeline import schema
from recs_pipeline.defs.recommendations.config import PublishConfig, QualityConfig
from recs_pipeline.resources import AppDatabase, InputQuarantinePolicy, RunClock
from recs_pipeline_tests.defs.recommendations.test_assets import (
    ASSET_CONFIG,
    RECOMMENDATION_ASSETS,
    _check_evaluations,
    _materialize,
    _pairs,
    _published,
)
from recs_pipeline_tests.recommendation_world import (
    EXPECTED_TEAMS,
    EXPECTED_TOURNAMENTS,
    NOW,
    expected_pairs,
    insert_world,
)

TOURNAMENT = dict(name="T bad", game_id=1, region="eu", max_participants=16,
                  status="upcoming", starts_at=NOW, created_at=NOW)


def _insert_bad_rows(engine: Engine, backend: str) -> set[tuple[str, str, str, int]]:
    """Insert one bad row of each kind; returns (table, column, reason, example id) expected."""
    expected = {
        ("tournaments", "status", "status not in the contract", 901),
        ("game_profiles", "skill_rating", "value outside the contract's range", 900),
        ("profile_completeness", "percentage", "value outside the contract's range", 3),
    }
    with engine.begin() as conn:
        conn.execute(sa.insert(schema.tournaments), [{
            **TOURNAMENT, "id": 901, "status": "OPEN", "registration_closes_at": NOW}])
        # user 7 would get tournament 102 (g2, eu, no band) from this profile
        conn.execute(sa.insert(schema.game_profiles), [{
            "id": 900, "user_id": 7, "game_id": 2, "skill_rating": -5, "created_at": NOW}])
        conn.execute(sa.insert(schema.profile_completeness), [{
            "user_id": 3, "percentage": 150, "updated_at": NOW}])
        if backend == "sqlite":  # text timestamps: written raw, as a careless app would
            conn.exec_driver_sql(
                "INSERT INTO tournaments (id, name, game_id, region, max_participants, status, "
                "registration_closes_at, starts_at, created_at) VALUES "
                "(900, 'T soon', 1, 'eu', 16, 'upcoming', 'soon', ?, ?)", (str(NOW), str(NOW)))
            conn.exec_driver_sql(
                "INSERT INTO activities (id, user_id, activity_type, created_at) VALUES "
                "(9001, 1, 'login', 'yesterday')")
            # user 3 is on team 10 (left_at '' is not a departure): never recommend it to them
            conn.exec_driver_sql(
                "INSERT INTO team_members (id, team_id, user_id, joined_at, left_at) VALUES "
                "(900, 10, 3, ?, '')", (str(NOW),))
            conn.exec_driver_sql(
                "INSERT INTO teams (id, name, game_id, region, captain_id, max_members, "
                "is_recruiting, created_at) VALUES (900, 'Team soon', 1, 'eu', 1, 5, 1, 'soon')")
            expected |= {
                ("tournaments", "registration_closes_at", "unparsable timestamp", 900),
                ("activities", "created_at", "unparsable timestamp", 9001),
                ("team_members", "left_at", "unparsable timestamp", 900),
                ("teams", "created_at", "unparsable timestamp", 900),
            }
    return expected


def _quarantined(result: dg.ExecuteInProcessResult) -> set[tuple[str, str, str, int]]:
    found = set()
    for asset in ("user_features", "tournament_candidates", "team_candidates"):
        [mat] = result.asset_materializations_for_node(asset)
        for record in mat.metadata["quarantined"].value.records:
            d = record.data
            found |= {(d["table"], d["column"], d["reason"], int(i))
                      for i in str(d["example_ids"]).split(", ")}
    return found


def test_one_bad_row_of_each_kind_is_quarantined_and_the_rest_published(
    app_db: AppDatabase, engine: Engine, backend: str, dagster_instance: dg.DagsterInstance
) -> None:
    insert_world(engine)
    expected = _insert_bad_rows(engine, backend)
    result = _materialize(app_db, dagster_instance)
    assert result.success
    assert _quarantined(result) == expected
    t = _published(engine, schema.tournament_recommendations)
    m = _published(engine, schema.team_recommendations)
    assert _pairs(t, "tournament_id") == expected_pairs(EXPECTED_TOURNAMENTS)
    teams = expected_pairs(EXPECTED_TEAMS)
    if backend == "sqlite":
        teams -= {(3, 10)}  # the member whose left_at is '' is still on team 10
    assert _pairs(m, "team_id") == teams
    checks = _check_evaluations(result)
    # one bad row in a handful is far below the default error share: WARN, not a failure
    warned = {a for (a, name), passed in checks.items() if name == "input_quarantine"
              and not passed}
    # PostgreSQL's typed columns leave the team side nothing to quarantine
    assert warned == {"user_features", "tournament_candidates"} | (
        {"team_candidates"} if backend == "sqlite" else set())
    for event in result.all_events:
        if event.event_type_value == "ASSET_CHECK_EVALUATION":
            data = event.event_specific_data
            if data.check_name == "input_quarantine":
                assert data.severity == dg.AssetCheckSeverity.WARN


def test_a_wholesale_format_change_blocks_the_publish(
    app_db: AppDatabase, engine: Engine, dagster_instance: dg.DagsterInstance
) -> None:
    """Every open tournament with a bad capacity: above error_share, the check is an ERROR and
    the published tables are not replaced."""
    insert_world(engine)
    with engine.begin() as conn:
        conn.execute(sa.update(schema.tournaments).values(max_participants=-1))
    result = dg.materialize(
        RECOMMENDATION_ASSETS, run_config=ASSET_CONFIG, instance=dagster_instance,
        raise_on_error=False, resources={
            "app_db": app_db, "clock": RunClock(),
            # the hand-built world has 8 open tournaments: count every one
            "input_quarantine": InputQuarantinePolicy(error_min_rows=1)})
    assert not result.success
    published = result.asset_materializations_for_node("publish_recommendations")
    assert published == []
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(
            schema.tournament_recommendations)).scalar_one() == 0


@pytest.mark.parametrize(("op", "values", "message"), [
    ("publish_recommendations", {"top_k": 0}, "top_k: Input should be greater than or equal"),
    ("recommendation_quality", {"holdout_days": 0}, "holdout_days: Input should be greater"),
])
def test_bad_config_of_a_later_step_fails_the_first_step_without_retries(
    app_db: AppDatabase, dagster_instance: dg.DagsterInstance, op: str, values: dict,
    message: str,
) -> None:
    from recs_pipeline.definitions import defs

    result = defs.resolve_job_def("nightly_recommendations_job").execute_in_process(
        run_config={"ops": {op: {"config": values}},
                    "resources": {"clock": {"config": {"as_of": NOW.isoformat(),
                                                       "backfill": True}}}},
        resources={"app_db": app_db, "clock": RunClock()}, instance=dagster_instance,
        raise_on_error=False)
    assert not result.success
    failures = [e for e in result.all_events if e.is_step_failure]
    assert failures and all(message in e.step_failure_data.error.message for e in failures)
    # only the root steps ran, and each failed before reading (no step got past its config)
    assert {e.step_key for e in failures} <= {"user_features", "tournament_candidates",
                                              "team_candidates", "recommendation_quality"}
    assert not [e for e in result.all_events if e.event_type_value == "ASSET_MATERIALIZATION"]
    assert not [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]


def test_config_classes_fail_fast() -> None:
    with pytest.raises(dg.Failure) as failure:
        PublishConfig(top_k=0)
    assert not failure.value.allow_retries
    with pytest.raises(dg.Failure):
        QualityConfig(holdout_days=0)
