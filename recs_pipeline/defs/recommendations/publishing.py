"""Publishing recommendations atomically: stage, check, swap; or replace one user's rows.

* `stage` writes a kind's rows into `<table>__staging` with `bulk_insert` (COPY on PostgreSQL);
  on PostgreSQL the keys and index are built after the load (faster than maintaining them row by
  row).
* `staged_summary` computes, with SQL on the staged table, what the blocking checks need.
* `swap` replaces the published tables by the staged ones in ONE transaction:
  - PostgreSQL: take `ACCESS EXCLUSIVE` on the four tables at once under a short `lock_timeout`
    (`SwapPolicy`), then `DROP` the published table, `RENAME` staging to it and rename its primary
    key, unique constraint and index to the published names. DDL is transactional; readers wait
    for the commit on the table lock and then read the new table, so they never see it empty,
    partial or mixed, and a failure rolls everything back. A lock not granted within the timeout
    (a session holding a read lock on a published table, e.g. a request idle in a transaction)
    gives up at once, so app reads queued behind the swap wait at most that long, and the swap
    tries again after a pause, until `SwapPolicy.budget_s`. Staging tables are created with
    autovacuum disabled (and analysed after the load): autovacuum on a freshly loaded table
    would otherwise hold the swap up to `deadlock_timeout` while every reader queues. The
    published tables keep that setting: they are replaced every night, never vacuumed in place.
  - SQLite: `DELETE` + `INSERT ... SELECT` from staging in one transaction. Readers (WAL mode)
    keep reading the old snapshot until the commit. SQLite cannot rename indexes or
    constraints, so copying keeps the published table's exact DDL.
* `replace_user_rows`: the one-user refresh; that user's rows are deleted and re-inserted in one
  transaction.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from recs_pipeline import schema
from recs_pipeline.bootstrap import ensure_pipeline_tables
from recs_pipeline.db import bulk_insert, in_ids, is_postgres


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
# Each kind's reserve (its next-best rows after the top K), staged and swapped with it.
TOURNAMENT_RESERVE = RecommendationKind(
    "tournament_reserve", schema.tournament_recommendation_reserve, "tournament_id")
TEAM_RESERVE = RecommendationKind("team_reserve", schema.team_recommendation_reserve, "team_id")
RESERVE_OF: dict[RecommendationKind, RecommendationKind] = {
    TOURNAMENTS: TOURNAMENT_RESERVE, TEAMS: TEAM_RESERVE}
RESERVES: tuple[RecommendationKind, ...] = (TOURNAMENT_RESERVE, TEAM_RESERVE)
# Reserve rows per user and kind by default: ~2 of 10 published tournament rows go stale within
# a day on short-lived platforms (docs/recommendations.md), so 5 refill most lists.
DEFAULT_RESERVE = 5

# SQLite staging loads commit every this many rows (tens of milliseconds of write lock each).
SQLITE_STAGING_BATCH_ROWS = 20_000


def _staging_table(kind: RecommendationKind) -> sa.Table:
    return schema.recommendation_table(kind.staging_name, kind.item_column, sa.MetaData())


def _bare_staging_table(kind: RecommendationKind) -> sa.Table:
    """The contract's columns and types, NOT NULLs, no keys (built after the COPY). Typed from
    `schema`, not copied from the published table, so a published table of an older layout
    (`generated_at` as `timestamp`) is upgraded by the next swap."""
    return sa.Table(
        kind.staging_name, sa.MetaData(),
        *(sa.Column(c.name, c.type, nullable=c.nullable, autoincrement=False)
          for c in kind.table.columns),
        postgresql_with={"autovacuum_enabled": "false", "toast.autovacuum_enabled": "false"},
    )


def _names(table_name: str, item_column: str) -> dict[str, str]:
    return {
        "pkey": f"{table_name}_pkey",
        "unique": f"uq_{table_name}_user_{item_column}",
        "index": f"ix_{table_name}_user_id",
    }


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


_PG_EPOCH_US = int(pd.Timestamp("2000-01-01").value // 1000)
_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + (0).to_bytes(4, "big") + (0).to_bytes(4, "big")
# Binary COPY row prefix: field count, then (length, value) for user_id, item, rank, score and
# the reason's length (its bytes follow). model_version / generated_at come from column DEFAULTs.
_PREFIX = np.dtype([
    ("nfields", ">i2"), ("l_user", ">i4"), ("user", ">i8"), ("l_item", ">i4"), ("item", ">i8"),
    ("l_rank", ">i4"), ("rank", ">i4"), ("l_score", ">i4"), ("score", ">f8"),
    ("l_reason", ">i4"),
])


def _binary_copy_chunks(
    frame: pd.DataFrame, item_column: str, rows_per_chunk: int = 500_000
) -> Iterator[bytes]:
    """PostgreSQL binary COPY data for (user_id, item, rank, score, reason), vectorised.

    Row order does not matter to COPY, so rows are grouped by the byte length of their reason:
    within a group every row has the same width and is assembled as one 2-D uint8 block (the
    fixed-width prefix, then the reason gathered from the few distinct sentences). No per-row
    Python work.
    """
    codes, uniques = pd.factorize(frame["reason"].to_numpy(dtype=object))
    encoded = [str(u).encode("utf-8") for u in uniques]
    lengths = np.array([len(e) for e in encoded], dtype=np.int64)
    local = np.zeros(len(encoded), dtype=np.int64)
    pools: dict[int, np.ndarray] = {}
    for length in np.unique(lengths).tolist():
        members = np.flatnonzero(lengths == length)
        local[members] = np.arange(len(members))
        pools[length] = np.frombuffer(
            b"".join(encoded[m] for m in members.tolist()), dtype=np.uint8
        ).reshape(len(members), length)
    yield _COPY_HEADER
    if frame.empty:
        yield (-1).to_bytes(2, "big", signed=True)
        return
    row_reason_len = lengths[codes]
    order = np.argsort(row_reason_len.astype(np.uint16), kind="stable")  # radix sort
    sorted_len = row_reason_len[order]
    cuts = np.concatenate([[0], np.flatnonzero(np.diff(sorted_len)) + 1, [len(order)]])
    users = frame["user_id"].to_numpy(dtype=np.int64)
    items = frame[item_column].to_numpy(dtype=np.int64)
    ranks = frame["rank"].to_numpy(dtype=np.int64)
    scores = frame["score"].to_numpy(dtype=np.float64)
    width = _PREFIX.itemsize
    for a, b in zip(cuts[:-1].tolist(), cuts[1:].tolist(), strict=True):
        length = int(sorted_len[a])
        for lo in range(a, b, rows_per_chunk):
            idx = order[lo:min(lo + rows_per_chunk, b)]
            prefix = np.empty(len(idx), dtype=_PREFIX)
            prefix["nfields"], prefix["l_user"], prefix["user"] = 5, 8, users[idx]
            prefix["l_item"], prefix["item"] = 8, items[idx]
            prefix["l_rank"], prefix["rank"] = 4, ranks[idx]
            prefix["l_score"], prefix["score"] = 8, scores[idx]
            prefix["l_reason"] = length
            block = np.empty((len(idx), width + length), dtype=np.uint8)
            block[:, :width] = prefix.view(np.uint8).reshape(len(idx), width)
            block[:, width:] = pools[length][local[codes[idx]]]
            yield block.tobytes()
    yield (-1).to_bytes(2, "big", signed=True)


def copy_binary(conn: Connection, table_name: str, frame: pd.DataFrame, item_column: str, *,
                freeze: bool = False) -> int:
    """Load recommendation rows with PostgreSQL binary COPY (psycopg 3 or psycopg2).

    `freeze`: the rows are written frozen (the table must have been created in this
    transaction), so no later reader or VACUUM rewrites every page to set hint bits."""
    columns = ", ".join(_q(c) for c in ("user_id", item_column, "rank", "score", "reason"))
    sql = (f"COPY {_q(table_name)} ({columns}) FROM STDIN WITH (FORMAT binary"
           + (", FREEZE)" if freeze else ")"))
    cursor = conn.connection.driver_connection.cursor()
    try:
        if hasattr(cursor, "copy_expert"):  # psycopg2 wants a file
            cursor.copy_expert(sql, io.BytesIO(b"".join(_binary_copy_chunks(frame, item_column))))
        else:
            with cursor.copy(sql) as copy:
                for chunk in _binary_copy_chunks(frame, item_column):
                    copy.write(chunk)
    finally:
        cursor.close()
    return len(frame)


def stage(
    engine: Engine, kind: RecommendationKind, frame: pd.DataFrame,
    sqlite_batch_rows: int = SQLITE_STAGING_BATCH_ROWS,
) -> int:
    """(Re)create the staging table and load `frame` into it; committed on return.

    On SQLite every transaction takes the whole file's write lock, so the load commits every
    `sqlite_batch_rows` rows and app writes get in between (a half-loaded staging table is never
    read: the checks compare it with the frame, and the next run recreates it)."""
    ensure_pipeline_tables(engine)
    columns = [c.name for c in kind.table.columns]
    frame = frame[columns]
    if engine.dialect.name == "sqlite":
        with engine.begin() as conn:
            conn.execute(sa.text(f"DROP TABLE IF EXISTS {_q(kind.staging_name)}"))
            _staging_table(kind).create(conn)
        count = 0
        for start in range(0, len(frame), sqlite_batch_rows):
            with engine.begin() as conn:
                count += bulk_insert(conn, kind.staging_name,
                                     frame.iloc[start:start + sqlite_batch_rows])
        return count
    with engine.begin() as conn:
        conn.execute(sa.text(f"DROP TABLE IF EXISTS {_q(kind.staging_name)}"))
        # Bare table first (same columns, NOT NULLs), keys after the COPY.
        _bare_staging_table(kind).create(conn)
        count = _copy_with_defaults(conn, kind, frame)
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
    return count


def _copy_with_defaults(conn: Connection, kind: RecommendationKind, frame: pd.DataFrame) -> int:
    """Binary COPY of the varying columns; the two constant ones come from temporary DEFAULTs
    (dropped again, so the table keeps the contract's exact shape)."""
    if frame.empty:
        return 0
    versions = frame["model_version"].unique()
    stamps = frame["generated_at"].unique()
    if len(versions) != 1 or len(stamps) != 1:  # not one run's output: plain COPY
        return bulk_insert(conn, kind.staging_name, frame)
    table = _q(kind.staging_name)
    conn.execute(sa.text(
        f"ALTER TABLE {table} ALTER COLUMN model_version SET DEFAULT "
        + _literal(str(versions[0]))))
    stamp = pd.Timestamp(stamps[0])
    if stamp.tzinfo is not None:
        stamp = stamp.tz_convert("UTC").tz_localize(None)
    conn.execute(sa.text(
        f"ALTER TABLE {table} ALTER COLUMN generated_at SET DEFAULT "
        + _literal(stamp.strftime("%Y-%m-%d %H:%M:%S.%f") + "+00") + "::timestamptz"))
    # Frozen (the staging table was created in this transaction): rows visible to every
    # snapshot, so a REPEATABLE READ reader older than the load sees the new table whole, not
    # empty, and no later reader or VACUUM rewrites the pages to set hint bits or freeze them.
    count = copy_binary(conn, kind.staging_name, frame, kind.item_column, freeze=True)
    conn.execute(sa.text(f"ALTER TABLE {table} ALTER COLUMN model_version DROP DEFAULT, "
                         "ALTER COLUMN generated_at DROP DEFAULT"))
    return count


def _literal(text: str) -> str:
    """A SQL string literal (DDL cannot take bound parameters)."""
    return "'" + text.replace("'", "''") + "'"


def staged_fingerprint(conn: Connection, kind: RecommendationKind) -> dict[str, float]:
    """One aggregate scan of the staged table: row count, sums of the keys and scores, and the
    reasons' email-like / length facts. Compared with the computed frame's `frame_fingerprint`
    it proves the staged rows are exactly the checked rows."""
    s = _staging_table(kind)
    length = sa.func.length(s.c.reason)
    row = conn.execute(sa.select(
        sa.func.count(),
        sa.func.coalesce(sa.func.sum(s.c.user_id), 0),
        sa.func.coalesce(sa.func.sum(s.c[kind.item_column]), 0),
        sa.func.coalesce(sa.func.sum(s.c.rank), 0),
        sa.func.coalesce(sa.func.sum(s.c.score), 0.0),
        sa.func.coalesce(sa.func.sum(length), 0),
        sa.func.coalesce(sa.func.sum(sa.case((s.c.reason.like("%@%"), 1), else_=0)), 0),
    )).one()
    return {"rows": int(row[0]), "user_sum": int(row[1]), "item_sum": int(row[2]),
            "rank_sum": int(row[3]), "score_sum": float(row[4]), "reason_chars": int(row[5]),
            "email_like": int(row[6])}


def frame_fingerprint(frame: pd.DataFrame, item_column: str) -> dict[str, float]:
    from recs_pipeline.defs.recommendations.checks import (
        reason_facts,  # checks imports dagster; keep publish light
    )

    lengths, emails = reason_facts(frame["reason"])
    return {
        "rows": len(frame),
        "user_sum": int(frame["user_id"].astype(np.int64).sum()),
        "item_sum": int(frame[item_column].astype(np.int64).sum()),
        "rank_sum": int(frame["rank"].astype(np.int64).sum()),
        "score_sum": float(frame["score"].astype(np.float64).sum()),
        "reason_chars": int(lengths.sum()),
        "email_like": int(emails.sum()),
    }


def fingerprints_match(staged: dict[str, float], computed: dict[str, float]) -> bool:
    exact = all(staged[k] == computed[k] for k in staged if k != "score_sum")
    return exact and abs(staged["score_sum"] - computed["score_sum"]) <= 1e-6 * max(
        1.0, abs(computed["score_sum"]))


@dataclass(frozen=True)
class SwapPolicy:
    """How long the PostgreSQL swap may make app reads wait, and how long it keeps trying.

    `lock_timeout_ms` bounds each attempt's wait for its locks, which is also the longest a
    reader queued behind the swap waits for it; after a failed attempt the swap pauses
    `first_pause_s` (doubling up to `max_pause_s`, never less than `first_pause_s`: a pause
    shorter than the base would retry into the same blocker) and tries again, for at most
    `budget_s` in all."""

    lock_timeout_ms: int = 50
    first_pause_s: float = 0.5
    max_pause_s: float = 5.0
    budget_s: float = 600.0

    def __post_init__(self) -> None:
        if self.lock_timeout_ms < 1 or self.first_pause_s <= 0 or self.budget_s <= 0:
            raise ValueError(f"invalid swap policy {self}")


DEFAULT_SWAP_POLICY = SwapPolicy()


@dataclass
class SwapOutcome:
    attempts: int = 0
    seconds: float = 0.0
    blockers: list[str] = field(default_factory=list)  # sessions that held a lock we needed


class SwapLockTimeout(RuntimeError):
    """The swap could not take its locks within the policy's budget (published tables unchanged)."""


# PostgreSQL SQLSTATE 55P03: lock_not_available (what a lock_timeout raises).
_LOCK_NOT_AVAILABLE = "55P03"


def _sqlstate(exc: BaseException) -> str | None:
    orig = getattr(exc, "orig", None)
    return getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)


