"""Dagster resources: `AppDatabase` (the one place the app database URL is read), `RunClock` and
`InputQuarantinePolicy`."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta

import dagster as dg
import sqlalchemy as sa
from pydantic import Field, PrivateAttr, model_validator
from sqlalchemy.engine import Connection, Engine

from recs_pipeline.compute.timestamps import to_utc_naive, utc_now
from recs_pipeline.db import DatabaseConfigError, make_engine, redact_url
from recs_pipeline.tags import REFRESH_AS_OF_TAG

DATABASE_URL_ENV_VAR = "RECS_DATABASE_URL"


class AppDatabase(dg.ConfigurableResource):
    """The app's operational database, reached through one SQLAlchemy URL.

    The code location binds `url` to `dg.EnvVar("RECS_DATABASE_URL")` (`defs/resources.py`): a
    run, sensor tick or schedule without the variable fails at once, naming it, and never falls
    back to another database. The demo sets the variable to its SQLite file (`make demo`); tests
    and the CLI pass `url` explicitly. Every run records `run_metadata()` (the redacted URL and
    the dialect) on its first output.
    `postgresql://` (psycopg 3) and `postgresql+psycopg2://` both work.
    """

    url: str | None = Field(
        default=None,
        description=(
            "SQLAlchemy URL of the app database (the code location binds "
            "$RECS_DATABASE_URL). Unset: $RECS_DATABASE_URL when the resource is used, and an "
            "error when that is unset too."
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
        url = self.url or dg.EnvVar(DATABASE_URL_ENV_VAR).get_value(default=None)
        if not url:
            raise DatabaseConfigError(
                f"{DATABASE_URL_ENV_VAR} is not set: the app database's SQLAlchemy URL, e.g. "
                "postgresql://user@host/app (`make demo` sets it to the demo's SQLite file)")
        return url

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

    def run_metadata(self) -> dict[str, str]:
        """Which database a run used, for its output metadata (the password hidden)."""
        return {"app_database": self.redacted_url, "app_database_dialect": self.dialect}

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


# An `as_of` outside [now - window, now + skew] is a backfill and must say so (`backfill: true`):
# a mistyped year would read open tournaments as closed and empty users' lists.
AS_OF_WINDOW = timedelta(days=2)
AS_OF_CLOCK_SKEW = timedelta(minutes=5)


class RunClock(dg.ConfigurableResource):
    """The run's "now": every step of one run reads, scores and stamps as of the same instant.

    Set `as_of` (run config `resources.clock.config.as_of`) to replay a recent night; more than two
    days back (or in the future) it is a backfill and needs `backfill: true`, else the run fails
    before any step reads data, without retries. Unset, the run's
    `recs/refresh_as_of` tag is used (the bucketed refresh tags every bucket run of one refresh
    with the same instant), else the moment the run's resources are set up.
    """

    as_of: str | None = Field(
        default=None,
        description="The run's 'now' (ISO; naive = UTC), within the last two days unless "
        "backfill is set. Unset: the run's recs/refresh_as_of tag, else "
        "the run's start.",
    )
    backfill: bool = Field(
        default=False,
        description="Allow an as_of outside the last two days (a deliberate backfill, a replay, "
        "a synthetic test world).",
    )

    _now: datetime | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _as_of_in_window(self) -> RunClock:
        if self.as_of is None:
            return self
        try:
            value = to_utc_naive(self.as_of)
        except ValueError:
            raise ValueError(
                f"as_of {self.as_of[:40]!r} is not an ISO-8601 timestamp") from None
        now = utc_now()
        if self.backfill or now - AS_OF_WINDOW <= value <= now + AS_OF_CLOCK_SKEW:
            return self
        when = "in the future" if value > now else f"more than {AS_OF_WINDOW.days} days ago"
        raise ValueError(f"as_of {value.isoformat()} is {when} (now {now:%Y-%m-%d %H:%M} UTC): "
                         "set backfill: true to run as of another time")

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

class InputQuarantinePolicy(dg.ConfigurableResource):
    """How much quarantined app input a run accepts (the `input_quarantine` asset checks).

    A row that cannot be parsed or breaks the data contract is set aside and the run goes on for
    everyone else. Above `warn_share` of a table's rows the check WARNs; above `error_share` (and
    at least `error_min_rows` rows, so one bad row of a small table does not stop a night) it is
    an ERROR, which blocks the publish: a wholesale format change is never silently accepted.
    """

    warn_share: float = Field(
        default=0.0, ge=0.0, le=1.0,
        description="Share of a table's rows quarantined above which the check warns.")
    error_share: float = Field(
        default=0.05, ge=0.0, le=1.0,
        description="Share of a table's rows quarantined above which the check fails (ERROR) "
        "and nothing is published.")
    error_min_rows: int = Field(
        default=10, ge=1,
        description="An ERROR also needs at least this many quarantined rows in the table.")

    @model_validator(mode="after")
    def _ordered(self) -> InputQuarantinePolicy:
        if self.error_share < self.warn_share:
            raise ValueError("error_share must be at least warn_share")
        return self
