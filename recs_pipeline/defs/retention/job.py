"""Retention purge: the batched deletes (plain functions) and the two ops of `retention_purge_job`.

What is deleted, with the run's one cutoff `C` (see `docs/retention.md`):

1. `activities` with `created_at < C`.
2. `app_events` with `created_at < C` that are processed (a row in `achievement_event_ledger`),
   except those with an unresolved dead letter (kept so they can still be replayed).
3. `achievement_event_ledger` rows with `processed_at < C` whose event no longer exists (so the
   achievements sensor never sees a ledger-less event it already handled).
4. `achievement_dead_letters` with `dead_lettered_at < C` that were resolved (`replayed_at` set).

Nothing else, and nothing at or after `C`. Every batch is its own short transaction, so the purge
can stop anywhere and a new run simply deletes the rest (resumable, idempotent).

Foreign keys into these tables (a Django app's `ForeignKey`, e.g. `user_achievements.event_id` ->
`app_events.id`, `DEFERRABLE INITIALLY DEFERRED` with no ON DELETE) are found by reflection on
both backends (on SQLite the declared keys, enforced or not): a row still referenced by any of
them is kept, and counted (`TableStats.kept_referenced`). So the purge never violates a foreign
key on PostgreSQL and never leaves one dangling on SQLite. If a constraint is violated anyway
(a reference the reflection cannot see, e.g. from another schema), the run fails at once, without
retries, naming the constraint.

Batches, per backend:
* PostgreSQL, timestamp-indexed tables: timestamp ranges through the index. A probe finds the
  timestamp `high` of the (n+1)-th candidate at or after `low`, then `DELETE ... WHERE ts >= :low
  AND ts < :high AND ts < :cutoff` removes at most n rows; the next batch starts at `high`
  (keyset), so no batch rescans the dead index entries of the previous ones.
* SQLite: `DELETE ... WHERE rowid IN (SELECT rowid ... ORDER BY ts LIMIT :n)`.
* `app_events` has no `created_at` index in the contract: primary-key windows `[lo, hi)` over the
  ledger's id range.
"""

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import dagster as dg
import sqlalchemy as sa
from pydantic import Field, field_validator
from sqlalchemy.engine import Connection, Engine

from recs_pipeline import schema
from recs_pipeline.compute.retention import (
    BATCH_SIZE_MAX,
    BATCH_SIZE_MIN,
    DEFAULT_BATCH_SIZE,
    DEFAULT_RETENTION_DAYS,
    RETENTION_DAYS_MAX,
    RETENTION_DAYS_MIN,
    PurgeStats,
    TableStats,
    compute_cutoff,
    plan_id_windows,
    sqlite_cutoff_text,
    validate_batch_size,
    validate_retention_days,
)
from recs_pipeline.compute.timestamps import to_utc_naive, utc_now
from recs_pipeline.config import FailFastConfig
from recs_pipeline.db import SQLITE_DATE_GLOB, is_postgres
from recs_pipeline.defs.app_tables import app_table_key
from recs_pipeline.resources import AppDatabase
from recs_pipeline.retries import transient_only, transient_retry_policy
from recs_pipeline.tags import RETENTION_PURGE_TAGS

# A batch waits at most this long for a row lock held by the app before failing (and retrying
# later) instead of queueing the app's own statements behind it.
POSTGRES_LOCK_TIMEOUT = "5s"

ACTIVITIES = schema.activities.name
APP_EVENTS = schema.app_events.name
LEDGER = schema.achievement_event_ledger.name
DEAD_LETTERS = schema.achievement_dead_letters.name

# Called after each committed batch with (table, rows deleted in it). Tests use it to interrupt a
# purge or to insert rows while it runs; the bench uses it for progress.
BatchHook = Callable[[str, int], None]


class RetentionPurgeError(Exception):
    """The purge cannot run against this database (not transient: retrying will not help)."""


