"""Timestamps as the pure functions see them: naive UTC.

The contract stores UTC; SQLite gives ISO text (space or `T`, optional fraction, `Z` or an offset),
PostgreSQL gives naive `timestamp` or aware `timestamptz` values. `to_utc_naive` turns any of them,
one value or a whole column, into naive UTC.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import overload

import pandas as pd


def utc_now() -> datetime:
    """Current UTC time as a naive datetime (the contract stores naive UTC)."""
    return datetime.now(UTC).replace(tzinfo=None)


@overload
def to_utc_naive(values: datetime | str) -> datetime: ...
@overload
def to_utc_naive(values: pd.Series | Sequence[object]) -> pd.Series: ...
def to_utc_naive(values: datetime | str | pd.Series | Sequence[object]) -> datetime | pd.Series:
    """Naive UTC: aware values are converted, naive ones are taken as UTC, ISO text is parsed.

    One value gives a `datetime`; a column (Series or sequence) gives `datetime64[us]`.
    """
    if isinstance(values, datetime):
        if values.tzinfo is not None:
            return values.astimezone(UTC).replace(tzinfo=None)
        return values
    if isinstance(values, str):
        return to_utc_naive([values]).iloc[0].to_pydatetime()
    series = values if isinstance(values, pd.Series) else pd.Series(values, dtype=object)
    converted = pd.to_datetime(series, utc=True, format="ISO8601")
    return converted.dt.tz_localize(None).astype("datetime64[us]")
