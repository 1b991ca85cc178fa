"""Retention purge against real databases (SQLite and PostgreSQL): the batched deletes and the job.

The exact-boundary tests call `purge_expired_rows` with a fixed cutoff; the job tests place rows
well clear of `now - retention_days` (minutes), since the job computes its own cutoff.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import dagster as dg
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from recs_pipeline import schema
from recs_pipeline.bootstrap import init_app_database
from recs_pipeline.compute.timestamps import utc_now
from recs_pipeline.db import make_engine
from recs_pipeline.defs.retention import job as job_module
from recs_pipeline.defs.retention.job import (
    ACTIVITIES,
    APP_EVENTS,
    DEAD_LETTERS,
    LEDGER,
    purge_expired_data,
    purge_expired_rows,
    retention_purge_job,
)
from recs_pipeline.resources import AppDatabase
from recs_pipeline.tags import HEAVY_SCAN_TAG, RETENTION_PURGE_TAGS
from recs_pipeline_tests.conftest import postgres_url

CUTOFF = datetime(2024, 3, 3, 12, 0, 0)
PURGED_TABLES = {ACTIVITIES, APP_EVENTS, LEDGER, DEAD_LETTERS}


# --- helpers --------------------------------------------------------------------------------


def _insert_activity_text(engine: Engine, rows: list[tuple[int, str]]) -> None:
    """Insert activities with created_at given as literal text (SQLite keeps it byte for byte;
    PostgreSQL parses it)."""
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO activities (id, user_id, activity_type, created_at) "
                "VALUES (:id, 1, 'login', CAST(:ts AS TIMESTAMP))"
                if engine.dialect.name == "postgresql"
                else "INSERT INTO activities (id, user_id, activity_type, created_at) "
                "VALUES (:id, 1, 'login', :ts)"
            ),
            [{"id": i, "ts": ts} for i, ts in rows],
        )


def _ids(engine: Engine, table: str, column: str = "id") -> list[int]:
    with engine.connect() as conn:
        return [r[0] for r in conn.execute(sa.text(f"SELECT {column} FROM {table} ORDER BY 1"))]


def _table_digest(engine: Engine, table: sa.Table) -> tuple[int, str]:
    """Row count and a hash of every row (in primary-key order) of one table."""
    order = list(table.primary_key.columns) or list(table.columns)
    with engine.connect() as conn:
        rows = conn.execute(sa.select(table).order_by(*order)).all()
    digest = hashlib.sha256(repr([tuple(r) for r in rows]).encode()).hexdigest()
    return len(rows), digest


def _state(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every contract table (app and pipeline), for exact before/after comparison."""
    out: dict[str, list[tuple[Any, ...]]] = {}
    with engine.connect() as conn:
        for table in (*schema.APP_TABLES, *schema.PIPELINE_TABLES):
            order = list(table.primary_key.columns) or list(table.columns)
            out[table.name] = [tuple(r) for r in conn.execute(sa.select(table).order_by(*order))]
    return out


