"""Timestamps as the pure functions see them: naive UTC.

The contract stores UTC; SQLite gives ISO text (space or `T`, optional fraction, `Z` or an offset),
PostgreSQL gives naive `timestamp` or aware `timestamptz` values. `to_utc_naive` turns any of them,
one value or a whole column, into naive UTC; `parse_utc_naive` does the same per value and gives
NaT (plus a mask) where a value is not an accepted timestamp, so one bad row can be quarantined.

Accepted text (`ISO_TIMESTAMP`, the same forms SQLite's date functions accept, so SQL and pandas
agree): `YYYY-MM-DD`, or `YYYY-MM-DD HH:MM[:SS[.f...]]` with a space or `T`, optionally followed
by `Z` or `+HH:MM` / `-HH:MM`. Naive values are UTC.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import overload

import numpy as np
import pandas as pd

ISO_TIMESTAMP = re.compile(
    r"\d{4}-\d{2}-\d{2}(?:[ T]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:\d{2})?)?"
)


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


def parse_utc_naive(values: pd.Series) -> tuple[pd.Series, np.ndarray]:
    """Per value: naive UTC `datetime64[us]`, and a mask of the values that are present but not
    an accepted timestamp (`ISO_TIMESTAMP` text, a datetime). NULLs stay NaT and are not bad."""
    if pd.api.types.is_datetime64_any_dtype(values):
        return to_utc_naive(values), np.zeros(len(values), dtype=bool)
    present = values.notna().to_numpy()
    is_text = np.fromiter((isinstance(v, str) for v in values), dtype=bool, count=len(values))
    well_formed = np.fromiter(
        (isinstance(v, str) and ISO_TIMESTAMP.fullmatch(v) is not None for v in values),
        dtype=bool, count=len(values))
    # Non-text values (driver datetimes, pandas Timestamps) are kept; text must be well-formed.
    candidate = values.where(~is_text | well_formed, None)
    converted = pd.to_datetime(candidate, utc=True, format="ISO8601", errors="coerce")
    parsed = converted.dt.tz_localize(None).astype("datetime64[us]")
    return parsed, present & parsed.isna().to_numpy()