@dataclass(frozen=True)
class Reference:
    """A foreign key from `table(columns)` into a purged table's `referred_columns`."""

    table: str
    columns: tuple[str, ...]
    referred_table: str
    referred_columns: tuple[str, ...]
    name: str | None = None

    def describe(self) -> str:
        return (f"{self.table}({', '.join(self.columns)}) -> "
                f"{self.referred_table}({', '.join(self.referred_columns)})")


@dataclass(frozen=True)
class _Schema:
    """Which of the purge's tables exist, how each timestamp column must be bound, and which
    foreign keys point into them."""

    tables: frozenset[str]
    timestamptz: frozenset[tuple[str, str]]  # (table, column) stored as timestamptz
    references: tuple[Reference, ...] = ()
    quote: Callable[[str], str] = str
    sqlite: bool = False

    def older(self, column: str, param: str = "cutoff") -> str:
        """SQL: `column` is older than the cutoff `:param`, by instant.

        PostgreSQL columns are typed. On SQLite the contract's own form (`YYYY-MM-DD HH:MM:SS`
        with an optional fraction, naive UTC) compares exactly as text against the whole-second
        cutoff; any other text is parsed by `julianday()` (`T`, `Z`, offsets; millisecond
        precision), never compared as text, and text that is not a timestamp is never purged. A
        text range with a two-day margin (`:cutoff_margin`, wider than any UTC offset) comes
        first so the timestamp index still bounds the scan.
        """
        if not self.sqlite:
            return f"{column} < :{param}"
        canonical = (f"{column} GLOB '{SQLITE_CANONICAL_GLOB}' "
                     f"AND substr({column}, 20) NOT GLOB '*[^0-9.]*'")
        return (f"{column} < :cutoff_margin AND CASE WHEN {canonical} THEN {column} < :{param} "
                f"WHEN {column} GLOB '{SQLITE_DATE_GLOB}' "
                f"THEN julianday({column}) < julianday(:{param}) END")

    def references_into(self, table: str) -> tuple[Reference, ...]:
        return tuple(r for r in self.references if r.referred_table == table)

    @property
    def has_ledger(self) -> bool:
        return LEDGER in self.tables

    @property
    def has_dead_letters(self) -> bool:
        return DEAD_LETTERS in self.tables


def find_references(engine: Engine, tables: frozenset[str]) -> tuple[Reference, ...]:
    """Every foreign key of the database's (current-schema) tables that points into `tables`."""
    inspector = sa.inspect(engine)
    found: list[Reference] = []
    for table in sorted(inspector.get_table_names()):
        for fk in inspector.get_foreign_keys(table):
            referred = fk.get("referred_table")
            if referred not in tables or fk.get("referred_schema") not in (None, ""):
                continue
            columns = tuple(fk["constrained_columns"])
            # SQLite reports an FK declared without a column list with no referred columns:
            # it refers to the primary key, which is `id` for every purged table.
            referred_columns = tuple(fk.get("referred_columns") or ()) or ("id",) * len(columns)
            found.append(Reference(table, columns, referred, referred_columns, fk.get("name")))
    return tuple(found)


def _inspect(engine: Engine) -> _Schema:
    inspector = sa.inspect(engine)
    wanted = (ACTIVITIES, APP_EVENTS, LEDGER, DEAD_LETTERS)
    present = frozenset(t for t in wanted if inspector.has_table(t))
    if ACTIVITIES not in present:
        raise RetentionPurgeError(
            f"table {ACTIVITIES!r} does not exist in the app database; nothing to purge "
            "(is RECS_DATABASE_URL pointing at the app database?)"
        )
    tz: set[tuple[str, str]] = set()
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            rows = conn.execute(
                sa.text(
                    "SELECT table_name, column_name FROM information_schema.columns "
                    "WHERE table_schema = current_schema() AND table_name = ANY(:tables) "
                    "AND data_type = 'timestamp with time zone'"
                ),
                {"tables": sorted(present)},
            )
            tz = {(r[0], r[1]) for r in rows}
    return _Schema(tables=present, timestamptz=frozenset(tz),
                   references=find_references(engine, present),
                   quote=engine.dialect.identifier_preparer.quote,
                   sqlite=engine.dialect.name == "sqlite")


