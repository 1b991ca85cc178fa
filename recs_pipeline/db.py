"""Database plumbing shared by every part of the pipeline.

* `make_engine` turns the one app URL into an engine, with clear errors for bad URLs and
  unreachable servers, and pins PostgreSQL sessions to UTC so `timestamp` and `timestamptz`
  columns read and compare the same way. A SQLite file is switched to WAL once, unless told not
  to (`ensure_sqlite_wal`; docs/operations.md, "Next to the Django app").
* `bulk_insert` writes a DataFrame fast: PostgreSQL `COPY` (psycopg2 or psycopg 3), SQLite
  `executemany` on the raw cursor.
* `to_utc_naive` normalises any timestamp column (SQLite ISO text, naive UTC, timestamptz) to
  naive UTC `datetime64`, the one representation the pure functions see.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import operator
import queue
import re
import threading
import time
from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection, Engine

from recs_pipeline.compute.timestamps import to_utc_naive

DEFAULT_SQLITE_PATH = Path(".local") / "demo" / "app.db"
SQLITE_BUSY_TIMEOUT_S = 30.0

log = logging.getLogger(__name__)

SUPPORTED_DIALECTS = ("sqlite", "postgresql")
# PostgreSQL's FATAL messages for a missing database or role and refused credentials.
_PERMANENT_CONNECT_MESSAGES = ("does not exist", "authentication failed", "no pg_hba.conf entry")


class DatabaseConfigError(Exception):
    """The app database URL is unusable (bad scheme, unreachable server, missing driver).

    Its message is one line a person can act on; the CLI prints it and exits 2.
    """


class DatabaseUnavailableError(DatabaseConfigError):
    """The URL is fine but the first connection failed (server down, restarting, unreachable):
    transient for the jobs (`recs_pipeline.retries`); still a one-line error in the CLI."""


def default_database_url() -> str:
    """The embedded SQLite demo database, relative to the working directory."""
    return f"sqlite:///{DEFAULT_SQLITE_PATH.as_posix()}"


# Where a URL can hold a password, parsable or not (`redact_url`, `_scrub`):
_SECRET_PATTERNS = (
    # "scheme://user:password@host": the password runs to the LAST "@", as an unescaped "@" or
    # "/" in it is still the password (SQLAlchemy stops at the first "@"). The scheme may be
    # missing; "scheme:///path" and "user@host:port" are not credentials.
    re.compile(r"^(?:[^:/@]+://)?[^:/@]*:(?!//)(?P<secret>.*)@"),
    # libpq also takes the password as a query parameter.
    re.compile(r"[?&]password=(?P<secret>[^&#]*)", re.IGNORECASE),
)
# "scheme://user:password/db" (no "@host"): the password stands where the port would be.
_PORT_SECRET = re.compile(r"^[^:/@]+://[^:/@?\[]*:(?P<secret>[^/?#]*[^/?#\d][^/?#]*)")


def _secret_spans(url: str) -> list[tuple[int, int]]:
    spans = [m.span("secret") for pattern in _SECRET_PATTERNS for m in pattern.finditer(url)]
    if "@" not in url:
        spans += [m.span("secret") for m in _PORT_SECRET.finditer(url)]
    return sorted(spans)


def redact_url(url: str) -> str:
    """The URL with any password hidden, for logs, errors and metadata; also when unparsable."""
    out: list[str] = []
    end = 0
    for start, stop in _secret_spans(url):
        if start >= end:  # spans of different patterns can overlap: hide their union
            out.append(url[end:start] + "***")
        end = max(end, stop)
    return "".join(out) + url[end:]


def _scrub(text: str, url: str) -> str:
    """A driver's or SQLAlchemy's message about `url`, with the URL and its password hidden."""
    text = text.replace(url, redact_url(url))
    for start, stop in _secret_spans(url):
        secret = url[start:stop]
        for form in {secret, unquote(secret)}:  # drivers see the password percent-decoded
            if form:
                text = text.replace(form, "***")
    return text


def parse_database_url(url: str) -> sa.URL:
    """`url` parsed, or a one-line `DatabaseConfigError` that never quotes its password."""
    parse_error: str | None = None
    try:
        parsed = sa.make_url(url)
    except Exception as exc:
        parse_error = _scrub(str(exc), url)
    # Raised outside the handler: SQLAlchemy's error, which may quote the password (as a port),
    # must not ride along as the context, even a suppressed one.
    if parse_error is not None:
        raise DatabaseConfigError(f"cannot parse database URL {redact_url(url)}: {parse_error}")
    if "@" in (parsed.host or ""):  # SQLAlchemy took the password's tail for the host
        raise DatabaseConfigError(
            f"cannot parse database URL {redact_url(url)}: an '@' in the password must be "
            "written %40")
    return parsed


def make_engine(
    url: str, *, check_connection: bool = True, sqlite_wal: bool = True, **engine_kwargs: object
) -> Engine:
    """Create an engine for the app database, failing with a one-line `DatabaseConfigError`.

    Both `postgresql://` (psycopg 3 under SQLAlchemy 2.1) and `postgresql+psycopg2://` work.
    On SQLite, `sqlite_wal` switches the file to WAL (persistent; see `ensure_sqlite_wal`); with
    `sqlite_wal=False` the file's journal mode is left as it is.
    """
    parsed = parse_database_url(url)
    if parsed.get_backend_name() not in SUPPORTED_DIALECTS:
        raise DatabaseConfigError(
            f"unsupported database scheme {parsed.drivername!r} in {redact_url(url)}; "
            "use sqlite:///path or postgresql://user@host/db"
        )
    kwargs: dict[str, object] = dict(engine_kwargs)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        if database and database != ":memory:" and not database.startswith("file:"):
            directory = Path(database).parent
            try:
                directory.mkdir(parents=True, exist_ok=True)
            except OSError as exc:  # read-only, /proc, a regular file in the way, ...
                raise DatabaseConfigError(
                    f"cannot create directory {directory} for the SQLite database: "
                    f"{exc.strerror or exc}") from None
        kwargs.setdefault("connect_args", {"timeout": SQLITE_BUSY_TIMEOUT_S})
    else:
        # Every PostgreSQL session works in UTC: naive timestamps we bind are UTC, and
        # `timestamptz` values come back in UTC.
        kwargs.setdefault("connect_args", {"options": "-c timezone=UTC"})
        kwargs.setdefault("pool_pre_ping", True)
    try:
        engine = sa.create_engine(parsed, **kwargs)  # type: ignore[arg-type]
    except ImportError as exc:
        raise DatabaseConfigError(
            f"no driver for {parsed.drivername!r}: {_scrub(str(exc), url)}"
        ) from None
    except Exception as exc:
        raise DatabaseConfigError(
            f"cannot create engine for {redact_url(url)}: {_scrub(str(exc), url)}") from None
    if parsed.get_backend_name() == "sqlite":
        _configure_sqlite(engine)
    if check_connection:
        try:
            with engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
        except sa.exc.SQLAlchemyError as exc:
            engine.dispose()
            reason = _scrub(str(getattr(exc, "orig", exc)).strip().splitlines()[0], url)
            # Wrong credentials or a missing database will not heal by waiting. (The drivers
            # give no SQLSTATE for errors during connection set-up: the server's message says.)
            message = str(getattr(exc, "orig", exc))
            permanent = any(p in message for p in _PERMANENT_CONNECT_MESSAGES)
            error = DatabaseConfigError if permanent else DatabaseUnavailableError
            raise error(f"cannot connect to {redact_url(url)}: {reason}") from None
        if parsed.get_backend_name() == "sqlite" and sqlite_wal:
            ensure_sqlite_wal(engine)
    return engine


def _configure_sqlite(engine: Engine) -> None:
    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
        cursor = dbapi_connection.cursor()
        # NORMAL sync is safe in WAL mode (and the SQLite default otherwise is FULL for a reason:
        # leave a rollback-journal file alone).
        cursor.execute("PRAGMA journal_mode")
        if cursor.fetchone()[0] == "wal":
            cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_TIMEOUT_S * 1000)}")
        cursor.close()


def ensure_sqlite_wal(engine: Engine, timeout_s: float = SQLITE_BUSY_TIMEOUT_S) -> str:
    """Put the SQLite file in WAL mode (readers and one writer at once) and return its mode.

    WAL is a property of the file: it stays after the pipeline disconnects, and the app's own
    connections use it too. `PRAGMA journal_mode=DELETE`, run while no pipeline run is connected,
    reverts it. In rollback-journal mode SQLite refuses the switch at once, without waiting in the
    busy handler, when it would deadlock with an app write in progress, so the switch is retried
    for up to `timeout_s`. Files that cannot use WAL (`:memory:`) keep their mode.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        with engine.connect() as conn:
            mode = conn.exec_driver_sql("PRAGMA journal_mode").scalar_one()
            if mode in ("wal", "memory"):
                return str(mode)
            try:
                mode = conn.exec_driver_sql("PRAGMA journal_mode=WAL").scalar_one()
            except sa.exc.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise DatabaseUnavailableError(
                        f"cannot switch {engine.url.database} to WAL mode: {exc.orig}") from None
            else:
                if mode == "wal":
                    log.info("switched SQLite database %s from rollback journal to WAL mode",
                             engine.url.database)
                return str(mode)
        time.sleep(0.05)


