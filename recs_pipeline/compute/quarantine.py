"""Row-level quarantine: app rows that cannot be parsed or break the contract are set aside.

A quarantined row is skipped (or, where skipping it would do harm, read conservatively: the
entry's `effect` says which), counted by (table, column, reason), and named by a few example
primary keys, never by its content. The run goes on for everyone else; the share of quarantined
rows per table is what the `input_quarantine` asset checks judge.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from recs_pipeline.compute.timestamps import parse_utc_naive

EXAMPLE_IDS = 5

# Reasons (stable strings: they appear in run metadata, logs and docs/data-contract.md).
UNPARSABLE_TIMESTAMP = "unparsable timestamp"
MISSING_VALUE = "missing required value"
OUT_OF_RANGE = "value outside the contract's range"
UNKNOWN_STATUS = "status not in the contract"

SKIPPED = "row skipped"


@dataclass(frozen=True)
class QuarantineEntry:
    table: str
    column: str
    reason: str
    rows: int
    example_ids: tuple[int, ...]
    effect: str = SKIPPED


@dataclass
class Quarantine:
    """Quarantined rows by (table, column, reason), and the rows examined per table."""

    entries: dict[tuple[str, str, str], QuarantineEntry] = field(default_factory=dict)
    examined: dict[str, int] = field(default_factory=dict)

    def add(self, table: str, column: str, reason: str, ids: Iterable[object], *,
            rows: int | None = None, effect: str = SKIPPED) -> None:
        """Record rows (their primary keys `ids`; `rows` when only a sample of ids is given)."""
        id_list = [int(i) for i in ids if i is not None and not pd.isna(i)]
        count = len(id_list) if rows is None else int(rows)
        if count == 0:
            return
        key = (table, column, reason)
        old = self.entries.get(key)
        examples = tuple(sorted(set((old.example_ids if old else ()) + tuple(id_list))))
        self.entries[key] = QuarantineEntry(
            table, column, reason, count + (old.rows if old else 0), examples[:EXAMPLE_IDS],
            effect)

    def saw(self, table: str, rows: int) -> None:
        """`rows` rows of `table` were examined (the denominator of the table's share)."""
        self.examined[table] = max(self.examined.get(table, 0), int(rows))

    @property
    def total(self) -> int:
        return sum(e.rows for e in self.entries.values())

    def rows_by_table(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for e in self.entries.values():
            out[e.table] = out.get(e.table, 0) + e.rows
        return out

    def shares(self) -> dict[str, float]:
        """Quarantined rows / examined rows, per table with quarantined rows."""
        return {t: n / max(self.examined.get(t, n), n, 1) for t, n in self.rows_by_table().items()}

    def max_share(self) -> float:
        return max(self.shares().values(), default=0.0)

    def records(self) -> list[dict[str, object]]:
        """One dict per entry, ordered by table, column, reason (for metadata and logs)."""
        return [
            {"table": e.table, "column": e.column, "reason": e.reason, "rows": e.rows,
             "effect": e.effect, "example_ids": ", ".join(str(i) for i in e.example_ids)}
            for _, e in sorted(self.entries.items())
        ]

    def summary_line(self) -> str:
        if not self.entries:
            return "no quarantined input rows"
        parts = [f"{e.table}.{e.column} {e.reason}: {e.rows} (e.g. id {e.example_ids[0]})"
                 if e.example_ids else f"{e.table}.{e.column} {e.reason}: {e.rows}"
                 for _, e in sorted(self.entries.items())]
        return "quarantined input rows: " + "; ".join(parts)


def parse_timestamp_columns(
    frame: pd.DataFrame, columns: Sequence[str], *, table: str, id_column: str,
    quarantine: Quarantine, required: bool = True,
) -> pd.DataFrame:
    """Parse `columns` per value to naive UTC; rows with a present but unparsable value are
    quarantined and (when `required`) dropped. A NULL in a required column is quarantined too."""
    out = frame.copy()
    drop = np.zeros(len(out), dtype=bool)
    for column in columns:
        parsed, bad = parse_utc_naive(out[column])
        out[column] = parsed
        quarantine.add(table, column, UNPARSABLE_TIMESTAMP, out.loc[bad, id_column])
        if required:
            missing = parsed.isna().to_numpy() & ~bad
            quarantine.add(table, column, MISSING_VALUE, out.loc[missing, id_column])
            drop |= bad | missing
    return out.loc[~drop].reset_index(drop=True) if drop.any() else out


def drop_out_of_range(
    frame: pd.DataFrame, column: str, low: float | None, high: float | None, *, table: str,
    id_column: str, quarantine: Quarantine, required: bool = True,
) -> pd.DataFrame:
    """Drop (and quarantine) rows whose numeric `column` lies outside [low, high] or, when
    `required`, is NULL or not a number."""
    values = pd.to_numeric(frame[column], errors="coerce")
    missing = values.isna() & (frame[column].notna() | required)
    outside = pd.Series(False, index=frame.index)
    if low is not None:
        outside |= values < low
    if high is not None:
        outside |= values > high
    quarantine.add(table, column, OUT_OF_RANGE, frame.loc[outside, id_column])
    quarantine.add(table, column, MISSING_VALUE, frame.loc[missing, id_column])
    bad = (outside | missing).to_numpy()
    return frame.loc[~bad].reset_index(drop=True) if bad.any() else frame
