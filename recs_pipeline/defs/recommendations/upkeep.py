"""Intraday upkeep: remove published rows that stopped being eligible and refill the lists.

Between two nightly refreshes tournaments close and fill up, teams stop recruiting or fill, and
users register for / join what we recommend or are deactivated. `run_upkeep` finds exactly those
rows, cheaply and in proportion to what changed:

* item rules (closed, full, not recruiting): the item-level status of every open item is read
  (small: the item side), and only the tracked items (`upkeep_store`) that left the eligible set
  since the last run are looked up in the published tables;
* registrations and joins: only those since the last run (with an overlap for late commits),
  matched to the published and reserve rows of their users;
* deactivated users: inactive users that still have rows.

Each affected user's list is rebuilt from their still-eligible rows plus their reserve (the same
refresh's next-best rows, `*_recommendation_reserve`), by score, ranks 1..n. A batch of users is
locked, read as it is now (so an on-demand refresh that ran meanwhile is judged on its own rows)
and written in one transaction, and only what changed is written: each list's tail from its
first changed rank, and the reserve rows used up. On PostgreSQL two batches are written at once
(disjoint users: they never wait on each other), since the cost is the database's index upkeep.
Users whose list fell below K are queued for the on-demand refresh (refresh requests, served in
batches by its sensor and job, so the upkeep run stays short), which also lets tournaments and
teams that opened since the nightly run in.
"""

from __future__ import annotations

import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from recs_pipeline import schema
from recs_pipeline.bootstrap import ensure_pipeline_tables
from recs_pipeline.compute.eligibility import ELIGIBLE, team_item_status, tournament_item_status
from recs_pipeline.compute.quarantine import Quarantine, parse_timestamp_columns
from recs_pipeline.compute.upkeep import first_changed_rank, refill_lists
from recs_pipeline.db import (
    bulk_insert,
    in_ids,
    is_postgres,
    read_copied_frame,
    read_frame,
    read_int_frame,
    timestamp_compare,
)
from recs_pipeline.defs.recommendations.publishing import (
    KINDS,
    RESERVE_OF,
    TOURNAMENTS,
    RecommendationKind,
)
from recs_pipeline.defs.recommendations.reading import current_membership
from recs_pipeline.defs.recommendations.refresh_requests import (
    request_refresh_unless_pending,
)
from recs_pipeline.defs.recommendations.upkeep_store import (
    checked_at,
    mark_checked,
    tracked_items,
    untrack_items,
)

# Registrations committed late (a transaction that began before the last run) are still seen.
REGISTRATION_OVERLAP = timedelta(minutes=10)
WRITE_BATCH_USERS = 2_000  # users per write transaction
WRITE_WORKERS = 2  # PostgreSQL write transactions at once (one per core of this machine kind)

# Why a published row was removed (metadata keys `removed_<reason>`).
ITEM_REASONS = {"status_closed": "registration_closed", "registration_closed":
                "registration_closed", "no_capacity": "full", "full": "full",
                "not_recruiting": "not_recruiting"}
REASONS = ("registration_closed", "full", "not_recruiting", "item_removed", "registered",
           "joined", "user_inactive")


@dataclass
class KindUpkeep:
    rows_before: int | None = None  # counted only when rows were removed
    removed: Counter[str] = field(default_factory=Counter)
    backfilled: int = 0
    users_touched: int = 0
    short_users: list[int] = field(default_factory=list)

    @property
    def rows_removed(self) -> int:
        return sum(self.removed.values())

    @property
    def ineligible_share_before(self) -> float:
        return self.rows_removed / self.rows_before if self.rows_before else 0.0


@dataclass
class UpkeepOutcome:
    kinds: dict[str, KindUpkeep]
    users_short: list[int] = field(default_factory=list)  # lists below K after the refill
    users_refresh_requested: int = 0  # of them, queued for the on-demand refresh
    timings: dict[str, float] = field(default_factory=dict)
    published: bool = True  # False: nothing published yet, nothing to keep up

    @property
    def users_touched(self) -> int:
        return sum(k.users_touched for k in self.kinds.values())


# --- what is eligible now ---------------------------------------------------------------------