def in_ids(column: sa.ColumnElement, ids: Iterable[int], dialect: str) -> sa.ColumnElement[bool]:
    """`column IN ids` with ONE bound parameter whatever the batch size.

    PostgreSQL: `= ANY(:bigint[])`; SQLite: `IN (SELECT value FROM json_each(:json))`. An expanding
    IN list would hit SQLite's bind limit for big batches and bloat PostgreSQL's statement.
    """
    values = [int(i) for i in ids]
    if dialect == "postgresql":
        return column == sa.any_(
            sa.bindparam(None, values, type_=postgresql.ARRAY(sa.BigInteger()))
        )
    each = sa.func.json_each(sa.bindparam(None, json.dumps(values), type_=sa.Text())).table_valued(
        "value"
    )
    return column.in_(sa.select(each.c.value))


def is_postgres(bind: Connection | Engine) -> bool:
    return bind.dialect.name == "postgresql"


# SQLite keeps timestamps as text; only text starting like a date is handed to julianday(),
# which would otherwise read 'now' or a bare number as a time.
SQLITE_DATE_GLOB = "[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]*"
# Prefilter margin: a stored local time with an offset is within 14 h of its UTC instant.
_OFFSET_MARGIN = timedelta(days=2)


def utc_instant(conn: Connection, column: sa.ColumnElement) -> sa.ColumnElement:
    """The stored timestamp as a value that orders by instant on both backends.

    PostgreSQL columns are typed (sessions are pinned to UTC). SQLite text is parsed per value by
    `julianday()` (space or `T`, fractions, `Z`, `+HH:MM` offsets, converted to UTC): it is never
    compared as text, and a value that is not a timestamp is NULL (so it matches no comparison).
    """
    if conn.dialect.name == "sqlite":
        return sa.case((column.op("GLOB")(SQLITE_DATE_GLOB), sa.func.julianday(column)))
    return column