def _lock_holders(engine: Engine, tables: list[str]) -> list[str]:
    """Who holds a lock on `tables` (pid, state, transaction age; never the query text)."""
    with engine.connect() as conn:
        rows = conn.execute(sa.text(
            "SELECT DISTINCT a.pid, a.state, a.application_name, "
            "extract(epoch FROM now() - a.xact_start) AS xact_s "
            "FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
            "WHERE l.granted AND l.pid <> pg_backend_pid() AND l.relation IN "
            "(SELECT c.oid FROM pg_class c WHERE c.relname = ANY(:tables) "
            "AND c.relnamespace = current_schema()::regnamespace)"
        ), {"tables": tables}).all()
    return [f"pid {r.pid} ({r.state}, {r.application_name or 'no application_name'}, "
            f"transaction open {float(r.xact_s or 0):.1f} s)" for r in rows]


def swap(
    engine: Engine,
    kinds: tuple[RecommendationKind, ...] = KINDS,
    policy: SwapPolicy = DEFAULT_SWAP_POLICY,
    sleep: Callable[[float], None] = time.sleep,
    *,
    in_transaction: Callable[[Connection], object] | None = None,
) -> SwapOutcome:
    """Publish every staged kind at once, in one transaction (see the module docstring);
    `in_transaction` runs in that transaction, after the swap."""
    ensure_pipeline_tables(engine)
    outcome = SwapOutcome()
    started = time.monotonic()
    pause = policy.first_pause_s
    while True:
        outcome.attempts += 1
        try:
            with engine.begin() as conn:
                if is_postgres(conn):
                    conn.execute(sa.text(f"SET LOCAL lock_timeout = '{policy.lock_timeout_ms}ms'"))
                    tables = [n for k in kinds for n in (k.table.name, k.staging_name)]
                    conn.execute(sa.text(
                        f"LOCK TABLE {', '.join(_q(t) for t in tables)} IN ACCESS EXCLUSIVE MODE"))
                    for kind in kinds:
                        _swap_postgres(conn, kind)
                else:
                    for kind in kinds:
                        _swap_sqlite(conn, kind)
                if in_transaction is not None:
                    in_transaction(conn)
            outcome.seconds = time.monotonic() - started
            return outcome
        except sa.exc.OperationalError as exc:
            if _sqlstate(exc) != _LOCK_NOT_AVAILABLE:
                raise
            holders = _lock_holders(engine, [k.table.name for k in kinds])
            outcome.blockers = sorted(set(outcome.blockers) | set(holders))
            elapsed = time.monotonic() - started
            if elapsed + pause > policy.budget_s:
                raise SwapLockTimeout(
                    f"the swap could not lock the published tables within {policy.budget_s:g} s "
                    f"({outcome.attempts} attempts of {policy.lock_timeout_ms} ms); published "
                    "tables unchanged. Sessions holding locks on them: "
                    + ("; ".join(holders) or "none left (try again)")) from None
            sleep(pause)
            pause = min(max(pause * 2, policy.first_pause_s), policy.max_pause_s)


