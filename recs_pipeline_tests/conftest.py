"""Shared fixtures.

Every database test takes the `app_db` fixture, which is parametrized over SQLite and the local
PostgreSQL server (127.0.0.1:5432, user postgres). PostgreSQL being down is an error, never a skip:
CI must prove both backends. Each pytest process creates its own PostgreSQL database and drops it at
the end; each test starts from an empty `public` schema.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import psycopg2
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from recs_pipeline.bootstrap import init_app_database
from recs_pipeline.db import make_engine
from recs_pipeline.resources import AppDatabase

POSTGRES_ADMIN_DSN = os.environ.get(
    "RECS_TEST_POSTGRES_DSN", "host=127.0.0.1 port=5432 user=postgres dbname=postgres"
)
POSTGRES_HOST = os.environ.get("RECS_TEST_POSTGRES_HOST", "127.0.0.1:5432")
BACKENDS = ("sqlite", "postgresql")


def admin_execute(sql: str) -> None:
    """Run one statement on the server's maintenance database (autocommit: CREATE DATABASE)."""
    conn = psycopg2.connect(POSTGRES_ADMIN_DSN)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
    finally:
        conn.close()


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """A fresh PostgreSQL database for this pytest process; yields its name."""
    name = f"recs_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    try:
        admin_execute(f'CREATE DATABASE "{name}"')
    except psycopg2.OperationalError as exc:
        pytest.fail(
            f"PostgreSQL is not reachable ({POSTGRES_ADMIN_DSN}): {exc}. Start it with "
            "`pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start`.",
            pytrace=False,
        )
    yield name
    admin_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def postgres_url(database: str, driver: str = "psycopg") -> str:
    scheme = "postgresql" if driver == "psycopg" else f"postgresql+{driver}"
    return f"{scheme}://postgres@{POSTGRES_HOST}/{database}"


def _reset_postgres_schema(url: str) -> None:
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("DROP SCHEMA public CASCADE"))
        conn.execute(sa.text("CREATE SCHEMA public"))
    engine.dispose()


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """URL of an empty database of each backend (SQLite file, fresh PostgreSQL schema)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'app.db'}"
    url = postgres_url(request.getfixturevalue("postgres_database"))
    _reset_postgres_schema(url)
    return url


@pytest.fixture
def backend(database_url: str) -> str:
    return sa.make_url(database_url).get_backend_name()


@pytest.fixture
def empty_engine(database_url: str) -> Iterator[Engine]:
    """An engine on an empty database (no tables at all)."""
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def engine(empty_engine: Engine) -> Engine:
    """An engine on a database with the contract's app tables, pipeline tables and catalogue."""
    init_app_database(empty_engine)
    return empty_engine


@pytest.fixture
def app_db(database_url: str, engine: Engine) -> AppDatabase:
    """The `AppDatabase` resource pointed at an initialised test database."""
    return AppDatabase(url=database_url)


@pytest.fixture
def dagster_instance(tmp_path: Path) -> Iterator[dg.DagsterInstance]:
    """A throwaway persistent Dagster instance (runs, event logs, sensor cursors)."""
    home = tmp_path / "dagster_home"
    home.mkdir()  # instance_for_test writes dagster.yaml into temp_dir but does not create it
    with dg.instance_for_test(temp_dir=str(home)) as instance:
        yield instance


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """With RECS_FAIL_ON_SKIP=1 (CI), any skipped test fails the run: both backends must run."""
    if os.environ.get("RECS_FAIL_ON_SKIP") != "1":
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = len(reporter.stats.get("skipped", [])) if reporter else 0
    if skipped and session.exitstatus == 0:
        session.exitstatus = 1
        if reporter:
            reporter.write_line(f"RECS_FAIL_ON_SKIP: {skipped} test(s) skipped; failing the run")
