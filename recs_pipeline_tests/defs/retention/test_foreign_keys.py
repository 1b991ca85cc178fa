"""The purge next to an app's own foreign keys, declared the way Django declares them.

Django makes a `ForeignKey` a `FOREIGN KEY ... DEFERRABLE INITIALLY DEFERRED` with no database
ON DELETE: on PostgreSQL deleting a referenced row fails at commit; on SQLite (keys not enforced
on the pipeline's connections) it silently leaves the reference dangling, and every later Django
migration's `check_constraints()` then fails. Both backends, real constraints, no mocks.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from recs_pipeline.defs.retention.job import (
    ACTIVITIES,
    APP_EVENTS,
    DEAD_LETTERS,
    LEDGER,
    find_references,
    purge_expired_rows,
    retention_purge_job,
)
from recs_pipeline.resources import AppDatabase
from recs_pipeline_tests.defs.retention.test_job import (
    CUTOFF,
    EXPECTED_AFTER,
    EXPECTED_DELETED,
    _job_config,
    _remaining,
    _seed_everything,
    _seed_relative_to_now,
    purge_output_metadata,
)

REACTIONS = "activity_reactions"  # an app table of its own, pointing at activities


def _add_django_foreign_keys(engine: Engine, reacted: tuple[int, ...] = (3, 30)) -> None:
    """`user_achievements.event_id -> app_events.id` and `activity_reactions.activity_id ->
    activities.id`, both DEFERRABLE INITIALLY DEFERRED without ON DELETE (Django's DDL).

    SQLite cannot add a constraint to an existing table: the table is rebuilt with it, which is
    what Django's SQLite schema editor does too."""
    deferred = "DEFERRABLE INITIALLY DEFERRED"
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(sa.text(
                "ALTER TABLE user_achievements ADD CONSTRAINT "
                "user_achievements_event_id_fk_app_events_id FOREIGN KEY (event_id) "
                f"REFERENCES app_events (id) {deferred}"))
            conn.execute(sa.text(
                "CREATE INDEX user_achievements_event_id ON user_achievements (event_id)"))
        else:
            conn.execute(sa.text(
                'CREATE TABLE "new__user_achievements" ("id" integer NOT NULL PRIMARY KEY '
                'AUTOINCREMENT, "user_id" bigint NOT NULL, "achievement_id" bigint NOT NULL, '
                '"awarded_at" datetime NOT NULL, "event_id" bigint NULL REFERENCES '
                f'"app_events" ("id") {deferred}, UNIQUE ("user_id", "achievement_id"))'))
            conn.execute(sa.text(
                'INSERT INTO "new__user_achievements" SELECT id, user_id, achievement_id, '
                "awarded_at, event_id FROM user_achievements"))
            conn.execute(sa.text("DROP TABLE user_achievements"))
            conn.execute(sa.text(
                'ALTER TABLE "new__user_achievements" RENAME TO "user_achievements"'))
        conn.execute(sa.text(
            f'CREATE TABLE "{REACTIONS}" ("id" bigint NOT NULL PRIMARY KEY, "activity_id" '
            f'bigint NOT NULL REFERENCES "activities" ("id") {deferred})'))
        # The award of _seed_everything points at event 1 (old, processed: purgeable without the
        # key); by default reactions point at activity 3 (expired) and 30 (not expired).
        if reacted:
            conn.execute(sa.text(f"INSERT INTO {REACTIONS} (id, activity_id) VALUES (:id, :a)"),
                         [{"id": i, "a": a} for i, a in enumerate(reacted, start=1)])


def _dangling_references(engine: Engine) -> int:
    """References to rows that no longer exist (SQLite: `PRAGMA foreign_key_check`; PostgreSQL:
    the same anti-join the constraint enforces)."""
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            return len(conn.execute(sa.text("PRAGMA foreign_key_check")).all())
        return int(conn.execute(sa.text(
            "SELECT (SELECT count(*) FROM user_achievements ua WHERE ua.event_id IS NOT NULL "
            "AND NOT EXISTS (SELECT 1 FROM app_events e WHERE e.id = ua.event_id)) + "
            f"(SELECT count(*) FROM {REACTIONS} r WHERE NOT EXISTS "
            "(SELECT 1 FROM activities a WHERE a.id = r.activity_id))")).scalar_one())


def test_foreign_keys_into_purged_tables_are_found_by_reflection(engine: Engine) -> None:
    _add_django_foreign_keys(engine, reacted=())
    found = {r.describe() for r in find_references(
        engine, frozenset({ACTIVITIES, APP_EVENTS, LEDGER, DEAD_LETTERS}))}
    assert found == {
        "user_achievements(event_id) -> app_events(id)",
        f"{REACTIONS}(activity_id) -> activities(id)",
    }


def test_referenced_rows_are_kept_counted_and_nothing_dangles(engine: Engine) -> None:
    _seed_everything(engine, CUTOFF)
    _add_django_foreign_keys(engine)
    stats = purge_expired_rows(engine, CUTOFF, batch_size=3)

    expected = dict(EXPECTED_AFTER)
    expected[ACTIVITIES] = [3, *EXPECTED_AFTER[ACTIVITIES]]  # reaction 1 still points at it
    expected[APP_EVENTS] = [1, *EXPECTED_AFTER[APP_EVENTS]]  # the award still points at it
    expected[LEDGER] = [1, *EXPECTED_AFTER[LEDGER]]  # its event exists, so its ledger row too
    assert _remaining(engine) == expected
    assert stats.rows_by_table() == {
        ACTIVITIES: EXPECTED_DELETED[ACTIVITIES] - 1, APP_EVENTS: EXPECTED_DELETED[APP_EVENTS] - 1,
        LEDGER: EXPECTED_DELETED[LEDGER] - 1, DEAD_LETTERS: EXPECTED_DELETED[DEAD_LETTERS],
    }
    assert stats.kept_by_table() == {ACTIVITIES: 1, APP_EVENTS: 1, LEDGER: 0, DEAD_LETTERS: 0}
    assert _dangling_references(engine) == 0


def test_without_the_keys_the_same_rows_go(engine: Engine) -> None:
    """The control: the rows kept above are purgeable; only the keys keep them."""
    _seed_everything(engine, CUTOFF)
    stats = purge_expired_rows(engine, CUTOFF, batch_size=3)
    assert _remaining(engine) == EXPECTED_AFTER
    assert stats.kept_by_table() == {ACTIVITIES: 0, APP_EVENTS: 0, LEDGER: 0, DEAD_LETTERS: 0}


def test_dry_run_counts_what_the_real_run_deletes_and_keeps(engine: Engine) -> None:
    _seed_everything(engine, CUTOFF)
    _add_django_foreign_keys(engine)
    dry = purge_expired_rows(engine, CUTOFF, batch_size=3, dry_run=True)
    real = purge_expired_rows(engine, CUTOFF, batch_size=3)
    assert dry.rows_by_table() == real.rows_by_table()
    assert dry.kept_by_table() == real.kept_by_table() == {
        ACTIVITIES: 1, APP_EVENTS: 1, LEDGER: 0, DEAD_LETTERS: 0}


def test_job_reports_the_keys_and_the_kept_rows(app_db: AppDatabase, engine: Engine) -> None:
    _seed_relative_to_now(engine, 90)  # event 1 old and processed
    with engine.begin() as conn:
        conn.execute(sa.text(
            "INSERT INTO user_achievements (id, user_id, achievement_id, awarded_at, event_id) "
            "VALUES (1, 1, 1, CURRENT_TIMESTAMP, 1)"))
    _add_django_foreign_keys(engine, reacted=(2,))  # activity 2 is expired
    result = retention_purge_job.execute_in_process(
        run_config=_job_config(batch_size=100), resources={"app_db": app_db})
    assert result.success
    metadata = purge_output_metadata(result)
    assert metadata["rows_kept_referenced.activities"].value == 1
    assert metadata["rows_kept_referenced.app_events"].value == 1
    assert metadata["rows_deleted.activities"].value == 4
    assert metadata["rows_deleted.app_events"].value == 0
    assert "user_achievements(event_id) -> app_events(id)" in (
        metadata["foreign_keys_into_purged_tables"].value)
    assert _dangling_references(engine) == 0


def _add_invisible_reference(engine: Engine) -> None:
    """A reference into activity 1 that reflection of the current schema cannot see.

    PostgreSQL: a foreign key from another schema. SQLite (no schemas): a trigger that refuses
    the delete the way an enforced key would."""
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(sa.text("DROP SCHEMA IF EXISTS reporting CASCADE"))
            conn.execute(sa.text("CREATE SCHEMA reporting"))
            conn.execute(sa.text(
                "CREATE TABLE reporting.pinned (activity_id bigint REFERENCES "
                "public.activities (id) DEFERRABLE INITIALLY DEFERRED)"))
            conn.execute(sa.text("INSERT INTO reporting.pinned VALUES (1)"))
        else:
            conn.execute(sa.text(
                "CREATE TRIGGER pinned_activity BEFORE DELETE ON activities WHEN old.id = 1 "
                "BEGIN SELECT RAISE(ABORT, 'FOREIGN KEY constraint failed'); END"))


def test_a_constraint_violation_fails_at_once_without_retries(
    app_db: AppDatabase, engine: Engine
) -> None:
    _seed_relative_to_now(engine, 90)
    _add_invisible_reference(engine)
    try:
        result = retention_purge_job.execute_in_process(
            run_config=_job_config(batch_size=100), resources={"app_db": app_db},
            raise_on_error=False)
        assert not result.success
        events = [e for e in result.all_events if e.step_key == "purge_expired_data"]
        assert not [e for e in events if e.event_type_value == "STEP_UP_FOR_RETRY"]
        failure = next(e for e in events if e.event_type_value == "STEP_FAILURE")
        message = failure.event_specific_data.error.to_string()
        assert "violated a database constraint" in message
        assert "foreign key" in message.lower()
        with engine.connect() as conn:  # the failing batch was rolled back as a whole
            assert conn.execute(sa.text("SELECT count(*) FROM activities WHERE id = 1")
                                ).scalar_one() == 1
    finally:
        if engine.dialect.name == "postgresql":
            with engine.begin() as conn:
                conn.execute(sa.text("DROP SCHEMA IF EXISTS reporting CASCADE"))


def test_reflection_sees_keys_declared_without_a_column_list(empty_engine: Engine) -> None:
    """`REFERENCES activities` (no column) refers to the primary key: still a reference."""
    with empty_engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE activities (id BIGINT PRIMARY KEY, created_at TEXT)"))
        conn.execute(sa.text("CREATE TABLE notes (id BIGINT PRIMARY KEY, activity BIGINT "
                             "REFERENCES activities)"))
    refs = find_references(empty_engine, frozenset({ACTIVITIES}))
    assert [(r.table, r.columns, r.referred_columns) for r in refs] == [
        ("notes", ("activity",), ("id",))]