def _seed_everything(engine: Engine, cutoff: datetime) -> None:
    """A small database touching every table, with rows on both sides of `cutoff`.

    activities 1..40: ids 1..24 expired (some exactly 1 s / 1 µs before the cutoff), 25..40 kept
    (exactly at the cutoff, 1 µs / 1 s after it, and newer). app_events / ledger / dead letters:
    see `test_processed_versus_unprocessed_events` for the meaning of each id.
    """
    old, new = cutoff - timedelta(days=30), cutoff + timedelta(days=30)
    activity_times: list[datetime] = [old + timedelta(minutes=i) for i in range(22)]
    activity_times += [cutoff - timedelta(seconds=1), cutoff - timedelta(microseconds=1)]
    activity_times += [cutoff, cutoff + timedelta(microseconds=1), cutoff + timedelta(seconds=1)]
    activity_times += [new + timedelta(minutes=i) for i in range(13)]
    with engine.begin() as conn:
        conn.execute(schema.activities.insert(), [
            {"id": i + 1, "user_id": 1 + i % 3, "activity_type": "login", "created_at": ts,
             "metadata": f'{{"n": {i}}}'}
            for i, ts in enumerate(activity_times)
        ])
        conn.execute(schema.users.insert(), [
            {"id": u, "username": f"u{u}", "email": f"u{u}@example.com", "region": "eu",
             "is_active": True, "date_joined": old - timedelta(days=400), "last_login": old}
            for u in (1, 2, 3)
        ])
        conn.execute(schema.games.insert(), [{"id": 1, "slug": "g", "name": "G"}])
        conn.execute(schema.game_profiles.insert(), [
            {"id": u, "user_id": u, "game_id": 1, "skill_rating": 1000, "created_at": old}
            for u in (1, 2, 3)
        ])
        conn.execute(schema.profile_completeness.insert(), [
            {"user_id": 1, "percentage": 100, "updated_at": old}
        ])
        conn.execute(schema.tournaments.insert(), [
            {"id": 1, "name": "Old Cup", "game_id": 1, "region": "eu", "skill_min": None,
             "skill_max": None, "max_participants": 8, "status": "completed",
             "registration_closes_at": old, "starts_at": old, "completed_at": old,
             "created_at": old - timedelta(days=10)}
        ])
        conn.execute(schema.tournament_participants.insert(), [
            {"id": 1, "tournament_id": 1, "user_id": 1, "team_id": None, "registered_at": old,
             "placement": 1}
        ])
        conn.execute(schema.teams.insert(), [
            {"id": 1, "name": "T", "game_id": 1, "region": "eu", "captain_id": 1,
             "max_members": 5, "is_recruiting": True, "created_at": old}
        ])
        conn.execute(schema.team_members.insert(), [
            {"id": 1, "team_id": 1, "user_id": 1, "joined_at": old, "left_at": None}
        ])
        conn.execute(schema.user_achievements.insert(), [
            {"id": 1, "user_id": 1, "achievement_id": 1, "awarded_at": old, "event_id": 1}
        ])
        for table, item, rank in (
            (schema.tournament_recommendations, "tournament_id", 1),
            (schema.team_recommendations, "team_id", 1),
            (schema.tournament_recommendation_reserve, "tournament_id", 11),
            (schema.team_recommendation_reserve, "team_id", 11),
        ):
            conn.execute(table.insert(), [
                {"user_id": 2, item: 1, "rank": rank, "score": 0.5, "reason": "r",
                 "model_version": "v1", "generated_at": old}
            ])
        # The upkeep's bookkeeping, last looked at long ago: the purge leaves it alone.
        conn.execute(schema.recommendation_upkeep_items.insert(), [
            {"kind": "tournaments", "item_id": 1}, {"kind": "teams", "item_id": 1}])
        conn.execute(schema.recommendation_upkeep_state.insert(), [
            {"kind": k, "published_at": old, "checked_at": old} for k in ("tournaments", "teams")])
        # An old bucket-manifest row: the purge must leave it alone.
        conn.execute(schema.recommendation_bucket_manifest.insert(), [
            {"bucket": 0, "n_buckets": 8, "as_of": old, "model_version": "v1", "run_id": "r",
             "users_scored": 3, "users_with_tournaments": 1, "users_with_teams": 0,
             "tournament_rows": 1, "team_rows": 0, "written_at": old, "published_by_run": None}
        ])
        # An old pending refresh request: only a refresh run removes it (by serving it).
        conn.execute(schema.recommendation_refresh_requests.insert(), [
            {"id": 1, "user_id": 2, "requested_at": old}])
        # app_events: 1 old+processed, 2 old+unprocessed, 3 new+processed, 4 old+processed with
        # an unresolved dead letter, 5 old+processed with a resolved dead letter, 6..9 old and
        # processed (several batches), 10 new+unprocessed.
        event_times = {1: old, 2: old, 3: new, 4: old, 5: old, 6: old, 7: old, 8: old,
                       9: cutoff - timedelta(seconds=1), 10: new}
        conn.execute(schema.app_events.insert(), [
            {"id": i, "event_type": "team_joined", "user_id": 1, "payload": "{}",
             "created_at": ts}
            for i, ts in event_times.items()
        ])
        # Ledger: processed events, plus 11 (event already gone, processed long ago: purged) and
        # 12 (event gone but processed after the cutoff: kept).
        ledger = {i: old + timedelta(minutes=i) for i in (1, 4, 5, 6, 7, 8, 9, 11)}
        ledger.update({3: new, 12: cutoff})
        conn.execute(schema.achievement_event_ledger.insert(), [
            {"event_id": i, "outcome": "awarded", "run_id": "r", "processed_at": ts}
            for i, ts in ledger.items()
        ])
        # Dead letters: 4 unresolved (kept), 5 resolved and old (purged), 13 resolved but
        # recent (kept).
        conn.execute(schema.achievement_dead_letters.insert(), [
            {"event_id": 4, "reason": "bad payload", "detail": None, "run_id": "r",
             "dead_lettered_at": old, "replayed_at": None},
            {"event_id": 5, "reason": "bad payload", "detail": None, "run_id": "r",
             "dead_lettered_at": old, "replayed_at": old + timedelta(days=1)},
            {"event_id": 13, "reason": "bad payload", "detail": None, "run_id": "r",
             "dead_lettered_at": cutoff + timedelta(seconds=1), "replayed_at": new},
        ])


