"""The publish swap next to the app's readers, and the output tables' timestamp type.

What a Django app sees: `generated_at` is `timestamptz` on PostgreSQL (aware in UTC, comparable with
`timezone.now()` under USE_TZ) and ISO text on SQLite; a session holding a read lock on a published
table (a request idle in a transaction) never makes other readers queue behind the swap for longer
than the swap's lock timeout; the swap retries until that session lets go, or gives up with who
held it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from recs_pipeline import schema
from recs_pipeline.bootstrap import init_app_database
from recs_pipeline.db import make_engine
from recs_pipeline.defs.recommendations.publishing import (
    KINDS,
    TEAMS,
    TOURNAMENTS,
    SwapLockTimeout,
    SwapPolicy,
    stage,
    swap,
)
from recs_pipeline_tests.conftest import _reset_postgres_schema, postgres_url

NOW = datetime(2030, 1, 1, 2, 0, 0, 123456)  # naive UTC, as the pipeline computes it


def _frame(version: str, n: int = 50, item: str = "tournament_id") -> pd.DataFrame:
    users = [u for u in range(n // 10) for _ in range(10)]
    return pd.DataFrame({
        "user_id": users, item: list(range(n)),
        "rank": [r for _ in range(n // 10) for r in range(1, 11)],
        "score": [1.0 - r / 100 for _ in range(n // 10) for r in range(10)],
        "reason": [f"reason {version}"] * n, "model_version": [version] * n,
        "generated_at": [NOW] * n,
    })


def _publish(engine: Engine, version: str, n: int = 50, **swap_kwargs: object) -> object:
    stage(engine, TOURNAMENTS, _frame(version, n))
    stage(engine, TEAMS, _frame(version, n, item="team_id"))
    return swap(engine, KINDS, **swap_kwargs)  # type: ignore[arg-type]


def _versions(engine: Engine) -> set[str]:
    with engine.connect() as conn:
        return set(conn.execute(sa.text(
            "SELECT DISTINCT model_version FROM tournament_recommendations")).scalars())


@pytest.fixture
def pg_engine(postgres_database: str) -> Iterator[Engine]:
    url = postgres_url(postgres_database)
    _reset_postgres_schema(url)
    engine = make_engine(url)
    init_app_database(engine)
    yield engine
    engine.dispose()


# --- generated_at -------------------------------------------------------------------------


def test_generated_at_is_utc_on_both_backends(engine: Engine, backend: str) -> None:
    _publish(engine, "v1")
    with engine.connect() as conn:
        if backend == "postgresql":
            types = set(conn.execute(sa.text(
                "SELECT data_type FROM information_schema.columns WHERE column_name = "
                "'generated_at' AND table_name IN ('tournament_recommendations', "
                "'team_recommendations')")).scalars())
            assert types == {"timestamp with time zone"}
            conn.execute(sa.text("SET TIME ZONE 'America/New_York'"))  # any reader's zone
            values = set(conn.execute(sa.text(
                "SELECT generated_at FROM tournament_recommendations")).scalars())
            assert values == {NOW.replace(tzinfo=UTC)}  # aware, the same instant
        else:
            values = set(conn.execute(sa.text(
                "SELECT generated_at FROM tournament_recommendations")).scalars())
            assert values == {NOW.strftime("%Y-%m-%d %H:%M:%S.%f")}  # the contract's ISO text


def test_an_old_timestamp_layout_is_upgraded_by_the_next_swap(pg_engine: Engine) -> None:
    """A table published before `timestamptz` (timestamp without time zone) becomes timestamptz
    at the next nightly swap, with its keys and names intact."""
    with pg_engine.begin() as conn:
        conn.execute(sa.text("ALTER TABLE tournament_recommendations ALTER COLUMN generated_at "
                             "TYPE timestamp without time zone"))
    _publish(pg_engine, "v2")
    with pg_engine.connect() as conn:
        assert conn.execute(sa.text(
            "SELECT data_type FROM information_schema.columns WHERE table_name = "
            "'tournament_recommendations' AND column_name = 'generated_at'")).scalar_one() == (
            "timestamp with time zone")
        assert set(conn.execute(sa.text(
            "SELECT generated_at FROM tournament_recommendations")).scalars()) == {
            NOW.replace(tzinfo=UTC)}
    inspector = sa.inspect(pg_engine)
    assert inspector.get_pk_constraint("tournament_recommendations")["name"] == (
        "tournament_recommendations_pkey")


def test_published_tables_are_never_autovacuumed(pg_engine: Engine) -> None:
    """Autovacuum on a freshly loaded table delays the swap's ACCESS EXCLUSIVE lock by
    deadlock_timeout while every reader queues: staging (and so the published tables, which are
    replaced, never updated in bulk) have it off, and statistics from ANALYZE."""
    _publish(pg_engine, "v1")
    with pg_engine.connect() as conn:
        rows = dict(conn.execute(sa.text(
            "SELECT c.relname, array_to_string(c.reloptions, ',') FROM pg_class c WHERE "
            "c.relname IN ('tournament_recommendations', 'team_recommendations')")).all())
        analysed = conn.execute(sa.text(
            "SELECT reltuples FROM pg_class WHERE relname = 'tournament_recommendations'"
        )).scalar_one()
    assert all("autovacuum_enabled=false" in (opts or "") for opts in rows.values()), rows
    assert analysed == 50  # ANALYZE ran on the staged rows


def test_published_rows_are_written_frozen(pg_engine: Engine) -> None:
    """The staged rows are COPYed FREEZE: every page of the published table is all-frozen, so
    no reader after the swap dirties the whole table setting hint bits."""
    _publish(pg_engine, "v1", n=5_000)
    with pg_engine.begin() as conn:
        conn.execute(sa.text("CREATE EXTENSION IF NOT EXISTS pg_visibility"))
        pages = conn.execute(sa.text(
            "SELECT pg_relation_size('tournament_recommendations') / "
            "current_setting('block_size')::int")).scalar_one()
        frozen = conn.execute(sa.text(
            "SELECT all_frozen FROM pg_visibility_map_summary('tournament_recommendations')"
        )).scalar_one()
    assert pages > 1
    assert frozen == pages


# --- the swap and a session holding a read lock --------------------------------------------


class _Blocker:
    """A session inside a transaction that has read a published table: it holds ACCESS SHARE
    until it ends (a Django request idle in a transaction, a long report)."""

    def __init__(self, engine: Engine) -> None:
        self.conn = engine.connect()
        self.conn.execute(sa.text("SELECT count(*) FROM tournament_recommendations")).scalar()
        self.pid = self.conn.execute(sa.text("SELECT pg_backend_pid()")).scalar_one()

    def release(self) -> None:
        self.conn.rollback()
        self.conn.close()


def test_readers_never_queue_behind_a_swap_waiting_for_a_blocker(pg_engine: Engine) -> None:
    _publish(pg_engine, "v1")
    blocker = _Blocker(pg_engine)
    stage(pg_engine, TOURNAMENTS, _frame("v2"))
    stage(pg_engine, TEAMS, _frame("v2", item="team_id"))
    outcome: dict[str, object] = {}

    def publish() -> None:
        outcome["swap"] = swap(pg_engine, KINDS,
                               SwapPolicy(lock_timeout_ms=50, first_pause_s=0.1, budget_s=60))

    swapper = threading.Thread(target=publish)
    swapper.start()
    reader = pg_engine.connect()
    try:
        # A reader must be answered while the swap keeps retrying: without the lock timeout it
        # would queue behind the swap's pending ACCESS EXCLUSIVE for as long as the blocker
        # lives, and hit this statement timeout.
        reader.execute(sa.text("SET statement_timeout = '3s'"))
        answered = 0
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            assert reader.execute(sa.text(
                "SELECT count(*) FROM tournament_recommendations")).scalar_one() == 50
            reader.rollback()
            answered += 1
        assert answered > 10
        assert swapper.is_alive() and _versions(pg_engine) == {"v1"}  # still waiting
    finally:
        reader.close()
        blocker.release()
        swapper.join(timeout=30)
    assert not swapper.is_alive()
    result = outcome["swap"]
    assert result.attempts >= 2  # type: ignore[attr-defined]
    assert any(f"pid {blocker.pid} " in b for b in result.blockers)  # type: ignore[attr-defined]
    assert _versions(pg_engine) == {"v2"}


def test_swap_gives_up_after_its_budget_naming_the_blocker(pg_engine: Engine) -> None:
    _publish(pg_engine, "v1")
    blocker = _Blocker(pg_engine)
    pauses: list[float] = []
    raised: list[BaseException] = []

    def publish() -> None:
        try:
            swap(pg_engine, KINDS,
                 SwapPolicy(lock_timeout_ms=20, first_pause_s=0.05, max_pause_s=0.2,
                            budget_s=0.5),
                 sleep=lambda s: (pauses.append(s), time.sleep(s)))
        except BaseException as exc:
            raised.append(exc)

    stage(pg_engine, TOURNAMENTS, _frame("v2"))
    stage(pg_engine, TEAMS, _frame("v2", item="team_id"))
    swapper = threading.Thread(target=publish)
    swapper.start()
    swapper.join(timeout=20)  # a swap without a lock timeout would wait here for the blocker
    gave_up = not swapper.is_alive()
    blocker.release()
    swapper.join()
    assert gave_up, "the swap waited for the blocker instead of giving up within its budget"
    assert len(raised) == 1 and isinstance(raised[0], SwapLockTimeout)
    message = str(raised[0])
    assert f"pid {blocker.pid} " in message and "published tables unchanged" in message
    assert _versions(pg_engine) == {"v1"}
    # Backoff never below the base pause (no retry into the same moment), capped at the max.
    assert pauses and pauses[0] == 0.05 and all(0.05 <= p <= 0.2 for p in pauses)
    assert pauses == sorted(pauses)


def test_sqlite_readers_keep_their_snapshot_and_do_not_block_the_swap(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """SQLite (WAL): an open read transaction neither blocks the swap nor sees it half done."""
    engine = make_engine(f"sqlite:///{tmp_path / 'app.db'}")
    init_app_database(engine)
    try:
        _publish(engine, "v1")
        reader = engine.connect()
        reader.execute(sa.text("BEGIN"))
        assert reader.execute(sa.text(
            "SELECT DISTINCT model_version FROM tournament_recommendations")).scalar_one() == "v1"
        result = _publish(engine, "v2")
        assert result.attempts == 1  # type: ignore[attr-defined]
        assert reader.execute(sa.text(
            "SELECT DISTINCT model_version FROM tournament_recommendations")).scalar_one() == "v1"
        reader.execute(sa.text("COMMIT"))
        reader.close()
        assert _versions(engine) == {"v2"}
    finally:
        engine.dispose()


def test_swap_policy_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        SwapPolicy(lock_timeout_ms=0)
    with pytest.raises(ValueError):
        SwapPolicy(first_pause_s=0)
    assert schema.tournament_recommendations.c.generated_at.type.timezone is True


def test_what_a_repeatable_read_reader_sees_across_a_swap(pg_engine: Engine) -> None:
    """Documented in docs/operations.md: READ COMMITTED (Django's default) sees the old or the
    new table in full; a REPEATABLE READ snapshot taken before the staging load sees the new
    table in full too: the swap's DROP/RENAME is not MVCC-safe, but the rows were COPYed
    FREEZE, which makes them visible to every snapshot (without it the table looked empty)."""
    # A reader left holding a lock would make the swap fail in 2 s here, not wait 10 minutes.
    quick_fail = SwapPolicy(lock_timeout_ms=50, first_pause_s=0.1, budget_s=2)
    _publish(pg_engine, "v1")
    with pg_engine.connect() as reader:
        reader.execute(sa.text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ"))
        reader.execute(sa.text("SELECT 1 FROM games LIMIT 1"))  # the snapshot starts here
        _publish(pg_engine, "v2", policy=quick_fail)
        assert reader.execute(sa.text(
            "SELECT count(*), min(model_version) FROM tournament_recommendations")).one() == (
            50, "v2")
        reader.rollback()
        assert reader.execute(sa.text(
            "SELECT count(*), min(model_version) FROM tournament_recommendations")).one() == (
            50, "v2")
    # Django's default: autocommit, READ COMMITTED. Each statement sees one whole table, and a
    # finished statement holds no lock that the swap would wait for.
    with pg_engine.connect().execution_options(isolation_level="AUTOCOMMIT") as reader:
        assert reader.execute(sa.text(
            "SELECT count(*) FROM tournament_recommendations")).scalar_one() == 50
        _publish(pg_engine, "v3", policy=quick_fail)
        assert reader.execute(sa.text(
            "SELECT count(*), min(model_version) FROM tournament_recommendations")).one() == (
            50, "v3")


def test_sqlite_staging_commits_in_bounded_batches(tmp_path: Path) -> None:
    """Each SQLite transaction locks the whole file for app writes: the staging load commits
    every `sqlite_batch_rows` rows, and the staged table still holds exactly the frame."""
    engine = make_engine(f"sqlite:///{tmp_path / 'app.db'}")
    init_app_database(engine)
    commits: list[int] = []
    sa.event.listen(engine, "commit", lambda conn: commits.append(1))
    frame = _frame("v1", n=350)
    assert stage(engine, TOURNAMENTS, frame, sqlite_batch_rows=100) == 350
    # ensure_pipeline_tables, the staging table, then 100 + 100 + 100 + 50 rows
    assert len(commits) == 2 + 4
    with engine.connect() as conn:
        staged = pd.read_sql(sa.text(
            f"SELECT user_id, tournament_id, rank FROM {TOURNAMENTS.staging_name} "
            "ORDER BY user_id, rank"), conn)
    assert staged.to_dict("list") == frame[["user_id", "tournament_id", "rank"]].to_dict("list")
    engine.dispose()


def test_the_app_readers_privileges_survive_the_swap(pg_engine: Engine) -> None:
    """The swap replaces the table objects; what was granted on them is granted again, in the
    same transaction, so the app's reader role never meets `permission denied`."""
    role = "recs_test_app_reader"
    with pg_engine.begin() as conn:
        conn.execute(sa.text(f"DROP ROLE IF EXISTS {role}"))
        conn.execute(sa.text(f"CREATE ROLE {role} NOLOGIN"))
        current = conn.execute(sa.text("SELECT current_schema()")).scalar_one()
        conn.execute(sa.text(f'GRANT USAGE ON SCHEMA "{current}" TO {role}'))
    try:
        _publish(pg_engine, "v1")
        with pg_engine.begin() as conn:
            conn.execute(sa.text(f"GRANT SELECT ON tournament_recommendations, "
                                 f"team_recommendations TO {role}"))
            conn.execute(sa.text(f"GRANT INSERT ON team_recommendations TO {role} "
                                 "WITH GRANT OPTION"))
        _publish(pg_engine, "v2")
        with pg_engine.connect() as conn:
            def can(table: str, privilege: str) -> bool:
                return conn.execute(sa.text("SELECT has_table_privilege(:r, :t, :p)"),
                                    {"r": role, "t": table, "p": privilege}).scalar_one()

            assert can("tournament_recommendations", "SELECT")
            assert can("team_recommendations", "SELECT")
            assert can("team_recommendations", "INSERT WITH GRANT OPTION")
            assert not can("tournament_recommendations", "INSERT")
            conn.execute(sa.text(f"SET ROLE {role}"))  # and really reads as that role
            assert conn.execute(sa.text(
                "SELECT count(*) FROM tournament_recommendations")).scalar_one() == 50
            conn.execute(sa.text("RESET ROLE"))
        assert _versions(pg_engine) == {"v2"}
    finally:
        with pg_engine.begin() as conn:
            conn.execute(sa.text(f"DROP OWNED BY {role}"))
            conn.execute(sa.text(f"DROP ROLE {role}"))