# `YYYY-MM-DD HH:MM:SS` and anything after it (the fraction is checked separately).
SQLITE_CANONICAL_GLOB = (
    "[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9] [0-9][0-9]:[0-9][0-9]:[0-9][0-9]*")


def _bind_ts(bind: Connection | Engine, info: _Schema, table: str, column: str,
             cutoff: datetime) -> Any:
    """The cutoff as a parameter comparing correctly with `table.column` on this backend.

    SQLite: whole-second text without a fraction (see `sqlite_cutoff_text`). PostgreSQL: an aware
    UTC datetime for `timestamptz`, a naive UTC one for `timestamp` (no session-zone dependence).
    """
    cutoff = to_utc_naive(cutoff)
    if not is_postgres(bind):
        return sqlite_cutoff_text(cutoff)
    if (table, column) in info.timestamptz:
        return cutoff.replace(tzinfo=UTC)
    return cutoff


# --- predicates (SQL fragments over bound parameters; table names come from schema.py) -------

def _unresolved_dead_letter(info: _Schema, event_id_sql: str) -> str:
    if not info.has_dead_letters:
        return "FALSE"
    d = schema.achievement_dead_letters.c
    return (
        f"EXISTS (SELECT 1 FROM {DEAD_LETTERS} dl WHERE dl.{d.event_id.name} = {event_id_sql} "
        f"AND dl.{d.replayed_at.name} IS NULL)"
    )


def _referenced(info: _Schema, table: str, row_sql: str) -> str:
    """SQL true when the row `row_sql` (an alias or the table name) of `table` is still the
    target of a foreign key; FALSE when nothing points into the table."""
    q = info.quote
    clauses = []
    for i, ref in enumerate(info.references_into(table)):
        alias = f"fk_ref_{i}"
        match = " AND ".join(f"{alias}.{q(c)} = {row_sql}.{q(rc)}"
                             for c, rc in zip(ref.columns, ref.referred_columns, strict=True))
        clauses.append(f"EXISTS (SELECT 1 FROM {q(ref.table)} {alias} WHERE {match})")
    return "(" + " OR ".join(clauses) + ")" if clauses else "FALSE"


def _event_purgeable(info: _Schema, alias: str, *, unreferenced: bool = True) -> str:
    """`alias` (an app_events row) is processed, older than the cutoff, and not dead-lettered;
    with `unreferenced`, also no foreign key points at it."""
    lg = schema.achievement_event_ledger.c
    sql = (
        f"{info.older(f'{alias}.created_at', 'cutoff_events')} "
        f"AND EXISTS (SELECT 1 FROM {LEDGER} lg WHERE lg.{lg.event_id.name} = {alias}.id) "
        f"AND NOT {_unresolved_dead_letter(info, f'{alias}.id')}"
    )
    return f"{sql} AND NOT {_referenced(info, APP_EVENTS, alias)}" if unreferenced else sql


def _ledger_predicate(info: _Schema, *, dry_run: bool) -> str:
    """Ledger rows whose event is gone; in a dry run, also those whose event would be purged."""
    lg = schema.achievement_event_ledger.c
    if APP_EVENTS not in info.tables:
        return "TRUE"
    if dry_run:
        return (
            f"NOT EXISTS (SELECT 1 FROM {APP_EVENTS} ev WHERE ev.id = {LEDGER}.{lg.event_id.name} "
            f"AND NOT ({_event_purgeable(info, 'ev')}))"
        )
    return f"NOT EXISTS (SELECT 1 FROM {APP_EVENTS} ev WHERE ev.id = {LEDGER}.{lg.event_id.name})"


