"""An app's rate and daily quota, charged in the transaction that stores its work.

A limit checked in memory and counted after the write lets parallel requests (or several masd nodes on
one database) all pass the check before any of them is counted. Here each charge is one conditional
``UPDATE`` of the app's row — it adds only if the result stays within the limit — run in the same
transaction as the insert of the messages it pays for. The database's row lock orders concurrent charges
of one app, and the condition is evaluated on the latest committed value, so a quota is never overshot
and a rate never admits more than its burst, on SQLite, PostgreSQL and MariaDB alike. A refused charge
changes nothing; a transaction that fails for another reason rolls its charges back with it.

Rate: a token bucket of one second's worth (at least one recipient), refilled continuously, kept in
``app_rates``. Quota: recipients per local day, in ``app_usage`` (also the record of past days).
"""

from __future__ import annotations

import dataclasses

import sqlalchemy as sa

from masd.core.apps import burst_of
from masd.store.tables import app_rates as ar
from masd.store.tables import app_usage as u

__all__ = ["Charge", "Over", "charge"]


@dataclasses.dataclass(frozen=True, slots=True)
class Charge:
    """What one request costs an app: its limits, as they were when the request arrived."""

    app_id: int
    day: str  # the node's local date, "YYYY-MM-DD"
    quota: int | None = None  # recipients per day
    rate: float | None = None  # recipients per second


@dataclasses.dataclass(frozen=True, slots=True)
class Over:
    """A charge that did not fit; nothing was charged."""

    limit: str  # "rate" | "quota"
    used: float  # quota: recipients used today; rate: tokens in the bucket now
    wait: float | None = None  # rate: seconds until the request would fit; None: it never will


def charge(conn: sa.Connection, c: Charge, n: int, *, now: float) -> Over | None:
    """Take ``n`` recipients from the app's rate and quota, or neither; an :class:`Over` when one of
    them has not room."""
    if n <= 0:
        return None
    if c.rate is not None:
        over = _take_tokens(conn, c.app_id, c.rate, n, now)
        if over is not None:
            return over
    if c.quota is not None:
        over = _add_usage(conn, c.app_id, c.day, c.quota, n)
        if over is not None:
            if c.rate is not None:
                _give_tokens(conn, c.app_id, n)
            return over
    return None


def _take_tokens(
    conn: sa.Connection, app_id: int, rate: float, n: int, now: float, *, first: bool = True
) -> Over | None:
    burst = burst_of(rate)
    if n > burst:
        return Over("rate", burst, None)
    p_now: sa.ColumnElement[float] = sa.literal(now, sa.Double())
    p_rate: sa.ColumnElement[float] = sa.literal(rate, sa.Double())
    p_burst: sa.ColumnElement[float] = sa.literal(burst, sa.Double())
    elapsed = sa.case((p_now > ar.c.at, p_now - ar.c.at), else_=sa.literal(0.0, sa.Double()))
    filled = ar.c.tokens + elapsed * p_rate
    available = sa.case((filled > p_burst, p_burst), else_=filled)
    # MySQL assigns left to right and later expressions see earlier assignments: tokens before at.
    stmt = (
        sa.update(ar)
        .where(ar.c.app_id == app_id, available >= n)
        .ordered_values(
            (ar.c.tokens, available - n),
            (ar.c.at, sa.case((p_now > ar.c.at, p_now), else_=ar.c.at)),
        )
    )
    if conn.execute(stmt).rowcount:
        return None
    # A locking read sees the latest committed row, as the UPDATE did (not a REPEATABLE READ snapshot).
    row = conn.execute(sa.select(ar.c.tokens, ar.c.at).where(ar.c.app_id == app_id).with_for_update()).first()
    if row is None:
        if not first:
            raise RuntimeError(f"app {app_id}'s rate bucket vanished while it was charged")
        _insert_missing(conn, ar, {"app_id": app_id, "tokens": burst, "at": now})
        return _take_tokens(conn, app_id, rate, n, now, first=False)
    tokens = min(burst, float(row.tokens) + max(0.0, now - float(row.at)) * rate)
    return Over("rate", tokens, (n - tokens) / rate)


def _give_tokens(conn: sa.Connection, app_id: int, n: int) -> None:
    conn.execute(sa.update(ar).where(ar.c.app_id == app_id).values(tokens=ar.c.tokens + n))


def _add_usage(
    conn: sa.Connection, app_id: int, day: str, quota: int, n: int, *, first: bool = True
) -> Over | None:
    stmt = (
        sa.update(u)
        .where(u.c.app_id == app_id, u.c.day == day, u.c.recipients + n <= quota)
        .values(recipients=u.c.recipients + n)
    )
    if conn.execute(stmt).rowcount:
        return None
    used = conn.execute(
        sa.select(u.c.recipients).where(u.c.app_id == app_id, u.c.day == day).with_for_update()
    ).scalar()
    if used is None:
        if not first:
            raise RuntimeError(f"app {app_id}'s usage row vanished while it was charged")
        _insert_missing(conn, u, {"app_id": app_id, "day": day, "recipients": 0})
        return _add_usage(conn, app_id, day, quota, n, first=False)
    return Over("quota", int(used))


def _insert_missing(conn: sa.Connection, table: sa.Table, row: dict[str, object]) -> None:
    """Insert a counter row unless another transaction just did: it then waits for that one and skips."""
    name = conn.dialect.name
    stmt: sa.Executable
    if name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        stmt = pg_insert(table).values(row).on_conflict_do_nothing()
    elif name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        stmt = sqlite_insert(table).values(row).on_conflict_do_nothing()
    elif name in ("mysql", "mariadb"):
        stmt = sa.insert(table).values(row).prefix_with("IGNORE")
    else:
        stmt = sa.insert(table).values(row)
    conn.execute(stmt)
