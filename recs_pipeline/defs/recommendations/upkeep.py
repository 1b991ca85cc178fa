"""Intraday upkeep: remove published rows that stopped being eligible and refill the lists.

Between two nightly refreshes tournaments close and fill up, teams stop recruiting or fill, and
users register for / join what we recommend or are deactivated. `run_upkeep` finds exactly those
rows, cheaply and in proportion to what changed:

* item rules (closed, full, not recruiting): the item-level status of every open item is read
  (small: the item side), and only the tracked items (`upkeep_store`) that left the eligible set
  since the last run are looked up in the published tables;
* registrations and joins: only those since the last run (with an overlap for late commits),
  joined to the published rows on their unique (user, item) key;
* deactivated users: inactive users that still have rows.

Each affected user's list is rebuilt from their still-eligible rows plus their reserve (the same
refresh's next-best rows, `*_recommendation_reserve`), by score, ranks 1..n; the user's published
and reserve rows are replaced in one transaction, and a user whose rows changed meanwhile (an
on-demand refresh) is left for the next run. Users whose list fell below K are recomputed by the
on-demand refresh, which also lets tournaments and teams that opened since the nightly run in.
"""

from __future__ import annotations

import time
from collections import Counter
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
from recs_pipeline.compute.scoring import ScoringParams
from recs_pipeline.compute.upkeep import refill_lists
from recs_pipeline.db import bulk_insert, in_ids, is_postgres, read_frame, timestamp_compare
from recs_pipeline.defs.recommendations.publishing import (
    KINDS,
    RESERVE_OF,
    TOURNAMENTS,
    RecommendationKind,
)
from recs_pipeline.defs.recommendations.reading import current_membership
from recs_pipeline.defs.recommendations.run import refresh_users
from recs_pipeline.defs.recommendations.upkeep_store import (
    checked_at,
    mark_checked,
    tracked_items,
    untrack_items,
)

# Registrations committed late (a transaction that began before the last run) are still seen.
REGISTRATION_OVERLAP = timedelta(minutes=10)
WRITE_BATCH_USERS = 2_000  # users per write transaction
SHORT_LIST_REFRESH_USERS = 1_000  # users recomputed per run (one on-demand refresh batch)

# Why a published row was removed (metadata keys `removed_<reason>`).
ITEM_REASONS = {"status_closed": "registration_closed", "registration_closed":
                "registration_closed", "no_capacity": "full", "full": "full",
                "not_recruiting": "not_recruiting"}
REASONS = ("registration_closed", "full", "not_recruiting", "item_removed", "registered",
           "joined", "user_inactive")


@dataclass
class KindUpkeep:
    rows_before: int = 0
    removed: Counter[str] = field(default_factory=Counter)
    backfilled: int = 0
    users_touched: int = 0
    users_changed_meanwhile: int = 0
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
    users_refreshed: int = 0  # users whose list fell below K, recomputed
    users_refresh_deferred: int = 0  # more than one refresh batch: left for the next run
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


def _joined_pairs(conn: Connection, kind: RecommendationKind, table: sa.Table, since: datetime
                  ) -> pd.DataFrame:
    """(user_id, item) of rows in `table` the user registered for / joined since `since`."""
    if kind is TOURNAMENTS:
        tp = schema.tournament_participants
        pair = (tp.c.user_id == table.c.user_id) & (tp.c.tournament_id == table.c.tournament_id)
        when = timestamp_compare(conn, tp.c.registered_at, ">=", since)
        source = tp
    else:
        tm = schema.team_members
        pair = (tm.c.user_id == table.c.user_id) & (tm.c.team_id == table.c.team_id)
        when = timestamp_compare(conn, tm.c.joined_at, ">=", since) & current_membership(conn)
        source = tm
    return read_frame(conn, sa.select(table.c.user_id, table.c[kind.item_column].label("item"))
                      .select_from(source.join(table, pair)).where(when).distinct())


def _inactive_users_with_rows(conn: Connection, table: sa.Table) -> list[int]:
    u = schema.users
    has_rows = sa.exists().where(table.c.user_id == u.c.id)
    return [int(i) for i in conn.execute(
        sa.select(u.c.id).where(sa.not_(u.c.is_active), has_rows)).scalars()]


def _members_now(conn: Connection, kind: RecommendationKind, users: list[int], items: list[int]
                 ) -> pd.DataFrame:
    """(user_id, item) registrations / current memberships among these users and items."""
    if kind is TOURNAMENTS:
        tp = schema.tournament_participants
        user_col, item_col, extra = tp.c.user_id, tp.c.tournament_id, sa.true()
    else:
        tm = schema.team_members
        user_col, item_col, extra = tm.c.user_id, tm.c.team_id, current_membership(conn)
    dialect = conn.dialect.name
    return read_frame(conn, sa.select(user_col.label("user_id"), item_col.label("item")).where(
        in_ids(item_col, items, dialect), in_ids(user_col, users, dialect), extra).distinct())