def _dead_letter_predicate() -> str:
    return f"{DEAD_LETTERS}.{schema.achievement_dead_letters.c.replayed_at.name} IS NOT NULL"


@dataclass(frozen=True)
class _IndexedTarget:
    """A table purged in timestamp order through its timestamp index. `extra` selects the rows
    the purge may delete; `kept` those it keeps because a foreign key points at them."""

    table: str
    ts: str
    extra: str = "TRUE"
    kept: str = "FALSE"


def _params(conn: Connection, info: _Schema, cutoff: datetime) -> dict[str, Any]:
    params = {"cutoff_events": _bind_ts(conn, info, APP_EVENTS, "created_at", cutoff)}
    if info.sqlite:
        params["cutoff_margin"] = (to_utc_naive(cutoff) + timedelta(days=2)).date().isoformat()
    return params


def _begin_batch(conn: Connection) -> None:
    if is_postgres(conn):
        conn.execute(sa.text(f"SET LOCAL lock_timeout = '{POSTGRES_LOCK_TIMEOUT}'"))


def _postgres_range_batch(
    conn: Connection, target: _IndexedTarget, params: dict[str, Any], low: Any,
    low_inclusive: bool,
) -> tuple[int, bool, Any, bool]:
    """One PostgreSQL batch: delete the next `n` rows in timestamp order as a timestamp RANGE.

    A probe reads the (n+1)-th candidate's timestamp `high` from the index (`OFFSET n LIMIT 1`),
    then `DELETE ... WHERE ts >= :low AND ts < :high AND ts < :cutoff` deletes at most `n` rows
    through the same index. Measured ~2-3x faster than selecting ctids and deleting those (one
    heap visit per row instead of two). Returns (rows, done, next low, next low inclusive).
    """
    ts = target.ts
    where = [f"{ts} < :cutoff", target.extra]
    if low is not None:
        where.append(f"{ts} {'>=' if low_inclusive else '>'} :low")
        params["low"] = low
    high = conn.execute(
        sa.text(f"SELECT {ts} FROM {target.table} WHERE {' AND '.join(where)} "
                f"ORDER BY {ts} OFFSET :n LIMIT 1"),
        params,
    ).scalar()
    if high is None:  # fewer than n + 1 candidates left: this batch takes them all
        delete_where, done, next_low, next_inclusive = where, True, low, low_inclusive
    elif low is not None and high == low:
        # More than n rows share one timestamp: take exactly that timestamp, then move past it.
        delete_where = [f"{ts} = :low", f"{ts} < :cutoff", target.extra]
        done, next_low, next_inclusive = False, low, False
    else:
        delete_where = [*where, f"{ts} < :high"]
        params["high"] = high
        done, next_low, next_inclusive = False, high, True
    deleted = conn.execute(
        sa.text(f"DELETE FROM {target.table} WHERE {' AND '.join(delete_where)}"), params
    ).rowcount
    return int(deleted), done, next_low, next_inclusive


def _purge_indexed(
    engine: Engine,
    info: _Schema,
    target: _IndexedTarget,
    cutoff: datetime,
    batch_size: int,
    stats: TableStats,
    on_batch: BatchHook | None,
) -> None:
    low: Any = None  # PostgreSQL keyset: where the next batch starts (a value of the column)
    low_inclusive = True
    done = False
    while not done:
        started = time.perf_counter()
        with engine.begin() as conn:
            _begin_batch(conn)
            params = _params(conn, info, cutoff)
            params["cutoff"] = _bind_ts(conn, info, target.table, target.ts, cutoff)
            params["n"] = batch_size
            if is_postgres(conn):
                deleted, done, low, low_inclusive = _postgres_range_batch(
                    conn, target, params, low, low_inclusive
                )
            else:
                # SQLite deletes rows outright (no dead index entries to skip), so each batch
                # simply takes the oldest n rowids again.
                deleted = int(conn.execute(
                    sa.text(
                        f"DELETE FROM {target.table} WHERE rowid IN (SELECT rowid FROM "
                        f"{target.table} WHERE {info.older(target.ts)} AND {target.extra} "
                        f"ORDER BY {target.ts} LIMIT :n)"
                    ),
                    params,
                ).rowcount)
                done = deleted < batch_size
        if deleted:
            stats.add_batch(deleted, time.perf_counter() - started)
            if on_batch is not None:
                on_batch(target.table, deleted)


