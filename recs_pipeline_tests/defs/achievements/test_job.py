"""achievements_job in process on SQLite and PostgreSQL, against a hand-computed world."""

from __future__ import annotations

import threading
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from recs_pipeline import schema
from recs_pipeline.cli import main as cli_main
from recs_pipeline.compute.achievements import evaluate_awards
from recs_pipeline.defs.achievements import store
from recs_pipeline.defs.achievements.job import achievements_job
from recs_pipeline.defs.achievements.replay import replay_dead_letters_job
from recs_pipeline.defs.app_tables import USER_ACHIEVEMENTS_KEY
from recs_pipeline.resources import AppDatabase
from recs_pipeline.retries import is_transient_db_error
from recs_pipeline_tests import achievements_data as data

ALL_EVENTS = {"ops": {"load_events": {"config": {"event_id_ranges": [[1, 14]],
                                                  "event_ids": [13]}}}}


def _run(app_db: AppDatabase, run_config: dict, **kwargs: object) -> dg.ExecuteInProcessResult:
    result = achievements_job.execute_in_process(
        run_config=run_config, resources={"app_db": app_db}, **kwargs)  # type: ignore[arg-type]
    assert result.success
    return result


def _metadata(result: dg.ExecuteInProcessResult, step: str) -> dict[str, object]:
    for event in result.all_node_events:
        if event.step_key == step and event.event_type_value == "STEP_OUTPUT":
            return {k: v.value for k, v in event.event_specific_data.metadata.items()}
    raise AssertionError(step)


def test_job_awards_exactly_and_dead_letters_every_bad_kind(
    app_db: AppDatabase, engine: Engine
) -> None:
    data.build_world(engine)
    result = _run(app_db, ALL_EVENTS)
    assert data.awards(engine) == data.EXPECTED_AWARDS
    awarded = data.awards(engine)
    assert not any(a == 8 for _, a, _ in awarded)  # inactive achievement
    assert (1, 7, 1) not in awarded  # user 1 is at 100 % but sent no profile_completed event
    assert {e: r for e, (r, _) in data.dead_letters(engine).items()} == data.EXPECTED_DEAD
    ledger = data.ledger(engine)
    assert 7 not in ledger  # a login event is not ours
    assert {e for e, o in ledger.items() if o == "dead_lettered"} == set(data.EXPECTED_DEAD)
    assert {e for e, o in ledger.items() if o == "awarded"} == {1, 2, 3, 4, 6}
    assert {e for e, o in ledger.items() if o == "no_award"} == {5, 8}
    meta = _metadata(result, "award_and_mark_processed")
    assert meta["events_processed"] == 13
    assert meta["dead_lettered"] == 6
    assert meta["dead_letter_reasons"] == {"malformed_payload": 2, "null_user": 1,
                                           "unknown_event_type": 1, "user_not_found": 2}
    assert meta["awards_by_achievement"] == {
        "first_team": 2, "first_tournament": 2, "first_win": 1, "profile_complete": 1,
        "ten_tournaments": 1, "three_podiums": 1, "three_teams": 1}
    assert meta["oldest_event_age_seconds"] > 0
    assert _metadata(result, "compute_metrics")["queries"] == 4  # catalogue + 3 metric queries


def test_range_only_takes_achievement_event_types(app_db: AppDatabase, engine: Engine) -> None:
    data.build_world(engine)
    _run(app_db, {"ops": {"load_events": {"config": {"event_id_ranges": [[1, 14]]}}}})
    assert 13 not in data.ledger(engine)  # unknown type inside a range: not ours, untouched
    assert 7 not in data.ledger(engine)


def test_rerun_and_lost_ledger_change_nothing(app_db: AppDatabase, engine: Engine) -> None:
    data.build_world(engine)
    _run(app_db, ALL_EVENTS)
    ua = schema.user_achievements
    with engine.connect() as conn:
        before = set(conn.execute(sa.select(ua.c.user_id, ua.c.achievement_id, ua.c.awarded_at)))
    again = _run(app_db, ALL_EVENTS)  # replaying the same run config
    assert _metadata(again, "award_and_mark_processed")["events_processed"] == 0
    with engine.begin() as conn:  # even with the ledger gone, the unique key holds
        conn.execute(schema.achievement_event_ledger.delete())
    third = _run(app_db, ALL_EVENTS)
    assert _metadata(third, "award_and_mark_processed")["awards"] == 0
    with engine.connect() as conn:
        after = set(conn.execute(sa.select(ua.c.user_id, ua.c.achievement_id, ua.c.awarded_at)))
    assert after == before