def item_status_now(conn: Connection, kind: RecommendationKind, now: datetime) -> pd.Series:
    """Item-level status of every tournament / team that could be eligible (open status or
    recruiting), indexed by id: `eligible` or the rule it breaks (the nightly's rules)."""
    quarantine = Quarantine()
    if kind is TOURNAMENTS:
        t, tp = schema.tournaments, schema.tournament_participants
        frame = read_frame(conn, sa.select(
            t.c.id.label("item_id"), t.c.status, t.c.registration_closes_at,
            t.c.max_participants, sa.func.count(tp.c.id).label("registered"),
        ).select_from(t.outerjoin(tp, tp.c.tournament_id == t.c.id))
            .where(t.c.status.in_(schema.OPEN_TOURNAMENT_STATUSES)).group_by(t.c.id))
        frame = parse_timestamp_columns(frame, ["registration_closes_at"], table="tournaments",
                                        id_column="item_id", quarantine=quarantine)
        status = tournament_item_status(frame, now)
    else:
        m, tm = schema.teams, schema.team_members
        frame = read_frame(conn, sa.select(
            m.c.id.label("item_id"), m.c.is_recruiting, m.c.max_members,
            sa.func.count(sa.distinct(tm.c.user_id)).label("members"),
        ).select_from(m.outerjoin(tm, (tm.c.team_id == m.c.id) & current_membership(conn)))
            .where(m.c.is_recruiting.is_(True)).group_by(m.c.id))
        frame["is_recruiting"] = frame["is_recruiting"].astype(bool)
        status = team_item_status(frame)
    return pd.Series(status.to_numpy(), index=frame["item_id"].to_numpy(dtype=np.int64))


def _removal_reason(kind: RecommendationKind, status: pd.Series, item: int) -> str:
    if item not in status.index:
        return "registration_closed" if kind is TOURNAMENTS else "not_recruiting"
    return ITEM_REASONS.get(str(status[item]), "item_removed")


def _new_registrations(conn: Connection, kind: RecommendationKind, since: datetime
                       ) -> pd.DataFrame:
    """(user_id, item) registered for / joined (and still a member) since `since`."""
    if kind is TOURNAMENTS:
        tp = schema.tournament_participants
        new = sa.select(tp.c.user_id, tp.c.tournament_id.label("item")).where(
            timestamp_compare(conn, tp.c.registered_at, ">=", since))
    else:
        tm = schema.team_members
        new = sa.select(tm.c.user_id, tm.c.team_id.label("item")).where(
            timestamp_compare(conn, tm.c.joined_at, ">=", since), current_membership(conn))
    return read_frame(conn, new.distinct()).astype("int64")


def _rows_taken(conn: Connection, kind: RecommendationKind, table: sa.Table,
                taken: pd.DataFrame) -> pd.DataFrame:
    """(user_id, item, rank) of the rows in `table` whose pair is in `taken`.

    The few new registrations' users' rows by the user index, then the pairs in pandas: the plan
    never depends on the app tables' statistics (a stale estimate made a one-query join hash
    the whole published table)."""
    if taken.empty:
        return pd.DataFrame({c: pd.Series(dtype="int64") for c in ("user_id", "item", "rank")})
    rows = read_int_frame(conn, sa.select(
        table.c.user_id, table.c[kind.item_column].label("item"), table.c.rank).where(
        in_ids(table.c.user_id, sorted(set(taken["user_id"].tolist())), conn.dialect.name)))
    return rows.merge(taken, on=["user_id", "item"])


def _inactive_users_with_rows(conn: Connection, table: sa.Table) -> list[int]:
    u = schema.users
    has_rows = sa.exists().where(table.c.user_id == u.c.id)
    return [int(i) for i in conn.execute(
        sa.select(u.c.id).where(sa.not_(u.c.is_active), has_rows)).scalars()]