EXPECTED_AFTER = {
    ACTIVITIES: list(range(25, 41)),
    APP_EVENTS: [2, 3, 4, 10],
    LEDGER: [3, 4, 12],
    DEAD_LETTERS: [4, 13],
}
EXPECTED_DELETED = {ACTIVITIES: 24, APP_EVENTS: 6, LEDGER: 7, DEAD_LETTERS: 1}


def _remaining(engine: Engine) -> dict[str, list[int]]:
    return {
        ACTIVITIES: _ids(engine, ACTIVITIES),
        APP_EVENTS: _ids(engine, APP_EVENTS),
        LEDGER: _ids(engine, LEDGER, "event_id"),
        DEAD_LETTERS: _ids(engine, DEAD_LETTERS, "event_id"),
    }


# --- exact boundary -------------------------------------------------------------------------


def test_exact_boundary_with_and_without_fractional_seconds(engine: Engine) -> None:
    cut = "2024-03-03 12:00:00"
    rows = [
        (1, "2024-03-03 11:59:55"), (2, "2024-03-03 11:59:59"),
        (3, "2024-03-03 11:59:59.999999"), (4, "2024-03-03 11:59:59.000000"),
        (5, cut), (6, cut + ".000000"), (7, cut + ".000001"), (8, cut + ".5"),
        (9, "2024-03-03 12:00:01"), (10, "2024-03-03 12:00:05.000000"),
        (11, "2023-01-01 00:00:00"), (12, "2030-01-01 00:00:00.123456"),
    ]
    _insert_activity_text(engine, rows)
    stats = purge_expired_rows(engine, CUTOFF, batch_size=2)
    assert _ids(engine, ACTIVITIES) == [5, 6, 7, 8, 9, 10, 12]
    assert stats.tables[ACTIVITIES].rows == 5
    assert stats.tables[ACTIVITIES].batches == 3
    # Idempotent: a second run finds nothing.
    assert purge_expired_rows(engine, CUTOFF, batch_size=2).total_rows == 0


def test_fractional_cutoff_is_refused(engine: Engine) -> None:
    with pytest.raises(ValueError, match="whole seconds"):
        purge_expired_rows(engine, CUTOFF + timedelta(microseconds=1))