def test_all_pending_drains_everything(app_db: AppDatabase, engine: Engine) -> None:
    data.build_world(engine)
    _run(app_db, {"ops": {"load_events": {"config": {"all_pending": True}}}})
    assert data.awards(engine) == data.EXPECTED_AWARDS
    assert set(data.ledger(engine)) == set(range(1, 15)) - {7, 13}


def test_events_replay_redrives_fixed_events(
    app_db: AppDatabase, engine: Engine, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    data.build_world(engine)
    _run(app_db, ALL_EVENTS)
    with engine.begin() as conn:  # fix two causes: user 999 appears (with a team), payload fixed
        conn.execute(schema.users.insert().values(
            id=999, username="late", email="late@example.com", region="eu", is_active=True,
            date_joined=data.T0))
        conn.execute(schema.team_members.insert().values(id=99, team_id=1, user_id=999,
                                                         joined_at=data.T0))
        conn.execute(schema.app_events.update().where(schema.app_events.c.id == 12)
                     .values(payload='{"ok": true}'))
    assert cli_main(["--database-url", database_url, "events", "replay",
                     "--event-id", "10", "12", "1"]) == 0
    out = capsys.readouterr().out
    assert "replayed 2 dead-lettered events" in out and "1 new awards" in out
    assert (999, 5, 10) in data.awards(engine)
    ledger, dead = data.ledger(engine), data.dead_letters(engine)
    assert ledger[10] == "awarded" and ledger[12] == "no_award"
    assert dead[10][1] is not None and dead[12][1] is not None  # replayed_at set
    # idempotent: nothing left to replay for those ids
    assert cli_main(["--database-url", database_url, "events", "replay",
                     "--event-id", "10", "12"]) == 0
    assert "replayed 0" in capsys.readouterr().out
    # --all: the others still fail, stay dead-lettered with replayed_at NULL
    assert cli_main(["--database-url", database_url, "events", "replay", "--all"]) == 0
    assert "still dead-lettered 4" in capsys.readouterr().out
    dead = data.dead_letters(engine)
    assert all(dead[e][1] is None for e in (9, 11, 13, 14))
    assert len(data.awards(engine)) == len(data.EXPECTED_AWARDS) + 1
    assert cli_main(["--database-url", database_url, "events", "replay"]) == 2


def test_the_replay_job_redrives_fixed_events_from_the_ui(
    app_db: AppDatabase, engine: Engine, dagster_instance: dg.DagsterInstance
) -> None:
    """replay_dead_letters_job, as launched from the Launchpad: same outcome as the CLI, the
    counts in its metadata, the new award materializes user_achievements; bad config fails at
    once, not retried."""
    data.build_world(engine)
    _run(app_db, ALL_EVENTS)
    with engine.begin() as conn:
        conn.execute(schema.users.insert().values(
            id=999, username="late", email="late@example.com", region="eu", is_active=True,
            date_joined=data.T0))
        conn.execute(schema.team_members.insert().values(id=99, team_id=1, user_id=999,
                                                         joined_at=data.T0))

    def replay(config: dict) -> dg.ExecuteInProcessResult:
        return replay_dead_letters_job.execute_in_process(
            run_config={"ops": {"replay_dead_letters": {"config": config}}},
            resources={"app_db": app_db}, instance=dagster_instance, raise_on_error=False)

    result = replay({"event_ids": [10, 11]})
    assert result.success
    meta = _metadata(result, "replay_dead_letters")
    assert meta["replayed"] == 2 and meta["awards"] == 1
    assert meta["still_dead_lettered"] == {"user_not_found": 1}
    assert (999, 5, 10) in data.awards(engine)
    latest = dagster_instance.get_latest_materialization_event(USER_ACHIEVEMENTS_KEY)
    assert latest is not None and latest.run_id == result.run_id
    assert _metadata(replay({"replay_all": True}), "replay_dead_letters")["awards"] == 0
    for bad in ({}, {"event_ids": [1], "replay_all": True}):
        failed = replay(bad)
        [failure] = [e for e in failed.all_events if e.is_step_failure]
        assert "give event_ids or replay_all" in failure.step_failure_data.error.message
        assert not any(e.event_type_value == "STEP_UP_FOR_RETRY" for e in failed.all_events)


class _FlakyAppDatabase(AppDatabase):
    """Fails the first engine request with a transient error (a dropped connection)."""

    def get_engine(self):  # type: ignore[no-untyped-def]
        if not _FLAKY["failed"]:
            _FLAKY["failed"] = True
            raise sa.exc.OperationalError("SELECT 1", {}, Exception("server closed connection"))
        return super().get_engine()


_FLAKY = {"failed": False}


def test_transient_error_is_retried(database_url: str, engine: Engine) -> None:
    data.build_world(engine, with_bad=False)
    _FLAKY["failed"] = False
    result = achievements_job.execute_in_process(
        run_config={"ops": {"load_events": {"config": {"event_id_ranges": [[1, 8]]}}}},
        resources={"app_db": _FlakyAppDatabase(url=database_url)})
    assert result.success and _FLAKY["failed"]
    assert any(e.event_type_value == "STEP_UP_FOR_RETRY" for e in result.all_events)
    assert data.awards(engine) == data.EXPECTED_AWARDS
    assert is_transient_db_error(sa.exc.OperationalError("x", {}, Exception("deadlock")))
    assert not is_transient_db_error(sa.exc.IntegrityError("x", {}, Exception("dup")))


def test_non_transient_error_fails_without_retry(app_db: AppDatabase, engine: Engine) -> None:
    result = achievements_job.execute_in_process(
        run_config={"ops": {"load_events": {"config": {"event_id_ranges": [[5, 1]]}}}},
        resources={"app_db": app_db}, raise_on_error=False)
    assert not result.success
    assert not any(e.event_type_value == "STEP_UP_FOR_RETRY" for e in result.all_events)


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_overlapping_batches_concurrently_award_once(database_url: str, engine: Engine) -> None:
    """Two runs over overlapping events, both past `load_events` before either writes: the
    second blocks on the first's unique keys, then inserts nothing. Each award exists once."""
    data.build_world(engine, with_bad=False)
    batches = []
    for ranges in ([[1, 6]], [[3, 8]]):
        with engine.connect() as conn:
            batch = store.load_batch(conn, ranges=ranges)
            metrics, ach, _ = store.batch_metrics(conn, batch.events)
        batches.append((batch, evaluate_awards(batch.events, metrics, ach)))
    results: dict[str, store.WriteSummary] = {}
    first = engine.connect()
    tx = first.begin()
    results["a"] = store.write_outcomes(first, events=batches[0][0].events, awards=batches[0][1],
                                        dead_letters=batches[0][0].dead_letters, run_id="a")

    def second() -> None:
        with engine.begin() as conn:
            results["b"] = store.write_outcomes(
                conn, events=batches[1][0].events, awards=batches[1][1],
                dead_letters=batches[1][0].dead_letters, run_id="b")

    thread = threading.Thread(target=second)
    thread.start()
    thread.join(timeout=1.0)
    assert thread.is_alive()  # waiting on run a's uncommitted awards
    tx.commit()
    first.close()
    thread.join(timeout=30)
    assert not thread.is_alive()
    assert data.awards(engine) == data.EXPECTED_AWARDS
    a_keys = set(zip(results["a"].awarded["user_id"], results["a"].awarded["achievement_id"],
                     strict=True))
    b_keys = set(zip(results["b"].awarded["user_id"], results["b"].awarded["achievement_id"],
                     strict=True))
    assert not a_keys & b_keys and len(a_keys | b_keys) == len(data.EXPECTED_AWARDS)
    assert set(data.ledger(engine)) == {1, 2, 3, 4, 5, 6, 8}


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_parallel_job_runs_award_once(app_db: AppDatabase, engine: Engine) -> None:
    """Several overlapping runs of the real job at the same time (free interleaving)."""
    data.build_world(engine, with_bad=False)
    configs = [[[1, 8]], [[1, 4]], [[3, 8]], [[1, 8]]]
    errors: list[BaseException] = []

    def run(ranges: list[list[int]]) -> None:
        try:
            _run(app_db, {"ops": {"load_events": {"config": {"event_id_ranges": ranges}}}})
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(c,)) for c in configs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors
    ua = schema.user_achievements
    with engine.connect() as conn:
        count = conn.execute(sa.select(sa.func.count()).select_from(ua)).scalar()
    assert count == len(data.EXPECTED_AWARDS)
    assert {(u, a) for u, a, _ in data.awards(engine)} == {
        (u, a) for u, a, _ in data.EXPECTED_AWARDS}