def _purge_app_events(
    engine: Engine,
    info: _Schema,
    cutoff: datetime,
    batch_size: int,
    stats: TableStats,
    on_batch: BatchHook | None,
) -> None:
    lg = schema.achievement_event_ledger.c
    with engine.connect() as conn:
        lo, hi = conn.execute(
            sa.text(f"SELECT min({lg.event_id.name}), max({lg.event_id.name}) FROM {LEDGER}")
        ).one()
    for window_lo, window_hi in plan_id_windows(lo, hi, batch_size):
        started = time.perf_counter()
        with engine.begin() as conn:
            _begin_batch(conn)
            params = _params(conn, info, cutoff)
            params.update(lo=window_lo, hi=window_hi)
            deleted = int(
                conn.execute(
                    sa.text(
                        f"DELETE FROM {APP_EVENTS} WHERE id >= :lo AND id < :hi "
                        f"AND {_event_purgeable(info, APP_EVENTS)}"
                    ),
                    params,
                ).rowcount
            )
        if deleted:
            stats.add_batch(deleted, time.perf_counter() - started)
            if on_batch is not None:
                on_batch(APP_EVENTS, deleted)


def _count(engine: Engine, info: _Schema, table: str, where: str, cutoff: datetime,
           ts: str | None) -> int:
    with engine.connect() as conn:
        params = _params(conn, info, cutoff)
        if ts is not None:
            params["cutoff"] = _bind_ts(conn, info, table, ts, cutoff)
        return int(conn.execute(sa.text(f"SELECT count(*) FROM {table} WHERE {where}"),
                                params).scalar_one())


def _targets(info: _Schema, *, dry_run: bool) -> list[_IndexedTarget]:
    def target(table: str, ts: str, selected: str = "TRUE") -> _IndexedTarget:
        referenced = _referenced(info, table, table)
        return _IndexedTarget(table, ts, f"{selected} AND NOT {referenced}",
                              f"{selected} AND {referenced}")

    targets = [target(ACTIVITIES, "created_at")]
    if info.has_ledger:
        targets.append(target(LEDGER, schema.achievement_event_ledger.c.processed_at.name,
                              _ledger_predicate(info, dry_run=dry_run)))
    if info.has_dead_letters:
        targets.append(target(DEAD_LETTERS,
                              schema.achievement_dead_letters.c.dead_lettered_at.name,
                              _dead_letter_predicate()))
    return targets


def _count_kept(engine: Engine, info: _Schema, table: str,
                target: _IndexedTarget | None, cutoff: datetime) -> int:
    """Rows the purge would delete but keeps because a foreign key points at them."""
    if not info.references_into(table):
        return 0
    if table == APP_EVENTS:
        where = (f"{_event_purgeable(info, APP_EVENTS, unreferenced=False)} "
                 f"AND {_referenced(info, APP_EVENTS, APP_EVENTS)}")
        return _count(engine, info, table, where, cutoff, None)
    assert target is not None
    return _count(engine, info, table, f"{info.older(target.ts)} AND {target.kept}", cutoff,
                  target.ts)