def _swap_sqlite(conn: Connection, kind: RecommendationKind) -> None:
    columns = ", ".join(_q(c.name) for c in kind.table.columns)
    conn.execute(sa.text(f"DELETE FROM {_q(kind.table.name)}"))
    conn.execute(sa.text(
        f"INSERT INTO {_q(kind.table.name)} ({columns}) "
        f"SELECT {columns} FROM {_q(kind.staging_name)}"
    ))
    conn.execute(sa.text(f"DROP TABLE {_q(kind.staging_name)}"))


# Every privilege on a table granted to a role other than its owner (PUBLIC as grantee 0).
_TABLE_GRANTS = sa.text("""
    SELECT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(r.rolname) END AS grantee,
           a.privilege_type, a.is_grantable
    FROM pg_class c CROSS JOIN LATERAL aclexplode(c.relacl) a
    LEFT JOIN pg_roles r ON r.oid = a.grantee
    WHERE c.oid = to_regclass(:table) AND a.grantee <> c.relowner
    ORDER BY 1, 2
""")


def carry_over_grants(conn: Connection, source: str, target: str) -> int:
    """Grant on `target` what was granted on `source` (the app's reader role keeps SELECT
    across the swap, which replaces the table object). Returns the privileges granted."""
    grants = conn.execute(_TABLE_GRANTS, {"table": _q(source)}).all()
    for grantee, privilege, grantable in grants:
        option = " WITH GRANT OPTION" if grantable else ""
        conn.execute(sa.text(f"GRANT {privilege} ON {_q(target)} TO {grantee}{option}"))
    return len(grants)