def test_large_batch_write_path(app_db: AppDatabase, engine: Engine) -> None:
    """2,500 awards and ledger rows: PostgreSQL's COPY + INSERT .. SELECT path, same results."""
    import pandas as pd

    from recs_pipeline.db import bulk_insert

    n = 2_500
    ids = list(range(1, n + 1))
    with engine.begin() as conn:
        bulk_insert(conn, schema.users, pd.DataFrame({
            "id": ids, "username": "u", "email": "u@example.com", "region": "eu",
            "is_active": True, "date_joined": data.T0}))
        bulk_insert(conn, schema.profile_completeness, pd.DataFrame({
            "user_id": ids, "percentage": [100 if i % 5 else 99 for i in ids],
            "updated_at": data.T0}))
        bulk_insert(conn, schema.app_events, pd.DataFrame({
            "id": ids, "event_type": "profile_completed", "user_id": ids, "payload": None,
            "created_at": data.T0}))
        conn.execute(schema.user_achievements.insert().values(  # already awarded before
            user_id=1, achievement_id=7, awarded_at=data.T0, event_id=None))
    config = {"ops": {"load_events": {"config": {"event_id_ranges": [[1, n]]}}}}
    meta = _metadata(_run(app_db, config), "award_and_mark_processed")
    assert meta["awards"] == n - n // 5 - 1
    assert meta["ledger_outcomes"] == {"awarded": n - n // 5 - 1, "no_award": n // 5 + 1,
                                       "dead_lettered": 0}
    with engine.connect() as conn:
        count = conn.execute(sa.select(sa.func.count()).select_from(
            schema.user_achievements)).scalar()
    assert count == n - n // 5  # including the pre-existing one, untouched
    assert len(data.ledger(engine)) == n
    assert _metadata(_run(app_db, config), "award_and_mark_processed")["events_processed"] == 0


