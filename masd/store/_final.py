"""Ending deliveries in bulk (cancel, sweeps) so that each one's app event is written with it."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from masd.store import events
from masd.store.tables import deliveries as d

_CHUNK = 1000


def finalise_where(
    conn: sa.Connection, cond: sa.ColumnElement[bool], values: dict[str, Any], *, now: float
) -> int:
    """Apply ``values`` (a final state) to the deliveries matching ``cond``; record their events."""
    q = sa.select(d.c.id).where(cond)
    if conn.dialect.name != "sqlite":
        q = q.with_for_update(skip_locked=True)
    ids = list(conn.execute(q).scalars())
    n = 0
    for i in range(0, len(ids), _CHUNK):
        chunk = ids[i : i + _CHUNK]
        n += conn.execute(sa.update(d).where(d.c.id.in_(chunk), cond).values(**values)).rowcount or 0
        events.record_final(conn, chunk, now=now)
    return n