def _swap_postgres(conn: Connection, kind: RecommendationKind) -> None:
    published, staging = kind.table.name, kind.staging_name
    old, new = _names(published, kind.item_column), _names(staging, kind.item_column)
    carry_over_grants(conn, published, staging)
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
    engine: Engine, user_ids: Sequence[int], frames: Mapping[RecommendationKind, pd.DataFrame],
    in_transaction: Callable[[Connection], object] | None = None,
) -> dict[str, int]:
    """Replace exactly these users' rows of each kind in one transaction (and run
    `in_transaction` in it); returns rows deleted / written per kind. The caller ensures the
    pipeline tables exist (`refresh_users` does, before it claims the requests)."""
    ids = sorted({int(u) for u in user_ids})
    counts: dict[str, int] = {}
    with engine.begin() as conn:
        for kind, frame in frames.items():
            rows = frame[frame["user_id"].isin(ids)][[c.name for c in kind.table.columns]]
            deleted = int(conn.execute(kind.table.delete().where(
                in_ids(kind.table.c.user_id, ids, conn.dialect.name))).rowcount or 0)
            written = bulk_insert(conn, kind.table, rows)
            counts[f"{kind.name}_deleted"] = deleted
            counts[f"{kind.name}_written"] = int(written)
        if in_transaction is not None:
            in_transaction(conn)
    return counts