def _lock_users(conn: Connection, kind: RecommendationKind, users: list[int]) -> None:
    """Lock these users' lists until the transaction ends: their rank-1 published row, which
    every writer of a user's rows (the on-demand refresh deletes the published rows before the
    reserve's) must also lock, so one row per user serialises them (locking all 15 rows cost
    ~5 s per kind at 1M users with 1 % invalidated). PostgreSQL only: SQLite's write
    transaction serialises writers on its own."""
    if is_postgres(conn):
        table = kind.table
        conn.execute(sa.select(sa.func.count()).select_from(
            sa.select(table.c.user_id).where(in_ids(table.c.user_id, users, conn.dialect.name),
                                             table.c.rank == 1).with_for_update().subquery()))


def _rows_of(conn: Connection, table: sa.Table, users: list[int]) -> pd.DataFrame:
    return read_copied_frame(conn, sa.select(*table.columns).where(
        in_ids(table.c.user_id, users, conn.dialect.name)))


def _pair_index(frame: pd.DataFrame, user_column: str, item_column: str) -> pd.MultiIndex:
    return pd.MultiIndex.from_arrays([frame[user_column].to_numpy(dtype=np.int64),
                                      frame[item_column].to_numpy(dtype=np.int64)])


@dataclass
class _Judge:
    """What a row must not match to stay: stale (user, item) pairs, inactive users, items whose
    status is known and not eligible. A published item this run did not see (a concurrent
    on-demand refresh wrote an item that opened after this run read the item status) is kept
    and judged by the next run; a reserve row is only promoted when its item is eligible now
    (reserve items were all seen: the nightly or a refresh wrote them before)."""

    kind: RecommendationKind
    stale: pd.MultiIndex
    inactive: np.ndarray
    status: pd.Series
    reserve_taken: pd.MultiIndex  # reserve pairs the user registered for / joined meanwhile

    def eligible(self, rows: pd.DataFrame, taken: pd.MultiIndex | None = None, *,
                 unseen_ok: bool = True) -> np.ndarray:
        col = self.kind.item_column
        pairs = _pair_index(rows, "user_id", col)
        status = self.status.reindex(rows[col].to_numpy(dtype=np.int64)).to_numpy()
        item_ok = (status == ELIGIBLE) | (pd.isna(status) if unseen_ok else False)
        ok = (~pairs.isin(self.stale) & ~rows["user_id"].isin(self.inactive).to_numpy()
              & item_ok)
        if taken is not None:
            ok &= ~pairs.isin(taken)
        return ok


# --- one kind ---------------------------------------------------------------------------------


@dataclass
class _BatchWrite:
    backfilled: int
    short_users: np.ndarray
    also_removed: Counter[str]  # ineligible rows not among the stale pairs, by the item's rule


@dataclass
class _KindPlan:
    """One kind's run after the read-only part: what was found stale, and the users to write."""

    kind: RecommendationKind
    out: KindUpkeep
    judge: _Judge
    to_write: list[int]
    left: list[int]  # tracked items that left the eligible set: untracked once written

    def absorb(self, written: _BatchWrite) -> None:
        self.out.backfilled += written.backfilled
        self.out.removed.update(written.also_removed)
        short = np.asarray(written.short_users, dtype=np.int64)
        self.out.short_users.extend(short[~np.isin(short, self.judge.inactive)].tolist())


