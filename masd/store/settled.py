"""Reading by id cursor without skipping a row that commits late.

Readers that remember "the last id I handed on" (the app event outbox, the reply list behind
``GET /v1/replies?after=``) assume ids become visible in order. On PostgreSQL and MariaDB they do not:
transaction A takes id 10, transaction B takes 11 and commits first; a reader that sees 11 and moves its
cursor there never sees 10. An id missing below a visible one is a *hole*: either a transaction still in
flight, or one rolled back (its id is never used).

The rule here: a reader hands on rows up to the first hole that may still be in flight, and no
further. It finds its candidates, looks for that hole between its cursor and its last candidate, and
reads its candidates again below the hole: a row that committed between the first read and the look
would otherwise be left out, and the cursor would pass it. A hole is *settled* once a row above it was
written more than ``settle`` seconds ago by the database server's clock (column ``written_at``): the
hole's id was taken before that row's, so a transaction still holding it would have run for longer
than ``settle`` — it is taken for rolled back. Only the rows between the reader's cursor and its last
candidate are looked at, newest first, and the walk stops at the first old row: a reader that keeps up
looks at a handful of ids. SQLite has one writer, whose ids commit in order: nothing to do there.

What this costs: a reader waits at a hole until it fills (usually milliseconds: the other transaction
commits) or settles (``settle`` seconds after a rollback, e.g. a node killed mid-transaction). What it
assumes: a transaction commits within ``settle`` seconds of inserting such a row.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

__all__ = ["SCAN", "SETTLE_SECONDS", "is_old", "needs_check", "safe_below"]

SETTLE_SECONDS = 10.0
SCAN = 2000  # rows looked at per direction, at most


def needs_check(conn: sa.Connection) -> bool:
    """Whether ids may become visible out of order on this database."""
    return conn.dialect.name in ("postgresql", "mysql", "mariadb")


def _server_now(conn: sa.Connection) -> sa.ColumnElement[Any]:
    if conn.dialect.name == "postgresql":
        return sa.extract("epoch", sa.func.clock_timestamp())
    return sa.func.unix_timestamp(sa.func.now(6))


def is_old(conn: sa.Connection, table: sa.Table, settle: float) -> sa.ColumnElement[bool]:
    """True for a row written more than ``settle`` seconds ago (or before written_at existed)."""
    written = table.c.written_at
    return sa.or_(written.is_(None), written < _server_now(conn) - settle)


def safe_below(
    conn: sa.Connection,
    table: sa.Table,
    *,
    after: int,
    candidates: Sequence[tuple[int, bool]],
    settle: float = SETTLE_SECONDS,
    scan: int = SCAN,
) -> int | None:
    """Where a reader must stop: None when its candidates may be handed on as read (the last of them is
    old: every hole below it is settled), else an id; the reader reads its rows after ``after`` and
    below that id again, and hands on those. The id is the lowest hole that may still commit, or just
    above the last candidate.

    ``candidates`` are the (id, old) pairs a reader found after its cursor, oldest first, ``old`` from
    :func:`is_old`. Holes below an old candidate are settled, so only the ids above the last old
    candidate are looked at.
    """
    if not candidates or not needs_check(conn):
        return None
    lo = after
    for id_, old in candidates:
        if old:
            lo = id_
    hi = candidates[-1][0]
    if hi <= lo:
        return None
    written_long_ago = is_old(conn, table, settle)
    # Newest first: a reader that keeps up finds an old row (or its cursor) within a few ids.
    down = conn.execute(
        sa.select(table.c.id, written_long_ago)
        .where(table.c.id > lo, table.c.id <= hi)
        .order_by(table.c.id.desc())
        .limit(scan)
    ).all()
    lowest: int | None = None
    above = hi + 1
    for id_, is_old_row in down:
        if above - id_ > 1:
            lowest = id_ + 1  # a hole below a row written recently: not settled
        if is_old_row:
            return lowest if lowest is not None else hi + 1  # every hole below an old row is settled
        above = id_
    if len(down) < scan:
        if above - lo > 1:
            return lo + 1
        return lowest if lowest is not None else hi + 1
    # More recent rows than one scan holds (a busy database, a reader far behind): look from the cursor
    # up instead, so the reader moves on through what is contiguous.
    up = conn.execute(
        sa.select(table.c.id, written_long_ago)
        .where(table.c.id > lo, table.c.id <= hi)
        .order_by(table.c.id)
        .limit(scan)
    ).all()
    pending: int | None = None
    expected = lo + 1
    for id_, is_old_row in up:
        if id_ > expected and pending is None:
            pending = expected
        if is_old_row:
            pending = None
        expected = id_ + 1
    return pending if pending is not None else expected