@pytest.mark.parametrize("column_type", ["timestamptz", "timestamp"])
def test_postgres_column_types_in_a_non_utc_session(
    postgres_database: str, column_type: str
) -> None:
    """The app may use `timestamptz`; and a session outside UTC must not shift the boundary.

    PostgreSQL only (SQLite has no timestamptz), so it takes the PostgreSQL database directly
    instead of the two-backend fixtures.
    """
    database_url = postgres_url(postgres_database)
    engine = make_engine(database_url)
    with engine.begin() as conn:
        conn.execute(sa.text("DROP SCHEMA public CASCADE"))
        conn.execute(sa.text("CREATE SCHEMA public"))
    init_app_database(engine)
    with engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE activities"))
        conn.execute(sa.text(
            "CREATE TABLE activities (id bigint PRIMARY KEY, user_id bigint NOT NULL, "
            "activity_type varchar(40) NOT NULL, object_type varchar(40), object_id bigint, "
            f"created_at {column_type} NOT NULL, metadata text)"
        ))
        conn.execute(sa.text("CREATE INDEX ix_activities_created_at ON activities (created_at)"))
        suffix = " +00" if column_type == "timestamptz" else ""
        for i, ts in enumerate(["2024-03-03 11:59:59", "2024-03-03 11:59:59.999999",
                                "2024-03-03 12:00:00", "2024-03-03 12:00:00.000001",
                                "2024-03-03 12:00:01"], start=1):
            conn.execute(sa.text(
                f"INSERT INTO activities VALUES ({i}, 1, 'login', NULL, NULL, "
                f"'{ts}{suffix}', NULL)"
            ))
    # An engine whose sessions are NOT in UTC (make_engine pins UTC; an app's might not).
    new_york = make_engine(database_url,
                           connect_args={"options": "-c timezone=America/New_York"})
    try:
        stats = purge_expired_rows(new_york, CUTOFF, batch_size=1)
    finally:
        new_york.dispose()
    try:
        assert _ids(engine, ACTIVITIES) == [3, 4, 5]
        assert stats.tables[ACTIVITIES].rows == 2
    finally:
        engine.dispose()


# --- what is deleted, and what never is -----------------------------------------------------


def test_processed_versus_unprocessed_events_and_bookkeeping(engine: Engine) -> None:
    _seed_everything(engine, CUTOFF)
    stats = purge_expired_rows(engine, CUTOFF, batch_size=3)
    assert _remaining(engine) == EXPECTED_AFTER
    assert stats.rows_by_table() == EXPECTED_DELETED
    assert stats.tables[ACTIVITIES].batches == 8  # 24 rows in batches of 3


@pytest.mark.parametrize("batch_size", [1, 4, 50])
def test_many_rows_sharing_one_timestamp(engine: Engine, batch_size: int) -> None:
    """More rows on one timestamp than a batch holds: all go, and nothing at the cutoff."""
    same = "2024-03-01 08:00:00"
    rows = [(i, same) for i in range(1, 13)] + [(13, "2024-03-02 09:00:00")]
    rows += [(14, "2024-03-03 12:00:00"), (15, "2024-03-03 12:00:00.000000")]
    _insert_activity_text(engine, rows)
    stats = purge_expired_rows(engine, CUTOFF, batch_size=batch_size)
    assert _ids(engine, ACTIVITIES) == [14, 15]
    assert stats.tables[ACTIVITIES].rows == 13


def test_other_tables_are_untouched(engine: Engine) -> None:
    _seed_everything(engine, CUTOFF)
    others = [t for t in (*schema.APP_TABLES, *schema.PIPELINE_TABLES)
              if t.name not in PURGED_TABLES]
    before = {t.name: _table_digest(engine, t) for t in others}
    assert all(count > 0 for count, _ in before.values())  # the test can fail: rows exist
    purge_expired_rows(engine, CUTOFF, batch_size=5)
    assert {t.name: _table_digest(engine, t) for t in others} == before


def test_dry_run_deletes_nothing_and_counts_what_a_real_run_deletes(engine: Engine) -> None:
    _seed_everything(engine, CUTOFF)
    before = _state(engine)
    dry = purge_expired_rows(engine, CUTOFF, batch_size=3, dry_run=True)
    assert _state(engine) == before
    assert dry.dry_run and dry.total_batches == 0
    assert dry.rows_by_table() == EXPECTED_DELETED
    real = purge_expired_rows(engine, CUTOFF, batch_size=3)
    assert real.rows_by_table() == dry.rows_by_table()


def test_without_pipeline_tables_no_event_is_deleted(engine: Engine) -> None:
    _seed_everything(engine, CUTOFF)
    schema.achievement_dead_letters.drop(engine)
    schema.achievement_event_ledger.drop(engine)
    stats = purge_expired_rows(engine, CUTOFF, batch_size=7)
    assert _ids(engine, APP_EVENTS) == list(range(1, 11))
    assert _ids(engine, ACTIVITIES) == EXPECTED_AFTER[ACTIVITIES]
    assert "no achievement_event_ledger" in (stats.tables[APP_EVENTS].skipped_reason or "")


# --- interruption and concurrency -----------------------------------------------------------


class _Interrupted(Exception):
    pass