def timestamp_bind(conn: Connection, value: datetime) -> sa.ColumnElement:
    """A whole-second cutoff that compares with `utc_instant` of a column on both backends."""
    value = value.replace(microsecond=0)
    if conn.dialect.name == "sqlite":
        return sa.func.julianday(sa.literal(value.strftime("%Y-%m-%d %H:%M:%S"), sa.String()))
    return sa.literal(value, sa.DateTime())


_COMPARISONS = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}


def timestamp_compare(
    conn: Connection, column: sa.ColumnElement, op: str, value: datetime
) -> sa.ColumnElement[bool]:
    """`column <op> value` by instant (see `utc_instant`); NULL and unparsable values never match.

    On SQLite a text range with a two-day margin comes first, so an index on the column still
    narrows the scan; the exact comparison is on the parsed value.
    """
    compare = _COMPARISONS[op](utc_instant(conn, column), timestamp_bind(conn, value))
    if conn.dialect.name != "sqlite":
        return compare
    if op in ("<", "<="):
        prefilter = column < (value + _OFFSET_MARGIN).date().isoformat()
    else:
        prefilter = column >= (value - _OFFSET_MARGIN).date().isoformat()
    return sa.and_(prefilter, compare)


def unparsable_timestamp(conn: Connection, column: sa.ColumnElement) -> sa.ColumnElement[bool]:
    """True where a stored value is present but is not a timestamp (always false on PostgreSQL,
    whose columns are typed)."""
    if conn.dialect.name != "sqlite":
        return sa.false()
    return column.is_not(None) & utc_instant(conn, column).is_(None)


def utc_text(conn: Connection, expression: sa.ColumnElement) -> sa.ColumnElement:
    """An aggregate of `utc_instant` (e.g. its max) back as a timestamp `read_frame` can parse."""
    if conn.dialect.name == "sqlite":
        return sa.func.strftime("%Y-%m-%d %H:%M:%f", expression)
    return expression


