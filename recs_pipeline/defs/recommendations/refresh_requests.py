"""SQL of the app's refresh requests (`recommendation_refresh_requests`, see `schema.py`).

The app INSERTs a `user_id`; `user_refresh_request_sensor` reads what is pending, oldest first,
one row per user; a refresh run claims (reads) the pending request ids of its users before it reads
their data, and deletes exactly those ids in the transaction that replaces the users' rows. A
request that commits later stays for the next batch: none is lost, none is served by stale data.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from recs_pipeline import schema
from recs_pipeline.db import in_ids

REQUESTS = schema.recommendation_refresh_requests


@dataclass(frozen=True)
class PendingRequests:
    """The oldest pending users (one entry per user) and the request-id span they cover."""

    user_ids: list[int]
    first_id: int
    last_id: int
    requests: int

    @property
    def span(self) -> str:
        return f"{self.first_id}-{self.last_id}"


def pending_requests(conn: Connection, max_users: int) -> PendingRequests | None:
    """Up to `max_users` users with pending requests, in order of their oldest request."""
    first = sa.func.min(REQUESTS.c.id)
    rows = conn.execute(
        sa.select(REQUESTS.c.user_id, first, sa.func.max(REQUESTS.c.id), sa.func.count())
        .group_by(REQUESTS.c.user_id).order_by(first).limit(max_users)
    ).all()
    if not rows:
        return None
    return PendingRequests(
        user_ids=[int(r[0]) for r in rows],
        first_id=min(int(r[1]) for r in rows),
        last_id=max(int(r[2]) for r in rows),
        requests=sum(int(r[3]) for r in rows),
    )


def pending_count(conn: Connection) -> int:
    return int(conn.execute(sa.select(sa.func.count()).select_from(REQUESTS)).scalar_one())


def claim_requests(conn: Connection, user_ids: Sequence[int]) -> list[int]:
    """Ids of the requests pending for these users now (read before their data is)."""
    return sorted(int(i) for i in conn.execute(sa.select(REQUESTS.c.id).where(
        in_ids(REQUESTS.c.user_id, user_ids, conn.dialect.name))).scalars())


def delete_requests(conn: Connection, request_ids: Sequence[int]) -> int:
    """Delete exactly these requests (served); returns how many were still there."""
    if not request_ids:
        return 0
    return int(conn.execute(REQUESTS.delete().where(
        in_ids(REQUESTS.c.id, request_ids, conn.dialect.name))).rowcount or 0)


def request_refresh(conn: Connection, user_ids: Sequence[int]) -> int:
    """What the app does (any client with the app's database): one request row per user."""
    ids = [int(u) for u in user_ids]
    if ids:
        conn.execute(REQUESTS.insert(), [{"user_id": u} for u in ids])
    return len(ids)


def request_refresh_unless_pending(conn: Connection, user_ids: Sequence[int]) -> int:
    """`request_refresh` for the users without a pending request; returns how many were added."""
    pending = set(conn.execute(sa.select(REQUESTS.c.user_id).where(
        in_ids(REQUESTS.c.user_id, user_ids, conn.dialect.name))).scalars())
    return request_refresh(conn, [u for u in user_ids if u not in pending])