def _interrupt_after(k: int) -> Callable[[str, int], None]:
    seen = [0]

    def hook(table: str, rows: int) -> None:
        seen[0] += 1
        if seen[0] == k:
            raise _Interrupted(f"stopped after {k} batches ({table})")

    return hook


@pytest.mark.parametrize("stop_after", [1, 5, 9, 11, 13])
def test_interrupted_purge_resumes_to_the_same_result(engine: Engine, stop_after: int) -> None:
    """Stopped after k committed batches (in activities, app_events or the ledger), a new run
    ends exactly where an uninterrupted run ends."""
    _seed_everything(engine, CUTOFF)
    with pytest.raises(_Interrupted):
        purge_expired_rows(engine, CUTOFF, batch_size=3, on_batch=_interrupt_after(stop_after))
    partial = _remaining(engine)
    assert partial != EXPECTED_AFTER  # really stopped half-way
    resumed = purge_expired_rows(engine, CUTOFF, batch_size=3)
    assert _remaining(engine) == EXPECTED_AFTER
    deleted_before = sum(
        len(ids) - len(partial[table]) for table, ids in _IDS_AFTER_SEED.items()
    )
    assert deleted_before == stop_after_rows(stop_after)
    assert resumed.total_rows == sum(EXPECTED_DELETED.values()) - deleted_before


# Ids present right after `_seed_everything`, per purged table.
_IDS_AFTER_SEED = {ACTIVITIES: list(range(1, 41)), APP_EVENTS: list(range(1, 11)),
                   LEDGER: [1, 3, 4, 5, 6, 7, 8, 9, 11, 12], DEAD_LETTERS: [4, 5, 13]}
# Rows per committed batch with batch_size=3, in order (hand-computed from the seed):
# activities 8x3; app_events id windows [1,4) [4,7) [7,10) -> 1, 2, 3 rows; ledger 3, 3, 1;
# dead letters 1.
_BATCH_ROWS = [3] * 8 + [1, 2, 3] + [3, 3, 1] + [1]


def stop_after_rows(k: int) -> int:
    return sum(_BATCH_ROWS[:k])


def test_interrupted_then_full_state_equals_uninterrupted_state(
    engine: Engine, database_url: str
) -> None:
    """Compare whole databases: interrupted + resumed vs one uninterrupted purge on a copy."""
    _seed_everything(engine, CUTOFF)
    with pytest.raises(_Interrupted):
        purge_expired_rows(engine, CUTOFF, batch_size=4, on_batch=_interrupt_after(4))
    purge_expired_rows(engine, CUTOFF, batch_size=4)
    resumed_state = _state(engine)
    # Fresh identical data, one uninterrupted run.
    for table in (*schema.APP_TABLES, *schema.PIPELINE_TABLES):
        if table is not schema.achievements:  # the catalogue is not part of the seed
            with engine.begin() as conn:
                conn.execute(table.delete())
    _seed_everything(engine, CUTOFF)
    purge_expired_rows(engine, CUTOFF, batch_size=4)
    assert _state(engine) == resumed_state


def test_rows_inserted_during_the_purge_survive(engine: Engine) -> None:
    _seed_everything(engine, CUTOFF)
    next_id = [1000]
    inserted: list[int] = []

    def app_writes(table: str, rows: int) -> None:
        # Between batches, the app keeps writing: now, and right at / after the cutoff.
        with engine.begin() as conn:
            for ts in (utc_now(), CUTOFF, CUTOFF + timedelta(microseconds=1)):
                conn.execute(schema.activities.insert(), {
                    "id": next_id[0], "user_id": 9, "activity_type": "login", "created_at": ts,
                })
                inserted.append(next_id[0])
                next_id[0] += 1
            conn.execute(schema.app_events.insert(), {
                "id": next_id[0], "event_type": "team_joined", "user_id": 9,
                "created_at": utc_now(),
            })
            conn.execute(schema.achievement_event_ledger.insert(), {
                "event_id": next_id[0], "outcome": "awarded", "processed_at": utc_now(),
            })
            next_id[0] += 1

    stats = purge_expired_rows(engine, CUTOFF, batch_size=3, on_batch=app_writes)
    assert stats.total_batches >= 10
    remaining = set(_ids(engine, ACTIVITIES))
    assert set(inserted) <= remaining
    assert remaining == set(EXPECTED_AFTER[ACTIVITIES]) | set(inserted)
    assert len(_ids(engine, APP_EVENTS)) == len(EXPECTED_AFTER[APP_EVENTS]) + stats.total_batches


