"""The purge compares instants, never text: every accepted timestamp form at the cutoff boundary.

SQLite gets the forms as text, as an app may write them (`T`, fractions, `Z`, offsets);
PostgreSQL gets the same instants as aware datetimes (its columns are typed, the session is UTC).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from recs_pipeline import schema
from recs_pipeline.defs.retention.job import purge_expired_rows

CUTOFF = datetime(2024, 3, 3, 12, 0, 0)
S = timedelta(seconds=1)
EST, CEST = timezone(timedelta(hours=-5)), timezone(timedelta(hours=2))

# id -> (SQLite text, the instant, purged?)
ROWS: dict[int, tuple[str, datetime, bool]] = {
    1: ("2024-03-03 11:59:59", CUTOFF - S, True),
    2: ("2024-03-03 12:00:00", CUTOFF, False),
    3: ("2024-03-03 11:59:59.999999", CUTOFF - timedelta(microseconds=1), True),
    4: ("2024-03-03T11:59:59Z", CUTOFF - S, True),
    5: ("2024-03-03T12:00:00Z", CUTOFF, False),
    6: ("2024-03-03T11:59:59.500+00:00", CUTOFF - S / 2, True),
    # -05:00: the text sorts before the cutoff, the instant is at or after it (must stay)
    7: ("2024-03-03 07:00:00-05:00", CUTOFF, False),
    8: ("2024-03-03T08:00:00-05:00", CUTOFF + timedelta(hours=1), False),
    9: ("2024-03-03 06:59:59-05:00", CUTOFF - S, True),
    # +02:00: the text sorts after the cutoff, the instant is before it (must go)
    10: ("2024-03-03T13:59:59+02:00", CUTOFF - S, True),
    11: ("2024-03-03T14:00:00+02:00", CUTOFF, False),
    12: ("2024-03-01 12:00:00", CUTOFF - timedelta(days=2), True),
    13: ("2024-03-05T00:00:00Z", CUTOFF + timedelta(days=2), False),
}


def _instant(value: datetime, row_id: int) -> datetime:
    zone = EST if row_id in (7, 8, 9) else CEST if row_id in (10, 11) else UTC
    return value.replace(tzinfo=UTC).astimezone(zone)


def test_purge_cutoff_is_exact_for_every_timestamp_form(engine: Engine, backend: str) -> None:
    with engine.begin() as conn:
        for row_id, (text, instant, _) in ROWS.items():
            if backend == "sqlite":
                conn.exec_driver_sql(
                    "INSERT INTO activities (id, user_id, activity_type, created_at) "
                    "VALUES (?, 1, 'login', ?)", (row_id, text))
            else:
                conn.execute(sa.insert(schema.activities).values(
                    id=row_id, user_id=1, activity_type="login",
                    created_at=_instant(instant, row_id)))
        if backend == "sqlite":  # not a timestamp: never purged, whatever it sorts like
            conn.exec_driver_sql("INSERT INTO activities (id, user_id, activity_type, created_at)"
                                 " VALUES (99, 1, 'login', '0000 garbage')")
    stats = purge_expired_rows(engine, CUTOFF, batch_size=2)
    with engine.connect() as conn:
        left = set(conn.execute(sa.select(schema.activities.c.id)).scalars())
    expected = {i for i, (_, _, purged) in ROWS.items() if not purged}
    assert left == expected | ({99} if backend == "sqlite" else set())
    assert stats.rows_by_table()["activities"] == sum(p for _, _, p in ROWS.values())