def _rows_of(conn: Connection, table: sa.Table, users: list[int], *, lock: bool = False
             ) -> pd.DataFrame:
    query = sa.select(table).where(in_ids(table.c.user_id, users, conn.dialect.name))
    if lock and is_postgres(conn):
        query = query.with_for_update()
    return read_frame(conn, query, timestamp_columns=["generated_at"])


def _per_user_digest(frame: pd.DataFrame, item_column: str) -> pd.Series:
    """A digest of each user's (item, rank, score) rows, to see whether they changed."""
    if frame.empty:
        return pd.Series(dtype=np.uint64)
    hashed = pd.util.hash_pandas_object(frame[["user_id", item_column, "rank", "score"]],
                                        index=False)
    return hashed.groupby(frame["user_id"].to_numpy()).sum()


def _still_eligible(rows: pd.DataFrame, item_column: str, excluded: set[tuple[int, int]],
                    inactive: set[int], eligible_items: set[int]) -> list[bool]:
    """Per row: its item is eligible now, its (user, item) pair is not excluded (stale or
    already taken) and its user is active."""
    return [(u, i) not in excluded and u not in inactive and i in eligible_items
            for u, i in zip(rows["user_id"].astype(int), rows[item_column].astype(int),
                            strict=True)]


# --- one kind ---------------------------------------------------------------------------------


def _upkeep_kind(engine: Engine, kind: RecommendationKind, now: datetime, top_k: int
                 ) -> KindUpkeep | None:
    table, reserve_table = kind.table, RESERVE_OF[kind].table
    out = KindUpkeep()
    with engine.connect() as conn:
        since = checked_at(conn, kind)
        if since is None:
            return None
        status = item_status_now(conn, kind, now)
        eligible_items = set(status.index[status.to_numpy() == ELIGIBLE].tolist())
        tracked = tracked_items(conn, kind)
        left = sorted(set(tracked.tolist()) - eligible_items)
        stale = [read_frame(conn, sa.select(
            table.c.user_id, table.c[kind.item_column].label("item")).where(
            in_ids(table.c[kind.item_column], left, conn.dialect.name)))] if left else []
        if stale:
            stale[0]["reason"] = [_removal_reason(kind, status, int(i)) for i in stale[0]["item"]]
        joined = _joined_pairs(conn, kind, table, since - REGISTRATION_OVERLAP)
        stale.append(joined.assign(reason="registered" if kind is TOURNAMENTS else "joined"))
        inactive = _inactive_users_with_rows(conn, table)
        if inactive:
            stale.append(_rows_of(conn, table, inactive)[["user_id", kind.item_column]].rename(
                columns={kind.item_column: "item"}).assign(reason="user_inactive"))
        stale_rows = pd.concat(stale, ignore_index=True).drop_duplicates(["user_id", "item"])
        out.rows_before = int(conn.execute(sa.select(sa.func.count()).select_from(table))
                              .scalar_one())
        out.removed.update(stale_rows["reason"].tolist())
        users = sorted(set(stale_rows["user_id"].astype(int).tolist()))
        out.users_touched = len(users)
        if users:
            published = _rows_of(conn, table, users)
            reserve = _rows_of(conn, reserve_table, users)
    if users:
        inactive_set = set(inactive)
        stale_keys = set(zip(stale_rows["user_id"].astype(int), stale_rows["item"].astype(int),
                             strict=True))
        published["eligible"] = _still_eligible(published, kind.item_column, stale_keys,
                                                inactive_set, eligible_items)
        # rows of items that left the eligible set untracked (e.g. written and closed between
        # two runs): removed too, and counted by the item's rule
        untracked = published[~published["eligible"].to_numpy(dtype=bool)]
        out.removed.update(
            _removal_reason(kind, status, i) for u, i in zip(
                untracked["user_id"].astype(int), untracked[kind.item_column].astype(int),
                strict=True) if (u, i) not in stale_keys)
        with engine.connect() as conn:
            taken = _members_now(conn, kind, users,
                                 sorted(set(reserve[kind.item_column].astype(int))))
        taken_keys = set(zip(taken["user_id"].astype(int), taken["item"].astype(int),
                             strict=True))
        reserve["eligible"] = _still_eligible(reserve, kind.item_column, taken_keys,
                                              inactive_set, eligible_items)
        refill = refill_lists(published, reserve, item_column=kind.item_column, top_k=top_k)
        out.backfilled = refill.backfilled
        changed = _write(engine, kind, users, published, reserve, refill.published,
                         refill.reserve)
        out.users_changed_meanwhile = len(changed)
        inactive_or_changed = inactive_set | changed
        out.short_users = [int(u) for u in refill.short_users if int(u) not in inactive_or_changed]
    with engine.begin() as conn:
        if left:
            untrack_items(conn, kind, left)
        mark_checked(conn, kind, now)
    return out