def purge_expired_rows(
    engine: Engine,
    cutoff: datetime,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    dry_run: bool = False,
    on_batch: BatchHook | None = None,
) -> PurgeStats:
    """Delete (or, with `dry_run`, count) every row older than `cutoff` the purge may delete.

    `cutoff` must be whole seconds (use `compute_cutoff`). Tables are purged in dependency order:
    activities, app_events, then the ledger (its rows go only once their event is gone), then
    resolved dead letters. Missing optional tables are reported as skipped.
    """
    cutoff = to_utc_naive(cutoff)
    sqlite_cutoff_text(cutoff)  # rejects a cutoff with a fraction
    # The Dagster config bounds batch_size to BATCH_SIZE_MIN..MAX; tiny batches stay allowed
    # here so tests can exercise many batches on a few rows.
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    info = _inspect(engine)
    stats = PurgeStats(cutoff=cutoff, dry_run=dry_run,
                       references=[r.describe() for r in info.references])
    started = time.perf_counter()
    targets = {t.table: t for t in _targets(info, dry_run=dry_run)}
    for table in (ACTIVITIES, APP_EVENTS, LEDGER, DEAD_LETTERS):
        table_stats = stats.table(table)
        if table not in info.tables:
            table_stats.skipped_reason = "table does not exist"
            continue
        if table == APP_EVENTS and not info.has_ledger:
            table_stats.skipped_reason = f"no {LEDGER}: no event is known to be processed"
            continue
        if dry_run:
            t0 = time.perf_counter()
            if table == APP_EVENTS:
                where = _event_purgeable(info, APP_EVENTS)
                table_stats.rows = _count(engine, info, table, where, cutoff, None)
            else:
                target = targets[table]
                where = f"{info.older(target.ts)} AND {target.extra}"
                table_stats.rows = _count(engine, info, table, where, cutoff, target.ts)
            table_stats.seconds = time.perf_counter() - t0
        elif table == APP_EVENTS:
            _purge_app_events(engine, info, cutoff, batch_size, table_stats, on_batch)
        else:
            _purge_indexed(engine, info, targets[table], cutoff, batch_size, table_stats,
                           on_batch)
        table_stats.kept_referenced = _count_kept(engine, info, table, targets.get(table),
                                                  cutoff)
    stats.seconds = time.perf_counter() - started
    return stats


# --- Dagster layer ------------------------------------------------------------------------


class RetentionPurgeConfig(FailFastConfig):
    """Settings of one purge run. Out-of-range values fail the run before any data is read."""

    retention_days: int = Field(
        default=DEFAULT_RETENTION_DAYS,
        description=(
            f"Keep this many days ({RETENTION_DAYS_MIN}..{RETENTION_DAYS_MAX}); rows strictly "
            "older than now minus this window (UTC, whole seconds) are purged."
        ),
    )
    batch_size: int = Field(
        default=DEFAULT_BATCH_SIZE,
        description=f"Rows per delete transaction ({BATCH_SIZE_MIN}..{BATCH_SIZE_MAX}).",
    )
    dry_run: bool = Field(
        default=False, description="Only count what would be deleted; delete nothing."
    )

    @field_validator("retention_days")
    @classmethod
    def _check_retention_days(cls, value: int) -> int:
        return validate_retention_days(value)

    @field_validator("batch_size")
    @classmethod
    def _check_batch_size(cls, value: int) -> int:
        return validate_batch_size(value)


@dataclass(frozen=True)
class PurgePlan:
    """The run's fixed decisions, handed from the planning op to the purge op (and its retries)."""

    cutoff: datetime
    retention_days: int
    batch_size: int
    dry_run: bool


