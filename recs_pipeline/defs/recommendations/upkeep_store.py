"""The intraday upkeep's bookkeeping tables (`schema.recommendation_upkeep_*`).

Written in the transactions that write recommendation rows, so the bookkeeping always describes
the rows readers see: the nightly swap resets it (`reset_upkeep_state`), the on-demand refresh
adds the items it wrote (`add_upkeep_items`), and the upkeep itself removes the items whose rows
it removed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from recs_pipeline import schema
from recs_pipeline.db import bulk_insert, in_ids
from recs_pipeline.defs.recommendations.publishing import KINDS, RESERVE_OF, RecommendationKind

ITEMS = schema.recommendation_upkeep_items
STATE = schema.recommendation_upkeep_state


def _items_of(kind: RecommendationKind, frames: Mapping[RecommendationKind, pd.DataFrame]
              ) -> np.ndarray:
    parts = [frames[k][kind.item_column].to_numpy(dtype=np.int64)
             for k in (kind, RESERVE_OF[kind]) if k in frames]
    return np.unique(np.concatenate(parts)) if parts else np.zeros(0, dtype=np.int64)


def reset_upkeep_state(conn: Connection, frames: Mapping[RecommendationKind, pd.DataFrame],
                       as_of: datetime) -> None:
    """After a full publish: the tracked items are exactly the published and reserve items, and
    registrations are looked at from the publish's `as_of` on."""
    for kind in KINDS:
        conn.execute(ITEMS.delete().where(ITEMS.c.kind == kind.name))
        items = _items_of(kind, frames)
        bulk_insert(conn, ITEMS, pd.DataFrame({"kind": kind.name, "item_id": items}))
        conn.execute(STATE.delete().where(STATE.c.kind == kind.name))
        conn.execute(STATE.insert().values(kind=kind.name, published_at=as_of, checked_at=as_of))


def add_upkeep_items(conn: Connection, frames: Mapping[RecommendationKind, pd.DataFrame]) -> None:
    """Track the items some users' rows were just written with (the on-demand refresh)."""
    for kind in KINDS:
        items = _items_of(kind, frames)
        if not len(items):
            continue
        known = set(tracked_items(conn, kind, restrict_to=items).tolist())
        missing = [int(i) for i in items.tolist() if i not in known]
        bulk_insert(conn, ITEMS, pd.DataFrame({"kind": kind.name, "item_id": missing}))


def tracked_items(conn: Connection, kind: RecommendationKind,
                  restrict_to: Iterable[int] | None = None) -> np.ndarray:
    query = sa.select(ITEMS.c.item_id).where(ITEMS.c.kind == kind.name)
    if restrict_to is not None:
        query = query.where(in_ids(ITEMS.c.item_id, restrict_to, conn.dialect.name))
    return np.array(conn.execute(query).scalars().all(), dtype=np.int64)


def untrack_items(conn: Connection, kind: RecommendationKind, items: Iterable[int]) -> None:
    conn.execute(ITEMS.delete().where(
        ITEMS.c.kind == kind.name, in_ids(ITEMS.c.item_id, items, conn.dialect.name)))


def checked_at(conn: Connection, kind: RecommendationKind) -> datetime | None:
    """Since when registrations / joins were looked at (None: nothing published yet)."""
    return conn.execute(sa.select(STATE.c.checked_at).where(STATE.c.kind == kind.name)
                        ).scalar_one_or_none()


def mark_checked(conn: Connection, kind: RecommendationKind, at: datetime) -> None:
    conn.execute(STATE.update().where(STATE.c.kind == kind.name).values(checked_at=at))