def read_frame(
    conn: Connection,
    statement: sa.sql.Executable,
    *,
    timestamp_columns: Iterable[str] = (),
) -> pd.DataFrame:
    """Run a Core statement and return a DataFrame; named timestamp columns become naive UTC.

    The statement is executed by SQLAlchemy (bound parameters as usual); the rows are fetched as
    the driver's plain tuples and built into columns. SQLAlchemy `Row` objects cost ~15 us per
    row (15 s per million at 1M users) and `pd.DataFrame(rows)` on them is slower still. Values
    are therefore the driver's: SQLite booleans are 0/1, SQLite timestamps are text until
    normalised through `timestamp_columns`.
    """
    result = conn.execute(statement)
    names = list(result.keys())
    rows = result.cursor.fetchall()  # type: ignore[attr-defined]
    result.close()
    columns = list(zip(*rows, strict=True)) if rows else [() for _ in names]
    frame = pd.DataFrame({n: list(c) for n, c in zip(names, columns, strict=True)})
    return _naive_utc_columns(frame, timestamp_columns)


def _naive_utc_columns(frame: pd.DataFrame, columns: Iterable[str]) -> pd.DataFrame:
    for column in columns:
        frame[column] = to_utc_naive(frame[column]) if len(frame) else frame[column].astype(
            "datetime64[us]"
        )
    return frame


def _copy_out(conn: Connection, statement: sa.Select) -> io.BytesIO:
    """PostgreSQL: the statement's rows as CSV, streamed with COPY TO STDOUT (binds rendered)."""
    sql = str(statement.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True}))
    buffer = io.BytesIO()
    cursor = conn.connection.driver_connection.cursor()
    try:
        copy_sql = f"COPY ({sql}) TO STDOUT WITH (FORMAT csv)"
        if hasattr(cursor, "copy_expert"):  # psycopg2
            cursor.copy_expert(copy_sql, buffer)
        else:  # psycopg 3
            with cursor.copy(copy_sql) as copy:
                for chunk in copy:
                    buffer.write(chunk)
    finally:
        cursor.close()
    buffer.seek(0)
    return buffer


def read_int_frame(conn: Connection, statement: sa.Select) -> pd.DataFrame:
    """An integer-only result as a DataFrame; PostgreSQL streams it with COPY (fast at 10M rows)."""
    names = [c.name for c in statement.selected_columns]
    if not is_postgres(conn):
        result = conn.execute(statement)
        return pd.DataFrame(result.cursor.fetchall(), columns=names, dtype="int64")  # type: ignore[attr-defined]
    buffer = _copy_out(conn, statement)
    if buffer.getbuffer().nbytes == 0:
        return pd.DataFrame({n: pd.Series(dtype="int64") for n in names})
    return pd.read_csv(buffer, header=None, names=names, dtype="int64", engine="c")


def read_copied_frame(conn: Connection, statement: sa.Select) -> pd.DataFrame:
    """`read_frame` for a result of NOT NULL integer, float, text and timestamp columns (the
    recommendation tables' shape), streamed with COPY on PostgreSQL (~3x faster per row);
    timestamp columns come back naive UTC."""
    columns = list(statement.selected_columns)
    stamps = [c.name for c in columns if isinstance(c.type, sa.DateTime)]
    if not is_postgres(conn):
        return read_frame(conn, statement, timestamp_columns=stamps)
    dtypes: dict[str, str] = {}
    for c in columns:
        if isinstance(c.type, sa.Integer):
            dtypes[c.name] = "int64"
        elif isinstance(c.type, sa.Float):
            dtypes[c.name] = "float64"
        else:  # text; timestamps are parsed below
            dtypes[c.name] = "object"
    names = [c.name for c in columns]
    buffer = _copy_out(conn, statement)
    if buffer.getbuffer().nbytes == 0:
        frame = pd.DataFrame({n: pd.Series(dtype=dtypes[n]) for n in names})
    else:
        frame = pd.read_csv(buffer, header=None, names=names, dtype=dtypes, engine="c",
                            keep_default_na=False, na_filter=False)
    return _naive_utc_columns(frame, stamps)


# --- Bulk writes ----------------------------------------------------------------------------

_SQLITE_TS_FORMAT = "%Y-%m-%d %H:%M:%S.%f"  # SQLAlchemy's own SQLite DateTime storage format


def _sqlite_rows(frame: pd.DataFrame) -> list[tuple[object, ...]]:
    columns: list[np.ndarray] = []
    for name in frame.columns:
        col = frame[name]
        if pd.api.types.is_datetime64_any_dtype(col):
            if getattr(col.dt, "tz", None) is not None:
                col = col.dt.tz_convert("UTC").dt.tz_localize(None)
            text = col.dt.strftime(_SQLITE_TS_FORMAT)
            columns.append(text.astype(object).where(col.notna(), None).to_numpy())
        elif pd.api.types.is_bool_dtype(col):
            columns.append(col.astype(int).astype(object).to_numpy())
        else:
            obj = col.astype(object)
            columns.append(obj.where(col.notna(), None).to_numpy())
    return list(zip(*[c.tolist() for c in columns], strict=True)) if columns else []