@dg.op(
    description="Validate the purge settings and fix the run's one cutoff (UTC, whole seconds). "
    "Touches no data.",
)
def plan_retention_purge(
    context: dg.OpExecutionContext, config: RetentionPurgeConfig
) -> PurgePlan:
    """Computed once per run: a retry of the purge op reuses this output, so the cutoff of a
    run never moves."""
    plan = PurgePlan(
        cutoff=compute_cutoff(utc_now(), config.retention_days),
        retention_days=config.retention_days,
        batch_size=config.batch_size,
        dry_run=config.dry_run,
    )
    context.add_output_metadata(
        {
            "cutoff_utc": plan.cutoff.isoformat(sep=" "),
            "retention_days": plan.retention_days,
            "batch_size": plan.batch_size,
            "dry_run": plan.dry_run,
        }
    )
    context.log.info(
        f"retention purge: cutoff {plan.cutoff.isoformat(sep=' ')} UTC "
        f"({plan.retention_days} days){' [dry run]' if plan.dry_run else ''}"
    )
    return plan


# App tables that get an observation of what a failed attempt had already deleted, so the retry
# can count it. (The pipeline's bookkeeping tables are no assets; their batches are small.)
OBSERVED_TABLES = (ACTIVITIES, APP_EVENTS)
FAILED_ATTEMPT_KEY = "rows_deleted_by_failed_attempt"


def record_failed_attempt(context: dg.OpExecutionContext, committed: Counter[str]) -> None:
    """Log, per app table, the rows this attempt's committed batches deleted before it failed."""
    for table in OBSERVED_TABLES:
        if committed[table]:
            context.log_event(dg.AssetObservation(
                asset_key=app_table_key(table),
                description=f"retention purge attempt {context.retry_number + 1} failed after "
                "deleting these rows (committed batches stay deleted)",
                metadata={FAILED_ATTEMPT_KEY: committed[table],
                          "attempt": context.retry_number + 1},
            ))


def rows_deleted_by_earlier_attempts(context: dg.OpExecutionContext) -> Counter[str]:
    """What the failed attempts of this run deleted, read back from their observations."""
    earlier: Counter[str] = Counter()
    if context.retry_number == 0:
        return earlier
    for table in OBSERVED_TABLES:
        records = context.instance.fetch_observations(
            dg.AssetRecordsFilter(asset_key=app_table_key(table)), limit=100, ascending=False,
        ).records
        for record in records:
            observation = record.asset_observation
            if record.run_id == context.run_id and observation is not None:
                value = observation.metadata.get(FAILED_ATTEMPT_KEY)
                if value is not None:
                    earlier[table] += int(value.value)
    return earlier


def purge_metadata(stats: PurgeStats, earlier: Counter[str] | None = None) -> dict[str, Any]:
    """The run's figures as Dagster metadata (counts and timings only; no row contents).

    `rows_deleted.*` count every attempt of the run; `earlier` is what failed attempts deleted
    (timings are this attempt's)."""
    earlier = earlier or Counter()
    prefix = "would_delete" if stats.dry_run else "deleted"
    metadata: dict[str, Any] = {
        "cutoff_utc": stats.cutoff.isoformat(sep=" "),
        "dry_run": stats.dry_run,
        f"rows_{prefix}_total": stats.total_rows + sum(earlier.values()),
        "batches": stats.total_batches,
        "seconds": dg.MetadataValue.float(round(stats.seconds, 3)),
        "rows_per_second": dg.MetadataValue.float(round(stats.rows_per_second, 1)),
        "longest_batch_seconds": dg.MetadataValue.float(round(stats.longest_batch_seconds, 4)),
        "summary": dg.MetadataValue.md(stats.summary_markdown()),
    }
    for table, rows in stats.rows_by_table().items():
        metadata[f"rows_{prefix}.{table}"] = rows + earlier[table]
    for table, rows in earlier.items():
        metadata[f"rows_deleted_by_failed_attempts.{table}"] = rows
    for table, kept in stats.kept_by_table().items():
        metadata[f"rows_kept_referenced.{table}"] = kept
    metadata["foreign_keys_into_purged_tables"] = dg.MetadataValue.md(
        "\n".join(f"- `{r}`" for r in stats.references) or "none")
    return metadata