# --- the Dagster job ------------------------------------------------------------------------


def purge_output_metadata(result: dg.ExecuteInProcessResult) -> dict[str, Any]:
    """The metadata on the purge op's output (what the run page shows)."""
    return next(
        e for e in result.all_events
        if e.event_type_value == "STEP_OUTPUT" and e.step_key == "purge_expired_data"
    ).event_specific_data.metadata


def _job_config(**config: Any) -> dict[str, Any]:
    return {"ops": {"plan_retention_purge": {"config": config}}}


def _seed_relative_to_now(engine: Engine, retention_days: int) -> None:
    """Activities 1..5 well before now - retention_days, 6..9 well after (minutes of margin)."""
    edge = utc_now() - timedelta(days=retention_days)
    times = [edge - timedelta(days=400), edge - timedelta(days=3), edge - timedelta(hours=1),
             edge - timedelta(minutes=10), edge - timedelta(minutes=5),
             edge + timedelta(minutes=10), edge + timedelta(hours=1), edge + timedelta(days=3),
             utc_now()]
    with engine.begin() as conn:
        conn.execute(schema.activities.insert(), [
            {"id": i, "user_id": 1, "activity_type": "login", "created_at": ts}
            for i, ts in enumerate(times, start=1)
        ])
        conn.execute(schema.app_events.insert(), [
            {"id": 1, "event_type": "team_joined", "created_at": edge - timedelta(days=1)},
            {"id": 2, "event_type": "team_joined", "created_at": edge - timedelta(days=1)},
        ])
        conn.execute(schema.achievement_event_ledger.insert(), [
            {"event_id": 1, "outcome": "awarded", "processed_at": edge - timedelta(days=1)},
        ])


def test_job_purges_and_reports_metadata(app_db: AppDatabase, engine: Engine) -> None:
    _seed_relative_to_now(engine, 90)
    result = retention_purge_job.execute_in_process(
        run_config=_job_config(batch_size=100), resources={"app_db": app_db}
    )
    assert result.success
    assert _ids(engine, ACTIVITIES) == [6, 7, 8, 9]
    assert _ids(engine, APP_EVENTS) == [2]
    assert _ids(engine, LEDGER, "event_id") == []
    assert result.output_for_node("purge_expired_data") == {
        ACTIVITIES: 5, APP_EVENTS: 1, LEDGER: 1, DEAD_LETTERS: 0,
    }
    metadata = purge_output_metadata(result)
    plan = result.output_for_node("plan_retention_purge")
    assert metadata["cutoff_utc"].value == plan.cutoff.isoformat(sep=" ")
    assert plan.cutoff.microsecond == 0
    assert abs((utc_now() - timedelta(days=90) - plan.cutoff).total_seconds()) < 120
    assert metadata["rows_deleted.activities"].value == 5
    assert metadata["rows_deleted_total"].value == 7
    assert metadata["batches"].value == 3
    for key in ("seconds", "rows_per_second", "longest_batch_seconds", "summary"):
        assert key in metadata
    observations = [
        e.event_specific_data.asset_observation for e in result.all_events
        if e.event_type_value == "ASSET_OBSERVATION"
    ]
    by_key = {o.asset_key.to_user_string(): o.metadata for o in observations}
    assert by_key["app/activities"]["rows_deleted"].value == 5
    assert by_key["app/app_events"]["rows_deleted"].value == 1


def test_job_dry_run_deletes_nothing(app_db: AppDatabase, engine: Engine) -> None:
    _seed_relative_to_now(engine, 30)
    before = _state(engine)
    result = retention_purge_job.execute_in_process(
        run_config=_job_config(retention_days=30, dry_run=True), resources={"app_db": app_db}
    )
    assert result.success
    assert _state(engine) == before
    assert result.output_for_node("purge_expired_data")[ACTIVITIES] == 5


