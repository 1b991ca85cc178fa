"""Retention purge: the pure part (no database, no Dagster).

* `validate_retention_days` / `validate_batch_size`: the guard rails. A bad window is an error
  raised before anything touches data, never a mass delete.
* `compute_cutoff`: the one cutoff of a run, `now - retention_days`, naive UTC truncated to whole
  seconds. Rows with a timestamp strictly before it are expired; at or after it, never touched.
* `sqlite_cutoff_text`: the cutoff as SQLite compares it. SQLite stores timestamps as ISO text
  (`YYYY-MM-DD HH:MM:SS` with or without `.ffffff`), compared byte by byte. A whole-second cutoff
  rendered WITHOUT a fraction orders correctly against both forms: `12:00:00.000001` and
  `12:00:00` are both >= `12:00:00` (the longer string with an equal prefix sorts after it), and
  `11:59:59.999999` is < it.
* `plan_id_windows`: primary-key windows for tables without a timestamp index (`app_events`).
* `PurgeStats` / `TableStats`: per-table and per-batch accounting for the run's metadata.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from recs_pipeline.compute.timestamps import to_utc_naive

RETENTION_DAYS_MIN = 1
RETENTION_DAYS_MAX = 3650
DEFAULT_RETENTION_DAYS = 90
BATCH_SIZE_MIN = 100
BATCH_SIZE_MAX = 50_000
DEFAULT_BATCH_SIZE = 20_000

SQLITE_CUTOFF_FORMAT = "%Y-%m-%d %H:%M:%S"


class RetentionConfigError(ValueError):
    """A retention setting is out of range; raised before any row is read or deleted."""


def validate_retention_days(days: int) -> int:
    """Return `days` if it is a sane retention window, else raise `RetentionConfigError`."""
    if isinstance(days, bool) or not isinstance(days, int):
        raise RetentionConfigError(f"retention_days must be an integer, got {days!r}")
    if not RETENTION_DAYS_MIN <= days <= RETENTION_DAYS_MAX:
        raise RetentionConfigError(
            f"retention_days must be between {RETENTION_DAYS_MIN} and {RETENTION_DAYS_MAX} "
            f"days, got {days}; refusing to purge (nothing was deleted)"
        )
    return days


def validate_batch_size(batch_size: int) -> int:
    """Return `batch_size` if it is within the bounds that keep each transaction short."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int):
        raise RetentionConfigError(f"batch_size must be an integer, got {batch_size!r}")
    if not BATCH_SIZE_MIN <= batch_size <= BATCH_SIZE_MAX:
        raise RetentionConfigError(
            f"batch_size must be between {BATCH_SIZE_MIN} and {BATCH_SIZE_MAX} rows, "
            f"got {batch_size}"
        )
    return batch_size


def compute_cutoff(now: datetime, retention_days: int) -> datetime:
    """`now - retention_days` as naive UTC, truncated to whole seconds.

    Truncating `now` (not rounding) keeps the cutoff at or before the exact instant, so the window
    is never shorter than asked.
    """
    validate_retention_days(retention_days)
    now_utc = to_utc_naive(now).replace(microsecond=0)
    return now_utc - timedelta(days=retention_days)


def sqlite_cutoff_text(cutoff: datetime) -> str:
    """The cutoff as SQLite text, `YYYY-MM-DD HH:MM:SS` (whole seconds, no fraction)."""
    cutoff = to_utc_naive(cutoff)
    if cutoff.microsecond:
        raise ValueError(f"the cutoff must be whole seconds, got {cutoff.isoformat()}")
    return cutoff.strftime(SQLITE_CUTOFF_FORMAT)


def plan_id_windows(min_id: int | None, max_id: int | None, size: int) -> Iterator[
    tuple[int, int]
]:
    """Half-open id windows `[lo, hi)` of `size` ids covering `min_id..max_id` inclusive.

    Nothing when either bound is None (an empty table or no candidate rows).
    """
    if min_id is None or max_id is None or max_id < min_id:
        return
    if size <= 0:
        raise ValueError(f"window size must be positive, got {size}")
    lo = min_id
    while lo <= max_id:
        hi = min(lo + size, max_id + 1)
        yield lo, hi
        lo = hi


@dataclass
class TableStats:
    """What the purge did (or, in a dry run, would do) to one table."""

    table: str
    rows: int = 0
    batches: int = 0
    seconds: float = 0.0
    longest_batch_seconds: float = 0.0
    skipped_reason: str | None = None
    kept_referenced: int = 0  # expired rows kept because a foreign key still points at them

    def add_batch(self, rows: int, seconds: float) -> None:
        self.rows += rows
        self.batches += 1
        self.seconds += seconds
        self.longest_batch_seconds = max(self.longest_batch_seconds, seconds)


@dataclass
class PurgeStats:
    """Accounting for one purge run across tables, in the order they were purged."""

    cutoff: datetime
    dry_run: bool = False
    tables: dict[str, TableStats] = field(default_factory=dict)
    seconds: float = 0.0
    references: list[str] = field(default_factory=list)  # foreign keys into the purged tables

    def table(self, name: str) -> TableStats:
        if name not in self.tables:
            self.tables[name] = TableStats(name)
        return self.tables[name]

    @property
    def total_rows(self) -> int:
        return sum(t.rows for t in self.tables.values())

    @property
    def total_batches(self) -> int:
        return sum(t.batches for t in self.tables.values())

    @property
    def longest_batch_seconds(self) -> float:
        return max((t.longest_batch_seconds for t in self.tables.values()), default=0.0)

    @property
    def rows_per_second(self) -> float:
        return self.total_rows / self.seconds if self.seconds > 0 else 0.0

    def rows_by_table(self) -> dict[str, int]:
        return {name: t.rows for name, t in self.tables.items()}

    def kept_by_table(self) -> dict[str, int]:
        return {name: t.kept_referenced for name, t in self.tables.items()}

    def summary_markdown(self) -> str:
        verb = "would delete" if self.dry_run else "deleted"
        lines = [
            f"| table | rows {verb} | kept: still referenced | batches | seconds | "
            "longest batch s | note |",
            "|---|---:|---:|---:|---:|---:|---|",
        ]
        for t in self.tables.values():
            lines.append(
                f"| {t.table} | {t.rows} | {t.kept_referenced} | {t.batches} | "
                f"{t.seconds:.3f} | {t.longest_batch_seconds:.3f} | {t.skipped_reason or ''} |"
            )
        return "\n".join(lines)