def _write(engine: Engine, kind: RecommendationKind, users: list[int], old_published: pd.DataFrame,
           old_reserve: pd.DataFrame, new_published: pd.DataFrame, new_reserve: pd.DataFrame,
           batch_users: int = WRITE_BATCH_USERS) -> set[int]:
    """Replace these users' published and reserve rows, each batch of users in one transaction;
    returns the users skipped because their rows changed since they were read."""
    col = kind.item_column
    tables = ((kind.table, old_published, new_published),
              (RESERVE_OF[kind].table, old_reserve, new_reserve))
    changed: set[int] = set()
    for lo in range(0, len(users), batch_users):
        batch = users[lo:lo + batch_users]
        with engine.begin() as conn:
            moved: set[int] = set()
            for table, old, _ in tables:
                now_rows = _rows_of(conn, table, batch, lock=True)
                before = _per_user_digest(old[old["user_id"].isin(batch)], col)
                after = _per_user_digest(now_rows, col)
                both = before.index.union(after.index)
                diff = before.reindex(both).fillna(0).to_numpy() != after.reindex(both).fillna(
                    0).to_numpy()
                moved |= {int(u) for u in both[diff]}
            ok = [u for u in batch if u not in moved]
            changed |= moved
            for table, _, new in tables:
                conn.execute(table.delete().where(in_ids(table.c.user_id, ok,
                                                         conn.dialect.name)))
                rows = new[new["user_id"].isin(ok)]
                bulk_insert(conn, table, rows[[c.name for c in table.columns]])
    return changed


# --- the run ----------------------------------------------------------------------------------


def run_upkeep(engine: Engine, now: datetime, top_k: int = 10, *,
               refresh_short_lists: bool = True) -> UpkeepOutcome:
    """One upkeep pass over both kinds (see the module docstring)."""
    ensure_pipeline_tables(engine)
    outcome = UpkeepOutcome(kinds={})
    for kind in KINDS:
        t0 = time.perf_counter()
        result = _upkeep_kind(engine, kind, now, top_k)
        outcome.timings[kind.name] = time.perf_counter() - t0
        if result is None:
            outcome.published = False
            continue
        outcome.kinds[kind.name] = result
    short = sorted({u for k in outcome.kinds.values() for u in k.short_users})
    if refresh_short_lists and short:
        t0 = time.perf_counter()
        batch = short[:SHORT_LIST_REFRESH_USERS]
        refreshed = refresh_users(engine, batch, ScoringParams(top_k=top_k), now)
        outcome.users_refreshed = len(refreshed.refreshed) if not refreshed.failures else 0
        outcome.users_refresh_deferred = len(short) - len(batch)
        outcome.timings["refresh_short_lists"] = time.perf_counter() - t0
    return outcome


def ineligible_now(engine: Engine, kind: RecommendationKind, now: datetime) -> tuple[int, int]:
    """(published rows, rows not eligible right now by the item rules, the user's registration /
    membership or the user's deactivation): the whole table, for the staleness check."""
    table = kind.table
    with engine.connect() as conn:
        status = item_status_now(conn, kind, now)
        eligible = status.index[status.to_numpy() == ELIGIBLE].tolist()
        u = schema.users
        inactive = sa.exists().where(u.c.id == table.c.user_id, sa.not_(u.c.is_active))
        if kind is TOURNAMENTS:
            tp = schema.tournament_participants
            taken = sa.exists().where(tp.c.user_id == table.c.user_id,
                                      tp.c.tournament_id == table.c.tournament_id)
        else:
            tm = schema.team_members
            taken = sa.exists().where(tm.c.user_id == table.c.user_id,
                                      tm.c.team_id == table.c.team_id, current_membership(conn))
        item_ok = in_ids(table.c[kind.item_column], eligible, conn.dialect.name)
        rows, bad = conn.execute(sa.select(
            sa.func.count(),
            sa.func.coalesce(sa.func.sum(sa.case((sa.not_(item_ok) | taken | inactive, 1),
                                                 else_=0)), 0),
        ).select_from(table)).one()
    return int(rows), int(bad)
