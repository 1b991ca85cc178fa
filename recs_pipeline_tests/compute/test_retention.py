"""Retention purge, pure part: window validation, the cutoff, SQLite text ordering, planning."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from recs_pipeline.compute.retention import (
    PurgeStats,
    RetentionConfigError,
    compute_cutoff,
    plan_id_windows,
    sqlite_cutoff_text,
    validate_batch_size,
    validate_retention_days,
)


@pytest.mark.parametrize("days", [0, -1, 3651, 10**6])
def test_out_of_range_retention_days_is_rejected(days: int) -> None:
    with pytest.raises(RetentionConfigError, match="between 1 and 3650"):
        validate_retention_days(days)
    with pytest.raises(RetentionConfigError):
        compute_cutoff(datetime(2024, 6, 1), days)


@pytest.mark.parametrize("days", [True, 1.5, "90", None])
def test_non_integer_retention_days_is_rejected(days: object) -> None:
    with pytest.raises(RetentionConfigError, match="integer"):
        validate_retention_days(days)  # type: ignore[arg-type]


@pytest.mark.parametrize("days", [1, 90, 3650])
def test_in_range_retention_days_pass(days: int) -> None:
    assert validate_retention_days(days) == days


@pytest.mark.parametrize("size", [0, 99, 50_001])
def test_batch_size_bounds(size: int) -> None:
    with pytest.raises(RetentionConfigError, match="batch_size"):
        validate_batch_size(size)
    assert validate_batch_size(100) == 100
    assert validate_batch_size(50_000) == 50_000


def test_cutoff_is_now_minus_days_truncated_to_whole_seconds() -> None:
    now = datetime(2024, 6, 1, 12, 30, 45, 999_999)
    assert compute_cutoff(now, 90) == datetime(2024, 3, 3, 12, 30, 45)
    # Truncated, never rounded up: the window is never shorter than asked.
    assert compute_cutoff(now, 1) <= now - timedelta(days=1)


def test_cutoff_of_an_aware_now_is_naive_utc() -> None:
    berlin_summer = timezone(timedelta(hours=2))
    now = datetime(2024, 6, 1, 14, 0, 0, 500, tzinfo=berlin_summer)
    cutoff = compute_cutoff(now, 10)
    assert cutoff.tzinfo is None
    assert cutoff == datetime(2024, 5, 22, 12, 0, 0)
    assert compute_cutoff(datetime(2024, 6, 1, 12, tzinfo=UTC), 10) == datetime(2024, 5, 22, 12)


def test_sqlite_cutoff_text_orders_both_stored_forms_correctly() -> None:
    cutoff = datetime(2024, 3, 3, 12, 30, 45)
    text = sqlite_cutoff_text(cutoff)
    assert text == "2024-03-03 12:30:45"
    # SQLite compares TEXT byte by byte: this is exactly what `created_at < :cutoff` does.
    expired = ["2024-03-03 12:30:44", "2024-03-03 12:30:44.999999", "2024-03-02 23:59:59.000000"]
    kept = ["2024-03-03 12:30:45", "2024-03-03 12:30:45.000000", "2024-03-03 12:30:45.000001",
            "2024-03-03 12:30:46", "2024-03-04 00:00:00.5"]
    assert all(value < text for value in expired)
    assert not any(value < text for value in kept)


def test_sqlite_cutoff_text_refuses_a_fractional_cutoff() -> None:
    with pytest.raises(ValueError, match="whole seconds"):
        sqlite_cutoff_text(datetime(2024, 1, 1, 0, 0, 0, 1))


def test_id_windows_cover_the_range_exactly_once() -> None:
    assert list(plan_id_windows(1, 10, 4)) == [(1, 5), (5, 9), (9, 11)]
    assert list(plan_id_windows(7, 7, 100)) == [(7, 8)]
    assert list(plan_id_windows(None, None, 10)) == []
    assert list(plan_id_windows(5, 4, 10)) == []
    covered = [i for lo, hi in plan_id_windows(3, 1002, 7) for i in range(lo, hi)]
    assert covered == list(range(3, 1003))


def test_purge_stats_accounting() -> None:
    stats = PurgeStats(cutoff=datetime(2024, 1, 1))
    stats.table("activities").add_batch(100, 0.5)
    stats.table("activities").add_batch(40, 0.25)
    stats.table("app_events").add_batch(3, 0.75)
    stats.table("app_events").kept_referenced = 5
    stats.seconds = 2.0
    assert stats.total_rows == 143
    assert stats.total_batches == 3
    assert stats.longest_batch_seconds == 0.75
    assert stats.rows_per_second == 71.5
    assert stats.rows_by_table() == {"activities": 140, "app_events": 3}
    assert stats.kept_by_table() == {"activities": 0, "app_events": 5}
    assert "| activities | 140 | 0 | 2 |" in stats.summary_markdown()
    assert "| app_events | 3 | 5 | 1 |" in stats.summary_markdown()
