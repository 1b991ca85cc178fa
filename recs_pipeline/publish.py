"""Publishing recommendations atomically: stage, check, swap; or replace one user's rows.

* `stage` writes a kind's rows into `<table>__staging` with `bulk_insert` (COPY on PostgreSQL);
  on PostgreSQL the keys and index are built after the load (faster than maintaining them row by
  row).
* `staged_summary` computes, with SQL on the staged table, what the blocking checks need.
* `swap` replaces the published tables by the staged ones in ONE transaction:
  - PostgreSQL: `DROP` the published table, `RENAME` staging to it and rename its primary key,
    unique constraint and index to the published names. DDL is transactional; readers wait for
    the commit on the table lock and then read the new table, so they never see it empty,
    partial or mixed, and a failure rolls everything back.
  - SQLite: `DELETE` + `INSERT ... SELECT` from staging in one transaction. Readers (WAL mode)
    keep reading the old snapshot until the commit. SQLite cannot rename indexes or
    constraints, so copying keeps the published table's exact DDL.
* `replace_user_rows`: the one-user refresh; that user's rows are deleted and re-inserted in one
  transaction.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from recs_pipeline import schema
from recs_pipeline.bootstrap import ensure_pipeline_tables
from recs_pipeline.db import bulk_insert, is_postgres
from recs_pipeline.recommendation_data import read_int_frame


@dataclass(frozen=True)
class RecommendationKind:
    name: str  # "tournaments" / "teams"
    table: sa.Table
    item_column: str

    @property
    def staging_name(self) -> str:
        return f"{self.table.name}__staging"


TOURNAMENTS = RecommendationKind("tournaments", schema.tournament_recommendations, "tournament_id")
TEAMS = RecommendationKind("teams", schema.team_recommendations, "team_id")
KINDS: tuple[RecommendationKind, ...] = (TOURNAMENTS, TEAMS)


def _staging_table(kind: RecommendationKind) -> sa.Table:
    return schema.recommendation_table(kind.staging_name, kind.item_column, sa.MetaData())


def _names(table_name: str, item_column: str) -> dict[str, str]:
    return {
        "pkey": f"{table_name}_pkey",
        "unique": f"uq_{table_name}_user_{item_column}",
        "index": f"ix_{table_name}_user_id",
    }


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def stage(engine: Engine, kind: RecommendationKind, frame: pd.DataFrame) -> int:
    """(Re)create the staging table and load `frame` into it; committed on return."""
    ensure_pipeline_tables(engine)
    columns = [c.name for c in kind.table.columns]
    frame = frame[columns]
    staging = _staging_table(kind)
    with engine.begin() as conn:
        conn.execute(sa.text(f"DROP TABLE IF EXISTS {_q(kind.staging_name)}"))
        if is_postgres(conn):
            # Bare table first (same columns, NOT NULLs), keys after the COPY.
            conn.execute(sa.text(
                f"CREATE TABLE {_q(kind.staging_name)} "
                f"(LIKE {_q(kind.table.name)} INCLUDING DEFAULTS)"
            ))
            count = bulk_insert(conn, kind.staging_name, frame)
            names = _names(kind.staging_name, kind.item_column)
            conn.execute(sa.text(
                f"ALTER TABLE {_q(kind.staging_name)} "
                f"ADD CONSTRAINT {_q(names['pkey'])} PRIMARY KEY (user_id, rank), "
                f"ADD CONSTRAINT {_q(names['unique'])} UNIQUE (user_id, {_q(kind.item_column)})"
            ))
            conn.execute(sa.text(
                f"CREATE INDEX {_q(names['index'])} ON {_q(kind.staging_name)} (user_id)"
            ))
            conn.execute(sa.text(f"ANALYZE {_q(kind.staging_name)}"))
        else:
            staging.create(conn)
            count = bulk_insert(conn, kind.staging_name, frame)
    return count


def staged_summary(conn: Connection, kind: RecommendationKind, top_k: int) -> dict[str, int]:
    """Set-based facts about the staged rows, for the blocking checks."""
    s = _staging_table(kind)
    item = s.c[kind.item_column]
    per_user = sa.select(
        s.c.user_id,
        sa.func.count().label("n"),
        sa.func.min(s.c.rank).label("lo"),
        sa.func.max(s.c.rank).label("hi"),
    ).group_by(s.c.user_id).subquery()
    users_row = conn.execute(sa.select(
        sa.func.count(),
        sa.func.coalesce(sa.func.sum(sa.case(
            ((per_user.c.lo != 1) | (per_user.c.hi != per_user.c.n), 1), else_=0)), 0),
        sa.func.coalesce(sa.func.sum(sa.case((per_user.c.n > top_k, 1), else_=0)), 0),
    )).one()
    prev = sa.func.lag(s.c.score).over(partition_by=s.c.user_id, order_by=s.c.rank)
    ordered = sa.select(s.c.score.label("score"), prev.label("prev")).subquery()
    increasing = conn.execute(
        sa.select(sa.func.count()).where(ordered.c.prev < ordered.c.score)
    ).scalar_one()
    dup = sa.select(s.c.user_id).group_by(s.c.user_id, item).having(sa.func.count() > 1).subquery()
    duplicates = conn.execute(sa.select(sa.func.count()).select_from(dup)).scalar_one()
    rows_row = conn.execute(sa.select(
        sa.func.count(),
        sa.func.coalesce(sa.func.sum(sa.case(
            ((s.c.score <= 0) | (s.c.score > 1) | s.c.score.is_(None), 1), else_=0)), 0),
        # An '@' is how an email address would show; reasons are built from templates.
        sa.func.coalesce(sa.func.sum(sa.case((s.c.reason.like("%@%"), 1), else_=0)), 0),
        sa.func.coalesce(sa.func.sum(sa.case((
            (sa.func.length(s.c.reason) == 0) | (sa.func.length(s.c.reason) > 200), 1),
            else_=0)), 0),
    )).one()
    if is_postgres(conn):  # NaN compares greater than every number on PostgreSQL
        nan_rows = conn.execute(sa.select(sa.func.count()).where(
            s.c.score == sa.literal(float("nan"), sa.Float()))).scalar_one()
    else:
        nan_rows = 0
    return {
        "rows": int(rows_row[0]),
        "users": int(users_row[0]),
        "users_with_rank_gaps": int(users_row[1]),
        "users_over_k": int(users_row[2]),
        "rows_score_out_of_range": int(rows_row[1]) + int(nan_rows),
        "rows_score_increasing": int(increasing),
        "duplicate_items": int(duplicates),
        "rows_with_pii": int(rows_row[2]),
        "rows_bad_reason_length": int(rows_row[3]),
    }


def read_staged_pairs(conn: Connection, kind: RecommendationKind) -> pd.DataFrame:
    """(user_id, item) of every staged row, for the eligibility re-verification."""
    s = _staging_table(kind)
    return read_int_frame(conn, sa.select(s.c.user_id, s.c[kind.item_column]))


def swap(engine: Engine, kinds: tuple[RecommendationKind, ...] = KINDS) -> None:
    """Publish every staged kind at once, in one transaction."""
    ensure_pipeline_tables(engine)
    with engine.begin() as conn:
        for kind in kinds:
            if is_postgres(conn):
                _swap_postgres(conn, kind)
            else:
                columns = ", ".join(_q(c.name) for c in kind.table.columns)
                conn.execute(sa.text(f"DELETE FROM {_q(kind.table.name)}"))
                conn.execute(sa.text(
                    f"INSERT INTO {_q(kind.table.name)} ({columns}) "
                    f"SELECT {columns} FROM {_q(kind.staging_name)}"
                ))
                conn.execute(sa.text(f"DROP TABLE {_q(kind.staging_name)}"))


def _swap_postgres(conn: Connection, kind: RecommendationKind) -> None:
    published, staging = kind.table.name, kind.staging_name
    old, new = _names(published, kind.item_column), _names(staging, kind.item_column)
    conn.execute(sa.text(f"DROP TABLE {_q(published)}"))
    conn.execute(sa.text(f"ALTER TABLE {_q(staging)} RENAME TO {_q(published)}"))
    for key in ("pkey", "unique"):
        conn.execute(sa.text(
            f"ALTER TABLE {_q(published)} RENAME CONSTRAINT {_q(new[key])} TO {_q(old[key])}"
        ))
    conn.execute(sa.text(f"ALTER INDEX {_q(new['index'])} RENAME TO {_q(old['index'])}"))


def drop_staging(engine: Engine, kinds: tuple[RecommendationKind, ...] = KINDS) -> None:
    with engine.begin() as conn:
        for kind in kinds:
            conn.execute(sa.text(f"DROP TABLE IF EXISTS {_q(kind.staging_name)}"))


def replace_user_rows(
    engine: Engine, user_id: int, frames: Mapping[RecommendationKind, pd.DataFrame]
) -> dict[str, int]:
    """Replace exactly one user's rows of each kind in one transaction; returns rows deleted /
    written per kind."""
    ensure_pipeline_tables(engine)
    counts: dict[str, int] = {}
    with engine.begin() as conn:
        for kind, frame in frames.items():
            rows = frame[frame["user_id"] == user_id][[c.name for c in kind.table.columns]]
            deleted = conn.execute(
                kind.table.delete().where(kind.table.c.user_id == int(user_id))
            ).rowcount
            written = bulk_insert(conn, kind.table, rows)
            counts[f"{kind.name}_deleted"] = int(deleted or 0)
            counts[f"{kind.name}_written"] = int(written)
    return counts