@pytest.mark.parametrize("field,value", [
    ("retention_days", 0), ("retention_days", -1), ("retention_days", 3651),
    ("batch_size", 0), ("batch_size", 1_000_000),
])
def test_invalid_config_fails_before_touching_data(
    app_db: AppDatabase, engine: Engine, field: str, value: int
) -> None:
    _seed_relative_to_now(engine, 90)
    before = _state(engine)
    result = retention_purge_job.execute_in_process(
        run_config=_job_config(**{field: value}), resources={"app_db": app_db},
        raise_on_error=False,
    )
    assert not result.success
    assert _state(engine) == before
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert failure.step_key == "plan_retention_purge"  # the purge step never started
    message = failure.event_specific_data.error.to_string()
    assert f"{field} must be between" in message
    assert not [e for e in result.all_events
                if e.step_key == "purge_expired_data" and e.event_type_value == "STEP_START"]


def test_job_resumes_after_an_interrupted_purge(app_db: AppDatabase, engine: Engine) -> None:
    _seed_relative_to_now(engine, 90)
    cutoff = (utc_now() - timedelta(days=90)).replace(microsecond=0)
    with pytest.raises(_Interrupted):
        purge_expired_rows(engine, cutoff, batch_size=2, on_batch=_interrupt_after(1))
    assert _ids(engine, ACTIVITIES) == [3, 4, 5, 6, 7, 8, 9]
    result = retention_purge_job.execute_in_process(
        run_config=_job_config(batch_size=100), resources={"app_db": app_db}
    )
    assert result.success
    assert _ids(engine, ACTIVITIES) == [6, 7, 8, 9]
    assert result.output_for_node("purge_expired_data")[ACTIVITIES] == 3


def test_metadata_counts_what_a_failed_attempt_deleted(
    app_db: AppDatabase, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The database drops the connection after the first committed batch (all 5 expired
    activities); the retry finishes the purge, and the run's counts include those 5 rows."""
    _seed_relative_to_now(engine, 90)
    original = job_module.purge_expired_rows
    attempts = [0]

    def drops_after_one_batch(*args: Any, on_batch: Any = None, **kwargs: Any) -> Any:
        attempts[0] += 1
        if attempts[0] > 1:
            return original(*args, on_batch=on_batch, **kwargs)
        batches = [0]

        def hook(table: str, rows: int) -> None:
            on_batch(table, rows)
            batches[0] += 1
            if batches[0] == 1:
                raise sa.exc.OperationalError(
                    "DELETE FROM activities ...", {},
                    Exception("server closed the connection unexpectedly"))

        return original(*args, on_batch=hook, **kwargs)

    monkeypatch.setattr(job_module, "purge_expired_rows", drops_after_one_batch)
    instance = dg.DagsterInstance.ephemeral()
    result = retention_purge_job.execute_in_process(
        run_config=_job_config(batch_size=100), resources={"app_db": app_db}, instance=instance)
    assert result.success
    assert attempts[0] == 2
    assert _ids(engine, ACTIVITIES) == [6, 7, 8, 9]
    assert result.output_for_node("purge_expired_data") == {
        ACTIVITIES: 5, APP_EVENTS: 1, LEDGER: 1, DEAD_LETTERS: 0,
    }
    metadata = purge_output_metadata(result)
    assert metadata["rows_deleted.activities"].value == 5
    assert metadata["rows_deleted_by_failed_attempts.activities"].value == 5
    assert metadata["rows_deleted_total"].value == 7
    # What the UI shows on the activities asset: the failed attempt's observation.
    observations = instance.fetch_observations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(["app", ACTIVITIES])), limit=10).records
    assert [r.asset_observation.metadata["rows_deleted_by_failed_attempt"].value
            for r in observations
            if "rows_deleted_by_failed_attempt" in r.asset_observation.metadata] == [5]


def test_job_carries_the_heavy_scan_tag_and_a_retry_policy() -> None:
    assert retention_purge_job.tags[HEAVY_SCAN_TAG] == RETENTION_PURGE_TAGS[HEAVY_SCAN_TAG]
    assert dict(retention_purge_job.tags).items() >= RETENTION_PURGE_TAGS.items()
    policy = purge_expired_data.retry_policy
    assert policy is not None and policy.max_retries >= 1 and policy.backoff is not None
