"""SQL for the achievements flow: the outbox scan, batch loading, set-based metrics, and the one
transaction that writes awards, dead letters and the ledger. Used by the sensor, the job's ops,
`recs-pipeline events replay` and the benchmark (plain SQLAlchemy Core, no Dagster).

Every query against an app table is bounded by the `app_events` primary key or by the batch's
user ids, so nothing here needs an index the app does not already have.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine

from recs_pipeline import schema
from recs_pipeline.bootstrap import ensure_pipeline_tables
from recs_pipeline.compute.achievements import (
    AWARD_COLUMNS,
    classify_events,
    drop_missing_users,
    empty_dead_letters,
    evaluate_awards,
    matching_achievements,
)
from recs_pipeline.compute.timestamps import parse_utc_naive, utc_now
from recs_pipeline.db import copy_into, in_ids, is_postgres, read_frame

E = schema.app_events
LEDGER = schema.achievement_event_ledger
DEAD = schema.achievement_dead_letters
EVENT_TYPES = schema.ACHIEVEMENT_EVENT_TYPES

OUTCOME_AWARDED = "awarded"
OUTCOME_NO_AWARD = "no_award"
OUTCOME_DEAD_LETTERED = "dead_lettered"

def ensure_tables(engine: Engine) -> None:
    """The pipeline creates its own tables; cheap (`checkfirst`) and idempotent."""
    ensure_pipeline_tables(engine)


def _insert(conn: Connection, table: sa.Table):  # type: ignore[no-untyped-def]
    return postgresql.insert(table) if is_postgres(conn) else sqlite.insert(table)


# --- The outbox scan (sensor) ----------------------------------------------------------------


def max_event_id(conn: Connection) -> int:
    """Highest visible `app_events.id` (0 when empty): a primary-key lookup."""
    return int(conn.execute(sa.select(sa.func.max(E.c.id))).scalar() or 0)


def user_achievement_rows(conn: Connection) -> int:
    """Rows in `user_achievements` (the row count the asset shows)."""
    return int(conn.execute(
        sa.select(sa.func.count()).select_from(schema.user_achievements)).scalar_one())


@dataclass(frozen=True)
class OutboxHealth:
    """What the outbox checks report: unprocessed achievement events, unresolved dead letters."""

    pending_events: int
    oldest_pending_id: int | None
    oldest_pending_at: pd.Timestamp | None
    dead_letters: int
    oldest_dead_letter_at: pd.Timestamp | None


def _timestamp(value: object) -> pd.Timestamp | None:
    """A stored timestamp (driver datetime or the contract's text) as naive UTC; None if NULL
    or unreadable."""
    parsed = parse_utc_naive(pd.Series([value], dtype=object))[0].iloc[0]
    return None if pd.isna(parsed) else parsed


def outbox_health(conn: Connection) -> OutboxHealth:
    """One anti-join of the outbox with the ledger, one count of the unreplayed dead letters."""
    pending = sa.select(sa.func.count(), sa.func.min(E.c.id)).where(
        E.c.event_type.in_(EVENT_TYPES), ~sa.exists().where(LEDGER.c.event_id == E.c.id))
    count, oldest_id = conn.execute(pending).one()
    oldest_at = None if oldest_id is None else _timestamp(conn.execute(
        sa.select(E.c.created_at).where(E.c.id == oldest_id)).scalar_one())
    dead, dead_at = conn.execute(sa.select(sa.func.count(), sa.func.min(DEAD.c.dead_lettered_at))
                                 .where(DEAD.c.replayed_at.is_(None))).one()
    return OutboxHealth(
        pending_events=int(count), oldest_pending_id=None if oldest_id is None else int(oldest_id),
        oldest_pending_at=oldest_at, dead_letters=int(dead),
        oldest_dead_letter_at=None if dead_at is None else _timestamp(dead_at),
    )


def scan_pending_ids(
    conn: Connection,
    lo: int,
    hi: int,
    *,
    limit: int,
    exclude: Sequence[tuple[int, int]] = (),
) -> list[int]:
    """Achievement event ids in (lo, hi] that are not in the ledger and not inside an excluded
    (in-flight) range, ascending, at most `limit`. A PK range scan anti-joined with the ledger."""
    query = sa.select(E.c.id).where(
        E.c.id > lo,
        E.c.id <= hi,
        E.c.event_type.in_(EVENT_TYPES),
        ~sa.exists().where(LEDGER.c.event_id == E.c.id),
    )
    for first, last in exclude:
        if last > lo and first <= hi:
            query = query.where(~E.c.id.between(first, last))
    return [int(i) for i in conn.execute(query.order_by(E.c.id).limit(limit)).scalars()]


def pending_event_ids(
    conn: Connection, *, after: int = 0, limit: int = 100_000, window: int = 200_000
) -> list[int]:
    """All pending achievement event ids after `after` (up to `limit`), scanned in PK windows."""
    top = max_event_id(conn)
    found: list[int] = []
    lo = after
    while lo < top and len(found) < limit:
        hi = min(lo + window, top)
        found.extend(scan_pending_ids(conn, lo, hi, limit=limit - len(found)))
        lo = hi
    return found


# --- Loading a batch -------------------------------------------------------------------------


@dataclass
class EventBatch:
    """What `load_batch` found: events to evaluate, dead letters, and bookkeeping counts."""

    events: pd.DataFrame
    dead_letters: pd.DataFrame
    loaded: int = 0
    missing_ids: list[int] = field(default_factory=list)
    oldest_created_at: pd.Timestamp | None = None


def load_events(
    conn: Connection,
    *,
    ranges: Sequence[Sequence[int]] = (),
    event_ids: Sequence[int] = (),
    replay: bool = False,
) -> tuple[pd.DataFrame, list[int]]:
    """Events of a batch not processed yet; returns (events, explicitly requested ids not found).

    A range covers the achievement events inside it; explicit ids cover those events whatever
    their type (an unknown type is then dead-lettered). With `replay`, events whose ledger outcome
    is `dead_lettered` are loaded again.
    """
    dialect = conn.dialect.name
    conditions: list[sa.ColumnElement[bool]] = [
        sa.and_(E.c.id.between(int(first), int(last)), E.c.event_type.in_(EVENT_TYPES))
        for first, last in ranges
    ]
    if event_ids:
        conditions.append(in_ids(E.c.id, event_ids, dialect))
    if not conditions:
        return _empty_events(), []
    done = sa.exists().where(LEDGER.c.event_id == E.c.id)
    if replay:
        done = done.where(LEDGER.c.outcome != OUTCOME_DEAD_LETTERED)
    query = (
        sa.select(E.c.id.label("event_id"), E.c.event_type, E.c.user_id, E.c.payload,
                  E.c.created_at)
        .where(sa.or_(*conditions), ~done)
        .order_by(E.c.id)
    )
    events = read_frame(conn, query)
    # Per value: an unparsable created_at becomes NaT and is dead-lettered (`classify_events`)
    # instead of failing the whole batch.
    events["created_at"] = parse_utc_naive(events["created_at"])[0] if len(events) else (
        events["created_at"].astype("datetime64[us]"))
    missing: list[int] = []
    if event_ids:
        wanted = {int(i) for i in event_ids}
        present = set(events["event_id"].astype("int64")) if len(events) else set()
        unseen = sorted(wanted - present)
        if unseen:  # not found at all, or already processed: tell them apart
            existing = set(conn.execute(
                sa.select(E.c.id).where(in_ids(E.c.id, unseen, dialect))
            ).scalars())
            missing = [i for i in unseen if i not in existing]
    events["event_id"] = events["event_id"].astype("int64")
    return events, missing


def _empty_events() -> pd.DataFrame:
    return pd.DataFrame({
        "event_id": pd.Series(dtype="int64"), "event_type": pd.Series(dtype=object),
        "user_id": pd.Series(dtype=object), "payload": pd.Series(dtype=object),
        "created_at": pd.Series(dtype="datetime64[us]"),
    })


def existing_user_ids(conn: Connection, user_ids: Iterable[int]) -> set[int]:
    ids = sorted({int(u) for u in user_ids})
    if not ids:
        return set()
    u = schema.users
    return {int(i) for i in conn.execute(
        sa.select(u.c.id).where(in_ids(u.c.id, ids, conn.dialect.name))
    ).scalars()}


def load_batch(
    conn: Connection,
    *,
    ranges: Sequence[Sequence[int]] = (),
    event_ids: Sequence[int] = (),
    replay: bool = False,
) -> EventBatch:
    """Load a batch and split off the bad events (3 queries at most, whatever the batch size)."""
    events, missing = load_events(conn, ranges=ranges, event_ids=event_ids, replay=replay)
    oldest = events["created_at"].min() if len(events) else None
    valid, dead_row = classify_events(events)
    valid, dead_user = drop_missing_users(valid, existing_user_ids(conn, valid["user_id"]))
    dead = pd.concat([d for d in (dead_row, dead_user) if len(d)] or [empty_dead_letters()],
                     ignore_index=True)
    return EventBatch(
        events=valid[["event_id", "event_type", "user_id", "created_at"]].reset_index(drop=True),
        dead_letters=dead.sort_values("event_id").reset_index(drop=True),
        loaded=len(events),
        missing_ids=missing,
        oldest_created_at=None if oldest is None or pd.isna(oldest) else pd.Timestamp(oldest),
    )


# --- Metrics (set-based: one query per metric family for the whole batch) ---------------------


def load_active_achievements(conn: Connection) -> pd.DataFrame:
    a = schema.achievements
    query = sa.select(
        a.c.id.label("achievement_id"), a.c.code, a.c.event_type, a.c.metric, a.c.threshold
    ).where(a.c.is_active.is_(True))
    frame = read_frame(conn, query)
    if frame.empty:
        return pd.DataFrame({c: pd.Series(dtype="int64" if c in ("achievement_id", "threshold")
                                          else object)
                             for c in ("achievement_id", "code", "event_type", "metric",
                                       "threshold")})
    return frame


TOURNAMENT_METRICS = ("tournaments_completed", "tournaments_won", "podium_finishes")


def compute_user_metrics(
    conn: Connection, user_ids: Iterable[int], metrics: Iterable[str]
) -> tuple[pd.DataFrame, int]:
    """Metric values for every user of the batch; returns (frame, number of queries run).

    One query covers the three tournament metrics (a single pass over the participations), one
    the teams, one the profile; each filters on the whole batch's users at once.
    """
    users = sorted({int(u) for u in user_ids})
    wanted = [m for m in schema.ACHIEVEMENT_METRICS if m in set(metrics)]
    frame = pd.DataFrame({"user_id": pd.Series(users, dtype="int64")})
    queries = 0
    if not users or not wanted:
        for m in wanted:
            frame[m] = pd.Series(dtype="int64")
        return frame, 0
    dialect = conn.dialect.name
    if any(m in TOURNAMENT_METRICS for m in wanted):
        tp, t = schema.tournament_participants, schema.tournaments
        query = (
            sa.select(
                tp.c.user_id,
                sa.func.sum(sa.case((t.c.status == "completed", 1), else_=0)).label(
                    "tournaments_completed"),
                sa.func.sum(sa.case((tp.c.placement == 1, 1), else_=0)).label("tournaments_won"),
                sa.func.sum(sa.case((tp.c.placement <= 3, 1), else_=0)).label("podium_finishes"),
            )
            .select_from(tp.outerjoin(t, t.c.id == tp.c.tournament_id))
            .where(in_ids(tp.c.user_id, users, dialect))
            .group_by(tp.c.user_id)
        )
        frame = frame.merge(read_frame(conn, query), on="user_id", how="left")
        queries += 1
    if "teams_joined" in wanted:
        tm = schema.team_members
        query = (
            sa.select(tm.c.user_id, sa.func.count(sa.distinct(tm.c.team_id)).label("teams_joined"))
            .where(in_ids(tm.c.user_id, users, dialect))
            .group_by(tm.c.user_id)
        )
        frame = frame.merge(read_frame(conn, query), on="user_id", how="left")
        queries += 1
    if "profile_completeness" in wanted:
        pc = schema.profile_completeness
        query = sa.select(pc.c.user_id, pc.c.percentage.label("profile_completeness")).where(
            in_ids(pc.c.user_id, users, dialect)
        )
        frame = frame.merge(read_frame(conn, query), on="user_id", how="left")
        queries += 1
    for m in wanted:
        frame[m] = pd.to_numeric(frame[m], errors="coerce").fillna(0).astype("int64")
    return frame[["user_id", *wanted]], queries


def batch_metrics(
    conn: Connection, events: pd.DataFrame
) -> tuple[pd.DataFrame, pd.DataFrame, int]:
    """(metrics, matching active achievements, queries) for a batch's valid events."""
    achievements = matching_achievements(load_active_achievements(conn),
                                         events["event_type"].unique())
    metrics, queries = compute_user_metrics(conn, events["user_id"], achievements["metric"])
    return metrics, achievements, queries + 1


# --- Writing (one transaction: awards, dead letters, ledger) ---------------------------------


_COPY_THRESHOLD = 2_000  # PostgreSQL: bigger writes go through COPY into a temp table


def _copy_insert_ignore(
    conn: Connection, table: sa.Table, frame: pd.DataFrame, conflict: list[str],
    returning: Sequence[str] = (),
) -> list[tuple[object, ...]]:
    """PostgreSQL: COPY the rows into a temp table, then one `INSERT .. SELECT .. ORDER BY key
    ON CONFLICT DO NOTHING [RETURNING]` (same semantics as the executemany path, much faster)."""
    tmp = f"tmp_{table.name}"
    cols = ", ".join(f'"{c}"' for c in frame.columns)
    conn.exec_driver_sql(f'DROP TABLE IF EXISTS "{tmp}"')
    conn.exec_driver_sql(
        f'CREATE TEMP TABLE "{tmp}" ON COMMIT DROP AS '
        f'SELECT {cols} FROM "{table.name}" WITH NO DATA'
    )
    copy_into(conn, tmp, frame)
    order = ", ".join(f'"{c}"' for c in conflict)
    sql = (f'INSERT INTO "{table.name}" ({cols}) SELECT {cols} FROM "{tmp}" ORDER BY {order} '
           f"ON CONFLICT ({order}) DO NOTHING")
    if returning:
        sql += " RETURNING " + ", ".join(f'"{c}"' for c in returning)
        rows = [tuple(r) for r in conn.exec_driver_sql(sql)]
    else:
        conn.exec_driver_sql(sql)
        rows = []
    conn.exec_driver_sql(f'DROP TABLE "{tmp}"')
    return rows


@dataclass
class WriteSummary:
    awarded: pd.DataFrame  # rows actually inserted now: user_id, achievement_id, event_id, code
    outcomes: dict[str, int]
    dead_letters: int


def write_outcomes(
    conn: Connection,
    *,
    events: pd.DataFrame,
    awards: pd.DataFrame,
    dead_letters: pd.DataFrame,
    run_id: str | None,
    replay: bool = False,
) -> WriteSummary:
    """Insert awards, dead letters and ledger rows in the caller's transaction.

    Awards: `INSERT .. ON CONFLICT (user_id, achievement_id) DO NOTHING RETURNING`, so a repeated
    or concurrent batch inserts nothing twice and we learn exactly what is new. Rows are written
    in key order, so two concurrent batches lock keys in the same order (no deadlock).
    """
    now = utc_now()
    ua = schema.user_achievements
    inserted: list[tuple[int, int, int]] = []
    rows = awards.sort_values(["user_id", "achievement_id"])
    records = [
        {"user_id": int(u), "achievement_id": int(a), "event_id": int(e), "awarded_at": now}
        for u, a, e in zip(rows["user_id"], rows["achievement_id"], rows["event_id"], strict=True)
    ]
    if is_postgres(conn) and len(records) >= _COPY_THRESHOLD:
        result = _copy_insert_ignore(
            conn, ua, pd.DataFrame(records), ["user_id", "achievement_id"],
            returning=["user_id", "achievement_id", "event_id"])
        inserted.extend((int(r[0]), int(r[1]), int(r[2])) for r in result)
    elif records:  # executemany: SQLAlchemy batches it into multi-row VALUES ("insertmanyvalues")
        stmt = (
            _insert(conn, ua)
            .on_conflict_do_nothing(index_elements=["user_id", "achievement_id"])
            .returning(ua.c.user_id, ua.c.achievement_id, ua.c.event_id)
        )
        result = conn.execute(stmt, records)
        inserted.extend((int(r[0]), int(r[1]), int(r[2])) for r in result)
    awarded = pd.DataFrame(inserted, columns=["user_id", "achievement_id", "event_id"])
    codes = dict(zip(awards["achievement_id"], awards["code"], strict=True)) if len(awards) else {}
    awarded["code"] = awarded["achievement_id"].map(codes)
    awarded = awarded[AWARD_COLUMNS]

    # Dead letters: a re-failure after a replay refreshes the row and clears `replayed_at`.
    dead_records = [
        {"event_id": int(e), "reason": str(r), "detail": None if d is None else str(d)[:1000],
         "run_id": run_id, "dead_lettered_at": now, "replayed_at": None}
        for e, r, d in zip(dead_letters["event_id"], dead_letters["reason"],
                           dead_letters["detail"], strict=True)
    ]
    if dead_records:
        stmt = _insert(conn, DEAD)
        stmt = stmt.on_conflict_do_update(
            index_elements=["event_id"],
            set_={c: stmt.excluded[c] for c in
                  ("reason", "detail", "run_id", "dead_lettered_at", "replayed_at")},
        )
        conn.execute(stmt, dead_records)

    awarded_events = set(awarded["event_id"])
    ledger: list[dict[str, object]] = [
        {"event_id": int(e), "outcome": OUTCOME_AWARDED if int(e) in awarded_events
         else OUTCOME_NO_AWARD, "run_id": run_id, "processed_at": now}
        for e in events["event_id"]
    ] + [
        {"event_id": int(e), "outcome": OUTCOME_DEAD_LETTERED, "run_id": run_id,
         "processed_at": now}
        for e in dead_letters["event_id"]
    ]
    ledger.sort(key=lambda r: r["event_id"])  # type: ignore[arg-type,return-value]
    if ledger and not replay and is_postgres(conn) and len(ledger) >= _COPY_THRESHOLD:
        _copy_insert_ignore(conn, LEDGER, pd.DataFrame(ledger), ["event_id"])
    elif ledger:
        stmt = _insert(conn, LEDGER)
        if replay:  # a replayed dead letter's ledger row takes the new outcome
            stmt = stmt.on_conflict_do_update(
                index_elements=["event_id"],
                set_={c: stmt.excluded[c] for c in ("outcome", "run_id", "processed_at")},
                where=LEDGER.c.outcome == OUTCOME_DEAD_LETTERED,
            )
        else:
            stmt = stmt.on_conflict_do_nothing(index_elements=["event_id"])
        conn.execute(stmt, ledger)
    if replay and len(events):
        conn.execute(
            DEAD.update()
            .where(in_ids(DEAD.c.event_id, events["event_id"], conn.dialect.name),
                   DEAD.c.replayed_at.is_(None))
            .values(replayed_at=now)
        )
    outcomes = {OUTCOME_AWARDED: 0, OUTCOME_NO_AWARD: 0, OUTCOME_DEAD_LETTERED: 0}
    for row in ledger:
        outcomes[str(row["outcome"])] += 1
    return WriteSummary(awarded=awarded, outcomes=outcomes, dead_letters=len(dead_records))


# --- The whole flow without Dagster (replay CLI, benchmark) -----------------------------------


@dataclass
class ProcessSummary:
    loaded: int
    missing_ids: list[int]
    evaluated: int
    awarded: pd.DataFrame
    dead_letters: pd.DataFrame
    outcomes: dict[str, int]
    queries: int


def process_events(
    engine: Engine,
    *,
    ranges: Sequence[Sequence[int]] = (),
    event_ids: Sequence[int] = (),
    run_id: str | None = None,
    replay: bool = False,
) -> ProcessSummary:
    """Load, evaluate and write one batch: the same steps as `achievements_job`, in one process."""
    ensure_tables(engine)
    with engine.connect() as conn:
        batch = load_batch(conn, ranges=ranges, event_ids=event_ids, replay=replay)
        metrics, achievements, queries = batch_metrics(conn, batch.events)
    awards = evaluate_awards(batch.events, metrics, achievements)
    with engine.begin() as conn:
        written = write_outcomes(conn, events=batch.events, awards=awards,
                                 dead_letters=batch.dead_letters, run_id=run_id, replay=replay)
    return ProcessSummary(
        loaded=batch.loaded, missing_ids=batch.missing_ids, evaluated=len(batch.events),
        awarded=written.awarded, dead_letters=batch.dead_letters, outcomes=written.outcomes,
        queries=queries + 3,
    )


@dataclass
class ReplaySummary:
    selected: list[int]
    not_dead_lettered: list[int]
    result: ProcessSummary | None

    def render(self) -> str:
        lines = [f"replayed {len(self.selected)} dead-lettered events"]
        if self.not_dead_lettered:
            lines.append(f"skipped {len(self.not_dead_lettered)} ids that are not (or no longer) "
                         f"dead-lettered: {self.not_dead_lettered[:20]}")
        if self.result is not None:
            r = self.result
            redone = r.outcomes[OUTCOME_AWARDED] + r.outcomes[OUTCOME_NO_AWARD]
            counts = r.dead_letters["reason"].value_counts().sort_index()
            by_reason = {str(reason): int(n) for reason, n in counts.items()}  # plain ints print
            lines.append(f"processed {redone}, {len(r.awarded)} new awards, still dead-lettered "
                         f"{len(r.dead_letters)} {by_reason}")
            if r.missing_ids:
                lines.append(f"{len(r.missing_ids)} events no longer exist in app_events: "
                             f"{r.missing_ids[:20]}")
        return "\n".join(lines)


def replay_dead_letters(
    engine: Engine, *, event_ids: Sequence[int] = (), replay_all: bool = False,
    run_id: str = "cli-replay",
) -> ReplaySummary:
    """Re-drive dead-lettered events (those not successfully replayed yet) through the flow.

    Idempotent: an event that now succeeds gets its awards, its ledger outcome and `replayed_at`;
    replaying it again finds nothing to do. One that fails again stays dead-lettered with the
    new reason.
    """
    ensure_tables(engine)
    with engine.connect() as conn:
        query = sa.select(DEAD.c.event_id).where(DEAD.c.replayed_at.is_(None))
        if not replay_all:
            query = query.where(in_ids(DEAD.c.event_id, event_ids, conn.dialect.name))
        selected = sorted(int(i) for i in conn.execute(query).scalars())
    skipped = sorted({int(i) for i in event_ids} - set(selected))
    if not selected:
        return ReplaySummary(selected=[], not_dead_lettered=skipped, result=None)
    result = process_events(engine, event_ids=selected, run_id=run_id, replay=True)
    return ReplaySummary(selected=selected, not_dead_lettered=skipped, result=result)