def _plan_kind(engine: Engine, kind: RecommendationKind, now: datetime) -> _KindPlan | None:
    """Find the stale rows of one kind (reads only); None when nothing was published yet."""
    table = kind.table
    out = KindUpkeep()
    with engine.connect() as conn:
        since = checked_at(conn, kind)
        if since is None:
            return None
        status = item_status_now(conn, kind, now)
        eligible_items = set(status.index[status.to_numpy() == ELIGIBLE].tolist())
        tracked = tracked_items(conn, kind)
        left = sorted(set(tracked.tolist()) - eligible_items)
        pair = sa.select(table.c.user_id, table.c[kind.item_column].label("item"))
        stale = [read_frame(conn, pair.where(
            in_ids(table.c[kind.item_column], left, conn.dialect.name)))] if left else []
        if stale:
            stale[0]["reason"] = [_removal_reason(kind, status, int(i)) for i in stale[0]["item"]]
        taken = _new_registrations(conn, kind, since - REGISTRATION_OVERLAP)
        joined = _rows_taken(conn, kind, table, taken)[["user_id", "item"]]
        stale.append(joined.assign(reason="registered" if kind is TOURNAMENTS else "joined"))
        reserve_taken = _rows_taken(conn, kind, RESERVE_OF[kind].table, taken)
        inactive = _inactive_users_with_rows(conn, table)
        if inactive:
            stale.append(read_frame(conn, pair.where(
                in_ids(table.c.user_id, inactive, conn.dialect.name))).assign(
                reason="user_inactive"))
        stale_rows = pd.concat(stale, ignore_index=True).drop_duplicates(["user_id", "item"])
        if len(stale_rows):  # the share's denominator; a full count is 0.5 s at 9M rows
            out.rows_before = int(conn.execute(sa.select(sa.func.count()).select_from(table))
                                  .scalar_one())
    out.removed.update(stale_rows["reason"].tolist())
    users = sorted(set(stale_rows["user_id"].astype(int).tolist()))
    out.users_touched = len(users)
    # Items that left the eligible set are judged gone even when absent from the status read.
    gone = "status_closed" if kind is TOURNAMENTS else "not_recruiting"
    status = pd.concat([status, pd.Series(gone, index=np.array(
        [i for i in left if i not in status.index], dtype=np.int64))])
    judge = _Judge(kind, _pair_index(stale_rows, "user_id", "item"),
                   np.array(inactive, dtype=np.int64), status,
                   _pair_index(reserve_taken, "user_id", "item"))
    # Users with only a reserve row taken are rewritten too (that row goes, nothing else).
    to_write = sorted(set(users) | set(reserve_taken["user_id"].tolist()))
    return _KindPlan(kind, out, judge, to_write, left)


def _write_batch(engine: Engine, plan: _KindPlan, users: list[int], top_k: int) -> _BatchWrite:
    with engine.begin() as conn:
        return _refill_batch(conn, plan.kind, users, plan.judge, top_k)


def _finish_kind(engine: Engine, plan: _KindPlan, now: datetime) -> None:
    """After every batch of the kind is written: this run's findings are done with."""
    with engine.begin() as conn:
        if plan.left:
            untrack_items(conn, plan.kind, plan.left)
        mark_checked(conn, plan.kind, now)


def _delete_by_rank(conn: Connection, table: sa.Table, rank_of_user: pd.Series, *,
                    and_below: bool = False) -> None:
    """Delete each user's row at `rank_of_user[user]` (and, `and_below`, every row after it),
    read under lock: one statement per distinct rank, by the primary key."""
    for rank, users in rank_of_user.groupby(rank_of_user):
        at = table.c.rank >= int(rank) if and_below else table.c.rank == int(rank)
        conn.execute(table.delete().where(
            in_ids(table.c.user_id, users.index, conn.dialect.name), at))


def _refill_batch(conn: Connection, kind: RecommendationKind, users: list[int], judge: _Judge,
                  top_k: int) -> _BatchWrite:
    """In the caller's transaction: lock and read these users' published and reserve rows,
    refill, and rewrite only what changed (each list's tail from its first changed rank, the
    reserve rows used up or no longer eligible)."""
    col = kind.item_column
    reserve_table = RESERVE_OF[kind].table
    _lock_users(conn, kind, users)
    published = _rows_of(conn, kind.table, users)
    reserve = _rows_of(conn, reserve_table, users)
    published["eligible"] = judge.eligible(published)
    stale_now = published[~published["eligible"].to_numpy(dtype=bool)]
    also_removed = Counter(
        _removal_reason(kind, judge.status, int(i)) for i in
        stale_now.loc[~_pair_index(stale_now, "user_id", col).isin(judge.stale), col])
    reserve["eligible"] = judge.eligible(reserve, judge.reserve_taken, unseen_ok=False)
    refill = refill_lists(published, reserve, item_column=col, top_k=top_k)
    first = first_changed_rank(published, refill.published, col)
    _delete_by_rank(conn, kind.table, first, and_below=True)
    tail = refill.published[refill.published["rank"].to_numpy()
                            >= first.reindex(refill.published["user_id"].to_numpy(),
                                             fill_value=np.iinfo(np.int64).max).to_numpy()]
    bulk_insert(conn, kind.table, tail[[c.name for c in kind.table.columns]])
    kept = _pair_index(refill.reserve, "user_id", col)
    dropped = reserve[~_pair_index(reserve, "user_id", col).isin(kept)]
    _delete_by_rank(conn, reserve_table, pd.Series(dropped["rank"].to_numpy(),
                                                   index=dropped["user_id"].to_numpy()))
    return _BatchWrite(refill.backfilled, refill.short_users, also_removed)