@dg.op(
    description="Delete expired activities, processed app_events and the pipeline's old "
    "bookkeeping rows in short batches (or count them in a dry run).",
    retry_policy=transient_retry_policy(max_retries=3, delay=10.0),  # 10 + 30 + 70 s
)
@transient_only
def purge_expired_data(
    context: dg.OpExecutionContext, app_db: AppDatabase, plan: PurgePlan
) -> dict[str, int]:
    """Retrying is safe: every batch commits on its own and a retry deletes what is left below
    the same cutoff. Returns rows deleted (or that would be deleted) per table, by every attempt
    of the run: a failed attempt records what it deleted (`record_failed_attempt`)."""
    # Defence in depth: a plan whose window is out of range never reaches a DELETE.
    validate_retention_days(plan.retention_days)

    earlier = rows_deleted_by_earlier_attempts(context)
    committed: Counter[str] = Counter()

    def log_progress(table: str, rows: int) -> None:
        if not plan.dry_run:
            committed[table] += rows
        context.log.debug(f"{table}: batch of {rows} rows committed")

    try:
        try:
            stats = purge_expired_rows(
                app_db.get_engine(), plan.cutoff, batch_size=plan.batch_size,
                dry_run=plan.dry_run, on_batch=log_progress,
            )
        except Exception:
            record_failed_attempt(context, committed)
            raise
    except RetentionPurgeError as exc:
        raise dg.Failure(description=str(exc), allow_retries=False) from None
    except sa.exc.IntegrityError as exc:
        # A constraint the reflection could not see (e.g. a foreign key from another
        # schema): the same batch would fail again, so this is permanent. Earlier batches
        # stay committed.
        raise dg.Failure(
            description="retention purge violated a database constraint; nothing of the "
            f"failing batch was deleted. Fix the reference or the purge rule: {exc.orig}",
            allow_retries=False,
        ) from None
    metadata = purge_metadata(stats, earlier)
    context.add_output_metadata({**app_db.run_metadata(), **metadata})
    verb = "would delete" if plan.dry_run else "deleted"
    for table in (ACTIVITIES, APP_EVENTS):
        table_stats = stats.tables.get(table)
        if table_stats is None or table_stats.skipped_reason:
            continue
        context.log_event(
            dg.AssetObservation(
                asset_key=app_table_key(table),
                description=f"retention purge {verb} rows older than the cutoff",
                metadata={
                    "cutoff_utc": stats.cutoff.isoformat(sep=" "),
                    "dry_run": plan.dry_run,
                    f"rows_{verb.replace(' ', '_')}": table_stats.rows,
                    "batches": table_stats.batches,
                    "longest_batch_seconds": dg.MetadataValue.float(
                        round(table_stats.longest_batch_seconds, 4)
                    ),
                },
            )
        )
    if earlier:
        context.log.info(f"earlier attempts of this run deleted {sum(earlier.values())} rows: "
                         + ", ".join(f"{t}={n}" for t, n in earlier.items()))
    context.log.info(
        f"retention purge {verb} {stats.total_rows} rows in {stats.total_batches} batches, "
        f"{stats.seconds:.2f} s (longest batch {stats.longest_batch_seconds:.3f} s): "
        + ", ".join(f"{t}={n}" for t, n in stats.rows_by_table().items())
    )
    return {table: rows + earlier[table] for table, rows in stats.rows_by_table().items()}


@dg.job(
    # RETENTION_PURGE_TAGS carry `recs/app_db_heavy`, which the instance limits to one run at a
    # time (dagster.yaml): the purge never overlaps the nightly refresh (docs/retention.md).
    tags=RETENTION_PURGE_TAGS,
    executor_def=dg.in_process_executor,
    description="Weekly retention purge: delete activities, processed app_events and the "
    "pipeline's old bookkeeping rows older than retention_days (default 90), in short batches. "
    "Config: retention_days, batch_size, dry_run (ops.plan_retention_purge.config).",
)
def retention_purge_job() -> None:
    purge_expired_data(plan_retention_purge())
