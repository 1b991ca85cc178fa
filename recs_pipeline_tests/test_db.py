"""SQLite journal mode: WAL is switched on once and stays; it can be declined and undone."""

from __future__ import annotations

import sqlite3
import threading
import time
from contextlib import closing
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from recs_pipeline import schema
from recs_pipeline.db import bulk_insert, make_engine, read_copied_frame, read_frame
from recs_pipeline.resources import AppDatabase


def _journal_mode(path: Path) -> str:
    with closing(sqlite3.connect(path)) as conn:
        return conn.execute("PRAGMA journal_mode").fetchone()[0]


def _app_file(path: Path) -> Path:
    """A file as Django's `migrate` leaves it: rollback journal (SQLite's default)."""
    with closing(sqlite3.connect(path)) as conn:
        conn.execute("CREATE TABLE t (x INTEGER)")
    assert _journal_mode(path) == "delete"
    return path


def test_the_switch_to_wal_is_persistent_and_reversible(tmp_path: Path) -> None:
    path = _app_file(tmp_path / "app.db")
    make_engine(f"sqlite:///{path}").dispose()
    assert _journal_mode(path) == "wal"  # the app's own connections now use WAL too
    # The documented way back, with no pipeline connected.
    with closing(sqlite3.connect(path)) as conn:
        assert conn.execute("PRAGMA journal_mode=DELETE").fetchone()[0] == "delete"
    engine = AppDatabase(url=f"sqlite:///{path}", sqlite_wal=False).get_engine()
    with engine.begin() as conn:
        conn.exec_driver_sql("INSERT INTO t VALUES (1)")
    engine.dispose()
    assert _journal_mode(path) == "delete"


def test_the_switch_waits_for_an_app_write_in_progress(tmp_path: Path) -> None:
    """An app transaction holding the write lock makes SQLite refuse the switch at once (its
    deadlock rule skips the busy timeout): the engine retries instead of failing the run."""
    path = _app_file(tmp_path / "app.db")
    app = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    app.execute("BEGIN IMMEDIATE")
    app.execute("INSERT INTO t VALUES (1)")
    with (  # the refusal, as SQLite gives it
        closing(sqlite3.connect(path, timeout=30)) as pipeline,
        pytest.raises(sqlite3.OperationalError, match="locked"),
    ):
        pipeline.execute("PRAGMA journal_mode=WAL")
    commit = threading.Timer(0.5, lambda: app.execute("COMMIT"))
    started = time.monotonic()
    commit.start()
    try:
        engine = make_engine(f"sqlite:///{path}")
    finally:
        commit.join()
        app.close()
    assert time.monotonic() - started >= 0.4
    engine.dispose()
    assert _journal_mode(path) == "wal"


def test_in_memory_databases_keep_their_mode() -> None:
    engine = make_engine("sqlite://")
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar_one() == "memory"


def test_read_copied_frame_reads_what_read_frame_reads(engine: Engine) -> None:
    """The COPY reader (PostgreSQL) gives the same rows and types as the row reader: text with
    commas, quotes and newlines, exact float scores, naive UTC timestamps."""
    table = schema.tournament_recommendations
    rows = pd.DataFrame({
        "user_id": [1, 1, 2], "tournament_id": [10, 11, 10], "rank": [1, 2, 1],
        "score": [0.1 + 0.2, 1 / 3, 2.0 ** -40],
        "reason": ['Near you, "weekly"', "a, b\nc", "NA"],
        "model_version": ["ranker-v1-x", "ranker-v1-x", ""],
        "generated_at": pd.to_datetime(["2026-06-01 02:00:00.123456"] * 3).tz_localize("UTC"),
    })
    with engine.begin() as conn:
        bulk_insert(conn, table, rows)
    query = sa.select(*table.columns).order_by(table.c.user_id, table.c.rank)
    with engine.connect() as conn:
        copied = read_copied_frame(conn, query)
        plain = read_frame(conn, query, timestamp_columns=["generated_at"])
    pd.testing.assert_frame_equal(copied, plain, check_dtype=False)
    assert copied["score"].tolist() == rows["score"].tolist()
    assert copied["reason"].tolist() == rows["reason"].tolist()
    assert copied["generated_at"].tolist() == [pd.Timestamp("2026-06-01 02:00:00.123456")] * 3
    with engine.connect() as conn:
        assert read_copied_frame(conn, query.where(table.c.user_id == 99)).empty