# --- the run ----------------------------------------------------------------------------------


def run_upkeep(engine: Engine, now: datetime, top_k: int = 10, *,
               request_short_list_refresh: bool = True,
               write_workers: int = WRITE_WORKERS) -> UpkeepOutcome:
    """One upkeep pass over both kinds (see the module docstring): find what is stale, write the
    users' batches of both kinds (`write_workers` transactions at once on PostgreSQL; SQLite
    has one writer), then mark each kind checked."""
    ensure_pipeline_tables(engine)
    outcome = UpkeepOutcome(kinds={})
    plans: list[_KindPlan] = []
    for kind in KINDS:
        t0 = time.perf_counter()
        plan = _plan_kind(engine, kind, now)
        outcome.timings[f"find_{kind.name}"] = time.perf_counter() - t0
        if plan is None:
            outcome.published = False
            continue
        plans.append(plan)
        outcome.kinds[kind.name] = plan.out
    t0 = time.perf_counter()
    batches = [(plan, plan.to_write[lo:lo + WRITE_BATCH_USERS]) for plan in plans
               for lo in range(0, len(plan.to_write), WRITE_BATCH_USERS)]
    workers = max(1, write_workers) if is_postgres(engine) else 1
    # Batches hold disjoint users of one kind each, so concurrent ones never wait on each other;
    # the database does most of the work (index maintenance), on its own cores.
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="upkeep") as pool:
        written = pool.map(lambda b: _write_batch(engine, b[0], b[1], top_k), batches)
        for (plan, _), result in zip(batches, written, strict=True):
            plan.absorb(result)
    for plan in plans:
        _finish_kind(engine, plan, now)
    outcome.timings["write"] = time.perf_counter() - t0
    outcome.users_short = sorted({u for k in outcome.kinds.values() for u in k.short_users})
    if request_short_list_refresh and outcome.users_short:
        with engine.begin() as conn:
            outcome.users_refresh_requested = request_refresh_unless_pending(
                conn, outcome.users_short)
    return outcome


def ineligible_now(engine: Engine, kind: RecommendationKind, now: datetime) -> tuple[int, int]:
    """(published rows, rows not eligible right now by the item rules, the user's registration /
    membership or the user's deactivation or deletion): the whole table, for the staleness check.

    Joins, never a per-row subquery: `team_members` has no (user, team) index in the contract,
    and a correlated EXISTS over 9M rows scans it 9M times."""
    table = kind.table
    with engine.connect() as conn:
        status = item_status_now(conn, kind, now)
        eligible = status.index[status.to_numpy() == ELIGIBLE].tolist()
        u = schema.users
        if kind is TOURNAMENTS:
            tp = schema.tournament_participants
            taken = sa.select(tp.c.user_id, tp.c.tournament_id.label("item")).distinct()
        else:
            tm = schema.team_members
            taken = sa.select(tm.c.user_id, tm.c.team_id.label("item")).where(
                current_membership(conn)).distinct()
        taken = taken.subquery("taken")
        item_ok = in_ids(table.c[kind.item_column], eligible, conn.dialect.name)
        bad = sa.not_(item_ok) | sa.not_(sa.func.coalesce(u.c.is_active, False)) | (
            taken.c.user_id.is_not(None))
        rows, bad_rows = conn.execute(sa.select(
            sa.func.count(), sa.func.coalesce(sa.func.sum(sa.case((bad, 1), else_=0)), 0),
        ).select_from(table.outerjoin(u, u.c.id == table.c.user_id).outerjoin(
            taken, (taken.c.user_id == table.c.user_id)
            & (taken.c.item == table.c[kind.item_column])))).one()
    return int(rows), int(bad_rows)