def _csv_buffer(frame: pd.DataFrame) -> io.StringIO:
    buffer = io.StringIO()
    out = frame.copy(deep=False)
    for name in out.columns:
        col = out[name]
        if pd.api.types.is_datetime64_any_dtype(col) and getattr(col.dt, "tz", None) is not None:
            out[name] = col.dt.tz_convert("UTC").dt.tz_localize(None)
    out.to_csv(
        buffer,
        index=False,
        header=False,
        na_rep="\\N",
        quoting=csv.QUOTE_MINIMAL,
        date_format="%Y-%m-%d %H:%M:%S.%f",
    )
    buffer.seek(0)
    return buffer


_COPY_CHUNK_ROWS = 100_000


def _csv_chunks(frame: pd.DataFrame) -> Iterator[str]:
    for lo in range(0, len(frame), _COPY_CHUNK_ROWS):
        yield _csv_buffer(frame.iloc[lo: lo + _COPY_CHUNK_ROWS]).getvalue()


def _prefetched(chunks: Iterator[str], depth: int = 2) -> Iterator[str]:
    """Produce the next CSV chunks in a background thread while the caller streams the current
    one to the server: CSV formatting (client CPU) overlaps COPY ingest (server CPU)."""
    done = object()
    q: queue.Queue[object] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for chunk in chunks:
                if stop.is_set():
                    return
                q.put(chunk)
            q.put(done)
        except BaseException as exc:  # re-raised in the consumer
            q.put(exc)

    worker = threading.Thread(target=produce, name="copy-csv", daemon=True)
    worker.start()
    try:
        while True:
            item = q.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item  # type: ignore[misc]
    finally:
        stop.set()
        while worker.is_alive():  # unblock a producer waiting on a full queue
            try:
                q.get_nowait()
            except queue.Empty:
                worker.join(0.05)


class _ChunkReader:
    """A file-like `read(size)` over an iterator of strings (psycopg2's copy_expert)."""

    def __init__(self, chunks: Iterator[str]) -> None:
        self._chunks = chunks
        self._buffer = ""

    def read(self, size: int = -1) -> str:
        while size < 0 or len(self._buffer) < size:
            nxt = next(self._chunks, None)
            if nxt is None:
                break
            self._buffer += nxt
        if size < 0:
            out, self._buffer = self._buffer, ""
        else:
            out, self._buffer = self._buffer[:size], self._buffer[size:]
        return out



def copy_into(conn: Connection, table_name: str, frame: pd.DataFrame) -> None:
    """PostgreSQL COPY FROM STDIN of a DataFrame, with either psycopg2 or psycopg 3.

    Large frames are formatted in chunks by a background thread while earlier chunks stream.
    """
    columns = ", ".join(f'"{c}"' for c in frame.columns)
    sql = f'COPY "{table_name}" ({columns}) FROM STDIN WITH (FORMAT csv, NULL \'\\N\')'
    chunks = _prefetched(_csv_chunks(frame)) if len(frame) > _COPY_CHUNK_ROWS else _csv_chunks(
        frame)
    raw = conn.connection.driver_connection
    cursor = raw.cursor()
    try:
        if hasattr(cursor, "copy_expert"):  # psycopg2
            cursor.copy_expert(sql, _ChunkReader(chunks), size=1 << 20)
        else:  # psycopg 3
            with cursor.copy(sql) as copy:
                for chunk in chunks:
                    copy.write(chunk)
    finally:
        cursor.close()


def bulk_insert(conn: Connection, table: sa.Table | str, frame: pd.DataFrame) -> int:
    """Append a DataFrame's rows to a table inside the caller's transaction; returns the count.

    The frame's columns must be a subset of the table's, named the same.
    """
    if frame.empty:
        return 0
    table_name = table if isinstance(table, str) else table.name
    if is_postgres(conn):
        copy_into(conn, table_name, frame)
    else:
        columns = ", ".join(f'"{c}"' for c in frame.columns)
        placeholders = ", ".join("?" for _ in frame.columns)
        raw = conn.connection.driver_connection
        cursor = raw.cursor()
        try:
            cursor.executemany(
                f'INSERT INTO "{table_name}" ({columns}) VALUES ({placeholders})',
                _sqlite_rows(frame),
            )
        finally:
            cursor.close()
    return len(frame)
