"""Dagster resources: `AppDatabase` (the one place the app database URL is read) and `RunClock`."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

import dagster as dg
import sqlalchemy as sa
from pydantic import Field, PrivateAttr
from sqlalchemy.engine import Connection, Engine

from recs_pipeline.compute.timestamps import to_utc_naive, utc_now
from recs_pipeline.db import default_database_url, make_engine, redact_url
from recs_pipeline.tags import REFRESH_AS_OF_TAG

DATABASE_URL_ENV_VAR = "RECS_DATABASE_URL"


class AppDatabase(dg.ConfigurableResource):
    """The app's operational database, reached through one SQLAlchemy URL.

    Leave `url` unset in deployments: it is then read at run time from the environment variable
    `RECS_DATABASE_URL` (through `dg.EnvVar`), and when that is unset too, the embedded SQLite demo
    database under `.local/demo/` is used. Tests and the CLI pass `url` explicitly.
    `postgresql://` (psycopg 3) and `postgresql+psycopg2://` both work.
    """

    url: str | None = Field(
        default=None,
        description=(
            "SQLAlchemy URL of the app database. Unset: $RECS_DATABASE_URL at run time, "
            "else the embedded SQLite demo database."
        ),
    )

    sqlite_wal: bool = Field(
        default=True,
        description=(
            "SQLite only: switch the database file to WAL mode (persistent) so the app reads and "
            "writes while the pipeline runs. False leaves the file's journal mode as it is."
        ),
    )

    _engine: Engine | None = PrivateAttr(default=None)

    def resolved_url(self) -> str:
        """The URL this resource connects to (not for logging: use `redacted_url`)."""
        if self.url:
            return self.url
        return dg.EnvVar(DATABASE_URL_ENV_VAR).get_value(default=default_database_url()) or (
            default_database_url()
        )

    @property
    def redacted_url(self) -> str:
        return redact_url(self.resolved_url())

    def get_engine(self) -> Engine:
        """The engine, created once per resource instance (and so once per run process)."""
        if self._engine is None:
            self._engine = make_engine(self.resolved_url(), sqlite_wal=self.sqlite_wal)
        return self._engine

    @property
    def dialect(self) -> str:
        return self.get_engine().dialect.name

    @contextmanager
    def connect(self) -> Iterator[Connection]:
        with self.get_engine().connect() as conn:
            yield conn

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        """A connection inside one transaction, committed on success, rolled back on error."""
        with self.get_engine().begin() as conn:
            yield conn

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    def table_exists(self, name: str) -> bool:
        return sa.inspect(self.get_engine()).has_table(name)


class RunClock(dg.ConfigurableResource):
    """The run's "now": every step of one run reads, scores and stamps as of the same instant.

    Set `as_of` (run config `resources.clock.config.as_of`) to replay or backfill a past night.
    Unset, the run's `recs/refresh_as_of` tag is used (the bucketed refresh tags every bucket run
    of one refresh with the same instant), else the moment the run's resources are set up.
    """

    as_of: str | None = Field(
        default=None,
        description="The run's 'now' (ISO; naive = UTC). Unset: the run's recs/refresh_as_of tag, "
        "else the run's start.",
    )

    _now: datetime | None = PrivateAttr(default=None)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        run = context.run
        value = self.as_of or (run.tags.get(REFRESH_AS_OF_TAG) if run is not None else None)
        self._now = to_utc_naive(value) if value else utc_now().replace(microsecond=0)

    def now(self) -> datetime:
        """The run's instant as naive UTC, whole seconds unless `as_of` says otherwise."""
        if self._now is None:  # used outside a run (a direct call in a script or test)
            self._now = to_utc_naive(self.as_of) if self.as_of else utc_now().replace(
                microsecond=0)
        return self._now