def test_unparsable_created_at_is_dead_lettered_and_the_batch_goes_on(tmp_path: Path) -> None:
    """SQLite stores text, so an app can write `created_at = 'yesterday'` (PostgreSQL's typed
    column cannot hold it): that one event is dead-lettered, the rest are awarded."""
    from recs_pipeline.bootstrap import init_app_database
    from recs_pipeline.db import make_engine

    url = f"sqlite:///{tmp_path / 'app.db'}"
    engine = make_engine(url)
    init_app_database(engine)
    data.build_world(engine)
    with engine.begin() as conn:
        event_id = conn.exec_driver_sql(
            "INSERT INTO app_events (event_type, user_id, payload, created_at) "
            "VALUES ('team_joined', 2, NULL, 'yesterday') RETURNING id").scalar_one()
    result = _run(AppDatabase(url=url), {"ops": {"load_events": {"config": {
        "event_id_ranges": [[1, event_id]], "event_ids": [13]}}}})
    assert data.awards(engine) == data.EXPECTED_AWARDS
    assert data.dead_letters(engine)[event_id][0] == "bad_created_at"
    assert {e: r for e, (r, _) in data.dead_letters(engine).items() if e != event_id} == (
        data.EXPECTED_DEAD)
    assert _metadata(result, "award_and_mark_processed")["dead_letter_reasons"][
        "bad_created_at"] == 1
    engine.dispose()
